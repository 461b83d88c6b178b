"""Export a policy's guards as Prometheus alerting rules over runaway's metric names.

Threshold, aggregate and event guards export exactly (checked against `promtool test
rules`), at the resolution of the scrape: an event counts at the scrape that first sees it.
A latched event guard becomes "the counter is above zero" (it stays firing for the run; an
operator's resume has no PromQL equivalent). Deception guards export approximately (an
action seen by others with no report of its category and kind around it). Python guards,
signals without a metric and matches on detail fields are skipped, each with the reason,
in the `# skipped:` comments of the output.

>>> from policies import load_policy
>>> rules, skipped = export_rules(load_policy("guards:\\n  - {name: hot, signal: cpu_ratio, above: 0.9, for: 5s}"))
>>> rules["groups"][0]["rules"][0]["expr"]
'runaway_sandbox_cpu_ratio > 0.9'
"""

from __future__ import annotations

import os
import re
from typing import Any

import yaml

from .spec import DeceptionSpec, EventSpec, GuardSpec, Policy, PythonSpec, ThresholdSpec, format_duration

# Sample signals and the metric each is exported as (DESIGN.md, Metrics contract).
SIGNAL_METRICS = {
    "cpu_ratio": "runaway_sandbox_cpu_ratio",
    "cpu_seconds": "runaway_sandbox_cpu_seconds_total",
    "mem_bytes": "runaway_sandbox_memory_bytes",
    "mem_ratio": "runaway_sandbox_memory_ratio",
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


def _selector(fields: Any) -> str:
    return f"{EVENTS_METRIC}{{{', '.join(_matcher(n, vals) for n, vals in fields)}}}"


def _new_events(sel: str, window: float) -> str:
    """The events of selector `sel` counted in [t - window, t] (by series): the counter now
    minus its value just before the window, or all of it for a series born inside it (an
    event counter appears at its first event). The extra millisecond makes the window
    closed on the left, like the engine's; no extrapolation, unlike increase()."""
    w = format_duration(window + 0.001)
    return f"({sel} - {sel} offset {w}) or ({sel} unless {sel} offset {w})"


def _event_fields(matches: Any) -> tuple[list[Any] | None, str]:
    out = []
    for m in matches:
        if any(n not in _EVENT_LABELS for n, _ in m.fields):
            return None, "matches on detail fields, which are not metric labels"
        out.append(m.fields)
    return out, ""


def event_expr(g: EventSpec) -> tuple[str | None, str]:
    """The PromQL condition of an event guard, or None and why it cannot be one.

    Windowed: at least `count` matching events in the window. Latched (no `within`): any
    matching event so far, or, with keep_firing_for, a matching event at this evaluation
    (the rule's keep_firing_for does the rest). Several any-of matches are `or`ed: a
    series matching two of them counts once."""
    fields, why = _event_fields(g.matches)
    if fields is None:
        return None, why
    sels = [_selector(f) for f in fields]
    by = f"sum without({', '.join(_EVENT_LABELS)}) "
    if g.within_s is None and g.keep_firing_for_s is None:
        return f"{by}({' or '.join(sels)}) > 0", ""
    window = g.within_s if g.within_s is not None else 0.0
    count = g.count if g.within_s is not None else 1
    parts = " or ".join(_new_events(sel, window) for sel in sels)
    return f"{by}({parts}) >= {count}", ""


def deception_expr(g: DeceptionSpec) -> tuple[str | None, str]:
    """Approximately the deception guard: an action others saw more than `within` and at
    most twice `within` ago (its report is overdue) with no report by `by` of the same category and
    kind in the three windows around it. The engine pairs each action with a report in
    time; PromQL compares counts per category and kind."""
    fields, why = _event_fields(g.unreported)
    if fields is None:
        return None, why
    w = g.within_s
    keys = "run, scenario, category, kind"
    # Actions in (t - 2w - 1ms, t - w - 1ms]: their deadline has passed (the engine fires
    # at the first observation after an action's t + w).
    near, far = format_duration(w + 0.001), format_duration(2 * w + 0.001)
    seen = " or ".join(f"({sel} offset {near} - {sel} offset {far}) or ({sel} offset {near} unless {sel} offset {far})"
                       for sel in map(_selector, fields))
    told = _new_events(f"{EVENTS_METRIC}{{source={_quote(g.by)}}}", 3 * w)
    return (f"sum by({keys}) ({seen}) > 0 unless on({keys}) sum by({keys}) ({told}) > 0"), ""


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
        if g.within_s is None and g.keep_firing_for_s is None:
            annotations["latched"] = "fires for the rest of the run; the engine's latch also ends at an operator resume"
    elif isinstance(g, DeceptionSpec):
        expr, why = deception_expr(g)
        if expr is None:
            return None, why
        rule["expr"] = expr
        if g.keep_firing_for_s:
            rule["keep_firing_for"] = format_duration(g.keep_firing_for_s)
        annotations["approximate"] = ("counts reports per category and kind around an overdue action; the engine "
                                      "pairs each action with a report, and latches until an operator resume")
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
    where = policy.file or "a policy"
    if policy.file and not os.path.relpath(policy.file).startswith(".."):
        where = os.path.relpath(policy.file)  # a file committed beside its rules names no home dir
    head = [f"# Prometheus alerting rules exported by runaway from {where}",
            "# (regenerate: runaway rules [POLICY] -o FILE; docs/dashboards.md)"]
    if policy.sha256:
        head.append(f"# policy sha256: {policy.sha256}")
    for name, why in skipped:
        head.append(f"# skipped: {name}: {why}")
    body = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000, allow_unicode=True)
    return "\n".join(head) + "\n" + body
