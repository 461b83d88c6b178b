"""Sweeps: scenarios x policies x seeds, run (or replayed) and summed up in one table.

A live sweep runs every combination as a real experiment, as many at once as the host's
CPUs allow under the chosen cap. A replay sweep runs nothing: it re-evaluates each policy
over recorded traces, as if that policy had been in charge (`replay_records` says how far
a recording can stand in for what would have happened).

The tables are pure functions of the cells (`table`, `run_rows`), whoever ran them: a
local sweep, a replay, or a cluster.
"""

from __future__ import annotations

import asyncio
import csv
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

from policies import Engine, load_policy
from policies.engine import replay_steps
from policies.errors import RunawayError
from policies.model import Action, Meta, TraceWriter, Verdict

# Actions after which the learner does nothing more (frozen or dead): a replay that takes
# one the recording did not is cut there. Throttle and disconnect leave it running.
STOPPING = ("pause", "kill")
# How long after the replayed verdict a recorded action of the same name still counts as
# the same action (the runner records an action when it took effect).
SAME_ACTION_WITHIN_S = 3.0


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
    """The trace as if `policy_path` had been in charge: the recorded observations, the
    new policy's verdicts and its actions (taken as applied at once, `detail.simulated`).
    Recorded verdicts and actions are dropped.

    The recording stands in for what would have happened only while the policies agree.
    Where the new policy pauses or kills and the recording shows no such action within
    SAME_ACTION_WITHIN_S, the learner would have stopped there: the replay is cut. A
    throttle or a disconnect the recording lacks is applied and the recording goes on (the
    learner would have gone on too, slower or offline; what it did next is approximated by
    what it did). So two policies that act alike on a trace give identical rows."""
    from sim.report.scorecard import policy_watches
    from sim.lab.runner import DEFAULT_POLICY

    policy = load_policy(policy_path or str(DEFAULT_POLICY))
    engine = Engine(policy)
    recorded = [r for r in records if isinstance(r, Action) and r.ok]
    out: list[Any] = []
    for rec, verdicts in replay_steps(records, engine):
        if isinstance(rec, (Verdict, Action)):
            continue
        if isinstance(rec, Meta):
            out.append(replace(rec, policy_sha256=policy.sha256, extra={
                **rec.extra, "replayed_with": _policy_label(policy_path), "watches": policy_watches(policy)}))
            continue
        out.append(rec)
        if verdicts is None:
            continue
        out.extend(verdicts)
        stop = False
        for action in list(engine.actions):
            if action == "alert":
                continue
            out.append(Action(t=rec.t, action=action, ok=True, latency_s=0.0, detail={"simulated": True}))
            same = next((r for r in recorded if r.action == action
                         and rec.t - 1e-6 <= r.t <= rec.t + SAME_ACTION_WITHIN_S), None)
            if same is not None:
                recorded.remove(same)
            elif action in STOPPING:
                stop = True
        if stop:
            break
    return out


def _run_dirs(paths: Iterable[Path]) -> Iterable[Path]:
    """Each path as given, except a directory without a trace of its own: the run dirs in it
    (what an Inspect eval leaves, one run per sample)."""
    for d in map(Path, paths):
        if d.is_dir() and not (d / "trace.jsonl").exists():
            inner = sorted(t.parent for t in d.glob("*/trace.jsonl"))
            if inner:
                yield from inner
                continue
        yield d


def replay_sweep(run_dirs: Iterable[Path], policies: Sequence[str | None], *,
                 out: Path | None = None) -> list[Cell]:
    """Re-evaluate each policy over each recorded run. With `out`, each replay is written
    as a run directory of its own (out/<run>-<policy>/: trace.jsonl, summary.json,
    report.html), which the cell points at; else the cell points at the recording."""
    from sim.report import build_report, is_benign, load_trace, scorecard, trace_path

    cells = []
    for d in _run_dirs(run_dirs):
        trace = trace_path(d)
        records = load_trace(trace)
        meta = next((r for r in records if isinstance(r, Meta)), Meta())
        benign = is_benign(records)
        for p in policies:
            recs = replay_records(records, p)
            run_dir = str(trace.parent)
            if out is not None:
                # runs/<run>/trace.jsonl gives "<run>"; a trace file of another name, its stem.
                src = trace.parent.name if trace.name == "trace.jsonl" else trace.stem
                dest = Path(out) / f"{src}-{_policy_label(p)}"
                dest.mkdir(parents=True, exist_ok=True)
                (dest / "trace.jsonl").unlink(missing_ok=True)
                with TraceWriter(str(dest / "trace.jsonl")) as w:
                    for r in recs:
                        w.write(r)
                summary = build_report(dest, benign=benign)
                run_dir = str(dest)
            else:
                summary = scorecard(recs, benign=benign)
            cells.append(Cell(meta.scenario, _policy_label(p), meta.seed, summary, run_dir))
    return cells


async def live_sweep(scenarios: Sequence[str], policies: Sequence[str | None], seeds: Sequence[int], *,
                     out: Path, duration: float, profile: str | None, backend: str, parallel: int,
                     echo: Any = print, plugins: Sequence[str] = ()) -> list[Cell]:
    """Run every combination, `parallel` at a time."""
    from sim.lab.runner import Experiment, RunConfig

    sem = asyncio.Semaphore(max(1, parallel))
    cells: list[Cell] = []

    async def one(scen: str, pol: str | None, seed: int) -> None:
        async with sem:
            name = f"{Path(scen).stem}-{_policy_label(pol)}-s{seed}"
            cfg = RunConfig(scenario=scen, backend=backend, policy=pol, profile=profile, duration=duration,
                            seed=seed, out=out / name, metrics_port=None, live=False, plugins=tuple(plugins))
            echo(f"start  {name}")
            res = await Experiment(cfg, handle_signals=False).run()
            echo(f"done   {name}: {res.stopped_by}, contained {res.summary.get('contained')}")
            cells.append(Cell(res.summary.get("scenario") or Path(scen).stem, _policy_label(pol), seed,
                              res.summary, str(res.out)))

    await asyncio.gather(*(one(s, p, k) for s in scenarios for p in policies for k in seeds))
    cells.sort(key=lambda c: (c.scenario, c.policy, c.seed))
    return cells


def table(cells: Sequence[Cell]) -> list[dict[str, Any]]:
    """One row per (scenario, policy), aggregated over its seeds (sim.report.sweep).
    A pure function of the cells: the same cells give the same rows, wherever they ran."""
    from sim.report.sweep import aggregate

    groups: dict[tuple[str, str], list[Cell]] = {}
    for c in cells:
        groups.setdefault((c.scenario, c.policy), []).append(c)
    return [{"scenario": scen, "policy": pol, **aggregate(c.summary for c in cs)}
            for (scen, pol), cs in sorted(groups.items())]


def run_rows(cells: Sequence[Cell]) -> list[dict[str, Any]]:
    """One row per run (pure, like `table`): what it was, whether it was contained, which
    actions it took, and why it was or was not contained (sim.report.sweep.why)."""
    from sim.report.sweep import actions_text, why

    rows = []
    for c in sorted(cells, key=lambda c: (c.scenario, c.policy, c.seed, c.run_dir)):
        s = c.summary
        rows.append({"scenario": c.scenario, "policy": c.policy, "seed": c.seed,
                     "contained": s.get("contained"), "escapes": len(s.get("escaped") or ()),
                     "incidents": len(s.get("incidents") or ()), "actions": actions_text(s),
                     "why": why(s), "run_dir": c.run_dir})
    return rows


def write_table(rows: Sequence[dict[str, Any]], out: Path,
                runs: Sequence[dict[str, Any]] = ()) -> tuple[Path, Path]:
    """sweep.csv (the aggregate rows, machine-readable keys), runs.csv (one row per run)
    and sweep.html (both tables, readable headers, links to each run's report) in `out`."""
    from sim.report.sweep import render_sweep_html

    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "sweep.csv"
    _write_csv(csv_path, rows, ["scenario", "policy"])
    _write_csv(out / "runs.csv", runs, ["scenario", "policy", "seed"])
    html_path = out / "sweep.html"
    html_path.write_text(render_sweep_html(rows, runs, base=out), encoding="utf-8")
    return csv_path, html_path


def _write_csv(path: Path, rows: Sequence[dict[str, Any]], default_cols: list[str]) -> None:
    cols = list(rows[0].keys()) if rows else default_cols
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else v) for k, v in r.items()})
