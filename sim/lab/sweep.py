"""Sweeps: scenarios x policies x seeds, run (or replayed) and summed up in one table.

A live sweep runs every combination as a real experiment, as many at once as the host's
CPUs allow under the chosen cap. A replay sweep runs nothing: it re-evaluates each policy
over recorded traces, as if that policy had been in charge (observations after the first
containing action it would have taken are dropped, and that action is taken as applied
at once).
"""

from __future__ import annotations

import asyncio
import csv
import html
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

from policies import Engine, load_policy
from policies.errors import RunawayError
from policies.model import Action, Event, Meta, Sample, Verdict, read_trace

CONTAINING = ("pause", "kill", "disconnect")


class SweepError(RunawayError):
    """A sweep that cannot run as asked."""


@dataclass(frozen=True)
class Cell:
    """One combination's result."""

    scenario: str
    policy: str
    seed: int
    summary: dict[str, Any]
    run_dir: str


def _policy_label(path: str | None) -> str:
    return Path(path).stem if path else "default"


def replay_records(records: Sequence[Any], policy_path: str | None) -> list[Any]:
    """The trace as if `policy_path` had been in charge: original observations, the new
    policy's verdicts, its actions taken as applied at once, cut at its first containing
    action. Recorded verdicts and actions are dropped."""
    from sim.lab.runner import DEFAULT_POLICY

    policy = load_policy(policy_path or str(DEFAULT_POLICY))
    engine = Engine(policy)
    out: list[Any] = []
    for rec in records:
        if isinstance(rec, (Verdict, Action)):
            continue
        if isinstance(rec, Meta):
            out.append(replace(rec, extra={**rec.extra, "replayed_with": _policy_label(policy_path)}))
            continue
        out.append(rec)
        if not isinstance(rec, (Sample, Event)):
            continue
        verdicts = engine.step(rec)
        out.extend(verdicts)
        stop = False
        for action in list(engine.actions):
            if action == "alert":
                continue
            out.append(Action(t=rec.t, action=action, ok=True, latency_s=0.0, detail={"simulated": True}))
            stop = stop or action in CONTAINING
        if stop:
            break
    return out


def replay_sweep(run_dirs: Iterable[Path], policies: Sequence[str | None]) -> list[Cell]:
    """Re-evaluate each policy over each recorded run."""
    from sim.report import scorecard

    cells = []
    for d in run_dirs:
        trace = Path(d) / "trace.jsonl" if Path(d).is_dir() else Path(d)
        records = list(read_trace(str(trace)))
        meta = next((r for r in records if isinstance(r, Meta)), Meta())
        for p in policies:
            recs = replay_records(records, p)
            summary = scorecard(recs, benign=meta.scenario == "benign")
            cells.append(Cell(meta.scenario, _policy_label(p), meta.seed, summary, str(trace.parent)))
    return cells


async def live_sweep(scenarios: Sequence[str], policies: Sequence[str | None], seeds: Sequence[int], *,
                     out: Path, duration: float, profile: str | None, backend: str, parallel: int,
                     echo: Any = print) -> list[Cell]:
    """Run every combination, `parallel` at a time."""
    from sim.lab.runner import Experiment, RunConfig

    sem = asyncio.Semaphore(max(1, parallel))
    cells: list[Cell] = []

    async def one(scen: str, pol: str | None, seed: int) -> None:
        async with sem:
            name = f"{Path(scen).stem}-{_policy_label(pol)}-s{seed}"
            cfg = RunConfig(scenario=scen, backend=backend, policy=pol, profile=profile, duration=duration,
                            seed=seed, out=out / name, metrics_port=None, live=False)
            echo(f"start  {name}")
            res = await Experiment(cfg, handle_signals=False).run()
            echo(f"done   {name}: {res.stopped_by}, contained {res.summary.get('contained')}")
            cells.append(Cell(res.summary.get("scenario") or Path(scen).stem, _policy_label(pol), seed,
                              res.summary, str(res.out)))

    await asyncio.gather(*(one(s, p, k) for s in scenarios for p in policies for k in seeds))
    cells.sort(key=lambda c: (c.scenario, c.policy, c.seed))
    return cells


def table(cells: Sequence[Cell]) -> list[dict[str, Any]]:
    """One row per (scenario, policy), aggregated over its seeds (sim.report.sweep)."""
    from sim.report.sweep import aggregate

    groups: dict[tuple[str, str], list[Cell]] = {}
    for c in cells:
        groups.setdefault((c.scenario, c.policy), []).append(c)
    return [{"scenario": scen, "policy": pol, **aggregate(c.summary for c in cs)}
            for (scen, pol), cs in sorted(groups.items())]


def write_table(rows: Sequence[dict[str, Any]], out: Path) -> tuple[Path, Path]:
    """sweep.csv and sweep.html (self-contained) in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    cols = list(rows[0].keys()) if rows else ["scenario", "policy"]
    csv_path = out / "sweep.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape('' if r[c] is None else str(r[c]))}</td>" for c in cols) + "</tr>"
        for r in rows
    )
    html_path = out / "sweep.html"
    html_path.write_text(
        "<!doctype html><meta charset='utf-8'><title>runaway sweep</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#eee}</style>"
        f"<h1>runaway sweep</h1><table><tr>{head}</tr>{body}</table>",
        encoding="utf-8",
    )
    return csv_path, html_path
