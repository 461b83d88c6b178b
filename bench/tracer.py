"""Benchmark of the syscall tracer's cost, each figure beside the untraced sandbox in the same run.

- crawl: the learner's pages per second crawling the mock web (no rate limit, no crawl
  delay, 4 connections, learning on) in the Docker sandbox, untraced (Docker's default
  profile, no tracer) vs strace in `ptrace` mode vs `seccomp` mode (the default: the
  sandbox's own profile, sandbox/seccomp.py); rounds alternate so that the host's load
  falls on all three alike;
- syscalls: a syscall-heavy loop in the sandbox (open+close of a scratch file: traced calls;
  getppid: a call the tracer does not keep, which ptrace mode still stops on; send on a
  connected datagram socket to the sandbox's loopback: a sendto with no address, which
  `seccomp` mode's profile leaves untraced), in microseconds per call;
- latency: from a blocked call in the sandbox (open /etc/shadow, every 100 ms) to the
  default policy's firing verdict, through the real channel (strace's wall time of the
  call -> the observer event -> Engine.step); the untraced baseline is the same attempt
  from a Python agent seen by its audit hook (the line's own wall time -> the verdict).

Usage: PYTHONPATH=. python bench/tracer.py [--seconds 20] [--rounds 2]
Needs root, a Docker daemon and the learner image (built if missing).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from policies import Engine, load_policy  # noqa: E402
from policies.model import Event  # noqa: E402
from sandbox import SandboxSpec  # noqa: E402
from sandbox.backends.docker import DockerSandbox  # noqa: E402
from sandbox.image import build_image  # noqa: E402
from sim.lab.protocol import parse_line  # noqa: E402
from sim.lab.runner import DEFAULT_POLICY  # noqa: E402
from sim.scenarios.spec import parse_scenario  # noqa: E402
from sim.web import MockWeb  # noqa: E402

LEARNER = Path(__file__).resolve().parents[1] / "sim" / "learner"
POLICY = load_policy(DEFAULT_POLICY)
SPEC = SandboxSpec(cpus=1.0, memory="512m", pids=256)
MODES = (None, "ptrace", "seccomp")
CRAWL = parse_scenario("""
name: bench-crawl
summary: crawl as fast as the web answers
lesson: {watch: pages/s, guard: none, exercise: none}
settings:
  crawl: {concurrency: 4, robots: ignore, delay: 0ms, max_depth: 12, max_pages: 100000}
phases:
  - name: crawl
    when: {after: 0s}
    do: {say: "crawl"}
""")
MICRO = """
import os, time
p = os.path.join(os.environ["RUNAWAY_SCRATCH"], "f")
open(p, "w").close()
t = time.perf_counter()
for _ in range(5000):
    os.close(os.open(p, os.O_RDONLY))
a = (time.perf_counter() - t) / 5000
t = time.perf_counter()
for _ in range(20000):
    os.getppid()
b = (time.perf_counter() - t) / 20000
import socket
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.connect(("127.0.0.1", 9))  # the sandbox's own loopback; nothing listens, nothing leaves
t = time.perf_counter()
for _ in range(20000):
    try:
        u.send(b"x")
    except OSError:  # ECONNREFUSED from an earlier datagram's ICMP
        pass
c = (time.perf_counter() - t) / 20000
print("MICRO", a, b, c, flush=True)
"""
PROBE = """
import time
for _ in range(int(N)):
    time.sleep(0.1)
    try:
        open("/etc/shadow")
    except OSError:
        pass
print("done", flush=True)
"""


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def name(mode: str | None) -> str:
    return mode or "untraced"


LAGS: list[float] = []  # strace's time of a call -> its line read by the controller


async def in_sandbox(mode: str | None, argv: list[str], env: dict[str, str], on_line=None, on_obs=None,
                     seconds: float | None = None, web: MockWeb | None = None,
                     agent_dir: Path | None = None) -> None:
    sb = DockerSandbox(SPEC, run_id=f"bench-tr-{uuid.uuid4().hex[:8]}", tracer=mode, agent_dir=agent_dir)
    tmp = Path(tempfile.mkdtemp())
    (tmp / "control").touch()
    t0 = time.monotonic()
    clock = lambda: time.monotonic() - t0  # noqa: E731
    try:
        host = await sb.prepare()
        if web is not None:
            port = await web.start(host, 0)
            sb.allow_port(port)
            env = {**env, "RUNAWAY_WEB": f"http://web.internal:{port}"}
        await sb.start(argv, env, LEARNER, {}, tmp / "control", clock)

        async def out():
            async for _, line in sb.output():
                if on_line:
                    on_line(line, clock)

        async def obs():
            async for o in sb.observations():
                if on_obs:
                    on_obs(o, clock)

        work = asyncio.gather(out(), obs())
        if seconds is None:
            await asyncio.wait_for(work, 300)
        else:
            await asyncio.sleep(seconds)
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work
    finally:
        if sb._channel is not None:
            LAGS[:] = list(sb._channel.lags)
        await sb.close()
        if web is not None:
            await web.stop()


async def crawl(mode: str | None, seconds: float) -> float:
    gauges: list[tuple[float, int]] = []

    def on_line(line: str, clock) -> None:
        if line.startswith("@runaway ") and '"gauge"' in line:
            obj = json.loads(line[9:])
            gauges.append((clock(), int(obj.get("pages", 0))))

    web = MockWeb(3, 20000, rate_limit=None, crawl_delay=0.0)
    env = {"RUNAWAY_SCENARIO": CRAWL.to_json(), "RUNAWAY_SEED": "3", "RUNAWAY_CPUS": "1"}
    await in_sandbox(mode, ["python3", "-m", "learner"], env, on_line, seconds=seconds, web=web)
    warm = [g for g in gauges if g[0] >= 4.0]  # after the interpreter's start-up
    if len(warm) < 2:
        return 0.0
    return (warm[-1][1] - warm[0][1]) / (warm[-1][0] - warm[0][0])


async def micro(mode: str | None) -> tuple[float, float, float]:
    got: list[tuple[float, float]] = []

    def on_line(line: str, clock) -> None:
        if line.startswith("MICRO"):
            _, a, b, c = line.split()
            got.append((float(a), float(b), float(c)))

    await in_sandbox(mode, ["python3", "-c", MICRO], {}, on_line)
    return got[0] if got else (float("nan"),) * 3


async def latency(mode: str | None, n: int) -> list[float]:
    """Seconds from the blocked call to the default policy's firing verdict, per call."""
    out: list[float] = []

    def verdict_after(ev: Event, t_call: float, clock) -> None:
        eng = Engine(POLICY)  # fresh: the escalation guard latches after one firing
        if any(v.state == "firing" for v in eng.step(ev)):
            out.append(clock() - t_call)

    def on_obs(o, clock) -> None:
        if isinstance(o, Event) and o.kind == "read_sensitive_file":
            verdict_after(o, o.t, clock)  # t: the call's own time, from strace's clock

    def on_line(line: str, clock) -> None:
        ev = parse_line(line, clock())
        if isinstance(ev, Event) and ev.source == "audit" and ev.kind == "read_sensitive_file":
            # From the hook's own wall time, just before the call (the controller ignores
            # it as a clock; here it is what the call's time is measured from).
            wall = json.loads(line.split(" ", 1)[1]).get("wall")
            eng = Engine(POLICY)
            if any(v.state == "firing" for v in eng.step(ev)) and isinstance(wall, (int, float)):
                out.append(time.time() - wall)

    agent = Path(tempfile.mkdtemp())
    agent.chmod(0o755)
    (agent / "probe.py").write_text(PROBE.replace("N", str(n)))
    (agent / "probe.py").chmod(0o644)
    if mode is None:  # untraced: the audit hook is what sees it
        argv = ["python3", "-m", "learner.bootstrap", "--", "probe.py"]
    else:
        argv = ["python3", "probe.py"]
    await in_sandbox(mode, argv, {}, on_line if mode is None else None, on_obs if mode else None,
                     agent_dir=agent)
    return out


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="crawl seconds per round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--probes", type=int, default=100)
    ap.add_argument("--cpus", type=float, default=1.0, help="the sandbox's CPU cap (the tracer runs inside it)")
    ap.add_argument("--parts", default="crawl,micro,latency", help="which figures (comma-separated)")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    global SPEC
    SPEC = SandboxSpec(cpus=args.cpus, memory="512m", pids=256)
    build_image()
    print(f"host: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start; sandbox cap {SPEC.cpus:g} CPU")
    if "crawl" in parts:
        pages: dict[str | None, list[float]] = {m: [] for m in MODES}
        for _ in range(args.rounds):
            for m in MODES:
                pages[m].append(await crawl(m, args.seconds))
        base = statistics.median(pages[None])
        print(f"crawl ({args.rounds} x {args.seconds:g} s, {SPEC.cpus:g} cpu, no rate limit, 4 connections):")
        for m in MODES:
            p = statistics.median(pages[m])
            # Each round runs the modes back to back: its own ratio is the least noisy figure.
            paired = statistics.median(x / u for x, u in zip(pages[m], pages[None]) if u)
            print(f"  {name(m):9} {p:7.1f} pages/s  ({p / base:5.1%} of untraced; round by round "
                  f"{paired:5.1%})  rounds: " + ", ".join(f"{x:.1f}" for x in pages[m]))
    if "micro" in parts:
        print("syscalls in the sandbox (us per call):")
        for m in MODES:
            a, b, c = await micro(m)
            print(f"  {name(m):9} open+close (traced calls) {a * 1e6:7.1f}   getppid (not kept) {b * 1e6:6.2f}"
                  f"   send on a connected socket {c * 1e6:6.2f}")
    if "latency" in parts:
        print(f"syscall to verdict (default policy, {args.probes} blocked opens of /etc/shadow, one per 100 ms):")
        for m in MODES:
            LAGS.clear()
            lat = await latency(m, args.probes)
            if not lat:
                print(f"  {name(m):9} no verdicts")
                continue
            via = "the audit hook's line" if m is None else "the tracer's channel"
            print(f"  {name(m):9} p50 {statistics.median(lat) * 1000:6.1f} ms  p99 {pct(lat, 0.99) * 1000:6.1f} ms  "
                  f"max {max(lat) * 1000:6.1f} ms  (n={len(lat)}, via {via})")
            if LAGS:
                print(f"  {'':9} of which the call to its line read: p50 {statistics.median(LAGS) * 1000:6.1f} ms  "
                      f"p99 {pct(LAGS, 0.99) * 1000:6.1f} ms")
    print(f"host load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    asyncio.run(main())
