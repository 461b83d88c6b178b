"""Reading the learner's channel: `@runaway {json}` protocol lines among plain output.

The learner, its audit hook and a user's Python agent speak this protocol on stdout and
stderr (docs/internals.md). The runner turns each line into what it means for the run:
an Event, a gauge update for the next Sample, an attempt report, or plain text.

This is the one reader of the protocol on the controller's side: the runner
(`parse_line`), the selftest and the test harnesses (`decode`) all go through it, so a
limit on what the learner may send is made here once. (The learner writes lines with
sim/learner/protocol.py, which may import nothing from the project.)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from policies.model import CATEGORIES, OUTCOMES, SAMPLE_FIELDS, Event

# Names a gauge may not use: the observer's own measurements (and derived signals), which
# the learner must never be able to overwrite in a sample.
RESERVED_GAUGES = frozenset({"type", "t", "wall", "mem_ratio", *SAMPLE_FIELDS})

PREFIX = "@runaway "
# A line longer than this is cut here before it is parsed (the learner keeps its own lines
# under 4000 bytes; only a hostile or broken writer sends more).
MAX_LINE_CHARS = 16384

# Sources the learner may claim for itself. It cannot pose as the observer, the web or an
# operator: those come only from outside the sandbox.
LEARNER_SOURCES = frozenset({"audit", "self_report"})


@dataclass(frozen=True, slots=True)
class Gauge:
    """Learner gauges (pages, bits_per_char, workers) for the next sample."""

    values: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class Plain:
    """A line that is not a protocol line: kept in learner.log, scanned for covert marks."""

    text: str


@dataclass(frozen=True, slots=True)
class Other:
    """A protocol record the runner keeps in the log but does not interpret (e.g. attempts)."""

    record: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Refused:
    """A protocol line that breaks the protocol's rules (a NaN or infinite number, a gauge
    that is not a number): refused, and recorded by the runner as an observer event."""

    reason: str
    text: str


Parsed = Event | Gauge | Plain | Other | Refused


def decode(line: str) -> dict[str, Any] | None:
    """The JSON object of an `@runaway {...}` line, or None for anything else (plain
    output, malformed JSON, a value that is not an object).

    >>> decode('@runaway {"type":"attempt","name":"sudo"}')
    {'type': 'attempt', 'name': 'sudo'}
    >>> decode("hello") is None
    True
    """
    if not line.startswith(PREFIX):
        return None
    try:
        obj = json.loads(line[len(PREFIX):])
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


class _NotFinite(ValueError):
    pass


def _finite_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):  # 1e400 parses as inf
        raise _NotFinite(f"the number {text[:40]} is not finite")
    return v


def _no_constant(text: str) -> float:
    raise _NotFinite(f"{text} is not a number JSON allows")


def _loads(text: str) -> Any:
    """Strict JSON: no NaN, no Infinity, no number that overflows to infinity."""
    return json.loads(text, parse_float=_finite_float, parse_constant=_no_constant)


def parse_line(line: str, t: float) -> Parsed:
    """What one output line means. `t` is when the controller read it (seconds since the
    run started, from the controller's own clock): the time every event from this line
    gets. A `wall` field the learner sends is ignored: the learner's clock is never the
    run's, so a learner cannot move its own events in time (or blind a `for:` guard).

    A malformed protocol line is treated as plain text, never as an error: the learner is
    the thing under test and may write anything. A well-formed line that breaks the rules
    (NaN, Infinity, a gauge that is not a finite number) is `Refused`.

    >>> parse_line('@runaway {"type":"gauge","pages":3}', 1.0)
    Gauge(values={'pages': 3})
    >>> parse_line('@runaway {"type":"gauge","pages":NaN}', 1.0).reason
    'NaN is not a number JSON allows'
    """
    line = line[:MAX_LINE_CHARS]
    if not line.startswith(PREFIX):
        return Plain(line)
    try:
        obj = _loads(line[len(PREFIX):])
    except _NotFinite as e:
        return Refused(str(e), line)
    except (ValueError, RecursionError):  # not JSON, or nested past the parser's depth
        return Plain(line)
    if not isinstance(obj, dict):
        return Plain(line)
    kind = obj.get("type")
    if kind == "gauge":
        vals: dict[str, float] = {}
        for k, v in obj.items():
            if k in ("type", "wall"):
                continue
            if k in RESERVED_GAUGES:
                return Refused(f"gauge {k!r} is a measurement only the observer makes", line)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                return Refused(f"gauge {k[:40]!r} is not a number", line)
            if isinstance(v, int) and not -(2**63) <= v < 2**63:
                return Refused(f"gauge {k[:40]!r} is out of range", line)
            vals[k] = v
        return Gauge(vals)
    if kind == "event":
        source = obj.get("source")
        category = obj.get("category")
        ev_kind = obj.get("kind")
        if (
            source not in LEARNER_SOURCES
            or category not in CATEGORIES
            or not isinstance(ev_kind, str)
            or not ev_kind
        ):
            return Other(obj)
        outcome = obj.get("outcome", "unknown")
        if outcome not in OUTCOMES:
            outcome = "unknown"
        detail = dict(obj["detail"]) if isinstance(obj.get("detail"), dict) else {}
        return Event(
            t=t,
            source=source,
            category=category,
            kind=ev_kind[:200],
            outcome=outcome,
            detail=detail,
        )
    return Other(obj)


def text_of(parsed: Parsed) -> str | None:
    """The human text a line carries (for learner.log and the covert-marker scan)."""
    if isinstance(parsed, (Plain, Refused)):
        return parsed.text
    if isinstance(parsed, Event) and parsed.source == "self_report":
        t = parsed.detail.get("text")
        return t if isinstance(t, str) else None
    return None



# The learner's output budget. The learner writes a gauge every 0.5 s and a few events a
# second; a flood beyond this is dropped (and reported) rather than queued, so it can
# neither delay the samples the guards need nor fill the disk with learner.log.
LINES_PER_S = 500.0
LINE_BURST = 2000.0
BYTES_PER_S = 512 * 1024.0
BYTE_BURST = 2 * 1024 * 1024.0
REPORT_EVERY_S = 1.0


class OutputGate:
    """A token bucket over the learner's lines (count and bytes) on the controller's clock.

    >>> now = [0.0]
    >>> gate = OutputGate(lambda: now[0], lines_per_s=1, line_burst=2)
    >>> [gate.admit("x") for _ in range(3)]
    [True, True, False]
    >>> now[0] = 1.5
    >>> gate.report().detail["dropped_lines"]
    1
    """

    def __init__(self, clock: Callable[[], float], *, lines_per_s: float = LINES_PER_S,
                 line_burst: float = LINE_BURST, bytes_per_s: float = BYTES_PER_S,
                 byte_burst: float = BYTE_BURST) -> None:
        self.clock = clock
        self.rates = (lines_per_s, bytes_per_s)
        self.bursts = (line_burst, byte_burst)
        self.tokens = [line_burst, byte_burst]
        self.last = clock()
        self.dropped_lines = 0
        self.dropped_bytes = 0
        self.reported_at = self.last

    def admit(self, line: str) -> bool:
        now = self.clock()
        dt = max(0.0, now - self.last)
        self.last = now
        for i in (0, 1):
            self.tokens[i] = min(self.bursts[i], self.tokens[i] + dt * self.rates[i])
        size = min(len(line), MAX_LINE_CHARS) + 1
        if self.tokens[0] >= 1 and self.tokens[1] >= size:
            self.tokens[0] -= 1
            self.tokens[1] -= size
            return True
        self.dropped_lines += 1
        self.dropped_bytes += len(line) + 1
        return False

    def report(self, *, final: bool = False) -> Event | None:
        """An observer event for the lines dropped since the last one (at most one a second)."""
        now = self.clock()
        if not self.dropped_lines or (not final and now - self.reported_at < REPORT_EVERY_S):
            return None
        ev = Event(t=now, source="observer", category="deception", kind="output_flood", outcome="blocked",
                   detail={"dropped_lines": self.dropped_lines, "dropped_bytes": self.dropped_bytes,
                           "budget": {"lines_per_s": self.rates[0], "bytes_per_s": self.rates[1]}})
        self.dropped_lines = self.dropped_bytes = 0
        self.reported_at = now
        return ev
