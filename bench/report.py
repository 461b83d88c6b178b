"""Benchmark of the exporter and the report: what they cost a run, beside a baseline.

- RunMetrics.observe() per record, beside the bare prometheus_client calls it makes
  (Gauge.set / Counter.inc on pre-labelled children): the exporter's own overhead.
- build_report() on a long synthetic trace (a 10-minute run at 4 Hz), beside only reading
  the trace (read_trace), which any report must do.

    PYTHONPATH=. python bench/report.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge

from policies.model import Event, Record, Sample, TraceWriter, read_trace
from sim.lab.metrics import RunMetrics
from sim.report import build_report
from sim.report.synthetic import novel_like


def long_trace(minutes: float = 10.0) -> list[Record]:
    """The synthetic novel run, stretched: its samples and events repeated to `minutes`."""
    base = novel_like("bench")
    meta, body = base[0], base[1:]
    span = max(r.t for r in body) + 0.25
    out: list[Record] = [meta]
    k = 0
    while (k + 1) * span <= minutes * 60:
        for r in body:
            if isinstance(r, (Sample, Event)):  # verdicts and actions once, not per copy
                out.append(type(r)(**{**{f: getattr(r, f) for f in r.__dataclass_fields__}, "t": r.t + k * span}))
        k += 1
    return out


def bench_observe(records: list[Record], repeat: int = 20) -> tuple[float, float]:
    obs = [r for r in records if isinstance(r, (Sample, Event))]
    m = RunMetrics("bench", "novel")
    t0 = time.perf_counter()
    for _ in range(repeat):
        for r in obs:
            m.observe(r)
    ours = (time.perf_counter() - t0) / (repeat * len(obs))
    reg = CollectorRegistry()
    g = Gauge("g", "g", ["run", "scenario"], registry=reg).labels("bench", "novel")
    c = Counter("c", "c", ["run", "scenario", "a", "b", "k", "o"], registry=reg)
    t0 = time.perf_counter()
    for _ in range(repeat):
        for r in obs:
            if isinstance(r, Sample):  # the five gauge sets and two counter incs a sample makes
                g.set(r.cpu_ratio); g.inc(0); g.set(r.mem_bytes); g.set(r.pids); g.set(1.0)
            else:
                c.labels("bench", "novel", r.source, r.category, r.kind, r.outcome).inc()
    bare = (time.perf_counter() - t0) / (repeat * len(obs))
    return ours, bare


def bench_report(records: list[Record]) -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory() as d:
        with TraceWriter(str(Path(d) / "trace.jsonl")) as w:
            for r in records:
                w.write(r)
        t0 = time.perf_counter()
        n = sum(1 for _ in read_trace(str(Path(d) / "trace.jsonl")))
        parse = time.perf_counter() - t0
        t0 = time.perf_counter()
        build_report(d)
        full = time.perf_counter() - t0
        size = (Path(d) / "report.html").stat().st_size
    assert n == len(records)
    return full, parse, size


def main() -> None:
    records = long_trace(10.0)
    ours, bare = bench_observe(records)
    print(f"observe(): {ours * 1e6:.2f} us/record   bare prometheus_client calls: {bare * 1e6:.2f} us/record"
          f"   ratio {ours / bare:.2f}x")
    full, parse, size = bench_report(records)
    print(f"build_report(): {full:.2f} s for {len(records)} records (10-minute run)   "
          f"read_trace alone: {parse:.2f} s   report.html {size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
