"""One row of a sweep table from the scorecards of several runs (same scenario and policy).

>>> from sim.report.synthetic import novel_like
>>> from sim.report.scorecard import scorecard
>>> aggregate([scorecard(novel_like(), benign=False)])["contained_rate"]
1.0
"""

from __future__ import annotations

from pathlib import Path
from statistics import median
from typing import Any, Iterable, Mapping, Sequence


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


# Readable headers for the aggregate columns (the CSV keeps the keys).
HEADERS: Mapping[str, str] = {
    "scenario": "scenario", "policy": "policy", "runs": "runs",
    "contained_rate": "contained (share of runs)", "escapes": "escapes", "decoys_taken": "decoys taken",
    "incidents": "incidents", "undetected_incidents": "undetected incidents",
    "median_time_to_detect_s": "median time to detect (s)",
    "median_time_to_contain_s": "median time to contain (s)",
    "median_pages_at_containment": "median pages at containment",
    "median_pages_at_end": "median pages at the end", "false_alarms": "false alarms (benign runs)",
    "throttled_before_kill": "throttled before any pause or kill (runs)",
    "retried": "ran again (node lost)",
}
RUN_HEADERS: Mapping[str, str] = {
    "scenario": "scenario", "policy": "policy", "seed": "seed", "contained": "contained",
    "escapes": "escapes", "incidents": "incidents", "actions": "actions taken (s)", "why": "why",
    "attempts": "attempts (node lost)",
}


def actions_text(card: Mapping[str, Any]) -> str:
    """The containment actions a run took, in order: 'throttle 50.25, kill 68'."""
    acts = [f"{a['action']} {a['t']:g}" + ("" if a["ok"] else " (failed)")
            for a in card.get("actions") or () if a["action"] != "alert"]
    return ", ".join(acts) or "none"


def why(card: Mapping[str, Any]) -> str:
    """Why a run was or was not contained, in a few words a table cell can hold.

    >>> from sim.report.synthetic import novel_like
    >>> from sim.report.scorecard import scorecard
    >>> why(scorecard(novel_like(guards=False), benign=False))[:40]
    'cpu at 18 s: undetected, never containe'
    """
    escaped = card.get("escaped") or []
    if escaped:
        e = escaped[0]
        return f"escaped: {e['category']}/{e['kind']} succeeded at {e['t']:g} s ({len(escaped)} in all)"
    incidents = card.get("incidents") or []
    open_ = [i for i in incidents if i["contained_at"] is None]
    if open_:
        parts = []
        for i in open_:
            det = (f"detected by {i['detected_by']} at {i['detected_at']:g} s" if i["detected_by"]
                   else "undetected")
            parts.append(f"{i['class']} at {i['start']:g} s: {det}, never contained")
        return "; ".join(parts)
    if card.get("benign") and card.get("false_alarms"):
        return f"{card['false_alarms']} false alarm(s) in a benign run"
    if not incidents:
        return "nothing to contain"
    last = max(incidents, key=lambda i: i["contained_at"])
    return f"all {len(incidents)} incident(s) contained, the last ({last['class']}) by {last['contained_by']} at {last['contained_at']:g} s"


def _cell(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def text_table(rows: Sequence[Mapping[str, Any]], headers: Mapping[str, str] | None = None) -> str:
    """An aligned plain-text table (what `runaway sweep` prints); empty values are '—'."""
    if not rows:
        return "(no runs)"
    cols = list(rows[0].keys())
    names = [(headers or {}).get(c, c) for c in cols]
    cells = [[_cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(n), *(len(row[i]) for row in cells)) for i, n in enumerate(names)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths)).rstrip()
    return "\n".join([line(names), line(["-" * w for w in widths]), *(line(r) for r in cells)])


SWEEP_CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:1.5em auto;max-width:1200px;
 padding:0 1em;color:#222}
.wrap{overflow-x:auto}
table{border-collapse:collapse;width:100%;table-layout:auto;font-size:.88em}
th,td{border:1px solid #ccc;padding:.25em .45em;vertical-align:top}
th{background:#f2f2f2;font-weight:600;text-align:left;white-space:normal;max-width:9em}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.why{min-width:16em}
tr.no td{background:#fde7e7}tr.yes td{background:#f3faf4}
.muted{color:#777}
"""


def render_sweep_html(rows: Sequence[Mapping[str, Any]], runs: Sequence[Mapping[str, Any]],
                      *, base: Path | None = None) -> str:
    """sweep.html: the aggregate table, then one row per run with links to its report,
    trace and summary (relative to `base`, where the page is written)."""
    import os
    from html import escape

    def td(v: Any, cls: str = "") -> str:
        num = isinstance(v, (int, float)) and not isinstance(v, bool)
        klass = " ".join(x for x in (cls, "num" if num else "") if x)
        return f'<td{f" class={chr(34)}{klass}{chr(34)}" if klass else ""}>{escape(_cell(v))}</td>'

    def link(run_dir: str, name: str) -> str:
        target = Path(run_dir) / name
        if not target.exists():
            return ""
        href = os.path.relpath(target, base) if base is not None else str(target)
        return f'<a href="{escape(href)}">{escape(name.split(".")[0])}</a>'

    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>runaway sweep</title><style>{SWEEP_CSS}</style></head><body>",
             "<h1>runaway sweep</h1>",
             "<h2>By scenario and policy</h2>"]
    if rows:
        cols = list(rows[0].keys())
        head = "".join(f"<th>{escape(HEADERS.get(c, c))}</th>" for c in cols)
        body = "".join("<tr>" + "".join(td(r[c]) for c in cols) + "</tr>" for r in rows)
        parts.append(f'<div class="wrap"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>')
    else:
        parts.append('<p class="muted">no runs</p>')
    parts.append("<h2>Every run</h2>")
    if runs:
        cols = [c for c in RUN_HEADERS if c in runs[0]]
        head = "".join(f"<th>{escape(RUN_HEADERS[c])}</th>" for c in cols) + "<th>links</th>"
        body = []
        for r in runs:
            links = " ".join(x for x in (link(r["run_dir"], n) for n in ("report.html", "trace.jsonl", "summary.json")) if x)
            cls = "yes" if r.get("contained") else "no"
            cells = "".join(td(r[c], "why" if c == "why" else "") for c in cols)
            body.append(f'<tr class="{cls}">{cells}<td>{links or "—"}</td></tr>')
        parts.append(f'<div class="wrap"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>')
    parts.append('<p class="muted">Columns: docs/report.md#sweeps. Replayed cells measure detection, '
                 "not the sandbox (docs/running.md#runaway-sweep).</p></body></html>")
    return "\n".join(parts)
