"""The `runaway` command line.

Each area registers its commands from its own module (policy.py, web.py, scenarios.py,
sandbox.py, report.py, run.py: run, demo and sweep). Every user mistake is a `RunawayError`: one line on stderr, exit 2.
"""

from __future__ import annotations

import errno
import sys

import click

from policies.errors import RunawayError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="runaway")
def cli() -> None:
    """runaway: a containment lab for runaway AI agents.

    Run a scripted self-improving learner in a capped sandbox against a mock web, watch it,
    and let guard policies detect and contain it.
    """


class BackendChoice(click.Choice):
    """`auto` or the name of a registered sandbox backend (sandbox/registry.py), read from
    the registry when the option is used, so a new backend needs no edit here."""

    def __init__(self) -> None:
        super().__init__(["auto"])

    @property  # type: ignore[override]
    def choices(self) -> tuple[str, ...]:
        from sandbox.registry import backend_names

        return ("auto", *backend_names())

    @choices.setter
    def choices(self, _: object) -> None:
        pass  # click sets it in __init__; the registry is the source


def _register() -> None:
    from . import policy, report, run, sandbox, scenarios, web  # noqa: F401  (each adds its commands)

    for mod in (policy, web, scenarios, sandbox, report, run):
        mod.register(cli)


_ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EMFILE})


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # type: ignore[no-untyped-def]
    click.echo(f"runaway: warning: {message}", err=True)


def main(argv: list[str] | None = None) -> None:
    import warnings

    warnings.showwarning = _show_warning  # one line, like errors; no source excerpt
    _register()
    try:
        rv = cli.main(args=argv, prog_name="runaway", standalone_mode=False)
    except RunawayError as e:
        click.echo(f"runaway: {e}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("runaway: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(2 if e.exit_code in (1, 2) else e.exit_code)
    except KeyboardInterrupt:
        click.echo("runaway: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    except OSError as e:
        if e.errno not in _ENVIRONMENT_ERRNOS:
            raise
        # The host, not the input, failed (a full disk, a read-only directory): one line.
        where = f"{e.filename}: " if e.filename else ""
        click.echo(f"runaway: {where}{e.strerror}", err=True)
        sys.exit(2)
    # With standalone_mode off, click hands back ctx.exit(code) as the return value.
    sys.exit(rv if isinstance(rv, int) else 0)
