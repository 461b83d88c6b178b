"""The user-mistake error shared by every runaway package.

Each package subclasses `RunawayError` for its own mistakes (a bad policy, a bad
scenario, a refused sandbox spec). The CLI prints `str(error)` as one line on
stderr and exits with status 2; a traceback is never shown for these.
"""

from __future__ import annotations


class RunawayError(Exception):
    """A mistake in user input, carrying where it is.

    >>> str(RunawayError("expected a duration like 5s", file="p.yaml", line=4, field="guards[0].for"))
    'p.yaml:4: guards[0].for: expected a duration like 5s'
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.field = field

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = str(self.file)
            if self.line is not None:
                where += f":{self.line}"
            where += ": "
        if self.field:
            where += f"{self.field}: "
        # One line, whatever a file's keys or values hold: a newline in them is shown escaped.
        return f"{where}{self.message}".replace("\r", "\\r").replace("\n", "\\n")


class PolicyError(RunawayError):
    """A policy file or policy object that cannot be used."""


class TraceError(RunawayError):
    """A trace line that cannot be read (not JSON, unknown type, time going backwards)."""
