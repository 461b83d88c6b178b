"""Crash-safe traces and runs that fail cleanly: a cut last line is skipped with a warning,
a full disk is one line and exit 2 with only complete lines kept, and a run that never
started leaves no directory behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from policies.model import Meta, Sample, TraceError, TraceWarning, TraceWriter, read_trace

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


def runaway(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sim", *args], env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def write_run(d: Path, n: int = 30) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    with TraceWriter(str(d / "trace.jsonl")) as w:
        w.write(Meta(run="r1", scenario="greedy", backend="process"))
        for i in range(n):
            w.write(Sample(t=i * 0.5, cpu_ratio=1.0, pids=2))
    return d


@pytest.fixture
def tiny_disk(tmp_path):
    """A 64 KiB tmpfs, most of it taken, so the next few KiB written fill it."""
    d = tmp_path / "disk"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(d)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        filler = d / "filler"
        with open(filler, "wb") as fh:
            try:
                fh.write(b"x" * (64 * 1024 - 12 * 1024))
            except OSError:
                pass
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


def test_report_rebuilds_a_run_whose_last_line_was_cut(tmp_path):
    run = write_run(tmp_path / "run")
    trace = run / "trace.jsonl"
    text = trace.read_text()
    trace.write_text(text + '{"type":"sample","t":15.0,"cpu_ra')  # what a crash leaves
    with pytest.warns(TraceWarning, match="cut short"):
        assert len(list(read_trace(str(trace)))) == 31
    p = runaway("report", str(run))
    assert p.returncode == 0, p.stderr
    assert "runaway: warning:" in p.stderr and "Traceback" not in p.stderr
    assert (run / "report.html").exists()


def test_a_cut_line_in_the_middle_is_still_an_error(tmp_path):
    run = write_run(tmp_path / "run")
    trace = run / "trace.jsonl"
    lines = trace.read_text().split("\n")
    lines[3] = lines[3][:10]
    trace.write_text("\n".join(lines))
    with pytest.raises(TraceError, match=":4: not a JSON object"):
        list(read_trace(str(trace)))


def test_report_on_a_directory_with_no_run_exits_2(tmp_path):
    (tmp_path / "trace.jsonl").write_text('{"type":"event","t":0,"source":"operator","category":"lifecycle",'
                                          '"kind":"run_end"}\n')
    p = runaway("report", str(tmp_path))
    assert p.returncode == 2 and "no run here" in p.stderr and "Traceback" not in p.stderr


def test_a_full_disk_keeps_only_complete_lines(tiny_disk):
    path = tiny_disk / "trace.jsonl"
    w = TraceWriter(str(path))
    w.write(Meta(run="r1"))
    with pytest.raises(TraceError, match="No space left on device"):
        for i in range(10_000):
            w.write(Sample(t=float(i), cpu_ratio=0.5, extra={"pad": "y" * 300}))
    w.close()
    text = path.read_text()
    assert text.endswith("\n")
    assert all(json.loads(line) for line in text.splitlines())


def test_a_run_on_a_full_disk_stops_with_one_line_and_leaves_complete_lines(tiny_disk):
    out = tiny_disk / "run"
    p = runaway("run", "benign", "--backend", "process", "--profile", "ci", "--duration", "60", "--out", str(out),
                "--plain", "--metrics-port", "0")
    assert p.returncode == 2, p.stdout[-2000:] + p.stderr[-2000:]
    assert "Traceback" not in p.stderr
    assert "No space left on device" in p.stderr.strip().splitlines()[-1]
    text = (out / "trace.jsonl").read_text()
    assert text.endswith("\n") and all(json.loads(line) for line in text.splitlines())
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")]


def test_a_run_that_cannot_start_leaves_no_directory(tmp_path):
    out = tmp_path / "run"
    p = runaway("run", "benign", "--backend", "process", "--profile", "ci", "--duration", "5", "--out", str(out),
                "--plain", "--metrics-port", "0", "--agent", "/nonexistent/agent")
    assert p.returncode == 2, p.stdout[-2000:] + p.stderr[-2000:]
    assert "Traceback" not in p.stderr
    assert not out.exists()
