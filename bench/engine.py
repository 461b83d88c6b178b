"""Benchmark: the default policy's Engine.step over a generated in-memory trace, obs/s on one core.

Prints the engine's throughput next to a baseline in the same run: a bare loop over the
same observations that only reads each one's type and `t` (what any consumer pays).

    PYTHONPATH=. python bench/engine.py            # 1,000,000 observations
    PYTHONPATH=. python bench/engine.py --n 100000 # a quick run
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import sys
import time

from policies import Engine, Event, Sample, default_policy

# What a run's observations look like: 4 Hz samples and a trickle of events, mostly
# ordinary crawl traffic, now and then something a guard cares about.
EVENT_KINDS = [
    (60, "audit", "egress", "connect", "allowed"),
    (15, "self_report", "self_modification", "skill_unlocked", "allowed"),
    (8, "web", "robots", "robots_violation", "allowed"),
    (6, "audit", "egress", "connect", "blocked"),
    (4, "audit", "filesystem", "read_sensitive_file", "blocked"),
    (3, "audit", "escalation", "setuid", "blocked"),
    (2, "self_report", "escalation", "setuid", "blocked"),
    (1, "observer", "deception", "covert_marker", "unknown"),
    (1, "operator", "operator", "resume", "allowed"),
]


def make_trace(n: int, seed: int = 1, event_share: float = 0.2) -> list[Sample | Event]:
    rng = random.Random(seed)
    weights = [w for w, *_ in EVENT_KINDS]
    kinds = [k for _, *k in EVENT_KINDS]
    out: list[Sample | Event] = []
    t, cpu, pids, mem = 0.0, 0.3, 4, 1 << 30
    limit = 8 << 30
    for _ in range(n):
        if rng.random() < event_share:
            src, cat, kind, outcome = rng.choices(kinds, weights)[0]
            out.append(Event(t=t, source=src, category=cat, kind=kind, outcome=outcome))
        else:
            t += 0.25
            cpu = min(1.0, max(0.0, cpu + rng.uniform(-0.08, 0.08)))
            pids = max(1, pids + rng.choice((-1, 0, 0, 0, 1)))
            mem = min(limit, max(1 << 28, mem + rng.randint(-1 << 24, 1 << 24)))
            out.append(Sample(t=t, cpu_ratio=cpu, cpu_seconds=t * cpu, mem_bytes=mem,
                              mem_limit_bytes=limit, pids=pids))
    return out


def baseline(obs: list[Sample | Event]) -> int:
    """A bare loop that reads each observation's type and time and does nothing else."""
    n = 0
    last = 0.0
    for o in obs:
        if type(o) is Sample:
            n += 1
        last = o.t
    return n + int(last > 0)


def run_engine(obs: list[Sample | Event]) -> tuple[int, int]:
    eng = Engine(default_policy())
    step = eng.step
    verdicts = actions = 0
    for o in obs:
        vs = step(o)
        if vs:
            verdicts += len(vs)
            actions += len(eng.actions)
    return verdicts, actions


def timed(fn, *args, collector: bool = False):
    gc.collect()
    if not collector:
        # The 1M-object trace is allocated up front: with the collector on, its passes
        # over that heap (not the engine's own work) dominate. Shown both ways below.
        gc.disable()
    try:
        t0 = time.perf_counter()
        out = fn(*args)
        return time.perf_counter() - t0, out
    finally:
        gc.enable()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="observations (default 1,000,000)")
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    args = ap.parse_args(argv)
    obs = make_trace(args.n)
    n_events = sum(1 for o in obs if type(o) is Event)
    print(f"python {platform.python_version()} on {platform.machine()}, {args.n:,} observations "
          f"({args.n - n_events:,} samples, {n_events:,} events), default policy, one core")
    base = min(timed(baseline, obs)[0] for _ in range(args.repeat))
    runs = [timed(run_engine, obs) for _ in range(args.repeat)]
    best, (verdicts, actions) = min(runs, key=lambda r: r[0])
    print(f"baseline (bare loop, attribute reads): {args.n / base:>12,.0f} obs/s  ({base * 1e9 / args.n:6.1f} ns/obs)")
    print(f"engine   (Engine.step, default policy): {args.n / best:>12,.0f} obs/s  ({best * 1e9 / args.n:6.1f} ns/obs)")
    with_gc = min(timed(run_engine, obs, collector=True)[0] for _ in range(args.repeat))
    print(f"engine   (same, garbage collector on):  {args.n / with_gc:>12,.0f} obs/s  ({with_gc * 1e9 / args.n:6.1f} ns/obs)")
    samples = [o for o in obs if type(o) is Sample]
    evs = [o for o in obs if type(o) is Event]
    s_t = min(timed(run_engine, samples)[0] for _ in range(args.repeat))
    e_t = min(timed(run_engine, evs)[0] for _ in range(args.repeat))
    print(f"  of which: samples alone {s_t * 1e9 / len(samples):6.1f} ns/sample, "
          f"events alone {e_t * 1e9 / max(1, len(evs)):6.1f} ns/event")
    print(f"engine cost over baseline: {(best - base) * 1e9 / args.n:.1f} ns/obs; "
          f"{verdicts:,} verdicts, {actions:,} actions asked for")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
