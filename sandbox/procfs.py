"""Reading processes from /proc: identity, capabilities, CPU times, memory, groups and trees.

Both backends watch the learner from outside through these helpers: the Docker backend for
the container's processes (found through its cgroup), the process backend for its process
group. Every reader tolerates the race of a process exiting while it is read: it returns
None (or leaves the process out) instead of raising.

>>> st = read_status(os.getpid())
>>> st.pid == os.getpid()
True
>>> cap_names(1 << 21)
['CAP_SYS_ADMIN']
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

PROC = Path("/proc")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

# Capability numbers from linux/capability.h; a bit beyond this table is named CAP_<n>.
CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)


def cap_names(mask: int) -> list[str]:
    """The capability names set in a capability bit mask, lowest bit first."""
    out = []
    bit = 0
    while mask >> bit:
        if mask >> bit & 1:
            out.append(CAPABILITIES[bit] if bit < len(CAPABILITIES) else f"CAP_{bit}")
        bit += 1
    return out


@dataclass(frozen=True, slots=True)
class ProcStatus:
    """Who a process is (from /proc/<pid>/status): ids, effective capabilities and state.

    `uid`/`gid` are the real ids, `euid`/`egid` the effective ones; a gain in any of them
    toward 0, or a new bit in `cap_eff`, is what an escalation looks like from outside.
    """

    pid: int
    ppid: int
    name: str
    uid: int
    euid: int
    gid: int
    egid: int
    cap_eff: int
    state: str  # one letter: R running, S sleeping, T stopped, Z zombie, ...
    threads: int = 1
    rss_bytes: int = 0
    no_new_privs: bool = False

    @property
    def caps(self) -> list[str]:
        """The effective capabilities by name."""
        return cap_names(self.cap_eff)


def read_bytes(path: str) -> bytes | None:
    """A small /proc file's bytes, or None if it (or its process) has gone.

    Raw os.open/os.read: the samplers read these files many times a second, and a
    buffered file object plus pathlib cost several times the system calls themselves.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:  # ENOENT, ESRCH, EACCES while the process is being reaped
        return None
    try:
        chunks = []
        while True:
            b = os.read(fd, 65536)
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def _read(path: Path | str) -> str | None:
    data = read_bytes(str(path))
    return None if data is None else data.decode("utf-8", "replace")


def parse_status(text: str, pid: int) -> ProcStatus:
    """A ProcStatus from the text of /proc/<pid>/status (split out to be testable)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key] = value.strip()
    uids = fields.get("Uid", "0 0 0 0").split()
    gids = fields.get("Gid", "0 0 0 0").split()
    rss_kb = fields.get("VmRSS", "0 kB").split()[0]
    return ProcStatus(
        pid=int(fields.get("Pid", pid)),
        ppid=int(fields.get("PPid", 0)),
        name=fields.get("Name", ""),
        uid=int(uids[0]),
        euid=int(uids[1]),
        gid=int(gids[0]),
        egid=int(gids[1]),
        cap_eff=int(fields.get("CapEff", "0"), 16),
        state=fields.get("State", "?")[:1],
        threads=int(fields.get("Threads", 1)),
        rss_bytes=int(rss_kb) * 1024,
        no_new_privs=fields.get("NoNewPrivs", "0") == "1",
    )


def read_status(pid: int) -> ProcStatus | None:
    """The status of a process, or None if it has already gone."""
    text = _read(f"/proc/{pid}/status")
    if not text:
        return None
    return parse_status(text, pid)


# Precompiled because the identity watch runs it for every learner process many times a
# second; it reads only what an escalation changes.
_IDS = re.compile(rb"\nUid:\t(\d+)\t(\d+)\t.*?\nGid:\t(\d+)\t(\d+)\t.*?\nCapEff:\t([0-9a-fA-F]+)",
                  re.DOTALL)


def ids_of(status: bytes) -> tuple[int, int, int, int, int] | None:
    """(uid, euid, gid, egid, cap_eff) from the bytes of a /proc/<pid>/status; None if
    they are not there (an empty read: the process has gone)."""
    m = _IDS.search(status) if status else None
    if m is None:
        return None
    g = m.groups()
    return int(g[0]), int(g[1]), int(g[2]), int(g[3]), int(g[4], 16)


def read_ids(pid: int) -> tuple[int, int, int, int, int] | None:
    """(uid, euid, gid, egid, cap_eff) of a process, the cheap way; None if it has gone."""
    return ids_of(read_bytes(f"/proc/{pid}/status") or b"")


@dataclass(frozen=True, slots=True)
class ProcStat:
    """Scheduling facts from /proc/<pid>/stat: group, session, CPU times, memory."""

    pid: int
    comm: str
    state: str
    ppid: int
    pgrp: int
    session: int
    utime_s: float
    stime_s: float
    threads: int
    start_ticks: int  # clock ticks after boot: with pid, names one process across pid reuse
    rss_bytes: int

    @property
    def cpu_seconds(self) -> float:
        """User plus system CPU time this process has used."""
        return self.utime_s + self.stime_s


def parse_stat(text: str) -> ProcStat:
    """A ProcStat from the text of /proc/<pid>/stat.

    The command name sits in parentheses and may itself contain spaces and ')', so the
    fields are split after the last ')'.
    """
    lpar = text.index("(")
    rpar = text.rindex(")")
    pid = int(text[:lpar])
    comm = text[lpar + 1 : rpar]
    rest = text[rpar + 2 :].split()
    # rest[0] is field 3 (state); field n is rest[n - 3].
    return ProcStat(
        pid=pid,
        comm=comm,
        state=rest[0],
        ppid=int(rest[1]),
        pgrp=int(rest[2]),
        session=int(rest[3]),
        utime_s=int(rest[11]) / CLK_TCK,
        stime_s=int(rest[12]) / CLK_TCK,
        threads=int(rest[17]),
        start_ticks=int(rest[19]),
        rss_bytes=int(rest[21]) * PAGE_SIZE,
    )


def read_stat(pid: int) -> ProcStat | None:
    """The /proc/<pid>/stat facts of a process, or None if it has already gone."""
    text = _read(f"/proc/{pid}/stat")
    if not text:
        return None
    try:
        return parse_stat(text)
    except (ValueError, IndexError):  # a zombie half torn down
        return None


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) a process has used; 0.0 if it has gone."""
    st = read_stat(pid)
    return st.cpu_seconds if st else 0.0


def cpu_seconds_precise(pid: int) -> float | None:
    """CPU seconds of a process's live threads from their schedstat (nanoseconds), or None
    where schedstat is missing or the process has gone.

    /proc/<pid>/stat counts in clock ticks (10 ms): a 250 ms sample of a learner capped at
    half a CPU sees 12 or 13 ticks, which reads as 0.96 or 1.04 of the cap, or 0.88 when a
    tick falls the other way, and a threshold guard at 0.95 never holds. schedstat has no
    such steps. It counts only the threads still alive (a learner's workers are processes).
    """
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    total = 0
    for tid in tids:
        data = read_bytes(f"/proc/{pid}/task/{tid}/schedstat")
        if not data:
            continue
        try:
            total += int(data.split(None, 1)[0])
        except (ValueError, IndexError):
            return None
    return total / 1e9


def threads_of(pid: int) -> list[int]:
    """The thread ids of a live process ([] once it has gone)."""
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except (OSError, ValueError):
        return []


class DemandMeter:
    """`cpu_demand`: how much CPU a sandbox's threads asked for, per CPU of its cap.

    A thread's schedstat says how long it ran and how long it was runnable but waiting
    for a CPU (run queue delay, which includes the time its cgroup sat out a CFS quota).
    Their sum over an interval, over every thread, divided by the interval and the cap,
    is the demand: 1.0 means enough runnable work to fill the cap at every instant.
    Unlike `cpu_ratio` (what the sandbox got), it does not fall when the host is busy:
    a burner on a contended host runs less but waits as much more.

    >>> m = DemandMeter()
    >>> m.update({7: 0}, now=0.0, cap=0.5) is None   # the first reading is the baseline
    True
    >>> m.update({7: 500_000_000, 8: 500_000_000}, now=1.0, cap=0.5)   # 8 was born in between
    2.0
    """

    __slots__ = ("_last", "_at")

    def __init__(self) -> None:
        self._last: dict[int, int] = {}
        self._at: float | None = None

    def read(self, tids: Iterable[int], cap: float) -> float | None:
        """Reads each thread's schedstat, then `update` with the time of the reading (not
        the sampler's tick: under load the two drift apart by more than the jitter a 4 Hz
        ratio can bear)."""
        totals: dict[int, int] = {}
        for tid in tids:
            data = read_bytes(f"/proc/{tid}/schedstat")
            if data:
                try:
                    run, wait = data.split(None, 2)[:2]
                    totals[tid] = int(run) + int(wait)
                except ValueError:
                    continue
        return self.update(totals, time.monotonic(), cap)

    def update(self, totals: dict[int, int], now: float, cap: float) -> float | None:
        """The demand since the last update from per-thread run+wait nanoseconds, or None
        for the first update (or a zero cap or interval). A thread seen for the first time
        counts from 0 (it was born in the interval); one that ended drops out."""
        last, at = self._last, self._at
        self._last, self._at = totals, now
        if at is None or cap <= 0 or now <= at:
            return None
        ns = 0
        for tid, v in totals.items():
            d = v - last.get(tid, 0)
            if d > 0:
                ns += d
        return ns / 1e9 / ((now - at) * cap)


def all_pids() -> list[int]:
    """Every process id on this machine (in this PID namespace)."""
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def all_stats() -> list[ProcStat]:
    """The stat of every process that could be read."""
    out = []
    for pid in all_pids():
        st = read_stat(pid)
        if st is not None:
            out.append(st)
    return out


def pids_of_group(pgid: int) -> list[int]:
    """The processes in a process group."""
    return sorted(st.pid for st in all_stats() if st.pgrp == pgid)


def pids_of_session(sid: int) -> list[int]:
    """The processes in a session (a new process group started with setsid stays in it)."""
    return sorted(st.pid for st in all_stats() if st.session == sid)


def pids_of_cgroup(path: str | Path) -> list[int]:
    """The processes in a cgroup directory (v1 or v2), from its cgroup.procs file.

    Returns [] when the cgroup has gone (the container exited).
    """
    text = _read(Path(path) / "cgroup.procs")
    if not text:
        return []
    return sorted({int(line) for line in text.split() if line.isdigit()})


def children_map(stats: Iterable[ProcStat] | None = None) -> dict[int, list[int]]:
    """ppid -> child pids, over the given stats (default: every process)."""
    tree: dict[int, list[int]] = {}
    for st in all_stats() if stats is None else stats:
        tree.setdefault(st.ppid, []).append(st.pid)
    return tree


def descendants(pid: int, stats: Iterable[ProcStat] | None = None) -> list[int]:
    """Every process below `pid` in the process tree (children, their children, ...)."""
    tree = children_map(stats)
    out: list[int] = []
    todo = list(tree.get(pid, ()))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(tree.get(p, ()))
    return sorted(out)


def cmdline(pid: int) -> list[str]:
    """The argv of a process ([] for kernel threads, zombies and gone processes)."""
    text = _read(f"/proc/{pid}/cmdline")
    if not text:
        return []
    return text.rstrip("\0").split("\0")


def read_net_dev(pid: int, *, skip_loopback: bool = True) -> tuple[int, int]:
    """(rx_bytes, tx_bytes) summed over the interfaces of the process's network namespace.

    Inside a container this is the container's own traffic; for a process in the host's
    namespace it is the whole host's, which is why the process backend does not use it.
    """
    text = _read(f"/proc/{pid}/net/dev")
    rx = tx = 0
    if not text:
        return 0, 0
    for line in text.splitlines()[2:]:
        iface, sep, data = line.partition(":")
        if not sep or (skip_loopback and iface.strip() == "lo"):
            continue
        cols = data.split()
        rx += int(cols[0])
        tx += int(cols[8])
    return rx, tx


def process_list(pids: Iterable[int]) -> list[dict[str, object]]:
    """A ps-like record per process, for evidence: pid, ppid, ids, caps, state, rss, argv."""
    rows: list[dict[str, object]] = []
    for pid in sorted(pids):
        st = read_status(pid)
        if st is None:
            continue
        stat = read_stat(pid)
        rows.append(
            {
                "pid": pid,
                "ppid": st.ppid,
                "name": st.name,
                "uid": st.uid,
                "euid": st.euid,
                "gid": st.gid,
                "egid": st.egid,
                "caps": st.caps,
                "state": st.state,
                "threads": st.threads,
                "rss_bytes": st.rss_bytes,
                "cpu_seconds": round(stat.cpu_seconds, 3) if stat else None,
                "cmdline": cmdline(pid),
            }
        )
    return rows
