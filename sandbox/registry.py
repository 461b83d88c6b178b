"""Sandbox backends by name: each backend module registers itself here, and the CLI's
`--backend` choices, `open_sandbox` and `clean` read this registry, never a list of names.

Adding a backend is one module that calls `register_backend` at import, plus its tests;
the modules shipped with runaway are imported the first time the registry is read.

>>> from sandbox.registry import backend_names
>>> backend_names()
['docker', 'process']
"""

from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import dataclass
from typing import Any, Callable

from .base import Sandbox, SandboxError
from .spec import SandboxSpec

# The modules that ship with runaway; each registers one backend when imported.
BUILTIN = ("sandbox.backends.docker", "sandbox.backends.process")


@dataclass(frozen=True)
class Backend:
    """One way to run a learner: how to open it, whether it works here, how to clean up."""

    name: str
    # Makes the sandbox: factory(spec, run_id=..., **backend options).
    factory: Callable[..., Sandbox]
    # None when the backend can run here, else why not (one line).
    unavailable: Callable[[], str | None]
    # Removes what runs left: clean(run_id, include_live=) -> {kind: [what was removed]}.
    clean: Callable[..., dict[str, list[str]]]
    is_security_boundary: bool
    # `auto` takes the available backend with the highest preference.
    preference: int = 0
    # What the user is told when `auto` passes over this backend, and when it is asked
    # for by name but cannot run here ({name} and {why} are filled in).
    missing: str = "the {name} backend cannot run here ({why})"
    refused: str = "the {name} backend cannot run here: {why}"
    # Where the backend is set up on this host (None: not at all). `auto` passes over an
    # unavailable backend only when it is not configured: a configured one that does not
    # answer is an error, never a quiet step down to a weaker sandbox.
    configured: Callable[[], str | None] | None = None


# A run id names containers, networks, directories and labels: no separators or blanks.
_RUN_ID = re.compile(r"[^\s/\\\x00-\x1f\x7f]{1,128}")

_BACKENDS: dict[str, Backend] = {}
_loaded = False


def register_backend(backend: Backend) -> Backend:
    """Make a backend available by its name (replacing one of the same name)."""
    _BACKENDS[backend.name] = backend
    return backend


def unregister_backend(name: str) -> None:
    """Forget a backend (tests that register their own remove it again)."""
    _BACKENDS.pop(name, None)


def _load_builtin() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for mod in BUILTIN:
            importlib.import_module(mod)


def backends() -> list[Backend]:
    """Every registered backend, the preferred first."""
    _load_builtin()
    return sorted(_BACKENDS.values(), key=lambda b: (-b.preference, b.name))


def backend_names() -> list[str]:
    """The names `--backend` accepts besides `auto`, in order of preference."""
    return [b.name for b in backends()]


def get_backend(name: str) -> Backend:
    """The backend called `name` (SandboxError naming the known ones if none is)."""
    _load_builtin()
    if name not in _BACKENDS:
        raise SandboxError(f"unknown backend {name!r} (expected auto or one of: {', '.join(backend_names())})",
                           field="backend")
    return _BACKENDS[name]


def choose_backend(name: str = "auto", notices: list[str] | None = None) -> Backend:
    """The backend for `name`; for `auto`, the most preferred one that can run here, with
    a notice appended to `notices` for each one passed over (and for a fallback that is not
    a security boundary). A named backend that cannot run here is a SandboxError."""
    if name != "auto":
        b = get_backend(name)
        why = b.unavailable()
        if why is not None:
            raise SandboxError(b.refused.format(name=b.name, why=why), field="backend")
        return b
    passed: list[str] = []
    for b in backends():
        why = b.unavailable()
        if why is None:
            if notices is not None and passed:
                note = "; ".join(passed) + f": using the {b.name} sandbox"
                if not b.is_security_boundary:
                    note += ", which is NOT a security boundary"
                notices.append(note)
            return b
        where = b.configured() if b.configured is not None else None
        if where is not None:
            raise SandboxError(f"the {b.name} backend is configured ({where}) but cannot run: {why}; "
                               f"fix it, or choose another backend with --backend", field="backend")
        passed.append(b.missing.format(name=b.name, why=why))
    raise SandboxError("no sandbox backend can run here: " + "; ".join(passed), field="backend")


def open_backend(spec: SandboxSpec, name: str = "auto", *, run_id: str,
                 notices: list[str] | None = None, **kwargs: Any) -> Sandbox:
    """A sandbox of the chosen backend for `spec` (see `choose_backend`). A spec that is
    not a SandboxSpec, a run id that cannot name things on the host, or an option the
    backend does not take is a SandboxError, before anything is made."""
    if not isinstance(spec, SandboxSpec):
        raise SandboxError(f"expected a SandboxSpec, got {type(spec).__name__}", field="spec")
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id) or run_id in (".", ".."):
        raise SandboxError(f"expected a run id of 1 to 128 characters with no spaces, slashes or "
                           f"control characters, got {run_id!r}", field="run_id")
    backend = choose_backend(name, notices)
    params = inspect.signature(backend.factory).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            known = sorted(k for k, p in params.items() if p.kind is p.KEYWORD_ONLY and k != "run_id")
            raise SandboxError(f"the {backend.name} backend has no option {', '.join(map(repr, unknown))} "
                               f"(it takes: {', '.join(known) or 'none'})", field=unknown[0])
    return backend.factory(spec, run_id=run_id, **kwargs)


def clean_all(run_id: str | None = None, *, include_live: bool = False) -> dict[str, list[str]]:
    """What every backend's `clean` removed, merged by kind."""
    removed: dict[str, list[str]] = {}
    for b in backends():
        for kind, names in b.clean(run_id, include_live=include_live).items():
            removed.setdefault(kind, []).extend(names)
    return removed
