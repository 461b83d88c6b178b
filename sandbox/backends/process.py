"""The process sandbox: the fallback when no Docker daemon answers. NOT a security boundary.

The learner runs as an ordinary process group on this host, in its own session, capped by
what an unprivileged process can be capped with:

- address space (RLIMIT_AS = the memory cap, per process) and a sampler that kills the
  largest process when the group's resident memory passes the cap (the OOM stand-in);
- processes (RLIMIT_NPROC = the pids cap), which binds only a non-root uid: when we are
  root the learner runs as the spec's user (65534 by default) so that it does;
- open files (RLIMIT_NOFILE), no core dumps, and no_new_privs (setuid bits do nothing);
- CPUs: affinity to ceil(cpus) cores, and a SIGSTOP/SIGCONT duty cycle for the fraction.

It watches from /proc: samples at the spec's rate, and every process's uid and effective
capabilities at a faster rate (a gain is an `escalation` event, outcome `allowed`). It
shares this host's kernel, filesystem and network; escape attempts are run as dry-runs
(RUNAWAY_ATTEMPTS=dry-run) because a real one could land. `notice` says all this to the
user, and the runner writes it into the trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import json
import math
import os
import pwd
import grp
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from policies.model import Event, Sample

from .. import procfs
from ..proc_events import ProcEvents
from .. import watchdog
from ..base import (ActionResult, ExecResult, ExecTimeout, OutputCap, SandboxError, SandboxUnavailable,
                   check_argv, check_exec, exec_cwd, exec_input, exec_user)
from ..monitor import SandboxBase
from ..registry import Backend, register_backend
from ..spec import WEB_HOSTS, SandboxSpec, format_size

# Names the learner resolves itself (RUNAWAY_HOSTS): everything is this host's loopback.
DEFAULT_HOSTS = {name: "127.0.0.1" for name in WEB_HOSTS}
NOFILE = 1024
DUTY_PERIOD_S = 0.025  # one SIGCONT..SIGSTOP cycle: ten in a 4 Hz sample, so the sample sees the average
# Identity (uid, caps) polls between samples when kernel process events are not available
# (not root): the escalation event latency is then about 1/WATCH_HZ.
WATCH_HZ = 20.0
EVENTS_COALESCE_S = 0.04  # at most 25 wakeups a second for kernel process events
RELAY_S = 0.1  # at most this often (the monitor ticks at the sample rate with kernel events)
RECLASSIFY_S = 5.0  # how often every pid is re-read (a recycled pid number classified afresh)
ENV_MARK = "RUNAWAY_SANDBOX_RUN"  # in every learner process's environ: how `clean` finds leftovers
OWNER_MARK = "RUNAWAY_SANDBOX_OWNER"  # the controller's pid:start_ticks: `clean` spares live runs
TMP_PREFIX = "runaway-proc-"
PR_SET_NO_NEW_PRIVS = 38
PR_SET_PDEATHSIG = 1


def _cap_for(cpus: float, available: Sequence[int]) -> tuple[set[int], float]:
    """(cores to pin to, duty fraction of each period the group may run) for a CPU cap."""
    avail = sorted(available)
    cpus = min(max(cpus, 0.01), float(len(avail)))
    n = max(1, math.ceil(cpus - 1e-9))
    return set(avail[-n:]), min(1.0, cpus / n)


def _resolve_user(user: str) -> tuple[int, int]:
    """(uid, gid) for a spec's `user` (`65534:65534`, `nobody`, `1000`)."""
    name, _, group = user.partition(":")
    try:
        uid = int(name) if name.isdigit() else pwd.getpwnam(name).pw_uid
        if group:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        else:
            gid = pwd.getpwuid(uid).pw_gid if not name.isdigit() else uid
    except KeyError:
        raise SandboxError(f"no such user or group on this host: {user!r}", field="user") from None
    return uid, gid


def _reachable_by(path: str, uid: int, gid: int) -> bool:
    """Whether `uid:gid` can traverse to and execute `path` (mode bits only; no ACLs)."""
    real = os.path.realpath(path)

    def can(p: str, bit_other: int, bit_group: int, bit_user: int) -> bool:
        try:
            st = os.stat(p)
        except OSError:
            return False
        if st.st_uid == uid:
            return bool(st.st_mode & bit_user)
        if st.st_gid == gid:
            return bool(st.st_mode & bit_group)
        return bool(st.st_mode & bit_other)

    parts = Path(real).parents
    if not all(can(str(d), stat.S_IXOTH, stat.S_IXGRP, stat.S_IXUSR) for d in parts):
        return False
    return can(real, stat.S_IXOTH, stat.S_IXGRP, stat.S_IXUSR) and can(
        real, stat.S_IROTH, stat.S_IRGRP, stat.S_IRUSR)


@functools.cache
def _can_import(python: str, uid: int, gid: int, modules: tuple[str, ...]) -> bool:
    """Whether `python`, run as uid:gid, imports `modules` (probed once per process)."""
    if not modules:
        return True
    try:
        r = subprocess.run([python, "-c", "import " + ", ".join(modules)], user=uid, group=gid,
                           extra_groups=[], env={"PATH": "/usr/bin:/bin"}, cwd="/",
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return r.returncode == 0


def _python_for(uid: int | None, gid: int | None, modules: tuple[str, ...] = ()) -> str | None:
    """An interpreter the learner's uid can run and import `modules` with: ours if it can
    reach it, else the system's. None if there is none."""
    if uid is None or gid is None:
        return sys.executable
    seen = set()
    for cand in (sys.executable, shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin"),
                 "/usr/bin/python3"):
        if cand and cand not in seen:
            seen.add(cand)
            lib = Path(os.path.realpath(cand)).parent.parent / "lib"
            if _reachable_by(cand, uid, gid) and (not lib.exists() or _reachable_by(str(lib), uid, gid)) \
                    and _can_import(cand, uid, gid, tuple(modules)):
                return cand
    return None


def _owner(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def _signal_all(pids: Sequence[int], sig: int, pgid: int | None) -> None:
    if pgid is not None:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass
    for pid in pids:  # members that left the group (setsid/setpgid) too
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _set_affinity(pid: int, cores: set[int]) -> None:
    """Pin every thread of a process (affinity is per thread; new threads inherit it)."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        tids = [pid]
    for tid in tids:
        try:
            os.sched_setaffinity(tid, cores)
        except OSError:
            pass


class ProcessSandbox(SandboxBase):
    """A learner run as a capped process group on this host (see the module docstring).

    >>> # sb = ProcessSandbox(PROFILES["ci"], run_id="r1"); print(sb.notice)
    """

    backend = "process"
    is_security_boundary = False
    # No syscall tracer here: strace would run on the host, as root beside an agent that is
    # not in a container (see docs/sandbox.md, "What is watched").
    tracer = None
    tracer_info = None

    def __init__(self, spec: SandboxSpec, *, run_id: str, watch_hz: float = WATCH_HZ,
                 proc_events: bool = True, python_modules: Sequence[str] = ("aiohttp",),
                 base_dir: str | Path | None = None, agent_dir: Path | None = None) -> None:
        super().__init__(spec, run_id=run_id, pumps=2)  # stdout and stderr
        self.agent_dir = Path(agent_dir).resolve() if agent_dir else None
        self.watch_hz = watch_hz
        self.use_proc_events = proc_events
        self._events: ProcEvents | None = None
        self._base_dir = Path(base_dir) if base_dir else Path(tempfile.gettempdir())
        self._host_cpus = sorted(os.sched_getaffinity(0))
        self._cpus = float(spec.cpus or len(self._host_cpus))
        self._spec_cpus = min(self._cpus, float(len(self._host_cpus)))
        # Drop to the spec's user when we can (we are root): only then does RLIMIT_NPROC
        # bind, and only then does the learner lose root's capabilities.
        # The interpreter must import `python_modules` as that user (the learner needs
        # aiohttp); without one, it runs as us and the notice says why.
        self.run_uid: int | None = None
        self.run_gid: int | None = None
        why_not = ""
        modules = tuple(python_modules)
        if os.geteuid() == 0:
            uid, gid = _resolve_user(spec.user)
            if uid != 0:
                if _python_for(uid, gid, modules) is None:
                    need = f" with {', '.join(modules)}" if modules else ""
                    why_not = (f"no Python interpreter{need} is readable by uid {uid} "
                               f"({sys.executable} is not{'; install python3-' + modules[0] + ' for the system python3' if modules else ''}), "
                               "so the learner runs as root and RLIMIT_NPROC does not bind")
                else:
                    self.run_uid, self.run_gid = uid, gid
        self.python = _python_for(self.run_uid, self.run_gid, modules) or sys.executable
        # RLIMIT_NPROC counts every process of the uid on the host. As the spec's own user
        # (65534) that is about the learner alone; as ourselves (not root) it would count our
        # shell and editor too, so the learner gets the cap on top of what we already run.
        self.nproc: int | None = spec.pids or None
        if self.nproc and self.run_uid is None and os.geteuid() != 0:
            mine = sum(1 for p in procfs.all_pids() if _owner(p) == os.geteuid())
            self.nproc += mine
        self.notice = self._notice(why_not)
        self.root: Path | None = None
        self.scratch: Path | None = None
        self.pid: int | None = None
        self.returncode: int | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._full_env: dict[str, str] = {}
        self._clock: Callable[[], float] = time.monotonic
        self._tasks: list[asyncio.Task[Any]] = []
        self._members: dict[int, int] = {}  # pid -> start ticks, live members of the group
        self._not_members: set[int] = set()
        self._cpu_last: dict[tuple[int, int], float] = {}
        self._demand = procfs.DemandMeter()
        self._cpu_dead = 0.0
        self._cpu_total = 0.0
        self._sample_at: tuple[float, float] | None = None  # (monotonic, cpu_total) last sample
        self._base_ids: tuple[int, int, int, int, int] | None = None  # uid, euid, gid, egid, caps
        self._paused = False
        self._stopped_by_duty = False
        self._duty_wake = asyncio.Event()
        self._closed = False
        self._killed = False
        self._relay_from: Path | None = None
        self._relay_pos = 0
        self._control: Path | None = None
        self._pythonpath = ""
        self._rr = 0  # round-robin position for identity checks of large groups
        self._stats: dict[int, procfs.ProcStat] = {}  # the members at the last full scan
        self._next_reclassify: float | None = None
        self._next_relay = 0.0
        self._mark = f"{ENV_MARK}={run_id}\0".encode()
        me = procfs.read_stat(os.getpid())
        self._owner = f"{os.getpid()}:{me.start_ticks if me else 0}"
        self._leader_start = 0  # a process started before the learner cannot be one of its own

    # -- what the user is told ---------------------------------------------------------

    def _notice(self, why_not: str) -> str:
        cores, duty = _cap_for(self._cpus, self._host_cpus)
        who = f"uid {self.run_uid}" if self.run_uid is not None else f"uid {os.geteuid()}"
        if self.run_uid is not None:
            nproc = f"{self.nproc} processes for {who}"
        elif os.geteuid() != 0:
            nproc = (f"{self.nproc} processes for {who} (RLIMIT_NPROC counts all of them: "
                     f"the {self.spec.pids} of the cap on top of those already running)")
        else:
            nproc = "no process cap (RLIMIT_NPROC does not bind root)"
        cpu = f"{len(cores)} core{'s' if len(cores) > 1 else ''}"
        if duty < 1:
            cpu += f" run {duty:.0%} of the time (SIGSTOP/SIGCONT duty cycle)"
        mem = format_size(self.spec.memory) if self.spec.memory else "unlimited"
        text = (
            "process sandbox: NOT a security boundary. The learner runs as an ordinary process "
            f"group on this host as {who}, sharing its kernel, filesystem and network. Caps: "
            f"{cpu}; address space {mem} per process (group memory enforced by a sampler); "
            f"{nproc}; {NOFILE} open files"
            f"{'; no_new_privs' if self.spec.no_new_privileges else ''}. Escape attempts run as "
            "dry-runs; disconnect is not available (no network namespace); no syscall tracer "
            "(a non-Python agent is watched through /proc only)."
        )
        if why_not:
            text += f" Note: {why_not}."
        return text

    # -- lifecycle -----------------------------------------------------------------------

    async def prepare(self) -> str:
        """No network to make: the learner shares the host's, so the web binds loopback."""
        self._check_open()
        return "127.0.0.1"

    def allow_port(self, port: int) -> None:
        """Nothing to open: the learner shares this host's loopback, where the web listens."""
        self._check_open()
        self._check_port(port)

    async def start(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        learner_dir: Path,
        hosts: Mapping[str, str],
        control_file: Path,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._check_open()
        if self._proc is not None:
            raise SandboxError("this sandbox has already started", field="start")
        argv = check_argv(argv)
        if not Path(learner_dir).is_dir():
            raise SandboxError(f"no learner code at {learner_dir}", field="learner_dir")
        self._clock = clock
        self._watchdog = watchdog.arm(self.run_id)  # the learner's workers never outlive us
        try:
            self.root = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{self.run_id}-", dir=self._base_dir))
            await asyncio.to_thread(self._lay_out, Path(learner_dir), Path(control_file))
        except OSError as e:
            await self.close()
            raise SandboxError(f"cannot make the sandbox's private tree in {self._base_dir}: "
                               f"{e.strerror or e}{f' ({e.filename})' if e.filename else ''}",
                               field="sandbox") from None
        try:
            full_env = self._full_env = self._env(env, hosts)
            argv = list(argv)
            if argv[0] in ("python", "python3"):
                argv[0] = self.python
            self._proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=str(self.agent_copy or self.scratch),
                env=full_env,
                start_new_session=True,
                user=self.run_uid,
                group=self.run_gid,
                extra_groups=[] if self.run_uid is not None else None,
                preexec_fn=self._limits_in_child,
                close_fds=True,
            )
        except FileNotFoundError as e:
            await self.close()
            raise SandboxError(f"cannot run {argv[0]!r}: {e.strerror}", field="argv") from None
        except PermissionError as e:
            await self.close()
            raise SandboxError(f"cannot run {argv[0]!r} as uid {self.run_uid}: {e.strerror}",
                               field="argv") from None
        self.pid = self._proc.pid
        self._members[self.pid] = 0
        leader = procfs.read_stat(self.pid)
        self._leader_start = leader.start_ticks if leader else 0
        # The baseline is who the spec says the learner is (when we dropped to its user:
        # that uid and gid, no capabilities), not what the first process shows: that one
        # may already be a setuid binary. Running as ourselves, it is what we started.
        if self.run_uid is not None and self.run_gid is not None:
            self._base_ids = (self.run_uid, self.run_uid, self.run_gid, self.run_gid, 0)
        else:
            self._base_ids = procfs.read_ids(self.pid)
        loop = asyncio.get_running_loop()
        # The kernel's process events, where we may listen (root): forks, execs and id
        # changes arrive as they happen, so no fast polling is needed between samples.
        self._events = ProcEvents.open() if self.use_proc_events else None
        if self._events is not None:
            loop.add_reader(self._events.fileno(), self._on_proc_events)
        self._obs.put_nowait(Event(t=self._clock(), source="observer", category="lifecycle",
                                   kind="start", outcome="allowed",
                                   detail={"pid": self.pid, "backend": "process",
                                           "uid": self.run_uid if self.run_uid is not None else os.geteuid(),
                                           "security_boundary": False}))
        self._tasks = [
            loop.create_task(self._pump(self._proc.stdout, "stdout")),
            loop.create_task(self._pump(self._proc.stderr, "stderr")),
            loop.create_task(self._monitor()),
            loop.create_task(self._duty_cycle()),
        ]

    def _lay_out(self, learner_dir: Path, control_file: Path) -> None:
        """The private tree: root-owned code and control copy, a scratch only the learner owns."""
        assert self.root is not None
        os.chmod(self.root, 0o755)
        (self.root / "owner.json").write_text(json.dumps({"run": self.run_id, "owner": self._owner}))
        lib = self.root / "lib"
        lib.mkdir()
        if learner_dir.is_dir():
            # A copy, not the checkout: the checkout may sit where the learner's uid cannot
            # read (under /root), and a copy owned by root is one it cannot rewrite.
            shutil.copytree(learner_dir, lib / learner_dir.name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        self._pythonpath = str(lib)
        self.agent_copy: Path | None = None
        if self.agent_dir is not None:
            # A root-owned copy for the same reasons as the learner's code: readable by the
            # learner's uid wherever the original sits, and not rewritable by it.
            self.agent_copy = self.root / "agent"
            shutil.copytree(self.agent_dir, self.agent_copy, ignore=shutil.ignore_patterns("__pycache__"))
            for d, _, files in os.walk(self.agent_copy):
                os.chmod(d, 0o755)
                for f in files:
                    os.chmod(os.path.join(d, f), 0o644)
        self.scratch = self.root / "scratch"
        self.scratch.mkdir(mode=0o700)
        self._relay_from = None
        self._control = control_file
        if self.run_uid is not None:
            os.chown(self.scratch, self.run_uid, self.run_gid if self.run_gid is not None else -1)
            # The runner's control file may sit where the learner's uid cannot read; a
            # relay copies what is appended to a readable copy.
            self._relay_from = control_file
            self._control = self.root / "control"
            self._control.touch(mode=0o644)
            os.chmod(self._control, 0o644)

    def _env(self, env: Mapping[str, str], hosts: Mapping[str, str]) -> dict[str, str]:
        assert self.scratch is not None
        out = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": str(self.scratch),
            "TMPDIR": str(self.scratch),
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            "RUNAWAY_NET_TARGETS": json.dumps(["127.0.0.1"]),
        }
        out.update(env)
        out.update(
            PYTHONPATH=self._pythonpath,
            RUNAWAY_SCRATCH=str(self.scratch),
            RUNAWAY_CONTROL=str(self._control),
            RUNAWAY_HOSTS=json.dumps(dict(hosts) or DEFAULT_HOSTS),
            # We share the host: a real write below /etc would land. Never "real" here.
            RUNAWAY_ATTEMPTS="dry-run",
        )
        out[ENV_MARK] = self.run_id
        out[OWNER_MARK] = self._owner
        return out

    def _limits_in_child(self) -> None:
        """Runs in the child after fork (and after it became the spec's user), before exec:
        only async-signal-safe-ish syscalls, no allocation-heavy Python."""
        spec = self.spec
        if spec.memory:
            resource.setrlimit(resource.RLIMIT_AS, (spec.memory, spec.memory))
        if self.nproc:
            resource.setrlimit(resource.RLIMIT_NPROC, (self.nproc, self.nproc))
        resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        cores, _ = _cap_for(self._cpus, self._host_cpus)
        os.sched_setaffinity(0, cores)
        libc = ctypes.CDLL(None, use_errno=True)
        # If the controller dies without closing (SIGKILL), the learner dies with it; its
        # own children do not inherit this, which is what `clean()` is for.
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if spec.no_new_privileges:
            libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)

    # -- observing ---------------------------------------------------------------------

    def _scan(self, reclassify: bool = False) -> dict[int, procfs.ProcStat]:
        """The live processes of the learner, with their stat: its session, anything a
        member forked (also after setsid), and anything carrying the run's mark in its
        environment. Reads the stat of members and of pid numbers not seen before;
        `reclassify` re-reads every pid, so a recycled pid number is classified afresh."""
        assert self.pid is not None
        if reclassify:
            self._not_members.clear()
        live: dict[int, procfs.ProcStat] = {}
        fresh: list[procfs.ProcStat] = []
        for pid in procfs.all_pids():
            if pid in self._not_members:
                continue
            st = procfs.read_stat(pid)
            if st is None or st.state == "Z":
                continue
            if pid in self._members and self._members[pid] in (0, st.start_ticks):
                live[pid] = st
            else:
                fresh.append(st)
        # Fresh pids in pid order, twice, so a child listed before its new parent is found.
        for _ in range(2):
            rest = []
            for st in fresh:
                if st.session == self.pid or st.ppid in live or (
                    st.start_ticks >= self._leader_start and self._has_mark(st.pid)):
                    live[st.pid] = st
                else:
                    rest.append(st)
            fresh = rest
        self._not_members.update(st.pid for st in fresh)
        self._set_members({pid: st.start_ticks for pid, st in live.items()})
        return live

    def _set_members(self, members: dict[int, int]) -> None:
        for pid, start in self._members.items():
            if members.get(pid) != start and start:
                self._cpu_dead += self._cpu_last.pop((pid, start), 0.0)
        self._members = members

    def _on_proc_events(self) -> None:
        """Kernel process events: re-read the ids of a member that exec'd or changed
        uid/gid (that is when an escalation shows), adopting a member's child at its exec."""
        if self._events is None:
            return
        events, lost = self._events.read()
        # Coalesce: on a host that execs hundreds of times a second, waking for each would
        # cost more than the check; stop listening for a moment, then drain the batch.
        loop = asyncio.get_running_loop()
        fd = self._events.fileno()
        loop.remove_reader(fd)
        loop.call_later(EVENTS_COALESCE_S, self._listen_again, fd)
        check: set[int] = set()
        for e in events:  # exec, uid, gid only (the socket filters out the rest)
            if e.tgid in self._members:
                check.add(e.tgid)
            elif e.kind == "exec":
                st = procfs.read_stat(e.tgid)  # a member's new child, seen at its exec
                if st is not None and (st.ppid in self._members or st.session == self.pid):
                    self._members[e.tgid] = 0  # start ticks filled in by the next scan
                    check.add(e.tgid)
        if lost:  # the kernel dropped events: look at everyone
            check.update(self._members)
        if check:
            for ev in self._check_identity(sorted(check)):
                self._obs.put_nowait(ev)

    def _listen_again(self, fd: int) -> None:
        if self._events is not None and self._events.fileno() == fd:
            # What queued meanwhile is still readable, so the reader fires at once for it.
            asyncio.get_running_loop().add_reader(fd, self._on_proc_events)

    def _follow_children(self) -> set[int]:
        """New children of members, from /proc/<pid>/task/<tid>/children: the cheap check
        between scans, so a fork + exec of a setuid binary is seen within a watch tick."""
        new: set[int] = set()
        for pid in list(self._members):
            try:
                tids = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for tid in tids:
                kids = procfs.read_bytes(f"/proc/{pid}/task/{tid}/children")
                for k in (kids or b"").split():
                    child = int(k)
                    if child not in self._members:
                        st = procfs.read_stat(child)
                        if st is not None and st.state != "Z":
                            self._members[child] = st.start_ticks
                            new.add(child)
        return new

    def _member_pids(self) -> list[int]:
        return sorted(self._scan()) if self.pid is not None else []

    def _has_mark(self, pid: int) -> bool:
        env = procfs.read_bytes(f"/proc/{pid}/environ")
        return env is not None and self._mark in env

    def _identity_base(self, pid: int, ids: tuple[int, int, int, int, int]) -> tuple[int, int, int, int, int]:
        assert self._base_ids is not None  # set at start, before anything is watched
        return self._base_ids

    def _sample(self, stats: Mapping[int, procfs.ProcStat]) -> tuple[Sample, list[tuple[int, int]]]:
        cpu_live = 0.0
        rss = 0
        tasks = 0
        sizes: list[tuple[int, int]] = []
        for pid, st in stats.items():
            # schedstat, not stat's 10 ms ticks, which alias into a 4 Hz sample (procfs).
            precise = procfs.cpu_seconds_precise(pid)
            c = st.cpu_seconds if precise is None else precise
            self._cpu_last[(pid, st.start_ticks)] = c
            cpu_live += c
            rss += st.rss_bytes
            tasks += st.threads
            sizes.append((st.rss_bytes, pid))
        # Cumulative CPU never goes down: a process that ended keeps its last reading.
        self._cpu_total = max(self._cpu_total, self._cpu_dead + cpu_live)
        now = time.monotonic()
        ratio = 0.0
        if self._sample_at is not None:
            dt = now - self._sample_at[0]
            if dt > 0:
                # Against the spec's cap, not the live one (as the Docker backend does): a
                # throttle then shows as a drop, and guards read every backend the same way.
                ratio = (self._cpu_total - self._sample_at[1]) / (dt * self._spec_cpus)
        self._sample_at = (now, self._cpu_total)
        demand = self._demand.read([tid for pid in stats for tid in procfs.threads_of(pid)],
                                   self._spec_cpus)
        s = Sample(t=self._clock(), cpu_ratio=round(max(ratio, 0.0), 4),
                   cpu_seconds=round(self._cpu_total, 4), mem_bytes=rss,
                   mem_limit_bytes=self.spec.memory or 0, pids=tasks,
                   extra={**({} if demand is None else {"cpu_demand": round(demand, 4)}),
                          **({"pids_limit": self.spec.pids} if self.spec.pids else {})})
        return s, sizes

    # The monitor loop (SandboxBase._monitor): every member's identity and a sample at
    # sample_hz (a full scan of /proc each), the identity of new children and of a slice of
    # the members between samples when no kernel process events say who changed, memory
    # enforcement at each sample, the control relay; the exit event at the end.

    def _tick_hz(self) -> float:
        # With kernel events there is nothing to poll between samples.
        return self.spec.sample_hz if self._events is not None else super()._tick_hz()

    def _watch_pids(self, full: bool) -> list[int]:
        if full:
            now = time.monotonic()
            if self._next_reclassify is None:
                self._next_reclassify = now + RECLASSIFY_S
            reclassify = now >= self._next_reclassify
            if reclassify:
                self._next_reclassify = now + RECLASSIFY_S
            self._stats = self._scan(reclassify=reclassify)
            return sorted(self._stats)
        if self._events is not None:
            return []
        new = self._follow_children()
        pids = sorted(self._members)
        if len(pids) > 32:
            # A large group is checked in part: new members, the leader, and a rotating
            # slice, so a fork flood cannot make the watcher expensive.
            k = self._rr % len(pids)
            self._rr += 32
            pids = sorted(set(pids[k : k + 32]) | new | ({self.pid} if self.pid else set()))
        return pids

    async def _take_sample(self, now: float) -> None:
        sample, sizes = self._sample(self._stats)
        self._obs.put_nowait(sample)
        limit = self.spec.memory
        if limit and sample.mem_bytes > limit and sizes:
            rss, victim = max(sizes)
            try:
                os.kill(victim, signal.SIGKILL)
            except ProcessLookupError:
                pass
            else:
                self._obs.put_nowait(Event(
                    t=self._clock(), source="observer", category="lifecycle",
                    kind="oom_kill", outcome="allowed",
                    detail={"pid": victim, "rss_bytes": rss, "group_rss_bytes": sample.mem_bytes,
                            "limit_bytes": limit,
                            "by": "the process sandbox's sampler (not the kernel)"}))

    def _chores(self, now: float, tick: float) -> None:
        if now >= self._next_relay:
            self._next_relay = now + max(RELAY_S, tick)
            self._relay_control()

    def _ended(self) -> bool:
        return self._proc is None or self._proc.returncode is not None

    async def _last_observations(self) -> None:
        assert self._proc is not None
        rc = await self._proc.wait()
        self.returncode = rc
        stats = self._scan()
        pids = sorted(stats)
        sample, _ = self._sample(stats)
        self._obs.put_nowait(sample)
        detail: dict[str, Any] = {"pid": self._proc.pid, "returncode": rc}
        if rc < 0:
            detail["signal"] = signal.Signals(-rc).name if -rc in signal.Signals._value2member_map_ else -rc
        if self._killed:
            detail["by"] = "kill action"
        if pids:
            detail["orphans"] = len(pids)
        self._obs.put_nowait(Event(t=self._clock(), source="observer", category="lifecycle",
                                   kind="exit", outcome="allowed" if rc == 0 else "unknown",
                                   detail=detail))

    # -- CPU cap by duty cycle -----------------------------------------------------------

    async def _duty_cycle(self) -> None:
        """Lets the group run `duty` of each period: SIGCONT, wait, SIGSTOP, wait."""
        while True:
            _, duty = _cap_for(self._cpus, self._host_cpus)
            if duty >= 1.0 or self._paused:
                self._duty_wake.clear()
                await self._duty_wake.wait()
                continue
            if not self._paused:
                _signal_all(list(self._members), signal.SIGCONT, self.pid)
                self._stopped_by_duty = False
            await asyncio.sleep(DUTY_PERIOD_S * duty)
            if self._paused:
                continue
            _, duty = _cap_for(self._cpus, self._host_cpus)
            if duty >= 1.0:
                continue
            _signal_all(list(self._members), signal.SIGSTOP, self.pid)
            self._stopped_by_duty = True
            await asyncio.sleep(DUTY_PERIOD_S * (1 - duty))

    # -- actions -------------------------------------------------------------------------

    def _running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def _wait_states(self, want: Callable[[str | None], bool], timeout: float = 2.0) -> bool:
        """Polls the members until every one's state satisfies `want` (None = gone)."""
        deadline = time.monotonic() + timeout
        while True:
            states = [(procfs.read_stat(p) or None) for p in list(self._members)]
            if all(want(s.state if s else None) for s in states):
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.002)

    async def throttle(self, cpus: float) -> ActionResult:
        t0 = time.monotonic()
        if (refused := self._refused(cpus)) is not None:
            return refused
        before = self._cpus
        self._cpus = min(float(cpus), float(len(self._host_cpus)))
        cores, duty = _cap_for(self._cpus, self._host_cpus)
        for pid in list(self._members):
            _set_affinity(pid, cores)
        self._duty_wake.set()
        if duty >= 1.0 and self._stopped_by_duty and not self._paused:
            _signal_all(list(self._members), signal.SIGCONT, self.pid)
        return ActionResult(True, time.monotonic() - t0,
                            {"cpus": [before, self._cpus], "cores": sorted(cores), "duty": round(duty, 3),
                             "how": "CPU affinity and a SIGSTOP/SIGCONT duty cycle"})

    async def pause(self) -> ActionResult:
        t0 = time.monotonic()
        if (refused := self._refused()) is not None:
            return refused
        self._paused = True
        _signal_all(list(self._members), signal.SIGSTOP, self.pid)
        ok = await self._wait_states(lambda s: s in (None, "T", "t", "Z", "X"))
        return ActionResult(ok, time.monotonic() - t0,
                            {"how": "SIGSTOP to the process group", "pids": len(self._members)})

    async def resume(self) -> ActionResult:
        t0 = time.monotonic()
        if (refused := self._refused()) is not None:
            return refused
        self._paused = False
        _signal_all(list(self._members), signal.SIGCONT, self.pid)
        self._duty_wake.set()
        ok = await self._wait_states(lambda s: s not in ("T",), timeout=1.0)
        return ActionResult(ok, time.monotonic() - t0, {"how": "SIGCONT to the process group"})

    async def exec(self, argv: Sequence[str], *, input: bytes | str | None = None, cwd: str | None = None,
                   env: Mapping[str, str] | None = None, user: str | None = None,
                   timeout: float | None = None, output_limit: int | None = None) -> ExecResult:
        """Run a command as one more member of the group: the learner's uid, limits, affinity
        and environment (whose mark makes the watchers adopt it), so the duty cycle, the
        actions and the observers reach it. Not a boundary, like the rest of this backend."""
        argv = check_exec(argv, cwd, env, timeout, output_limit)
        if self._proc is None or self._closed:
            raise SandboxUnavailable("the sandbox is not running (not started, or closed)")
        if self._killed:
            raise SandboxUnavailable("the sandbox was killed")
        if not self._running():
            raise SandboxUnavailable(f"the sandbox has exited (status {self._proc.returncode})")
        if self._paused:
            raise SandboxUnavailable("the sandbox is paused")
        exec_user(self.spec.user, user)
        assert self.scratch is not None
        data = exec_input(input)
        try:
            proc = await asyncio.create_subprocess_exec(
                *[str(a) for a in argv],
                stdin=asyncio.subprocess.PIPE if data is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                cwd=exec_cwd(str(self.agent_copy or self.scratch), cwd),
                env={**self._full_env, **dict(env or {})}, start_new_session=True,
                user=self.run_uid, group=self.run_gid,
                extra_groups=[] if self.run_uid is not None else None,
                preexec_fn=self._limits_in_child, close_fds=True)
        except (FileNotFoundError, NotADirectoryError) as e:  # as a shell says it: status 127
            return ExecResult(127, b"", f"{argv[0]}: {e.strerror}\n".encode())
        self._members.setdefault(proc.pid, 0)
        out, err = OutputCap(output_limit), OutputCap(output_limit)

        async def drain(stream: asyncio.StreamReader | None, cap: OutputCap) -> None:
            while stream is not None and (chunk := await stream.read(65536)):
                cap.add(chunk)

        async def feed() -> None:
            if proc.stdin is not None:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    proc.stdin.write(data or b"")
                    await proc.stdin.drain()
                proc.stdin.close()

        job = asyncio.gather(feed(), drain(proc.stdout, out), drain(proc.stderr, err), proc.wait())
        try:
            await asyncio.wait_for(asyncio.shield(job), timeout)
        except (asyncio.TimeoutError, asyncio.CancelledError) as e:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(job, 5.0)
            if isinstance(e, asyncio.CancelledError):
                raise
            raise ExecTimeout(float(timeout or 0), out.value(), err.value()) from None
        if self._killed:
            raise SandboxUnavailable("the sandbox was killed while the command ran")
        return ExecResult(proc.returncode if proc.returncode is not None else -1, out.value(), err.value(),
                          truncated=bool(out.dropped or err.dropped))

    async def kill(self, evidence_dir: Path) -> ActionResult:
        """Evidence first (process list, last output lines, scratch listing), then SIGKILL."""
        t0 = time.monotonic()
        if self._proc is None:
            return ActionResult(False, 0.0, {"reason": "the learner never started"})
        evidence_dir = Path(evidence_dir)
        files, note = await self._evidence(self._save_evidence, evidence_dir, self._member_pids())
        t_evidence = time.monotonic() - t0
        self._killed = True
        self._paused = False
        for _ in range(3):  # members may fork between the list and the signal: repeat
            _signal_all(self._member_pids(), signal.SIGKILL, self.pid)
            if await self._wait_states(lambda s: s in (None, "Z", "X"), timeout=0.5):
                break
        try:
            await asyncio.wait_for(self._proc.wait(), timeout=2.0)
        except asyncio.TimeoutError:
            pass
        left = [p for p in self._member_pids()]
        return ActionResult(not left and self._proc.returncode is not None, time.monotonic() - t0,
                            {"evidence": files, "evidence_s": round(t_evidence, 4),
                             "how": "SIGKILL to the process group", "left": left, **note})

    def _save_evidence(self, evidence_dir: Path, pids: Sequence[int]) -> list[str]:
        files = self._write_evidence(evidence_dir, pids)
        listing = evidence_dir / "scratch.txt"
        rows = []
        if self.scratch is not None and self.scratch.exists():
            for dirpath, dirnames, filenames in os.walk(self.scratch):
                for name in sorted(dirnames + filenames):
                    p = Path(dirpath) / name
                    try:
                        st = p.lstat()
                    except OSError:
                        continue
                    rows.append(f"{stat.filemode(st.st_mode)} {st.st_uid}:{st.st_gid} {st.st_size:>10} "
                                f"{p.relative_to(self.scratch)}")
                if len(rows) > 10000:
                    rows.append("... (listing cut at 10000 entries)")
                    break
        listing.write_text("".join(r + "\n" for r in rows))
        return [*files, str(listing)]

    async def disconnect(self) -> ActionResult:
        # Cutting one process group off the network needs a network namespace (or host
        # firewall rules that would also hit everything else running as this uid): that is
        # a container, which is what the Docker backend is for. Say so, do not pretend.
        return ActionResult(False, 0.0, {
            "reason": "not possible in the process sandbox: the learner shares the host's network "
                      "namespace; use pause or kill, or the Docker backend"})

    def _relay_control(self) -> None:
        """Copies what the runner appended to its control file into the learner's copy
        (called from the monitor's ticks, so it costs no wakeups of its own)."""
        if self._relay_from is None or self._control is None:
            return
        try:
            size = os.stat(self._relay_from).st_size
        except OSError:
            return
        if size > self._relay_pos:
            with open(self._relay_from, "rb") as src:
                src.seek(self._relay_pos)
                data = src.read(size - self._relay_pos)
            with open(self._control, "ab") as dst:
                dst.write(data)
            self._relay_pos += len(data)

    async def close(self) -> None:
        """Kills whatever is left, stops the watchers, removes the private tree. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._proc is not None:
            self._paused = False
            for _ in range(3):
                pids = self._member_pids()
                _signal_all(pids, signal.SIGKILL, self.pid)
                if not pids:
                    break
                await asyncio.sleep(0.01)
            try:
                await asyncio.wait_for(self._proc.wait(), timeout=2.0)
            except asyncio.TimeoutError:
                pass
        if self._events is not None:
            try:
                asyncio.get_running_loop().remove_reader(self._events.fileno())
            except (RuntimeError, ValueError):
                pass
            self._events.close()
            self._events = None
        self._close_fds()  # the kernel events' identity checks may have opened some since the monitor's end
        for task in self._tasks[2:]:  # the watchers; the pipe pumps end by themselves at EOF
            task.cancel()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=1.0)
            for task in pending:
                task.cancel()
        if self.root is not None:
            await asyncio.to_thread(shutil.rmtree, self.root, True)
        await asyncio.to_thread(watchdog.disarm, getattr(self, "_watchdog", None))


def _owner_alive(owner: str) -> bool:
    """Whether the controller named `pid:start_ticks` still runs (not a recycled pid)."""
    pid, _, start = owner.partition(":")
    st = procfs.read_stat(int(pid)) if pid.isdigit() else None
    return st is not None and str(st.start_ticks) == start and st.state != "Z"


def _env_value(env: bytes, name: str) -> str | None:
    for item in env.split(b"\0"):
        if item.startswith(name.encode() + b"="):
            return item[len(name) + 1 :].decode("utf-8", "replace")
    return None


def clean(run_id: str | None = None, *, include_live: bool = False) -> dict[str, list[str]]:
    """Kill learner processes and remove private trees that process sandboxes left
    without close() (a SIGKILLed controller): those of `run_id`, or else of every run
    whose controller is gone (also the live ones with `include_live`)."""
    killed: list[str] = []
    skipped: set[str] = set()

    def wanted(run: str | None, owner: str | None) -> bool:
        if run is None:
            return False
        if run_id is not None:
            return run == run_id
        if not include_live and owner and _owner_alive(owner):
            skipped.add(run)
            return False
        return True

    for pid in procfs.all_pids():
        if pid == os.getpid():
            continue
        env = procfs.read_bytes(f"/proc/{pid}/environ")
        if not env or ENV_MARK.encode() not in env:
            continue
        if wanted(_env_value(env, ENV_MARK), _env_value(env, OWNER_MARK)):
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(str(pid))
            except OSError:
                pass
    removed: list[str] = []
    for d in Path(tempfile.gettempdir()).glob(f"{TMP_PREFIX}*"):
        try:
            owner = json.loads((d / "owner.json").read_text())
        except (OSError, ValueError):
            owner = {}
        run = owner.get("run") if isinstance(owner, dict) else None
        if wanted(run if isinstance(run, str) else None, str(owner.get("owner", "")) if run else None):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(str(d))
    out = {"processes": killed, "directories": removed}
    if skipped:
        out["skipped live runs"] = sorted(skipped)
    return out


register_backend(Backend(
    name="process", factory=ProcessSandbox, unavailable=lambda: None, clean=clean,
    is_security_boundary=False, preference=0))
