"""Talking to the Docker daemon: one place that opens a client and turns the daemon's
failures into one-line SandboxErrors.

The Docker SDK raises its own errors (docker.errors.*) when the daemon refuses something,
and requests' errors (ConnectionError, ReadTimeout) when it does not answer at all or
stops answering half-way. A user of the sandbox API gets neither: every call into the
daemon that a public method makes goes through `answers(doing)`, which raises
SandboxError saying what was being done and which of the two happened.

>>> # client = dockerd.client(timeout=60)
>>> # with dockerd.answers("creating the sandbox network", field="network"):
>>> #     client.networks.create(...)
"""

from __future__ import annotations

import contextlib
import re
from typing import Iterator

from .base import SandboxError

NO_ANSWER = "Docker does not answer"


_TIMED_OUT = re.compile(r"read timeout=([0-9.]+)")
_CAUSES = {"FileNotFoundError": "no such socket", "ConnectionRefusedError": "connection refused",
           "PermissionError": "permission denied on its socket"}


def one_line(e: BaseException) -> str:
    """An exception as one short line: its type and the first line of its text, or for
    a daemon that stopped answering, how long it was given.

    >>> one_line(TimeoutError("UnixHTTPConnectionPool(...): Read timed out. (read timeout=60)"))
    'timed out after 60 s'
    >>> one_line(OSError("('Connection aborted.', FileNotFoundError(2, 'No such file or directory'))"))
    'no such socket'
    """
    text = str(getattr(e, "explanation", None) or e).strip()
    if m := _TIMED_OUT.search(text):
        return f"timed out after {float(m.group(1)):g} s"
    for cause, said in _CAUSES.items():  # the SDK nests the socket's error in its text
        if cause in text:
            return said
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"[:200].rstrip(": ")


def unreachable_errors() -> tuple[type[BaseException], ...]:
    """What the SDK raises when the daemon does not answer (no socket, refused, timed out,
    the connection dropped), as opposed to answering with a refusal."""
    import docker
    import requests

    return (requests.exceptions.RequestException, docker.errors.DockerException, ConnectionError,
            TimeoutError)


@contextlib.contextmanager
def answers(doing: str, *, field: str = "backend") -> Iterator[None]:
    """Docker's failures inside the block as SandboxError(`doing`: what went wrong).

    A refusal (docker.errors.APIError) says what the daemon said; no answer says "Docker
    does not answer" with the cause. SandboxErrors raised in the block pass unchanged."""
    try:
        yield
    except SandboxError:
        raise
    except unreachable_errors() as e:  # docker.errors.APIError is a DockerException
        raise SandboxError(f"{doing}: {describe(e)}", field=field) from None


def describe(e: BaseException) -> str:
    """What a Docker failure means to the user: the daemon refused (what it said), or it
    does not answer (why not)."""
    import docker

    if isinstance(e, docker.errors.APIError):
        return f"Docker refused: {str(e.explanation or e).strip().splitlines()[0][:200]}"
    return f"{NO_ANSWER} ({one_line(e)})"


def client(timeout: float = 60, *, field: str = "backend"):
    """A Docker client from the environment (DOCKER_HOST or the default socket), or
    SandboxError saying that no daemon answers there. `timeout` bounds each call."""
    import docker

    try:
        return docker.from_env(timeout=timeout)
    except Exception as e:  # no daemon, a bad DOCKER_HOST, no answer: one line for the user
        raise SandboxError(f"{NO_ANSWER} ({one_line(e)})", field=field) from None
