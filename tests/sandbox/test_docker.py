"""The Docker sandbox against the real engine: caps hold, hardening is in effect, escapes are
blocked or seen, actions work, the network reaches the mock web and nothing else, and
nothing is left behind."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from policies.model import Event, Sample
from sandbox import PROFILES, SandboxSpec, admit, open_sandbox
from sandbox.backends.docker import LABEL, OWNER_LABEL, DockerSandbox, _owner_alive, bridge_name
from sandbox import procfs
from sandbox.image import build_image
from sandbox.tracer import TRACER_CAPS

from docker_left import labelled  # tests/ is on sys.path

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
LEARNER_DIR = ROOT / "sim" / "learner"


@pytest.fixture(scope="session")
def learner_image() -> str:
    """The learner image, built once (cached by recipe: seconds when already there)."""
    return build_image().tag


@pytest.fixture
def run_id() -> str:
    rid = f"t-{uuid.uuid4().hex[:10]}"
    yield rid
    from sandbox.backends.docker import clean

    clean(rid)  # whatever a failing test left


@pytest.fixture
async def make_sandbox(learner_image: str, run_id: str, tmp_path: Path):
    # async, so its teardown runs inside the test's event loop: the loop's close waits for
    # threads blocked on a container that only this teardown removes.
    made: list[DockerSandbox] = []

    def make(spec: SandboxSpec | None = None, unsafe: bool = False) -> DockerSandbox:
        spec = spec or PROFILES["ci"]
        admit(spec, unsafe=unsafe)
        sb = open_sandbox(spec, "docker", run_id=f"{run_id}-{len(made)}")
        made.append(sb)
        return sb

    yield make
    from sandbox.backends.docker import clean

    for sb in made:  # a test that failed before close() leaves these: remove by label
        if not sb._closed:
            await sb.close()
            clean(sb.run_id)


def mounts_of(c) -> dict[str, Any]:
    return {m["Destination"]: m for m in c.attrs["Mounts"]}


class Run:
    """A started sandbox with its output and observations collected in the background."""

    def __init__(self, sb: DockerSandbox) -> None:
        self.sb = sb
        self.lines: list[tuple[str, str]] = []
        self.obs: list[Sample | Event] = []
        self._tasks: list[asyncio.Task] = []
        self.t0 = time.monotonic()

    def clock(self) -> float:
        return time.monotonic() - self.t0

    async def start(self, code: str, tmp: Path, learner_dir: Path = LEARNER_DIR, env: dict | None = None,
                    argv: list[str] | None = None) -> "Run":
        await self.sb.start(argv or ["python3", "-c", code], env or {}, learner_dir, {},
                            tmp / "control" / "control.jsonl", self.clock)
        self._tasks = [asyncio.ensure_future(self._collect_out()), asyncio.ensure_future(self._collect_obs())]
        return self

    async def _collect_out(self) -> None:
        async for item in self.sb.output():
            self.lines.append(item)

    async def _collect_obs(self) -> None:
        async for item in self.sb.observations():
            self.obs.append(item)

    async def wait_line(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for _, line in self.lines):
            assert time.monotonic() < deadline, f"no line with {text!r}; got {self.lines[-5:]}"
            await asyncio.sleep(0.02)

    async def finish(self, timeout: float = 60.0) -> None:
        await asyncio.wait_for(asyncio.gather(*self._tasks), timeout)

    def events(self, category: str | None = None, kind: str | None = None) -> list[Event]:
        return [o for o in self.obs if isinstance(o, Event) and (category is None or o.category == category)
                and (kind is None or o.kind == kind)]

    def samples(self) -> list[Sample]:
        return [o for o in self.obs if isinstance(o, Sample)]

    def json_line(self) -> Any:
        for _, line in self.lines:
            if line.startswith("{"):
                return json.loads(line)
        raise AssertionError(f"no JSON line in {self.lines}")


async def test_every_hardening_knob_is_in_effect(make_sandbox, tmp_path: Path) -> None:
    sb = make_sandbox()
    await sb.prepare()
    run = await Run(sb).start("import time; print('up', flush=True); time.sleep(30)", tmp_path)
    try:
        await run.wait_line("up")
        c = sb.container
        c.reload()
        hc = c.attrs["HostConfig"]
        assert hc["CpuQuota"] == 5_000 and hc["CpuPeriod"] == 10_000  # 0.5 CPU (a 10 ms CFS period)
        assert hc["Memory"] == 256 << 20 and hc["MemorySwap"] == 256 << 20  # no swap beyond memory
        assert hc["PidsLimit"] == PROFILES["ci"].pids
        assert hc["ReadonlyRootfs"] is True and hc["Privileged"] is False
        # Only the syscall tracer (the init, root) holds capabilities, and only these.
        assert hc["CapDrop"] == ["ALL"] and hc["CapAdd"] == list(TRACER_CAPS)
        assert "no-new-privileges:true" in hc["SecurityOpt"]
        assert c.attrs["Config"]["User"] == "0:0" and c.attrs["Config"]["Cmd"][0] == "strace"
        assert mounts_of(c)["/run/runaway/tracer"]["RW"] is False
        assert c.labels[LABEL] == sb.run_id
        assert "/scratch" in hc["Tmpfs"]
        mounts = {m["Destination"]: m for m in c.attrs["Mounts"]}
        assert mounts["/opt/runaway/learner"]["RW"] is False
        assert mounts["/run/runaway/control"]["RW"] is False
        sb.network.reload()
        assert sb.network.attrs["Internal"] is True and sb.network.attrs["Labels"][LABEL] == sb.run_id
        # What the kernel says about the learner's process (the tracer's child), read from outside.
        [learner] = procfs.descendants(sb.pid)
        status = Path(f"/proc/{learner}/status").read_text()
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        assert fields["Uid"].split() == ["65534"] * 4 and fields["Gid"].split() == ["65534"] * 4
        assert fields["Groups"].strip() == ""
        for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert int(fields[cap], 16) == 0, cap
        assert fields["NoNewPrivs"].strip() == "1"
        assert fields["TracerPid"].strip() == str(sb.pid), "traced by the init, strace"
    finally:
        await sb.close()


ESCAPES = r"""
import json, os, socket
out = {}
def attempt(name, fn):
    try:
        fn(); out[name] = "allowed"
    except OSError as e:
        out[name] = e.errno
attempt("setuid0", lambda: os.setuid(0))
attempt("write_etc", lambda: open("/etc/evil", "w").write("x"))
attempt("write_learner_code", lambda: open("/opt/runaway/learner/evil.py", "w").write("x"))
attempt("write_control", lambda: open(os.environ["RUNAWAY_CONTROL"], "a").write("x"))
attempt("mknod", lambda: os.mknod("/scratch/disk", 0o600 | 0o060000, os.makedev(8, 0)))
attempt("chroot", lambda: os.chroot("/scratch"))
attempt("raw_socket", lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
out["docker_socket"] = os.path.exists("/var/run/docker.sock") or os.path.exists("/run/docker.sock")
open("/scratch/ok", "w").write("scratch is writable")
out["scratch_write"] = "allowed"
print(json.dumps(out), flush=True)
"""


async def test_escalation_attempts_are_blocked(make_sandbox, tmp_path: Path) -> None:
    import errno

    sb = make_sandbox()
    await sb.prepare()
    run = await Run(sb).start(ESCAPES, tmp_path)
    await run.finish()
    await sb.close()
    res = run.json_line()
    assert res["setuid0"] == errno.EPERM
    assert res["write_etc"] in (errno.EROFS, errno.EACCES)
    assert res["write_learner_code"] in (errno.EROFS, errno.EACCES)
    assert res["write_control"] in (errno.EROFS, errno.EACCES)
    assert res["mknod"] == errno.EPERM and res["chroot"] == errno.EPERM
    assert res["raw_socket"] == errno.EPERM
    assert res["docker_socket"] is False
    assert res["scratch_write"] == "allowed"
    # Nothing was gained: every attempt is seen by the syscall tracer, blocked, with its
    # errno; no escalation is `allowed`; scratch writes are not news.
    seen = {(e.kind, e.outcome, e.detail.get("errno_name")) for e in run.events("escalation")}
    assert {("setuid", "blocked", "EPERM"), ("mount", "blocked", "EPERM")} <= seen  # chroot is a mount kind
    assert {("write_below_etc", "blocked", "EROFS")} <= seen
    assert not [e for e in run.events("escalation") if e.outcome == "allowed"]
    assert {(e.kind, e.outcome) for e in run.events("egress")} == {("raw_socket", "blocked")}
    writes = [e for e in run.events("filesystem")]
    assert writes and all(e.outcome == "blocked" and e.detail["syscall"] in ("openat", "mknodat", "mknod")
                          for e in writes), writes
    assert run.events("lifecycle", "exit")[0].detail["returncode"] == 0


def _setuid_sleep(tmp_path: Path) -> Path:
    """A learner dir holding a setuid-root copy of sleep: the escape the observer must see."""
    d = tmp_path / "suid"
    d.mkdir()
    binary = d / "susleep"
    shutil.copy(shutil.which("sleep"), binary)
    os.chown(binary, 0, 0)
    os.chmod(binary, 0o4755)
    return d


async def test_a_real_uid_gain_is_an_allowed_escalation_event(make_sandbox, tmp_path: Path) -> None:
    # Unsafe on purpose: without no-new-privileges a setuid-root binary really runs as euid 0.
    spec = PROFILES["ci"].with_overrides({"no_new_privileges": False})
    sb = make_sandbox(spec, unsafe=True)
    await sb.prepare()
    run = await Run(sb).start("", tmp_path, learner_dir=_setuid_sleep(tmp_path),
                              argv=["/opt/runaway/learner/susleep", "1"])
    await run.finish()
    await sb.close()
    esc = run.events("escalation", "uid_change")
    assert esc, (run.obs, run.lines)
    assert esc[0].outcome == "allowed" and esc[0].source == "observer"
    assert esc[0].detail["euid"] == [65534, 0]
    # strace's seccomp filter would set no-new-privileges again: the tracer says it stops on
    # every call instead, and the spec's choice holds.
    assert sb.tracer == "ptrace" and "no-new-privileges off" in sb.notice


async def test_a_setuid_bit_under_no_new_privileges_is_harmless_and_quiet(make_sandbox, tmp_path: Path) -> None:
    sb = make_sandbox()
    await sb.prepare()
    run = await Run(sb).start("", tmp_path, learner_dir=_setuid_sleep(tmp_path),
                              argv=["/opt/runaway/learner/susleep", "1"])
    await run.finish()
    await sb.close()
    assert run.events("escalation") == []
    assert run.events("lifecycle", "exit")[0].detail["returncode"] == 0


async def test_a_write_outside_scratch_is_a_filesystem_event(make_sandbox, tmp_path: Path) -> None:
    spec = PROFILES["ci"].with_overrides({"read_only_root": False})
    sb = make_sandbox(spec, unsafe=True)
    await sb.prepare()
    code = "import time; open('/tmp/dropped', 'w').write('x'); time.sleep(0.5)"
    run = await Run(sb).start(code, tmp_path)
    await run.finish()
    await sb.close()
    paths = {e.detail["path"] for e in run.events("filesystem")}
    assert "/tmp/dropped" in paths


BUSY = "import time\nt = time.time()\nwhile time.time() - t < 4: pass\n"


async def test_a_busy_loop_pegs_at_its_cap_not_the_host(make_sandbox, tmp_path: Path) -> None:
    sb = make_sandbox()  # 0.5 CPU of a 2-CPU host
    await sb.prepare()
    run = await Run(sb).start(BUSY, tmp_path)
    await run.finish()
    await sb.close()
    samples = run.samples()
    assert len(samples) >= 8  # 4 Hz for 4 s
    # The loop's last 4 s end at the exit; the interpreter's start-up (slower under the
    # syscall tracer, which stops every call) comes before them, whatever its length.
    end = run.events("lifecycle", "exit")[0].t
    steady = [s for s in samples if end - 3.0 <= s.t <= end - 0.5]
    # What the loop asked for, against the cap: one always-runnable thread is 2 caps of
    # 0.5 (it runs or waits for a CPU all the time), however busy the host; against the
    # host's 2 CPUs it would read 0.5. What it got (cpu_ratio) never passes the cap, and
    # falls as low as 0.15 of it when the host is loaded (a load average of 20 was seen).
    assert statistics.median(s.extra["cpu_demand"] for s in steady) >= 1.6, [s.extra for s in steady]
    ratio = statistics.median(s.cpu_ratio for s in steady)
    assert ratio <= 1.15, [s.cpu_ratio for s in steady]
    if ratio >= 0.8:  # the host let it reach its cap: the CFS quota is what held it
        assert samples[-1].extra["nr_throttled"] > 0, [s.extra for s in samples]
    wall = samples[-1].t - samples[0].t
    assert samples[-1].cpu_seconds < 0.5 * wall * 1.3 + 0.3


async def test_without_cgroup_files_samples_come_from_the_stats_api(make_sandbox, tmp_path: Path,
                                                                    monkeypatch) -> None:
    import sandbox.backends.docker as backend

    monkeypatch.setattr(backend.Cgroup, "of_pid", classmethod(lambda cls, pid: None))
    sb = make_sandbox()
    await sb.prepare()
    run = await Run(sb).start(BUSY.replace("< 4", "< 2.5"), tmp_path)
    await run.finish()
    await sb.close()
    assert sb.cgroup is None
    samples = run.samples()
    assert samples[-1].cpu_seconds > 0.3 and max(s.mem_bytes for s in samples) > 1 << 20
    assert max(s.pids for s in samples) >= 1 and samples[-1].mem_limit_bytes == 256 << 20
    assert max(s.cpu_ratio for s in samples) > 0.3


async def test_memory_past_the_limit_is_an_oom_kill_event(make_sandbox, tmp_path: Path) -> None:
    sb = make_sandbox()  # 256m
    await sb.prepare()
    code = "chunks = []\nwhile True: chunks.append(bytearray(16 << 20))\n"
    run = await Run(sb).start(code, tmp_path)
    await run.finish()
    await sb.close()
    oom = run.events("lifecycle", "oom_kill")
    assert oom and oom[0].outcome == "allowed"
    exit_ev = run.events("lifecycle", "exit")[0]
    assert exit_ev.detail["returncode"] == 137 and exit_ev.detail["oom_killed"] is True
    assert max(s.mem_bytes for s in run.samples()) <= 256 << 20


async def test_a_fork_flood_stops_at_the_pids_limit(make_sandbox, tmp_path: Path) -> None:
    sb = make_sandbox(PROFILES["ci"].with_overrides({"pids": 24}))
    await sb.prepare()
    code = (
        "import os, time, json\nn = 0\nerr = None\n"
        "for _ in range(200):\n"
        "    try:\n        pid = os.fork()\n    except OSError as e:\n        err = e.errno; break\n"
        "    if pid == 0:\n        time.sleep(3); os._exit(0)\n"
        "    n += 1\n"
        "print(json.dumps({'forked': n, 'errno': err}), flush=True)\ntime.sleep(1)\n"
    )
    run = await Run(sb).start(code, tmp_path)
    await run.finish()
    await sb.close()
    res = run.json_line()
    import errno

    assert res["errno"] == errno.EAGAIN and res["forked"] < 24
    assert 10 <= max(s.pids for s in run.samples()) <= 24


async def test_each_action_works_and_has_a_latency(make_sandbox, tmp_path: Path) -> None:
    sb = make_sandbox()
    await sb.prepare()
    code = "import time, itertools\nfor i in itertools.count():\n    print('tick', i, flush=True); time.sleep(0.05)\n"
    run = await Run(sb).start(code, tmp_path)
    await run.wait_line("tick 3")

    r = await sb.throttle(0.25)
    assert r.ok and r.latency_s > 0 and r.detail["cpus"] == [0.5, 0.25]
    assert Path(sb.cgroup.cpu, "cpu.cfs_quota_us").read_text().strip() == "2500"  # 0.25 of a 10 ms period

    r = await sb.pause()
    assert r.ok and r.latency_s > 0 and r.detail["freezer"] == "FROZEN"
    n = len(run.lines)
    await asyncio.sleep(0.4)
    assert len(run.lines) <= n + 1  # frozen: at most a line already in flight
    r = await sb.resume()
    assert r.ok and r.detail["freezer"] == "THAWED"
    await run.wait_line(f"tick {int(run.lines[-1][1].split()[1]) + 2}")

    r = await sb.disconnect()
    assert r.ok and r.latency_s > 0
    sb.container.reload()
    assert sb.network.name not in (sb.container.attrs["NetworkSettings"]["Networks"] or {})

    evidence = tmp_path / "evidence"
    r = await sb.kill(evidence)
    assert r.ok and r.latency_s > 0
    procs = json.loads((evidence / "processes.json").read_text())
    assert any("python3" in " ".join(p["cmdline"]) for p in procs)
    assert "tick" in (evidence / "last_lines.log").read_text()
    assert (evidence / "filesystem_diff.json").exists()
    await run.finish()
    assert run.events("lifecycle", "exit")[0].detail["by"] == "kill action"
    await sb.close()


async def test_kill_works_on_a_paused_learner(make_sandbox, tmp_path: Path) -> None:
    sb = make_sandbox()
    await sb.prepare()
    run = await Run(sb).start("import time\nprint('up', flush=True)\ntime.sleep(60)\n", tmp_path)
    await run.wait_line("up")
    assert (await sb.pause()).ok
    r = await sb.kill(tmp_path / "evidence")
    assert r.ok and r.detail["how"] == "docker kill (SIGKILL)"  # a frozen task needs docker to thaw it
    await run.finish()
    await sb.close()
    assert run.events("lifecycle", "exit")[0].detail["returncode"] == 137


class Listener:
    """A TCP server on the host that answers `hello` (the thing the sandbox must not reach)."""

    def __init__(self, host: str) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.sendall(b"hello")
            conn.close()

    def close(self) -> None:
        self.sock.close()


PROBE = r"""
import json, socket, sys
from concurrent.futures import ThreadPoolExecutor
targets = json.loads(sys.argv[1])
def probe(target):
    name, host, port = target
    try:
        with socket.create_connection((host, port), timeout=1.5) as s:
            return name, s.recv(5).decode() or "connected"
    except OSError as e:
        return name, type(e).__name__
with ThreadPoolExecutor(len(targets)) as pool:
    print(json.dumps(dict(pool.map(probe, targets))), flush=True)
"""


async def test_the_sandbox_reaches_the_mock_web_and_nothing_else(make_sandbox, tmp_path: Path) -> None:
    import docker

    sb = make_sandbox()
    gw = await sb.prepare()
    web = Listener(gw)  # stands in for the mock web, bound where prepare() said
    other = Listener("0.0.0.0")  # e.g. the controller's metrics port: must stay unreachable
    sb.allow_port(web.port)
    try:
        # Positive control: the host itself reaches the other listener.
        with socket.create_connection(("127.0.0.1", other.port), timeout=2) as s:
            assert s.recv(5) == b"hello"
        client = docker.from_env()
        cfg = client.networks.get("bridge").attrs["IPAM"]["Config"][0]
        docker0 = cfg.get("Gateway") or str(ipaddress.ip_network(cfg["Subnet"])[1])
        client.close()
        prefix = gw.rsplit(".", 1)[0]
        targets = [
            ("web", gw, web.port),
            ("web_by_name", "metadata.internal", web.port),
            ("gateway_other_port", gw, other.port),
            ("gateway_ssh", gw, 22),
            ("gateway_other_port_by_name", "web.internal", other.port),
            ("neighbour_on_own_network", f"{prefix}.200", other.port),
            ("other_docker_network_gateway", docker0, other.port),
        ]
        run = await Run(sb).start("", tmp_path, argv=["python3", "-c", PROBE, json.dumps(targets)])
        await run.finish()
    finally:
        web.close()
        other.close()
        await sb.close()
    res = run.json_line()
    assert res["web"] == "hello" and res["web_by_name"] == "hello"
    # The traffic shows in the samples, read from the container's own network namespace.
    assert run.samples()[-1].net_tx_bytes > 0 and run.samples()[-1].net_rx_bytes > 0
    for name in ("gateway_other_port", "gateway_ssh", "gateway_other_port_by_name",
                 "neighbour_on_own_network", "other_docker_network_gateway"):
        assert res[name] != "hello" and res[name] != "connected", (name, res)


CONTROLLER = r"""
import asyncio, sys, time
from pathlib import Path
from sandbox import PROFILES, open_sandbox
async def main():
    sb = open_sandbox(PROFILES["ci"], "docker", run_id=sys.argv[1])
    gw = await sb.prepare()
    sb.allow_port(8080)
    await sb.start(["sleep", "120"], {}, Path(sys.argv[2]), {}, Path(sys.argv[3]), time.monotonic)
    print("ready", flush=True)
    await asyncio.sleep(120)
asyncio.run(main())
"""


def test_a_sigkilled_controllers_sandbox_is_removed_by_its_watchdog(learner_image: str, run_id: str, tmp_path: Path) -> None:
    import docker

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", CONTROLLER, run_id, str(LEARNER_DIR), str(tmp_path / "c" / "control")],
        stdout=subprocess.PIPE, env=env, text=True)
    client = docker.from_env()
    flt = {"label": f"{LABEL}={run_id}"}
    try:
        assert proc.stdout.readline().strip() == "ready"
        # While its controller lives, a run is not a leftover: a bare `runaway clean` skips it.
        owner = client.containers.list(filters=flt)[0].labels[OWNER_LABEL]
        assert owner.startswith(f"{proc.pid}:") and _owner_alive(owner)
    finally:
        proc.kill()  # SIGKILL: no close(), no finally blocks in the controller
        proc.wait()
    assert not _owner_alive(owner)
    # The watchdog (dead man's switch) removes what the SIGKILLed controller left; `clean`
    # then finds nothing of this run (it is what removes leftovers when even the watchdog
    # could not run).
    deadline = time.monotonic() + 20
    while client.containers.list(all=True, filters=flt) or client.networks.list(filters=flt):
        assert time.monotonic() < deadline, "the watchdog left the run's container or network"
        time.sleep(0.1)
    out = subprocess.run([sys.executable, "-m", "sim", "clean", "--run", run_id], env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert client.containers.list(all=True, filters=flt) == []
    assert client.networks.list(filters=flt) == []
    rules = subprocess.run(["iptables", "-S", "INPUT"], capture_output=True, text=True).stdout
    assert f"runaway.run={run_id}" not in rules and bridge_name(run_id) not in rules
    client.close()


def test_image_build_is_cached_by_recipe(learner_image: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "sim", "image", "build"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"{learner_image}: present")  # same recipe: nothing rebuilt
    out = subprocess.run([sys.executable, "-m", "sim", "image", "show"], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"{learner_image}: built"
    import docker

    client = docker.from_env()
    img = client.images.get(learner_image)
    client.close()
    assert img.attrs["Config"]["User"] == "10001:10001"
    assert img.attrs["Config"]["Labels"]["runaway.recipe"] == learner_image.split(":")[1]


def test_the_recipe_hash_follows_the_recipe(monkeypatch) -> None:
    import sandbox.image as image

    before = image.image_tag()
    monkeypatch.setattr(image, "PACKAGES", (*image.PACKAGES, "python3-yaml"))
    assert image.image_tag() != before
    monkeypatch.setattr(image, "PACKAGES", image.PACKAGES[:-1])
    assert image.image_tag() == before


async def test_a_restart_is_a_lifecycle_event_and_the_new_init_is_watched(make_sandbox, tmp_path: Path) -> None:
    sb = make_sandbox()
    await sb.prepare()
    run = await Run(sb).start("", tmp_path, argv=["sleep", "30"])
    first = sb.pid
    await asyncio.to_thread(sb.container.restart, timeout=0)  # e.g. an operator's `docker restart`
    deadline = time.monotonic() + 10
    while not run.events("lifecycle", "restart"):
        assert time.monotonic() < deadline, run.obs
        await asyncio.sleep(0.05)
    assert sb.pid != first
    r = await sb.kill(tmp_path / "evidence")  # the kill reaches the restarted container
    assert r.ok
    await run.finish()
    await sb.close()
    assert [e.kind for e in run.events("lifecycle")] == ["start", "restart", "exit"]


async def run_until(pred, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition never came true"
        await asyncio.sleep(0.02)


IDLE = "import time\nprint('up', flush=True)\nwhile True: time.sleep(1)\n"


async def test_exec_runs_a_command_inside_the_running_sandbox_under_its_hardening(make_sandbox, tmp_path: Path) -> None:
    from sandbox import ExecTimeout, SandboxUnavailable

    sb = make_sandbox()
    await sb.prepare()
    sb.trace_exec = True
    run = await Run(sb).start(IDLE, tmp_path)
    await run.wait_line("up")

    r = await sb.exec(["bash", "-c", "id -u; pwd; cat; echo oops >&2; exit 3"], input="from stdin\n")
    assert (r.returncode, r.stdout, r.stderr) == (3, b"65534\n/scratch\nfrom stdin\n", b"oops\n")
    r = await sb.exec(["sh", "-c", "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; touch /etc/x; echo $GREETING"],
                      cwd="/", env={"GREETING": "hi"})
    assert b"CapEff:\t0000000000000000" in r.stdout and b"NoNewPrivs:\t1" in r.stdout
    assert b"Read-only file system" in r.stderr and r.stdout.endswith(b"hi\n")
    # The exec'd process is one of the container's: in the cgroup the caps and samples read
    # (beside the init, the syscall tracer, and the learner).
    job = asyncio.ensure_future(sb.exec(["sleep", "1"]))
    await run_until(lambda: len(sb._members(True)) > 2)
    assert (await job).returncode == 0
    with pytest.raises(PermissionError, match="65534"):
        await sb.exec(["id"], user="root")

    r = await sb.exec(["head", "-c", "100000", "/dev/zero"], output_limit=1000)
    assert len(r.stdout) == 1000 and r.truncated
    with pytest.raises(ExecTimeout) as timed_out:
        await sb.exec(["sh", "-c", "echo before; exec sleep 60"], timeout=5)
    assert timed_out.value.stdout == b"before\n"
    assert len(sb._members(True)) == 2  # the sleep was killed: only the tracer and the learner are left

    # The runtime sets each exec up as root before it becomes the spec's user, and the
    # exec's own tracer is root with the tracer's caps: neither is an escalation. What the
    # command tried is seen by the syscall tracer, with its result.
    esc = run.events("escalation")
    assert not [e for e in esc if e.outcome == "allowed" or e.kind == "tracer_lost"], esc
    assert [(e.kind, e.outcome, e.detail.get("via")) for e in esc if e.kind == "write_below_etc"] == \
        [("write_below_etc", "blocked", "exec-2")]

    await sb.pause()
    with pytest.raises(SandboxUnavailable, match="paused"):
        await sb.exec(["true"])
    await sb.resume()
    await sb.kill(tmp_path / "evidence")
    with pytest.raises(SandboxUnavailable, match="killed"):
        await sb.exec(["true"])
    await run.finish()
    await sb.close()


async def test_a_pause_racing_execs_never_wedges_the_container(make_sandbox, tmp_path: Path) -> None:
    """Execs started around a pause either run or are refused, and the paused sandbox is
    still removed by close(): a `runc init` left waiting in a frozen cgroup would hold the
    daemon's lock on the container, and every later inspect, kill or remove would hang."""
    from sandbox import SandboxUnavailable

    sb = make_sandbox()
    await sb.prepare()
    run = await Run(sb).start(IDLE, tmp_path)
    await run.wait_line("up")
    execs = [asyncio.ensure_future(sb.exec(["true"], timeout=30)) for _ in range(4)]
    assert (await sb.pause()).ok
    late = asyncio.ensure_future(sb.exec(["true"], timeout=30))
    with pytest.raises(SandboxUnavailable, match="paused"):
        await late
    name = sb.container.name
    await sb.close()
    await asyncio.gather(*execs, return_exceptions=True)
    await run.finish()
    import docker

    client = docker.from_env(timeout=30)
    try:
        assert not client.containers.list(all=True, filters={"name": name})
    finally:
        client.close()


async def test_sandboxes_waiting_on_their_containers_leave_the_loops_executor_free(make_sandbox, tmp_path: Path) -> None:
    """However many sandboxes one process runs, waiting for their containers holds no worker
    of the event loop's executor, so every sandbox still closes (a sweep of eight on a
    2-core host, whose loop has six workers, once hung at its end). Two workers, three
    sandboxes: the same squeeze on any host."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=2)
    asyncio.get_running_loop().set_default_executor(pool)
    runs = []
    for i in range(3):
        sb = make_sandbox()
        await sb.prepare()
        (tmp_path / str(i) / "control").mkdir(parents=True)
        runs.append(await Run(sb).start("import time; print('up', flush=True); time.sleep(600)", tmp_path / str(i)))
    for run in runs:
        await run.wait_line("up", timeout=120)
    # Generous: a close takes about a second; stuck, it never ends.
    await asyncio.wait_for(asyncio.gather(*(run.sb.close() for run in runs)), timeout=240)
    for run in runs:
        await run.finish()
        assert run.sb.container is not None
    assert [name for run in runs for name in labelled(run.sb.run_id)] == []
