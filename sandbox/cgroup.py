"""Reading a container's resource use straight from its cgroup files (v1 or v2).

Cheaper and fresher than the stats API (which samples once a second and costs a round trip
through the daemon): a 4 Hz sampler reads a handful of small files. Where the files cannot
be found (a rootless daemon, a remote host), the Docker backend falls back to the stats API.

>>> # cg = Cgroup.of_pid(container_pid); r = cg.read(); r.cpu_ns, r.mem_bytes
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class CgroupReading:
    """One reading of a cgroup's counters (cumulative ones since the cgroup was made)."""

    cpu_ns: int
    mem_bytes: int
    mem_limit_bytes: int
    pids: int
    nr_periods: int = 0
    nr_throttled: int = 0
    throttled_ns: int = 0
    oom_kills: int = 0
    cpu_quota_cpus: float | None = None  # the live cap (quota / period), None = unlimited


def _read(path: Path) -> str | None:
    try:
        with open(path, "rb") as fh:
            return fh.read().decode()
    except OSError:  # the cgroup went away with its container
        return None


# Descriptors kept open on a sampled cgroup's files: a 4 Hz sampler would otherwise spend
# more on open() and close() than on reading. Keyed by path; dropped when a read fails.
_FDS: dict[str, int] = {}


def _read_cached(path: Path) -> str | None:
    key = str(path)
    fd = _FDS.get(key)
    try:
        if fd is None:
            fd = _FDS[key] = os.open(key, os.O_RDONLY | os.O_CLOEXEC)
        return os.pread(fd, 65536, 0).decode()
    except OSError:
        if fd is not None:
            os.close(_FDS.pop(key))
        return None


def forget(cgroup: "Cgroup") -> None:
    """Close the descriptors kept for this cgroup's files (its container has gone)."""
    for d in {cgroup.cpu, cgroup.cpuacct, cgroup.memory, cgroup.pids}:
        prefix = str(d) + "/"
        for key in [k for k in _FDS if k.startswith(prefix)]:
            try:
                os.close(_FDS.pop(key))
            except OSError:
                pass


def _int(path: Path, default: int = 0) -> int:
    text = _read_cached(path)
    if text is None:
        return default
    text = text.strip()
    if text == "max":
        return -1
    try:
        return int(text)
    except ValueError:
        return default


def _kv(path: Path) -> dict[str, int]:
    text = _read_cached(path) or ""
    out: dict[str, int] = {}
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        try:
            out[k] = int(v)
        except ValueError:
            pass
    return out


def _mounts() -> tuple[dict[str, tuple[str, str]], tuple[str, str] | None]:
    """v1 controller -> (mount root, mount point), and the v2 (root, mount point) if any."""
    v1: dict[str, tuple[str, str]] = {}
    v2: tuple[str, str] | None = None
    text = _read(Path("/proc/self/mountinfo")) or ""
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        lf, rf = left.split(), right.split()
        if len(lf) < 5 or len(rf) < 3:
            continue
        root, point, fstype = lf[3], lf[4], rf[0]
        if fstype == "cgroup2":
            v2 = (root, point)
        elif fstype == "cgroup":
            for opt in rf[2].split(","):
                if opt in ("cpu", "cpuacct", "memory", "pids", "freezer", "cpuset", "blkio"):
                    v1[opt] = (root, point)
    return v1, v2


def _join(mount: tuple[str, str], cg_path: str) -> Path:
    root, point = mount
    rel = cg_path
    if root != "/" and rel.startswith(root):
        rel = rel[len(root):]
    return Path(point) / rel.lstrip("/")


@dataclass(frozen=True, slots=True)
class Cgroup:
    """Where one process's cgroup lives: per-controller directories (v1) or one (v2)."""

    version: int
    cpu: Path
    cpuacct: Path
    memory: Path
    pids: Path
    freezer: Path | None = None

    @classmethod
    def of_pid(cls, pid: int) -> "Cgroup | None":
        """The cgroup of a live process, or None when it cannot be read here."""
        text = _read(Path(f"/proc/{pid}/cgroup"))
        if not text:
            return None
        v1_paths: dict[str, str] = {}
        v2_path: str | None = None
        for line in text.splitlines():
            parts = line.split(":", 2)
            if len(parts) != 3:
                continue
            _, ctrls, path = parts
            if ctrls == "":
                v2_path = path
            for c in ctrls.split(","):
                v1_paths[c] = path
        v1, v2 = _mounts()
        if "memory" in v1 and "memory" in v1_paths and "cpuacct" in v1 and "pids" in v1:
            d = {c: _join(v1[c], v1_paths.get(c, v1_paths["memory"])) for c in v1}
            cg = cls(1, d.get("cpu", d["cpuacct"]), d["cpuacct"], d["memory"], d["pids"], d.get("freezer"))
            return cg if (cg.memory / "memory.usage_in_bytes").exists() else None
        if v2 is not None and v2_path is not None:
            p = _join(v2, v2_path)
            if (p / "cpu.stat").exists():
                return cls(2, p, p, p, p, p)
        return None

    @property
    def threads_file(self) -> Path:
        """The file listing every thread (host tids) of the container."""
        return self.cpu / ("tasks" if self.version == 1 else "cgroup.threads")

    @property
    def procs_file_dir(self) -> Path:
        """The directory whose cgroup.procs lists every process of the container."""
        return self.pids

    def read(self) -> CgroupReading | None:
        """The counters now, or None once the cgroup has gone."""
        if self.version == 1:
            usage = _read_cached(self.cpuacct / "cpuacct.usage")
            if usage is None:
                return None
            mem = _int(self.memory / "memory.usage_in_bytes")
            stat = _kv(self.memory / "memory.stat")
            # What `docker stats` shows: page cache that can be dropped is not pressure.
            mem -= stat.get("total_inactive_file", 0)
            limit = _int(self.memory / "memory.limit_in_bytes")
            cpu = _kv(self.cpu / "cpu.stat")
            oom = _kv(self.memory / "memory.oom_control")
            quota = _int(self.cpu / "cpu.cfs_quota_us", -1)
            period = _int(self.cpu / "cpu.cfs_period_us", 100000) or 100000
            return CgroupReading(
                cpu_ns=int(usage.strip() or 0), mem_bytes=max(mem, 0),
                mem_limit_bytes=limit if 0 < limit < (1 << 62) else 0,
                pids=_int(self.pids / "pids.current"),
                nr_periods=cpu.get("nr_periods", 0), nr_throttled=cpu.get("nr_throttled", 0),
                throttled_ns=cpu.get("throttled_time", 0), oom_kills=oom.get("oom_kill", 0),
                cpu_quota_cpus=quota / period if quota > 0 else None,
            )
        cpu = _kv(self.cpu / "cpu.stat")
        if not cpu:
            return None
        mem = _int(self.memory / "memory.current")
        stat = _kv(self.memory / "memory.stat")
        mem -= stat.get("inactive_file", 0)
        limit = _int(self.memory / "memory.max")
        events = _kv(self.memory / "memory.events")
        quota_text = (_read_cached(self.cpu / "cpu.max") or "max 100000").split()
        quota = None
        if quota_text and quota_text[0] != "max":
            quota = int(quota_text[0]) / int(quota_text[1] if len(quota_text) > 1 else 100000)
        return CgroupReading(
            cpu_ns=cpu.get("usage_usec", 0) * 1000, mem_bytes=max(mem, 0),
            mem_limit_bytes=limit if limit > 0 else 0, pids=_int(self.pids / "pids.current"),
            nr_periods=cpu.get("nr_periods", 0), nr_throttled=cpu.get("nr_throttled", 0),
            throttled_ns=cpu.get("throttled_usec", 0) * 1000, oom_kills=events.get("oom_kill", 0),
            cpu_quota_cpus=quota,
        )


def reading_from_stats(stats: dict) -> CgroupReading:
    """The same counters from one Docker stats API answer (the fallback)."""
    cpu = stats.get("cpu_stats", {})
    mem = stats.get("memory_stats", {})
    mstat = mem.get("stats", {})
    usage = int(mem.get("usage", 0)) - int(mstat.get("total_inactive_file", mstat.get("inactive_file", 0)))
    thr = cpu.get("throttling_data", {})
    return CgroupReading(
        cpu_ns=int(cpu.get("cpu_usage", {}).get("total_usage", 0)),
        mem_bytes=max(usage, 0),
        mem_limit_bytes=int(mem.get("limit", 0)),
        pids=int(stats.get("pids_stats", {}).get("current", 0)),
        nr_periods=int(thr.get("periods", 0)), nr_throttled=int(thr.get("throttled_periods", 0)),
        throttled_ns=int(thr.get("throttled_time", 0)),
        oom_kills=int(mstat.get("oom_kill", 0)),
    )
