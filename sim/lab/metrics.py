"""The run's Prometheus exporter: trace records in, the `runaway_*` metrics of docs/internals.md out.

Every metric carries the labels `run` and `scenario`. The runner feeds each record it
writes to the trace through `observe()`, so /metrics and trace.jsonl tell the same story;
`serve()` exposes the registry on loopback (127.0.0.1 unless told otherwise, so the sandbox,
which only reaches the mock web, cannot read it).

>>> from policies.model import Sample
>>> m = RunMetrics("r1", "novel")
>>> m.observe(Sample(t=1.0, cpu_ratio=0.5, cpu_seconds=2.0, extra={"pages": 7}))
>>> m.registry.get_sample_value("runaway_learner_pages_total", {"run": "r1", "scenario": "novel"})
7.0
"""

from __future__ import annotations

import threading
from typing import Mapping
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from policies.errors import RunawayError
from policies.model import Action, Event, Meta, Record, Sample, Verdict
from policies.promql import SIGNAL_METRICS  # the one signal -> metric table (re-exported here)

# A port for users who want a fixed address to scrape (grafana/prometheus.yml uses it).
DEFAULT_METRICS_PORT = 9464

# Every metric family this module exports, with its extra labels (besides run, scenario).
# `runaway_web_requests_total{route,status}` is the mock web's: the runner hands
# `RunMetrics.registry` to MockWeb so it lands on the same /metrics page.
EXPORTED: Mapping[str, tuple[str, ...]] = {
    "runaway_sandbox_cpu_ratio": (),
    "runaway_sandbox_cpu_demand_ratio": (),
    "runaway_sandbox_cpu_seconds_total": (),
    "runaway_sandbox_memory_bytes": (),
    "runaway_sandbox_memory_limit_bytes": (),
    "runaway_sandbox_memory_ratio": (),
    "runaway_sandbox_pids_ratio": (),
    "runaway_sandbox_pids": (),
    "runaway_events_total": ("source", "category", "kind", "outcome"),
    "runaway_guard_firing": ("guard",),
    "runaway_guard_verdicts_total": ("guard", "state", "action"),
    "runaway_actions_total": ("action", "ok"),
    "runaway_learner_pages_total": (),
    "runaway_learner_bits_per_char": (),
}
WEB_METRICS: Mapping[str, tuple[str, ...]] = {"runaway_web_requests_total": ("route", "status")}


_BASE = ("run", "scenario")


def _counter_name(name: str) -> str:
    # prometheus_client appends `_total` to counters itself.
    return name.removesuffix("_total")


class _Cumulative:
    """Feeds a Counter from a cumulative reading (CPU seconds, pages), so it never goes
    down: a reading below the last one means the source restarted, and counts from zero."""

    __slots__ = ("_child", "_last")

    def __init__(self, child: object) -> None:
        self._child = child
        self._last = 0.0

    def update(self, value: float) -> None:
        delta = value - self._last if value >= self._last else value
        self._last = value
        if delta > 0:
            self._child.inc(delta)  # type: ignore[attr-defined]


class RunMetrics:
    """The metrics of one run, in their own registry (a fresh one unless given).

    >>> m = RunMetrics("r1", "benign")
    >>> port = m.serve(port=0)   # http://127.0.0.1:<port>/metrics
    >>> m.stop()
    """

    def __init__(self, run: str, scenario: str, registry: CollectorRegistry | None = None) -> None:
        self.run = run
        self.scenario = scenario
        self.registry = registry if registry is not None else CollectorRegistry()
        self.labels = {"run": run, "scenario": scenario}
        r = self.registry
        self._cpu_ratio = Gauge(SIGNAL_METRICS["cpu_ratio"],
                                "CPU used over the last interval as a fraction of the sandbox's CPU cap (1 = pegged)",
                                _BASE, registry=r)
        self._cpu_demand = Gauge(SIGNAL_METRICS["cpu_demand"],
                                 "CPU the sandbox's threads ran or waited for over the last interval, as a "
                                 "fraction of its CPU cap (1 = enough runnable work to fill the cap)",
                                 _BASE, registry=r)
        cpu_seconds = Counter(_counter_name(SIGNAL_METRICS["cpu_seconds"]),
                              "CPU seconds used by the sandbox since it started", _BASE, registry=r)
        self._mem = Gauge(SIGNAL_METRICS["mem_bytes"], "Memory used by the sandbox, in bytes", _BASE, registry=r)
        self._mem_limit = Gauge(SIGNAL_METRICS["mem_limit_bytes"], "The sandbox's memory limit, in bytes",
                                _BASE, registry=r)
        self._mem_ratio = Gauge(SIGNAL_METRICS["mem_ratio"],
                                "Memory used as a fraction of the sandbox's limit (the policies' mem_ratio)",
                                _BASE, registry=r)
        self._pids = Gauge(SIGNAL_METRICS["pids"], "Processes and threads in the sandbox", _BASE, registry=r)
        self._pids_ratio = Gauge(SIGNAL_METRICS["pids_ratio"],
                                 "Processes and threads as a fraction of the sandbox's pids cap (the policies' pids_ratio)",
                                 _BASE, registry=r)
        self._events = Counter(_counter_name("runaway_events_total"),
                               "Events seen, by who saw them, category, kind and outcome",
                               _BASE + EXPORTED["runaway_events_total"], registry=r)
        self._firing = Gauge("runaway_guard_firing", "1 while the guard is firing, else 0",
                             _BASE + ("guard",), registry=r)
        self._verdicts = Counter(_counter_name("runaway_guard_verdicts_total"),
                                 "Guard state changes (pending, firing, resolved) and the action asked for",
                                 _BASE + EXPORTED["runaway_guard_verdicts_total"], registry=r)
        self._actions = Counter(_counter_name("runaway_actions_total"),
                                "Containment actions applied to the sandbox, by action and whether it worked",
                                _BASE + ("action", "ok"), registry=r)
        pages = Counter(_counter_name(SIGNAL_METRICS["pages"]), "Pages the learner has crawled",
                        _BASE, registry=r)
        self._bpc = Gauge(SIGNAL_METRICS["bits_per_char"],
                          "The learner's compression of new pages before learning them (falls as it learns)",
                          _BASE, registry=r)
        # Counters start at 0 so a dashboard shows the run from its first scrape.
        self._cpu_seconds = _Cumulative(cpu_seconds.labels(run, scenario))
        self._pages = _Cumulative(pages.labels(run, scenario))
        # Every action a guard can ask for starts at 0, so "no action yet" shows as 0 and a
        # kill in the run's last second is still an increase Prometheus can see.
        for action in ("throttle", "pause", "kill", "disconnect"):
            for ok in ("true", "false"):
                self._actions.labels(run, scenario, action, ok)
        # Labelled children, looked up once: `.labels()` takes a lock and builds a tuple
        # each call, four times the cost of the update itself (bench/report.py).
        self._gauges: tuple | None = None
        self._event_children: dict[tuple[str, str, str, str], object] = {}
        self._children: dict[int, Gauge] = {}
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def _child(self, gauge: Gauge) -> Gauge:
        child = self._children.get(id(gauge))
        if child is None:
            child = self._children[id(gauge)] = gauge.labels(self.run, self.scenario)
        return child

    def observe(self, record: Record) -> None:
        """Account one trace record (Meta is ignored: its facts are the labels)."""
        run, scenario = self.run, self.scenario
        if isinstance(record, Sample):
            if self._gauges is None:  # created at the first sample, not before: no made-up zeros
                self._gauges = (self._cpu_ratio.labels(run, scenario), self._mem.labels(run, scenario),
                                self._pids.labels(run, scenario))
            cpu_ratio, mem, pids_ = self._gauges
            cpu_ratio.set(record.cpu_ratio)
            self._cpu_seconds.update(record.cpu_seconds)
            mem.set(record.mem_bytes)
            if record.mem_limit_bytes:
                self._child(self._mem_limit).set(record.mem_limit_bytes)
                self._child(self._mem_ratio).set(record.mem_bytes / record.mem_limit_bytes)
            pids_.set(record.pids)
            if record.extra:
                lim = record.extra.get("pids_limit")
                if (type(lim) is int or type(lim) is float) and lim > 0:
                    self._child(self._pids_ratio).set(record.pids / lim)
                demand = record.value("cpu_demand")
                if demand is not None:
                    self._child(self._cpu_demand).set(demand)
                pages = record.value("pages")
                if pages is not None:
                    self._pages.update(float(pages))
                bpc = record.value("bits_per_char")
                if bpc is not None:
                    self._child(self._bpc).set(bpc)
        elif isinstance(record, Event):
            key = (record.source, record.category, record.kind, record.outcome)
            child = self._event_children.get(key)
            if child is None:
                child = self._event_children[key] = self._events.labels(run, scenario, *key)
            child.inc()  # type: ignore[attr-defined]
        elif isinstance(record, Verdict):
            self._verdicts.labels(run, scenario, record.guard, record.state, record.action).inc()
            self._firing.labels(run, scenario, record.guard).set(1 if record.state == "firing" else 0)
        elif isinstance(record, Action):
            self._actions.labels(run, scenario, record.action, "true" if record.ok else "false").inc()
        elif not isinstance(record, Meta):
            raise TypeError(f"not a trace record: {type(record).__name__}")

    def set_guard_states(self, states: Mapping[str, str]) -> None:
        """Set runaway_guard_firing for every guard: 1 for "firing", 0 for any other state.
        Call it once at the start with every guard, so quiet guards show as 0, not missing."""
        for guard, state in states.items():
            self._firing.labels(self.run, self.scenario, guard).set(1 if state == "firing" else 0)

    def serve(self, host: str = "127.0.0.1", port: int = DEFAULT_METRICS_PORT) -> int:
        """Serve /metrics on host:port in a background thread; port 0 picks a free one.
        Returns the bound port. A port that cannot be bound is a RunawayError (one line)."""
        if self._server is not None:
            raise RuntimeError("RunMetrics is already serving")
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as e:
            raise RunawayError(f"cannot serve metrics on {host}:{port}: {e.strerror or e} "
                               "(pick another port, or 0 for any free one)", field="--metrics-port") from None
        return int(self._server.server_port)

    def stop(self) -> None:
        """Stop serving (idempotent)."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)
