"""One sandbox session: prepare -> web -> allow_port -> start -> close, in that order.

The order is the sandbox's contract (docs/internals.md, "The sandbox"): the backend
makes its network and returns the host address first, the mock web binds that address,
the backend opens exactly the web's port, and only then does the learner start. The
runner, the selftest and the sandbox bench all go through this class, so none of them
can get the order wrong or forget to take the web down.

>>> # async with SandboxSession.open(spec, "auto", run_id="r1", notices=notes) as s:
>>> #     host = await s.prepare(); port = await s.serve(MockWeb(...))
>>> #     await s.start(argv, s.web_env(), control_file, clock)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

from sandbox import WEB_HOSTS, Sandbox, open_sandbox
from sandbox.spec import SandboxSpec

# The learner package, bind-mounted read-only into the sandbox (the one place it is named).
LEARNER_DIR = Path(__file__).resolve().parents[1] / "learner"


class Web(Protocol):
    """What a session serves the learner: the mock web (sim.web.MockWeb) or a bench stand-in."""

    async def start(self, host: str, port: int = 0) -> int: ...

    async def stop(self) -> None: ...


class SandboxSession:
    """A sandbox and the web it may reach, set up and taken down in the contract's order."""

    def __init__(self, sandbox: Sandbox, notices: list[str] | None = None) -> None:
        self.sandbox = sandbox
        self.host: str | None = None
        self.web: Web | None = None
        self.web_port: int | None = None
        self._closed = False
        self._notices = notices  # the run's; prepare() adds what it finds

    @classmethod
    def open(cls, spec: SandboxSpec, backend: str = "auto", *, run_id: str,
             notices: list[str] | None = None, **backend_options: Any) -> "SandboxSession":
        """A session on a new sandbox of `backend` (auto: the best one here; a notice says
        what was passed over and what the backend cannot do)."""
        sb = open_sandbox(spec, backend, run_id=run_id, notices=notices, **backend_options)
        if notices is not None and sb.notice:
            notices.append(sb.notice)
        return cls(sb, notices)

    async def prepare(self) -> str:
        """The backend's network; the host address the web must bind."""
        before = self.sandbox.notice
        self.host = await self.sandbox.prepare()
        if self._notices is not None and self.sandbox.notice and self.sandbox.notice != before:
            self._notices.append(self.sandbox.notice)  # what preparing found (a tracer's fallback)
        return self.host

    async def serve(self, web: Web) -> int:
        """Start `web` on the host address and open exactly its port to the learner."""
        if self.host is None:
            await self.prepare()
        assert self.host is not None
        self.web = web
        self.web_port = await web.start(self.host, 0)
        self.sandbox.allow_port(self.web_port)
        return self.web_port

    def hosts(self) -> dict[str, str]:
        """The mock host names, each resolving to the web's host address."""
        return {name: self.host or "127.0.0.1" for name in WEB_HOSTS}

    def web_env(self) -> dict[str, str]:
        """RUNAWAY_WEB for the learner, once a web is served (else nothing)."""
        return {"RUNAWAY_WEB": f"http://{WEB_HOSTS[0]}:{self.web_port}"} if self.web_port else {}

    async def start(self, argv: Sequence[str], env: Mapping[str, str], control_file: Path,
                    clock: Callable[[], float], learner_dir: Path = LEARNER_DIR) -> None:
        """Start the learner (argv) under the caps; observations are stamped with `clock()`."""
        if self.host is None:
            await self.prepare()
        await self.sandbox.start(argv, env, learner_dir, self.hosts(), control_file, clock)

    async def close(self) -> None:
        """Remove the sandbox, then stop the web. Idempotent; safe after a failed start."""
        if self._closed:
            return
        self._closed = True
        try:
            await self.sandbox.close()
        finally:
            if self.web is not None:
                await self.web.stop()

    async def __aenter__(self) -> "SandboxSession":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
