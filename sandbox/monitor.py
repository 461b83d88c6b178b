"""What every sandbox backend does alike, written once: the output pumps, the observation
and output streams, "the learner is not running", the CPU-cap check of `throttle`, the
identity baseline, and the evidence files every kill leaves.

A backend subclasses `SandboxBase` and keeps only what differs: how it launches, what it
reads its samples from, how it applies an action, what extra evidence it has.
"""

from __future__ import annotations

import asyncio
import collections
import json
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator, Sequence

from policies.model import Event, Sample

from . import procfs
from .base import ActionResult, SandboxError, until_none
from .spec import SandboxSpec

EVIDENCE_LINES = 200  # the learner's last output lines kept for a kill's evidence
MAX_LINE = 1 << 20  # a line without end is handed over at this size, never held forever
NOT_RUNNING = "the learner is not running"


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
    """The streams and bookkeeping shared by the backends (see the module docstring)."""

    def __init__(self, spec: SandboxSpec, *, run_id: str, pumps: int) -> None:
        self.spec = spec
        self.run_id = run_id
        self._clock: Callable[[], float] = lambda: 0.0
        self._obs: asyncio.Queue[Sample | Event | None] = asyncio.Queue()
        self._out: asyncio.Queue[tuple[str, str] | None] = asyncio.Queue()
        self._pumps = pumps  # output() ends after this many pumps have ended
        self._tail: collections.deque[str] = collections.deque(maxlen=EVIDENCE_LINES)
        self._reported: set[Any] = set()  # identity gains already reported (identity.py)
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
