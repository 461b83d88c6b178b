"""The Docker sandbox: a hardened, capped container on an internal network, watched from outside.

The container runs the learner image (sandbox/image.py) with a CPU quota, memory with swap
equal to memory, a pids limit, a non-root user, every capability dropped, no-new-privileges
and a read-only root; its only writable place is a tmpfs scratch dir. Its network is an
internal bridge (no route out) whose host side accepts exactly one port, the mock web's
(iptables INPUT rules tagged `runaway.run=<id>`). Everything it makes carries the label
`runaway.run=<id>`; `clean()` removes what interrupted runs left.

Observation reads the cgroup files directly (sandbox/cgroup.py) and /proc for every
process's identity (sandbox/procfs.py), so the learner cannot lie about either. Blocking
Docker SDK calls run in threads.

>>> # sb = DockerSandbox(PROFILES["ci"], run_id="r1")
>>> # host = await sb.prepare(); port = await web.start(host, 0); sb.allow_port(port)
>>> # await sb.start(["python3", "-m", "learner"], env, learner_dir, {}, control, clock)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from policies.model import Event, Sample

from .. import dockerd, procfs, seccomp, watchdog
from .. import tracer as tracing
from ..base import (ActionResult, ExecResult, ExecTimeout, OutputCap, SandboxError, SandboxUnavailable,
                   check_argv, check_exec, exec_cwd, exec_input, exec_user, in_own_thread, to_thread_to_the_end)
from ..monitor import LineSplitter, SandboxBase
from ..registry import Backend, register_backend
from ..cgroup import Cgroup, CgroupReading, forget, reading_from_stats
from ..image import LEARNER_DIR, ensure_image
from ..syscalls import TRACED, SyscallContext
from ..spec import NETWORK_NONE, WEB_HOSTS, SandboxSpec

LABEL = "runaway.run"
# Who made it: "<pid>:<start ticks>" of the controller, so `clean` can tell a live run's
# things from an interrupted run's leftovers (the start ticks defeat pid reuse).
OWNER_LABEL = "runaway.owner"
CONTROL_DIR = "/run/runaway/control"
# A user's agent directory (`runaway run --agent CMD --agent-dir DIR`), read-only, its cwd.
AGENT_DIR = "/opt/runaway/agent"
CFS_PERIOD_US = 10_000  # 10 ms: a 250 ms sample spans 25 periods, so the quota does not alias into it
# Identity checks run this often: an escalation must be an event within 50 ms (p99), and
# the observer must stay under 1% of a core (bench/docker_sandbox.py measures both).
WATCH_HZ = 30.0
DIFF_EVERY_S = 2.0
_SAFE_ID = re.compile(r"[^A-Za-z0-9_.-]")
_DIFF_KIND = {0: "modified", 1: "added", 2: "deleted"}


def _docker():
    import docker

    return docker


def _client():
    return dockerd.client(timeout=60, field="backend")


def _owner() -> str:
    st = procfs.read_stat(os.getpid())
    return f"{os.getpid()}:{st.start_ticks if st else 0}"


def _owner_alive(owner: str | None) -> bool:
    try:
        pid, ticks = (int(x) for x in (owner or "").split(":"))
    except ValueError:
        return False
    st = procfs.read_stat(pid)
    return st is not None and st.start_ticks == ticks and st.state != "Z"


def _run_tag(run_id: str) -> str:
    return _SAFE_ID.sub("_", run_id)[:64]


def bridge_name(run_id: str) -> str:
    """The host interface of the run's network (<= 15 chars, stable for a run id)."""
    return "rw" + hashlib.sha1(run_id.encode()).hexdigest()[:12]


# --- host firewall for the run's bridge ------------------------------------------------

def _iptables(binary: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([binary, "-w", "5", *args], capture_output=True, text=True, check=False)


def _firewall_binaries() -> list[str]:
    return [b for b in ("iptables", "ip6tables") if shutil.which(b)]


def firewall_close(run_id: str, bridge: str) -> None:
    """Drop everything the bridge sends to the host (both IP versions)."""
    bins = _firewall_binaries()
    if "iptables" not in bins:
        raise SandboxError("iptables is not installed: the host side of the sandbox network "
                           "cannot be closed (apt-get install iptables)", field="network")
    for b in bins:
        r = _iptables(b, "-I", "INPUT", "1", "-i", bridge, "-m", "comment", "--comment",
                      f"{LABEL}={_run_tag(run_id)}", "-j", "DROP")
        if r.returncode != 0 and b == "iptables":
            raise SandboxError(f"cannot add the firewall rule for {bridge}: {r.stderr.strip()}",
                               field="network")


def firewall_allow(run_id: str, bridge: str, ip: str, port: int) -> None:
    """Let the bridge reach exactly ip:port/tcp on the host (ahead of the drop rule)."""
    r = _iptables("iptables", "-I", "INPUT", "1", "-i", bridge, "-d", f"{ip}/32", "-p", "tcp",
                  "--dport", str(int(port)), "-m", "comment", "--comment",
                  f"{LABEL}={_run_tag(run_id)}", "-j", "ACCEPT")
    if r.returncode != 0:
        raise SandboxError(f"cannot open port {port} for the sandbox: {r.stderr.strip()}", field="network")


def firewall_remove(run_id: str | None = None, keep: set[str] = frozenset(), *,
                    keep_live_bridges: bool = False) -> list[str]:
    """Delete the INPUT rules tagged runaway.run (=run_id, and not in `keep`); returns the
    rules removed. `keep_live_bridges` (when the daemon cannot say which runs are live)
    also keeps the rules of any bridge that still exists: its network, so maybe its run,
    is still there."""
    removed: list[str] = []
    for b in _firewall_binaries():
        r = _iptables(b, "-S", "INPUT")
        for line in r.stdout.splitlines():
            if not line.startswith("-A INPUT "):
                continue
            try:
                args = shlex.split(line)
            except ValueError:
                continue
            comment = args[args.index("--comment") + 1] if "--comment" in args[:-1] else ""
            tag, _, rid = comment.partition("=")
            if tag != LABEL or (run_id is not None and rid != _run_tag(run_id)) or rid in keep:
                continue
            bridge = args[args.index("-i") + 1] if "-i" in args[:-1] else ""
            if keep_live_bridges and bridge and os.path.exists(f"/sys/class/net/{bridge}"):
                continue
            if _iptables(b, "-D", *args[1:]).returncode == 0:
                removed.append(f"{b} {line}")
    return removed


def _seccomp_mode(status: bytes) -> int:
    """The `Seccomp:` mode of a /proc/<pid>/status (0 none, 1 strict, 2 filter)."""
    i = status.find(b"\nSeccomp:\t")
    return int(status[i + 10:i + 11]) if i >= 0 and status[i + 10:i + 11].isdigit() else 0


def _status_field(status: bytes, name: bytes) -> bytes:
    i = status.find(b"\n" + name + b":\t")
    if i < 0:
        return b""
    i += len(name) + 3
    return status[i:status.find(b"\n", i)]


def _exec_tracer_part(status: bytes, members: set[int], tracers: set[int]) -> bool:
    """Whether a process is a traced `exec`'s strace or its launcher (sandbox/tracer.py):
    root with no capability beyond the tracer's, whose parent is outside the container (the
    runtime: the strace of a `docker exec`) or is such a strace (its launcher, before it
    becomes the command). No process of the agent's qualifies: its parent is the agent's,
    and an orphan's is the container's init."""
    uids = _status_field(status, b"Uid").split()
    try:
        caps = int(_status_field(status, b"CapEff") or b"0", 16)
        ppid = int(_status_field(status, b"PPid") or b"0")
    except ValueError:
        return False
    if caps & ~tracing.TRACER_CAP_MASK:
        return False
    # strace's one child (the launcher), or a process the runtime started (its parent is
    # outside the container): root, or the launcher's caps kept across its uid switch until
    # its exec. No process of the agent's has either parent.
    return ppid in tracers or ppid not in members


def _monotonic(r: CgroupReading, p: CgroupReading) -> CgroupReading:
    """`r` with cumulative counters never below `p`'s: a dying cgroup loses its files one
    controller at a time, and a half-read cgroup must not make counters go back."""
    return dataclasses.replace(
        r, cpu_ns=max(r.cpu_ns, p.cpu_ns), nr_periods=max(r.nr_periods, p.nr_periods),
        nr_throttled=max(r.nr_throttled, p.nr_throttled), throttled_ns=max(r.throttled_ns, p.throttled_ns),
        oom_kills=max(r.oom_kills, p.oom_kills), mem_limit_bytes=r.mem_limit_bytes or p.mem_limit_bytes)


# --- the sandbox -------------------------------------------------------------------------

class DockerSandbox(SandboxBase):
    """A learner in a hardened, capped container (see the module docstring)."""

    backend = "docker"
    is_security_boundary = True

    def __init__(self, spec: SandboxSpec, *, run_id: str, image: str | None = None, client=None,
                 watch_hz: float = WATCH_HZ, diff_every_s: float = DIFF_EVERY_S,
                 agent_dir: Path | None = None, tracer: str | None = tracing.DEFAULT_MODE) -> None:
        super().__init__(spec, run_id=run_id, pumps=1)  # one attach stream carries both
        self.agent_dir = Path(agent_dir).resolve() if agent_dir else None
        self.watch_hz = watch_hz
        self.diff_every_s = diff_every_s
        self.notice = ""
        self._client = client
        self._image = image
        self.labels = {LABEL: run_id, OWNER_LABEL: _owner()}
        self.name = f"runaway-{_run_tag(run_id)}"
        self.bridge = bridge_name(run_id)
        self.network = None
        self.gateway: str | None = None
        self.subnet: str | None = None
        self.container = None
        self.pid: int | None = None
        self.cgroup: Cgroup | None = None
        self.allowed_ports: list[int] = []
        self._cpus = float(spec.cpus or 0.0)  # the live cap
        self._clock: Callable[[], float] = time.monotonic
        self._tasks: list[asyncio.Task[Any]] = []
        self._threads: list[threading.Thread] = []
        self._attach_resp = None
        self._closed = False
        self._killed = False
        self._exited = asyncio.Event()
        self._fs_seen: set[str] = set()
        self._fallback_members: list[int] = []
        self._procs_file = ""
        self._threads_file = ""
        self._demand = procfs.DemandMeter()
        self._base_seccomp = 0  # the container init's seccomp mode (2: a filter, Docker's default)
        self._layers: tuple[str, list[str]] | None = None
        self._net_last: tuple[int, int] = (0, 0)
        self._base_ids: tuple[int, int, int, int, int] | None = None  # the agent's (_identity_base)
        self._prev: tuple[float, CgroupReading] | None = None  # the last sample's reading
        self._ooms = 0  # OOM kills reported
        self._next_diff: float | None = None
        self._diff_task: asyncio.Task[None] | None = None
        self.exit_code: int | None = None
        self._watchdog = None
        # The syscall tracer (sandbox/tracer.py): its mode, or None for none.
        self.tracer = tracer
        self._channel: tracing.TracerChannel | None = None
        self._profile: seccomp.TracedProfile | None = None  # `seccomp` mode's (prepare)
        self._exec_count = 0
        self._exec_starting: set[str] = set()  # exec ids whose process may not be in the cgroup yet
        # Commands run through exec traced like the agent (docs/sandbox.md); False runs them
        # untraced, still through setpriv so that they never hold the tracer's capabilities.
        self.trace_exec = True

    # -- setup --------------------------------------------------------------------------

    @property
    def client(self):
        if self._client is None:
            self._client = _client()
        return self._client

    async def prepare(self) -> str:
        """Make the run's internal network and close its host side; return the gateway IP
        (the host address the mock web binds). Call `allow_port` once the web is up."""
        self._check_open()
        with dockerd.answers("preparing the sandbox's network", field="network"):
            await to_thread_to_the_end(self._prepare)
        return self.gateway or "127.0.0.1"

    def _caps(self) -> list[str]:
        """The container's added capabilities: the spec's, and the tracer's if traced."""
        cap_add = list(self.spec.cap_add)
        if self.tracer:
            cap_add += [c for c in tracing.TRACER_CAPS if c not in cap_add]
        return cap_add

    def _seccomp_profile(self) -> None:
        """The `seccomp` mode's profile (sandbox/seccomp.py), from the engine's own for a
        container like ours, once; where that cannot be read, `ptrace` mode, with a notice."""
        if self.tracer != "seccomp" or self._profile is not None:
            return
        try:
            if not self.spec.no_new_privileges:
                # strace installs its filter under no-new-privileges (it has no CAP_SYS_ADMIN),
                # which would quietly undo what the (unsafe) spec asked for.
                raise seccomp.ProfileUnavailable("the spec turns no-new-privileges off, and strace's "
                                                 "seccomp filter would turn it back on")
            engine = seccomp.engine_profile(
                self.client, self._image, cap_drop=self.spec.cap_drop, cap_add=self._caps(),
                privileged=self.spec.privileged, labels=self.labels, name=f"{self.name}-seccomp-probe")
            self._profile = seccomp.traced_profile(engine, TRACED)
        except seccomp.ProfileUnavailable as e:
            self.tracer = "ptrace"
            self.notice = (f"the syscall tracer runs in ptrace mode (every call stops in it, which slows "
                           f"the agent's system calls): {e}")

    def _prepare(self) -> None:
        docker = _docker()
        if self._watchdog is None:  # before anything is made: nothing of it outlives us
            self._watchdog = watchdog.arm(self.run_id)
        self._image = self._image or ensure_image(self.client)
        self._seccomp_profile()
        if self.spec.network == NETWORK_NONE:
            return
        if self.network is not None:
            return
        try:
            self.network = self.client.networks.create(
                self.name, driver="bridge", internal=True, labels=self.labels, check_duplicate=True,
                options={"com.docker.network.bridge.name": self.bridge})
        except docker.errors.APIError as e:
            raise SandboxError(f"cannot create the sandbox network {self.name}: {e.explanation or e}",
                               field="network") from None
        self.network.reload()
        cfg = (self.network.attrs.get("IPAM", {}).get("Config") or [{}])[0]
        self.gateway = cfg.get("Gateway")
        self.subnet = cfg.get("Subnet")
        if not self.gateway:
            raise SandboxError("the sandbox network has no gateway address", field="network")
        firewall_close(self.run_id, self.bridge)

    def allow_port(self, port: int) -> None:
        """Open exactly gateway:port/tcp (the mock web) to the sandbox; everything else on
        the host side of its network stays closed. Call after prepare(), before start()."""
        self._check_open()
        self._check_port(port)
        if self.gateway is None:
            return
        firewall_allow(self.run_id, self.bridge, self.gateway, port)
        self.allowed_ports.append(int(port))

    async def start(self, argv: Sequence[str], env: Mapping[str, str], learner_dir: Path,
                    hosts: Mapping[str, str], control_file: Path,
                    clock: Callable[[], float] = time.monotonic) -> None:
        self._check_open()
        if self.container is not None:
            raise SandboxError("this sandbox has already started", field="start")
        argv = check_argv(argv)
        if self._image is None or (self.network is None and self.spec.network != NETWORK_NONE):
            await self.prepare()
        self._clock = clock
        loop = asyncio.get_running_loop()
        with dockerd.answers("starting the sandbox's container", field="sandbox"):
            await to_thread_to_the_end(self._create_and_start, list(argv), dict(env), Path(learner_dir),
                                    dict(hosts), Path(control_file), loop)
        self._obs.put_nowait(Event(
            t=self._clock(), source="observer", category="lifecycle", kind="start", outcome="allowed",
            detail={"backend": "docker", "container": self.container.id[:12], "pid": self.pid,
                    "image": self._image, "user": self.spec.user, "security_boundary": True,
                    "tracer": self._tracer_detail()}))
        self._tasks = [loop.create_task(self._monitor()), loop.create_task(self._wait_exit())]

    @property
    def tracer_info(self) -> dict[str, Any] | None:
        """What traces the agent's syscalls (meta.tracer), or None."""
        return self._tracer_detail()

    def _tracer_detail(self) -> dict[str, Any] | None:
        if not self.tracer:
            return None
        out = {"program": "strace", "mode": self.tracer, "pid": 1, "user": tracing.TRACER_USER,
               "caps": list(tracing.TRACER_CAPS), "agent_user": self.spec.user, "agent_caps": []}
        if self._profile is not None:
            out["seccomp"] = {"profile": "the engine's own", "handed_to_tracer": list(self._profile.handed),
                              "refused_with": self._profile.errno,
                              "sends_with_address": "refused (SIGSYS)" if self._profile.sends_split else "traced"}
        return out

    def _open_tracer(self, loop: asyncio.AbstractEventLoop) -> tracing.TracerChannel:
        """The tracer's channel, read from now on; its events join the observations."""
        spec = self.spec
        ctx = SyscallContext(scratch=(spec.workdir,), web=(self.gateway, self.allowed_ports[0])
                             if self.gateway and self.allowed_ports else None,
                             web_ports=tuple(self.allowed_ports), uid=spec.uid, gid=spec.gid,
                             tracer_dir=tracing.TRACER_DIR,
                             cwd=AGENT_DIR if self.agent_dir is not None else spec.workdir)  # the container's

        ch = tracing.TracerChannel(ctx, self._tracer_events, self._tracer_end, mode=self.tracer or tracing.DEFAULT_MODE,
                                   prefix=f"runaway-tracer-{_run_tag(self.run_id)}-",
                                   owner=self.labels[OWNER_LABEL])
        loop.call_soon_threadsafe(ch.start, loop)  # read in the loop itself (we are in a thread)
        return ch

    def _tracer_events(self, events: list[Event], via: str | None = None) -> None:
        """Tracer events, stamped on the run's clock from the call's own wall time (the
        tracer's, which the agent cannot touch), never later than now. `via`: the `exec`
        whose command made the call (its channel's name), if not the agent."""
        now, wall = self._clock(), time.time()
        for ev in events:
            t = min(now, max(0.0, now - (wall - ev.t)))
            detail = ev.detail if via is None else {**ev.detail, "via": via}
            self._obs.put_nowait(dataclasses.replace(ev, t=t, detail=detail))

    def _tracer_end(self, lost: bool, detail: dict) -> None:
        if not lost or self._killed or self._closed:
            return
        # The tracer is the sandbox's init: when it goes, every process of the sandbox goes
        # with it, so this is also the end of the agent; but nothing it did since is seen.
        self._obs.put_nowait(Event(
            t=self._clock(), source="observer", category="escalation", kind="tracer_lost", outcome="unknown",
            detail={**detail, "reason": "the tracer's output ended before the traced agent's exit"}))

    def _net_targets(self) -> list[str]:
        """What the learner may scan: its network's gateway and first few addresses (its
        own Docker network, never beyond)."""
        if not (self.gateway and self.subnet):
            return []
        net = ipaddress.ip_network(self.subnet, strict=False)
        hosts = [str(net.network_address + i) for i in range(1, 5) if net.network_address + i in net]
        return [self.gateway, *[h for h in hosts if h != self.gateway]]

    def _create_and_start(self, argv: list[str], env: dict[str, str], learner_dir: Path,
                          hosts: dict[str, str], control_file: Path, loop: asyncio.AbstractEventLoop) -> None:
        docker = _docker()
        spec = self.spec
        if not learner_dir.is_dir():
            raise SandboxError(f"no learner code at {learner_dir}", field="learner_dir")
        self._seccomp_profile()  # prepare() made it, unless it was skipped
        control_file = control_file.resolve()
        control_file.parent.mkdir(parents=True, exist_ok=True)
        control_file.touch(exist_ok=True)
        full_env = {
            "PYTHONPATH": str(Path(LEARNER_DIR).parent),
            "RUNAWAY_SCRATCH": spec.workdir,
            "TMPDIR": spec.workdir,
            "HOME": spec.workdir,
            "RUNAWAY_CONTROL": f"{CONTROL_DIR}/{control_file.name}",
            "RUNAWAY_HOSTS": "{}",
            "RUNAWAY_ATTEMPTS": "real",
            "RUNAWAY_NET_TARGETS": json.dumps(self._net_targets()),
        }
        full_env.update(env)
        # Docker's extra_hosts: every web name goes to the gateway, where the mock web listens.
        extra_hosts = {name: self.gateway for name in WEB_HOSTS} if self.gateway else {}
        if self.gateway:
            extra_hosts.update({k: v for k, v in hosts.items() if v})
        binds = {
            str(learner_dir.resolve()): {"bind": LEARNER_DIR, "mode": "ro"},
            str(control_file.parent): {"bind": CONTROL_DIR, "mode": "ro"},
        }
        for m in spec.mounts:  # only ever here when admitted (under the scratch dir, or --unsafe)
            binds[m.source] = {"bind": m.target, "mode": "ro" if m.read_only else "rw"}
        workdir = spec.workdir
        if self.agent_dir is not None:
            binds[str(self.agent_dir)] = {"bind": AGENT_DIR, "mode": "ro"}
            workdir = AGENT_DIR
        user, cap_add, command = spec.user, list(spec.cap_add), argv
        security_opt = ["no-new-privileges:true"] if spec.no_new_privileges else []
        if self._profile is not None:  # seccomp mode (a fallback to ptrace mode leaves it None)
            security_opt.append(f"seccomp={self._profile.to_json()}")
        if self.tracer:
            # strace is the container's init, as root with only TRACER_CAPS; it starts the
            # agent as spec.user with no capability (sandbox/tracer.py says why).
            self._channel = self._open_tracer(loop)
            binds[str(self._channel.dir)] = {"bind": tracing.TRACER_DIR, "mode": "ro"}
            user, command = tracing.TRACER_USER, tracing.tracer_argv(argv, spec.user, self.tracer,
                                                                     profile=self._profile)
            cap_add = self._caps()
        kw: dict[str, Any] = dict(
            image=self._image, command=command, name=self.name, labels=self.labels, detach=True,
            user=user, environment=full_env, working_dir=workdir, hostname="learner",
            read_only=spec.read_only_root, privileged=spec.privileged,
            cap_drop=list(spec.cap_drop), cap_add=cap_add or None,
            security_opt=security_opt or None,
            tmpfs={spec.workdir: f"rw,nosuid,nodev,size={spec.scratch_size},mode=1777"},
            volumes=binds, stdin_open=False, tty=False, init=False, ipc_mode="private",
            extra_hosts=extra_hosts or None,
            restart_policy={"Name": "no"},
        )
        if spec.cpus:
            kw.update(cpu_period=CFS_PERIOD_US, cpu_quota=int(spec.cpus * CFS_PERIOD_US))
        if spec.memory:
            kw.update(mem_limit=spec.memory, memswap_limit=spec.memory)
        if spec.pids:
            kw.update(pids_limit=spec.pids)
        if spec.network == NETWORK_NONE:
            kw.update(network_mode="none")
        elif self.network is not None:
            kw.update(network=self.network.name,
                      # No IPv6 inside: the host's link-local addresses stay out of reach too.
                      sysctls={"net.ipv6.conf.all.disable_ipv6": "1"})
        else:
            kw.update(network_mode=spec.network)  # admitted with --unsafe: as the user asked
        try:
            self.container = self.client.containers.create(**kw)
        except docker.errors.ImageNotFound:
            raise SandboxError(f"the learner image {self._image} is not built: run `runaway image build`",
                               field="image") from None
        except docker.errors.APIError as e:
            raise SandboxError(f"cannot create the sandbox container: {e.explanation or e}",
                               field="sandbox") from None
        # Mount points docker made at create time are not the learner's doing; read them
        # before start, or a fast learner's first write would hide in the baseline.
        try:
            self._fs_seen = {c["Path"] for c in self._changes()}
        except docker.errors.APIError:
            self._fs_seen = set()
        # Docker makes the mount points (and their parents) at start, and writes these files.
        for target in (LEARNER_DIR, CONTROL_DIR, AGENT_DIR, tracing.TRACER_DIR, spec.workdir,
                       *(m.target for m in spec.mounts)):
            p = Path(target)
            self._fs_seen.update(str(q) for q in (p, *p.parents) if str(q) != "/")
        self._fs_seen.update(("/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/etc", "/dev", "/proc", "/sys"))
        # Attach before start so that no line is missed; demuxed into stdout and stderr.
        self._attach_resp = self.client.api.attach(self.container.id, stdout=True, stderr=True,
                                                    stream=True, logs=True, demux=True)
        t = threading.Thread(target=self._pump, args=(self._attach_resp, loop), daemon=True,
                             name=f"runaway-output-{self.run_id}")
        t.start()
        self._threads.append(t)
        try:
            self.container.start()
        except docker.errors.APIError as e:
            raise SandboxError(f"cannot start the sandbox container: {e.explanation or e}",
                               field="argv") from None
        self.container.reload()
        self.pid = int(self.container.attrs["State"].get("Pid") or 0) or None
        self._find_cgroup()

    def _find_cgroup(self) -> None:
        self.cgroup = Cgroup.of_pid(self.pid) if self.pid else None
        self._base_seccomp = _seccomp_mode(procfs.read_bytes(f"/proc/{self.pid}/status") or b"") if self.pid else 0
        self._procs_file = str(self.cgroup.procs_file_dir / "cgroup.procs") if self.cgroup else ""
        self._threads_file = str(self.cgroup.threads_file) if self.cgroup else ""

    # -- output -------------------------------------------------------------------------

    def _pump(self, stream, loop: asyncio.AbstractEventLoop) -> None:
        """Thread: split the attach stream into lines and hand them to the loop."""
        splitters = {"stdout": LineSplitter(), "stderr": LineSplitter()}

        def emit(name: str, text: str) -> None:
            loop.call_soon_threadsafe(self._out.put_nowait, self._line(name, text))

        try:
            for out, err in stream:
                for name, chunk in (("stdout", out), ("stderr", err)):
                    if chunk:
                        for text in splitters[name].feed(chunk):
                            emit(name, text)
        except Exception:  # the stream closes when the container is removed: the end
            pass
        finally:
            for name, lines in splitters.items():
                if (rest := lines.rest()) is not None:
                    emit(name, rest)
            try:
                loop.call_soon_threadsafe(self._out.put_nowait, None)
            except RuntimeError:  # the loop is closed: nobody is reading any more
                pass

    # -- observing ----------------------------------------------------------------------

    async def _read(self) -> CgroupReading | None:
        """The cgroup counters (a few small files, read inline), else one stats API answer
        (a daemon round trip, so in a thread)."""
        if self.cgroup is not None:
            r = self.cgroup.read()
            if r is not None:
                return r
        if self.container is None or self._exited.is_set():
            return None
        try:
            stats = await asyncio.to_thread(self.container.stats, stream=False, one_shot=True)
            return reading_from_stats(stats)
        except Exception:  # gone between the check and the call
            return None

    def _members(self, full: bool) -> list[int]:
        """The container's processes: its cgroup's member list, or without readable cgroup
        files, its init and init's descendants (a /proc scan, so only when `full`)."""
        if self.cgroup is not None:
            # Inline rather than procfs.pids_of_cgroup: this runs at watch_hz, and the path
            # object and sorting cost more than the read. A fresh open each time, not a kept
            # descriptor: cgroup v1 keeps the pid list it built at the first read for as long
            # as it is read again within a second, so a kept one never shows a new process.
            raw = procfs.read_bytes(self._procs_file)
            return [int(x) for x in raw.split()] if raw else []
        if not self.pid:
            return []
        if full:
            self._fallback_members = [self.pid, *procfs.descendants(self.pid)]
        return self._fallback_members

    def _watch_pids(self, full: bool) -> list[int]:
        return self._members(full)

    def _judged(self, statuses: Mapping[int, bytes]) -> list[int]:
        """The agent's processes: not the tracer's launcher before it becomes the agent, not
        the runtime setting up a `docker exec`, not a traced exec's strace or launcher."""
        ch = self._channel
        exec_tracers: set[int] = set()
        if ch is not None:
            # A traced `exec`'s strace, then its launcher (a child may have the lower pid
            # number once pids wrap around, so until nothing changes).
            members, grew = set(statuses), True
            while grew:
                grew = False
                for pid, raw in statuses.items():
                    if pid != self.pid and pid not in exec_tracers and raw and \
                            _exec_tracer_part(raw, members, exec_tracers):
                        exec_tracers.add(pid)
                        grew = True
        out = []
        for pid, raw in statuses.items():
            if ch is not None and pid != self.pid and not ch.agent_started:
                continue  # the tracer's launcher, root until it becomes the agent: ours
            if raw and _seccomp_mode(raw) < self._base_seccomp:
                # Not one of the agent's yet: a seccomp filter is inherited and can never be
                # removed, so no process the agent makes has less of it than the container's
                # init. One that does is the runtime setting up a `docker exec` (runc's init,
                # root with every capability until, last of all, it takes the filter, becomes
                # the spec's user and runs the command). It is checked from then on.
                continue
            if pid in exec_tracers:
                continue  # a traced `exec`'s strace or launcher: the tracer's own
            out.append(pid)
        return out

    def _identity_base(self, pid: int, ids: tuple[int, int, int, int, int]) -> tuple[int, int, int, int, int]:
        if self._channel is not None and pid == self.pid:
            return (0, 0, 0, 0, tracing.TRACER_CAP_MASK)  # the tracer: root with its own caps only
        if self._base_ids is None:
            # The spec's user with no capability when every one is dropped; what the first
            # process shows only for what the spec leaves open.
            uid = self.spec.uid if self.spec.uid is not None else ids[0]
            gid = self.spec.gid if self.spec.gid is not None else ids[2]
            no_caps = "ALL" in self.spec.cap_drop and not self.spec.cap_add and not self.spec.privileged
            self._base_ids = (uid, uid, gid, gid, 0 if no_caps else ids[4])
        return self._base_ids

    def _sample(self, r: CgroupReading, prev: tuple[float, CgroupReading] | None, now: float) -> Sample:
        ratio = 0.0
        if prev is not None and self.spec.cpus:
            dt = now - prev[0]
            if dt > 0:
                # Against the spec's cap, not the live one: a throttle shows as a drop.
                ratio = max(r.cpu_ns - prev[1].cpu_ns, 0) / 1e9 / (dt * self.spec.cpus)
        extra: dict[str, Any] = {}
        if self.cgroup is not None and self.spec.cpus:
            # Opened afresh, not through a kept descriptor: cgroup v1 keeps a `tasks` list
            # per open file and reuses it while it is read more often than once a second,
            # so a kept descriptor never shows a thread born after the first read.
            raw = procfs.read_bytes(self._threads_file)
            demand = self._demand.read((int(x) for x in raw.split()), self.spec.cpus) if raw else None
            if demand is not None:
                extra["cpu_demand"] = round(demand, 4)
        rx, tx = procfs.read_net_dev(self.pid) if self.pid else (0, 0)
        # Counters of a namespace that has gone (the learner exited) read as 0: keep the last.
        rx, tx = max(rx, self._net_last[0]), max(tx, self._net_last[1])
        self._net_last = (rx, tx)
        return Sample(
            t=self._clock(), cpu_ratio=round(ratio, 4), cpu_seconds=round(r.cpu_ns / 1e9, 4),
            mem_bytes=r.mem_bytes, mem_limit_bytes=r.mem_limit_bytes or (self.spec.memory or 0),
            pids=r.pids, net_rx_bytes=rx, net_tx_bytes=tx,
            extra={**extra, **({"pids_limit": self.spec.pids} if self.spec.pids else {}),
                   "nr_throttled": r.nr_throttled, "throttled_s": round(r.throttled_ns / 1e9, 4),
                   "cpu_cap": r.cpu_quota_cpus if r.cpu_quota_cpus is not None else self._cpus},
        )

    # The monitor loop (SandboxBase._monitor): identity checks at watch_hz, a sample every
    # 1/sample_hz from the cgroup, OOM kills as it counts them, the filesystem diff every
    # diff_every_s; after the exit, the tracer's last lines, the last diff and sample.

    async def _take_sample(self, now: float) -> None:
        prev = self._prev
        r = await self._read()
        if r is not None and prev is not None:
            r = _monotonic(r, prev[1])
        if r is not None:
            self._obs.put_nowait(self._sample(r, prev, now))
            self._prev = (now, r)
            if r.oom_kills > self._ooms:
                self._obs.put_nowait(Event(
                    t=self._clock(), source="observer", category="lifecycle", kind="oom_kill",
                    outcome="allowed",
                    detail={"count": r.oom_kills - self._ooms, "limit_bytes": r.mem_limit_bytes,
                            "by": "the kernel (memory cgroup)"}))
                self._ooms = r.oom_kills

    def _chores(self, now: float, tick: float) -> None:
        if self._next_diff is None:
            self._next_diff = now + self.diff_every_s
        if now >= self._next_diff and (self._diff_task is None or self._diff_task.done()):
            self._next_diff = now + self.diff_every_s
            self._diff_task = asyncio.ensure_future(self._diff_events())

    def _ended(self) -> bool:
        return self._exited.is_set()

    async def _last_observations(self) -> None:
        if self._diff_task is not None:
            await asyncio.gather(self._diff_task, return_exceptions=True)
        if self._channel is not None:
            # The tracer's last lines (and the end of its output) before the exit event.
            await asyncio.to_thread(self._channel.wait_ended, 2.0)
            await asyncio.sleep(0)
        await self._diff_events()
        await self._final(self._ooms, self._prev)

    def _monitor_ended(self) -> None:
        if self.cgroup is not None:
            forget(self.cgroup)

    async def _final(self, ooms: int, prev: tuple[float, CgroupReading] | None) -> None:
        attrs = {}
        try:
            await asyncio.to_thread(self.container.reload)
            attrs = self.container.attrs.get("State", {})
        except Exception:  # removed already (close raced us)
            pass
        oom_killed = bool(attrs.get("OOMKilled"))
        if prev is not None:
            now = time.monotonic()
            r = _monotonic(await self._read() or prev[1], prev[1])
            self._obs.put_nowait(self._sample(r, prev, now))
            ooms = max(ooms, r.oom_kills)
        if oom_killed and ooms == 0:
            self._obs.put_nowait(Event(t=self._clock(), source="observer", category="lifecycle",
                                       kind="oom_kill", outcome="allowed",
                                       detail={"limit_bytes": self.spec.memory, "by": "the kernel",
                                               "container_oom_killed": True}))
        detail: dict[str, Any] = {"returncode": self.exit_code, "oom_killed": oom_killed}
        if self._killed:
            detail["by"] = "kill action"
        self._obs.put_nowait(Event(t=self._clock(), source="observer", category="lifecycle", kind="exit",
                                   outcome="allowed" if self.exit_code == 0 else "unknown", detail=detail))

    def _changes(self) -> list[dict[str, Any]]:
        """The container's filesystem changes, as `docker diff` lists them ({Path, Kind}).

        Read from the container's upper layer on the host when the storage driver says
        where it is (overlay2, fuse-overlayfs): a walk of only what changed. `docker diff`
        compares against the whole image instead, which costs the daemon seconds per call
        on fuse-overlayfs, so it is only the fallback."""
        if self._layers is None:
            data = (self.container.attrs.get("GraphDriver") or {}).get("Data") or {}
            upper = data.get("UpperDir")
            lowers = [x for x in (data.get("LowerDir") or "").split(":") if x]
            self._layers = (upper, lowers) if upper and Path(upper).is_dir() else ("", [])
        upper, lowers = self._layers
        if not upper:
            return list(self.container.diff() or [])
        out: list[dict[str, Any]] = []
        for dirpath, dirnames, filenames in os.walk(upper):
            rel_dir = "/" + os.path.relpath(dirpath, upper).lstrip(".").lstrip("/")
            for name in dirnames + filenames:
                full = os.path.join(dirpath, name)
                path = os.path.join(rel_dir, name)
                if name.startswith(".wh."):  # an overlay whiteout file: the path was deleted
                    if name not in (".wh..wh..opq", ".wh..opq"):  # opaque-dir markers, not deletions
                        out.append({"Path": os.path.join(rel_dir, name[4:]), "Kind": 2})
                    continue
                try:
                    st = os.lstat(full)
                except OSError:
                    continue
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:  # whiteout device
                    out.append({"Path": path, "Kind": 2})
                    continue
                below = any(os.path.lexists(os.path.join(low, path.lstrip("/"))) for low in lowers)
                out.append({"Path": path, "Kind": 0 if below else 1})
            if len(out) > 10_000:  # an unsafe, writable root being flooded: enough to report
                break
        return out

    async def _diff_events(self) -> None:
        if self.container is None:
            return
        try:
            changes = await asyncio.to_thread(self._changes)
        except Exception:  # the container is gone: nothing more to see
            return
        workdir = self.spec.workdir.rstrip("/") + "/"
        for c in changes or []:
            path = c.get("Path", "")
            if path in self._fs_seen or (path + "/").startswith(workdir):
                continue
            self._fs_seen.add(path)
            kind = "write_below_etc" if path.startswith("/etc/") or path == "/etc" else "write_outside_scratch"
            self._obs.put_nowait(Event(t=self._clock(), source="observer", category="filesystem", kind=kind,
                                       outcome="allowed",
                                       detail={"path": path, "change": _DIFF_KIND.get(c.get("Kind"), "?")}))

    async def _wait_exit(self) -> None:
        """Waits for the container to stop; detects a restart (a new init pid) on the way."""
        restarts = 0
        while True:
            try:
                res = await in_own_thread(self.container.wait, timeout=3600 * 24)
                self.exit_code = int(res.get("StatusCode", -1))
            except Exception:
                self.exit_code = self.exit_code if self.exit_code is not None else -1
            try:
                await asyncio.to_thread(self.container.reload)
                state = self.container.attrs.get("State", {})
                count = int(self.container.attrs.get("RestartCount", 0))
            except Exception:
                break
            new_pid = int(state.get("Pid") or 0) or None
            if state.get("Running") and (count > restarts or new_pid != self.pid):
                restarts = max(count, restarts + 1)
                self.pid = int(state.get("Pid") or 0) or None
                self._find_cgroup()
                self._obs.put_nowait(Event(t=self._clock(), source="observer", category="lifecycle",
                                           kind="restart", outcome="allowed",
                                           detail={"restarts": restarts, "pid": self.pid,
                                                   "returncode_before": self.exit_code}))
                continue
            break
        self._exited.set()

    # -- actions ------------------------------------------------------------------------

    def _running(self) -> bool:
        return self.container is not None and not self._exited.is_set()

    async def throttle(self, cpus: float) -> ActionResult:
        """Lower (or raise) the CPU quota live; takes effect at the next CFS period."""
        t0 = time.monotonic()
        if (refused := self._refused(cpus)) is not None:
            return refused
        before = self._cpus
        quota = max(int(cpus * CFS_PERIOD_US), 1000)
        try:
            await asyncio.to_thread(self.container.update, cpu_period=CFS_PERIOD_US, cpu_quota=quota)
        except Exception as e:
            return ActionResult(False, time.monotonic() - t0, {"reason": str(e)})
        self._cpus = quota / CFS_PERIOD_US
        r = self.cgroup.read() if self.cgroup else None
        ok = r is None or r.cpu_quota_cpus == self._cpus
        return ActionResult(ok, time.monotonic() - t0,
                            {"cpus": [before, self._cpus], "how": "CFS quota (docker update)"})

    async def pause(self) -> ActionResult:
        """Freeze every process of the container (cgroup freezer)."""
        t0 = time.monotonic()
        if (refused := self._refused()) is not None:
            return refused
        # A `docker exec` whose `runc init` joins a frozen cgroup waits there forever, and
        # holds the daemon's container lock: every later inspect, kill or remove hangs.
        # So freeze only once each exec's process has started (bounded: 5 s).
        await asyncio.to_thread(self._wait_execs_started, 5.0)
        try:
            await asyncio.to_thread(self.container.pause)
        except Exception as e:
            return ActionResult(False, time.monotonic() - t0, {"reason": str(e)})
        state = self._freezer_state()
        return ActionResult(state in (None, "FROZEN"), time.monotonic() - t0,
                            {"how": "cgroup freezer (docker pause)", "freezer": state})

    async def resume(self) -> ActionResult:
        t0 = time.monotonic()
        if (refused := self._refused()) is not None:
            return refused
        try:
            await asyncio.to_thread(self.container.unpause)
        except Exception as e:
            return ActionResult(False, time.monotonic() - t0, {"reason": str(e)})
        state = self._freezer_state()
        return ActionResult(state in (None, "THAWED"), time.monotonic() - t0,
                            {"how": "cgroup freezer (docker unpause)", "freezer": state})

    def _wait_execs_started(self, limit: float) -> None:
        deadline = time.monotonic() + limit
        for exec_id in list(self._exec_starting):
            while time.monotonic() < deadline:
                try:
                    info = self.client.api.exec_inspect(exec_id)
                except Exception:
                    break
                if info.get("Pid") or not info.get("Running", True) and info.get("ExitCode") is not None:
                    break
                time.sleep(0.02)
            self._exec_starting.discard(exec_id)

    def _thaw(self) -> None:
        """Thaw the freezer directly (root on the host), so nothing of the container waits
        in a frozen cgroup while it is removed."""
        if self.cgroup is None or self.cgroup.freezer is None:
            return
        with contextlib.suppress(OSError):
            if self.cgroup.version == 2:
                (self.cgroup.freezer / "cgroup.freeze").write_text("0")
            else:
                (self.cgroup.freezer / "freezer.state").write_text("THAWED")

    def _freezer_state(self) -> str | None:
        if self.cgroup is None or self.cgroup.freezer is None:
            return None
        if self.cgroup.version == 2:
            text = (self.cgroup.freezer / "cgroup.freeze").read_text().strip() if \
                (self.cgroup.freezer / "cgroup.freeze").exists() else ""
            return {"1": "FROZEN", "0": "THAWED"}.get(text)
        try:
            return (self.cgroup.freezer / "freezer.state").read_text().strip()
        except OSError:
            return None

    async def kill(self, evidence_dir: Path) -> ActionResult:
        """Save evidence (process list, filesystem diff, last lines), then SIGKILL the container."""
        t0 = time.monotonic()
        if self.container is None:
            return ActionResult(False, 0.0, {"reason": "the learner never started"})
        files, note = await self._evidence(self._save_evidence, Path(evidence_dir))
        t_evidence = time.monotonic() - t0
        self._killed = True
        how = "SIGKILL to every process of the container's cgroup"
        if self.cgroup is not None and self._freezer_state() not in ("FROZEN", "FREEZING"):
            # Straight to the kernel: a round trip through the daemon and runc costs ~100 ms.
            for _ in range(5):  # members may fork between the list and the signal: repeat
                pids = self._members(True)
                if not pids:
                    break
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                await asyncio.sleep(0.002)
            # Killed tasks leave the cgroup once reaped: give that a moment before escalating.
            for _ in range(100):
                left = self.cgroup.read()
                if (left is None or left.pids == 0) and not self._members(True):
                    break
                await asyncio.sleep(0.002)
        left = self.cgroup.read() if self.cgroup is not None else None
        if self.cgroup is None or self._members(True) or (left is not None and left.pids > 0):
            # Frozen (SIGKILL waits for a thaw), or no cgroup to read: docker kill handles both.
            how = "docker kill (SIGKILL)"
            try:
                await asyncio.to_thread(self.container.kill, "SIGKILL")
            except Exception as e:
                if "is not running" not in str(e) and self._running():
                    return ActionResult(False, time.monotonic() - t0, {"reason": str(e), "evidence": files, **note})
        # The effect is every process gone: the cgroup's member list says so first (the
        # daemon's exit notice follows as the lifecycle `exit` event).
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and not self._exited.is_set():
            if self.cgroup is not None and not self._members(True):
                break
            try:
                await asyncio.wait_for(self._exited.wait(), timeout=0.005)
            except asyncio.TimeoutError:
                pass
        gone = self._exited.is_set() or (self.cgroup is not None and not self._members(True))
        return ActionResult(gone, time.monotonic() - t0,
                            {"evidence": files, "evidence_s": round(t_evidence, 4), "how": how, **note})

    def _save_evidence(self, evidence_dir: Path) -> list[str]:
        files = self._write_evidence(evidence_dir, self._members(True))
        diff = evidence_dir / "filesystem_diff.json"
        try:
            changes = self._changes()
        except Exception as e:
            changes = [{"error": str(e)}]
        diff.write_text(json.dumps(changes, indent=1) + "\n")
        return [*files, str(diff)]

    async def disconnect(self) -> ActionResult:
        """Cut the container off its network (it keeps running, with loopback only)."""
        t0 = time.monotonic()
        if (refused := self._refused()) is not None:
            return refused
        if self.network is None:
            return ActionResult(True, 0.0, {"how": "already without a network"})
        try:
            await asyncio.to_thread(self.network.disconnect, self.container, force=True)
            await asyncio.to_thread(self.container.reload)
        except Exception as e:
            return ActionResult(False, time.monotonic() - t0, {"reason": str(e)})
        nets = self.container.attrs.get("NetworkSettings", {}).get("Networks") or {}
        return ActionResult(self.network.name not in nets, time.monotonic() - t0,
                            {"how": "docker network disconnect", "network": self.network.name})

    # -- commands in the running sandbox ------------------------------------------------

    def _unavailable(self) -> str | None:
        """Why no command can run now, or None."""
        if self.container is None or self._closed:
            return "the sandbox is not running (not started, or closed)"
        if self._killed:
            return "the sandbox was killed"
        if self._exited.is_set():
            return f"the sandbox has exited (status {self.exit_code})"
        if self._freezer_state() in ("FROZEN", "FREEZING"):
            return "the sandbox is paused"
        return None

    async def exec(self, argv: Sequence[str], *, input: bytes | str | None = None, cwd: str | None = None,
                   env: Mapping[str, str] | None = None, user: str | None = None,
                   timeout: float | None = None, output_limit: int | None = None) -> ExecResult:
        """Run a command in the container (docker exec): it joins the container's cgroups,
        namespaces and hardening (no capabilities, no-new-privileges, read-only root), so
        the caps bind it and the observers see it. See `Sandbox.exec`."""
        argv = check_exec(argv, cwd, env, timeout, output_limit)
        why = self._unavailable()
        if why:
            raise SandboxUnavailable(why)
        who = exec_user(self.spec.user, user)
        workdir = exec_cwd(AGENT_DIR if self.agent_dir is not None else self.spec.workdir, cwd)
        data = exec_input(input)
        out, err = OutputCap(output_limit), OutputCap(output_limit)
        loop = asyncio.get_running_loop()
        started = asyncio.Event()
        state: dict[str, Any] = {"started": lambda: loop.call_soon_threadsafe(started.set)}
        run_argv, run_user, ch = [str(a) for a in argv], who, None
        if self._channel is not None and self.trace_exec:
            # Traced like the agent: strace (root, the tracer's caps) -> setpriv -> the command,
            # on a FIFO of its own beside the init's.
            self._exec_count += 1
            name = f"exec-{self._exec_count}"
            ch = tracing.TracerChannel(dataclasses.replace(self._channel.ctx, cwd=workdir),
                                       lambda evs, via=name: self._tracer_events(evs, via),
                                       self._tracer_end,
                                       mode=self.tracer or tracing.DEFAULT_MODE,
                                       directory=self._channel.dir, name=name, links=self._channel.links)
            ch.start(loop)
            run_argv, run_user = tracing.tracer_argv(run_argv, who, self.tracer or tracing.DEFAULT_MODE, name,
                                                     profile=self._profile), tracing.TRACER_USER
        elif self._channel is not None:
            # Untraced, but never with the tracer's capabilities (a `docker exec` gets the
            # container's): setpriv drops every one before the command runs.
            uid, _, gid = who.partition(":")
            run_argv = ["setpriv", f"--reuid={uid}", f"--regid={gid or uid}", "--clear-groups",
                        "--inh-caps=-all", "--bounding-set=-all", "--", *run_argv]
            run_user = tracing.TRACER_USER
        state["channel"] = ch
        job = asyncio.ensure_future(in_own_thread(  # as long as the command runs: not the loop's executor
            self._exec_blocking, run_argv, data, workdir, dict(env or {}), run_user, out, err, state))
        try:
            return await self._exec_wait(job, started, timeout, state, out, err)
        finally:
            if ch is not None:
                await asyncio.to_thread(ch.wait_ended, 2.0)  # its last lines, then its end
                ch.close()

    async def _exec_wait(self, job, started: asyncio.Event, timeout: float | None, state: dict[str, Any],
                         out: OutputCap, err: OutputCap) -> ExecResult:
        try:
            # The timeout counts from the command's start: a busy daemon's latency is not its time.
            waiter = asyncio.ensure_future(started.wait())
            await asyncio.wait([job, waiter], return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            code = await asyncio.wait_for(asyncio.shield(job), timeout)
        except (asyncio.TimeoutError, asyncio.CancelledError) as e:
            # The daemon cannot stop an exec: kill its processes from here, which ends its stream.
            if state.get("channel") is not None:
                state["channel"].expected_end = True  # our kill, not a lost tracer
            await asyncio.to_thread(self._exec_kill, state)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(job), 5.0)
            if isinstance(e, asyncio.CancelledError):
                raise
            raise ExecTimeout(float(timeout or 0), out.value(), err.value()) from None
        except dockerd.unreachable_errors() as e:  # APIError is a DockerException
            why = self._unavailable()
            text = str(getattr(e, "explanation", "") or e)
            if why or "paused" in text or "not running" in text:
                raise SandboxUnavailable(why or text) from None
            raise SandboxError(f"running a command in the sandbox: {dockerd.describe(e)}", field="exec") from None
        if self._killed:
            raise SandboxUnavailable("the sandbox was killed while the command ran")
        return ExecResult(code, out.value(), err.value(), truncated=bool(out.dropped or err.dropped))

    def _exec_blocking(self, argv: list[str], data: bytes | None, workdir: str, env: dict[str, str],
                       user: str, out: OutputCap, err: OutputCap, state: dict[str, Any]) -> int:
        from docker.utils.socket import frames_iter

        api = self.client.api
        created = api.exec_create(self.container.id, argv, stdin=data is not None, stdout=True, stderr=True,
                                  tty=False, privileged=False, user=user, environment=env or None,
                                  workdir=workdir)
        state["id"] = created["Id"]
        self._exec_starting.add(created["Id"])
        sock = api.exec_start(created["Id"], socket=True)
        state["started"]()
        raw = getattr(sock, "_sock", sock)
        state["sock"] = raw
        writer = None
        try:
            if data is not None:
                def feed() -> None:  # beside the reader: a command may write before it reads
                    with contextlib.suppress(OSError):
                        raw.sendall(data)
                        raw.shutdown(socket.SHUT_WR)  # stdin's end of file
                writer = threading.Thread(target=feed, daemon=True, name=f"runaway-exec-in-{self.run_id}")
                writer.start()
            with contextlib.suppress(OSError):
                for stream, chunk in frames_iter(sock, tty=False):
                    (err if stream == 2 else out).add(chunk)
        finally:
            self._exec_starting.discard(created["Id"])
            with contextlib.suppress(Exception):
                sock.close()
        code = api.exec_inspect(created["Id"]).get("ExitCode")
        return -1 if code is None else int(code)

    def _exec_kill(self, state: dict[str, Any]) -> None:
        """SIGKILL an exec's process and its descendants (host pids), then close its stream."""
        if "id" in state:
            with contextlib.suppress(Exception):
                pid = int(self.client.api.exec_inspect(state["id"]).get("Pid") or 0)
                if pid:
                    for p in [pid, *procfs.descendants(pid)]:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(p, signal.SIGKILL)
        sock = state.get("sock")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    # -- teardown -----------------------------------------------------------------------

    async def close(self) -> None:
        """Remove the container, its network and firewall rules. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._freezer_state() in ("FROZEN", "FREEZING"):
            self._thaw()
        await asyncio.to_thread(self._remove_all)
        if self._channel is not None:
            self._channel.close()
        self._exited.set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=3.0)
            for task in pending:
                task.cancel()

    def _remove_all(self) -> None:
        if self.container is not None:
            try:
                self.container.remove(force=True)
            except Exception:  # already gone
                pass
        if self._attach_resp is not None:
            try:
                self._attach_resp.close()
            except Exception:
                pass
        if self.network is not None:
            try:
                self.network.remove()
            except Exception:
                pass
        firewall_remove(self.run_id)
        if self._client is not None:
            try:
                self._client.close()
            except Exception:
                pass
        watchdog.disarm(self._watchdog)


def clean(run_id: str | None = None, client=None, *, include_live: bool = False,
          removed: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
    """Remove containers, networks, volumes labelled runaway.run (=run_id) and the firewall
    rules tagged with it; returns what was removed, by kind (filled into `removed` as it
    goes, so a caller still knows what went when the daemon stops answering half-way).

    Without a run id, only leftovers are removed: things whose controller process is gone
    (a run still going on this host is skipped, listed under "skipped (live)") unless
    `include_live`. A run id names what to remove, live or not."""
    removed = {} if removed is None else removed
    for kind in ("containers", "networks", "volumes", "firewall rules"):
        removed.setdefault(kind, [])
    client = client or _client()
    try:
        return _clean_with(client, run_id, include_live, removed)
    finally:
        client.close()


def _clean_with(client, run_id: str | None, include_live: bool,
                removed: dict[str, list[str]]) -> dict[str, list[str]]:
    docker = _docker()
    flt = {"label": f"{LABEL}={run_id}" if run_id else LABEL}
    live: set[str] = set()

    def keep(labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        if run_id is None and not include_live and _owner_alive(labels.get(OWNER_LABEL)):
            live.add(labels.get(LABEL, "?"))
            return True
        return False

    for c in client.containers.list(all=True, filters=flt):
        if keep(c.labels):
            continue
        try:
            c.remove(force=True)
            removed["containers"].append(c.name)
        except docker.errors.NotFound:
            pass
    for n in client.networks.list(filters=flt):
        if keep(n.attrs.get("Labels")):
            continue
        try:
            n.remove()
            removed["networks"].append(n.name)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError:  # still has endpoints: a live container we kept
            live.add((n.attrs.get("Labels") or {}).get(LABEL, "?"))
    for v in client.volumes.list(filters=flt):
        if keep(v.attrs.get("Labels")):
            continue
        try:
            v.remove(force=True)
            removed["volumes"].append(v.name)
        except docker.errors.NotFound:
            pass
    removed["firewall rules"] = firewall_remove(run_id, keep={_run_tag(r) for r in live})
    removed["tracer channels"] = []
    prefix = f"runaway-tracer-{_run_tag(run_id)}-" if run_id else "runaway-tracer-"
    for d, owner in tracing.leftover_dirs(prefix):
        if run_id is None and not include_live and _owner_alive(owner):
            continue  # a live run's
        shutil.rmtree(d, ignore_errors=True)
        removed["tracer channels"].append(d.name)
    if live:
        removed["skipped (live)"] = sorted(live)
    return removed


def _unavailable() -> str | None:
    from .. import docker_available

    return docker_available()


def _configured() -> str | None:
    from .. import docker_configured

    return docker_configured()


def _clean(run_id: str | None = None, *, include_live: bool = False) -> dict[str, list[str]]:
    """Without a daemon there are no containers to find, but firewall rules may be left.
    Which runs are live cannot be asked then, so the rules of any bridge that still
    exists are kept: removing them would open a live sandbox's host side."""
    why = _unavailable()
    removed: dict[str, list[str]] = {}
    if why is None:
        try:
            return clean(run_id, include_live=include_live, removed=removed)
        except Exception as e:  # the daemon stopped answering half-way (a timeout, a crash)
            why = e.message if isinstance(e, SandboxError) else dockerd.one_line(e)
    # What went before it stopped answering, and the rules no live bridge needs.
    removed.pop("skipped (live)", None)
    removed["docker unreachable"] = [why]
    removed["firewall rules"] = [*removed.get("firewall rules", []),
                                 *firewall_remove(run_id, keep_live_bridges=True)]
    return removed


register_backend(Backend(
    name="docker", factory=DockerSandbox, unavailable=_unavailable, clean=_clean,
    is_security_boundary=True, preference=10, configured=_configured,
    missing="no Docker daemon answers ({why})", refused="the docker backend needs a Docker daemon: {why}"))
