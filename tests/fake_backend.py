"""An in-memory sandbox backend, registered only in tests: it plays a script of
observations and output lines on the run's clock and records what was done to it, so the
runner can be tested in milliseconds without Docker or a learner process.

It is also the proof that a backend is one module plus a `register_backend` call: the
CLI's `--backend` choices, `open_sandbox` and `clean` find it through the registry.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterable, Mapping, Sequence

from policies.model import Event, Sample
from sandbox.base import ActionResult, until_none
from sandbox.registry import Backend, register_backend, unregister_backend
from sandbox.spec import SandboxSpec

NAME = "fake"
# (seconds after start, a Sample or Event (its t is replaced by the clock), or a
# ("stdout" | "stderr", line) pair)
Script = Iterable[tuple[float, Any]]


class FakeSandbox:
    """Plays `script`, then exits (or waits for a kill when `linger`)."""

    backend = NAME
    is_security_boundary = False
    notice = "fake sandbox: in memory, for tests"

    def __init__(self, spec: SandboxSpec, *, run_id: str, script: Script = (), linger: bool = True,
                 agent_dir: Path | None = None, prepared_notice: str | None = None) -> None:
        self.spec = spec
        self.prepared_notice = prepared_notice  # what prepare() finds, as Docker's tracer fallback
        self.run_id = run_id
        self.script = list(script)
        self.linger = linger
        self.allowed: list[int] = []
        self.started: dict[str, Any] | None = None
        self.applied: list[tuple[str, Any]] = []
        self.closed = False
        self._obs: asyncio.Queue[Sample | Event | None] = asyncio.Queue()
        self._out: asyncio.Queue[tuple[str, str] | None] = asyncio.Queue()
        self._ended = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def prepare(self) -> str:
        if self.prepared_notice:
            self.notice = self.prepared_notice
        return "127.0.0.1"

    def allow_port(self, port: int) -> None:
        self.allowed.append(port)

    async def start(self, argv: Sequence[str], env: Mapping[str, str], learner_dir: Path,
                    hosts: Mapping[str, str], control_file: Path, clock: Callable[[], float]) -> None:
        self.started = {"argv": list(argv), "env": dict(env), "hosts": dict(hosts), "allowed": list(self.allowed)}
        self._task = asyncio.get_running_loop().create_task(self._play(clock))

    async def _play(self, clock: Callable[[], float]) -> None:
        t0 = clock()
        try:
            for at, what in self.script:
                await asyncio.sleep(max(0.0, t0 + at - clock()))
                if self._ended.is_set():
                    break
                if isinstance(what, (Sample, Event)):
                    self._obs.put_nowait(dataclasses.replace(what, t=clock()))
                else:
                    self._out.put_nowait(tuple(what))  # type: ignore[arg-type]
            if self.linger:
                await self._ended.wait()
            self._obs.put_nowait(Event(t=clock(), source="observer", category="lifecycle", kind="exit",
                                       outcome="unknown", detail={"by": "fake"}))
        finally:
            self._obs.put_nowait(None)
            self._out.put_nowait(None)

    def observations(self) -> AsyncIterator[Sample | Event]:
        return until_none(self._obs)

    def output(self) -> AsyncIterator[tuple[str, str]]:
        return until_none(self._out)

    def _running(self) -> bool:
        return self._task is not None and not self._ended.is_set()

    async def _act(self, name: str, arg: Any = None) -> ActionResult:
        if not self._running():
            return ActionResult(False, 0.0, {"reason": "the learner is not running"})
        self.applied.append((name, arg))
        return ActionResult(True, 0.0, {"how": f"fake {name}"})

    async def throttle(self, cpus: float) -> ActionResult:
        return await self._act("throttle", cpus)

    async def pause(self) -> ActionResult:
        return await self._act("pause")

    async def resume(self) -> ActionResult:
        return await self._act("resume")

    async def disconnect(self) -> ActionResult:
        return await self._act("disconnect")

    async def kill(self, evidence_dir: Path) -> ActionResult:
        res = await self._act("kill", Path(evidence_dir))
        self._ended.set()
        return res

    async def close(self) -> None:
        self.closed = True
        self._ended.set()
        if self._task is not None:
            await asyncio.wait([self._task], timeout=1.0)


class FakeBackend:
    """Registers the fake backend for the length of a `with` block; each sandbox opened
    plays `script` and is kept in `opened`."""

    def __init__(self, script: Script = (), **options: Any) -> None:
        self.script = list(script)
        self.options = options
        self.opened: list[FakeSandbox] = []
        self.cleaned: list[str | None] = []

    def _open(self, spec: SandboxSpec, *, run_id: str, **kwargs: Any) -> FakeSandbox:
        sb = FakeSandbox(spec, run_id=run_id, script=self.script, **{**self.options, **kwargs})
        self.opened.append(sb)
        return sb

    def _clean(self, run_id: str | None = None, *, include_live: bool = False) -> dict[str, list[str]]:
        self.cleaned.append(run_id)
        return {"fake sandboxes": []}

    def __enter__(self) -> "FakeBackend":
        register_backend(Backend(name=NAME, factory=self._open, unavailable=lambda: None,
                                 clean=self._clean, is_security_boundary=False, preference=-1))
        return self

    def __exit__(self, *exc: object) -> None:
        unregister_backend(NAME)
