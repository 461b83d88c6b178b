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
from typing import Any, Mapping

import yaml

from .spec import GuardSpec, Policy
from .yamlfile import format_duration

# Sample signals and the metric each is exported as (docs/internals.md, "Metrics"). The one
# table: the run's exporter (sim/lab/metrics.py) names its gauges from it too.
SIGNAL_METRICS: Mapping[str, str] = {
    "cpu_ratio": "runaway_sandbox_cpu_ratio",
    "cpu_demand": "runaway_sandbox_cpu_demand_ratio",
    "cpu_seconds": "runaway_sandbox_cpu_seconds_total",
    "mem_bytes": "runaway_sandbox_memory_bytes",
    "mem_limit_bytes": "runaway_sandbox_memory_limit_bytes",
    "mem_ratio": "runaway_sandbox_memory_ratio",
    "pids_ratio": "runaway_sandbox_pids_ratio",
    "pids": "runaway_sandbox_pids",
    "pages": "runaway_learner_pages_total",
    "bits_per_char": "runaway_learner_bits_per_char",
}
EVENTS_METRIC = "runaway_events_total"
EVENT_LABELS = ("source", "category", "kind", "outcome")
# Labels a rule adds to its alerts; the hysteresis self-join on ALERTS ignores them.
RULE_LABELS = ("severity", "action")


def num(x: float) -> str:
    """A PromQL number literal."""
    return repr(float(x)) if x != int(x) or abs(x) >= 1e15 else str(int(x))


def quote(s: str) -> str:
    """A PromQL string literal."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def matcher(name: str, values: frozenset) -> str:
    """A label matcher for any of `values`."""
    vals = sorted(str(v) for v in values)
    if len(vals) == 1:
        return f"{name}={quote(vals[0])}"
    return f"{name}=~{quote('|'.join(re.escape(v) for v in vals))}"


def selector(fields: Any) -> str:
    """The events counter's series matching one any-of match's fields."""
    return f"{EVENTS_METRIC}{{{', '.join(matcher(n, vals) for n, vals in fields)}}}"


def _new_events(sel: str, window: float) -> str:
    """The events of selector `sel` counted in [t - window, t] (by series): the counter now
    minus its value just before the window, or all of it for a series born inside it (an
    event counter appears at its first event). The extra millisecond makes the window
    closed on the left, like the engine's; no extrapolation, unlike increase().
    (Kinds call it as `promql._new_events`, so a test can put a wrong window in its place.)"""
    w = format_duration(window + 0.001)
    return f"({sel} - {sel} offset {w}) or ({sel} unless {sel} offset {w})"


def event_fields(matches: Any) -> tuple[list[Any] | None, str]:
    """The fields of each match, or None and why they cannot be metric labels."""
    out = []
    for m in matches:
        if any(n not in EVENT_LABELS for n, _ in m.fields):
            return None, "matches on detail fields, which are not metric labels"
        out.append(m.fields)
    return out, ""


def export_rule(g: GuardSpec) -> tuple[dict[str, Any] | None, str]:
    """One alerting rule for a guard, or None and the reason it is skipped. The guard's
    kind (policies/kinds/) writes the condition; this adds the name, labels and summary."""
    from .kinds import kind_of  # the kinds import this module's helpers

    try:
        kind = kind_of(g)
    except TypeError:
        return None, "unknown guard kind"
    body, why = kind.promql(g)
    if body is None:
        return None, why
    rule: dict[str, Any] = {"alert": g.name}
    annotations = {"summary": g.description or g.describe(), **body.pop("annotations", {})}  # type: ignore[attr-defined]
    rule.update(body)
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
