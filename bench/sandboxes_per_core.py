"""How many concurrent sandboxes per core one host can watch well: the figure a cluster
is sized from (docs/scale.md).

For N = 1, 2, 4, ... concurrent `greedy` runs (it pegs its CPU cap after ~2 s) on the
`ci` profile (0.5 CPU each), Docker backend, run as one local sweep, it reports per round:
- the sampler's rate per sandbox (it should hold 4 Hz) and its worst gap between samples;
- detection delay: when cpu-pegged fired, minus when it should have (the first sample of
  the pegged streak plus the guard's `for`); one sample interval (0.25 s) is ideal;
- how many runs were detected at all (an oversubscribed host cannot give every sandbox
  its cap, so a guard measuring against the cap may never see it pegged);
- the throttle's latency (verdict to effect), as the runner measured it;
- what watching costs beside the sandboxes' own caps: CPU seconds used by this process
  (runner, mock web, observer) and by dockerd, containerd and the container shims, per
  sandbox-second. This one does not depend on what else the host runs.
N = 1 is the baseline, measured in the same run.

Usage: PYTHONPATH=. python bench/sandboxes_per_core.py [--counts 1,2,4,6,8] [--duration 45]
Needs root, a Docker daemon and the learner image (`runaway image build`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from policies import load_policy  # noqa: E402
from policies.model import Action, Sample, Verdict, read_trace  # noqa: E402
from sim.lab.runner import DEFAULT_POLICY  # noqa: E402
from sim.lab.sweep import live_sweep  # noqa: E402

GUARD = "cpu-pegged"


def _guard(name: str):  # type: ignore[no-untyped-def]
    return next(g for g in load_policy(str(DEFAULT_POLICY)).guards if g.name == name)


def measure(run_dir: Path, g) -> dict[str, float | None]:  # type: ignore[no-untyped-def]
    recs = list(read_trace(str(run_dir / "trace.jsonl")))
    samples = [r for r in recs if isinstance(r, Sample)]
    ts = [s.t for s in samples]
    gaps = [b - a for a, b in zip(ts, ts[1:])]
    span = ts[-1] - ts[0] if len(ts) > 1 else 0.0
    fired = next((v.t for v in recs if isinstance(v, Verdict) and v.guard == GUARD and v.state == "firing"), None)
    delay = None
    if fired is not None:
        # When the guard's own condition (its signal, averaged over its window) began to
        # hold for good: it could have fired `for` seconds after that.
        streak = None
        over = g.over_s or 0.0
        for i, s in enumerate(samples):
            if s.t > fired:
                break
            window = [x.value(g.signal) for x in samples[:i + 1] if x.t > s.t - over or x is s]
            vals = [v for v in window if v is not None]
            if vals and sum(vals) / len(vals) > g.threshold:
                streak = s.t if streak is None else streak
            else:
                streak = None
        delay = fired - (streak + g.for_s) if streak is not None else None
    throttle = next((a.latency_s for a in recs if isinstance(a, Action) and a.action == "throttle"), None)
    return {"hz": (len(ts) - 1) / span if span else 0.0, "max_gap": max(gaps) if gaps else None,
            "delay": delay, "throttle": throttle}


def _daemon_cpu() -> float:
    """CPU seconds used so far by Docker's own processes (dockerd, containerd, shims)."""
    import psutil

    total = 0.0
    for p in psutil.process_iter(["name"]):
        if p.info["name"] in ("dockerd", "containerd") or (p.info["name"] or "").startswith("containerd-shim"):
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
    return total


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _med(xs: list[float | None]) -> str:
    xs = [x for x in xs if x is not None]
    return f"{statistics.median(xs):.3f}" if xs else "-"


def _max(xs: list[float | None]) -> str:
    xs = [x for x in xs if x is not None]
    return f"{max(xs):.3f}" if xs else "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", default="1,2,4,6,8")
    ap.add_argument("--duration", type=float, default=45.0,
                    help="seconds per run: the guard's `for` (20 s) after greedy's start, with room to spare")
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0))
    g = _guard(GUARD)
    print(f"host: {cores} cores; profile ci (0.5 CPU each); greedy for {args.duration:g} s; "
          f"guard {GUARD} ({g.aggregate or ''}({g.signal}[{g.over_s or 0:g}s]) above {g.threshold}, for {g.for_s:g} s)")
    print(f"{'sandboxes':>9} {'per core':>8} {'Hz (min)':>9} {'Hz (med)':>9} {'max gap s':>9} "
          f"{'detected':>8} {'delay med s':>11} {'delay max s':>11} {'throttle med s':>14} {'watch CPU/s':>11}  host load (1 min)")
    for n in [int(x) for x in args.counts.split(",")]:
        with tempfile.TemporaryDirectory(prefix="bench-spc-") as tmp:
            t0, own0, dock0 = time.monotonic(), _own_cpu(), _daemon_cpu()
            cells = asyncio.run(live_sweep(["greedy"], [None], list(range(n)), out=Path(tmp), duration=args.duration,
                                           profile="ci", backend="docker", parallel=n))
            wall = time.monotonic() - t0
            watch = (_own_cpu() - own0 + _daemon_cpu() - dock0) / (n * args.duration)
            ms = [measure(Path(c.run_dir), g) for c in cells]
        hz = [m["hz"] for m in ms]
        print(f"{n:>9} {n / cores:>8.1f} {min(hz):>9.2f} {statistics.median(hz):>9.2f} "
              f"{_max([m['max_gap'] for m in ms]):>9} {sum(m['delay'] is not None for m in ms):>5}/{n:<2} "
              f"{_med([m['delay'] for m in ms]):>11} {_max([m['delay'] for m in ms]):>11} "
              f"{_med([m['throttle'] for m in ms]):>14} {watch:>11.3f}  {os.getloadavg()[0]:.1f}   ({wall:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
