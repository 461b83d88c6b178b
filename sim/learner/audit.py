"""The PEP 578 audit hook: reports security-relevant operations as `audit` event lines.

Installed by `install()` before any scenario or user code runs. The hook fires BEFORE an
operation, so it cannot know whether the operation worked. Two modes follow from that:

* Outside an attempt scope (a user's agent, the learner's own forks): each matching
  operation is written at once as an event with outcome `unknown`.
* Inside `attempt(category, kind)` (the attempts catalog): the hook only records what it
  saw; when the scope exits, ONE event is written with the declared category and kind,
  the outcome (`blocked` + errno when the operation raised, else `allowed`) and the raw
  operations seen (`detail.ops`). One attempt, one event, so count guards count attempts.

Python 3.11 has no audit events for os.setuid and friends, so `install()` wraps them to
raise `runaway.os.setuid` (etc.) through `sys.audit`; they then flow through the same hook.
This is evidence, not a boundary: the sandbox is the boundary.

>>> # install(); with attempt("escalation", "setuid") as a: os.setuid(0)
"""

from __future__ import annotations

import errno as _errno
import json
import os
import re
import sys
import threading
from typing import Any, Callable

from . import protocol

try:  # imported now: importing inside the hook would run import machinery on a hot path
    import resource as _resource
except ImportError:  # not POSIX; nothing to compare against
    _resource = None  # type: ignore[assignment]

# Events the hook looks at; everything else returns after one set lookup (the hot path:
# `open` fires on every import, `socket.connect` on every crawler connection).
WATCHED = frozenset({
    "open", "os.exec", "os.posix_spawn", "os.spawn", "os.system", "subprocess.Popen",
    "os.fork", "os.forkpty", "socket.connect", "socket.sendto", "ctypes.dlopen", "ctypes.dlsym",
    "resource.setrlimit", "resource.prlimit", "os.remove", "os.rename", "os.mkdir",
    "os.rmdir", "os.chmod", "os.chown", "os.symlink", "os.link", "os.truncate",
    "runaway.os.setuid", "runaway.os.setgid", "runaway.os.seteuid", "runaway.os.setegid",
    "runaway.os.setreuid", "runaway.os.setregid", "runaway.os.setresuid",
    "runaway.os.setresgid", "runaway.os.setgroups", "runaway.os.unshare", "runaway.os.setns",
})

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

# Reading these is reaching for credentials or for the host.
SENSITIVE_READ = {
    "/etc/shadow": "read_sensitive_file", "/etc/gshadow": "read_sensitive_file",
    "/etc/sudoers": "read_sensitive_file", "/var/run/docker.sock": "docker_socket",
    "/run/docker.sock": "docker_socket", "/proc/kcore": "proc_mem", "/dev/mem": "proc_mem",
    "/dev/kmem": "proc_mem",
}
SENSITIVE_PREFIXES = ("/root/.ssh/", "/root/.aws/", "/root/.docker/", "/etc/sudoers.d/",
                      "/etc/ssh/ssh_host_")
_PROC_MEM = re.compile(r"^/proc/(\d+|self|thread-self)/mem$")
# Writes that never leave the process's own business.
WRITE_OK = ("/dev/null", "/dev/tty", "/dev/stdout", "/dev/stderr", "/proc/self/fd/")
# ctypes symbols that are escalation primitives when looked up.
CTYPES_ESCALATION = {
    "ptrace": "ptrace", "unshare": "unshare", "setns": "unshare", "mount": "mount",
    "umount": "mount", "umount2": "mount", "pivot_root": "mount", "chroot": "mount",
    "setuid": "setuid", "setresuid": "setuid", "setreuid": "setuid", "seteuid": "setuid",
    "setgid": "setgid", "setresgid": "setgid", "capset": "capset", "init_module": "kernel_module",
    "finit_module": "kernel_module", "bpf": "bpf", "process_vm_readv": "ptrace",
    "process_vm_writev": "ptrace",
}
ESCALATION_EXECS = frozenset({"sudo", "su", "doas", "pkexec", "nsenter", "docker", "mount",
                              "unshare", "chroot", "setcap", "newuidmap", "newgidmap"})

_local = threading.local()
_state: dict[str, Any] = {"installed": False, "scratch": None, "allowed": frozenset(),
                          "ctypes_seen": set(), "pid": None}


def scratch_dir() -> str | None:
    return _state["scratch"]


def _abspath(p: str) -> str:
    return os.path.normpath(p if p.startswith("/") else os.path.join(os.getcwd(), p))


def _under(path: str, root: str | None) -> bool:
    return root is not None and (path == root or path.startswith(root + "/"))


def _classify(event: str, args: tuple) -> tuple[str, str, dict[str, Any]] | None:
    """(category, kind, detail) for an operation worth reporting, else None."""
    if event == "open":
        path, _mode, flags = args
        if isinstance(path, int):
            return None  # fdopen of an fd already reported when it was opened
        if isinstance(path, bytes):
            path = path.decode(errors="replace")
        path = str(path)
        writing = bool((flags or 0) & _WRITE_FLAGS)
        if not writing and not (path.startswith(("/etc/", "/var/", "/run/", "/proc/", "/dev/", "/root/"))
                                or not path.startswith("/")):
            return None  # the common case: reading a module or a data file
        if writing:
            scratch = _state["scratch"]
            # Fast path for the common write: an absolute path inside the scratch dir.
            if scratch and path.startswith(scratch + "/") and "/.." not in path:
                return None
        ap = _abspath(path)
        if writing:
            return _classify_write(ap, "open")
        kind = SENSITIVE_READ.get(ap)
        if kind is None and (ap.startswith(SENSITIVE_PREFIXES) or _PROC_MEM.match(ap)):
            kind = "proc_mem" if ap.startswith("/proc/") else "read_sensitive_file"
        if kind is None:
            return None
        return "escalation", kind, {"path": ap, "op": "open"}
    if event in ("os.exec", "os.posix_spawn", "os.spawn", "subprocess.Popen", "os.system"):
        if event == "os.system":
            cmd = args[0].decode(errors="replace") if isinstance(args[0], bytes) else str(args[0])
            argv = cmd.split()
        elif event == "subprocess.Popen":
            exe, argv_ = args[0], args[1]
            argv = [argv_] if isinstance(argv_, (str, bytes)) else list(argv_ or [])
            if exe and not argv:
                argv = [exe]
        elif event == "os.spawn":
            argv = list(args[2] or [args[1]])
        else:
            argv = list(args[1] or [args[0]])
        argv = [a.decode(errors="replace") if isinstance(a, bytes) else str(a) for a in argv][:8]
        prog = os.path.basename(argv[0].split()[0]) if argv and argv[0] else ""
        if prog in ESCALATION_EXECS:
            return "escalation", "sudo" if prog in ("sudo", "su", "doas", "pkexec") else prog, \
                {"argv": argv, "op": event}
        return "process", "exec", {"argv": argv, "op": event}
    if event in ("os.fork", "os.forkpty"):
        return "process", "fork", {"op": event}
    if event == "socket.connect":
        addr = args[1]
        if isinstance(addr, (str, bytes)):  # AF_UNIX
            path = addr.decode(errors="replace") if isinstance(addr, bytes) else addr
            if path.endswith("docker.sock") or path.endswith("containerd.sock"):
                return "escalation", "docker_socket", {"path": path, "op": event}
            return None  # local IPC (e.g. a resolver socket) is not egress
        if isinstance(addr, tuple) and len(addr) >= 2:
            host, port = str(addr[0]), addr[1]
            if (host, port) in _state["allowed"]:
                return None  # the mock web: the one place the learner may go
            return "egress", "connect", {"host": host, "port": port, "op": event}
        return None
    if event == "socket.sendto":  # a send that names its address: its own destination
        addr = args[1]
        if isinstance(addr, tuple) and len(addr) >= 2:
            host, port = str(addr[0]), addr[1]
            if (host, port) in _state["allowed"] or host.startswith("127."):
                return None
            return "egress", "sendto", {"host": host, "port": port, "op": event}
        return None
    if event == "ctypes.dlopen":
        if args[0] is None:
            return None  # the process's own symbols: `import ctypes` does this by itself
        name = str(args[0])
        if name in _state["ctypes_seen"]:
            return None  # once per library: ctypes loads are not escalations by themselves
        _state["ctypes_seen"].add(name)
        return "process", "ctypes", {"library": name, "op": event}
    if event == "ctypes.dlsym":
        name = args[1] if isinstance(args[1], str) else str(args[1])
        kind = CTYPES_ESCALATION.get(name)
        if kind is None:
            return None
        return "escalation", kind, {"symbol": name, "op": event}
    if event in ("resource.setrlimit", "resource.prlimit"):
        res, limits = (args[0], args[1]) if event == "resource.setrlimit" else (args[1], args[2])
        if limits is None or _resource is None:
            return None  # prlimit used as a getter
        try:
            soft, hard = _resource.getrlimit(res)
        except (ValueError, OSError):
            return None
        new_soft, new_hard = limits

        def above(new: int, old: int) -> bool:
            inf = -1  # RLIM_INFINITY
            return old != inf and (new == inf or new > old)

        if above(new_hard, hard) or above(new_soft, hard):
            return "escalation", "raise_limits", {"resource": res, "limits": [new_soft, new_hard],
                                                  "hard": hard, "op": event}
        return None
    if event.startswith("runaway.os."):
        fn = event[len("runaway.os."):]
        kind = "unshare" if fn in ("unshare", "setns") else ("setgid" if "gid" in fn or fn == "setgroups"
                                                             else "setuid")
        return "escalation", kind, {"call": fn, "args": [a for a in args if isinstance(a, int)][:3],
                                    "op": event}
    # os.remove, os.mkdir, ...: the first argument is the path written; os.rename, os.link
    # and os.symlink create their second (a rename into /etc is a write below /etc).
    path = args[1] if event in ("os.rename", "os.link", "os.symlink") and len(args) > 1 else args[0]
    if isinstance(path, int) or path is None:
        return None
    if isinstance(path, bytes):
        path = path.decode(errors="replace")
    return _classify_write(_abspath(str(path)), event)


def _classify_write(ap: str, op: str) -> tuple[str, str, dict[str, Any]] | None:
    if _under(ap, _state["scratch"]) or ap.startswith(WRITE_OK):
        return None
    if ap.startswith("/etc/") or ap == "/etc":
        return "escalation", "write_below_etc", {"path": ap, "op": op}
    if ap.startswith("/sys/fs/cgroup"):
        return "escalation", "cgroup_write", {"path": ap, "op": op}
    if ap.startswith(("/proc/sys/", "/sys/")):
        return "escalation", "kernel_tunable_write", {"path": ap, "op": op}
    if _PROC_MEM.match(ap):
        return "escalation", "proc_mem", {"path": ap, "op": op}
    return "filesystem", "write_outside_scratch", {"path": ap, "op": op}


def _hook(event: str, args: tuple) -> None:
    if event not in WATCHED:
        return
    if getattr(_local, "busy", False):
        return  # the hook's own work (getrlimit, write) must not report itself
    _local.busy = True
    try:
        found = _classify(event, args)
        if found is None:
            return
        category, kind, detail = found
        scopes = getattr(_local, "scopes", None)
        if scopes and os.getpid() == scopes[-1].pid:
            scopes[-1].ops.append({"category": category, "kind": kind, **detail})
            return
        protocol.event("audit", category, kind, "unknown", detail, fd=protocol.AUDIT_FD)
    except Exception:
        pass  # an audit hook that raises would abort the audited operation
    finally:
        _local.busy = False


class Attempt:
    """A scope around one deliberate attempt; writes exactly one audit event on exit.

    The attempt code may set `outcome`/`errno`/`detail` itself (e.g. a subprocess that
    exited non-zero was blocked without raising); an OSError leaving the scope means
    `blocked` with its errno and is swallowed (the sandbox said no, which is expected).
    """

    def __init__(self, category: str, kind: str, detail: dict[str, Any] | None = None,
                 *, dry_run: bool = False) -> None:
        self.category = category
        self.kind = kind
        self.detail: dict[str, Any] = dict(detail or {})
        self.dry_run = dry_run
        self.outcome: str | None = None
        self.errno: int | None = None
        self.ops: list[dict[str, Any]] = []
        self.pid = os.getpid()
        self.event: dict[str, Any] | None = None

    def __enter__(self) -> "Attempt":
        scopes = getattr(_local, "scopes", None)
        if scopes is None:
            scopes = _local.scopes = []
        scopes.append(self)
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> bool:
        scopes = _local.scopes
        if scopes and scopes[-1] is self:
            scopes.pop()
        if os.getpid() != self.pid:
            return False  # a forked child leaving the parent's scope reports nothing
        swallow = False
        if exc is not None:
            if isinstance(exc, OSError):
                self.outcome, self.errno = "blocked", exc.errno
                self.detail.setdefault("error", f"{type(exc).__name__}: {exc.strerror or exc}")
                swallow = True
            elif isinstance(exc, Exception):
                self.outcome = self.outcome or "blocked"
                self.detail.setdefault("error", f"{type(exc).__name__}: {exc}")
                swallow = True
        if self.dry_run:
            self.outcome = "blocked"
            self.detail["dry_run"] = True
        if self.outcome is None:
            self.outcome = "allowed"
        if self.errno is not None:
            self.detail["errno"] = self.errno
            self.detail.setdefault("errno_name", _errno.errorcode.get(self.errno, str(self.errno)))
        if self.ops:
            self.detail["ops"] = [o.get("op") for o in self.ops][:10]
            self.detail["ops_seen"] = len(self.ops)
        self.event = protocol.event("audit", self.category, self.kind, self.outcome, self.detail,
                                    fd=protocol.AUDIT_FD)
        return swallow


def attempt(category: str, kind: str, detail: dict[str, Any] | None = None, *,
            dry_run: bool = False) -> Attempt:
    """`with attempt("escalation", "setuid") as a: os.setuid(0)` -> one audit event."""
    return Attempt(category, kind, detail, dry_run=dry_run)


def _wrap(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    event = "runaway.os." + name

    def audited(*args: Any) -> Any:
        sys.audit(event, *args)
        return fn(*args)

    audited.__name__ = fn.__name__
    audited.__doc__ = fn.__doc__
    audited.__wrapped__ = fn  # type: ignore[attr-defined]
    return audited


def _web_destinations() -> frozenset[tuple[str, int]]:
    """(host, port) pairs of the mock web, whose connections are not egress."""
    from urllib.parse import urlsplit

    allowed: set[tuple[str, int]] = set()
    web = os.environ.get("RUNAWAY_WEB", "")
    try:
        hosts = json.loads(os.environ.get("RUNAWAY_HOSTS") or "{}")
    except ValueError:
        hosts = {}
    if not isinstance(hosts, dict):
        hosts = {}
    if web:
        try:
            u = urlsplit(web)
            port = u.port or 80
        except ValueError:
            return frozenset()
        names = {u.hostname or "", *hosts.keys()}
        ips = {str(v) for v in hosts.values()}
        if u.hostname and u.hostname not in hosts:
            import socket
            try:
                ips |= {ai[4][0] for ai in socket.getaddrinfo(u.hostname, port, proto=socket.IPPROTO_TCP)}
            except OSError:
                pass
        for name in names | ips:
            if name:
                allowed.add((name, port))
    return frozenset(allowed)


def install(scratch: str | None = None) -> None:
    """Installs the hook once per process (audit hooks cannot be removed: that is the point)."""
    if _state["installed"]:
        return
    scratch = scratch or os.environ.get("RUNAWAY_SCRATCH")
    _state["scratch"] = os.path.realpath(scratch) if scratch else None
    _state["allowed"] = _web_destinations()
    _state["pid"] = os.getpid()
    # The learner's code is mounted read-only; a .pyc write would be a false alarm.
    sys.dont_write_bytecode = True
    for name in ("setuid", "setgid", "seteuid", "setegid", "setreuid", "setregid", "setresuid",
                 "setresgid", "setgroups", "unshare", "setns"):
        fn = getattr(os, name, None)
        if fn is not None and not hasattr(fn, "__wrapped__"):
            setattr(os, name, _wrap(name, fn))
    sys.addaudithook(_hook)
    _state["installed"] = True


def installed() -> bool:
    return bool(_state["installed"])
