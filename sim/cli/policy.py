"""`runaway replay`, `runaway policy check` and `runaway rules`: the policy commands."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from policies import Engine, default_policy_path, load_policy, read_trace
from policies.engine import replay_steps
from policies.errors import PolicyError
from policies.kinds.python import import_plugins
from policies.spec import Policy


def load_plugins(modules: tuple[str, ...]) -> None:
    """Import modules that register Python guards (policies.register_guard)."""
    try:
        import_plugins(modules)
    except PolicyError as e:
        raise click.BadParameter(e.message, param_hint="--plugin") from None


def _load(path: str | None) -> Policy:
    return load_policy(path or default_policy_path())


plugin_option = click.option(
    "--plugin", "plugins", multiple=True, metavar="MODULE",
    help="Import MODULE first (it registers Python guards); repeatable.")


@click.command("replay")
@click.argument("trace", type=click.Path())
@click.option("--policy", "policy_file", type=click.Path(dir_okay=False), default=None,
              help="Policy YAML (default: the shipped default policy).")
@click.option("--format", "fmt", type=click.Choice(["text", "jsonl"]), default="text", show_default=True,
              help="text: a line per verdict and the actions applied; jsonl: one JSON object per verdict.")
@plugin_option
def replay_cmd(trace: str, policy_file: str | None, fmt: str, plugins: tuple[str, ...]) -> None:
    """Replay TRACE (a run directory or its trace.jsonl) through a policy and print the verdicts.

    The same verdicts a live run with that policy would have given. jsonl lines are
    {"t", "guard", "state", "action", "severity"}.
    """
    from sim.report import trace_path

    load_plugins(plugins)
    policy = _load(policy_file)
    trace = str(trace_path(trace))  # a run directory works as it does for `report` and `sweep --replay`
    eng = Engine(policy)
    out = click.get_text_stream("stdout")
    n_obs = n_verdicts = 0
    fired: dict[str, int] = {}
    for rec, verdicts in replay_steps(read_trace(trace), eng):
        if verdicts is None:
            continue
        n_obs += 1
        for v in verdicts:
            n_verdicts += 1
            if v.state == "firing":
                fired[v.guard] = fired.get(v.guard, 0) + 1
            if fmt == "jsonl":
                out.write(json.dumps({"t": v.t, "guard": v.guard, "state": v.state, "action": v.action,
                                      "severity": v.severity}) + "\n")
            else:
                out.write(f"{v.t:10.3f}  {v.state:<8}  {v.guard:<20} {v.action:<10} {v.severity:<8}  {v.reason}\n")
        if fmt == "text" and eng.actions:
            out.write(f"{rec.t:10.3f}  {'apply':<8}  {', '.join(eng.actions)}\n")
    if fmt == "text":
        summary = ", ".join(f"{g} x{n}" for g, n in fired.items()) or "no guard fired"
        out.write(f"# {n_obs} observations, {n_verdicts} verdicts; fired: {summary}\n")
    out.flush()


@click.group("policy")
def policy_group() -> None:
    """Guard policies: validate and inspect policy files."""


@policy_group.command("check")
@click.argument("file", type=click.Path(dir_okay=False), required=False)
@plugin_option
def check_cmd(file: str | None, plugins: tuple[str, ...]) -> None:
    """Validate FILE (default: the shipped default policy) and print its guards."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    load_plugins(plugins)
    policy = _load(file)
    Engine(policy)  # builds every guard, so a Python guard's own setup is checked too
    table = Table(title=Text(f"{policy.file}: {len(policy.guards)} guards"), title_justify="left")
    for col in ("guard", "kind", "when", "action", "severity", "line"):
        table.add_column(col, overflow="fold")
    for g in policy.guards:
        name = g.name if g.enabled else f"{g.name} (disabled)"
        cells = (name, g.kind, g.describe(), g.action, g.severity, str(g.line or ""))  # type: ignore[attr-defined]
        table.add_row(*(Text(c) for c in cells))  # Text: no markup, `[blocked, unknown]` stays
    console = Console(width=max(100, Console().width))
    console.print(table)
    console.print(f"ok: {policy.file} (sha256 {policy.sha256[:12]})", highlight=False)


@click.command("rules")
@click.argument("file", type=click.Path(dir_okay=False), required=False)
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Write the rules to this file instead of standard output.")
@click.option("--interval", default=None, metavar="DURATION",
              help="Evaluation interval of the rule group (e.g. 250ms to match the sampler).")
@plugin_option
def rules_cmd(file: str | None, output: str | None, interval: str | None, plugins: tuple[str, ...]) -> None:
    """Print FILE's guards (default: the shipped policy) as Prometheus alerting rules.

    Threshold and aggregate guards export exactly; windowed event guards approximately;
    the rest are listed as `# skipped:` comments with the reason.
    """
    from policies.promql import rules_yaml
    from policies.spec import format_duration, parse_duration

    load_plugins(plugins)
    if interval is not None:
        try:
            interval = format_duration(parse_duration(interval))
        except ValueError:
            raise PolicyError(f"expected a duration like 250ms or 1s, got {interval!r}", field="--interval") from None
    text = rules_yaml(_load(file), interval=interval)
    if output:
        try:
            Path(output).write_text(text, encoding="utf-8")
        except OSError as e:
            raise PolicyError(f"cannot write rules: {e.strerror}", file=output) from None
        click.echo(f"wrote {output}", err=True)
    else:
        sys.stdout.write(text)


def register(group: click.Group) -> None:
    """Adds this area's commands to the `runaway` group."""
    group.add_command(replay_cmd)
    group.add_command(policy_group)
    group.add_command(rules_cmd)
