"""The `runaway` command line.

Each command (or group of commands) registers itself from a module named after it: run.py
(run, demo), sweep.py, report.py, policy.py, web.py, scenarios.py, sandbox.py. The option
types they share are here. Every user mistake is a `RunawayError`: one line on stderr, exit 2.
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


def positive(name: str, value: float | None) -> None:
    import math

    if value is not None and not (math.isfinite(value) and value > 0):  # nan > 0 is False too
        raise RunawayError(f"expected a positive number, got {value}", field=name)


def _register() -> None:
    from . import policy, report, run, sandbox, scenarios, sweep, web  # noqa: F401  (each adds its commands)

    for mod in (policy, web, scenarios, sandbox, report, run, sweep):
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
