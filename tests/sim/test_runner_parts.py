"""The runner's parts that need no sandbox: the learner's protocol, replay sweeps, and the
one-line errors of `runaway run` and `runaway sweep`."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies.model import Action, Event, Verdict, read_trace
from sim.lab import protocol
from sim.lab.sweep import replay_records, replay_sweep, table

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "novel-trace.jsonl"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def runaway(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sim", *args], env=ENV, capture_output=True, text=True,
                          timeout=120)


def test_an_audit_line_becomes_an_event_at_its_wall_time():
    line = ('@runaway {"type":"event","source":"audit","category":"escalation","kind":"setuid",'
            '"outcome":"blocked","detail":{"errno":1},"wall":1000.5}')
    ev = protocol.parse_line(line, lambda wall: wall - 1000.0)
    assert ev == Event(t=0.5, source="audit", category="escalation", kind="setuid", outcome="blocked",
                       detail={"errno": 1})


def test_the_learner_cannot_pose_as_the_observer_or_the_operator():
    for source in ("observer", "web", "operator"):
        line = f'@runaway {{"type":"event","source":"{source}","category":"operator","kind":"resume"}}'
        assert not isinstance(protocol.parse_line(line, lambda w: 0.0), Event)


@given(st.text(max_size=200))
def test_any_output_line_parses_without_error(text):
    """Whatever the learner writes, parsing it never raises and never loses its text."""
    parsed = protocol.parse_line(text, lambda w: 0.0)
    if not text.startswith(protocol.PREFIX):
        assert protocol.text_of(parsed) == text


def test_gauges_are_kept_for_the_next_sample():
    g = protocol.parse_line('@runaway {"type":"gauge","pages":12,"bits_per_char":2.5,"note":"x"}', lambda w: 0.0)
    assert g == protocol.Gauge({"pages": 12, "bits_per_char": 2.5})


def test_replaying_a_policy_stops_the_story_at_its_first_containing_action():
    records = list(read_trace(str(EXAMPLE)))
    replayed = replay_records(records, None)
    actions = [r for r in replayed if isinstance(r, Action)]
    assert actions and all(a.detail["simulated"] for a in actions)
    assert actions[-1].action in ("pause", "kill", "disconnect")
    assert replayed[-1] is actions[-1], "nothing after the first containing action"
    assert not any(isinstance(r, (Verdict, Action)) and r not in replayed for r in replayed)


def test_a_policy_with_no_guards_lets_the_whole_recording_through(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("guards: []\n")
    records = list(read_trace(str(EXAMPLE)))
    replayed = replay_records(records, str(empty))
    assert not [r for r in replayed if isinstance(r, (Verdict, Action))]
    assert len(replayed) == len([r for r in records if not isinstance(r, (Verdict, Action))])
    rows = table(replay_sweep([EXAMPLE], [None, str(empty)]))
    by_policy = {r["policy"]: r for r in rows}
    assert by_policy["default"]["median_time_to_detect_s"] is not None
    assert by_policy["empty"]["median_time_to_detect_s"] is None


def test_sweep_replay_writes_a_table(tmp_path):
    p = runaway("sweep", "--replay", str(EXAMPLE), "--out", str(tmp_path))
    assert p.returncode == 0, p.stderr
    rows = list(csv.DictReader(open(tmp_path / "sweep.csv")))
    assert rows and rows[0]["policy"] == "default" and rows[0]["runs"] == "1"
    assert "<table>" in (tmp_path / "sweep.html").read_text()


@pytest.mark.parametrize(
    "args, expect",
    [
        (["run", "novel", "--duration", "-1"], "--duration: expected a positive number"),
        (["run", "no-such-scenario"], "no-such-scenario"),
        (["run", "novel", "--profile", "novel", "--backend", "process"], "profile: profile 'novel' caps 4 CPUs"),
        (["run", "novel", "--cpus", "64", "--backend", "process"], "--cpus: a cap of 64 CPUs is above"),
        (["run", "novel", "--memory", "lots", "--backend", "process"], "--memory:"),
        (["sweep", "--seeds", "a-b"], "--seeds: expected seeds like"),
    ],
)
def test_bad_run_options_are_one_line_and_exit_2(args, expect, tmp_path):
    if os.cpu_count() and os.cpu_count() >= 4 and "--profile" in args:
        pytest.skip("this host fits the novel profile")
    p = runaway(*args, "--out", str(tmp_path / "o")) if args[0] == "run" else runaway(*args)
    assert p.returncode == 2, p.stdout + p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0], p.stderr
    assert not (tmp_path / "o" / "trace.jsonl").exists()


def test_a_policy_file_with_a_mistake_stops_the_run_before_anything_starts(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("guards:\n  - name: x\n    signal: cpu_ratio\n    above: high\n    action: kill\n")
    p = runaway("run", "benign", "--policy", str(bad), "--backend", "process", "--out", str(tmp_path / "o"))
    assert p.returncode == 2
    assert p.stderr.startswith(f"runaway: {bad}:4:") and "above" in p.stderr
