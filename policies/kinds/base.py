"""What every guard kind shares: the kind registry, and the state machines guards run on.

A guard kind is one object in one module (threshold.py, event.py, deception.py,
python.py): it says which keys make a YAML guard one of its kind, parses such a guard
into its spec, builds the run-time guard for a spec, and exports a spec as a Prometheus
alerting rule (or says why it cannot). The parser (policies/parse.py), the engine and
promql.py find kinds here, so a new kind is one module calling `register_kind`.

Run-time guards never read a clock: `t` always comes from the observation. Verdicts are
made only on state changes, which keeps the hot path (a sample that changes nothing) free
of allocations. A run-time guard says which observations it wants by its `route`:

- "samples": a threshold guard, stepped by the engine's generated sample function;
- "events": `event(e)` for events of its `categories()` (None: all), and `tick(t)` once
  an observation passes its `deadline`;
- "all": `observe(obs)` for every observation.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable

from ..model import Verdict
from ..yamlfile import format_duration

if TYPE_CHECKING:
    import yaml

    from ..spec import FieldReader, Fields, GuardSpec

INACTIVE, PENDING, FIRING = "inactive", "pending", "firing"
INF = math.inf

Rule = dict[str, Any]


class GuardKind:
    """One kind of guard: how it is written, run and exported (subclass per kind)."""

    name: ClassVar[str] = ""
    what: ClassVar[str] = ""  # "a threshold guard": in error messages
    hint: ClassVar[str] = ""  # "`signal` (threshold)": how to write one, for "cannot tell" errors
    keys: ClassVar[frozenset[str]] = frozenset()  # a guard with any of these keys is of this kind
    fields: ClassVar[tuple[str, ...]] = ()  # the fields it takes besides the common ones
    spec_types: ClassVar[tuple[type, ...]] = ()  # the spec values it parses into
    # Lower sniffs first, where a guard has keys of two kinds (`type` wins over `signal`).
    rank: ClassVar[int] = 10

    def claims(self, keys: Iterable[str]) -> bool:
        return bool(self.keys.intersection(keys))

    def parse(self, r: "FieldReader", node: "yaml.Node", path: str,
              fields: "Fields", common: dict[str, Any]) -> "GuardSpec":
        """The spec of one guard mapping (`common` holds name, action, severity, ...)."""
        raise NotImplementedError

    def build(self, spec: "GuardSpec") -> "GuardState":
        """The run-time guard for a spec of this kind."""
        raise NotImplementedError

    def promql(self, spec: "GuardSpec") -> tuple[Rule | None, str]:
        """The rule's `expr` and timing fields for this guard, or None and why there is none
        (promql.export_rule adds the name, labels and annotations)."""
        return None, f"{self.what} has no PromQL equivalent"


_KINDS: dict[str, GuardKind] = {}


def register_kind(kind: GuardKind | type[GuardKind]) -> GuardKind:
    """Make a guard kind known to the parser, the engine and the rules export; usable as a
    class decorator. A kind registered under an existing name replaces it."""
    obj = kind() if isinstance(kind, type) else kind
    if not obj.name:
        raise TypeError(f"{kind!r} has no name")
    _KINDS[obj.name] = obj
    return kind  # type: ignore[return-value]


def unregister_kind(name: str) -> None:
    """Forget a kind (tests that register their own remove it again)."""
    _KINDS.pop(name, None)


def kinds() -> list[GuardKind]:
    """The registered kinds, in registration order."""
    return list(_KINDS.values())


def kind_named(name: str) -> GuardKind:
    return _KINDS[name]


def kind_of(spec: Any) -> GuardKind:
    """The kind a spec value belongs to (TypeError if none)."""
    for k in _KINDS.values():
        if isinstance(spec, k.spec_types):
            return k
    raise TypeError(f"not a guard spec: {spec!r}")


def sniff(keys: Iterable[str]) -> GuardKind | None:
    """The kind a guard mapping with these keys is written as (None: none claims it)."""
    keys = set(keys)
    for k in sorted(_KINDS.values(), key=lambda k: k.rank):
        if k.claims(keys):
            return k
    return None


# ----------------------------------------------------------------------------- state


class GuardState:
    """State common to every run-time guard: name, action, severity, state, deadline."""

    __slots__ = ("spec", "name", "action", "severity", "state", "deadline")
    route: ClassVar[str] = "all"

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self.name = spec.name
        self.action = spec.action
        self.severity = spec.severity
        self.state = INACTIVE
        self.deadline = INF  # the next time an observation past it must wake this guard

    def verdict(self, t: float, state: str, reason: str) -> Verdict:
        return Verdict(t, self.name, state, self.severity, self.action, reason)

    def reset(self, t: float) -> Verdict | None:
        """Operator resume: back to inactive (a resolved verdict if it was firing)."""
        was = self.state
        self.state = INACTIVE
        self.deadline = INF
        return self.verdict(t, "resolved", "operator resume") if was == FIRING else None

    def categories(self) -> frozenset | None:
        """The event categories an "events" guard wants (None: every category)."""
        return None


class Conditional(GuardState):
    """Prometheus alerting-rule states over a condition evaluated at observations.

    pending when the condition first holds; firing once it has held at every evaluation
    for `for`; a single evaluation where it fails resets `for`. When firing and the
    condition fails, it keeps firing until `keep_firing_for` has passed since the first
    failing evaluation, then resolves (once).
    """

    __slots__ = ("for_s", "keep_s", "active_at", "keep_since")

    def __init__(self, spec: Any, for_s: float, keep_s: float) -> None:
        super().__init__(spec)
        self.for_s = for_s
        self.keep_s = keep_s
        self.active_at = 0.0
        self.keep_since = -1.0

    def advance(self, t: float, cond: bool, why: Callable[[], str]) -> Verdict | None:
        st = self.state
        if cond:
            if st is FIRING:
                self.keep_since = -1.0
                return None
            if st is INACTIVE:
                self.active_at = t
                if self.for_s <= 0.0:
                    self.state = FIRING
                    return self.verdict(t, "firing", why())
                self.state = PENDING
                return self.verdict(t, "pending", why())
            if t - self.active_at >= self.for_s:
                self.state = FIRING
                return self.verdict(t, "firing", why() + f" for {format_duration(t - self.active_at)}")
            return None
        if st is INACTIVE:
            return None
        if st is PENDING:  # Prometheus drops a pending alert silently
            self.state = INACTIVE
            return None
        if self.keep_s > 0.0:
            if self.keep_since < 0.0:
                self.keep_since = t
            if t - self.keep_since < self.keep_s:
                return None
        self.state = INACTIVE
        self.keep_since = -1.0
        return self.verdict(t, "resolved", why())

    def reset(self, t: float) -> Verdict | None:
        self.keep_since = -1.0
        return super().reset(t)


class Latching(GuardState):
    """Fires at a trigger time; resolves once `keep_firing_for` has passed since the
    condition last held (the `end`), or stays firing until resume without it."""

    __slots__ = ("keep_s", "end")
    route: ClassVar[str] = "events"

    def __init__(self, spec: Any, keep_s: float | None) -> None:
        super().__init__(spec)
        self.keep_s = keep_s
        self.end = -INF

    def expire(self, t: float) -> Verdict | None:
        """The firing state at time t when nothing new holds: resolve once keep has passed."""
        if self.state is FIRING and self.keep_s is not None:
            until = self.end + self.keep_s
            if t > until:
                self.state = INACTIVE
                self.deadline = INF
                return self.verdict(t, "resolved", f"nothing new since t={self.end:g}")
            self.deadline = until
        return None
