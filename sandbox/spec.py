"""What a sandbox may be: the spec, its profiles, and the admission check that refuses danger.

A `SandboxSpec` is a value: caps (cpus, memory, pids) and hardening knobs whose defaults
are the safe ones. Profiles name the usual sizes; `choose_profile` fits one to the host;
`admit` refuses a spec that would weaken the boundary unless the caller says `unsafe`.

>>> spec = PROFILES["ci"]
>>> spec.cpus, spec.memory
(0.5, 268435456)
>>> choose_profile(None, host_cpus=2).name
'laptop'
>>> admit(SandboxSpec(cpus=1, memory="1g", pids=64))
[]
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath
from typing import Any, Mapping

from .base import SandboxError

# A user other than root that exists in every Debian image ("nobody"); the learner image
# also has uid 10001 `learner`, but a spec must not depend on one image's /etc/passwd.
DEFAULT_USER = "65534:65534"
# The only network a learner gets: an internal bridge whose host side serves the mock web.
NETWORK_MOCK_WEB = "mock-web-only"
NETWORK_NONE = "none"
NETWORKS = (NETWORK_MOCK_WEB, NETWORK_NONE)
# The mock web's host names: each resolves, inside the sandbox, to the host address the
# mock web binds (the metadata name never reaches 169.254.169.254). The one list: the
# backends, the session and the mock web's own routing read it.
WEB_HOSTS = (WEB_HOST, METADATA_HOST, CLOUD_HOST) = ("web.internal", "metadata.internal", "cloud.internal")

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_UNIT = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(value: str | int | float, *, field: str = "memory") -> int:
    """Bytes from `8g`, `256m`, `512k`, `1.5g` or a plain number of bytes (binary units,
    as Docker reads them).

    >>> parse_size("8g"), parse_size("256m"), parse_size(1024)
    (8589934592, 268435456, 1024)
    """
    if isinstance(value, bool):
        raise SandboxError(f"expected a size like 8g or 256m, got {value!r}", field=field)
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 0:
            raise SandboxError(f"expected a size >= 0, got {value!r}", field=field)
        return int(value)
    if isinstance(value, str):
        m = _SIZE.match(value)
        if m:
            return int(float(m.group(1)) * _UNIT[m.group(2).lower()])
    raise SandboxError(f"expected a size like 8g or 256m, got {value!r}", field=field)


def format_size(n: int) -> str:
    """The shortest exact `8g` / `256m` / `512k` spelling of a byte count.

    >>> format_size(8 << 30), format_size(256 << 20), format_size(1000)
    ('8g', '256m', '1000')
    """
    for unit in ("t", "g", "m", "k"):
        if n and n % _UNIT[unit] == 0:
            return f"{n // _UNIT[unit]}{unit}"
    return str(n)


@dataclass(frozen=True, slots=True)
class Mount:
    """A host path made visible in the sandbox. Admission allows only paths under the
    spec's scratch dir; the backend's own read-only mounts (learner code, control file)
    are not part of the spec."""

    source: str
    target: str
    read_only: bool = True


_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,31})?")
_CAP = re.compile(r"[A-Za-z_]{1,40}")


def _mounts(mounts: Any) -> tuple[Mount, ...]:
    """Mounts from Mount values or {source, target, read_only} mappings."""
    if not isinstance(mounts, (list, tuple)):
        raise SandboxError(f"expected a list of {{source, target, read_only}}, got {mounts!r}", field="mounts")
    out = []
    for i, m in enumerate(mounts):
        if isinstance(m, Mapping):
            extra = set(m) - {"source", "target", "read_only"}
            if extra or not {"source", "target"} <= set(m):
                raise SandboxError(f"expected {{source, target, read_only}}, got {dict(m)!r}", field=f"mounts[{i}]")
            m = Mount(**m)
        if not isinstance(m, Mount):
            raise SandboxError(f"expected {{source, target, read_only}}, got {m!r}", field=f"mounts[{i}]")
        if not (isinstance(m.source, str) and isinstance(m.target, str) and PurePosixPath(m.target).is_absolute()):
            raise SandboxError(f"expected a host path and an absolute path inside, got {m.source!r} -> {m.target!r}",
                               field=f"mounts[{i}]")
        if not isinstance(m.read_only, bool):
            raise SandboxError(f"expected true or false, got {m.read_only!r}", field=f"mounts[{i}].read_only")
        out.append(m)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class SandboxSpec:
    """The caps and hardening of one sandbox. `memory` and `scratch_size` accept `8g`,
    `256m` or bytes and are kept as bytes.

    `cpus`, `memory` or `pids` set to None (or 0) means "no limit", which admission
    refuses. `scratch_dir` is a host directory under which `mounts` may point (None: the
    scratch is a tmpfs/volume the backend makes); `workdir` is where the writable scratch
    appears inside the sandbox.
    """

    cpus: float | None = 1.0
    memory: int | None = 1 << 30
    pids: int | None = 256
    user: str = DEFAULT_USER
    read_only_root: bool = True
    cap_drop: tuple[str, ...] = ("ALL",)
    cap_add: tuple[str, ...] = ()
    no_new_privileges: bool = True
    privileged: bool = False
    network: str = NETWORK_MOCK_WEB
    mounts: tuple[Mount, ...] = ()
    workdir: str = "/scratch"
    scratch_dir: str | None = None
    scratch_size: int = 64 << 20
    sample_hz: float = 4.0

    def __post_init__(self) -> None:
        # Normalise the friendly spellings once so every backend reads plain numbers.
        set_ = object.__setattr__
        if isinstance(self.user, int) and not isinstance(self.user, bool) and self.user >= 0:
            set_(self, "user", str(self.user))  # a bare uid, as YAML reads `user: 1000`
        self._check_kinds()
        if self.cpus is not None:
            if isinstance(self.cpus, bool) or not isinstance(self.cpus, (int, float)) \
                    or not math.isfinite(self.cpus) or self.cpus < 0:
                raise SandboxError(f"expected a number of CPUs > 0, got {self.cpus!r}", field="cpus")
            set_(self, "cpus", float(self.cpus))
        if self.memory is not None:
            set_(self, "memory", parse_size(self.memory, field="memory"))
        if self.pids is not None:
            if isinstance(self.pids, bool) or not isinstance(self.pids, int) or self.pids < 0:
                raise SandboxError(f"expected a whole number of processes, got {self.pids!r}", field="pids")
        set_(self, "scratch_size", parse_size(self.scratch_size, field="scratch_size"))
        if isinstance(self.cap_drop, str):
            set_(self, "cap_drop", (self.cap_drop,))
        if isinstance(self.cap_add, str):
            set_(self, "cap_add", (self.cap_add,))
        for name in ("cap_drop", "cap_add"):
            caps = getattr(self, name)
            if not isinstance(caps, (list, tuple)) or not all(isinstance(c, str) and _CAP.fullmatch(c) for c in caps):
                raise SandboxError(f"expected a list of capability names like NET_RAW, got {caps!r}", field=name)
            set_(self, name, tuple(c.upper() for c in caps))
        set_(self, "mounts", _mounts(self.mounts))
        if isinstance(self.sample_hz, bool) or not isinstance(self.sample_hz, (int, float)) \
                or not (0 < self.sample_hz <= 100):
            raise SandboxError(f"expected a rate in Hz between 0 and 100, got {self.sample_hz!r}",
                               field="sample_hz")
        set_(self, "sample_hz", float(self.sample_hz))
        if not PurePosixPath(self.workdir).is_absolute():
            raise SandboxError(f"expected an absolute path, got {self.workdir!r}", field="workdir")

    def _check_kinds(self) -> None:
        """The fields a backend passes on as they are: a wrong kind of value is a
        SandboxError naming the field now, not a failure deep inside a backend later."""
        if not isinstance(self.user, str) or not _USER.fullmatch(self.user):
            raise SandboxError(f"expected a user like 65534:65534 or learner, got {self.user!r}", field="user")
        for name in ("read_only_root", "no_new_privileges", "privileged"):
            if not isinstance(getattr(self, name), bool):
                raise SandboxError(f"expected true or false, got {getattr(self, name)!r}", field=name)
        if not isinstance(self.network, str) or not self.network:
            raise SandboxError(f"expected a network name ({' or '.join(NETWORKS)}), got {self.network!r}",
                               field="network")
        if not isinstance(self.workdir, str):
            raise SandboxError(f"expected an absolute path, got {self.workdir!r}", field="workdir")
        if self.scratch_dir is not None and not isinstance(self.scratch_dir, str):
            raise SandboxError(f"expected a host directory, got {self.scratch_dir!r}", field="scratch_dir")

    @property
    def uid(self) -> int | None:
        """The numeric uid of `user`, or None when it is a name."""
        head = self.user.split(":", 1)[0]
        return int(head) if head.isdigit() else None

    @property
    def gid(self) -> int | None:
        """The numeric gid of `user` (uid:gid), or None when it is not given as a number."""
        _, sep, tail = self.user.partition(":")
        return int(tail) if sep and tail.isdigit() else None

    def caps(self) -> dict[str, Any]:
        """What goes into the trace's `meta.caps`: the spec in its friendly spellings."""
        return {
            "cpus": self.cpus,
            "memory": format_size(self.memory) if self.memory else None,
            "memory_bytes": self.memory,
            "pids": self.pids,
            "user": self.user,
            "read_only_root": self.read_only_root,
            "cap_drop": list(self.cap_drop),
            "cap_add": list(self.cap_add),
            "no_new_privileges": self.no_new_privileges,
            "privileged": self.privileged,
            "network": self.network,
            "mounts": [{"source": m.source, "target": m.target, "read_only": m.read_only}
                       for m in self.mounts],
            "workdir": self.workdir,
            "scratch_size": format_size(self.scratch_size),
            "sample_hz": self.sample_hz,
        }

    def with_overrides(self, overrides: Mapping[str, Any], *, file: str | None = None,
                       prefix: str = "sandbox") -> "SandboxSpec":
        """This spec with some fields replaced (e.g. a scenario's `sandbox:` block). An
        unknown field or a bad value raises SandboxError naming it."""
        known = set(SandboxSpec.__dataclass_fields__)
        for k in overrides:
            if k not in known:
                raise SandboxError(
                    f"unknown sandbox field {k!r} (expected one of {', '.join(sorted(known))})",
                    file=file, field=f"{prefix}.{k}")
        vals = dict(overrides)
        for k in ("cap_drop", "cap_add"):
            if isinstance(vals.get(k), list):
                vals[k] = tuple(vals[k])
        try:
            return replace(self, **vals)
        except SandboxError as e:
            raise SandboxError(e.message, file=file, field=f"{prefix}.{e.field}") from None


# Profiles (docs/sandbox.md, "Profiles"): the story's VM, a laptop, a CI runner. Guards read cpu_ratio
# against the cap, so each pegs at 1.0 the same way.
PROFILES: dict[str, SandboxSpec] = {
    "novel": SandboxSpec(cpus=4.0, memory="8g", pids=4096, scratch_size="1g"),
    "laptop": SandboxSpec(cpus=1.0, memory="1g", pids=512, scratch_size="256m"),
    "ci": SandboxSpec(cpus=0.5, memory="256m", pids=128, scratch_size="64m"),
}


@dataclass(frozen=True, slots=True)
class ProfileChoice:
    """The profile picked for this host, and what to tell the user about the pick (or None)."""

    name: str
    spec: SandboxSpec
    notice: str | None = None


def _largest_fitting(host_cpus: float) -> str | None:
    fits = [(s.cpus or 0.0, n) for n, s in PROFILES.items() if (s.cpus or 0.0) <= host_cpus]
    return max(fits)[1] if fits else None


def choose_profile(requested: str | None, host_cpus: float | None = None) -> ProfileChoice:
    """The profile to run with on a host with `host_cpus` CPUs (default: this machine's).

    Docker refuses a CPU cap above the host's CPU count. Without a request, the largest
    profile that fits is picked and the notice says so; a requested profile that does
    not fit is refused with the reason and the largest that would.

    >>> choose_profile(None, host_cpus=2).notice
    "no profile asked for: using 'laptop' (1 cpu, 1g), the largest that fits this host's 2 CPUs ('novel' needs 4)"
    """
    if host_cpus is None:
        host_cpus = float(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                          else os.cpu_count() or 1)
    fmt_cpus = f"{host_cpus:g}"
    if requested is not None:
        spec = PROFILES.get(requested)
        if spec is None:
            raise SandboxError(
                f"unknown profile {requested!r} (expected one of {', '.join(PROFILES)})", field="profile")
        if (spec.cpus or 0.0) > host_cpus:
            best = _largest_fitting(host_cpus)
            hint = f"; the largest that fits is {best!r}" if best else "; no profile fits"
            raise SandboxError(
                f"profile {requested!r} caps {spec.cpus:g} CPUs but this host has {fmt_cpus} "
                f"(Docker refuses a CPU cap above the host's CPU count){hint}", field="profile")
        return ProfileChoice(requested, spec)
    best = _largest_fitting(host_cpus)
    if best is None:
        raise SandboxError(f"no profile fits a host with {fmt_cpus} CPUs", field="profile")
    spec = PROFILES[best]
    biggest = max(PROFILES, key=lambda n: PROFILES[n].cpus or 0.0)
    if best == biggest:
        notice = f"no profile asked for: using {best!r} ({spec.cpus:g} cpus, {format_size(spec.memory or 0)})"
    else:
        unit = "cpu" if spec.cpus == 1 else "cpus"
        notice = (f"no profile asked for: using {best!r} ({spec.cpus:g} {unit}, "
                  f"{format_size(spec.memory or 0)}), the largest that fits this host's {fmt_cpus} CPUs "
                  f"({biggest!r} needs {PROFILES[biggest].cpus:g})")
    return ProfileChoice(best, spec, notice)


@dataclass(frozen=True, slots=True)
class Finding:
    """One reason a spec is unsafe: the field and what is wrong with it."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


_DOCKER_SOCKETS = ("docker.sock", "containerd.sock", "podman.sock", "crio.sock")


def _under(path: str, root: str) -> bool:
    p = os.path.realpath(path)
    r = os.path.realpath(root)
    return p == r or p.startswith(r.rstrip("/") + "/")


def findings(spec: SandboxSpec) -> list[Finding]:
    """Every way `spec` weakens the boundary, in a stable order (empty = safe)."""
    out: list[Finding] = []
    if spec.privileged:
        out.append(Finding("privileged", "a privileged sandbox has every capability and every device"))
    for i, m in enumerate(spec.mounts):
        src = m.source
        if any(src.rstrip("/").endswith(s) for s in _DOCKER_SOCKETS) or \
                os.path.realpath(src) in ("/var/run", "/run"):
            out.append(Finding(f"mounts[{i}]", f"mounts the container engine's socket ({src}): "
                                               "that is root on the host"))
        elif spec.scratch_dir is None or not _under(src, spec.scratch_dir):
            where = f"the scratch dir {spec.scratch_dir}" if spec.scratch_dir else "a scratch dir (none set)"
            out.append(Finding(f"mounts[{i}]", f"host path {src} is outside {where}"))
    if spec.cap_add:
        out.append(Finding("cap_add", f"adds capabilities {', '.join(spec.cap_add)}"))
    if "ALL" not in spec.cap_drop:
        out.append(Finding("cap_drop", "does not drop ALL capabilities"))
    if spec.network == "host":
        out.append(Finding("network", "the host network exposes every host port and the LAN"))
    elif spec.network not in NETWORKS:
        out.append(Finding("network", f"network {spec.network!r} is not isolated "
                                      f"(expected {' or '.join(NETWORKS)})"))
    for name in ("cpus", "memory", "pids"):
        if not getattr(spec, name):
            out.append(Finding(name, "no limit set"))
    if spec.uid == 0 or spec.user.split(":", 1)[0] == "root":
        out.append(Finding("user", "runs as root"))
    if not spec.no_new_privileges:
        out.append(Finding("no_new_privileges", "setuid binaries could raise privileges"))
    if not spec.read_only_root:
        out.append(Finding("read_only_root", "the root filesystem is writable"))
    return out


def admit(spec: SandboxSpec, unsafe: bool = False) -> list[str]:
    """Refuse a dangerous spec with the reason (SandboxError naming the field), or, with
    `unsafe=True`, admit it and return the waived findings for the trace (`meta.caps`).

    >>> admit(SandboxSpec(privileged=True))
    Traceback (most recent call last):
    ...
    sandbox.base.SandboxError: privileged: refused: a privileged sandbox has every capability and every device (pass --unsafe to run it anyway; it is recorded in the trace)
    >>> admit(SandboxSpec(privileged=True), unsafe=True)
    ['privileged: a privileged sandbox has every capability and every device']
    """
    if not isinstance(spec, SandboxSpec):
        raise SandboxError(f"expected a SandboxSpec, got {type(spec).__name__}", field="spec")
    found = findings(spec)
    if found and not unsafe:
        first = found[0]
        more = f" (and {len(found) - 1} more: {'; '.join(map(str, found[1:]))})" if len(found) > 1 else ""
        raise SandboxError(
            f"refused: {first.reason}{more} (pass --unsafe to run it anyway; it is recorded in the trace)",
            field=first.field)
    return [str(f) for f in found]
