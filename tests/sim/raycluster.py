"""A real Ray cluster on this host for the tests: a head and worker nodes, each started
with `ray start` in its own ports and temp dir, each declaring the `docker` resource.

Never `ray stop`: it stops every Ray on the host. Stopping here kills only the processes
this cluster started (found by its temp dir, and each raylet's process tree).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


@dataclass
class Node:
    """One `ray start`ed node: its raylet's pid and its node id."""

    raylet: psutil.Process
    node_id: str
    procs: list[psutil.Process] = field(default_factory=list)

    def tree(self) -> list[psutil.Process]:
        try:
            return [self.raylet, *self.raylet.children(recursive=True)]
        except psutil.Error:
            return []

    def kill(self) -> None:
        """The node is lost: its raylet and everything under it die at once (SIGKILL)."""
        for p in self.tree():
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.Error:
                pass


class RayCluster:
    """`ray start --head` plus `workers` more nodes on 127.0.0.1."""

    def __init__(self, *, cpus: float = 1, docker: int = 2, memory: int = 1_500_000_000,
                 object_store: int = 150_000_000) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="rw14-", dir="/tmp"))  # short: unix socket paths
        self.cpus, self.docker, self.memory, self.object_store = cpus, docker, memory, object_store
        self.env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
                    "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
        self.nodes: list[Node] = []
        self.port = 0
        self.seen: set[int] = set()  # every pid of this cluster seen so far (remember_pids)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _start(self, head: bool) -> Node:
        ports = free_ports(9 + 20)
        # This Python's own `ray` (what `pip install -e '.[cluster]'` put beside it).
        args = [sys.executable, "-m", "ray.scripts.scripts", "start", "--node-ip-address", "127.0.0.1", "--num-cpus", str(self.cpus),
                "--resources", f'{{"docker": {self.docker}}}', "--memory", str(self.memory),
                "--object-store-memory", str(self.object_store), "--disable-usage-stats",
                "--node-manager-port", str(ports[1]), "--object-manager-port", str(ports[2]),
                "--dashboard-agent-listen-port", str(ports[3]), "--dashboard-agent-grpc-port", str(ports[4]),
                "--runtime-env-agent-port", str(ports[5]), "--metrics-export-port", str(ports[6]),
                "--worker-port-list", ",".join(map(str, ports[9:]))]
        if head:
            self.port = ports[0]
            args += ["--head", "--port", str(ports[0]), "--temp-dir", str(self.tmp), "--include-dashboard", "false",
                     "--dashboard-port", str(ports[7]), "--ray-client-server-port", str(ports[8])]
        else:
            args += ["--address", self.address]
        before = {p.pid for p in self._ours()}
        p = subprocess.run(args, env=self.env, cwd=self.tmp, capture_output=True, text=True, timeout=300)
        if p.returncode != 0:
            # Ray gives a node 30 s to register, which a loaded host may miss: what this
            # attempt started goes, and the caller may try again.
            self._kill([q for q in self._ours() if q.pid not in before])
            raise RuntimeError(f"ray start failed ({p.returncode}): {p.stderr[-1500:]}")
        new = [r for r in self._raylets() if r.pid not in before]
        assert len(new) == 1, new
        raylet = new[0]
        node_id = next((a.split("=", 1)[1] for a in raylet.cmdline() if a.startswith("--node_id=")), "")
        node = Node(raylet, node_id)
        self.nodes.append(node)
        return node

    def _raylets(self) -> list[psutil.Process]:
        return [p for p in self._ours() if p.name() == "raylet"]

    def _ours(self) -> list[psutil.Process]:
        mine = []
        for p in psutil.process_iter(["cmdline"]):
            try:
                args = p.info["cmdline"] or []
                # The temp dir names most; the client server only knows the head's address.
                if p.pid != os.getpid() and (any(str(self.tmp) in a for a in args) or (self.port and any(
                        a.startswith(("--address=", "--gcs-address=")) and a.endswith(f":{self.port}")
                        for a in args))):
                    mine.append(p)
            except psutil.Error:
                pass
        return mine

    def start(self, workers: int = 1, attempts: int = 3) -> "RayCluster":
        for head in [True] + [False] * workers:
            for attempt in range(attempts):
                try:
                    self._start(head=head)
                    break
                except RuntimeError:
                    if attempt == attempts - 1:
                        raise
        return self

    @staticmethod
    def _kill(procs: list[psutil.Process]) -> None:
        tree = _with_children(procs)
        for p in tree.values():
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(list(tree.values()), timeout=10)

    def stop(self) -> None:
        """Kill every process of this cluster (and only those), then remove its temp dir."""
        procs = _with_children([p for n in self.nodes for p in n.tree()] + self._ours())
        for p in procs.values():
            try:
                p.terminate()
            except psutil.Error:
                pass
        _gone, alive = psutil.wait_procs(list(procs.values()), timeout=10)
        for p in alive:
            try:
                p.kill()
            except psutil.Error:
                pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE
                                                  for p in alive if _exists(p)):
            time.sleep(0.2)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def remember_pids(self) -> None:
        """Note every process of the cluster now (its task workers come and go)."""
        self.seen.update(self.pids())

    def pids(self) -> list[int]:
        """Every live process of this cluster (after stop: none)."""
        out = {p.pid for p in self._ours()}
        for n in self.nodes:
            out |= {p.pid for p in n.tree() if _exists(p) and p.status() != psutil.STATUS_ZOMBIE}
        return sorted(out)


def _with_children(procs: list[psutil.Process]) -> dict[int, psutil.Process]:
    """`procs` and all their descendants, by pid; never this process."""
    tree: dict[int, psutil.Process] = {}
    for p in procs:
        tree[p.pid] = p
        try:
            tree.update({c.pid: c for c in p.children(recursive=True)})
        except psutil.Error:
            pass
    tree.pop(os.getpid(), None)
    return tree


def _exists(p: psutil.Process) -> bool:
    try:
        return p.is_running()
    except psutil.Error:
        return False
