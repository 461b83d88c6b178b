"""What every sandbox backend does alike, written once: the output pumps, the observation
and output streams, the monitor loop, the identity checks, "the learner is not running",
the CPU-cap check of `throttle`, and the evidence files every kill leaves.

A backend subclasses `SandboxBase` and keeps only what differs: how it launches, how it
lists the sandbox's processes and what it reads its samples from (the monitor loop's
hooks below), how it applies an action, what extra evidence it has.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import time
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence

from policies.model import Event, Sample

from . import procfs
from .base import ActionResult, SandboxError, until_none
from .identity import Ids, identity_events, ids_key
from .spec import SandboxSpec

EVIDENCE_LINES = 200  # the learner's last output lines kept for a kill's evidence
MAX_LINE = 1 << 20  # a line without end is handed over at this size, never held forever
NOT_RUNNING = "the learner is not running"
# /proc descriptors kept open for the identity checks; past this many (a fork flood) a read
# opens and closes its file, so the controller never runs out of descriptors.
MAX_KEPT_FDS = 512


class LineSplitter:
    """Bytes in, whole lines out (decoded, `\\r` stripped); a line longer than MAX_LINE is
    cut there, and `rest()` gives what is left at the end of the stream."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> Iterator[str]:
        buf = self._buf + chunk
        while True:
            nl = buf.find(b"\n")
            if nl < 0:
                if len(buf) <= MAX_LINE:
                    break
                nl = len(buf)
            yield buf[:nl].decode("utf-8", "replace").rstrip("\r")
            buf = buf[nl + 1:]
        self._buf = buf

    def rest(self) -> str | None:
        buf, self._buf = self._buf, b""
        return buf.decode("utf-8", "replace").rstrip("\r") if buf else None


class SandboxBase:
    """The streams, the monitor loop and the bookkeeping shared by the backends (see the
    module docstring)."""

    watch_hz: float  # identity checks per second between samples (each backend's default)

    def __init__(self, spec: SandboxSpec, *, run_id: str, pumps: int) -> None:
        self.spec = spec
        self.run_id = run_id
        self._clock: Callable[[], float] = lambda: 0.0
        self._obs: asyncio.Queue[Sample | Event | None] = asyncio.Queue()
        self._out: asyncio.Queue[tuple[str, str] | None] = asyncio.Queue()
        self._pumps = pumps  # output() ends after this many pumps have ended
        self._tail: collections.deque[str] = collections.deque(maxlen=EVIDENCE_LINES)
        self._reported: set[Any] = set()  # identity gains already reported (identity.py)
        self._ident_raw: dict[int, bytes] = {}  # pid -> ids_key at the last look
        self._fds: dict[str, int] = {}  # /proc files kept open (_pread)
        self._closed = False

    def _check_open(self) -> None:
        """A closed sandbox makes nothing again: what it made now would never be removed."""
        if self._closed:
            raise SandboxError("this sandbox is closed: open a new one", field="sandbox")

    @staticmethod
    def _check_port(port: Any) -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise SandboxError(f"expected a TCP port from 1 to 65535, got {port!r}", field="port")

    # -- streams ---------------------------------------------------------------------

    def observations(self) -> AsyncIterator[Sample | Event]:
        """Samples, observer and lifecycle events, until the monitor ends (a None)."""
        return until_none(self._obs)

    def output(self) -> AsyncIterator[tuple[str, str]]:
        """("stdout" | "stderr", line) from the learner, until every pump has ended."""
        return until_none(self._out, self._pumps)

    def _line(self, stream: str, text: str) -> tuple[str, str]:
        """Keep a line for the evidence; the item to put on the output queue."""
        self._tail.append(f"{stream}: {text}")
        return (stream, text)

    async def _pump(self, reader: asyncio.StreamReader | None, stream: str) -> None:
        """Lines from one pipe to the output queue. Long lines are split, never fatal."""
        try:
            if reader is None:
                return
            lines = LineSplitter()
            while chunk := await reader.read(65536):
                for text in lines.feed(chunk):
                    self._out.put_nowait(self._line(stream, text))
            if (text := lines.rest()) is not None:
                self._out.put_nowait(self._line(stream, text))
        finally:
            self._out.put_nowait(None)

    # -- the monitor loop --------------------------------------------------------------

    async def _monitor(self) -> None:
        """The one monitor loop: at every tick the identity of the sandbox's processes (an
        escalation event for any gain), every 1/sample_hz a sample, then the backend's
        chores; once the learner has ended, its last observations and the end of the
        stream (a None)."""
        tick = 1.0 / self._tick_hz()
        every = 1.0 / self.spec.sample_hz
        next_sample = time.monotonic()
        try:
            while True:
                now = time.monotonic()
                full = now >= next_sample
                for ev in self._check_identity(self._watch_pids(full)):
                    self._obs.put_nowait(ev)
                if full:
                    next_sample = max(next_sample + every, now)
                    await self._take_sample(now)
                self._chores(now, tick)
                if self._ended():
                    break
                await asyncio.sleep(tick)  # cheaper than waiting on the exit, per tick
            await self._last_observations()
        finally:
            self._monitor_ended()
            self._close_fds()
            self._obs.put_nowait(None)

    # What a backend supplies to the loop.

    def _tick_hz(self) -> float:
        """How often the loop wakes: the identity checks' rate, or the sample rate if higher."""
        return max(self.watch_hz, self.spec.sample_hz)

    def _watch_pids(self, full: bool) -> Sequence[int]:
        """The pids whose identity this tick checks. `full`: a sample is due, so a
        thorough listing is worth its cost; between samples, a cheap one (or none)."""
        raise NotImplementedError

    async def _take_sample(self, now: float) -> None:
        """Put a Sample (and any OOM kill it shows) on the observation queue."""
        raise NotImplementedError

    def _chores(self, now: float, tick: float) -> None:
        """What else the backend does at its own pace between ticks (nothing by default)."""

    def _ended(self) -> bool:
        """Whether the learner has ended (the loop stops after this tick)."""
        raise NotImplementedError

    async def _last_observations(self) -> None:
        """What the learner's end leaves to observe: a last sample, the exit event."""
        raise NotImplementedError

    def _monitor_ended(self) -> None:
        """Let go of what the loop held (nothing by default)."""

    # -- identity ----------------------------------------------------------------------

    def _check_identity(self, pids: Sequence[int]) -> list[Event]:
        """Escalation events for any of `pids` whose uid, euid, gid, egid or effective
        capabilities differ from its baseline (identity.py), each gain once per process.
        Runs at watch_hz, so the common case, nothing changed since the last look, costs
        one small read and a bytes comparison per process."""
        statuses = {pid: self._pread(f"/proc/{pid}/status") for pid in pids}
        out: list[Event] = []
        seen: dict[int, bytes] = {}
        for pid in self._judged(statuses):
            raw = statuses[pid]
            if not raw:  # exited between the list and the read
                continue
            key = seen[pid] = ids_key(raw)
            if self._ident_raw.get(pid) == key:
                continue
            ids = procfs.ids_of(raw)
            if ids is None:
                continue
            base = self._identity_base(pid, ids)
            if ids == base:
                continue
            # Who gained is a pid and its start time: a pid number used again is a new process.
            st = procfs.read_stat(pid)
            out += identity_events(self._clock(), pid, st.comm if st else "?", base, ids, self._reported,
                                   (pid, st.start_ticks if st else 0))
        self._ident_raw = seen
        for path in [p for p in self._fds if p.startswith("/proc/") and int(p.split("/")[2]) not in seen]:
            os.close(self._fds.pop(path))  # that process has gone, or was not looked at
        return out

    def _judged(self, statuses: Mapping[int, bytes]) -> Iterable[int]:
        """Which of the listed processes are the learner's, to judge (all of them, unless
        the backend runs helpers of its own in the sandbox)."""
        return statuses

    def _identity_base(self, pid: int, ids: Ids) -> Ids:
        """The ids a process of the learner may have: what the spec asked for, not what the
        first process happens to show (that one may already be a setuid binary)."""
        raise NotImplementedError

    def _pread(self, path: str) -> bytes:
        """The whole of a small /proc or cgroup file, through a descriptor kept open: at
        watch_hz, open() and close() cost more than the read itself. A descriptor on
        /proc/<pid>/... stays bound to that process, so a reused pid is never misread."""
        fd = self._fds.get(path)
        if fd is None and len(self._fds) >= MAX_KEPT_FDS:
            return procfs.read_bytes(path) or b""
        try:
            if fd is None:
                fd = self._fds[path] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            return os.pread(fd, 65536, 0)
        except OSError:  # gone: the process exited, or the cgroup with its container
            if fd is not None:
                os.close(self._fds.pop(path))
            return b""

    def _close_fds(self) -> None:
        for fd in self._fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds.clear()

    # -- actions ---------------------------------------------------------------------

    def _running(self) -> bool:
        """Whether the learner has started and not yet ended (each backend knows how)."""
        raise NotImplementedError

    def _refused(self, cpus: Any = 1.0) -> ActionResult | None:
        """Why an action cannot be applied now: the learner is not running, or `cpus` (a
        throttle's cap) is not a number above 0. None when it can."""
        if not self._running():
            return ActionResult(False, 0.0, {"reason": NOT_RUNNING})
        if isinstance(cpus, bool) or not isinstance(cpus, (int, float)) or not cpus > 0:
            return ActionResult(False, 0.0, {"reason": f"expected a CPU cap > 0, got {cpus!r}"})
        return None

    async def _evidence(self, save: Callable[..., list[str]], *args: Any) -> tuple[list[str], dict[str, str]]:
        """The files a kill saves before it kills (`save(*args)`, in a thread). Failing to
        save them (a full disk, an unwritable directory) goes into the action's detail as
        `evidence_error`: it is never a reason not to kill."""
        try:
            return await asyncio.to_thread(save, *args), {}
        except Exception as e:  # whatever went wrong with the files, the kill goes ahead
            return [], {"evidence_error": f"{type(e).__name__}: {e}"[:300]}

    def _write_evidence(self, evidence_dir: Path, pids: Sequence[int]) -> list[str]:
        """processes.json (who was running) and last_lines.log (what they last said);
        a backend adds what else it can see."""
        evidence_dir.mkdir(parents=True, exist_ok=True)
        procs = evidence_dir / "processes.json"
        procs.write_text(json.dumps(procfs.process_list(pids), indent=1) + "\n")
        tail = evidence_dir / "last_lines.log"
        tail.write_text("".join(line + "\n" for line in list(self._tail)), encoding="utf-8")
        return [str(procs), str(tail)]
