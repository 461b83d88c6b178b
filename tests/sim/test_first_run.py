"""Papercuts a new user meets on the first runs: durations, a second run beside a first,
and a learning meter that has measured nothing yet."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from policies.model import Meta, Sample
from sim.cli.run import demo_cmd, run_cmd
from sim.cli.sweep import sweep_cmd
from sim.report.scorecard import scorecard

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


def runaway(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sim", *args], env=ENV, capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


@pytest.mark.parametrize("text, seconds", [("60s", 60.0), ("60", 60.0), ("2.5", 2.5), ("1m30s", 90.0),
                                           ("250ms", 0.25), ("2m", 120.0)])
def test_durations_on_the_command_line_read_like_the_policy_language_or_bare_seconds(text, seconds):
    for cmd, name in ((run_cmd, "run"), (demo_cmd, "demo"), (sweep_cmd, "sweep")):
        ctx = cmd.make_context(name, ["--duration", text])
        assert ctx.params["duration"] == seconds, (name, text)
    ctx = run_cmd.make_context("run", ["--operator-stop-at", text])
    assert ctx.params["operator_stop_at"] == seconds


@pytest.mark.parametrize("text", ["soon", "5 seconds", "-3", "1d", ""])
def test_a_bad_duration_is_one_line_with_exit_2_and_leaves_no_run_dir(tmp_path, text):
    p = runaway("run", "benign", "--duration", text, "--out", str(tmp_path / "r"), cwd=tmp_path)
    assert p.returncode == 2, p.stdout + p.stderr
    assert p.stderr.startswith("runaway: --duration: expected seconds or a duration like") and \
        len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not (tmp_path / "r").exists() and not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_a_second_run_beside_one_holding_the_metrics_port_serves_on_another(tmp_path):
    with socket.socket() as held:  # the first run's exporter, as far as the second can tell
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        p = runaway("run", "benign", "--backend", "process", "--profile", "ci", "--duration", "3s",
                    "--metrics-port", str(port), "--plain", "--out", str(tmp_path / "second"), timeout=120)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert f"--metrics-port {port} is taken" in p.stdout
    assert json.loads((tmp_path / "second" / "summary.json").read_text())["run"]


def test_bits_per_char_at_start_is_null_until_the_learner_measured_something():
    meta = Meta(run="r", scenario="novel")
    nothing = [meta, Sample(t=0.25, extra={"pages": 0}), Sample(t=0.5, extra={"pages": 0, "bits_per_char": 0.0})]
    assert scorecard(nothing, benign=False)["usefulness"]["bits_per_char_at_start"] is None
    later = [*nothing, Sample(t=0.75, extra={"pages": 3, "bits_per_char": 4.2}),
             Sample(t=1.0, extra={"pages": 9, "bits_per_char": 3.1})]
    use = scorecard(later, benign=False)["usefulness"]
    assert (use["bits_per_char_at_start"], use["bits_per_char_at_end"]) == (4.2, 3.1)
