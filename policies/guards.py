"""Guard kinds at run time: each holds its state and turns observations into verdicts.

The engine (engine.py) dispatches observations to these; they never read a clock, so
`t` always comes from the observation. Verdicts are made only on state changes, which
keeps the hot path (a sample that changes nothing) free of allocations.

Python guards subclass `Guard` and are registered by name, then named in YAML by
`type:`::

    from policies import Guard, Sample, register_guard

    @register_guard("many-workers")
    class ManyWorkers(Guard):
        '''Fires while the learner reports more than `limit` workers.'''

        @classmethod
        def check_params(cls, params):
            if not isinstance(params.get("limit", 8), int):
                raise ValueError("limit: expected a whole number")

        def condition(self, obs):
            if type(obs) is not Sample or "workers" not in obs.extra:
                return None          # this observation says nothing
            return obs.extra["workers"] > self.params.get("limit", 8)
"""

from __future__ import annotations

import math
from collections import deque
from operator import attrgetter
from typing import Any, Callable, Mapping

from .model import SAMPLE_FIELDS, Event, Sample, Verdict
from .spec import EVENT_FIELDS, DeceptionSpec, EventSpec, Match, PythonSpec, ThresholdSpec, format_duration

INACTIVE, PENDING, FIRING = "inactive", "pending", "firing"
INF = math.inf

# ----------------------------------------------------------------------------- Python guards

_REGISTRY: dict[str, type["Guard"]] = {}


class Guard:
    """Base class for guards written in Python.

    Subclasses implement `condition(obs) -> bool | None` (None: this observation says
    nothing, the guard's state is left alone). The engine adds `for` and
    `keep_firing_for` around it exactly as for threshold guards. Keep it pure: no clock,
    no I/O; `obs.t` is the time. `self.params` holds the YAML `params` mapping.
    """

    def __init__(self, spec: PythonSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.params: Mapping[str, Any] = dict(spec.params)

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        """Raise ValueError with a one-line message when `params` are unusable."""

    def condition(self, obs: Sample | Event) -> bool | None:
        raise NotImplementedError

    def reason(self, obs: Sample | Event) -> str:
        """Why the guard changed state at this observation (goes into the verdict)."""
        return f"{type(self).__name__} at t={obs.t:g}"

    def reset(self) -> None:
        """Forget any history (called on operator resume)."""


def register_guard(name: str, cls: type[Guard] | None = None) -> Any:
    """Make a Python guard class available to YAML as `type: NAME`; usable as a decorator."""

    def add(c: type[Guard]) -> type[Guard]:
        if not (isinstance(c, type) and issubclass(c, Guard)):
            raise TypeError(f"{c!r} is not a policies.Guard subclass")
        _REGISTRY[name] = c
        return c

    return add(cls) if cls is not None else add


def guard_types() -> dict[str, type[Guard]]:
    """The registered Python guard types by name."""
    return dict(_REGISTRY)


# ----------------------------------------------------------------------------- shared


class _Runtime:
    """State common to every guard kind at run time."""

    __slots__ = ("spec", "name", "action", "severity", "state", "deadline")

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


class _Conditional(_Runtime):
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


def signal_getter(signal: str) -> Callable[[Sample], float | None]:
    """How to read a signal from a sample: a field, a derived signal, or an extra gauge."""
    if signal in SAMPLE_FIELDS:
        return attrgetter(signal)
    if signal == "mem_ratio":
        def mem_ratio(s: Sample) -> float | None:
            lim = s.mem_limit_bytes
            return s.mem_bytes / lim if lim > 0 else None
        return mem_ratio
    if signal == "pids_ratio":
        def pids_ratio(s: Sample) -> float | None:
            lim = s.extra.get("pids_limit")
            return s.pids / lim if (type(lim) is int or type(lim) is float) and lim > 0 else None
        return pids_ratio

    def extra(s: Sample) -> float | None:
        v = s.extra.get(signal)
        return v if type(v) is float or type(v) is int else None
    return extra


# ----------------------------------------------------------------------------- threshold


class ThresholdGuard(_Conditional):
    """A sample signal above/below a threshold, with optional hysteresis."""

    __slots__ = ("get", "signal", "above", "thr", "clear", "last")

    def __init__(self, spec: ThresholdSpec) -> None:
        super().__init__(spec, spec.for_s, spec.keep_firing_for_s)
        self.get = signal_getter(spec.signal)
        self.signal = (f"{spec.aggregate}({spec.signal}[{format_duration(spec.over_s or 0)}])"
                       if spec.aggregate else spec.signal)
        self.above = spec.op == "above"
        self.thr = spec.threshold
        self.clear = spec.clear if spec.clear is not None else spec.threshold
        self.last = 0.0

    def _why(self) -> str:
        if self.state is INACTIVE:
            rel = "<=" if self.above else ">="
            lim = self.clear
            return f"{self.signal}={self.last:.4g} {rel} {lim:g}"
        return f"{self.signal}={self.last:.4g} {'>' if self.above else '<'} {self.thr:g}"

    def sample(self, s: Sample) -> Verdict | None:
        v = self.get(s)
        if v is None:
            return None
        return self.check(s.t, v)

    def check(self, t: float, v: float) -> Verdict | None:
        st = self.state
        # Hot path: nothing changes (inactive and below, or firing and above). Inline the
        # common cases so a quiet sample costs two comparisons and no call.
        if self.above:
            if st is INACTIVE and not v > self.thr:
                return None
            cond = v > (self.clear if st is FIRING else self.thr)
        else:
            if st is INACTIVE and not v < self.thr:
                return None
            cond = v < (self.clear if st is FIRING else self.thr)
        if cond and st is FIRING and self.keep_since < 0.0:
            return None
        self.last = v
        return self.advance(t, cond, self._why)


class AggregateGuard(ThresholdGuard):
    """avg/max/min/rate of a signal over a sliding window [t - over, t], then a threshold.

    The window is inclusive at both ends, as Prometheus 2.x range selectors are; `rate`
    is Prometheus's extrapolated rate() for counters, so an exported rule agrees.
    """

    __slots__ = ("agg", "over", "ts", "vs", "total", "mono_t", "mono_v", "corr", "corr_sum", "prev")

    def __init__(self, spec: ThresholdSpec) -> None:
        super().__init__(spec)
        self.agg = spec.aggregate
        self.over = spec.over_s or 0.0
        self.ts: deque[float] = deque()
        self.vs: deque[float] = deque()
        self.total = 0.0
        self.mono_t: deque[float] = deque()  # monotonic deque for max/min
        self.mono_v: deque[float] = deque()
        self.corr: deque[float] = deque()  # counter-reset corrections per sample (rate)
        self.corr_sum = 0.0
        self.prev = 0.0

    def sample(self, s: Sample) -> Verdict | None:
        v = self.get(s)
        if v is None:
            return None
        return self.check(s.t, self.push(s.t, v))

    def push(self, t: float, v: float) -> float:
        """Add a value at time t; the aggregate over [t - over, t] (rate: -inf/inf when
        there are fewer than two points, so the condition is false, as in PromQL)."""
        lo = t - self.over
        agg = self.agg
        if agg == "avg":
            ts, vs = self.ts, self.vs
            ts.append(t)
            vs.append(v)
            self.total += v
            while ts[0] < lo:
                ts.popleft()
                self.total -= vs.popleft()
            if len(ts) == 1:  # re-anchor the running sum so rounding never accumulates
                self.total = v
            return self.total / len(ts)
        if agg == "max" or agg == "min":
            mt, mv = self.mono_t, self.mono_v
            if agg == "max":
                while mv and mv[-1] <= v:
                    mv.pop()
                    mt.pop()
            else:
                while mv and mv[-1] >= v:
                    mv.pop()
                    mt.pop()
            mt.append(t)
            mv.append(v)
            while mt[0] < lo:
                mt.popleft()
                mv.popleft()
            return mv[0]
        x = self._rate(t, v, lo)
        if x is None:
            return -INF if self.above else INF
        return x

    def _rate(self, t: float, v: float, lo: float) -> float | None:
        ts, vs, corr = self.ts, self.vs, self.corr
        c = self.prev if ts and v < self.prev else 0.0
        ts.append(t)
        vs.append(v)
        corr.append(c)
        self.corr_sum += c
        self.prev = v
        while ts[0] < lo:
            ts.popleft()
            vs.popleft()
            self.corr_sum -= corr.popleft()
        n = len(ts)
        if n < 2:
            if n == 1:
                self.corr_sum = corr[0]
            return None
        first_t, first_v = ts[0], vs[0]
        # the first sample's own correction refers to a pair outside the window
        result = v - first_v + (self.corr_sum - corr[0])
        sampled = t - first_t
        if sampled <= 0:
            return None
        avg_gap = sampled / (n - 1)
        to_start = first_t - lo
        to_end = 0.0  # we evaluate at the sample's own time
        if result > 0 and first_v >= 0:
            to_zero = sampled * (first_v / result)
            if to_zero < to_start:
                to_start = to_zero
        limit = avg_gap * 1.1
        interval = sampled
        interval += to_start if to_start < limit else avg_gap / 2
        interval += to_end if to_end < limit else avg_gap / 2
        return result * (interval / sampled) / self.over


# ----------------------------------------------------------------------------- events


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


class _Latching(_Runtime):
    """Fires at a trigger time; resolves once `keep_firing_for` has passed since the
    condition last held (the `end`), or stays firing until resume without it."""

    __slots__ = ("keep_s", "end")

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


class EventGuard(_Latching):
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


class DeceptionGuard(_Latching):
    """Actions others saw (`unreported`) that the reporter (`by`) did not mention, with the
    same category and kind, within `within` before or after. Pending while an action
    awaits its report; firing once a later observation passes its deadline unreported."""

    __slots__ = ("seen", "by", "within", "last_report", "waiting", "fired_on")

    def __init__(self, spec: DeceptionSpec) -> None:
        super().__init__(spec, spec.keep_firing_for_s)
        self.seen = _compile(spec.unreported)
        self.by = spec.by
        self.within = spec.within_s
        self.last_report: dict[tuple[str, str], float] = {}
        self.waiting: deque[tuple[float, str, str, str]] = deque()  # (t, source, category, kind)
        self.fired_on: tuple[float, str, str, str] | None = None

    def event(self, e: Event) -> Verdict | None:
        t = e.t
        out = self.tick(t) if t > self.deadline else None
        if e.source == self.by:
            key = (e.category, e.kind)
            self.last_report[key] = t
            if self.waiting:
                before = len(self.waiting)
                self.waiting = deque(w for w in self.waiting if (w[2], w[3]) != key)
                if len(self.waiting) != before:
                    self._rearm()
                    if not self.waiting and self.state is PENDING:
                        self.state = INACTIVE  # reported in time: a pending alert ends silently
            return out
        if not self.seen(e):
            return out
        key = (e.category, e.kind)
        r = self.last_report.get(key)
        if r is not None and t - r <= self.within:
            return out  # already reported
        self.waiting.append((t, e.source, e.category, e.kind))
        self._rearm()
        if self.state is INACTIVE:
            self.state = PENDING
            return out or self.verdict(t, "pending", f"{e.source} {e.category}/{e.kind} awaits a {self.by} "
                                                     f"within {format_duration(self.within)}")
        return out

    def _rearm(self) -> None:
        d = INF
        if self.waiting:
            d = self.waiting[0][0] + self.within
        if self.state is FIRING and self.keep_s is not None:
            d = min(d, self.end + self.keep_s)
        self.deadline = d

    def tick(self, t: float) -> Verdict | None:
        within = self.within
        fired = None
        while self.waiting and t > self.waiting[0][0] + within:
            fired = self.waiting.popleft()
        if fired is not None:
            self.end = fired[0] + within
            self.fired_on = fired
            self._rearm()
            if self.state is not FIRING:
                self.state = FIRING
                return self.verdict(t, "firing", f"{fired[1]} saw {fired[2]}/{fired[3]} at t={fired[0]:g}; "
                                                 f"no {self.by} within {format_duration(within)}")
            return None
        v = self.expire(t)
        if v is not None and self.waiting:
            self.state = PENDING
        self._rearm()
        return v

    def reset(self, t: float) -> Verdict | None:
        self.waiting.clear()
        self.end = -INF
        return super().reset(t)


# ----------------------------------------------------------------------------- python


class PythonGuard(_Conditional):
    """Runs a registered `Guard` subclass's condition under the conditional state machine."""

    __slots__ = ("impl", "obs")

    def __init__(self, spec: PythonSpec) -> None:
        super().__init__(spec, spec.for_s, spec.keep_firing_for_s)
        self.impl = _REGISTRY[spec.type](spec)
        self.obs: Sample | Event | None = None

    def observe(self, obs: Sample | Event) -> Verdict | None:
        cond = self.impl.condition(obs)
        if cond is None:
            return None
        self.obs = obs
        return self.advance(obs.t, bool(cond), self._why)

    def _why(self) -> str:
        return self.impl.reason(self.obs) if self.obs is not None else ""

    def reset(self, t: float) -> Verdict | None:
        self.impl.reset()
        return super().reset(t)


def build(spec: Any) -> _Runtime:
    """The run-time guard for a guard spec."""
    if isinstance(spec, ThresholdSpec):
        return AggregateGuard(spec) if spec.aggregate else ThresholdGuard(spec)
    if isinstance(spec, EventSpec):
        return EventGuard(spec)
    if isinstance(spec, DeceptionSpec):
        return DeceptionGuard(spec)
    if isinstance(spec, PythonSpec):
        return PythonGuard(spec)
    raise TypeError(f"not a guard spec: {spec!r}")
