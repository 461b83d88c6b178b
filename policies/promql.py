"""Export a policy's guards as Prometheus alerting rules over runaway's metric names.

Threshold and aggregate guards export exactly (checked against `promtool test rules`);
windowed event guards export approximately (Prometheus's increase() extrapolates);
latched event guards, deception guards, Python guards and signals without a metric are
skipped, each with the reason, in the `# skipped:` comments of the output.

>>> from policies import load_policy
>>> rules, skipped = export_rules(load_policy("guards:\\n  - {name: hot, signal: cpu_ratio, above: 0.9, for: 5s}"))
>>> rules["groups"][0]["rules"][0]["expr"]
'runaway_sandbox_cpu_ratio > 0.9'
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import yaml

from .spec import DeceptionSpec, EventSpec, GuardSpec, Policy, PythonSpec, ThresholdSpec, format_duration

# Sample signals and the metric each is exported as (docs/internals.md, "Metrics"). The one
# table: the run's exporter (sim/lab/metrics.py) names its gauges from it too.
SIGNAL_METRICS: Mapping[str, str] = {
    "cpu_ratio": "runaway_sandbox_cpu_ratio",
    "cpu_seconds": "runaway_sandbox_cpu_seconds_total",
    "mem_bytes": "runaway_sandbox_memory_bytes",
    "mem_limit_bytes": "runaway_sandbox_memory_limit_bytes",
    "pids": "runaway_sandbox_pids",
    "pages": "runaway_learner_pages_total",
    "bits_per_char": "runaway_learner_bits_per_char",
}
EVENTS_METRIC = "runaway_events_total"
_EVENT_LABELS = ("source", "category", "kind", "outcome")
_AGG_FUNCS = {"avg": "avg_over_time", "max": "max_over_time", "min": "min_over_time", "rate": "rate"}
# Labels a rule adds to its alerts; the hysteresis self-join on ALERTS ignores them.
RULE_LABELS = ("severity", "action")


def _num(x: float) -> str:
    return repr(float(x)) if x != int(x) or abs(x) >= 1e15 else str(int(x))


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def threshold_expr(g: ThresholdSpec) -> str | None:
    """The PromQL condition of a threshold/aggregate guard, hysteresis included (None: no metric)."""
    metric = SIGNAL_METRICS.get(g.signal)
    if metric is None:
        return None
    sel = metric
    if g.aggregate:
        sel = f"{_AGG_FUNCS[g.aggregate]}({metric}[{format_duration(g.over_s or 0)}])"
    op = ">" if g.op == "above" else "<"
    expr = f"{sel} {op} {_num(g.threshold)}"
    if g.clear is not None and g.clear != g.threshold:
        # While the alert fires, the looser clear threshold keeps it: ALERTS holds the
        # previous evaluation's firing alerts, exactly the engine's state before a step.
        ignoring = ", ".join(("alertname", "alertstate") + RULE_LABELS)
        alerts = f"ALERTS{{alertname={_quote(g.name)}, alertstate=\"firing\"}}"
        expr = f"{expr} or ({sel} {op} {_num(g.clear)} and ignoring({ignoring}) {alerts})"
    return expr


def _matcher(name: str, values: frozenset) -> str:
    vals = sorted(str(v) for v in values)
    if len(vals) == 1:
        return f"{name}={_quote(vals[0])}"
    return f"{name}=~{_quote('|'.join(re.escape(v) for v in vals))}"


def event_expr(g: EventSpec) -> tuple[str | None, str]:
    """The PromQL condition of a windowed event guard, or None and why it cannot be one."""
    if g.within_s is None:
        return None, "latched until operator resume: PromQL has no equivalent"
    if len(g.matches) != 1:
        return None, "several any-of matches: one counter selector cannot express them"
    m = g.matches[0]
    if any(n not in _EVENT_LABELS for n, _ in m.fields):
        return None, "matches on detail fields, which are not metric labels"
    sel = ", ".join(_matcher(n, vals) for n, vals in m.fields)
    window = format_duration(g.within_s)
    expr = (f"sum without({', '.join(_EVENT_LABELS)}) "
            f"(increase({EVENTS_METRIC}{{{sel}}}[{window}])) >= {g.count}")
    return expr, ""


def export_rule(g: GuardSpec) -> tuple[dict[str, Any] | None, str]:
    """One alerting rule for a guard, or None and the reason it is skipped."""
    rule: dict[str, Any] = {"alert": g.name}
    annotations = {"summary": g.description or g.describe()}  # type: ignore[attr-defined]
    if isinstance(g, ThresholdSpec):
        expr = threshold_expr(g)
        if expr is None:
            known = ", ".join(sorted(SIGNAL_METRICS))
            return None, f"signal {g.signal!r} has no runaway_* metric (exported signals: {known})"
        rule["expr"] = expr
        if g.for_s:
            rule["for"] = format_duration(g.for_s)
        if g.keep_firing_for_s:
            rule["keep_firing_for"] = format_duration(g.keep_firing_for_s)
    elif isinstance(g, EventSpec):
        expr, why = event_expr(g)
        if expr is None:
            return None, why
        rule["expr"] = expr
        if g.keep_firing_for_s:
            rule["keep_firing_for"] = format_duration(g.keep_firing_for_s)
        annotations["approximate"] = "increase() extrapolates over the window; the engine counts events exactly"
    elif isinstance(g, DeceptionSpec):
        return None, "deception pairs two event streams in time: PromQL has no equivalent"
    elif isinstance(g, PythonSpec):
        return None, "Python guard: its condition is Python code"
    else:
        return None, "unknown guard kind"
    rule["labels"] = {"severity": g.severity, "action": g.action}
    rule["annotations"] = annotations
    return rule, ""


def export_rules(policy: Policy, *, interval: str | None = None) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The rules file (as a dict) and the (guard, reason) pairs of guards left out."""
    rules: list[dict[str, Any]] = []
    skipped: list[tuple[str, str]] = []
    for g in policy.guards:
        if not g.enabled:
            skipped.append((g.name, "disabled (enabled: false)"))
            continue
        rule, why = export_rule(g)
        if rule is None:
            skipped.append((g.name, why))
        else:
            rules.append(rule)
    group: dict[str, Any] = {"name": f"runaway-{policy.name or 'policy'}"}
    if interval:
        group["interval"] = interval
    group["rules"] = rules
    return {"groups": [group]}, skipped


class _Dumper(yaml.SafeDumper):
    pass


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _str_presenter)


def rules_yaml(policy: Policy, *, interval: str | None = None) -> str:
    """The Prometheus rules file text, with a comment per skipped guard."""
    doc, skipped = export_rules(policy, interval=interval)
    head = [f"# Prometheus alerting rules exported by runaway from {policy.file or 'a policy'}"]
    if policy.sha256:
        head.append(f"# policy sha256: {policy.sha256}")
    for name, why in skipped:
        head.append(f"# skipped: {name}: {why}")
    body = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000, allow_unicode=True)
    return "\n".join(head) + "\n" + body
