"""Event guards: matching events fire at once (latched until the operator resumes, or
for `keep_firing_for`), or, with `within`, while `count` matches lie in a sliding window.
Windowed ones export to PromQL approximately (increase() extrapolates).

    - {name: any-escalation, on_event: {category: escalation}, action: kill}
    - {name: scanning, on_event: {category: egress, kind: net_scan}, count: 5, within: 10s, action: disconnect}
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from ..model import Event, Verdict
from .. import promql
from ..promql import EVENT_LABELS, event_fields, selector
from ..spec import Fields, EVENT_FIELDS, FieldReader, GuardSpec, Match
from ..yamlfile import format_duration
from .base import FIRING, INACTIVE, INF, GuardKind, Latching, Rule, register_kind

if TYPE_CHECKING:
    import yaml


@dataclass(frozen=True, kw_only=True)
class EventSpec(GuardSpec):
    """Matching events: one (latched until resume) or `count` within a sliding window."""

    matches: tuple[Match, ...]
    count: int = 1
    within_s: float | None = None
    keep_firing_for_s: float | None = None

    @property
    def kind(self) -> str:
        return "event"

    def describe(self) -> str:
        text = " or ".join(m.describe() for m in self.matches)
        if self.within_s is not None:
            text = f"{self.count} x ({text}) within {format_duration(self.within_s)}"
        if self.keep_firing_for_s is not None:
            text += f", keeps firing {format_duration(self.keep_firing_for_s)}"
        elif self.within_s is None:
            text += ", latched until resume"
        return text


def _compile(matches: tuple[Match, ...]) -> Callable[[Event], bool]:
    """A predicate for any-of matches, generated as one expression.

    Hot path: every event runs it. Field names come from a fixed set (spec.EVENT_FIELDS)
    and the allowed values are bound as constants, never spliced into the source.
    """
    ns: dict[str, Any] = {}
    alts = []
    for i, m in enumerate(matches):
        terms = []
        for j, (name, allowed) in enumerate(m.fields):
            const = f"V{i}_{j}"
            ns[const] = allowed
            if name.startswith("detail."):
                key = f"K{i}_{j}"
                ns[key] = name[7:]
                terms.append(f"e.detail.get({key}) in {const}")
            else:
                assert name in EVENT_FIELDS
                terms.append(f"e.{name} in {const}")
        alts.append("(" + (" and ".join(terms) or "True") + ")")
    exec(f"def match(e):\n    return {' or '.join(alts)}\n", ns)  # noqa: S102 (see docstring)
    return ns["match"]


def match_categories(matches: tuple[Match, ...]) -> frozenset | None:
    """The categories any of these matches can accept, or None when any category can."""
    out: set = set()
    for m in matches:
        vals = m.values("category")
        if vals is None:
            return None
        out |= vals
    return frozenset(out)


class EventGuard(Latching):
    """Matching events: fires at a match (latched until resume unless keep_firing_for),
    or, with `within`, while at least `count` matches lie in [t - within, t]."""

    __slots__ = ("match", "count", "within", "times", "describe")

    def __init__(self, spec: EventSpec) -> None:
        super().__init__(spec, spec.keep_firing_for_s)
        self.match = _compile(spec.matches)
        self.count = spec.count
        self.within = spec.within_s
        self.times: deque[float] = deque(maxlen=spec.count)
        self.describe = " or ".join(m.describe() for m in spec.matches)

    def event(self, e: Event) -> Verdict | None:
        t = e.t
        if not self.match(e):
            return self.tick(t) if t > self.deadline else None
        if self.within is None:
            self.end = t
            if self.state is FIRING:
                if self.keep_s is not None:
                    self.deadline = t + self.keep_s
                return None
            self.state = FIRING
            if self.keep_s is not None:
                self.deadline = t + self.keep_s
            return self.verdict(t, "firing", f"{e.source} {e.category}/{e.kind} ({e.outcome})")
        times = self.times
        times.append(t)
        lo = t - self.within
        n = sum(1 for x in times if x >= lo)
        if n >= self.count:
            # holds until the count-th most recent match leaves the window
            self.end = times[0] + self.within
            self.deadline = self.end
            if self.state is FIRING:
                return None
            self.state = FIRING
            return self.verdict(t, "firing", f"{n} matches of ({self.describe}) within "
                                             f"{format_duration(self.within)}; last {e.source} {e.category}/{e.kind}")
        return self.tick(t) if t > self.deadline else None

    def categories(self) -> frozenset | None:
        return match_categories(self.spec.matches)

    def tick(self, t: float) -> Verdict | None:
        if self.state is not FIRING:
            self.deadline = INF
            return None
        if self.keep_s is None and self.within is None:
            self.deadline = INF
            return None
        if self.keep_s is None:  # windowed, no keep: resolves as soon as the window no longer holds
            self.state = INACTIVE
            self.deadline = INF
            return self.verdict(t, "resolved", f"fewer than {self.count} matches within {format_duration(self.within or 0)}")
        return self.expire(t)

    def reset(self, t: float) -> Verdict | None:
        self.times.clear()
        self.end = -INF
        return super().reset(t)


def event_expr(g: EventSpec) -> tuple[str | None, str]:
    """The PromQL condition of an event guard, or None and why it cannot be one.

    Windowed: at least `count` matching events in the window. Latched (no `within`): any
    matching event so far, or, with keep_firing_for, a matching event at this evaluation
    (the rule's keep_firing_for does the rest). Several any-of matches are `or`ed: a
    series matching two of them counts once."""
    fields, why = event_fields(g.matches)
    if fields is None:
        return None, why
    sels = [selector(f) for f in fields]
    by = f"sum without({', '.join(EVENT_LABELS)}) "
    if g.within_s is None and g.keep_firing_for_s is None:
        return f"{by}({' or '.join(sels)}) > 0", ""
    window = g.within_s if g.within_s is not None else 0.0
    count = g.count if g.within_s is not None else 1
    parts = " or ".join(promql._new_events(sel, window) for sel in sels)
    return f"{by}({parts}) >= {count}", ""


@register_kind
class EventKind(GuardKind):
    name = "event"
    what = "an event guard"
    hint = "`on_event` (event)"
    keys = frozenset({"on_event"})
    fields = ("on_event", "count", "within", "keep_firing_for")
    spec_types = (EventSpec,)
    rank = 10

    def parse(self, r: FieldReader, node: "yaml.Node", path: str, f: Fields, common: dict) -> EventSpec:
        spec: dict[str, Any] = {"matches": r.matches(f["on_event"][1], f.at("on_event"))}
        if (n := f.get("count")) is not None:
            c = r.value(n)
            if isinstance(c, bool) or not isinstance(c, int) or not 1 <= c <= 1_000_000:
                raise r.fail(n, f.at("count"), f"expected a whole number from 1 to 1000000, got {r.what(n)[:40]}")
            spec["count"] = c
            if f.get("within") is None and c > 1:
                raise r.fail(n, f.at("within"), "missing: `count` above 1 needs a window (`within: 10s`)")
        if (n := f.get("within")) is not None:
            spec["within_s"] = r.duration(n, f.at("within"), positive=True)
        if (n := f.get("keep_firing_for")) is not None:
            spec["keep_firing_for_s"] = r.duration(n, f.at("keep_firing_for"))
        return EventSpec(**common, **spec)

    def build(self, spec: EventSpec) -> EventGuard:  # type: ignore[override]
        return EventGuard(spec)

    def promql(self, spec: EventSpec) -> tuple[Rule | None, str]:  # type: ignore[override]
        expr, why = event_expr(spec)
        if expr is None:
            return None, why
        rule: Rule = {"expr": expr}
        if spec.keep_firing_for_s:
            rule["keep_firing_for"] = format_duration(spec.keep_firing_for_s)
        if spec.within_s is None and spec.keep_firing_for_s is None:
            rule["annotations"] = {"latched": "fires for the rest of the run; the engine's latch also ends at an operator resume"}
        return rule, ""
