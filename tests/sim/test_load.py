"""Load: eight `ci`-profile runs at once on a 2-core host, on the real Docker backend.

What a user notices after starting several runs together: each finishes, its trace reads
back, its summary is written, and Docker and the firewall hold nothing of any of them.
Nothing here is about speed: on a loaded host the sandboxes may get little CPU, so the
test asserts completion, never progress.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from policies.model import Event, Meta, TraceWarning, read_trace
from sandbox.backends.docker import LABEL, _run_tag, bridge_name

from test_run_e2e import ENV, leftovers  # tests/sim is on sys.path

RUNS = 8
# Short, and the lightest scenario that still serves the mock web to a crawler.
DURATION_S = 8
# Not a time limit on the runs: a bound that only stops a hung test.
HANG_S = 900


@pytest.fixture(scope="module")
def learner_image() -> str:
    from sandbox.image import build_image

    return build_image().tag  # the one image every sandbox shares (a no-op when built)


def firewall_rules(run_id: str) -> list[str]:
    """The host's INPUT rules tagged with this run (both IP versions)."""
    tag = f"{LABEL}={_run_tag(run_id)}"
    rules = []
    for binary in ("iptables", "ip6tables"):
        try:
            out = subprocess.run([binary, "-w", "5", "-S", "INPUT"], capture_output=True, text=True,
                                 timeout=60).stdout
        except FileNotFoundError:
            continue
        rules += [line for line in out.splitlines() if tag in line]
    return rules


def named_leftovers(run_id: str) -> list[str]:
    """Containers and networks named after the run (labels aside), and its bridge."""
    import docker

    name = f"runaway-{_run_tag(run_id)}"
    client = docker.from_env()
    try:
        found = [c.name for c in client.containers.list(all=True, filters={"name": name})]
        found += [n.name for n in client.networks.list(names=[name])]
    finally:
        client.close()
    if os.path.exists(f"/sys/class/net/{bridge_name(run_id)}"):
        found.append(bridge_name(run_id))
    return found


@pytest.mark.docker
@pytest.mark.slow
def test_eight_ci_runs_at_once_all_complete_with_valid_traces_and_leave_nothing(tmp_path: Path, learner_image):
    procs = []
    for i in range(RUNS):
        out = tmp_path / f"run{i}"
        log = open(tmp_path / f"run{i}.log", "w")
        procs.append((out, log, subprocess.Popen(
            [sys.executable, "-m", "sim", "run", "benign", "--backend", "docker", "--profile", "ci",
             "--duration", str(DURATION_S), "--seed", str(i), "--out", str(out), "--plain",
             "--metrics-port", "0"],
            env=ENV, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)))
    failed = []
    for out, log, p in procs:
        try:
            code = p.wait(timeout=HANG_S)
        except subprocess.TimeoutExpired:
            p.kill()
            code = p.wait()
        log.close()
        if code != 0:
            failed.append(f"{out.name}: exit {code}: {Path(log.name).read_text()[-2000:]}")
    assert not failed, "\n".join(failed)

    run_ids = []
    for out, _, _ in procs:
        with warnings.catch_warnings():
            warnings.simplefilter("error", TraceWarning)  # a cut last line is read with one: none here
            records = list(read_trace(str(out / "trace.jsonl")))
        assert isinstance(records[0], Meta) and records[0].backend == "docker", out
        assert records[0].caps["cpus"] == 0.5, "the ci profile"
        ends = [r for r in records if isinstance(r, Event) and r.kind == "run_end"]
        assert len(ends) == 1, f"{out.name}: {len(ends)} run_end records"
        summary = json.loads((out / "summary.json").read_text())
        assert summary["version"] == 1 and summary["run"] == records[0].run, out
        run_ids.append(records[0].run)
    assert len(set(run_ids)) == RUNS, f"each run has its own id: {run_ids}"

    for run_id in run_ids:
        assert leftovers(run_id) == [], run_id
        assert named_leftovers(run_id) == [], run_id
        assert firewall_rules(run_id) == [], run_id
