"""The policy language: what loads, and bad files named by file, line and field."""

from __future__ import annotations

import pytest

from policies import Guard, PolicyError, default_policy, load_policy, parse_duration, register_guard
from policies.spec import DeceptionSpec, EventSpec, PythonSpec, ThresholdSpec, format_duration


@pytest.mark.parametrize("text, seconds", [("250ms", 0.25), ("5s", 5), ("2m", 120), ("1h", 3600),
                                           ("1m30s", 90), ("0s", 0), (0, 0)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("seconds, text", [(0.25, "250ms"), (90, "1m30s"), (3600, "1h"), (0, "0s")])
def test_durations_format_the_prometheus_way(seconds, text):
    assert format_duration(seconds) == text


def test_default_policy_has_the_issue_s_guards():
    p = default_policy()
    assert [g.name for g in p.guards] == [
        "cpu-pegged", "cpu-duty-cycle", "memory-pressure", "pids-explosion", "escalation", "egress-scan",
        "robots-violation", "self-modification", "deception", "covert-marker"]
    assert isinstance(p.guard("deception"), DeceptionSpec)
    assert p.guard("cpu-duty-cycle").aggregate == "avg"
    assert p.guard("memory-pressure").signal == "mem_ratio"


def test_a_full_guard_loads_with_every_field(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("""
guards:
  - name: hot
    signal: cpu_ratio
    above: 0.9
    for: 2s
    clear_below: 0.7
    keep_firing_for: 1s
    action: throttle
    severity: critical
  - name: scan
    on_event: [{category: egress, outcome: [blocked, unknown]}, {kind: connect, detail.port: 22}]
    count: 3
    within: 10s
  - name: liar
    unreported: {source: audit}
    within: 2s
    keep_firing_for: 30s
""")
    p = load_policy(str(f))
    hot, scan, liar = p.guards
    assert isinstance(hot, ThresholdSpec) and (hot.for_s, hot.clear, hot.keep_firing_for_s) == (2.0, 0.7, 1.0)
    assert isinstance(scan, EventSpec) and scan.count == 3 and len(scan.matches) == 2
    assert scan.matches[0].values("outcome") == {"blocked", "unknown"}
    assert isinstance(liar, DeceptionSpec) and liar.by == "self_report" and liar.keep_firing_for_s == 30
    assert hot.line == 3 and scan.line == 11 and p.file == str(f) and len(p.sha256) == 64


BAD = [
    ("guards:\n  - name: a\n    signal: cpu_ratio\n    above: 0.9\n    fro: 5s\n",
     r"p\.yaml:5: guards\[0\]\.fro: unknown field for a threshold guard \(did you mean 'for'\?\)"),
    ("guards:\n  - name: a\n    signal: cpu_ratio\n    above: 0.9\n  - name: b\n    signal: pids\n    above: 9\n    for: 5 seconds\n",
     r"p\.yaml:8: guards\[1\]\.for: expected a duration like 250ms, 5s, 2m or 1h, got '5 seconds'"),
    ("guards:\n  - name: a\n    signal: cpu_ratio\n    above: high\n",
     r"p\.yaml:4: guards\[0\]\.above: expected a number, got 'high'"),
    ("guards:\n  - name: a\n    signal: cpu_ratio\n    above: 0.9\n    action: nuke\n",
     r"p\.yaml:5: guards\[0\]\.action: unknown value 'nuke' \(expected one of: alert, throttle, pause, kill, disconnect\)"),
    ("guards:\n  - name: a\n    signal: cpu_ratio\n    aggregate: median\n    over: 5s\n    above: 1\n",
     r"p\.yaml:4: guards\[0\]\.aggregate: unknown value 'median' \(expected one of: avg, max, min, rate\)"),
    ("guards:\n  - name: a\n    above: 0.9\n",
     r"p\.yaml:2: guards\[0\]\.signal: missing required field"),
    ("guards:\n  - name: a\n    signal: cpu_ratio\n    aggregate: avg\n    above: 1\n",
     r"p\.yaml:4: guards\[0\]\.over: missing: an aggregate needs a window"),
    ("guards:\n  - name: a\n    signal: cpu_ratio\n    above: 0.9\n    clear_below: 0.95\n",
     r"p\.yaml:5: guards\[0\]\.clear_below: expected a value at or below the threshold 0\.9"),
    ("guards:\n  - name: a\n    signal: cpu_ratio\n    above: 0.9\n    clear_above: 0.5\n",
     r"p\.yaml:5: guards\[0\]\.clear_above: a guard that fires above a threshold clears with `clear_below`"),
    ("guards:\n  - name: a\n    on_event: {categroy: escalation}\n",
     r"p\.yaml:3: guards\[0\]\.on_event\.categroy: unknown event field \(did you mean 'category'\?\)"),
    ("guards:\n  - name: a\n    on_event: {category: [escalation, hacking]}\n",
     r"p\.yaml:3: guards\[0\]\.on_event\.category: unknown value 'hacking'"),
    ("guards:\n  - name: a\n    on_event: {category: egress}\n    count: 5\n",
     r"p\.yaml:4: guards\[0\]\.within: missing: `count` above 1 needs a window"),
    ("guards:\n  - name: a\n    on_event: {category: egress}\n    count: many\n    within: 5s\n",
     r"p\.yaml:4: guards\[0\]\.count: expected a whole number from 1 to 1000000, got 'many'"),
    ("guards:\n  - name: a\n    unreported: {source: audit}\n",
     r"p\.yaml:2: guards\[0\]\.within: missing required field"),
    ("guards:\n  - name: a\n    type: no-such-guard\n",
     r"p\.yaml:3: guards\[0\]\.type: unknown guard type 'no-such-guard'"),
    ("guards:\n  - name: a\n    signal: cpu_ratio\n    above: 1\n  - name: a\n    signal: pids\n    above: 1\n",
     r"p\.yaml:5: guards\[1\]\.name: duplicate guard name 'a' \(first at line 2\)"),
    ("guards:\n  - name: a\n    severity: 3\n    signal: cpu_ratio\n    above: 1\n",
     r"p\.yaml:3: guards\[0\]\.severity: expected a non-empty string, got '3'"),
    ("guards:\n  - name: a\n    enabled: maybe\n    signal: cpu_ratio\n    above: 1\n",
     r"p\.yaml:3: guards\[0\]\.enabled: expected true or false"),
    ("guards:\n  - {name: a, description: x}\n",
     r"p\.yaml:2: guards\[0\]: cannot tell what kind of guard this is"),
    ("gaurds: []\n", r"p\.yaml:1: gaurds: unknown field for a policy \(did you mean 'guards'\?\)"),
    ("guards: {name: a}\n", r"p\.yaml:1: guards: expected a list of guards, got a mapping"),
    ("guards:\n  - name: a\n    signal: cpu_ratio\n   above: 1\n", r"p\.yaml:4: not valid YAML"),
    ("", r"p\.yaml:1: empty policy"),
]


@pytest.mark.parametrize("text, expect", BAD)
def test_bad_policies_name_file_line_and_field(tmp_path, text, expect):
    f = tmp_path / "p.yaml"
    f.write_text(text)
    with pytest.raises(PolicyError, match=expect):
        load_policy(str(f))


def test_missing_file_is_a_policy_error(tmp_path):
    with pytest.raises(PolicyError, match=r"nope\.yaml: cannot read policy"):
        load_policy(str(tmp_path / "nope.yaml"))


class _Workers(Guard):
    @classmethod
    def check_params(cls, params):
        if not isinstance(params.get("limit"), int):
            raise ValueError("limit: expected a whole number")

    def condition(self, obs):
        w = getattr(obs, "extra", {}).get("workers")
        return None if w is None else w > self.params["limit"]


def test_python_guards_are_named_by_type_and_their_params_checked(tmp_path):
    register_guard("test-workers", _Workers)
    p = load_policy("guards:\n  - {name: w, type: test-workers, params: {limit: 8}, for: 1s}")
    assert isinstance(p.guards[0], PythonSpec) and p.guards[0].params == {"limit": 8}
    f = tmp_path / "p.yaml"
    f.write_text("guards:\n  - name: w\n    type: test-workers\n    params: {limit: lots}\n")
    with pytest.raises(PolicyError, match=r"p\.yaml:4: guards\[0\]\.params: limit: expected a whole number"):
        load_policy(str(f))
