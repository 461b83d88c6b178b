"""`runaway` commands of this area (filled in by the area's issue)."""

import click


def register(group: click.Group) -> None:
    """Adds this area's commands to the `runaway` group."""
