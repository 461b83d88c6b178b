"""`runaway replay`, `runaway policy check`, `runaway rules` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "novel-trace.jsonl"


def runaway(*args: str, cwd: Path | None = None, path: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), path]))}
    return subprocess.run([sys.executable, "-m", "sim", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=60)


def test_replay_of_the_example_trace_shows_the_guards_at_work():
    r = runaway("replay", str(EXAMPLE))
    assert r.returncode == 0, r.stderr
    fired = [line.split()[2] for line in r.stdout.splitlines() if line.split()[1:2] == ["firing"]]
    for guard in ("cpu-duty-cycle", "cpu-pegged", "covert-marker", "egress-scan", "deception", "escalation"):
        assert guard in fired
    assert "apply     kill" in r.stdout


def test_replay_jsonl_lines_carry_the_contract_fields():
    r = runaway("replay", str(EXAMPLE), "--format", "jsonl")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert lines and all(set(x) == {"t", "guard", "state", "action", "severity"} for x in lines)
    assert {"t": 83.0, "guard": "escalation", "state": "firing", "action": "kill", "severity": "critical"} in lines
    assert [x["t"] for x in lines] == sorted(x["t"] for x in lines)


def test_replay_with_another_policy(tmp_path):
    p = tmp_path / "calm.yaml"
    p.write_text("guards:\n  - {name: only-escalation, on_event: {category: escalation}, action: alert}\n")
    r = runaway("replay", str(EXAMPLE), "--policy", str(p), "--format", "jsonl")
    assert r.returncode == 0, r.stderr
    assert {json.loads(x)["guard"] for x in r.stdout.splitlines()} == {"only-escalation"}


@pytest.mark.parametrize("lines, expect", [
    (['{"type":"sample","t":1}', "{not json"], r"t.jsonl:2: not a JSON object"),
    (['{"type":"sample","t":2}', '{"type":"sample","t":1}'], r"t.jsonl:2: t: time goes backwards"),
    (['{"type":"sample","t":1,"pids":"many"}'], r"t.jsonl:1: pids: expected a number"),
])
def test_bad_traces_are_one_line_with_exit_2(tmp_path, lines, expect):
    (tmp_path / "t.jsonl").write_text("\n".join(lines) + "\n")
    r = runaway("replay", "t.jsonl", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().startswith("runaway: ") and expect in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_policy_check_lists_the_guards():
    r = runaway("policy", "check", str(ROOT / "policies" / "default.yaml"))
    assert r.returncode == 0, r.stderr
    for guard in ("cpu-pegged", "memory-pressure", "deception", "covert-marker"):
        assert guard in r.stdout
    assert "ok:" in r.stdout


@pytest.mark.parametrize("text, expect", [
    ("guards:\n  - name: a\n    signal: cpu_ratio\n    above: 0.9\n    for: 5 s\n", "p.yaml:5: guards[0].for: expected a duration"),
    ("guards:\n  - name: a\n    signal: cpu_ratio\n    above: 0.9\n    action: nuke\n", "p.yaml:5: guards[0].action: unknown value 'nuke'"),
    ("guards:\n  - name: a\n    signal: cpu_ratio\n    above: [1]\n", "p.yaml:4: guards[0].above: expected a number, got a list"),
    ("guards:\n  - name: a\n    signal: cpu_ratio\n    above: 1\n    colour: red\n", "p.yaml:5: guards[0].colour: unknown field"),
])
def test_policy_check_of_a_bad_file_is_one_line_with_exit_2(tmp_path, text, expect):
    (tmp_path / "p.yaml").write_text(text)
    for args in (("policy", "check", "p.yaml"), ("rules", "p.yaml"), ("replay", str(EXAMPLE), "--policy", "p.yaml")):
        r = runaway(*args, cwd=tmp_path)
        assert r.returncode == 2 and expect in r.stderr and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)


def test_rules_writes_a_file(tmp_path):
    out = tmp_path / "rules.yaml"
    r = runaway("rules", str(ROOT / "policies" / "default.yaml"), "-o", str(out), "--interval", "250ms")
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert "alert: cpu-pegged" in text and "alert: escalation" in text and "interval: 250ms" in text
    assert "# skipped" not in text  # every default guard exports
    (tmp_path / "p.yaml").write_text("guards:\n  - {name: d, on_event: {detail.path: /etc/shadow}}\n")
    r = runaway("rules", str(tmp_path / "p.yaml"))
    assert r.returncode == 0 and "# skipped: d: matches on detail fields" in r.stdout, r.stdout


def test_rules_to_stdout_and_a_plugin_that_cannot_be_imported(tmp_path):
    r = runaway("rules", str(ROOT / "policies" / "default.yaml"))
    assert r.returncode == 0 and r.stdout.startswith("# Prometheus alerting rules")
    r = runaway("replay", str(EXAMPLE), "--plugin", "no_such_module_here")
    assert r.returncode == 2 and "no_such_module_here" in r.stderr


def test_a_python_guard_plugin_is_usable_from_yaml(tmp_path):
    (tmp_path / "my_guards.py").write_text(
        "from policies import Guard, Sample, register_guard\n"
        "@register_guard('many-pages')\n"
        "class ManyPages(Guard):\n"
        "    def condition(self, obs):\n"
        "        if type(obs) is not Sample or 'pages' not in obs.extra: return None\n"
        "        return obs.extra['pages'] > self.params.get('limit', 100)\n")
    (tmp_path / "p.yaml").write_text("guards:\n  - {name: pages, type: many-pages, params: {limit: 500}}\n")
    r = runaway("replay", str(EXAMPLE), "--policy", "p.yaml", "--plugin", "my_guards", "--format", "jsonl",
                cwd=tmp_path, path=str(tmp_path))
    assert r.returncode == 0, r.stderr
    first = json.loads(r.stdout.splitlines()[0])
    assert (first["guard"], first["state"]) == ("pages", "firing")
    r = runaway("policy", "check", "p.yaml", cwd=tmp_path)  # without the plugin: the type is unknown
    assert r.returncode == 2 and "p.yaml:2: guards[0].type: unknown guard type 'many-pages'" in r.stderr


def test_the_shipped_example_trace_is_what_its_generator_writes(tmp_path):
    # The example records the default policy's verdicts: if the policy changes, regenerate it.
    out = tmp_path / "novel.jsonl"
    r = subprocess.run([sys.executable, str(ROOT / "docs" / "examples" / "make_novel_trace.py"), str(out)],
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    shipped = EXAMPLE.read_text().splitlines()
    fresh = out.read_text().splitlines()
    assert fresh == shipped, "regenerate: PYTHONPATH=. python docs/examples/make_novel_trace.py"
