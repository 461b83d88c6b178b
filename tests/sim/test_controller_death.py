"""The sandbox never outlives its controller: SIGKILL leaves nothing running (the
watchdog's dead man's switch), SIGTERM and SIGHUP stop a run as cleanly as Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sandbox import procfs
from sandbox.backends.process import ENV_MARK, TMP_PREFIX

from test_run_e2e import leftovers as docker_leftovers  # tests/sim is on sys.path

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


def start_run(out: Path, backend: str, scenario: str = "greedy") -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "sim", "run", scenario, "--backend", backend, "--profile", "ci",
         "--duration", "120", "--out", str(out), "--plain", "--metrics-port", "0"],
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_running(out: Path, proc: subprocess.Popen, samples: int = 6) -> str:
    """The run id, once the learner runs and has been sampled a few times."""
    trace = out / "trace.jsonl"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        if trace.exists():
            text = trace.read_text()
            if text.count('"type":"sample"') >= samples:
                return json.loads(text.splitlines()[0])["run"]
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("the run never started: " + proc.communicate()[0][-3000:])


def until(check, timeout: float = 15.0) -> float:
    """Seconds until check() is true (fails past timeout)."""
    t0 = time.monotonic()
    while not check():
        assert time.monotonic() - t0 < timeout, "still there"
        time.sleep(0.05)
    return time.monotonic() - t0


def learner_pids(run_id: str) -> list[int]:
    out = []
    for pid in procfs.all_pids():
        env = procfs.read_bytes(f"/proc/{pid}/environ") or b""
        if f"{ENV_MARK}={run_id}".encode() + b"\0" in env + b"\0":
            st = procfs.read_stat(pid)
            if st is not None and st.state != "Z":
                out.append(pid)
    return out


def firewall_rules(run_id: str) -> list[str]:
    from sandbox.backends.docker import _run_tag

    rules = subprocess.run(["iptables", "-S"], capture_output=True, text=True).stdout
    return [r for r in rules.splitlines() if _run_tag(run_id) in r]


@pytest.mark.docker
@pytest.mark.slow
def test_sigkill_on_the_controller_stops_the_docker_sandbox_and_removes_its_network(tmp_path):
    proc = start_run(tmp_path / "run", "docker")
    run_id = wait_running(tmp_path / "run", proc)
    assert docker_leftovers(run_id)
    proc.kill()  # SIGKILL: none of the controller's cleanup code runs
    proc.communicate(timeout=10)
    took = until(lambda: not docker_leftovers(run_id))
    print(f"container and network gone {took:.2f} s after SIGKILL")
    until(lambda: firewall_rules(run_id) == [])  # the watchdog removes them right after


@pytest.mark.slow
def test_sigkill_on_the_controller_stops_every_process_of_the_process_sandbox(tmp_path):
    proc = start_run(tmp_path / "run", "process")
    run_id = wait_running(tmp_path / "run", proc)
    assert learner_pids(run_id), "the learner and its workers run"
    proc.kill()
    proc.communicate(timeout=10)
    took = until(lambda: not learner_pids(run_id))
    print(f"learner processes gone {took:.2f} s after SIGKILL")
    until(lambda: not list(Path("/tmp").glob(f"{TMP_PREFIX}{run_id}-*")))


@pytest.mark.slow
@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_and_sighup_stop_the_run_cleanly(tmp_path, sig, status):
    out = tmp_path / "run"
    proc = start_run(out, "process", "benign")
    run_id = wait_running(out, proc, samples=2)
    proc.send_signal(sig)
    text, _ = proc.communicate(timeout=60)
    assert proc.returncode == status, text[-3000:]
    assert "Traceback" not in text
    last = json.loads((out / "trace.jsonl").read_text().splitlines()[-1])
    assert last["kind"] == "run_end" and last["detail"]["stopped_by"] == "interrupted"
    assert (out / "report.html").exists()
    assert learner_pids(run_id) == []


@pytest.mark.slow
def test_sigterm_to_a_sweep_keeps_the_table_of_the_runs_it_finished(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "sim", "sweep", "--scenario", "benign", "--seeds", "0-5", "--duration", "3",
         "--backend", "process", "--profile", "ci", "--parallel", "1", "--out", str(tmp_path)],
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    until(lambda: (tmp_path / "sweep.csv").exists(), timeout=90)
    proc.send_signal(signal.SIGTERM)
    text, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143, text[-3000:]
    assert "Traceback" not in text
    import csv

    rows = list(csv.DictReader(open(tmp_path / "sweep.csv")))
    assert rows and rows[0]["scenario"] == "benign" and int(rows[0]["runs"]) >= 1
    assert not list(tmp_path.glob(".*.tmp"))
    assert not [p for p in Path("/tmp").glob(f"{TMP_PREFIX}*-benign-*")
                if json.loads((p / "owner.json").read_text()).get("owner", "").startswith(f"{proc.pid}:")]
