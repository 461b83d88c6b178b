"""`runaway run`, `runaway demo` and `runaway sweep`: running experiments."""

from __future__ import annotations

import asyncio
import re
import shlex
import signal
from pathlib import Path

import click

from policies.errors import RunawayError

from . import BackendChoice
from .policy import load_plugins, plugin_option


def _run(cfg, live):  # type: ignore[no-untyped-def]
    from sim.lab.runner import Experiment
    from sim.lab.view import make_view

    view = make_view(live, cfg.duration)
    return asyncio.run(Experiment(cfg, view=view).run())


def _print_result(res, *, headline: bool = True) -> None:  # type: ignore[no-untyped-def]
    from sim.lab.view import STOP_REASONS

    s = res.summary
    click.echo("")
    click.echo(f"run {res.run_id} ended: {STOP_REASONS.get(res.stopped_by, res.stopped_by)}")
    click.echo(f"  trace:   {res.out / 'trace.jsonl'}")
    click.echo(f"  summary: {res.out / 'summary.json'}")
    report = res.out / "report.html"
    click.echo(f"  report:  {report}" if report.exists() else f"  report:  not drawn (runaway report {res.out})")
    click.echo(f"  all runs: {res.out.parent / 'index.html'}")
    if headline and s and s.get("headline"):
        click.echo("")
        click.echo(s["headline"])  # the last line: what the run comes to, in one sentence


class Seconds(click.ParamType):
    """A command-line duration: the policy language's (`250ms`, `60s`, `2m`, `1m30s`) or
    bare seconds (`60`, `2.5`), as scenarios read them: one grammar everywhere."""

    name = "duration"

    def convert(self, value, param, ctx):  # type: ignore[no-untyped-def]
        from policies.yamlfile import parse_duration  # the one duration grammar

        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        try:
            return parse_duration(str(value), bare_seconds=True)
        except ValueError:
            flag = f"--{param.name.replace('_', '-')}" if param is not None and param.name else "duration"
            raise RunawayError(f"expected seconds or a duration like 250ms, 60s, 2m or 1m30s, got {value!r}",
                               field=flag) from None


SECONDS = Seconds()


def _positive(name: str, value: float | None) -> None:
    import math

    if value is not None and not (math.isfinite(value) and value > 0):  # nan > 0 is False too
        raise RunawayError(f"expected a positive number, got {value}", field=name)


def _port(name: str, value: int | None) -> None:
    if value is not None and not 0 <= value <= 65535:
        raise RunawayError(f"expected a port 0-65535, got {value}", field=name)


@click.command("run")
@click.argument("scenario", default="novel")
@click.option("--backend", type=BackendChoice(), default="auto", show_default=True,
              help="auto: Docker when a daemon answers, else the process fallback (not a security boundary).")
@click.option("--policy", "policy", type=click.Path(dir_okay=False), default=None,
              help="Guard policy YAML (default: the shipped default policy).")
@click.option("--no-guards", is_flag=True, help="Watch only: no guard evaluates, nothing is contained.")
@click.option("--profile", type=click.Choice(["novel", "laptop", "ci"]), default=None,
              help="Sandbox caps: novel 4 cpus/8g, laptop 1/1g, ci 0.5/256m (default: the largest that fits).")
@click.option("--cpus", type=float, default=None, help="Override the profile's CPU cap.")
@click.option("--memory", default=None, help="Override the profile's memory cap (e.g. 512m, 2g).")
@click.option("--duration", type=SECONDS, default=90.0, show_default=True,
              help="How long before the run stops: seconds, or 90s, 2m, 1m30s.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the mock web and the learner.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run directory (default runs/<utc-stamp>-<scenario>/).")
@click.option("--operator-stop-at", type=SECONDS, default=None, metavar="T",
              help="At T seconds, the operator asks the learner to stop (killed if it ignores it).")
@click.option("--metrics-port", type=int, default=9464, show_default=True,
              help="Prometheus exporter port on 127.0.0.1 (0: any free port).")
@click.option("--metrics-host", default="127.0.0.1", show_default=True, help="Exporter bind address.")
@click.option("--agent", default=None, metavar="CMD",
              help="Run your own agent command instead of the scripted learner (Python agents get the audit hook).")
@click.option("--agent-dir", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="Directory mounted read-only for --agent (its working directory).")
@click.option("--pages", type=int, default=None, help="Pages in the mock web (default: the scenario's).")
@click.option("--unsafe", is_flag=True, help="Admit a spec that admission refuses; recorded in the trace.")
@click.option("--live/--plain", "live", default=None, help="Live terminal view or plain lines (default: live on a terminal).")
@click.option("--report/--no-report", "report", default=True, show_default=True,
              help="Draw report.html at the end; --no-report writes summary.json only (`runaway report` draws it later).")
@plugin_option
def run_cmd(scenario, backend, policy, no_guards, profile, cpus, memory, duration, seed, out,  # type: ignore[no-untyped-def]
            operator_stop_at, metrics_port, metrics_host, agent, agent_dir, pages, unsafe, live, report, plugins):
    """Run SCENARIO (a catalog name or a YAML file) in a sandbox under guards.

    Leaves trace.jsonl, summary.json, report.html, learner.log and evidence/ in the run
    directory. Ctrl-C stops the run cleanly (the trace and report are still written).
    """
    from sim.lab.runner import RunConfig

    load_plugins(plugins)
    _positive("--duration", duration)
    _positive("--cpus", cpus)
    if pages is not None and pages < 1:
        raise RunawayError(f"expected at least 1 page, got {pages}", field="--pages")
    _port("--metrics-port", metrics_port)
    agent_argv = shlex.split(agent) if agent else None
    if agent is not None and not agent_argv:
        raise RunawayError("expected a command", field="--agent")
    cfg = RunConfig(
        scenario=scenario, backend=backend, policy=policy, guards=not no_guards, profile=profile, cpus=cpus,
        memory=memory, duration=duration, seed=seed, out=out, operator_stop_at=operator_stop_at,
        metrics_host=metrics_host, metrics_port=metrics_port, agent=agent_argv, agent_dir=agent_dir,
        unsafe=unsafe, pages=pages, live=live, plugins=plugins, report=report,
    )
    res = _run(cfg, live)
    _print_result(res)
    if res.stopped_by == "interrupted":  # 130 for Ctrl-C, 143 for SIGTERM, as shells expect
        raise click.exceptions.Exit(128 + (res.signal or 2))


@click.command("demo")
@click.option("--duration", type=SECONDS, default=90.0, show_default=True,
              help="How long the story runs: seconds, or 90s, 2m.")
@click.option("--live/--plain", "live", default=None, help="Live terminal view or plain lines.")
@click.option("--metrics-port", type=int, default=9464, show_default=True,
              help="Prometheus exporter port on 127.0.0.1, the one grafana/prometheus.yml scrapes (0: any free port).")
def demo_cmd(duration, live, metrics_port):  # type: ignore[no-untyped-def]
    """Set up and run the `novel` scenario on the best backend here, then say where the report is.

    Builds the learner image first when Docker answers and the image is missing.
    """
    from sandbox import docker_available
    from sim.lab.runner import RunConfig

    _positive("--duration", duration)
    _port("--metrics-port", metrics_port)
    backend = "process"
    if docker_available() is None:
        from sandbox.image import build_image

        click.echo("Docker answers: making sure the learner image is built (first time: a few minutes)...")
        build_image(log=click.echo)  # cached: returns at once when the image is there
        backend = "docker"
    else:
        click.echo("No Docker daemon answers: using the process sandbox, which is NOT a security boundary.")
    cfg = RunConfig(scenario="novel", backend=backend, duration=duration, metrics_port=metrics_port, live=live)
    res = _run(cfg, live)
    _print_result(res, headline=False)
    click.echo(f"\nOpen the report: {res.out / 'report.html'}")
    if res.summary.get("headline"):
        click.echo(res.summary["headline"])


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
        _positive("--duration", duration)
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
    """Adds run, demo and sweep to the `runaway` group."""
    group.add_command(run_cmd)
    group.add_command(demo_cmd)
    group.add_command(sweep_cmd)
