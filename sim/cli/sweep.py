"""`runaway sweep`: scenarios x policies x seeds, run live here or on a Ray cluster, or
replayed from recorded runs, into one table."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import click

from policies.errors import RunawayError

from . import SECONDS, BackendChoice, positive
from .policy import load_plugins, plugin_option


@click.command("sweep")
@click.option("--scenario", "scenarios", multiple=True, help="A scenario to run (repeatable; default: novel).")
@click.option("--policy", "policies", multiple=True, type=click.Path(dir_okay=False, exists=True),
              help="A policy file (repeatable; default: the shipped default policy).")
@click.option("--seeds", default="0", show_default=True, help="Seeds, e.g. 0,1,2 or 0-4.")
@click.option("--duration", type=SECONDS, default=30.0, show_default=True,
              help="How long each run lasts: seconds, or 45s, 1m.")
@click.option("--profile", type=click.Choice(["novel", "laptop", "ci"]), default="ci", show_default=True)
@click.option("--backend", type=BackendChoice(), default="auto", show_default=True)
@click.option("--parallel", type=int, default=None, help="Runs at once, 1 or more (default: as many as the host's CPUs fit).")
@click.option("--replay", "replay", multiple=True, type=click.Path(exists=True),
              help="Run nothing: re-evaluate the policies over this recorded run dir or trace, or every "
                   "run dir in this directory (repeatable).")
@click.option("--cluster", default=None, metavar="ADDRESS",
              help="Run the cells as Ray tasks on the Ray cluster at ADDRESS (host:port, ray://host:port, "
                   "or auto for the one running here); needs runaway[cluster]. See docs/scale.md.")
@click.option("--file-sd", "file_sd", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Keep a Prometheus file_sd target list of every running cell's exporter in this file.")
@click.option("--metrics-host", default="127.0.0.1", show_default=True,
              help="Where each cell's exporter binds (with --file-sd); 0.0.0.0 on a cluster, so Prometheus reaches it.")
@click.option("--progress/--plain", "bar", default=None,
              help="A live progress bar or plain lines (default: a bar on a terminal).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the runs and sweep.csv / sweep.html go (default runs/sweep-<utc-stamp>/).")
@plugin_option
def sweep_cmd(scenarios, policies, seeds, duration, profile, backend, parallel, replay, cluster,  # type: ignore[no-untyped-def]
              file_sd, metrics_host, bar, out, plugins):
    """Scenarios x policies x seeds in one table (CSV and HTML): contained rate, escapes,
    median time to detect and to contain, usefulness, false alarms; and one row per run
    with why it was or was not contained (runs.csv, sweep.html).

    With --cluster, every cell runs on a node of a Ray cluster that declares the `docker`
    resource; the run directories come back here, and the tables are the ones a local
    sweep gives. A cell whose node is lost runs again elsewhere (the `retried` column).
    """
    import os

    from sandbox import PROFILES
    from sim.lab.runner import _stamp
    from sim.lab.sweep import (MAX_CELLS, LocalExecutor, Progress, TargetList, check_inputs, expand_run_dirs,
                               live_sweep, run_rows, table, write_table)
    from sim.report.sweep import HEADERS, text_table

    load_plugins(plugins)
    pols = list(policies) or [None]
    out = out or Path("runs") / f"sweep-{_stamp()}"
    scens = list(scenarios) or ["novel"]
    traces = list(expand_run_dirs([Path(r) for r in replay]))
    if not replay:
        seed_list = _parse_seeds(seeds)
        positive("--duration", duration)
        n_cells = len(seed_list) * len(pols) * max(1, len(scenarios))
        if n_cells > MAX_CELLS:
            raise RunawayError(f"{n_cells} runs is more than a sweep runs ({MAX_CELLS} at most)", field="--seeds")
        if parallel is not None and parallel < 1:
            raise RunawayError(f"expected at least 1 run at once, got {parallel}", field="--parallel")
        check_inputs(scens, pols)
        if parallel is None:
            cap = PROFILES[profile].cpus or 1.0
            parallel = max(1, int(len(os.sched_getaffinity(0)) // cap) - 1)
    if cluster is not None:
        from sim.lab.cluster import RayExecutor

        executor = RayExecutor(cluster)
    else:
        executor = LocalExecutor(parallel or 1)
    total = len(traces) if replay else len(scens) * len(pols) * len(seed_list)
    watchers: list = [_SweepBar(total) if (bar if bar is not None else _isatty()) else _SweepLines()]
    if file_sd is not None:
        watchers.append(TargetList(file_sd))
    progress = Progress(total, watchers)
    sig = 0

    async def interruptible() -> list:
        # Ctrl-C, SIGTERM or SIGHUP cancel the runs under way (each closes its sandbox);
        # the table of the runs already done is on disk (live_sweep rewrites it as they end).
        nonlocal sig
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()

        def stop(s: int) -> None:
            nonlocal sig
            sig = sig or s
            task.cancel()  # type: ignore[union-attr]

        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(s, stop, s)
        return await live_sweep(scens, pols, seed_list, out=out, duration=duration, profile=profile,
                                backend=backend, executor=executor, progress=progress,
                                exporters=file_sd is not None, metrics_host=metrics_host, plugins=plugins)

    try:
        if replay:
            cells = executor.replay(traces, pols, progress, out=out, plugins=tuple(plugins))
        else:
            try:
                cells = asyncio.run(interruptible())
            except asyncio.CancelledError:
                if not sig:
                    raise
                click.echo(f"runaway: interrupted; the runs that finished are in {out / 'sweep.csv'}", err=True)
                raise click.exceptions.Exit(128 + sig) from None
    finally:
        for w in watchers:
            getattr(w, "close", lambda: None)()
        getattr(executor, "close", lambda: None)()
    rows = table(cells)
    runs = run_rows(cells)
    csv_path, html_path = write_table(rows, out, runs)
    from sim.report.index import refresh_index

    refresh_index(out.parent)
    keep = ["scenario", "policy", "runs", "contained_rate", "escapes", "undetected_incidents",
            "median_time_to_detect_s", "median_time_to_contain_s"] + (["retried"] if rows and "retried" in rows[0] else [])
    click.echo(text_table([{k: r[k] for k in keep} for r in rows], HEADERS))
    click.echo("")
    click.echo(text_table([{k: r[k] for k in ("scenario", "policy", "seed", "contained", "why")} for r in runs]))
    click.echo(f"\ntable: {csv_path}  {html_path}  (one row per run: {out / 'runs.csv'})")
    if progress.failed:
        for name, why in progress.failed.items():
            click.echo(f"failed {name}: {why}", err=True)
        raise click.exceptions.Exit(1)


def _isatty() -> bool:
    import sys

    return sys.stdout.isatty()


class _SweepLines:
    """A sweep's progress as plain lines (not a terminal, or --plain)."""

    def started(self, p, name: str, node: str) -> None:  # type: ignore[no-untyped-def]
        click.echo(f"start  {name}" + (f" on {node}" if node else ""))

    def finished(self, p, name: str, cell) -> None:  # type: ignore[no-untyped-def]
        s = getattr(cell, "summary", None) or {}
        tail = f": contained {s.get('contained')}" if "contained" in s else ""
        click.echo(f"done   {name}{tail}  [{p.done}/{p.total} done, {len(p.running)} running, {len(p.failed)} failed]")

    def failed(self, p, name: str, why: str) -> None:  # type: ignore[no-untyped-def]
        click.echo(f"FAILED {name}: {why}")

    def retrying(self, p, name: str, why: str) -> None:  # type: ignore[no-untyped-def]
        click.echo(f"retry  {name}: its node was lost ({why})")


class _SweepBar:
    """A sweep's progress as a live bar: cells done, running, failed (and retried)."""

    def __init__(self, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
                             TimeElapsedColumn(), transient=False)
        self._task = self._bar.add_task("sweep", total=total, status="")
        self._bar.start()

    def _update(self, p) -> None:  # type: ignore[no-untyped-def]
        status = f"done {p.done}  running {len(p.running)}  failed {len(p.failed)}"
        if p.retried:
            status += f"  retried {len(p.retried)}"
        self._bar.update(self._task, completed=p.done + len(p.failed), status=status)

    def started(self, p, name: str, node: str) -> None:  # type: ignore[no-untyped-def]
        self._update(p)

    def finished(self, p, name: str, cell) -> None:  # type: ignore[no-untyped-def]
        self._update(p)

    def failed(self, p, name: str, why: str) -> None:  # type: ignore[no-untyped-def]
        self._bar.console.print(f"failed {name}: {why}")
        self._update(p)

    def retrying(self, p, name: str, why: str) -> None:  # type: ignore[no-untyped-def]
        self._bar.console.print(f"retry  {name}: its node was lost ({why})")
        self._update(p)

    def close(self) -> None:
        self._bar.stop()


def _parse_seeds(text: str) -> list[int]:
    from sim.lab.sweep import MAX_CELLS

    ranges: list[range] = []
    try:
        for part in text[:1000].split(","):
            part = part.strip()
            if "-" in part:
                a, b = part.split("-", 1)
                ranges.append(range(int(a), int(b) + 1))
            elif part:
                ranges.append(range(int(part), int(part) + 1))
    except ValueError:
        raise RunawayError(f"expected seeds like 0,1,2 or 0-4, got {text[:80]!r}", field="--seeds") from None
    # Counted before any list is made: `0-100000000` must be refused, not built.
    count = sum(len(r) for r in ranges)
    if count > MAX_CELLS:
        raise RunawayError(f"{count} seeds is more than a sweep runs ({MAX_CELLS} at most)", field="--seeds")
    seeds = [k for r in ranges for k in r]
    if not seeds:
        raise RunawayError("expected at least one seed", field="--seeds")
    if any(not 0 <= k < 2**32 for k in seeds):
        raise RunawayError("expected seeds from 0 to 4294967295", field="--seeds")
    return seeds


def register(group: click.Group) -> None:
    """Adds sweep to the `runaway` group."""
    group.add_command(sweep_cmd)
