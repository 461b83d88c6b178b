"""The one small interface every sandbox backend implements.

The runner holds a `Sandbox` and never asks which backend it is: Docker and the process
fallback differ only in how well they contain, which `is_security_boundary` says.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
import asyncio
from typing import Any, AsyncIterator, Callable, Mapping, Protocol, Sequence, TypeVar

from policies.errors import RunawayError
from policies.model import Event, Sample


T = TypeVar("T")


async def until_none(queue: asyncio.Queue[T | None]) -> AsyncIterator[T]:
    """The items a backend's thread or task puts on a queue, until the None that ends them."""
    while True:
        item = await queue.get()
        if item is None:
            return
        yield item


class SandboxError(RunawayError):
    """A sandbox that cannot be made as asked: a refused spec, a missing image, no backend."""


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What a containment action did: whether it took effect and how long that took."""

    ok: bool
    latency_s: float
    detail: Mapping[str, Any] = field(default_factory=dict)


class Sandbox(Protocol):
    backend: str  # "docker" | "process"
    is_security_boundary: bool  # False for the process backend, and said so to the user
    notice: str | None  # what the user must be told about this backend (None: nothing)
    tracer: str | None  # the syscall tracer's mode ("ptrace", "seccomp"), or None: no tracer
    tracer_info: dict[str, Any] | None  # what traces the agent (meta.tracer), or None

    async def prepare(self) -> str:
        """Create what the run needs before the web starts (network); return the host IP
        the mock web must bind to so that the learner, and only it, can reach it."""

    def allow_port(self, port: int) -> None:
        """Open exactly this port of the host IP to the learner (the mock web's), once it is
        bound; everything else on the host side stays closed."""

    async def start(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        learner_dir: Path,
        hosts: Mapping[str, str],
        control_file: Path,
        clock: Callable[[], float],
    ) -> None:
        """Start the learner (argv) under the caps. `clock()` gives seconds since the run
        started; observations are stamped with it."""

    def observations(self) -> AsyncIterator[Sample | Event]:
        """Samples at the spec's rate, observer and lifecycle events, until the learner ends."""

    def output(self) -> AsyncIterator[tuple[str, str]]:
        """("stdout" | "stderr", line) from the learner, until it ends."""

    async def throttle(self, cpus: float) -> ActionResult: ...

    async def pause(self) -> ActionResult: ...

    async def resume(self) -> ActionResult: ...

    async def kill(self, evidence_dir: Path) -> ActionResult:
        """Save evidence (process list, filesystem diff, last log lines) first, then kill."""

    async def disconnect(self) -> ActionResult: ...

    async def close(self) -> None:
        """Remove everything this sandbox made. Idempotent; safe after a failed start."""
