"""Running a learner under caps and observing it (Docker first; a process fallback).

>>> from sandbox import PROFILES, admit, open_sandbox
>>> # sb = open_sandbox(PROFILES["ci"], backend="auto", run_id="r1")
"""

from __future__ import annotations

from .base import ActionResult, ExecResult, ExecTimeout, Sandbox, SandboxError, SandboxUnavailable
from .spec import (
    DEFAULT_USER,
    PROFILES,
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
    "open_sandbox", "clean", "docker_available",
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
        return f"{type(e).__name__}: {e}".splitlines()[0][:200]


def open_sandbox(spec: SandboxSpec, backend: str = "auto", *, run_id: str,
                 notices: list[str] | None = None, **kwargs) -> Sandbox:
    """A sandbox for `spec`: `docker`, `process`, or `auto` (Docker when a daemon answers,
    else the process fallback, with a notice appended to `notices` saying so).

    Admission is the caller's job (`admit(spec, unsafe)`), so that the waived findings
    can be recorded in the trace before anything starts.
    """
    if backend not in ("auto", "docker", "process"):
        raise SandboxError(f"unknown backend {backend!r} (expected auto, docker or process)", field="backend")
    if backend == "auto":
        why = docker_available()
        if why is None:
            backend = "docker"
        else:
            backend = "process"
            if notices is not None:
                notices.append(f"no Docker daemon answers ({why}): using the process sandbox, "
                               "which is NOT a security boundary")
    if backend == "docker":
        why = docker_available()
        if why is not None:
            raise SandboxError(f"the docker backend needs a Docker daemon: {why}", field="backend")
        from .backends.docker import DockerSandbox

        return DockerSandbox(spec, run_id=run_id, **kwargs)
    from .backends.process import ProcessSandbox  # built beside this one; imported only when asked for

    return ProcessSandbox(spec, run_id=run_id, **kwargs)


def clean(run_id: str | None = None, *, include_live: bool = False) -> dict[str, list[str]]:
    """Remove what runs left: containers, networks, volumes and firewall rules labelled
    `runaway.run` (or `runaway.run=<run_id>`), and the process backend's leftovers.
    Without a run id, a run whose controller is still alive is skipped unless
    `include_live`. Returns what was removed (and skipped), by kind."""
    removed: dict[str, list[str]] = {}
    if docker_available() is None:
        from .backends.docker import clean as docker_clean

        removed.update(docker_clean(run_id, include_live=include_live))
    else:
        from .backends.docker import firewall_remove

        removed["firewall rules"] = firewall_remove(run_id)
    from .backends.process import clean as process_clean

    removed.update(process_clean(run_id))
    return removed
