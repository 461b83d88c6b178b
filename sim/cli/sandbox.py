"""`runaway` commands of the sandbox area: selftest (and image, clean)."""

from __future__ import annotations

import asyncio
import json

import click


def register(group: click.Group) -> None:
    """Adds this area's commands to the `runaway` group."""
    _register_selftest(group)


# -- selftest --------------------------------------------------------------------------


def _register_selftest(group: click.Group) -> None:
    @group.command("selftest")
    @click.option("--backend", type=click.Choice(["auto", "docker", "process"]), default="auto",
                  show_default=True, help="Sandbox to test (auto: Docker when a daemon answers).")
    @click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
                  show_default=True, help="Output: a table, or one JSON object for machines.")
    @click.option("--attempt", "names", multiple=True, metavar="NAME",
                  help="Run only this attempt of the catalog (repeatable).")
    @click.pass_context
    def selftest(ctx: click.Context, backend: str, fmt: str, names: tuple[str, ...]) -> None:
        """Run the catalog of escape and escalation attempts in the sandbox; check each was
        contained and detected. Exit status 1 if any row fails."""
        from sim.selftest import run_selftest

        report = asyncio.run(run_selftest(backend, names=list(names) or None))
        if fmt == "json":
            click.echo(json.dumps(report.to_json(), ensure_ascii=False))
        else:
            click.echo(report.to_text())
        ctx.exit(0 if report.passed else 1)
