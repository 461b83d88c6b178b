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
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from policies.model import CATEGORIES, OUTCOMES, Event

PREFIX = "@runaway "

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


Parsed = Event | Gauge | Plain | Other


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


def parse_line(line: str, to_t: Callable[[float | None], float]) -> Parsed:
    """What one output line means. `to_t(wall)` converts the learner's wall-clock stamp
    (or None when it sent none) to seconds since the run started.

    A malformed protocol line is treated as plain text, never as an error: the learner is
    the thing under test and may write anything.

    >>> parse_line('@runaway {"type":"gauge","pages":3}', lambda w: 1.0)
    Gauge(values={'pages': 3})
    """
    obj = decode(line)
    if obj is None:
        return Plain(line)
    kind = obj.get("type")
    wall = obj.get("wall")
    wall = float(wall) if isinstance(wall, (int, float)) and not isinstance(wall, bool) else None
    if kind == "gauge":
        vals = {
            k: v for k, v in obj.items()
            if k not in ("type", "wall") and isinstance(v, (int, float)) and not isinstance(v, bool)
        }
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
        detail = obj.get("detail")
        return Event(
            t=to_t(wall),
            source=source,
            category=category,
            kind=ev_kind,
            outcome=outcome,
            detail=detail if isinstance(detail, dict) else {},
        )
    return Other(obj)


def text_of(parsed: Parsed) -> str | None:
    """The human text a line carries (for learner.log and the covert-marker scan)."""
    if isinstance(parsed, Plain):
        return parsed.text
    if isinstance(parsed, Event) and parsed.source == "self_report":
        t = parsed.detail.get("text")
        return t if isinstance(t, str) else None
    return None

