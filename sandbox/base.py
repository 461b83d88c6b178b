"""The one small interface every sandbox backend implements.

The runner holds a `Sandbox` and never asks which backend it is: Docker and the process
fallback differ only in how well they contain, which `is_security_boundary` says.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
import asyncio
import os
import threading
from collections import abc
from typing import Any, AsyncIterator, Callable, Mapping, Protocol, Sequence, TypeVar

from policies.errors import RunawayError
from policies.model import Event, Sample


T = TypeVar("T")

# The longest line a backend hands over: a learner that writes without newlines gets its
# output cut into pieces this long, so it cannot grow the controller's buffers.
MAX_LINE_BYTES = 1 << 20


async def in_own_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` in a thread of its own, for a call that blocks as long as a
    sandbox lives (waiting for a container to exit). `asyncio.to_thread` would take a worker
    of the loop's default executor, which has only min(32, cores + 4): on a 2-core host six
    sandboxes waiting there starve every other `to_thread` call of the process, their own
    removal included, and a sweep of eight hangs at its end."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if not fut.done():
            fut.set_result(value) if ok else fut.set_exception(value)

    def body() -> None:
        try:
            value, ok = fn(*args, **kwargs), True
        except BaseException as e:  # handed to the awaiting task
            value, ok = e, False
        try:
            loop.call_soon_threadsafe(settle, ok, value)
        except RuntimeError:  # the loop has closed: nobody awaits it any more
            pass

    threading.Thread(target=body, name=f"runaway-{getattr(fn, '__name__', 'call')}", daemon=True).start()
    return await fut


async def until_none(queue: asyncio.Queue[T | None], ends: int = 1) -> AsyncIterator[T]:
    """The items a backend's threads or tasks put on a queue, until `ends` Nones (one per
    producer) have ended them."""
    while ends > 0:
        item = await queue.get()
        if item is None:
            ends -= 1
            continue
        yield item


class SandboxError(RunawayError):
    """What the sandbox API raises for everything that goes wrong in it: a refused spec or
    argument, a missing image, no backend, a Docker daemon that refuses or does not answer,
    a call on a closed sandbox. The message is one line that says which."""


class SandboxUnavailable(SandboxError, RuntimeError):
    """A command cannot run in the sandbox now: it never started, it has exited or been
    killed, or it is paused. The message says which. (A SandboxError, and a RuntimeError
    as it always was.)"""


class ExecTimeout(TimeoutError):
    """A command run by `Sandbox.exec` outlived its timeout and was killed; what it wrote
    before that is kept."""

    def __init__(self, timeout: float, stdout: bytes = b"", stderr: bytes = b"") -> None:
        super().__init__(f"the command timed out after {timeout:g} s and was killed")
        self.timeout = timeout
        self.stdout = stdout
        self.stderr = stderr


@dataclass(frozen=True, slots=True)
class ExecResult:
    """What a command run in the sandbox returned. `truncated` says a stream went past the
    output limit: only its first `limit` bytes are kept."""

    returncode: int
    stdout: bytes
    stderr: bytes
    truncated: bool = False


class OutputCap:
    """Collects one stream of a command's output up to a limit (bytes past it are counted,
    not kept)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.parts: list[bytes] = []
        self.size = 0
        self.dropped = 0

    def add(self, data: bytes) -> None:
        room = len(data) if self.limit is None else max(0, self.limit - self.size)
        if room < len(data):
            self.dropped += len(data) - room
            data = data[:room]
        if data:
            self.parts.append(data)
            self.size += len(data)

    def value(self) -> bytes:
        return b"".join(self.parts)


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What a containment action did: whether it took effect and how long that took."""

    ok: bool
    latency_s: float
    detail: Mapping[str, Any] = field(default_factory=dict)


def check_argv(argv: Any) -> list[str]:
    """A command as a list of strings, or SandboxError: an empty one, or a string (which
    would run its first character), is refused."""
    if isinstance(argv, (str, bytes)) or not isinstance(argv, abc.Sequence) or not argv \
            or not all(isinstance(a, (str, os.PathLike)) for a in argv):
        raise SandboxError(f"expected a command to run as a list of strings, got {argv!r:.200}", field="argv")
    return [os.fspath(a) for a in argv]


def check_exec(argv: Any, cwd: Any, env: Any, timeout: Any, output_limit: Any) -> list[str]:
    """`exec`'s arguments, each of the kind `Sandbox.exec` documents, or SandboxError naming it."""
    if cwd is not None and not isinstance(cwd, str):
        raise SandboxError(f"expected a directory, got {cwd!r:.200}", field="cwd")
    if env is not None and not (isinstance(env, abc.Mapping)
                                and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())):
        raise SandboxError(f"expected a mapping of strings, got {env!r:.200}", field="env")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or not 0 < timeout < float("inf")):
        raise SandboxError(f"expected seconds > 0, got {timeout!r}", field="timeout")
    if output_limit is not None and (isinstance(output_limit, bool) or not isinstance(output_limit, int)
                                     or output_limit < 0):
        raise SandboxError(f"expected a number of bytes >= 0, got {output_limit!r}", field="output_limit")
    return check_argv(argv)


def exec_user(spec_user: str, user: str | None) -> str:
    """The user a command runs as: the spec's own. Asking for another one (root above all)
    is refused: a second identity in the sandbox is what the identity checks call an
    escalation."""
    if user is None or user in (spec_user, spec_user.split(":", 1)[0]):
        return spec_user
    raise PermissionError(f"commands run only as the sandbox's user {spec_user}, not {user!r}")


def exec_cwd(default: str, cwd: str | None) -> str:
    """The working directory of a command: `default` (the scratch dir), or `cwd`, relative
    to it when not absolute."""
    if cwd is None:
        return default
    return str(PurePosixPath(default) / cwd)


def exec_input(data: bytes | str | None) -> bytes | None:
    return data.encode("utf-8") if isinstance(data, str) else data


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

    async def exec(
        self,
        argv: Sequence[str],
        *,
        input: bytes | str | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        timeout: float | None = None,
        output_limit: int | None = None,
    ) -> ExecResult:
        """Run one more command inside the running sandbox, under the same caps, hardening,
        network and observers as the learner, as the spec's user (another user is a
        PermissionError). `cwd` defaults to the scratch dir (relative: under it).
        Raises SandboxUnavailable when the sandbox is not running (or is paused), and
        ExecTimeout when `timeout` passes (the command's processes are killed)."""

    async def close(self) -> None:
        """Remove everything this sandbox made. Idempotent; safe after a failed start."""
