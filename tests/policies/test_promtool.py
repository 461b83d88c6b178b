"""Differential test: our engine against Prometheus itself (`promtool test rules`).

For generated series and guards, the exported alerting rules must fire and resolve at the
same evaluation times as the engine. promtool is real (Debian's prometheus package, installed
by .ci/run); each call costs ~0.1 s, so the examples are few.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies import Engine, Event, Sample, load_policy
from policies.promql import export_rules

PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (.ci/run installs Debian's prometheus)")


@st.composite
def guard_and_series(draw, aggregates=(None, "avg", "max", "min")):
    """A threshold or aggregate guard on cpu_ratio and a 1 Hz series that crosses it."""
    k = draw(st.integers(8, 32))
    # thresholds sit off the value grid (k/32) so float rounding never decides a comparison
    thr = round(k / 32 + 0.013, 3)
    op = draw(st.sampled_from(["above", "below"]))
    lines = [f"name: g", "signal: cpu_ratio", f"{op}: {thr}",
             f"for: {draw(st.sampled_from([0, 1, 2, 3, 5]))}s"]
    agg = draw(st.sampled_from(aggregates))
    if agg:
        lines += [f"aggregate: {agg}", f"over: {draw(st.sampled_from([2, 3, 5, 10]))}s"]
    if draw(st.booleans()):
        gap = draw(st.sampled_from([0.1, 0.25]))
        lines.append(f"clear_{'below' if op == 'above' else 'above'}: {round(thr - gap if op == 'above' else thr + gap, 3)}")
    keep = draw(st.sampled_from([0, 0, 1, 3]))
    if keep:
        lines.append(f"keep_firing_for: {keep}s")
    lines.append(f"action: {draw(st.sampled_from(['alert', 'throttle', 'kill']))}")
    policy = load_policy("guards:\n  - {" + ", ".join(lines) + "}")
    vals = draw(st.lists(st.integers(max(0, k - 10), k + 10), min_size=8, max_size=30))
    return policy, [v / 32 for v in vals]


def engine_firing(policy, values, dt=1.0):
    """Firing guard names after each sample (one every `dt` seconds), as the engine sees them."""
    eng = Engine(policy)
    out = []
    for i, v in enumerate(values):
        eng.step(Sample(t=i * dt, cpu_ratio=v))
        out.append(sorted(n for n, s in eng.states().items() if s == "firing"))
    return out


def promtool_agrees(tmp: Path, policy, values, firing, metric="runaway_sandbox_cpu_ratio",
                    interval_ms: int = 1000) -> tuple[bool, str]:
    """Runs the exported rule over the series in promtool, evaluating at every sample, and
    checks that the alert fires at exactly the times in `firing`."""
    interval = f"{interval_ms}ms"
    doc, skipped = export_rules(policy, interval=interval)
    assert not skipped
    rule = doc["groups"][0]["rules"][0]
    (tmp / "rules.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    labels = {"run": "r1", **rule["labels"]}
    tests = [{
        "eval_time": f"{i * interval_ms}ms", "alertname": rule["alert"],
        "exp_alerts": [{"exp_labels": labels, "exp_annotations": rule["annotations"]}] if names else [],
    } for i, names in enumerate(firing)]
    suite = {
        "rule_files": ["rules.yaml"], "evaluation_interval": interval,
        "tests": [{"interval": interval,
                   "input_series": [{"series": metric + '{run="r1"}',
                                     "values": " ".join(repr(v) for v in values)}],
                   "alert_rule_test": tests}],
    }
    (tmp / "test.yaml").write_text(yaml.safe_dump(suite, sort_keys=False))
    proc = subprocess.run([PROMTOOL, "test", "rules", "test.yaml"], cwd=tmp, capture_output=True, text=True, timeout=60)
    return proc.returncode == 0, proc.stdout + proc.stderr


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=guard_and_series(), interval_ms=st.sampled_from([1000, 250]))
def test_exported_rules_fire_and_resolve_when_the_engine_does(tmp_path, case, interval_ms):
    """For any generated series, Prometheus evaluating the exported rule at every sample has the alert firing at exactly the evaluation times the engine has the guard firing."""
    policy, values = case
    firing = engine_firing(policy, values, dt=interval_ms / 1000)
    ok, out = promtool_agrees(tmp_path, policy, values, firing, interval_ms=interval_ms)
    assert ok, f"promtool disagrees for {policy.guards[0].describe()} over {values}:\n{out}"


def test_promtool_catches_a_wrong_expectation(tmp_path):
    # The harness itself can fail: claim the alert fires one evaluation early.
    policy = load_policy("guards:\n  - {name: g, signal: cpu_ratio, above: 0.5, for: 2s}")
    values = [0.0, 1.0, 1.0, 1.0, 1.0, 0.0]
    firing = engine_firing(policy, values)
    assert firing == [[], [], [], ["g"], ["g"], []]
    ok, _ = promtool_agrees(tmp_path, policy, values, firing)
    assert ok
    early = [[], [], ["g"], ["g"], ["g"], []]
    ok, out = promtool_agrees(tmp_path, policy, values, early)
    assert not ok and "time: 2s" in out  # promtool names the evaluation where they differ


@st.composite
def rate_guard_and_counter(draw):
    """A rate guard on cpu_seconds (a counter that sometimes resets) and its 1 Hz series."""
    over = draw(st.sampled_from([2, 3, 5]))
    thr = round(draw(st.integers(4, 28)) / 32 + 0.0107, 4)
    lines = ["name: g", "signal: cpu_seconds", "aggregate: rate", f"over: {over}s", f"above: {thr}",
             f"for: {draw(st.sampled_from([0, 1, 2]))}s"]
    if draw(st.booleans()):
        lines.append(f"clear_below: {round(thr - 0.2, 4)}")
    policy = load_policy("guards:\n  - {" + ", ".join(lines) + "}")
    steps = draw(st.lists(st.integers(0, 40), min_size=8, max_size=25))
    resets = draw(st.sets(st.integers(1, len(steps) - 1), max_size=2))
    total, values = draw(st.integers(0, 64)) / 32, []
    for i, d in enumerate(steps):
        total = d / 32 if i in resets else total + d / 32
        values.append(total)
    return policy, values


def engine_firing_counter(policy, values):
    eng = Engine(policy)
    out = []
    for i, v in enumerate(values):
        eng.step(Sample(t=float(i), cpu_seconds=v))
        out.append(sorted(n for n, s in eng.states().items() if s == "firing"))
    return out


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=rate_guard_and_counter())
def test_exported_rate_rules_fire_when_the_engine_does(tmp_path, case):
    """For any counter series (resets included), Prometheus's rate() rule fires at exactly the evaluation times the engine's rate guard does."""
    policy, values = case
    ok, out = promtool_agrees(tmp_path, policy, values, engine_firing_counter(policy, values),
                              metric="runaway_sandbox_cpu_seconds_total")
    assert ok, f"promtool disagrees for {policy.guards[0].describe()} over {values}:\n{out}"


def test_the_default_policy_exports_rules_promtool_accepts(tmp_path):
    from policies import default_policy
    from policies.promql import rules_yaml

    (tmp_path / "rules.yaml").write_text(rules_yaml(default_policy(), interval="250ms"))
    r = subprocess.run([PROMTOOL, "check", "rules", "rules.yaml"], cwd=tmp_path, capture_output=True, text=True)
    # Every default guard exports (the deception guard approximately).
    assert r.returncode == 0 and f"SUCCESS: {len(default_policy().guards)} rules found" in r.stdout, r.stdout + r.stderr


# --- event guards: counters of events -------------------------------------------------

EVENT_KINDS = [(src, cat, out) for src in ("audit", "observer") for cat in ("escalation", "egress")
               for out in ("blocked", "unknown")]


@st.composite
def event_guard_and_stream(draw):
    """An event guard (windowed or latched, one match or two any-of) and, per 1 s step, the
    events that happen at that instant."""
    def match():
        fields = {"category": draw(st.sampled_from(["escalation", "egress", "[escalation, egress]"]))}
        if draw(st.booleans()):
            fields["outcome"] = draw(st.sampled_from(["blocked", "unknown"]))
        if draw(st.booleans()):
            fields["source"] = draw(st.sampled_from(["audit", "observer"]))
        return "{" + ", ".join(f"{k}: {v}" for k, v in fields.items()) + "}"

    on_event = match() if draw(st.booleans()) else f"[{match()}, {match()}]"
    lines = ["name: g", f"on_event: {on_event}"]
    if draw(st.booleans()):
        lines += [f"count: {draw(st.integers(1, 4))}", f"within: {draw(st.sampled_from([1, 2, 3, 5]))}s"]
    keep = draw(st.sampled_from([None, 0, 1, 3]))
    if keep is not None:
        lines.append(f"keep_firing_for: {keep}s")
    lines.append(f"action: {draw(st.sampled_from(['alert', 'disconnect', 'kill']))}")
    policy = load_policy("guards:\n  - {" + ", ".join(lines) + "}")
    steps = draw(st.lists(st.lists(st.sampled_from(EVENT_KINDS), max_size=3), min_size=6, max_size=24))
    return policy, steps


def event_promtool_agrees(tmp: Path, policy, steps) -> tuple[bool, str]:
    """The engine's firing state after each 1 s step against Prometheus evaluating the
    exported rule over the event counters, one scrape a step."""
    eng = Engine(policy)
    firing = []
    for i, evs in enumerate(steps):
        for src, cat, out in evs:
            eng.step(Event(t=float(i), source=src, category=cat, kind="k", outcome=out))
        eng.step(Sample(t=float(i)))  # the clock moves on even when nothing happens
        firing.append(eng.states()["g"] == "firing")
    doc, skipped = export_rules(policy, interval="1s")
    assert not skipped, skipped
    rule = doc["groups"][0]["rules"][0]
    (tmp / "rules.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    series = []
    for src, cat, out in EVENT_KINDS:
        total, values = 0, []
        for evs in steps:
            total += evs.count((src, cat, out))
            values.append(str(total) if total else "_")  # a counter appears at its first event
        if total:
            series.append({"series": f'runaway_events_total{{run="r1", source="{src}", category="{cat}", '
                                     f'kind="k", outcome="{out}"}}', "values": " ".join(values)})
    labels = {"run": "r1", **rule["labels"]}
    suite = {"rule_files": ["rules.yaml"], "evaluation_interval": "1s",
             "tests": [{"interval": "1s", "input_series": series or [{"series": 'up{job="x"}', "values": "1"}],
                        "alert_rule_test": [{"eval_time": f"{i}s", "alertname": "g",
                                             "exp_alerts": [{"exp_labels": labels, "exp_annotations": rule["annotations"]}]
                                             if f else []} for i, f in enumerate(firing)]}]}
    (tmp / "test.yaml").write_text(yaml.safe_dump(suite, sort_keys=False))
    proc = subprocess.run([PROMTOOL, "test", "rules", "test.yaml"], cwd=tmp, capture_output=True, text=True, timeout=60)
    return proc.returncode == 0, proc.stdout + proc.stderr


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=event_guard_and_stream())
def test_exported_event_rules_fire_and_resolve_when_the_engine_does(tmp_path, case):
    """For any event stream and event guard (windowed or latched, any-of matches, keep_firing_for), Prometheus evaluating the exported rule over the event counters has the alert firing at exactly the steps the engine has the guard firing."""
    policy, steps = case
    ok, out = event_promtool_agrees(tmp_path, policy, steps)
    assert ok, f"promtool disagrees for {policy.guards[0].describe()} over {steps}:\n{out}"


def test_the_event_harness_can_fail(tmp_path):
    # A wrong window (the increase() the export used to emit, over an event at the window's
    # left edge) is caught.
    policy = load_policy("guards:\n  - {name: g, on_event: {category: egress}, count: 2, within: 2s}")
    steps = [[("audit", "egress", "blocked")], [], [("audit", "egress", "blocked")], [], []]
    ok, out = event_promtool_agrees(tmp_path, policy, steps)
    assert ok, out
    from policies import promql

    real = promql._new_events
    promql._new_events = lambda sel, w: f"increase({sel}[{int(w)}s])"
    try:
        ok, out = event_promtool_agrees(tmp_path, policy, steps)
    finally:
        promql._new_events = real
    assert not ok and "alertname: g" in out


def deception_alerts(tmp: Path, series: dict[str, str], evals: int) -> list[bool]:
    """Whether the exported default deception rule fires at each 1 s evaluation, asked of
    promtool one evaluation at a time (a test per guess would be slower: ask for both)."""
    from policies import default_policy

    policy = default_policy()
    doc, _ = export_rules(policy, interval="1s")
    rule = next(r for r in doc["groups"][0]["rules"] if r["alert"] == "deception")
    doc["groups"][0]["rules"] = [rule]
    (tmp / "rules.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    out = []
    for i in range(evals):
        suite = {"rule_files": ["rules.yaml"], "evaluation_interval": "1s",
                 "tests": [{"interval": "1s",
                            "input_series": [{"series": s, "values": v} for s, v in series.items()],
                            "alert_rule_test": [{"eval_time": f"{i}s", "alertname": "deception", "exp_alerts": []}]}]}
        (tmp / "test.yaml").write_text(yaml.safe_dump(suite, sort_keys=False))
        proc = subprocess.run([PROMTOOL, "test", "rules", "test.yaml"], cwd=tmp, capture_output=True, text=True,
                              timeout=60)
        out.append(proc.returncode != 0)  # "no alert expected" failed: it fired
    return out


def test_the_deception_rule_fires_when_an_audited_action_goes_unreported(tmp_path):
    # An audited setuid at 2 s. Unreported: the engine fires at the first observation after
    # its deadline (2 + 3 s) and the exported rule at the same evaluation, for a window
    # (the engine latches). Reported: neither fires.
    labels = 'run="r1", scenario="s", category="escalation", kind="setuid"'
    audit = {f'runaway_events_total{{{labels}, source="audit", outcome="blocked"}}': "_ _ 1 1 1 1 1 1 1 1 1 1"}
    fired = deception_alerts(tmp_path, audit, 11)
    assert fired.index(True) == 6 and all(fired[6:9]) and not any(fired[9:])
    told = {**audit, f'runaway_events_total{{{labels}, source="self_report", outcome="blocked"}}':
            "_ _ 1 1 1 1 1 1 1 1 1 1"}
    assert not any(deception_alerts(tmp_path, told, 11))
    from policies import default_policy

    eng = Engine(default_policy())
    eng.step(Event(t=2.0, source="audit", category="escalation", kind="setuid", outcome="blocked"))
    states = []
    for t in range(3, 7):
        eng.step(Sample(t=float(t)))
        states.append(eng.states()["deception"])
    assert states.index("firing") == 3  # t = 6 s, as the rule
