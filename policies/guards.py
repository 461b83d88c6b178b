"""Guard kinds at run time now live one per module in policies/kinds/ (threshold, event,
deception, python), found through the registry in policies/kinds/base.py. This module
keeps the old names importable."""

from .kinds.base import FIRING, INACTIVE, INF, PENDING, Conditional, GuardState, Latching, kind_of
from .kinds.deception import DeceptionGuard
from .kinds.event import EventGuard, match_categories
from .kinds.python import Guard, PythonGuard, guard_types, register_guard
from .kinds.threshold import AggregateGuard, ThresholdGuard, signal_getter

__all__ = [
    "FIRING", "INACTIVE", "INF", "PENDING", "AggregateGuard", "Conditional", "DeceptionGuard",
    "EventGuard", "Guard", "GuardState", "Latching", "PythonGuard", "ThresholdGuard", "build",
    "guard_types", "match_categories", "register_guard", "signal_getter",
]


def build(spec):  # type: ignore[no-untyped-def]
    """The run-time guard for a guard spec (its kind builds it)."""
    return kind_of(spec).build(spec)
