"""Sweeps on a real Ray cluster on this host: a head and one worker node, each started with
`ray start` and declaring the `docker` resource, shared by the module's tests (the node
kill comes last). Nothing may be left behind: no Ray process, container or network."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[cluster]'; .ci/run installs it)")

from policies.model import Meta, TraceWriter, read_trace  # noqa: E402
from sim.report.synthetic import benign_like, novel_like, stubborn_like  # noqa: E402
from sim.lab.sweep import LocalExecutor, Progress  # noqa: E402

from docker_left import made_by  # noqa: E402  (tests/ is on sys.path)
from raycluster import RayCluster  # noqa: E402  (tests/sim is on sys.path)

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "RAY_USAGE_STATS_ENABLED": "0"}
GRID = ["--scenario", "benign", "--scenario", "greedy", "--seeds", "0-1", "--profile", "ci", "--backend", "docker",
        "--plain"]
# What a 6 s live run got to (an incident begun, a guard's action) is the host's speed too
# (a CI run saw a greedy cell contained locally and not on the cluster): the live comparison
# is of the cells and columns; the replay sweep below, over the same traces, compares every value.


@pytest.fixture(scope="module")
def cluster():
    c = RayCluster(cpus=1, docker=2)
    try:
        c.start(workers=1)
        yield c
    finally:
        c.stop()


def runaway(*args: str, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sim", *args], env={**ENV, **(env or {})}, capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def rows(out: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(open(out / "sweep.csv")))


def assert_valid_runs(out: Path) -> None:
    names = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert names == ["benign-default-s0", "benign-default-s1", "greedy-default-s0", "greedy-default-s1"]
    for name in names:
        records = list(read_trace(str(out / name / "trace.jsonl")))
        meta = records[0]
        assert isinstance(meta, Meta) and meta.backend == "docker" and meta.caps["profile"] == "ci"
        assert meta.scenario == name.split("-")[0] and meta.seed == int(name[-1])
        assert any(type(r).__name__ == "Sample" for r in records)
        summary = json.loads((out / name / "summary.json").read_text())
        assert summary["scenario"] == meta.scenario
        assert (out / name / "report.html").is_file()


@pytest.mark.parametrize("address, expect", [
    ("127.0.0.1:{port}", "--cluster: no Ray cluster answers at 127.0.0.1:"),
    ("nonsense", "--cluster: expected a Ray address like HOST:6379"),
])
def test_a_cluster_that_does_not_answer_is_one_line_and_exit_2(address, expect, tmp_path):
    from raycluster import free_ports

    p = runaway("sweep", "--seeds", "0", "--cluster", address.format(port=free_ports(1)[0]),
                "--out", str(tmp_path / "o"), timeout=120)
    assert p.returncode == 2, p.stdout + p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0], p.stderr
    assert not (tmp_path / "o").exists()


def test_a_cluster_sweep_gives_the_run_dirs_and_the_table_of_a_local_sweep(cluster, tmp_path):
    here, there = tmp_path / "local", tmp_path / "cluster"
    p = runaway("sweep", *GRID, "--duration", "6", "--parallel", "2", "--out", str(here))
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    # `auto`: the cluster this host is part of (Ray finds it through RAY_ADDRESS here).
    p = runaway("sweep", *GRID, "--duration", "6", "--cluster", "auto", "--out", str(there),
                env={"RAY_ADDRESS": cluster.address})
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    cluster.remember_pids()
    assert_valid_runs(there)
    # Both nodes took cells (the sweep spreads them), and the output says where each ran.
    nodes = {line.rsplit(" on ", 1)[1] for line in p.stdout.splitlines() if line.startswith("start ")}
    assert {n.split("/")[1] for n in nodes} == {n.node_id[:8] for n in cluster.nodes}
    cells = ("scenario", "policy", "runs")
    assert [{k: r[k] for k in cells} for r in rows(there)] == [{k: r[k] for k in cells} for r in rows(here)]
    assert list(rows(there)[0]) == list(rows(here)[0]), "the same columns"
    assert "retried" not in rows(there)[0]
    # One row per run, the same runs (what the run did and why is its own story each time).
    per_run = [{k: r[k] for k in ("scenario", "policy", "seed")} for r in csv.DictReader(open(there / "runs.csv"))]
    assert per_run == [{k: r[k] for k in ("scenario", "policy", "seed")} for r in csv.DictReader(open(here / "runs.csv"))]
    assert [Path(r["run_dir"]).name for r in csv.DictReader(open(there / "runs.csv"))] == \
        ["benign-default-s0", "benign-default-s1", "greedy-default-s0", "greedy-default-s1"]
    html = (there / "sweep.html").read_text()
    # Two tables, each with its header row: 2 rows by scenario and policy, 4 by run.
    assert html.count("<tr") == (here / "sweep.html").read_text().count("<tr") == (1 + 2) + (1 + 4)


def _traces(root: Path, n: int) -> list[Path]:
    makers = (novel_like, benign_like, stubborn_like)
    dirs = []
    for i in range(n):
        d = root / f"run{i:02d}"
        d.mkdir(parents=True)
        w = TraceWriter(str(d / "trace.jsonl"))
        for rec in makers[i % 3](f"r{i}", seed=i):
            w.write(rec)
        w.close()
        dirs.append(d)
    return dirs


def test_a_replay_sweep_over_50_traces_on_the_cluster_equals_the_local_one_cell_for_cell(cluster, tmp_path):
    from sim.lab.cluster import RayExecutor

    traces = _traces(tmp_path / "runs", 50)
    strict = tmp_path / "strict.yaml"
    strict.write_text("guards:\n  - name: any-escalation\n    on_event: {category: escalation}\n    action: kill\n")
    policies = [None, str(strict)]
    here, there = tmp_path / "local", tmp_path / "cluster"
    local = LocalExecutor(1).replay(traces, policies, Progress(len(traces)), out=here)
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray_exec = RayExecutor(cluster.address)
    try:
        remote = ray_exec.replay(traces, policies, Progress(len(traces)), out=there)
    finally:
        ray_exec.close()
    assert len(remote) == len(local) == 100
    # The same cells, each replay's run directory in its own sweep directory.
    assert [replace(c, run_dir=str(Path(c.run_dir).relative_to(there))) for c in remote] == \
        [replace(c, run_dir=str(Path(c.run_dir).relative_to(here))) for c in local]
    assert {c.policy for c in remote} == {"default", "strict"}
    for c in remote[:3]:
        assert (Path(c.run_dir) / "report.html").is_file()
        assert (Path(c.run_dir) / "trace.jsonl").read_bytes() == \
            (here / Path(c.run_dir).name / "trace.jsonl").read_bytes()


def test_ctrl_c_on_a_cluster_sweep_stops_the_cells_on_the_nodes_and_leaves_nothing(cluster, tmp_path):
    """Ctrl-C on the driver of a cluster sweep exits 130 with one line, and by the time it
    has exited the cells under way on the nodes have stopped and removed their sandboxes."""
    out = tmp_path / "sweep"
    proc = subprocess.Popen([sys.executable, "-m", "sim", "sweep", *GRID, "--duration", "300",
                             "--cluster", cluster.address, "--out", str(out)],
                            env=ENV, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    running: list[str] = []
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if line.startswith("start "):
                running.append(line.split()[1])
            if len(running) == 2:
                break
        assert len(running) == 2, "".join(lines)
        # Wait until the cells' sandboxes exist (the image check and start come first).
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            cluster.remember_pids()
            if len(made_by(cluster.seen)) >= 2:
                break
            time.sleep(0.5)
        assert made_by(cluster.seen), "the cells never started a sandbox"
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, "".join(lines)[-2000:] + err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert err.strip().splitlines()[-1].startswith("runaway: interrupted"), err[-2000:]
    # The nodes stopped their runs before the driver returned: nothing is left to clean.
    cluster.remember_pids()
    assert made_by(cluster.seen) == []


def test_a_plugin_the_nodes_cannot_import_fails_its_cells_in_one_line_each(cluster, tmp_path):
    """A --plugin module the driver has but the nodes do not fails every cell with a line
    naming the module, and the sweep exits 1; nothing runs unguarded by the policy."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "rw_only_here.py").write_text(
        "from policies import Guard, register_guard\n\n"
        "@register_guard('only-here')\nclass OnlyHere(Guard):\n    pass\n")
    policy = tmp_path / "p.yaml"
    policy.write_text("guards:\n  - name: esc\n    on_event: {category: escalation}\n    action: kill\n")
    out = tmp_path / "sweep"
    p = runaway("sweep", "--scenario", "benign", "--seeds", "0", "--profile", "ci", "--backend", "docker", "--plain",
                "--duration", "5", "--policy", str(policy), "--plugin", "rw_only_here", "--cluster", cluster.address,
                "--out", str(out), env={"PYTHONPATH": f"{ROOT}{os.pathsep}{plugins}"})
    assert p.returncode == 1, p.stdout[-2000:] + p.stderr[-2000:]
    failed = [line for line in p.stderr.splitlines() if line.startswith("failed ")]
    assert len(failed) == 1 and "--plugin" in failed[0] and "rw_only_here" in failed[0], p.stderr[-2000:]
    assert "Traceback" not in p.stderr
    cluster.remember_pids()
    assert made_by(cluster.seen) == []


def test_a_cell_whose_node_is_lost_runs_again_elsewhere_and_the_table_says_so(cluster, tmp_path):
    out = tmp_path / "sweep"
    worker = cluster.nodes[1]
    proc = subprocess.Popen([sys.executable, "-m", "sim", "sweep", *GRID, "--duration", "12",
                             "--cluster", cluster.address, "--out", str(out)],
                            env=ENV, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        on_worker = []
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if line.startswith("start ") and line.rstrip().endswith("/" + worker.node_id[:8]):
                on_worker.append(line.split()[1])
            if len(on_worker) == 2:  # the worker's two slots are busy: it is lost now
                break
        assert on_worker, "".join(lines)
        cluster.remember_pids()
        worker.kill()
        rest, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    lines += rest.splitlines(keepends=True)
    assert proc.returncode == 0, "".join(lines)[-3000:] + err[-3000:]
    assert_valid_runs(out)
    retried = [line.split()[1].rstrip(":") for line in lines if line.startswith("retry ")]
    assert sorted(retried) == sorted(on_worker)
    table = rows(out)
    assert sum(int(r["retried"]) for r in table) == len(on_worker)
    for name in on_worker:  # it ran to the end somewhere else: a whole trace, a report
        end = list(read_trace(str(out / name / "trace.jsonl")))[-1]
        assert end.kind == "run_end" and end.detail["stopped_by"] in ("duration", "kill", "learner_exit")


def test_nothing_is_left_behind(cluster):
    import docker

    cluster.remember_pids()
    cluster.stop()
    assert cluster.pids() == []
    # The lost node's sandboxes lost their controller with it: they are what `runaway
    # clean` removes (by run id here, so no other session's run is touched), and then none
    # made under the cluster remain.
    import sandbox

    ours = {str(pid) for pid in cluster.seen}

    def left() -> dict[str, str]:
        client = docker.from_env(timeout=120)
        try:
            labels = [c.labels for c in client.containers.list(all=True, filters={"label": "runaway.run"})]
            labels += [n.attrs.get("Labels") or {} for n in client.networks.list(filters={"label": "runaway.run"})]
        finally:
            client.close()
        return {lb["runaway.run"]: lb.get("runaway.owner", "") for lb in labels
                if lb.get("runaway.owner", "").split(":")[0] in ours}

    for run_id in left():
        sandbox.clean(run_id)
    assert left() == {}
