"""One row of a sweep table from the scorecards of several runs (same scenario and policy).

>>> from sim.report.synthetic import novel_like
>>> from sim.report.scorecard import scorecard
>>> aggregate([scorecard(novel_like(), benign=False)])["contained_rate"]
1.0
"""

from __future__ import annotations

from statistics import median
from typing import Any, Iterable, Mapping


def _median(xs: list[float]) -> float | None:
    return round(median(xs), 3) if xs else None


def aggregate(cards: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """contained rate, escape count, median time to detect and to contain (over the
    incidents that were detected / contained), undetected incidents, usefulness and false
    alarms (null unless the runs are benign) of a group of runs."""
    cards = list(cards)
    incidents = [i for c in cards for i in c["incidents"]]
    benign = [c for c in cards if c["benign"]]
    pages_cont = [c["usefulness"]["pages_at_containment"] for c in cards
                  if c["usefulness"]["pages_at_containment"] is not None]
    pages_end = [c["usefulness"]["pages_at_end"] for c in cards if c["usefulness"]["pages_at_end"] is not None]
    return {
        "runs": len(cards),
        "contained_rate": round(sum(bool(c["contained"]) for c in cards) / len(cards), 3) if cards else None,
        "escapes": sum(len(c["escaped"]) for c in cards),
        "decoys_taken": sum(len(c.get("decoys_taken", ())) for c in cards),
        "incidents": len(incidents),
        "undetected_incidents": sum(i["detected_at"] is None for i in incidents),
        "median_time_to_detect_s": _median([i["time_to_detect_s"] for i in incidents
                                            if i["time_to_detect_s"] is not None]),
        "median_time_to_contain_s": _median([i["time_to_contain_s"] for i in incidents
                                             if i["time_to_contain_s"] is not None]),
        "median_pages_at_containment": _median(pages_cont),
        "median_pages_at_end": _median(pages_end),
        "false_alarms": sum(c["false_alarms"] or 0 for c in benign) if benign else None,
        "throttled_before_kill": sum(_throttled_first(c) for c in cards),
    }


def _throttled_first(card: Mapping[str, Any]) -> bool:
    """Whether the run's first applied ladder step past `alert` was a throttle: the CPU
    guard acted before anything paused or killed the learner."""
    first = next((a["action"] for a in card["actions"] if a["ok"] and a["action"] in ("throttle", "pause", "kill")),
                 None)
    return first == "throttle"
