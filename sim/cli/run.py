"""`runaway run` and `runaway demo`: running one experiment."""

from __future__ import annotations

import asyncio
import shlex
from pathlib import Path

import click

from policies.errors import RunawayError

from . import SECONDS, BackendChoice, positive
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
    positive("--duration", duration)
    positive("--cpus", cpus)
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

    positive("--duration", duration)
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


def register(group: click.Group) -> None:
    """Adds run and demo to the `runaway` group."""
    group.add_command(run_cmd)
    group.add_command(demo_cmd)
