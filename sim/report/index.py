"""runs/index.html: every run in a runs directory, newest first, with its headline and links.

Rewritten after each run and each sweep (by the runner and `runaway sweep`), from what the
runs left on disk: each run directory's summary.json and the meta line of its trace. A run
directory is one holding summary.json, directly under the runs directory or one level down
(the runs of a sweep); a sweep directory is one holding sweep.html. Each run's row has the
anchor `run-<run id>`, which the Grafana dashboard links to.

>>> # build_index("runs")  # -> runs/index.html
"""

from __future__ import annotations

import json
import os
from html import escape
from pathlib import Path
from typing import Any

INDEX_NAME = "index.html"

CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:1.5em auto;max-width:1200px;
 padding:0 1em;color:#222;line-height:1.35}
.wrap{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:.9em}
th,td{border:1px solid #ccc;padding:.3em .5em;vertical-align:top;text-align:left}
th{background:#f2f2f2}
tr.good td.c{background:#e3f4e6}tr.bad td.c{background:#fde7e7}tr.warn td.c{background:#fff4dc}
td.when{white-space:nowrap;font-variant-numeric:tabular-nums}
tr:target td{outline:2px solid #0072B2}
.muted{color:#777}
"""


def _meta(run_dir: Path) -> dict[str, Any]:
    """The trace's first line (its meta record), or {} when it cannot be read."""
    try:
        with open(run_dir / "trace.jsonl", encoding="utf-8") as fh:
            obj = json.loads(fh.readline() or "{}")
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) and obj.get("type") == "meta" else {}


def _summary(run_dir: Path) -> dict[str, Any] | None:
    try:
        obj = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def find_runs(root: Path) -> list[Path]:
    """Run directories under `root` (depth 1 and 2), newest first."""
    found = []
    for d in sorted(root.iterdir()) if root.is_dir() else ():
        if not d.is_dir():
            continue
        if (d / "summary.json").is_file():
            found.append(d)
        else:
            found.extend(sub for sub in sorted(d.iterdir()) if sub.is_dir() and (sub / "summary.json").is_file())
    return sorted(found, key=lambda d: (d / "summary.json").stat().st_mtime, reverse=True)


def _state(card: dict[str, Any]) -> tuple[str, str]:
    if card.get("escaped"):
        return "bad", "ESCAPED"
    if card.get("benign"):
        n = card.get("false_alarms") or 0
        return ("good", "benign, no false alarm") if not n else ("bad", f"benign, {n} false alarm(s)")
    if card.get("contained"):
        return "good", "yes"
    return ("bad", "NO") if card.get("incidents") else ("warn", "nothing to contain")


def render_index(root: Path) -> str:
    """The index page of a runs directory (links relative to it)."""
    rows = []
    for d in find_runs(root):
        card = _summary(d)
        if card is None:
            continue
        meta = _meta(d)
        rel = Path(os.path.relpath(d, root))
        if meta.get("guards") is False:
            policy = "guards off"
        else:
            policy = meta.get("replayed_with") or meta.get("policy") or "—"
        links = [f'<a href="{escape((rel / name).as_posix())}">{label}</a>'
                 for label, name in (("report", "report.html"), ("trace", "trace.jsonl"),
                                     ("log", "learner.log"), ("evidence", "evidence"))
                 if (d / name).exists() and not ((d / name).is_dir() and not any((d / name).iterdir()))]
        cls, contained = _state(card)
        run_id = str(card.get("run") or d.name)
        when = rel.parts[0] if len(rel.parts) > 1 else ""
        rows.append(
            f'<tr id="run-{escape(run_id)}" class="{cls}"><td class="when">{escape(d.name)}'
            f'{f"<br><span class=muted>in {escape(when)}</span>" if when else ""}</td>'
            f"<td>{escape(str(card.get('scenario') or meta.get('scenario') or '?'))}</td>"
            f"<td>{escape(str(policy))}</td><td class=\"c\">{escape(contained)}</td>"
            f"<td>{escape(str(card.get('headline') or ''))}</td><td>{' · '.join(links)}</td></tr>")
    sweeps = sorted((d for d in root.iterdir() if d.is_dir() and (d / "sweep.html").is_file()),
                    reverse=True) if root.is_dir() else []
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>runaway runs</title><style>{CSS}</style></head><body>",
             f"<h1>runaway runs</h1><p class=\"muted\">{len(rows)} run(s) in {escape(str(root))}, newest "
             "first. Rewritten after each run and sweep.</p>"]
    if rows:
        parts.append('<div class="wrap"><table><thead><tr><th>run</th><th>scenario</th><th>policy</th>'
                     "<th>contained</th><th>headline</th><th>links</th></tr></thead><tbody>"
                     + "".join(rows) + "</tbody></table></div>")
    else:
        parts.append('<p class="muted">no runs yet: <code>runaway demo</code> makes one</p>')
    if sweeps:
        parts.append("<h2>Sweeps</h2><ul>" + "".join(
            f'<li><a href="{escape(d.name)}/sweep.html">{escape(d.name)}</a></li>' for d in sweeps) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


def build_index(root: str | os.PathLike[str]) -> Path:
    """Write ROOT/index.html (atomically: someone may have the old one open) and return it."""
    root = Path(root)
    path = root / INDEX_NAME
    tmp = root / f".{INDEX_NAME}.{os.getpid()}.tmp"  # two runs ending at once each write their own
    tmp.write_text(render_index(root), encoding="utf-8")
    os.replace(tmp, path)
    return path


def refresh_index(root: str | os.PathLike[str]) -> Path | None:
    """build_index, where a failure to write it (a read-only parent, a full disk) must not
    fail the run or sweep that asked: the index is a convenience, the run's files are not."""
    try:
        return build_index(root)
    except OSError:
        return None
