"""What a run leaves behind for people: the scorecard (summary.json) and report.html.

>>> # build_report("runs/2026-11-23T16-00-00-novel")  # -> writes summary.json, report.html
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

from policies.errors import RunawayError, TraceError
from policies.model import Meta, Record, read_trace

from .html import render_html
from .plots import Run, render_all
from .scorecard import SUMMARY_VERSION, headline, is_escape, scorecard

__all__ = ["REPORT_NAME", "SUMMARY_NAME", "TRACE_NAME", "build_report", "trace_path", "is_benign", "load_trace", "scorecard", "headline", "is_escape", "SUMMARY_VERSION"]

TRACE_NAME = "trace.jsonl"
SUMMARY_NAME = "summary.json"
REPORT_NAME = "report.html"


def trace_path(run_dir: str | os.PathLike[str]) -> Path:
    """RUN_DIR/trace.jsonl, or the trace file itself when given one."""
    p = Path(run_dir)
    if p.is_file():
        return p
    if not p.is_dir():
        raise TraceError("not a run directory (expected a directory holding trace.jsonl)", file=str(run_dir))
    if not (p / TRACE_NAME).is_file():
        raise TraceError("no trace.jsonl here (is this a run directory?)", file=str(run_dir))
    return p / TRACE_NAME


def load_trace(run_dir: str | os.PathLike[str]) -> list[Record]:
    """All records of RUN_DIR/trace.jsonl (or of a trace file); TraceError (one line for
    the user) when it is missing, empty or has a bad line."""
    path = trace_path(run_dir)
    records = list(read_trace(str(path)))
    if not records:
        raise TraceError("empty trace: no record to report on", file=str(path))
    if not isinstance(records[0], Meta):
        raise TraceError("no run here: the trace does not start with a meta line (a run that never "
                         "started?)", file=str(path), line=1)
    return records


def is_benign(records: Iterable[Record]) -> bool:
    """Whether a run's scenario is a benign control: the meta line's `benign` field when
    the runner wrote one, else whether the scenario is named `benign`."""
    for rec in records:
        if isinstance(rec, Meta):
            flag = rec.extra.get("benign")
            return flag if isinstance(flag, bool) else rec.scenario == "benign"
    return False


def run_links(run_dir: Path) -> dict[str, str]:
    """{label: href relative to the run directory} of the files a run left that exist:
    the trace, the learner's log, the evidence a kill saved, the scorecard."""
    out = {}
    for label, name in (("trace", TRACE_NAME), ("learner log", "learner.log"), ("evidence", "evidence")):
        p = run_dir / name
        if p.is_file() or (p.is_dir() and any(p.iterdir())):
            out[label] = name + ("/" if p.is_dir() else "")
    out["summary.json"] = SUMMARY_NAME  # written with the report
    return out


def _write_atomic(path: Path, text: str) -> None:
    # A report being rebuilt while someone has the old one open never shows half a file.
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk leaves no half-written temp file behind
        raise


def build_report(run_dir: str | os.PathLike[str], *, benign: bool | None = None, html: bool = True) -> dict:
    """Read RUN_DIR/trace.jsonl (or a trace file), write summary.json and report.html beside it, and return
    the scorecard. `benign` None: decided by `is_benign`. `html` False writes the scorecard
    alone: the plots are most of the cost, and `runaway report RUN_DIR` draws them later."""
    records = load_trace(run_dir)
    if benign is None:
        benign = is_benign(records)
    card = scorecard(records, benign=benign)
    out = trace_path(run_dir).parent
    page = None
    if html:
        run = Run.of(records)
        page = render_html(run, card, render_all(run), links=run_links(out))
    try:
        _write_atomic(out / SUMMARY_NAME, json.dumps(card, indent=2, ensure_ascii=False) + "\n")
        if page is not None:
            _write_atomic(out / REPORT_NAME, page)
    except OSError as e:
        raise RunawayError(f"cannot write the report: {e.strerror}", file=str(out)) from None
    return card
