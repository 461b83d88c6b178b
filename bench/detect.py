"""Benchmark: time from CPU pegging to a verdict, runaway's engine against a real Prometheus.

One run, one pegging learner (the `greedy` scenario on Docker), under the default policy
with its CPU guards set to `alert` (a throttle would end the pegging and with it the race).
While it runs, two real Prometheus servers (Debian's `prometheus`) scrape the run's
exporter and evaluate what `runaway rules` exports for that policy:

- at a common production setting: scrape and evaluation every 15 s;
- at runaway's own rate: scrape and evaluation every 250 ms (the 4 Hz sampler).

Onset is the first sample, at or after the learner starts its CPU burners, whose
`cpu_demand` is at least 1 (a cap's worth of runnable work). For each of the three, the
figure is the time from onset to the first moment cpu-pegged is firing: runaway's firing
verdict in the trace; for Prometheus, the first evaluation at which
`ALERTS{alertname="cpu-pegged", alertstate="firing"}` exists.

    python3 bench/detect.py                       # ci profile, 100 s
    python3 bench/detect.py --profile laptop --duration 120
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from policies import default_policy_path, read_trace  # noqa: E402
from sim.lab.promserver import PrometheusError, free_port, local_prometheus  # noqa: E402
from policies.model import Event, Sample, Verdict  # noqa: E402

GUARD = "cpu-pegged"
SETTINGS = {"production (15 s)": "15s", "runaway's rate (250 ms)": "250ms"}


@contextlib.contextmanager
def prometheus(work: Path, name: str, interval: str, target: int, rules: Path) -> Iterator[str]:
    """A Prometheus on a free loopback port scraping 127.0.0.1:target and evaluating `rules`
    every `interval`; yields its base URL and always stops it."""
    try:
        with local_prometheus(work / name, target, interval=interval, rule_files=[rules], ready_s=60) as base:
            yield base
    except PrometheusError as e:
        sys.exit(f"bench/detect.py: {e} (apt-get install prometheus)")


def first_firing(base: str, start: float, end: float) -> float | None:
    """The wall time of the first evaluation with the guard's alert firing, or None."""
    q = urllib.parse.urlencode({"query": f'ALERTS{{alertname="{GUARD}",alertstate="firing"}}',
                                "start": f"{start:.3f}", "end": f"{end:.3f}", "step": "0.25"})
    with urllib.request.urlopen(f"{base}/api/v1/query_range?{q}", timeout=10) as r:
        data = json.load(r)["data"]["result"]
    times = [float(ts) for series in data for ts, _ in series["values"]]
    return min(times) if times else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="ci", choices=["ci", "laptop"])
    ap.add_argument("--duration", type=float, default=100.0, help="seconds the learner pegs under watch")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="where the run and the Prometheus data go")
    args = ap.parse_args()

    from sim.lab.runner import Experiment, RunConfig

    work = args.out or Path(tempfile.mkdtemp(prefix="runaway-bench-detect-"))
    work.mkdir(parents=True, exist_ok=True)
    text = Path(default_policy_path()).read_text()
    policy = work / "policy.yaml"
    policy.write_text(text.replace("action: throttle", "action: alert"))
    rules = {}
    for label, interval in SETTINGS.items():
        rules[label] = work / f"rules-{interval}.yml"
        p = subprocess.run([sys.executable, "-m", "sim", "rules", str(policy), "--interval", interval,
                            "-o", str(rules[label])], cwd=ROOT, capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(p.stderr)
    port = free_port()
    cfg = RunConfig(scenario="greedy", backend="docker", policy=str(policy), profile=args.profile,
                    duration=args.duration, seed=args.seed, out=work / "run", metrics_port=port, live=False)
    with contextlib.ExitStack() as stack:
        bases = {label: stack.enter_context(prometheus(work, f"prom-{interval}", interval, port, rules[label]))
                 for label, interval in SETTINGS.items()}
        exp = Experiment(cfg, handle_signals=False)
        res = asyncio.run(exp.run())
        wall0 = exp._wall0
        time.sleep(1.0)  # the last evaluations land
        prom = {label: first_firing(base, wall0, wall0 + args.duration + 30) for label, base in bases.items()}

    records = list(read_trace(str(res.out / "trace.jsonl")))
    burn = next((r.t for r in records if isinstance(r, Event) and r.kind == "cpu_workers"), 0.0)
    onset = next((r.t for r in records if isinstance(r, Sample) and r.t >= burn
                  and (r.value("cpu_demand") or 0) >= 1.0), None)
    verdict = next((r.t for r in records if isinstance(r, Verdict) and r.guard == GUARD and r.state == "firing"),
                   None)
    ratios = [r.cpu_ratio for r in records if isinstance(r, Sample) and onset is not None and r.t >= onset]
    end = max(r.t for r in records)

    def since(t: float | None) -> str:
        if t is None or onset is None:
            return f"never (watched {end - (onset or 0):.0f} s after onset)"
        return f"{t - onset:6.1f} s"

    print(f"bench/detect.py: greedy on Docker, profile {args.profile}, seed {args.seed}, "
          f"{len(ratios)} samples after onset, median cpu_ratio {sorted(ratios)[len(ratios) // 2] if ratios else 0:.2f}")
    print(f"onset (first cpu_demand >= 1 after the burners started): t = {onset}")
    print(f"  runaway engine (4 Hz samples)          {since(verdict)}")
    for label in SETTINGS:
        t = prom[label]
        print(f"  Prometheus, {label:24s}   {since(None if t is None else t - wall0)}")
    print(f"run dir: {res.out}")


if __name__ == "__main__":
    main()
