"""`runaway report`: rebuild a run's scorecard and report from its trace."""

from __future__ import annotations

from pathlib import Path

import click


def register(group: click.Group) -> None:
    """Adds this area's commands to the `runaway` group."""
    register_report(group)


def register_report(group: click.Group) -> None:
    """`runaway report RUN_DIR`: rebuild summary.json and report.html from trace.jsonl."""

    @group.command("report")
    @click.argument("run_dir", type=click.Path(path_type=Path))
    @click.option("--benign/--not-benign", default=None,
                  help="Score as a benign control (every firing verdict is a false alarm). "
                       "Default: the trace's meta line says, else scenario == benign.")
    def report_cmd(run_dir: Path, benign: bool | None) -> None:
        """Rebuild summary.json and report.html in RUN_DIR from its trace.jsonl (RUN_DIR may
        also be the trace file itself)."""
        from sim.report import REPORT_NAME, SUMMARY_NAME, build_report, trace_path

        card = build_report(run_dir, benign=benign)
        out = trace_path(run_dir).parent
        click.echo(card["headline"])
        click.echo(f"scorecard: {out / SUMMARY_NAME}")
        click.echo(f"report:    {out / REPORT_NAME}")
