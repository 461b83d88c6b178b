"""What watches a sweep as its cells move: the progress bar or lines (done, running,
failed, retried), and `--file-sd FILE`, through which one real Prometheus follows every
running cell, each target labelled with its run and scenario."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from sim.lab.sweep import Cell, Progress, TargetList

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
EXAMPLE = ROOT / "docs" / "examples" / "novel-trace.jsonl"


def test_progress_counts_cells_done_running_failed_and_retried(monkeypatch):
    import click

    from sim.cli.sweep import _SweepLines

    lines: list[str] = []
    monkeypatch.setattr(click, "echo", lambda msg="", **kw: lines.append(str(msg)))
    p = Progress(3, [_SweepLines()])
    p.started("a", "10.0.0.1/1234abcd")
    p.started("b", "10.0.0.2/5678ef01")
    p.retrying("b", "10.0.0.2/5678ef01: NodeDiedError")
    p.started("b", "10.0.0.1/1234abcd")
    p.started("c")
    p.finished("a", Cell("benign", "default", 0, {"contained": True}, "a"))
    p.failed_cell("c", "no such scenario")
    p.finished("b", Cell("benign", "default", 1, {"contained": True}, "b", attempts=2))
    assert (p.done, len(p.running), len(p.failed), len(p.retried)) == (2, 0, 1, 1)
    assert lines[0] == "start  a on 10.0.0.1/1234abcd"
    assert lines[2] == "retry  b: its node was lost (10.0.0.2/5678ef01: NodeDiedError)"
    assert lines[5] == "done   a: contained True  [1/3 done, 2 running, 0 failed]"
    assert lines[6] == "FAILED c: no such scenario"
    assert lines[7] == "done   b: contained True  [2/3 done, 0 running, 1 failed]"


def test_the_progress_bar_ends_with_the_counts(tmp_path):
    p = subprocess.run([sys.executable, "-m", "sim", "sweep", "--replay", str(EXAMPLE), "--progress",
                        "--out", str(tmp_path)], env={**ENV, "COLUMNS": "160"}, cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "1/1" in p.stdout and "done 1  running 0  failed 0" in p.stdout, p.stdout


def test_the_target_list_holds_exactly_the_running_exporters(tmp_path):
    path = tmp_path / "sd" / "targets.json"
    targets = TargetList(path)
    assert json.loads(path.read_text()) == []
    targets.serving(None, "a", "127.0.0.1", 9001, {"run": "r1", "scenario": "benign"})
    targets.serving(None, "b", "::1", 9002, {"run": "r2", "scenario": "greedy"})
    assert json.loads(path.read_text()) == [
        {"targets": ["127.0.0.1:9001"], "labels": {"run": "r1", "scenario": "benign"}},
        {"targets": ["[::1]:9002"], "labels": {"run": "r2", "scenario": "greedy"}},
    ]
    targets.finished(None, "a", None)
    targets.failed(None, "b", "boom")
    assert json.loads(path.read_text()) == []
    assert sorted(p.name for p in path.parent.iterdir()) == ["targets.json"], "no temp file left"


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


@pytest.mark.slow
def test_one_prometheus_follows_every_cell_of_a_sweep_through_file_sd(tmp_path):
    binary = shutil.which("prometheus")
    if binary is None:
        why = "prometheus not installed (Debian package `prometheus`; .ci/run installs it)"
        pytest.fail(why) if os.environ.get("CI") else pytest.skip(why)
    sd = tmp_path / "targets.json"
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [{"job_name": "runaway-sweep", "honor_labels": True,
                            "file_sd_configs": [{"files": [str(sd)], "refresh_interval": "1s"}]}],
    }))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    prom = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    sweep = subprocess.Popen([sys.executable, "-m", "sim", "sweep", "--scenario", "benign", "--scenario", "greedy",
                              "--seeds", "0", "--duration", "10", "--backend", "process", "--parallel", "2",
                              "--file-sd", str(sd), "--plain", "--out", str(tmp_path / "sweep")],
                             env=ENV, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen: dict[str, str] = {}
        while sweep.poll() is None and len(seen) < 2:
            time.sleep(0.5)
            try:
                active = _get(f"{base}/api/v1/targets")["data"]["activeTargets"]
            except OSError:
                continue
            for t in active:
                if t["health"] == "up":
                    seen[t["labels"]["scenario"]] = t["labels"]["run"]
        assert set(seen) == {"benign", "greedy"}, sweep.communicate()
        # The scraped series carry the same run and scenario as the targets.
        q = urllib.parse.quote("runaway_sandbox_pids")
        series = []
        while sweep.poll() is None and len(series) < 2:
            series = _get(f"{base}/api/v1/query?query={q}")["data"]["result"]
            time.sleep(0.5)
        assert {(r["metric"]["scenario"], r["metric"]["run"]) for r in series} == set(seen.items())
        out, err = sweep.communicate(timeout=120)
        assert sweep.returncode == 0, out[-2000:] + err[-2000:]
        assert json.loads(sd.read_text()) == [], "no exporter is left listed once its cell is done"
    finally:
        for p in (sweep, prom):
            if p.poll() is None:
                p.terminate()
                p.wait(timeout=20)
