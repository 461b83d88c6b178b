"""`runaway scenarios`: list the shipped scenarios with their lessons, show one, validate a file."""

from __future__ import annotations

import click


def _when(w: object) -> str:
    if isinstance(w, list):
        return " or ".join(_when(x) for x in w)
    if isinstance(w, dict):
        parts = []
        for k, v in w.items():
            parts.append(f"after {v:g}s" if k == "after" else f"{k} {v}")
        return " and ".join(parts) or "at once"
    return str(w)


def register(group: click.Group) -> None:
    """Adds `runaway scenarios` and `runaway scenarios show` to the `runaway` group."""

    @group.group("scenarios", invoke_without_command=True)
    @click.pass_context
    def scenarios(ctx: click.Context) -> None:
        """List the shipped learner scenarios, each with its one-line summary."""
        if ctx.invoked_subcommand is not None:
            return
        from sim.scenarios import list_scenarios

        items = list_scenarios()
        width = max(len(s.name) for s in items)
        for s in items:
            click.echo(f"{s.name:<{width}}  {s.summary}")
        click.echo("\n`runaway scenarios show NAME` prints one with its lesson; docs/scenarios.md has the language.")

    @scenarios.command("show")
    @click.argument("name_or_file")
    @click.option("--json", "as_json", is_flag=True, help="Print what the learner receives (RUNAWAY_SCENARIO).")
    def show(name_or_file: str, as_json: bool) -> None:
        """Show a scenario (a catalog NAME or a .yaml FILE, validated first) with its lesson."""
        from sim.scenarios import load_scenario

        s = load_scenario(name_or_file)  # a bad file raises ScenarioError: one line, exit 2
        if as_json:
            click.echo(s.to_json())
            return
        click.echo(f"{s.name}: {s.summary}")
        click.echo(f"  file:     {s.path}")
        click.echo(f"  watch:    {s.lesson.watch}")
        click.echo(f"  guard:    {s.lesson.guard}")
        click.echo(f"  exercise: {s.lesson.exercise}")
        click.echo("  phases:")
        click.echo(f"    settings (at start): {', '.join(s.settings) or 'defaults'}")
        for p in s.phases:
            what = ", ".join(f"attempts {', '.join(a['name'] for a in v)}" if k == "attempts" else k
                             for k, v in p.do.items())
            click.echo(f"    {p.name} (when {_when(p.when)}): {what}")
        click.echo("\n" + s.source.rstrip())
