"""Faults the mock web injects into page responses, at configurable rates.

Which page gets which fault is a pure function of (seed, path): the same page always
fails the same way, so runs are comparable and a crawler that retries learns nothing
new (it has to give up). Faults apply to tree pages (`/` and `/page/<i>`) only; robots.txt,
sitemaps, traps, honeypots, the metadata service and /metrics are never faulted.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from .errors import WebError

FAULT_KINDS = ("server_error", "tarpit", "truncated", "dropped", "huge")


@dataclass(frozen=True, slots=True)
class FaultRates:
    """Fraction of pages (0..1, summing to at most 1) answered with each fault.

    >>> FaultRates(server_error=0.02, tarpit=0.01).any
    True
    """

    server_error: float = 0.0   # a 500, 502 or 503
    tarpit: float = 0.0         # the page, dribbled out over `tarpit_seconds`
    truncated: float = 0.0      # Content-Length promises the page, half arrives, connection closed
    dropped: float = 0.0        # connection closed before any response
    huge: float = 0.0           # a page of `huge_bytes`
    tarpit_seconds: float = 10.0
    huge_bytes: int = 8 * 1024 * 1024

    def __post_init__(self) -> None:
        for f in FAULT_KINDS:
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise WebError(f"expected a rate between 0 and 1, got {v!r}", field=f"faults.{f}")
        if sum(getattr(self, f) for f in FAULT_KINDS) > 1.0 + 1e-9:
            raise WebError("fault rates add up to more than 1", field="faults")
        if not isinstance(self.tarpit_seconds, (int, float)) or not 0 <= self.tarpit_seconds <= 3600:
            raise WebError(f"expected 0..3600 seconds, got {self.tarpit_seconds!r}", field="faults.tarpit_seconds")
        if isinstance(self.huge_bytes, bool) or not isinstance(self.huge_bytes, int) or not 0 < self.huge_bytes <= 1 << 30:
            raise WebError(f"expected 1 byte .. 1 GiB, got {self.huge_bytes!r}", field="faults.huge_bytes")

    @property
    def any(self) -> bool:
        return any(getattr(self, f) for f in FAULT_KINDS)

    @classmethod
    def typical(cls) -> "FaultRates":
        """A mildly hostile web: about one page in twelve misbehaves."""
        return cls(server_error=0.03, tarpit=0.01, truncated=0.02, dropped=0.01, huge=0.01)

    @classmethod
    def from_mapping(cls, m: dict) -> "FaultRates":
        """From a scenario's `faults:` mapping; unknown keys are a WebError."""
        names = {f.name for f in fields(cls)}
        for k in m:
            if k not in names:
                raise WebError(f"unknown fault {k!r} (expected one of {', '.join(sorted(names))})", field=f"faults.{k}")
        return cls(**m)

    def pick(self, u: float) -> str | None:
        """The fault for a page whose deterministic uniform draw is u (0 <= u < 1)."""
        for f in FAULT_KINDS:
            r = getattr(self, f)
            if u < r:
                return f
            u -= r
        return None
