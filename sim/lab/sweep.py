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
import io
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

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
# A live sweep of more runs than this is refused before anything starts (a typo such as
# `--seeds 0-100000000` would otherwise build a grid that fills the host's memory).
MAX_CELLS = 10_000


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


def expand_run_dirs(paths: Iterable[Path]) -> Iterable[Path]:
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
    for d in expand_run_dirs(run_dirs):
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
    plugins: tuple[str, ...] = ()  # modules registering Python guards (importable where the cell runs)


async def run_cell(job: CellJob, settings: LiveSettings, out: Path, *,
                   on_serving: Callable[[str, int, dict[str, str]], None] | None = None) -> Cell:
    """The cell function: one experiment, its run directory `out / job.name`. Every
    executor runs this, here or on a cluster node. `on_serving(host, port, labels)` is
    called once the run's exporter listens (only with `settings.exporters`)."""
    from sim.lab.runner import Experiment, RunConfig

    cfg = RunConfig(scenario=job.scenario, backend=settings.backend, policy=job.policy, profile=settings.profile,
                    duration=settings.duration, seed=job.seed, out=out / job.name,
                    metrics_host=settings.metrics_host, metrics_port=0 if settings.exporters else None, live=False,
                    plugins=tuple(settings.plugins))
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

    def replay(self, traces: Sequence[Path], policies: Sequence[str | None], progress: Progress, *,
               out: Path | None = None, plugins: Sequence[str] = ()) -> list[Cell]:
        """Replay here (`plugins` are imported by the caller, in this process)."""
        cells = []
        for trace in traces:
            progress.started(str(trace))
            got = replay_sweep([trace], policies, out=out)
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


class _TablesAsCellsEnd:
    """Rewrites the tables in `out` as each cell finishes, so an interrupted sweep keeps
    what it did."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.cells: list[Cell] = []

    def finished(self, _progress: Progress, _name: str, cell: Cell) -> None:
        self.cells.append(cell)
        write_table(table(self.cells), self.out, run_rows(self.cells))


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
                     metrics_host: str = "127.0.0.1", plugins: Sequence[str] = ()) -> list[Cell]:
    """Run every combination through `executor` (default: this host, `parallel` at a time)."""
    jobs = jobs_of(scenarios, policies, seeds)
    executor = executor or LocalExecutor(parallel)
    progress = progress or Progress(len(jobs))
    settings = LiveSettings(duration, profile, backend, exporters=exporters, metrics_host=metrics_host,
                            plugins=tuple(plugins))
    progress.watchers.append(_TablesAsCellsEnd(out))
    cells = await executor.live(jobs, settings, out, progress)
    cells.sort(key=lambda c: (c.scenario, c.policy, c.seed))
    return cells


def table(cells: Sequence[Cell]) -> list[dict[str, Any]]:
    """One row per (scenario, policy), aggregated over its seeds (sim.report.sweep).
    A pure function of the cells: the same cells give the same rows, wherever they ran.
    When a cluster lost a node under some cells, a `retried` column counts them per row."""
    from sim.report.sweep import aggregate

    groups: dict[tuple[str, str], list[Cell]] = {}
    for c in cells:
        groups.setdefault((c.scenario, c.policy), []).append(c)
    retries = any(c.attempts > 1 for c in cells)
    return [{"scenario": scen, "policy": pol, **aggregate(c.summary for c in cs),
             **({"retried": sum(c.attempts > 1 for c in cs)} if retries else {})}
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
        if any(x.attempts > 1 for x in cells):  # a cluster lost the node under some
            rows[-1]["attempts"] = c.attempts
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
    _write_atomic(html_path, render_sweep_html(rows, runs, base=out))
    return csv_path, html_path


def _write_csv(path: Path, rows: Sequence[dict[str, Any]], default_cols: list[str]) -> None:
    cols = list(rows[0].keys()) if rows else default_cols
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    _write_atomic(path, buf.getvalue())


def _write_atomic(path: Path, text: str) -> None:
    # Rewritten after every run: a reader (or an interrupt) never sees half a table, and a
    # failed write leaves no temp file.
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8", newline="")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
