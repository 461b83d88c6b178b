"""Benchmark of the Docker sandbox's own costs: start, observer overhead, event and action latency.

Each figure is printed beside a baseline measured in the same run:
- start: prepare() + start() to the learner's first output line, vs. a bare container
  (same image, no network, no hardening) started through the SDK;
- observer CPU: the controller's CPU use while observing an idle learner (samples at
  4 Hz, identity checks at 30 Hz), vs. the same time with the observer not running;
- escalation latency: from a setuid-root exec inside (its wall time, printed just before
  the exec) to the observer's uid_change event (stamped with the same wall clock);
- action latency: throttle, pause, resume, disconnect, kill (with evidence) as measured
  by the actions themselves, vs. the raw SDK call for pause.

Every sandbox is set up the way a run sets it up, through the one sandbox session
(sim/lab/session.py: prepare -> web -> allow -> start -> close).

Usage: PYTHONPATH=. python bench/docker_sandbox.py [--rounds 10]
Needs root, a Docker daemon and the learner image (built if missing).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import docker  # noqa: E402

from sandbox import PROFILES, admit  # noqa: E402
from sandbox.backends.docker import DockerSandbox  # noqa: E402
from sandbox.image import build_image  # noqa: E402
from sandbox.spec import SandboxSpec  # noqa: E402

from sim.lab.session import SandboxSession  # noqa: E402

WEB_PORT = 8080  # the port the start figure opens to the learner, as a run opens its web's


class _PortOnly:
    """A web that serves nothing and says it listens on WEB_PORT: the session opens that
    port to the learner (the firewall rule a run adds), and the start figure stays the
    sandbox's own, without a web server's start in it."""

    async def start(self, host: str, port: int = 0) -> int:
        return WEB_PORT

    async def stop(self) -> None:
        pass


def session(spec: SandboxSpec = PROFILES["ci"]) -> SandboxSession:
    return SandboxSession.open(spec, "docker", run_id=f"bench-{uuid.uuid4().hex[:8]}")


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def fmt(xs: list[float]) -> str:
    return f"p50 {statistics.median(xs) * 1000:7.1f} ms  p99 {pct(xs, 0.99) * 1000:7.1f} ms  (n={len(xs)})"


async def first_line(sb: DockerSandbox) -> None:
    async for _ in sb.output():
        return


async def bench_start(tmp: Path, rounds: int, image: str) -> tuple[list[float], list[float]]:
    ours, bare = [], []
    client = docker.from_env()
    for _ in range(rounds):
        s = session()
        rid = s.sandbox.run_id
        t0 = time.monotonic()
        try:
            await s.prepare()
            await s.serve(_PortOnly())
            await s.start(["python3", "-c", "print('up', flush=True)"], {}, tmp / "ctl" / "control",
                          time.monotonic)
            await first_line(s.sandbox)
            ours.append(time.monotonic() - t0)
        finally:
            await s.close()
        t0 = time.monotonic()
        c = client.containers.run(image, ["python3", "-c", "print('up', flush=True)"], detach=True,
                                  network_mode="none", labels={"runaway.run": rid})
        try:
            for _ in c.logs(stream=True, follow=True):
                break
            bare.append(time.monotonic() - t0)
        finally:
            c.remove(force=True)
    client.close()
    return ours, bare


async def bench_overhead(tmp: Path, seconds: float) -> tuple[float, float]:
    def cpu() -> float:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return ru.ru_utime + ru.ru_stime

    s = session()
    sb = s.sandbox
    try:
        await s.prepare()
        await s.start(["sleep", str(seconds * 2 + 5)], {}, tmp / "ctl" / "control", time.monotonic)
        # Baseline: the monitor paused (its task cancelled) for `seconds`.
        monitor = sb._tasks[0]
        await asyncio.sleep(1.0)
        c0, w0 = cpu(), time.monotonic()
        n = 0

        async def drain() -> None:
            nonlocal n
            async for _ in sb.observations():
                n += 1

        drainer = asyncio.ensure_future(drain())
        await asyncio.sleep(seconds)
        observed = (cpu() - c0) / (time.monotonic() - w0)
        monitor.cancel()
        await asyncio.sleep(0.1)
        c0, w0 = cpu(), time.monotonic()
        await asyncio.sleep(seconds)
        idle = (cpu() - c0) / (time.monotonic() - w0)
        drainer.cancel()
    finally:
        await s.close()
    return observed, idle


async def bench_escalation(tmp: Path, rounds: int) -> list[float]:
    d = tmp / "suid"
    d.mkdir(exist_ok=True)
    binary = d / "susleep"
    shutil.copy(shutil.which("sleep"), binary)
    os.chown(binary, 0, 0)
    os.chmod(binary, 0o4755)
    code = ("import os, time\ntime.sleep(0.3)\nprint(repr(time.time()), flush=True)\n"
            "os.execv('/opt/runaway/learner/susleep', ['susleep', '0.3'])\n")
    spec = PROFILES["ci"].with_overrides({"no_new_privileges": False})
    admit(spec, unsafe=True)  # unsafe on purpose: the escape must really happen
    out = []
    for _ in range(rounds):
        s = session(spec)
        try:
            await s.prepare()
            await s.start(["python3", "-c", code], {}, tmp / "ctl" / "control", time.time, learner_dir=d)
            lines = [line async for _, line in s.sandbox.output()]
            evs = [o async for o in s.sandbox.observations() if getattr(o, "kind", "") == "uid_change"]
            if evs and lines:
                out.append(evs[0].t - float(lines[0]))
        finally:
            await s.close()
    return out


async def bench_actions(tmp: Path, rounds: int) -> dict[str, list[float]]:
    res: dict[str, list[float]] = {k: [] for k in ("throttle", "pause", "resume", "disconnect", "kill",
                                                   "baseline: raw SDK pause")}
    code = "import time\nwhile True: time.sleep(0.01)\n"
    for i in range(rounds):
        s = session()
        sb = s.sandbox
        try:
            await s.prepare()
            await s.start(["python3", "-c", code], {}, tmp / "ctl" / "control", time.monotonic)
            await asyncio.sleep(0.3)
            for name, call in (("throttle", lambda: sb.throttle(0.25)), ("pause", sb.pause),
                               ("resume", sb.resume), ("disconnect", sb.disconnect)):
                r = await call()
                assert r.ok, (name, r)
                res[name].append(r.latency_s)
            t0 = time.monotonic()
            await asyncio.to_thread(sb.container.pause)
            res["baseline: raw SDK pause"].append(time.monotonic() - t0)
            await asyncio.to_thread(sb.container.unpause)
            r = await sb.kill(tmp / f"evidence-{i}")
            assert r.ok, r
            res["kill"].append(r.latency_s)
        finally:
            await s.close()
    return res


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=10.0, help="observer overhead window")
    args = ap.parse_args()
    t0 = time.monotonic()
    img = build_image()
    print(f"image: {img.tag} {img.how} in {img.seconds:.1f}s, {img.size_bytes / 1e6:.0f} MB")
    tmp = Path(tempfile.mkdtemp(prefix="runaway-bench-"))
    try:
        ours, bare = await bench_start(tmp, args.rounds, img.tag)
        print(f"start to first line, sandbox:        {fmt(ours)}")
        print(f"start to first line, bare container: {fmt(bare)}")
        observed, idle = await bench_overhead(tmp, args.seconds)
        print(f"observer CPU: {observed * 100:.2f}% of a core (baseline, observer stopped: {idle * 100:.2f}%)")
        lat = await bench_escalation(tmp, args.rounds)
        print(f"escalation (setuid exec) to event:   {fmt(lat) if lat else 'no events!'}")
        for name, xs in (await bench_actions(tmp, args.rounds)).items():
            print(f"action {name:24s} {fmt(xs)}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"total {time.monotonic() - t0:.0f}s")


if __name__ == "__main__":
    asyncio.run(main())
