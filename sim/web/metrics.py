"""`runaway_web_requests_total{run,scenario,route,status}` for the mock web.

Routes are classes (page, robots, honeypot, ...), never raw URLs, so the series count
stays bounded whatever a crawler asks for.
"""

from __future__ import annotations

from typing import Iterator, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

ROUTES = (
    "page", "robots", "sitemap", "trap_calendar", "trap_deep", "soft404", "private",
    "honeypot", "metadata", "cloud_api", "metrics", "not_found",
)
NAME = "runaway_web_requests"


class WebMetrics(Collector):
    """The mock web's request counter, in a registry of the caller's choosing (a fresh one
    by default, never the global default registry).

    Counting is on the hot path of every page, so it is a plain dict increment; the
    counter family is built from the dict when the registry is scraped (the custom
    collector pattern of prometheus_client) instead of taking a Counter child's lock per
    request.

    >>> m = WebMetrics({"run": "r1", "scenario": "s"})
    >>> m.count("page", 200); m.value("page", 200)
    1.0
    """

    def __init__(self, labels: Mapping[str, str], registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        # Only the labels given: `runaway web` alone belongs to no run, and `run=""` on every
        # series reads as a bug (Prometheus treats an empty label as absent anyway).
        self._base = [(k, str(labels[k])) for k in ("run", "scenario") if labels.get(k)]
        self._names = [k for k, _ in self._base] + ["route", "status"]
        self.counts: dict[tuple[str, int | str], int] = {}
        self.registry.register(self)

    def count(self, route: str, status: int | str) -> None:
        key = (route, status)
        self.counts[key] = self.counts.get(key, 0) + 1

    def collect(self) -> Iterator[CounterMetricFamily]:
        fam = CounterMetricFamily(
            NAME, "HTTP requests answered by the mock web, by route class and status.", labels=self._names,
        )
        base = [v for _, v in self._base]
        for (route, status), n in sorted(self.counts.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
            fam.add_metric([*base, route, str(status)], n)
        yield fam

    def describe(self) -> Iterator[CounterMetricFamily]:
        # Without describe(), registering would call collect() once just to learn the names.
        yield CounterMetricFamily(NAME, "HTTP requests answered by the mock web, by route class and status.",
                                  labels=self._names)

    def value(self, route: str, status: int | str) -> float:
        return float(self.counts.get((route, status), 0))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
