"""Threshold guards: a sample signal (or its avg/max/min/rate over a window) above or below
a threshold, for a while, with optional hysteresis. Exported to PromQL exactly.

    - {name: cpu-pegged, signal: cpu_ratio, above: 0.95, for: 5s, clear_below: 0.8, action: throttle}
    - {name: cpu-hot, signal: cpu_ratio, aggregate: avg, over: 30s, above: 0.9, action: alert}
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from ..model import SAMPLE_FIELDS, Sample, Verdict
from ..spec import Fields, FieldReader, GuardSpec
from ..promql import RULE_LABELS, SIGNAL_METRICS, num, quote
from ..yamlfile import format_duration
from .base import INACTIVE, FIRING, INF, Conditional, GuardKind, Rule, register_kind

if TYPE_CHECKING:
    import yaml

AGGREGATES = ("avg", "max", "min", "rate")
# Signals the engine computes from a sample rather than reads from it (docs/policies.md).
DERIVED_SIGNALS = ("mem_ratio", "pids_ratio")
_SIGNAL_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_AGG_FUNCS = {"avg": "avg_over_time", "max": "max_over_time", "min": "min_over_time", "rate": "rate"}


@dataclass(frozen=True, kw_only=True)
class ThresholdSpec(GuardSpec):
    """A sample signal (or its aggregate over a window) above or below a threshold."""

    signal: str
    op: str  # "above" (>) or "below" (<)
    threshold: float
    for_s: float = 0.0
    clear: float | None = None  # clear_below (with above) or clear_above (with below)
    keep_firing_for_s: float = 0.0
    aggregate: str | None = None
    over_s: float | None = None

    @property
    def kind(self) -> str:
        return "aggregate" if self.aggregate else "threshold"

    def describe(self) -> str:
        sig = f"{self.aggregate}({self.signal} over {format_duration(self.over_s or 0)})" if self.aggregate else self.signal
        text = f"{sig} {'>' if self.op == 'above' else '<'} {self.threshold:g}"
        if self.for_s:
            text += f" for {format_duration(self.for_s)}"
        if self.clear is not None:
            text += f", clears {'below' if self.op == 'above' else 'above'} {self.clear:g}"
        if self.keep_firing_for_s:
            text += f", keeps firing {format_duration(self.keep_firing_for_s)}"
        return text


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


class ThresholdGuard(Conditional):
    """A sample signal above/below a threshold, with optional hysteresis."""

    __slots__ = ("get", "signal", "above", "thr", "clear", "last")
    route: ClassVar[str] = "samples"

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


def compile_samples(guards: list[ThresholdGuard]) -> Callable[[Sample, list], None]:
    """One generated function that runs every sample guard on a sample, in policy order.

    The hot path of the engine: most samples change nothing, so each guard's quiet case
    (inactive and not over its threshold) is one comparison inline, with no call. Signal
    names come from SAMPLE_FIELDS or are bound as constants; thresholds are constants.
    """
    ns: dict[str, Any] = {"INACTIVE": INACTIVE, "VERDICTLESS": None}
    lines = ["def on_sample(s, out):", "    t = s.t"]
    read: dict[str, str] = {}
    for i, g in enumerate(guards):
        sig = g.spec.signal
        if sig not in read:
            var = f"s{len(read)}"
            read[sig] = var
            if sig in SAMPLE_FIELDS:
                lines.append(f"    {var} = s.{sig}")
            elif sig == "mem_ratio":
                lines.append("    lim = s.mem_limit_bytes")
                lines.append(f"    {var} = s.mem_bytes / lim if lim > 0 else None")
            elif sig == "pids_ratio":
                lines.append("    lim = s.extra.get('pids_limit')")
                lines.append(f"    {var} = s.pids / lim if (type(lim) is int or type(lim) is float) and lim > 0 "
                             "else None")
            else:
                ns[f"N{var}"] = sig
                lines.append(f"    {var} = s.extra.get(N{var})")
                lines.append(f"    if type({var}) is not float and type({var}) is not int: {var} = None")
    for i, g in enumerate(guards):
        var = read[g.spec.signal]
        ns[f"G{i}"], ns[f"T{i}"] = g, g.thr
        op = ">" if g.above else "<"
        ind = "    "
        if not (g.spec.signal in SAMPLE_FIELDS):
            lines.append(f"    if {var} is not None:")
            ind = "        "
        if isinstance(g, AggregateGuard) and g.agg == "avg":
            # AggregateGuard.push's avg, inlined: the window deques are bound as constants
            # (a guard keeps its deques for life) and the running sum lives on the guard.
            ns[f"TS{i}"], ns[f"VS{i}"], ns[f"O{i}"] = g.ts, g.vs, g.over
            lines += [f"{ind}TS{i}.append(t); VS{i}.append({var})",
                      f"{ind}tot = G{i}.total + {var}",
                      f"{ind}lo = t - O{i}",
                      f"{ind}while TS{i}[0] < lo:",
                      f"{ind}    TS{i}.popleft(); tot -= VS{i}.popleft()",
                      f"{ind}n = len(TS{i})",
                      f"{ind}if n == 1: tot = {var}",
                      f"{ind}G{i}.total = tot",
                      f"{ind}x = tot / n"]
            val = "x"
        elif isinstance(g, AggregateGuard):
            lines.append(f"{ind}x = G{i}.push(t, {var})")
            val = "x"
        else:
            val = var
        lines.append(f"{ind}if G{i}.state is not INACTIVE or {val} {op} T{i}:")
        lines.append(f"{ind}    v = G{i}.check(t, {val})")
        lines.append(f"{ind}    if v is not None: out.append(v)")
    if not guards:
        lines.append("    return")
    exec("\n".join(lines) + "\n", ns)  # noqa: S102 (see docstring)
    return ns["on_sample"]


def threshold_expr(g: ThresholdSpec) -> str | None:
    """The PromQL condition of a threshold/aggregate guard, hysteresis included (None: no metric)."""
    metric = SIGNAL_METRICS.get(g.signal)
    if metric is None:
        return None
    sel = metric
    if g.aggregate:
        sel = f"{_AGG_FUNCS[g.aggregate]}({metric}[{format_duration(g.over_s or 0)}])"
    op = ">" if g.op == "above" else "<"
    expr = f"{sel} {op} {num(g.threshold)}"
    if g.clear is not None and g.clear != g.threshold:
        # While the alert fires, the looser clear threshold keeps it: ALERTS holds the
        # previous evaluation's firing alerts, exactly the engine's state before a step.
        ignoring = ", ".join(("alertname", "alertstate") + RULE_LABELS)
        alerts = f"ALERTS{{alertname={quote(g.name)}, alertstate=\"firing\"}}"
        expr = f"{expr} or ({sel} {op} {num(g.clear)} and ignoring({ignoring}) {alerts})"
    return expr


@register_kind
class ThresholdKind(GuardKind):
    name = "threshold"
    what = "a threshold guard"
    hint = "`signal` (threshold)"
    keys = frozenset({"signal", "above", "below", "aggregate", "over"})
    fields = ("signal", "above", "below", "for", "clear_below", "clear_above", "keep_firing_for", "aggregate", "over")
    spec_types = (ThresholdSpec,)
    rank = 30

    def parse(self, r: FieldReader, node: "yaml.Node", path: str, f: Fields, common: dict) -> ThresholdSpec:
        if (n := f.get("signal")) is None:
            raise r.fail(node, f.at("signal"), "missing required field (expected a sample field such as cpu_ratio)")
        signal = r.string(n, f.at("signal"))
        if not _SIGNAL_RE.match(signal):
            raise r.fail(n, f.at("signal"), f"expected a sample field name such as cpu_ratio, got {signal!r}")
        above, below = f.get("above"), f.get("below")
        if above is None and below is None:
            raise r.fail(node, f.at("above"), "missing: a threshold guard needs `above` or `below`")
        if above is not None and below is not None:
            raise r.fail(below, f.at("below"), "give `above` or `below`, not both")
        op = "above" if above is not None else "below"
        threshold = r.number(above if above is not None else below, f.at(op))  # type: ignore[arg-type]
        spec: dict[str, Any] = {"signal": signal, "op": op, "threshold": threshold}
        if (n := f.get("for")) is not None:
            spec["for_s"] = r.duration(n, f.at("for"))
        if (n := f.get("keep_firing_for")) is not None:
            spec["keep_firing_for_s"] = r.duration(n, f.at("keep_firing_for"))
        wrong, right = ("clear_above", "clear_below") if op == "above" else ("clear_below", "clear_above")
        if (n := f.get(wrong)) is not None:
            raise r.fail(n, f.at(wrong), f"a guard that fires {op} a threshold clears with `{right}`")
        if (n := f.get(right)) is not None:
            clear = r.number(n, f.at(right))
            if (op == "above" and clear > threshold) or (op == "below" and clear < threshold):
                rel = "at or below" if op == "above" else "at or above"
                raise r.fail(n, f.at(right), f"expected a value {rel} the threshold {threshold:g}, got {clear:g}")
            spec["clear"] = clear
        agg, over = f.get("aggregate"), f.get("over")
        if agg is not None:
            spec["aggregate"] = r.string(agg, f.at("aggregate"), AGGREGATES)
            if over is None:
                raise r.fail(agg, f.at("over"), "missing: an aggregate needs a window (`over: 30s`)")
            spec["over_s"] = r.duration(over, f.at("over"))
            if spec["over_s"] <= 0:
                raise r.fail(over, f.at("over"), "expected a window longer than 0s")
        elif over is not None:
            raise r.fail(over, f.at("aggregate"), "missing: `over` needs an `aggregate` (avg, max, min or rate)")
        return ThresholdSpec(**common, **spec)

    def build(self, spec: ThresholdSpec) -> ThresholdGuard:  # type: ignore[override]
        return AggregateGuard(spec) if spec.aggregate else ThresholdGuard(spec)

    def promql(self, spec: ThresholdSpec) -> tuple[Rule | None, str]:  # type: ignore[override]
        expr = threshold_expr(spec)
        if expr is None:
            known = ", ".join(sorted(SIGNAL_METRICS))
            return None, f"signal {spec.signal!r} has no runaway_* metric (exported signals: {known})"
        rule: Rule = {"expr": expr}
        if spec.for_s:
            rule["for"] = format_duration(spec.for_s)
        if spec.keep_firing_for_s:
            rule["keep_firing_for"] = format_duration(spec.keep_firing_for_s)
        return rule, ""
