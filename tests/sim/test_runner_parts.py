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
from sim.lab.sweep import replay_records, replay_sweep, run_rows, table
from sim.report import scorecard

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "novel-trace.jsonl"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def runaway(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sim", *args], env=ENV, capture_output=True, text=True,
                          timeout=120)


def test_an_audit_line_becomes_an_event_at_the_time_the_controller_read_it():
    line = ('@runaway {"type":"event","source":"audit","category":"escalation","kind":"setuid",'
            '"outcome":"blocked","detail":{"errno":1},"wall":1e300}')
    ev = protocol.parse_line(line, 0.5)
    assert ev == Event(t=0.5, source="audit", category="escalation", kind="setuid", outcome="blocked",
                       detail={"errno": 1})


def test_the_learner_cannot_pose_as_the_observer_or_the_operator():
    for source in ("observer", "web", "operator"):
        line = f'@runaway {{"type":"event","source":"{source}","category":"operator","kind":"resume"}}'
        assert not isinstance(protocol.parse_line(line, 0.0), Event)


@given(st.text(max_size=200))
def test_any_output_line_parses_without_error(text):
    """Whatever the learner writes, parsing it never raises and never loses its text."""
    parsed = protocol.parse_line(text, 0.0)
    if not text.startswith(protocol.PREFIX):
        assert protocol.text_of(parsed) == text


def test_gauges_are_kept_for_the_next_sample():
    g = protocol.parse_line('@runaway {"type":"gauge","pages":12,"bits_per_char":2.5}', 0.0)
    assert g == protocol.Gauge({"pages": 12, "bits_per_char": 2.5})


def test_replaying_the_recorded_policy_gives_the_recorded_story():
    # The default policy took these actions in the recording; replayed, it takes the same
    # ones, so the recording stands for the whole run and the scorecard is the report's.
    records = list(read_trace(str(EXAMPLE)))
    replayed = replay_records(records, None)
    actions = [r for r in replayed if isinstance(r, Action)]
    assert actions and all(a.detail["simulated"] for a in actions)
    recorded = [r for r in records if isinstance(r, Action)]
    assert [a.action for a in actions] == [a.action for a in recorded]
    assert scorecard(replayed, benign=False)["contained"] is scorecard(records, benign=False)["contained"] is True
    assert not any(isinstance(r, (Verdict, Action)) and r not in replayed for r in replayed)


def test_a_replay_is_cut_where_the_new_policy_stops_a_learner_the_recording_let_run(tmp_path):
    strict = tmp_path / "strict.yaml"
    strict.write_text("guards:\n  - {name: hot, signal: cpu_ratio, above: 0.9, for: 2s, action: pause}\n")
    replayed = replay_records(list(read_trace(str(EXAMPLE))), str(strict))
    assert isinstance(replayed[-1], Action) and replayed[-1].action == "pause"  # nothing after it
    # A throttle or disconnect the recording lacks is applied and the recording goes on.
    soft = tmp_path / "soft.yaml"
    soft.write_text("guards:\n  - {name: hot, signal: cpu_ratio, above: 0.9, for: 2s, action: throttle}\n")
    replayed = replay_records(list(read_trace(str(EXAMPLE))), str(soft))
    throttle = next(r for r in replayed if isinstance(r, Action))
    assert throttle.action == "throttle" and replayed[-1].t > throttle.t + 30


def test_identical_rows_for_policies_that_act_alike_on_the_trace(tmp_path):
    # Two policies that differ only in a guard that never fires on this trace take the same
    # actions at the same times, so their rows are identical; the per-run rows show why
    # (the same actions). A policy that acts differently gets a different row.
    from policies import default_policy_path

    text = open(default_policy_path()).read()
    looser = tmp_path / "looser.yaml"
    looser.write_text(text.replace("above: 256", "above: 4096"))  # pids-explosion never fires here either
    strict = tmp_path / "strict.yaml"
    strict.write_text("guards:\n  - {name: hot, signal: cpu_ratio, above: 0.9, for: 2s, action: pause}\n")
    cells = replay_sweep([EXAMPLE], [None, str(looser), str(strict)])
    rows = {r["policy"]: {k: v for k, v in r.items() if k != "policy"} for r in table(cells)}
    assert rows["default"] == rows["looser"] != rows["strict"]
    per_run = {r["policy"]: r for r in run_rows(cells)}
    recorded = ", ".join(f"{a.action} {round(a.t, 3):g}" for a in read_trace(str(EXAMPLE))
                         if isinstance(a, Action) and a.action != "alert")
    assert per_run["default"]["actions"] == per_run["looser"]["actions"] == recorded
    assert per_run["strict"]["actions"].startswith("pause ") and "," not in per_run["strict"]["actions"]


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


def test_sweep_replay_of_a_directory_of_runs_replays_each_run_in_it(tmp_path):
    for name in ("sample-1", "sample-2"):  # what an Inspect eval leaves: one run dir a sample
        (tmp_path / "evals" / name).mkdir(parents=True)
        (tmp_path / "evals" / name / "trace.jsonl").write_text(EXAMPLE.read_text())
    cells = replay_sweep([tmp_path / "evals"], [None])
    assert sorted(Path(c.run_dir).name for c in cells) == ["sample-1", "sample-2"]
    assert table(cells)[0]["runs"] == 2


def test_sweep_replay_writes_a_table(tmp_path):
    p = runaway("sweep", "--replay", str(EXAMPLE), "--out", str(tmp_path))
    assert p.returncode == 0, p.stderr
    rows = list(csv.DictReader(open(tmp_path / "sweep.csv")))
    assert rows and rows[0]["policy"] == "default" and rows[0]["runs"] == "1"
    # The recorded policy replayed over its own recording scores as the report does.
    assert rows[0]["contained_rate"] == "1.0"
    html = (tmp_path / "sweep.html").read_text()
    assert "<table>" in html and "median time to detect (s)" in html and "<th>why</th>" in html
    # Each replay is a run directory of its own, linked from its row.
    runs = list(csv.DictReader(open(tmp_path / "runs.csv")))
    assert len(runs) == 1 and runs[0]["contained"] == "True" and "incident(s) contained" in runs[0]["why"]
    report = Path(runs[0]["run_dir"]) / "report.html"
    assert report.exists() and f'href="{report.relative_to(tmp_path)}"' in html
    # No stray Python values on the terminal.
    assert "None" not in p.stdout and "why" in p.stdout


@pytest.mark.parametrize(
    "args, expect",
    [
        (["run", "novel", "--duration", "-1"], "--duration: expected seconds or a duration like"),
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
