"""`runaway_web_requests_total{run,scenario,route,status}` for the mock web.

Routes are classes (page, robots, honeypot, ...), never raw URLs, so the series count
stays bounded whatever a crawler asks for.
"""

from __future__ import annotations

from typing import Mapping

from prometheus_client import CollectorRegistry, Counter, generate_latest

ROUTES = (
    "page", "robots", "sitemap", "trap_calendar", "trap_deep", "soft404", "private",
    "honeypot", "metadata", "cloud_api", "metrics", "not_found",
)


class WebMetrics:
    """The mock web's counters in a registry of the caller's choosing (a fresh one by default)."""

    def __init__(self, labels: Mapping[str, str], registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._run = str(labels.get("run", ""))
        self._scenario = str(labels.get("scenario", ""))
        self.requests = Counter(
            "runaway_web_requests",
            "HTTP requests answered by the mock web, by route class and status.",
            ["run", "scenario", "route", "status"],
            registry=self.registry,
        )
        # labels() parses and hashes its arguments on every call; the children are few
        # (routes x statuses), so keep them and make counting one dict lookup.
        self._children: dict[tuple[str, int | str], object] = {}

    def count(self, route: str, status: int | str) -> None:
        child = self._children.get((route, status))
        if child is None:
            child = self.requests.labels(self._run, self._scenario, route, str(status))
            self._children[(route, status)] = child
        child.inc()  # type: ignore[attr-defined]

    def value(self, route: str, status: int | str) -> float:
        v = self.registry.get_sample_value(
            "runaway_web_requests_total",
            {"run": self._run, "scenario": self._scenario, "route": route, "status": str(status)},
        )
        return v or 0.0

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
