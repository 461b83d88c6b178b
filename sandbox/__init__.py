"""Running a learner under caps and observing it (Docker first; a process fallback).

>>> from sandbox import PROFILES, admit, open_sandbox
>>> # sb = open_sandbox(PROFILES["ci"], backend="auto", run_id="r1")
"""

from __future__ import annotations

from .base import ActionResult, ExecResult, ExecTimeout, Sandbox, SandboxError, SandboxUnavailable
from .registry import Backend, backend_names, clean_all, open_backend, register_backend
from .spec import (
    DEFAULT_USER,
    PROFILES,
    WEB_HOSTS,
    Mount,
    ProfileChoice,
    SandboxSpec,
    admit,
    choose_profile,
    format_size,
    parse_size,
)

__all__ = [
    "ActionResult", "ExecResult", "ExecTimeout", "Sandbox", "SandboxError", "SandboxUnavailable", "SandboxSpec", "Mount", "PROFILES", "DEFAULT_USER",
    "ProfileChoice", "choose_profile", "admit", "parse_size", "format_size",
    "open_sandbox", "clean", "docker_available", "WEB_HOSTS",
    "Backend", "backend_names", "register_backend",
]


def docker_available(timeout: float = 3.0) -> str | None:
    """None when a Docker daemon answers, else why not (one line)."""
    try:
        import docker

        client = docker.from_env(timeout=timeout)
        try:
            client.ping()
        finally:
            client.close()
        return None
    except Exception as e:  # any failure to reach the daemon means: not available
        from .dockerd import one_line

        return one_line(e)


def docker_configured() -> str | None:
    """Where a Docker daemon is configured to be (DOCKER_HOST, or the default socket
    exists), or None when this host has no Docker at all."""
    import os

    if os.environ.get("DOCKER_HOST"):
        return f"DOCKER_HOST={os.environ['DOCKER_HOST']}"
    if os.path.exists("/var/run/docker.sock"):
        return "/var/run/docker.sock"
    return None


def open_sandbox(spec: SandboxSpec, backend: str = "auto", *, run_id: str,
                 notices: list[str] | None = None, **kwargs) -> Sandbox:
    """A sandbox for `spec` from the backend registry (sandbox/registry.py): a backend by
    name, or `auto`, the most preferred one that runs here (Docker when a daemon answers,
    else the process fallback), with a notice appended to `notices` saying what was passed
    over.

    Admission is the caller's job (`admit(spec, unsafe)`), so that the waived findings
    can be recorded in the trace before anything starts.
    """
    return open_backend(spec, backend, run_id=run_id, notices=notices, **kwargs)


def clean(run_id: str | None = None, *, include_live: bool = False) -> dict[str, list[str]]:
    """Remove what runs left, by every registered backend: containers, networks, volumes
    and firewall rules labelled `runaway.run` (or `runaway.run=<run_id>`), and the process
    backend's leftovers. Without a run id, a run whose controller is still alive is skipped
    unless `include_live`. Returns what was removed (and skipped), by kind."""
    return clean_all(run_id, include_live=include_live)
