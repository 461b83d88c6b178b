"""The mock web's user-mistake error."""

from __future__ import annotations

from policies.errors import RunawayError


class WebError(RunawayError):
    """A bad mock web setting (seed, pages, port, fault rate); `field` names the option."""
