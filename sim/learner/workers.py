"""The learner's extra processes and memory: CPU burners, spawned workers, the ballast.

Children are forked (no exec, no new interpreter) and only ever run a small loop, then
`os._exit`; each checks that its parent is still alive, so none outlives the learner even
if the learner is SIGKILLed. All counts are bounded (MAX_PROCESSES).
"""

from __future__ import annotations

import math
import os
import signal
import time

MAX_PROCESSES = 64
SLICE_S = 0.1  # a burner's duty cycle period


def available_cpus() -> float:
    """CPUs this process may use: RUNAWAY_CPUS (the cap the controller applied, for backends
    the learner cannot read it from), else the cgroup quota, else the affinity mask."""
    try:
        given = float(os.environ.get("RUNAWAY_CPUS") or 0)
    except ValueError:
        given = 0.0
    if given > 0:
        return given
    try:
        n = float(len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        n = float(os.cpu_count() or 1)
    quota = None
    try:
        with open("/sys/fs/cgroup/cpu.max") as fh:  # cgroup v2
            q, p = fh.read().split()[:2]
            if q != "max":
                quota = int(q) / int(p)
    except (OSError, ValueError):
        for d in ("/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpu"):
            try:
                with open(d + "/cpu.cfs_quota_us") as fq, open(d + "/cpu.cfs_period_us") as fp:
                    q, p = int(fq.read()), int(fp.read())
                if q > 0:
                    quota = q / p
                break
            except (OSError, ValueError):
                continue
    return min(n, quota) if quota else n


def memory_limit_mb() -> float | None:
    """This cgroup's memory limit in MB (v2 memory.max or v1 memory.limit_in_bytes), if any."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as fh:
                raw = fh.read().strip()
        except OSError:
            continue
        if raw == "max":
            return None
        try:
            v = int(raw)
        except ValueError:
            continue
        return v / (1 << 20) if v < (1 << 60) else None  # v1 says "no limit" with a huge number
    return None


def memory_usage_mb() -> float | None:
    """What this cgroup uses now, in MB (v2 memory.current or v1 memory.usage_in_bytes)."""
    for path in ("/sys/fs/cgroup/memory.current", "/sys/fs/cgroup/memory/memory.usage_in_bytes"):
        try:
            with open(path) as fh:
                return int(fh.read().strip()) / (1 << 20)
        except (OSError, ValueError):
            continue
    return None


def burner_count(workers: object, cpus: float | None = None) -> int:
    """`all` -> enough burners to fill the CPUs available (at least 1); an int -> itself."""
    if workers == "all":
        return max(1, math.ceil(cpus if cpus is not None else available_cpus()))
    try:
        return max(0, min(MAX_PROCESSES, int(workers)))  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return 0


def _child_loop(parent: int, duty: float) -> None:
    """Burn `duty` of one CPU in SLICE_S slices until the parent goes away."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    busy = SLICE_S * max(0.0, min(1.0, duty))
    x = 1
    while os.getppid() == parent:
        end = time.monotonic() + busy
        while time.monotonic() < end:
            for _ in range(2000):
                x = (x * 1103515245 + 12345) & 0xFFFFFFFF
        rest = SLICE_S - busy
        if rest > 0:
            time.sleep(rest)



def kill_and_reap(pids: list[int]) -> None:
    """SIGKILL each child, then reap them all, so none is left a zombie."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in pids:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass

class Workers:
    """Forked helper processes of two kinds: `burn` (CPU) and `spawn` (the "cluster")."""

    def __init__(self) -> None:
        self.burners: list[int] = []
        self.spawned: list[int] = []
        self.duty = 0.0
        self.paused = False
        self.ballast: list[bytes] = []
        self.model_ballast: bytes = b""

    def _fork(self, duty: float) -> int | None:
        if len(self.burners) + len(self.spawned) >= MAX_PROCESSES:
            return None
        parent = os.getpid()
        try:
            pid = os.fork()
        except OSError:
            return None  # EAGAIN under a pids cap: the cap held
        if pid == 0:
            try:
                _child_loop(parent, duty)
            finally:
                os._exit(0)
        if self.paused:
            os.kill(pid, signal.SIGSTOP)
        return pid

    def set_burn(self, n: int, duty: float) -> int:
        """Runs exactly n burners at `duty`; returns how many run."""
        if duty != self.duty:
            kill_and_reap(self.burners)
            self.burners = []
            self.duty = duty
        while len(self.burners) > n:
            kill_and_reap([self.burners.pop()])
        while len(self.burners) < n:
            pid = self._fork(duty)
            if pid is None:
                break
            self.burners.append(pid)
        return len(self.burners)

    def spawn(self, n: int, duty: float = 0.01) -> int:
        """Adds n light worker processes; returns how many were started."""
        started = 0
        for _ in range(n):
            pid = self._fork(duty)
            if pid is None:
                break
            self.spawned.append(pid)
            started += 1
        return started

    def grow_ballast(self, mb: float, max_mb: float) -> int:
        """Adds `mb` of resident memory, up to max_mb in all; the ballast's size in MB."""
        have = len(self.ballast)
        want = min(int(max_mb), have + max(0, int(round(mb))))
        try:
            while len(self.ballast) < want:
                self.ballast.append(b"\x01" * (1 << 20))  # written, so it is resident
        except MemoryError:
            pass
        return len(self.ballast)

    def set_model_mb(self, mb: int) -> None:
        """The "bigger model in memory": one resident block of `mb` MB."""
        try:
            self.model_ballast = b"\x02" * (max(0, int(mb)) << 20)
        except MemoryError:
            pass

    @property
    def count(self) -> int:
        return len(self.burners) + len(self.spawned)

    def _signal(self, sig: int) -> None:
        for pid in self.burners + self.spawned:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def pause(self) -> None:
        self.paused = True
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.paused = False
        self._signal(signal.SIGCONT)

    def reap(self) -> None:
        """Collects children that died (killed by the sandbox, say) so none stays a zombie."""
        for group in (self.burners, self.spawned):
            for pid in list(group):
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    done = pid
                if done:
                    group.remove(pid)

    def stop(self) -> None:
        kill_and_reap(self.burners + self.spawned)
        self.burners, self.spawned = [], []
        self.ballast = []
        self.model_ballast = b""
