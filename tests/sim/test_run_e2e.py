"""End to end: `runaway run` as a user runs it, on real Docker (ci profile) and on the
process fallback, reading what a run leaves behind (trace, summary, report)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from docker_left import labelled as leftovers  # tests/ is on sys.path

from policies.model import Action, Event, Meta, Verdict, read_trace

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


def runaway(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sim", *args], env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def run_scenario(tmp_path: Path, scenario: str, *extra: str, backend: str = "docker",
                 duration: float = 60) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path / scenario
    p = runaway("run", scenario, "--backend", backend, "--profile", "ci", "--duration", str(duration),
                "--out", str(out), "--plain", "--metrics-port", "0", *extra)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p, out


def load(out: Path) -> tuple[list, dict]:
    records = list(read_trace(str(out / "trace.jsonl")))
    summary = json.loads((out / "summary.json").read_text())
    return records, summary


def firing(records: list) -> set[str]:
    return {r.guard for r in records if isinstance(r, Verdict) and r.state == "firing"}


@pytest.mark.docker
def test_novel_is_contained_with_cpu_and_escalation_detected(tmp_path):
    # The story reaches the Docker socket at 40-44 s of the learner's time, after its
    # start-up; the kill ends the run well before 90 s.
    _, out = run_scenario(tmp_path, "novel", duration=90)
    records, summary = load(out)
    meta = records[0]
    assert isinstance(meta, Meta) and meta.backend == "docker" and meta.caps["cpus"] == 0.5
    guards = firing(records)
    assert guards & {"cpu-pegged", "cpu-duty-cycle"}, guards
    assert "escalation" in guards
    kills = [r for r in records if isinstance(r, Action) and r.action == "kill"]
    assert kills and kills[0].ok
    assert summary["contained"] is True
    assert summary["escaped"] == []
    assert (out / "report.html").stat().st_size > 10_000
    assert any((out / "evidence").iterdir()), "a kill saves evidence first"
    assert leftovers(meta.run) == []


@pytest.mark.docker
def test_benign_raises_no_alarm(tmp_path):
    _, out = run_scenario(tmp_path, "benign", duration=20)
    records, summary = load(out)
    assert firing(records) == set()
    assert not [r for r in records if isinstance(r, Action)]
    assert summary["false_alarms"] in (0, [])
    pages = [r.extra.get("pages") for r in records if hasattr(r, "extra") and r.extra.get("pages")]
    assert pages and max(pages) > 5, "the benign crawler did useful work"


@pytest.mark.docker
def test_novel_without_guards_attempts_are_blocked_by_the_sandbox_but_undetected(tmp_path):
    _, out = run_scenario(tmp_path, "novel", "--no-guards", duration=80)
    records, summary = load(out)
    assert not [r for r in records if isinstance(r, (Verdict, Action))]
    blocked = {r.kind for r in records if isinstance(r, Event) and r.source == "audit" and r.outcome == "blocked"}
    assert "docker_socket" in blocked, blocked
    assert "connect" in blocked  # the subnet scan met the closed network
    assert summary["detections"] == []
    assert summary["contained"] is False


@pytest.mark.docker
def test_a_python_agent_is_watched_by_the_audit_hook_and_contained(tmp_path):
    agent = tmp_path / "agent"
    agent.mkdir()
    (agent / "agent.py").write_text(
        "import os, time\n"
        "print('agent: hello', flush=True)\n"
        "time.sleep(1)\n"
        "try:\n"
        "    open('/etc/shadow').read()\n"
        "except OSError as e:\n"
        "    print('agent: shadow', e.errno, flush=True)\n"
        "time.sleep(30)\n"
    )
    out = tmp_path / "agent-run"
    p = runaway("run", "--agent", "python3 agent.py", "--agent-dir", str(agent), "--backend", "docker",
                "--profile", "ci", "--duration", "25", "--out", str(out), "--plain", "--metrics-port", "0")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    records, summary = load(out)
    assert records[0].extra["agent"]["watched"] is True
    assert records[0].extra["agent"]["watched_by"] == ["outside", "syscalls", "audit hook"]
    audit = [r for r in records if isinstance(r, Event) and r.source == "audit" and r.category == "escalation"]
    assert audit and audit[0].kind == "read_sensitive_file" and "/etc/shadow" in str(audit[0].detail)
    # Seen by the hook and by the tracer: one event for the guards (the hook's is recorded
    # as corroborating the tracer's, which has the call's result).
    shadow = [r for r in records if isinstance(r, Event) and "/etc/shadow" in str(r.detail.get("path"))]
    stepped = [r for r in shadow if "corroborates" not in r.detail]
    assert [(r.source, r.outcome) for r in stepped] == [("observer", "blocked")], shadow
    assert "escalation" in firing(records)
    log = (out / "learner.log").read_text()
    assert "agent: hello" in log
    # The tracer's event carries the kernel's refusal; the kill may land before the agent
    # reports it, and if it did report, it was EACCES.
    assert "agent: shadow 13" in log or "agent: shadow" not in log
    kill = [r for r in records if isinstance(r, Action) and r.action == "kill"]
    assert kill and kill[0].ok and records[-1].t < 20


@pytest.mark.docker
@pytest.mark.slow
def test_a_shell_agent_and_a_compiled_agent_are_caught_by_the_syscall_tracer(tmp_path):
    from sim.lab.selftest import build_compiled

    agent = tmp_path / "agent"
    agent.mkdir()
    agent.chmod(0o755)
    (agent / "agent.sh").write_text("echo 'agent: hello'\nsleep 1\ncat /etc/shadow\necho \"agent: shadow $?\"\nsleep 30\n")
    src = tmp_path / "agent.c"
    src.write_text('#include <errno.h>\n#include <stdio.h>\n#include <unistd.h>\n'
                   'int main(void) { puts("agent: hello"); fflush(stdout); sleep(1);\n'
                   '  int r = setuid(0); printf("agent: setuid %d %d\\n", r, errno); fflush(stdout);\n'
                   '  sleep(30); return 0; }\n')
    build_compiled(agent, src)
    for cmd, kind, said in (("sh agent.sh", "read_sensitive_file", "agent: shadow 1"),
                            ("./attempts", "setuid", "agent: setuid -1 1")):
        out = tmp_path / f"run-{kind}"
        p = runaway("run", "--agent", cmd, "--agent-dir", str(agent), "--backend", "docker",
                    "--profile", "ci", "--duration", "25", "--out", str(out), "--plain", "--metrics-port", "0")
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
        assert "watched at the syscall level" in p.stdout + p.stderr
        records, summary = load(out)
        assert records[0].extra["agent"] == {"argv": cmd.split(), "watched": True,
                                             "watched_by": ["outside", "syscalls"]}
        seen = [r for r in records if isinstance(r, Event) and r.source == "observer" and r.kind == kind]
        assert seen and seen[0].outcome == "blocked" and seen[0].category == "escalation"
        assert "escalation" in firing(records)
        # The kernel refused it (the event's outcome is the call's result); the kill may land
        # before the agent gets to say so itself.
        log = (out / "learner.log").read_text()
        assert "agent: hello" in log
        assert said in log or not [line for line in log.splitlines() if line.startswith(said.split()[0] + " " + said.split()[1])], \
            "if the agent got to report its attempt, it was refused"
        kill = [r for r in records if isinstance(r, Action) and r.action == "kill"]
        assert kill and kill[0].ok and records[-1].t < 20


@pytest.mark.docker
def test_a_shell_agent_that_cds_into_scratch_is_left_alone_and_its_writes_outside_are_seen(tmp_path):
    agent = tmp_path / "agent"
    agent.mkdir()
    agent.chmod(0o755)
    # Relative paths everywhere, after cd: into scratch they are its own business.
    (agent / "inside.sh").write_text(
        'echo "agent: hello"\n'
        'cd "$RUNAWAY_SCRATCH" && mkdir -p work/x && cd work && echo hi > x/f && mkdir -p ../y/z &&\n'
        '  mv x/f ../y/z/g && ln -s x lnk && echo ok > lnk/h && (cd ../y && rm -r z) && cd .. && rm -r work\n'
        'echo "agent: done $?"\n')
    # The same moves, climbing out of it: still outside, however the path was spelled.
    (agent / "outside.sh").write_text(
        'echo "agent: hello"\n'
        'cd "$RUNAWAY_SCRATCH" && mkdir -p work && cd work && mkdir ../../opt/x\n'
        'echo "agent: mkdir $?"\nsleep 2\n')
    for script in ("inside.sh", "outside.sh"):
        out = tmp_path / f"run-{script}"
        p = runaway("run", "--agent", f"sh {script}", "--agent-dir", str(agent), "--backend", "docker",
                    "--profile", "ci", "--duration", "20", "--out", str(out), "--plain", "--metrics-port", "0")
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
        records, _ = load(out)
        log = (out / "learner.log").read_text()
        writes = [r for r in records if isinstance(r, Event) and r.source == "observer"
                  and r.category in ("filesystem", "escalation")]
        if script == "inside.sh":
            assert "agent: done 0" in log, log[-2000:]
            assert writes == [] and firing(records) == set(), [r.detail for r in writes]
            assert [r for r in records if isinstance(r, Event) and r.kind == "exec"
                    and r.detail.get("path") == "/usr/bin/mkdir"], "the tracer saw the agent work"
        else:
            assert "agent: mkdir 1" in log, log[-2000:]
            [w] = [r for r in writes if r.kind == "write_outside_scratch"]
            assert (w.outcome, w.detail["path"], w.detail["given"]) == ("blocked", "/opt/x", "../../opt/x")


@pytest.mark.docker
def test_operator_stop_obeyed_by_benign_and_ignored_by_stubborn_then_killed(tmp_path):
    _, out = run_scenario(tmp_path, "benign", "--operator-stop-at", "4", duration=30)
    records, summary = load(out)
    kinds = [r.kind for r in records if isinstance(r, Event) and r.category == "operator"]
    assert "stop" in kinds and "stop_obeyed" in kinds and "stop_ignored" not in kinds
    assert not [r for r in records if isinstance(r, Action) and r.action == "kill"]
    assert records[-1].t < 20, "the learner left when asked, well before the duration"

    _, out = run_scenario(tmp_path, "stubborn", "--operator-stop-at", "4", "--no-guards", duration=30)
    records, summary = load(out)
    kinds = [r.kind for r in records if isinstance(r, Event) and r.category == "operator"]
    assert "stop_ignored" in kinds
    kill = [r for r in records if isinstance(r, Action) and r.action == "kill"]
    assert kill and kill[0].ok and kill[0].t < 20


@pytest.mark.docker
def test_ctrl_c_mid_run_leaves_a_valid_trace_and_report_and_no_container(tmp_path):
    out = tmp_path / "interrupted"
    proc = subprocess.Popen([sys.executable, "-m", "sim", "run", "novel", "--backend", "docker", "--profile", "ci",
                             "--duration", "120", "--out", str(out), "--plain", "--metrics-port", "0"],
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    trace = out / "trace.jsonl"
    # wait until the learner is running and sampled
    while time.monotonic() < deadline:
        if trace.exists() and trace.read_text().count('"type":"sample"') >= 8:
            break
        time.sleep(0.25)
    proc.send_signal(signal.SIGINT)
    text, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, text[-3000:]
    assert "Traceback" not in text
    records, summary = load(out)
    assert records[-1].kind == "run_end" and records[-1].detail["stopped_by"] == "interrupted"
    assert (out / "report.html").exists()
    assert leftovers(records[0].run) == []


@pytest.mark.parametrize("scenario", ["benign", "greedy"])
def test_process_backend_runs_and_says_it_is_not_a_boundary(tmp_path, scenario):
    # cpu-pegged holds for 20 s once the learner's demand passes 0.9 (~3 s in, sooner when
    # its start-up already pegs): 45 s leaves room for a slow start on a busy host.
    p, out = run_scenario(tmp_path, scenario, backend="process", duration=45 if scenario == "greedy" else 22)
    records, summary = load(out)
    meta = records[0]
    assert meta.backend == "process" and meta.extra["security_boundary"] is False
    assert "not a security boundary" in p.stdout.lower()
    samples = [r for r in records if type(r).__name__ == "Sample"]
    assert len(samples) > 20
    if scenario == "greedy":
        # What it asked for: what it got depends on how busy the host is.
        assert max(s.extra.get("cpu_demand", 0) for s in samples) > 0.9
        assert firing(records) & {"cpu-pegged", "cpu-duty-cycle"}
    else:
        assert firing(records) == set()


def test_a_live_sweep_runs_every_combination_side_by_side_and_tables_them(tmp_path):
    p = runaway("sweep", "--scenario", "benign", "--scenario", "greedy", "--seeds", "0-1", "--duration", "6",
                "--backend", "process", "--profile", "ci", "--parallel", "2", "--out", str(tmp_path))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    import csv

    rows = {r["scenario"]: r for r in csv.DictReader(open(tmp_path / "sweep.csv"))}
    assert set(rows) == {"benign", "greedy"}
    assert rows["benign"]["runs"] == rows["greedy"]["runs"] == "2"
    assert rows["benign"]["false_alarms"] == "0"
    for name in ("benign-default-s0", "benign-default-s1", "greedy-default-s0", "greedy-default-s1"):
        assert (tmp_path / name / "report.html").exists()


@pytest.mark.docker
def test_the_demo_runs_the_novel_on_docker_and_says_where_the_report_is(tmp_path):
    p = subprocess.run([sys.executable, "-m", "sim", "demo", "--duration", "8", "--plain", "--metrics-port", "0"], env=ENV, cwd=tmp_path,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "backend docker" in p.stdout
    lines = p.stdout.strip().splitlines()
    report = next(ln for ln in lines if ln.startswith("Open the report: ")).split("Open the report: ", 1)[1]
    assert (tmp_path / report).is_file() if not report.startswith("/") else Path(report).is_file()
    # It ends with its headline, the scorecard's own sentence.
    card = json.loads((Path(report).parent if report.startswith("/") else tmp_path / Path(report).parent)
                      .joinpath("summary.json").read_text())
    assert lines[-1] == card["headline"]
    assert "stopping: " in p.stdout  # the teardown says what it is doing
