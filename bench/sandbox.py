"""Sandbox benchmark: start time, sampler overhead, escalation event latency, action latency.

Each figure is measured for both backends where it means something, beside a baseline
measured in the same run:

- start: `start()` to the learner's first HTTP request reaching a loopback aiohttp server
  (the image already present); baseline: the same program as a bare subprocess, and for
  Docker a bare `docker run --rm IMAGE true`.
- overhead: the controller's own CPU time while it samples an idle learner at 4 Hz, minus
  the same wait with nothing to watch, as a share of one core.
- event latency: from the learner's escalation attempt (its audit line's `wall` stamp, or
  for the process backend's observer path the moment before it execs a setuid binary) to
  the event arriving in the controller.
- action latency: pause, resume and kill, as the ActionResult reports them.

Targets (issue 5): start <= 1 s, overhead <= 1% of a core, event p99 <= 50 ms,
pause/kill p99 <= 250 ms.

    PYTHONPATH=. python bench/sandbox.py [--backend process|docker|both] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from policies.model import Event, Sample  # noqa: E402
from sandbox import SandboxSpec, docker_available  # noqa: E402
from sim.lab.session import SandboxSession  # noqa: E402

SPEC = SandboxSpec(cpus=1.0, memory="256m", pids=64)

# Bench programs, added to a copy of the learner package so that they run exactly as the
# learner does (python3 -m learner.bootstrap -- -m learner.<name>, audit hook installed).
PROGRAMS = {
    "bench_first_request": """
import os, urllib.request, json
host = json.loads(os.environ.get("RUNAWAY_HOSTS") or "{}").get("web.internal")
url = os.environ["RUNAWAY_WEB"]
if host:  # the process backend: resolve the internal name ourselves
    url = url.replace("web.internal", host)
urllib.request.urlopen(url + "/first", timeout=10).read()
""",
    "bench_idle": """
import time
time.sleep(float(__import__("os").environ.get("BENCH_IDLE_S", "10")))
""",
    "bench_setuid": """
import os, time
n = int(os.environ.get("BENCH_N", "50"))
for i in range(n):
    try:
        os.setuid(0)  # as a non-root uid: EPERM; the audit hook reports it first
    except PermissionError:
        pass
    time.sleep(0.02)
""",
    "bench_setuid_exec": """
import os, sys, time
p = os.path.join(os.environ["RUNAWAY_SCRATCH"], "su-sleep")
for i in range(int(os.environ.get("BENCH_N", "30"))):
    pid = os.fork()
    if pid == 0:
        print(f"exec {os.getpid()} {time.time():.6f}", flush=True)
        os.execv(p, [p, "0.15"])
    os.waitpid(pid, 0)
    time.sleep(0.03)
""",
    "bench_busy": """
while True:
    pass
""",
}


def host_fork_rate(seconds: float) -> float:
    """Processes forked per second on the whole host (from /proc/stat's counter)."""
    def forks() -> int:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("processes "):
                return int(line.split()[1])
        return 0
    a = forks()
    time.sleep(seconds)
    return (forks() - a) / seconds


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    k = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[k]


def summary(values: list[float], unit_scale: float = 1000.0) -> str:
    if not values:
        return "n/a"
    return (f"p50 {pct(values, 50) * unit_scale:.1f} ms, p99 {pct(values, 99) * unit_scale:.1f} ms, "
            f"max {max(values) * unit_scale:.1f} ms (n={len(values)})")


class _BenchWeb:
    """The bench's one-route web as a session serves it (start on the host, stop)."""

    def __init__(self, bench: "Bench") -> None:
        self.bench = bench
        self.runner: web.AppRunner | None = None
        self.hits: asyncio.Queue[float] = asyncio.Queue()

    async def start(self, host: str, port: int = 0) -> int:
        self.runner, bound, self.hits = await self.bench.web(host)
        return bound

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


class Bench:
    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.tmp = Path(tempfile.mkdtemp(prefix="runaway-bench-"))
        self.learner = self.tmp / "learner"
        shutil.copytree(ROOT / "sim" / "learner", self.learner,
                        ignore=shutil.ignore_patterns("__pycache__"))
        for name, code in PROGRAMS.items():
            (self.learner / f"{name}.py").write_text(code.lstrip())
        os.chmod(self.tmp, 0o755)
        self.control = self.tmp / "control"
        self.control.touch()
        self.results: dict[str, Any] = {}

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    async def web(self, host: str) -> tuple[web.AppRunner, int, asyncio.Queue[float]]:
        """A real aiohttp server on the sandbox's host address; each request's arrival time."""
        hits: asyncio.Queue[float] = asyncio.Queue()

        async def handle(request: web.Request) -> web.Response:
            hits.put_nowait(time.monotonic())
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_get("/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return runner, port, hits

    async def sandbox(self, backend: str, program: str, env: dict[str, str] | None = None,
                      spec: SandboxSpec = SPEC, **kwargs: Any):
        """A started sandbox running learner.<program> (no web), and its start time."""
        if backend == "process":
            kwargs.setdefault("python_modules", ())  # the bench programs are stdlib only
        session = SandboxSession.open(spec, backend, run_id=f"bench-{os.getpid()}-{time.monotonic_ns() % 10**8}",
                                      **kwargs)
        await session.prepare()
        t0 = time.monotonic()
        await session.start(["python3", "-m", "learner.bootstrap", "--", "-m", f"learner.{program}"],
                            {"RUNAWAY_SEED": "0", **(env or {})}, self.control, lambda: time.monotonic() - t0,
                            learner_dir=self.learner)
        return session.sandbox, t0

    # -- start ---------------------------------------------------------------------------

    async def start_time(self, backend: str, n: int) -> None:
        times: list[float] = []
        prep: list[float] = []
        for _ in range(n):
            extra: dict[str, Any] = {"python_modules": ()} if backend == "process" else {}
            session = SandboxSession.open(SPEC, backend, run_id=f"bench-start-{os.getpid()}-{len(times)}", **extra)
            try:
                tp = time.monotonic()
                await session.prepare()
                prep.append(time.monotonic() - tp)
                site = _BenchWeb(self)
                await session.serve(site)
                t0 = time.monotonic()
                await session.start(["python3", "-m", "learner.bootstrap", "--", "-m", "learner.bench_first_request"],
                                    session.web_env(), self.control, lambda: time.monotonic() - t0,
                                    learner_dir=self.learner)
                hit = await asyncio.wait_for(site.hits.get(), 30)
                times.append(hit - t0)
            finally:
                await session.close()
        self.results[f"{backend}.start_s"] = times
        self.results[f"{backend}.prepare_s"] = prep
        print(f"  {backend:8} start -> first request: {summary(times)}")
        print(f"  {backend:8} prepare (network, before the web starts): {summary(prep)}")

    async def start_baselines(self, n: int, docker: bool) -> None:
        runner, port, hits = await self.web("127.0.0.1")
        times = []
        try:
            for _ in range(n):
                t0 = time.monotonic()
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "learner.bootstrap", "--", "-m", "learner.bench_first_request",
                    env={"PYTHONPATH": str(self.tmp), "RUNAWAY_WEB": f"http://127.0.0.1:{port}",
                         "PATH": os.environ.get("PATH", "")})
                hit = await asyncio.wait_for(hits.get(), 30)
                times.append(hit - t0)
                await proc.wait()
        finally:
            await runner.cleanup()
        self.results["baseline.subprocess_start_s"] = times
        print(f"  baseline bare subprocess -> first request: {summary(times)}")
        if docker:
            from sandbox.image import image_tag

            tag = image_tag()
            times = []
            for _ in range(n):
                t0 = time.monotonic()
                subprocess.run(["docker", "run", "--rm", "--label", f"runaway.run=bench-{os.getpid()}",
                                "--network", "none", tag, "true"], check=True, capture_output=True)
                times.append(time.monotonic() - t0)
            self.results["baseline.docker_run_true_s"] = times
            print(f"  baseline `docker run --rm {tag} true`: {summary(times)}")

    # -- overhead ------------------------------------------------------------------------

    async def overhead(self, backend: str, seconds: float, label: str = "", **kwargs: Any) -> None:
        # Baseline: the same event loop waiting the same time with nothing to watch.
        c0, w0 = time.process_time(), time.monotonic()
        await asyncio.sleep(seconds)
        base = (time.process_time() - c0) / (time.monotonic() - w0)
        sb, _ = await self.sandbox(backend, "bench_idle", {"BENCH_IDLE_S": str(seconds + 30)}, **kwargs)
        n = 0
        try:
            await asyncio.sleep(1.0)  # past the start
            c0, w0 = time.process_time(), time.monotonic()

            async def drain() -> None:
                nonlocal n
                async for ob in sb.observations():
                    n += isinstance(ob, Sample)

            task = asyncio.create_task(drain())
            await asyncio.sleep(seconds)
            used = (time.process_time() - c0) / (time.monotonic() - w0)
            task.cancel()
        finally:
            await sb.close()
        over = used - base
        self.results[f"{backend}{label}.sampler_overhead_core"] = over
        print(f"  {backend + label:8} sampler overhead at 4 Hz: {over * 100:.2f}% of a core "
              f"(controller {used * 100:.2f}%, idle baseline {base * 100:.2f}%)")

    # -- event latency -------------------------------------------------------------------

    async def audit_latency(self, backend: str, n: int) -> None:
        sb, _ = await self.sandbox(backend, "bench_setuid", {"BENCH_N": str(n)})
        lat: list[float] = []
        try:
            async for _, line in sb.output():
                if line.startswith("@runaway "):
                    now = time.time()
                    obj = json.loads(line[9:])
                    if obj.get("kind") == "setuid" and "wall" in obj:
                        lat.append(now - float(obj["wall"]))
        finally:
            await sb.close()
        self.results[f"{backend}.audit_event_latency_s"] = lat
        print(f"  {backend:8} escalation (audit line) -> controller: {summary(lat)}")

    async def observer_latency(self, n: int) -> None:
        """Process backend, as root: a setuid-root binary exec'd without no_new_privs."""
        if os.geteuid() != 0:
            print("  process  observer escalation latency: skipped (needs root)")
            return
        spec = SandboxSpec(cpus=1.0, memory="256m", pids=64, no_new_privileges=False)
        sb, t0 = await self.sandbox("process", "bench_setuid_exec", {"BENCH_N": str(n)}, spec=spec)
        target = sb.scratch / "su-sleep"  # type: ignore[attr-defined]
        shutil.copy("/bin/sleep", target)
        os.chmod(target, 0o4755)
        execs: dict[int, float] = {}
        seen: dict[int, float] = {}

        async def out() -> None:
            async for _, line in sb.output():
                if line.startswith("exec "):
                    _, pid, wall = line.split()
                    execs[int(pid)] = float(wall)

        async def obs() -> None:
            async for ob in sb.observations():
                if isinstance(ob, Event) and ob.kind == "uid_change":
                    seen.setdefault(int(ob.detail["pid"]), time.time())

        try:
            await asyncio.wait_for(asyncio.gather(out(), obs()), 120)
        finally:
            await sb.close()
        lat = [seen[p] - execs[p] for p in execs if p in seen]
        missed = len([p for p in execs if p not in seen])
        self.results["process.observer_event_latency_s"] = lat
        self.results["process.observer_missed"] = missed
        print(f"  process  escalation (setuid exec) -> observer event: {summary(lat)}; missed {missed}")

    # -- actions -------------------------------------------------------------------------

    async def actions(self, backend: str, n: int) -> None:
        sb, _ = await self.sandbox(backend, "bench_busy")
        pause: list[float] = []
        resume: list[float] = []
        try:
            await asyncio.sleep(0.5)
            for _ in range(n):
                r = await sb.pause()
                assert r.ok, r
                pause.append(r.latency_s)
                await asyncio.sleep(0.05)
                r = await sb.resume()
                assert r.ok, r
                resume.append(r.latency_s)
                await asyncio.sleep(0.05)
        finally:
            await sb.close()
        kill: list[float] = []
        for i in range(max(3, n // 4)):
            sb, _ = await self.sandbox(backend, "bench_busy")
            try:
                await asyncio.sleep(0.3)
                r = await sb.kill(self.tmp / f"evidence-{backend}-{i}")
                assert r.ok, r
                kill.append(r.latency_s)
            finally:
                await sb.close()
        self.results[f"{backend}.pause_s"] = pause
        self.results[f"{backend}.resume_s"] = resume
        self.results[f"{backend}.kill_s"] = kill
        print(f"  {backend:8} pause:  {summary(pause)}")
        print(f"  {backend:8} resume: {summary(resume)}")
        print(f"  {backend:8} kill (evidence included): {summary(kill)}")


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=["process", "docker", "both"], default="both")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    ap.add_argument("--json", metavar="FILE", help="also write every measurement here")
    args = ap.parse_args()
    backends = ["process", "docker"] if args.backend == "both" else [args.backend]
    if "docker" in backends:
        why = docker_available()
        if why is not None:
            print(f"docker: skipped ({why})")
            backends.remove("docker")
    reps = 5 if args.quick else 20
    b = Bench(args.quick)
    print(f"runaway sandbox benchmark: {os.cpu_count()} CPUs, backends {', '.join(backends)}")
    try:
        print("start (image present) -> first learner request")
        await b.start_baselines(reps if not args.quick else 3, "docker" in backends)
        for be in backends:
            await b.start_time(be, reps if be == "process" else max(3, reps // 2))
        secs = 5.0 if args.quick else 15.0
        print("sampler CPU overhead (4 Hz)")
        for be in backends:
            if be == "process":
                # Three ways to watch identities between samples: kernel process events
                # (default as root), none (a gain is seen at the next sample), 20 Hz polling.
                await b.overhead(be, secs, "+events")
                await b.overhead(be, secs, "+samples-only", proc_events=False, watch_hz=4.0)
                await b.overhead(be, secs, "+poll20Hz", proc_events=False, watch_hz=20.0)
                forks = host_fork_rate(2.0)
                print(f"  (this host forked {forks:.0f} processes/s during the last 2 s: the "
                      "events cost grows with the host's fork/exec rate)")
            else:
                await b.overhead(be, secs)
        print("escalation attempt -> event outside")
        for be in backends:
            await b.audit_latency(be, 20 if args.quick else 100)
        if "process" in backends:
            await b.observer_latency(10 if args.quick else 40)
        print("action latency")
        for be in backends:
            await b.actions(be, reps)
    finally:
        b.close()
    if args.json:
        Path(args.json).write_text(json.dumps(b.results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
