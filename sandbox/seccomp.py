"""The sandbox's seccomp profile in the tracer's `seccomp` mode: Docker's own, with four changes.

strace's `--seccomp-bpf` stops only on the calls it traces, so an untraced call costs
nothing. Two things stand in the way of using it alone, and two more guard the result:

1. **Calls Docker's profile refuses never reach the tracer.** seccomp's ERRNO outranks
   strace's TRACE, so mount, unshare, setns, bpf, keyctl or a module load would be refused
   unseen. Here every traced call that the engine's profile refuses by its default action
   (no rule names it) is handed to the tracer instead (`SCMP_ACT_TRACE`), and strace
   refuses it itself with the same error the engine would have returned (`-e inject=...:
   error=EPERM`), so the line reads `mount(...) = -1 EPERM (...) (INJECTED)`. It fails
   closed without the tracer: a TRACE call made by a process no tracer is attached to
   fails with ENOSYS (seccomp(2)), and the tracer is the sandbox's init, whose end ends
   every process in it. Calls the engine refuses by an explicit rule (clone3's ENOSYS,
   clone with namespace flags, personality values) keep the engine's rule; only `ptrace`
   mode sees those.
2. **A stop on every send.** The contract watches sends that name their destination
   (`sendto` with an address: a datagram, or TCP Fast Open), but strace can only choose
   calls by number, and an HTTP client makes one `sendto` with no address per request:
   that stop alone cost the learner's crawl 15-20% of its pages (docs/benchmarks.md).
   Here `sendto` runs untraced when its address argument is NULL (a connected socket
   sends only to the peer its traced `connect` named) or shorter than any internet
   address (`INET_ADDRLEN_MIN`: the kernel's own netlink, which getaddrinfo asks), and is
   refused with SIGSYS (`SCMP_ACT_TRAP`) when it names an address that could be one. The
   kernel forces that signal (it cannot be blocked or ignored) and the tracer sees every
   signal before its handler, so the attempt is recorded as a blocked egress attempt: an
   unconnected send is refused, and connect-then-send is the way to a datagram peer.
3. **A filter of the agent's own could outrank the tracer.** seccomp obeys the highest
   action of all filters, and USER_NOTIF outranks TRACE: a listener answering "continue"
   would let a handed call run unstopped. seccomp(2) asking for a listener
   (SECCOMP_FILTER_FLAG_NEW_LISTENER) is refused by SIGSYS; a filter without one is not.
4. **Only the native architecture.** The rules read arguments as the native ABI passes
   them; a 32-bit or x32 call ends its process (runc's answer to an unlisted arch).

The engine's profile is the one Docker itself writes for a container with the sandbox's
capabilities: `engine_profile` starts a short-lived probe container (labelled with the
run, removed at once) and reads the seccomp section of the OCI bundle the engine wrote
for it. Where that cannot be read (another engine layout, seccomp off), the sandbox uses
`ptrace` mode, which needs no profile, and says so in its notice.
"""

from __future__ import annotations

import copy
import json
import platform
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

# Where engines keep the OCI bundle of a running container: <root>/moby/<id>/config.json
# (Docker's own containerd, then a system containerd; the v1 runtime for older engines).
BUNDLE_ROOTS = (
    "/run/docker/containerd/daemon/io.containerd.runtime.v2.task",
    "/run/containerd/io.containerd.runtime.v2.task",
    "/run/docker/containerd/daemon/io.containerd.runtime.v1.linux",
    "/var/run/docker/containerd/daemon/io.containerd.runtime.v2.task",
)
# The error a refused call returns without a rule of its own: seccomp's ERRNO with no
# errnoRet is EPERM in Docker's profile (and in the OCI runtime's default).
DEFAULT_ERRNO = "EPERM"
_ERRNO_NAMES = {1: "EPERM", 13: "EACCES", 38: "ENOSYS"}
_REFUSING = ("SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
             "SCMP_ACT_TRAP")
SEND_WITH_ADDRESS = "sendto"
# seccomp(2) with SECCOMP_FILTER_FLAG_NEW_LISTENER (flags, its second argument): a filter
# whose USER_NOTIF answers would outrank the tracer (prctl cannot ask for a listener).
LISTENER_CALL, _FLAGS_ARG, NEW_LISTENER = "seccomp", 1, 1 << 3
_ARCHES = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64", "ppc64le": "SCMP_ARCH_PPC64LE",
           "s390x": "SCMP_ARCH_S390X", "riscv64": "SCMP_ARCH_RISCV64"}
_ADDR_ARG, _ADDRLEN_ARG = 4, 5  # sendto(fd, buf, len, flags, dest_addr, addrlen)
# The shortest address that can name an internet peer: sizeof(struct sockaddr_in). The
# kernel refuses a shorter one for AF_INET (and under 24 bytes for AF_INET6); shorter
# ones are the kernel's own (AF_NETLINK, 12: glibc's getaddrinfo asks it for addresses).
INET_ADDRLEN_MIN = 16


class ProfileUnavailable(Exception):
    """The engine's own profile could not be read (one line: why)."""


@dataclass(frozen=True)
class TracedProfile:
    """What `seccomp` mode runs with: the profile for Docker, and what strace must do.

    - `profile`: Docker's security_opt seccomp JSON;
    - `handed`: the traced calls the profile hands to the tracer, which strace must refuse
      (`-e inject=<handed>:error=<errno>`);
    - `errno`: the error they fail with, as the engine would have failed them;
    - `sends_split`: whether `sendto` is split by its address (then strace leaves `sendto`
      alone, and SIGSYS marks a refused send).
    """

    profile: dict[str, Any]
    handed: tuple[str, ...]
    errno: str
    sends_split: bool

    def to_json(self) -> str:
        return json.dumps(self.profile, separators=(",", ":"), sort_keys=True)


def _outright(rules: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    """The one rule that allows `name` with no condition, if that is the only rule naming it."""
    owners = [r for r in rules if name in r.get("names", ())]
    if len(owners) == 1 and owners[0].get("action") == "SCMP_ACT_ALLOW" and not owners[0].get("args") \
            and not owners[0].get("includes") and not owners[0].get("excludes"):
        return owners[0]
    return None


def _masked(index: int, mask: int, value: int) -> dict[str, Any]:
    return {"index": index, "value": mask, "valueTwo": value, "op": "SCMP_CMP_MASKED_EQ"}


def _narrow(out: list[dict[str, Any]], r: dict[str, Any], name: str,
            allow: list[list[dict[str, Any]]], trap: list[dict[str, Any]]) -> None:
    """Replaces `r`, the outright ALLOW of `name` (`_outright`), by ALLOW on each of
    `allow`'s conditions and TRAP (SIGSYS) on `trap`'s (the complement of all of them)."""
    r["names"] = [n for n in r["names"] if n != name]
    if not r["names"]:
        out.remove(r)
    out.extend({"names": [name], "action": "SCMP_ACT_ALLOW", "args": a} for a in allow)
    out.append({"names": [name], "action": "SCMP_ACT_TRAP", "args": trap})


def native_arch() -> str:
    """This machine's seccomp architecture token (Docker's profile names)."""
    return _ARCHES.get(platform.machine(), f"SCMP_ARCH_{platform.machine().upper()}")


def traced_profile(engine: dict[str, Any], traced: Iterable[str], arch: str | None = None) -> TracedProfile:
    """The engine's profile with the four changes of the module docstring.

    >>> eng = {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
    ...        "syscalls": [{"names": ["read", "sendto", "seccomp"], "action": "SCMP_ACT_ALLOW"}]}
    >>> tp = traced_profile(eng, ["read", "mount", "sendto"], arch="SCMP_ARCH_X86_64")
    >>> tp.handed, tp.errno, tp.sends_split, tp.profile["architectures"]
    (('mount',), 'EPERM', True, ['SCMP_ARCH_X86_64'])
    >>> [(r["names"], r["action"], [(a["index"], a["op"][9:], a["value"], a.get("valueTwo")) for a in r.get("args", [])])
    ...  for r in tp.profile["syscalls"]][1:]  # doctest: +NORMALIZE_WHITESPACE
    [(['mount'], 'SCMP_ACT_TRACE', []),
     (['seccomp'], 'SCMP_ACT_ALLOW', [(1, 'MASKED_EQ', 8, 0)]),
     (['seccomp'], 'SCMP_ACT_TRAP', [(1, 'MASKED_EQ', 8, 8)]),
     (['sendto'], 'SCMP_ACT_ALLOW', [(4, 'EQ', 0, None)]),
     (['sendto'], 'SCMP_ACT_ALLOW', [(5, 'LT', 16, None)]),
     (['sendto'], 'SCMP_ACT_TRAP', [(4, 'NE', 0, None), (5, 'GE', 16, None)])]
    """
    if not isinstance(engine, dict) or not isinstance(engine.get("syscalls"), list):
        raise ProfileUnavailable("the engine's seccomp profile has no syscall rules")
    arch = arch or native_arch()
    default = str(engine.get("defaultAction", ""))
    rules: list[dict[str, Any]] = copy.deepcopy(engine["syscalls"])
    named = {n for r in rules for n in r.get("names", ())}
    handed: tuple[str, ...] = ()
    errno = DEFAULT_ERRNO
    if default in _REFUSING:
        # Only calls the default action refuses: a call with a rule of its own (allowed on
        # a condition, or refused with its own errno) keeps it.
        handed = tuple(dict.fromkeys(n for n in traced if n not in named))
        ret = engine.get("defaultErrnoRet")
        if default == "SCMP_ACT_ERRNO" and ret is not None:
            errno = _ERRNO_NAMES.get(int(ret), "")
            if not errno:
                raise ProfileUnavailable(f"the engine's profile refuses with errno {ret}, which strace is not told")
    out = list(rules)
    if handed:
        out.append({"names": list(handed), "action": "SCMP_ACT_TRACE"})
    # seccomp(2): a filter of the agent's own that returns USER_NOTIF outranks the tracer's
    # TRACE, and its listener could let a handed call run unseen. Refused by SIGSYS.
    if (listener := _outright(rules, LISTENER_CALL)) is not None:
        _narrow(out, listener, LISTENER_CALL, allow=[[_masked(_FLAGS_ARG, NEW_LISTENER, 0)]],
                trap=[_masked(_FLAGS_ARG, NEW_LISTENER, NEW_LISTENER)])
    elif any(LISTENER_CALL in r.get("names", ()) and r.get("action") == "SCMP_ACT_ALLOW" for r in rules):
        raise ProfileUnavailable("the engine's profile allows seccomp(2) on conditions of its own, "
                                 "which cannot be narrowed to refuse a notification listener")
    # sendto: split only where the engine allows it outright.
    if (send := _outright(rules, SEND_WITH_ADDRESS)) is not None:
        _narrow(out, send, SEND_WITH_ADDRESS,
                allow=[[{"index": _ADDR_ARG, "value": 0, "op": "SCMP_CMP_EQ"}],
                       [{"index": _ADDRLEN_ARG, "value": INET_ADDRLEN_MIN, "op": "SCMP_CMP_LT"}]],
                trap=[{"index": _ADDR_ARG, "value": 0, "op": "SCMP_CMP_NE"},
                      {"index": _ADDRLEN_ARG, "value": INET_ADDRLEN_MIN, "op": "SCMP_CMP_GE"}])
    profile = {k: v for k, v in engine.items() if k in ("defaultAction", "defaultErrnoRet")}
    # The native architecture's calls only: the rules above read arguments as this ABI
    # passes them (a 32-bit or x32 call would slip past them), and runc ends a process
    # that makes a call of an architecture not listed (SIGSYS).
    archs = engine.get("architectures")
    if archs:
        if arch not in archs:
            raise ProfileUnavailable(f"the engine's profile does not list this machine's architecture ({arch})")
        profile["architectures"] = [arch]
    profile["syscalls"] = out
    return TracedProfile(profile, handed, errno, sends_split=send is not None)


def read_bundle_profile(container_id: str, roots: Sequence[str] = BUNDLE_ROOTS) -> dict[str, Any] | None:
    """The seccomp section the engine wrote into a running container's OCI bundle, or None
    if no bundle of it is found; ProfileUnavailable if the bundle has none (seccomp off)."""
    for root in roots:
        p = Path(root) / "moby" / container_id / "config.json"
        try:
            cfg = json.loads(p.read_text())
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as e:
            raise ProfileUnavailable(f"cannot read {p}: {e}") from None
        sec = (cfg.get("linux") or {}).get("seccomp")
        if not sec:
            raise ProfileUnavailable("the engine runs containers without a seccomp profile")
        return sec
    return None


_cache: dict[tuple[Any, ...], dict[str, Any]] = {}
_cache_lock = threading.Lock()


def engine_profile(client: Any, image: str, *, cap_drop: Sequence[str], cap_add: Sequence[str],
                   labels: dict[str, str], name: str, privileged: bool = False,
                   roots: Sequence[str] = BUNDLE_ROOTS,
                   timeout_s: float = 10.0) -> dict[str, Any]:
    """The profile Docker applies to a container with these capabilities (see the module
    docstring), from a probe container; cached per engine and capability set. Raises
    ProfileUnavailable (one line) if it cannot be read. Blocking: call it in a thread."""
    engine = str(client.version().get("Version", "?"))
    key = (engine, tuple(sorted(cap_drop)), tuple(sorted(cap_add)), privileged, tuple(roots))
    with _cache_lock:
        if key in _cache:
            return copy.deepcopy(_cache[key])
    probe = client.containers.create(
        image, ["sleep", "60"], name=name, labels=labels, detach=True, network_mode="none",
        cap_drop=list(cap_drop) or None, cap_add=list(cap_add) or None, user="65534:65534",
        privileged=privileged,
        security_opt=["no-new-privileges:true"])
    try:
        probe.start()
        deadline = time.monotonic() + timeout_s
        while True:
            sec = read_bundle_profile(probe.id, roots)
            if sec is not None:
                break
            if time.monotonic() > deadline:
                raise ProfileUnavailable("no OCI bundle of the probe container was found under "
                                         + ", ".join(roots))
            time.sleep(0.05)
    finally:
        probe.remove(force=True)
    with _cache_lock:
        _cache[key] = sec
    return copy.deepcopy(sec)
