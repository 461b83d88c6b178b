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
from typing import Any, Callable, Iterable, Sequence

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
    attempts: int = 1  # more than 1: the node it ran on was lost and it ran again elsewhere
    node: str = ""     # where it ran ("" for this host)


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


@dataclass(frozen=True)
class CellJob:
    """One combination of a live sweep, as the cell function needs it."""

    scenario: str
    policy: str | None
    seed: int

    @property
    def name(self) -> str:
        """The run directory's name inside the sweep directory."""
        return f"{Path(self.scenario).stem}-{_policy_label(self.policy)}-s{self.seed}"


@dataclass(frozen=True)
class LiveSettings:
    """What every cell of a live sweep shares. `exporters`: each cell serves its metrics
    on `metrics_host` (a free port), for a file_sd target list."""

    duration: float
    profile: str | None
    backend: str
    exporters: bool = False
    metrics_host: str = "127.0.0.1"


async def run_cell(job: CellJob, settings: LiveSettings, out: Path, *,
                   on_serving: Callable[[str, int, dict[str, str]], None] | None = None) -> Cell:
    """The cell function: one experiment, its run directory `out / job.name`. Every
    executor runs this, here or on a cluster node. `on_serving(host, port, labels)` is
    called once the run's exporter listens (only with `settings.exporters`)."""
    from sim.lab.runner import Experiment, RunConfig

    cfg = RunConfig(scenario=job.scenario, backend=settings.backend, policy=job.policy, profile=settings.profile,
                    duration=settings.duration, seed=job.seed, out=out / job.name,
                    metrics_host=settings.metrics_host, metrics_port=0 if settings.exporters else None, live=False)
    exp = Experiment(cfg, handle_signals=False)
    task = asyncio.ensure_future(exp.run())
    if on_serving is not None:
        # The exporter's port is known only once the run has bound it.
        while not task.done() and exp.metrics_port is None:
            await asyncio.sleep(0.05)
        if exp.metrics_port is not None:
            on_serving(settings.metrics_host, exp.metrics_port, {"run": exp.run_id, "scenario": exp.scenario_name})
    res = await task
    return Cell(res.summary.get("scenario") or Path(job.scenario).stem, _policy_label(job.policy), job.seed,
                res.summary, str(res.out))


class Progress:
    """What a sweep tells its watchers as cells move: started (where), exporter up,
    finished, failed, retried. Executors call it; the CLI's bar and the file_sd target
    list listen."""

    def __init__(self, total: int, watchers: Sequence[Any] = ()) -> None:
        self.total = total
        self.running: dict[str, str] = {}
        self.done = 0
        self.failed: dict[str, str] = {}
        self.retried: dict[str, str] = {}
        self.watchers = list(watchers)

    def _tell(self, what: str, *args: Any) -> None:
        for w in self.watchers:
            fn = getattr(w, what, None)
            if fn is not None:
                fn(self, *args)

    def started(self, name: str, node: str = "") -> None:
        self.running[name] = node
        self._tell("started", name, node)

    def serving(self, name: str, host: str, port: int, labels: dict[str, str]) -> None:
        self._tell("serving", name, host, port, labels)

    def finished(self, name: str, cell: Cell) -> None:
        self.running.pop(name, None)
        self.done += 1
        self._tell("finished", name, cell)

    def failed_cell(self, name: str, why: str) -> None:
        self.running.pop(name, None)
        self.failed[name] = why
        self._tell("failed", name, why)

    def retrying(self, name: str, why: str) -> None:
        self.running.pop(name, None)
        self.retried[name] = why
        self._tell("retrying", name, why)


class TargetList:
    """A Prometheus file_sd target list of every running cell's exporter, labelled with
    its run and scenario. Rewritten whole (write, then rename) as exporters come and go,
    so Prometheus never reads half a file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._targets: dict[str, dict[str, Any]] = {}
        self._write()

    def _write(self) -> None:
        import json
        import os

        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(list(self._targets.values()), indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)

    def serving(self, _progress: Progress, name: str, host: str, port: int, labels: dict[str, str]) -> None:
        self._targets[name] = {"targets": [f"{_url_host(host)}:{port}"], "labels": dict(labels)}
        self._write()

    def _gone(self, _progress: Progress, name: str, *_rest: Any) -> None:
        if self._targets.pop(name, None) is not None:
            self._write()

    finished = failed = retrying = _gone


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class LocalExecutor:
    """Runs the cells on this host, `parallel` at a time."""

    def __init__(self, parallel: int) -> None:
        self.parallel = max(1, parallel)

    async def live(self, jobs: Sequence[CellJob], settings: LiveSettings, out: Path, progress: Progress) -> list[Cell]:
        sem = asyncio.Semaphore(self.parallel)
        cells: list[Cell] = []

        async def one(job: CellJob) -> None:
            async with sem:
                progress.started(job.name)
                on_serving = None
                if settings.exporters:
                    def on_serving(host: str, port: int, labels: dict[str, str]) -> None:
                        progress.serving(job.name, _reachable(host), port, labels)
                try:
                    cell = await run_cell(job, settings, out, on_serving=on_serving)
                except Exception as e:  # one cell's failure is reported; the others go on
                    progress.failed_cell(job.name, _why(e))
                    return
                cells.append(cell)
                progress.finished(job.name, cell)

        await asyncio.gather(*(one(j) for j in jobs))
        return cells

    def replay(self, traces: Sequence[Path], policies: Sequence[str | None], progress: Progress) -> list[Cell]:
        cells = []
        for trace in traces:
            progress.started(str(trace))
            got = replay_sweep([trace], policies)
            cells.extend(got)
            progress.finished(str(trace), got[0])
        return cells


def _reachable(host: str) -> str:
    """The address a scraper uses for an exporter bound to `host` (a wildcard bind is
    reached at this node's address)."""
    if host in ("0.0.0.0", "::", ""):
        import socket

        try:
            return socket.gethostbyname(socket.gethostname())
        except OSError:
            return "127.0.0.1"
    return host


def _why(e: BaseException) -> str:
    return (str(e) or type(e).__name__).splitlines()[0][:300]


def check_inputs(scenarios: Sequence[str], policies: Sequence[str | None]) -> None:
    """Load every scenario and policy once, so a mistake is one line before anything runs
    (here or on a cluster)."""
    from sim.scenarios import load_scenario

    for s in scenarios:
        load_scenario(s)
    for p in policies:
        if p is not None:
            load_policy(p)


def jobs_of(scenarios: Sequence[str], policies: Sequence[str | None], seeds: Sequence[int]) -> list[CellJob]:
    """Every combination, in the table's order."""
    return [CellJob(s, p, k) for s in scenarios for p in policies for k in seeds]


async def live_sweep(scenarios: Sequence[str], policies: Sequence[str | None], seeds: Sequence[int], *,
                     out: Path, duration: float, profile: str | None, backend: str, parallel: int = 1,
                     executor: Any = None, progress: Progress | None = None, exporters: bool = False,
                     metrics_host: str = "127.0.0.1") -> list[Cell]:
    """Run every combination through `executor` (default: this host, `parallel` at a time)."""
    jobs = jobs_of(scenarios, policies, seeds)
    executor = executor or LocalExecutor(parallel)
    progress = progress or Progress(len(jobs))
    settings = LiveSettings(duration, profile, backend, exporters=exporters, metrics_host=metrics_host)
    cells = await executor.live(jobs, settings, out, progress)
    cells.sort(key=lambda c: (c.scenario, c.policy, c.seed))
    return cells


def table(cells: Sequence[Cell]) -> list[dict[str, Any]]:
    """One row per (scenario, policy), aggregated over its seeds (sim.report.sweep). When
    a cluster lost a node under some cells, a `retried` column counts them per row."""
    from sim.report.sweep import aggregate

    groups: dict[tuple[str, str], list[Cell]] = {}
    for c in cells:
        groups.setdefault((c.scenario, c.policy), []).append(c)
    retries = any(c.attempts > 1 for c in cells)
    return [{"scenario": scen, "policy": pol, **aggregate(c.summary for c in cs),
             **({"retried": sum(c.attempts > 1 for c in cs)} if retries else {})}
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
