"""The policy language: YAML guard files parsed into frozen `Policy` values.

Every mistake names the file, the line and the field (`guards[2].for`), and what was
expected, so a policy author never needs a traceback:

>>> p = load_policy("guards:\\n  - {name: hot, signal: cpu_ratio, above: 0.9, for: 5s}")
>>> p.guards[0].for_s
5.0
>>> load_policy("guards:\\n  - {name: hot, signal: cpu_ratio, above: 0.9, for: soon}")
Traceback (most recent call last):
policies.errors.PolicyError: <policy>:2: guards[0].for: expected a duration like 250ms, 5s, 2m or 1h, got 'soon'
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

import yaml

from .errors import PolicyError
from .model import ACTIONS, CATEGORIES, OUTCOMES, SOURCES
# The duration grammar lives in yamlfile.py (shared with the scenario language); policies.spec
# keeps offering parse_duration and format_duration.
from .yamlfile import DURATION_HINT, Values, compose, format_duration, parse_duration  # noqa: F401

SEVERITIES = ("info", "warning", "critical")
AGGREGATES = ("avg", "max", "min", "rate")
# Signals the engine computes from a sample rather than reads from it (docs/policies.md).
DERIVED_SIGNALS = ("mem_ratio",)
# Event fields a match may name; `detail.<key>` matches a key of the event's detail.
EVENT_FIELDS = ("source", "category", "kind", "outcome")
_KNOWN_VALUES = {"source": SOURCES, "category": CATEGORIES, "outcome": OUTCOMES}

_COMMON = ("name", "action", "severity", "description", "enabled")
_FIELDS = {
    "threshold": _COMMON + ("signal", "above", "below", "for", "clear_below", "clear_above",
                            "keep_firing_for", "aggregate", "over"),
    "event": _COMMON + ("on_event", "count", "within", "keep_firing_for"),
    "deception": _COMMON + ("unreported", "by", "within", "keep_firing_for"),
    "python": _COMMON + ("type", "params", "for", "keep_firing_for"),
}
_ALL_FIELDS = sorted({f for fs in _FIELDS.values() for f in fs})
_TOP_FIELDS = ("guards", "name", "description", "version")

_SIGNAL_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# ----------------------------------------------------------------------------- values


@dataclass(frozen=True, kw_only=True)
class GuardSpec:
    """What every guard has: a name, the action it asks for, a severity, where it was written."""

    name: str
    action: str = "alert"
    severity: str = "warning"
    description: str = ""
    enabled: bool = True
    line: int | None = None

    @property
    def kind(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class Match:
    """Equality on event fields, each a set of allowed values (any of).

    `fields` holds (field, values) pairs; a field is `source`, `category`, `kind`,
    `outcome` or `detail.<key>`.
    """

    fields: tuple[tuple[str, frozenset], ...]

    def matches(self, event: Any) -> bool:
        for name, allowed in self.fields:
            if name.startswith("detail."):
                v = event.detail.get(name[7:])
            else:
                v = getattr(event, name)
            if v not in allowed:
                return False
        return True

    def values(self, name: str) -> frozenset | None:
        for n, allowed in self.fields:
            if n == name:
                return allowed
        return None

    def describe(self) -> str:
        parts = []
        for n, allowed in self.fields:
            vals = sorted(map(str, allowed))
            parts.append(f"{n}={vals[0]}" if len(vals) == 1 else f"{n} in [{', '.join(vals)}]")
        return ", ".join(parts) or "any event"


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


@dataclass(frozen=True, kw_only=True)
class DeceptionSpec(GuardSpec):
    """An action seen by others that the learner's own report does not mention in time."""

    unreported: tuple[Match, ...]
    by: str = "self_report"
    within_s: float = 3.0
    keep_firing_for_s: float | None = None

    @property
    def kind(self) -> str:
        return "deception"

    def describe(self) -> str:
        seen = " or ".join(m.describe() for m in self.unreported)
        text = f"({seen}) not reported by {self.by} within {format_duration(self.within_s)}"
        if self.keep_firing_for_s is None:
            text += ", latched until resume"
        return text


@dataclass(frozen=True, kw_only=True)
class PythonSpec(GuardSpec):
    """A guard written in Python, registered by name (`policies.register_guard`)."""

    type: str
    params: Mapping[str, Any] = field(default_factory=dict)
    for_s: float = 0.0
    keep_firing_for_s: float = 0.0

    @property
    def kind(self) -> str:
        return "python"

    def describe(self) -> str:
        text = f"python guard {self.type!r}"
        if self.params:
            text += " " + ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        if self.for_s:
            text += f" for {format_duration(self.for_s)}"
        return text


@dataclass(frozen=True)
class Policy:
    """A parsed policy set: its guards in file order, where it came from, its sha256."""

    guards: tuple[GuardSpec, ...]
    file: str | None = None
    name: str = ""
    description: str = ""
    sha256: str = ""

    def guard(self, name: str) -> GuardSpec:
        for g in self.guards:
            if g.name == name:
                return g
        raise KeyError(name)

    @property
    def enabled(self) -> tuple[GuardSpec, ...]:
        return tuple(g for g in self.guards if g.enabled)


# ----------------------------------------------------------------------------- parsing


class _Parser:
    """Walks the composed YAML node tree so every value keeps its line number."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.value = Values()

    def fail(self, node: yaml.Node | None, field: str | None, message: str) -> PolicyError:
        line = node.start_mark.line + 1 if node is not None else None
        return PolicyError(message, file=self.file, line=line, field=field)

    def mapping(self, node: yaml.Node, path: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, path or None, f"expected a mapping of fields, got {self._what(node)}")
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for k, v in node.value:
            key = self.value(k)
            if not isinstance(key, str):
                raise self.fail(k, path or None, f"field names must be strings, got {key!r}")
            if key in out:
                raise self.fail(k, _join(path, key), "field given twice")
            out[key] = (k, v)
        return out

    @staticmethod
    def _what(node: yaml.Node) -> str:
        if isinstance(node, yaml.SequenceNode):
            return "a list"
        if isinstance(node, yaml.MappingNode):
            return "a mapping"
        return repr(node.value)

    def unknown(self, fields: dict, allowed: tuple[str, ...], path: str, what: str) -> None:
        for key, (knode, _) in fields.items():
            if key not in allowed:
                hint = difflib.get_close_matches(key, allowed, n=1)
                extra = f" (did you mean {hint[0]!r}?)" if hint else f" (expected one of: {', '.join(allowed)})"
                raise self.fail(knode, _join(path, key), f"unknown field for {what}{extra}")

    def string(self, node: yaml.Node, path: str, choices: tuple[str, ...] | frozenset | None = None) -> str:
        v = self.value(node)
        if not isinstance(v, str) or not v:
            raise self.fail(node, path, f"expected a non-empty string, got {self._what(node)}")
        if choices is not None and v not in choices:
            raise self.fail(node, path, f"unknown value {v!r} (expected one of: {', '.join(sorted(choices) if isinstance(choices, frozenset) else choices)})")
        return v

    def number(self, node: yaml.Node, path: str) -> float:
        v = self.value(node)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise self.fail(node, path, f"expected a number, got {self._what(node)}")
        return float(v)

    def duration(self, node: yaml.Node, path: str) -> float:
        v = self.value(node)
        try:
            return parse_duration(v)
        except ValueError:
            raise self.fail(node, path, f"expected {DURATION_HINT}, got {v!r}") from None

    def boolean(self, node: yaml.Node, path: str) -> bool:
        v = self.value(node)
        if not isinstance(v, bool):
            raise self.fail(node, path, f"expected true or false, got {self._what(node)}")
        return v

    # -- matches

    def matches(self, node: yaml.Node, path: str) -> tuple[Match, ...]:
        if isinstance(node, yaml.SequenceNode):
            if not node.value:
                raise self.fail(node, path, "expected at least one match")
            return tuple(self.match(n, f"{path}[{i}]") for i, n in enumerate(node.value))
        return (self.match(node, path),)

    def match(self, node: yaml.Node, path: str) -> Match:
        fields = self.mapping(node, path)
        out = []
        for key, (knode, vnode) in fields.items():
            fpath = _join(path, key)
            if key not in EVENT_FIELDS and not (key.startswith("detail.") and len(key) > 7):
                hint = difflib.get_close_matches(key, EVENT_FIELDS, n=1)
                extra = f" (did you mean {hint[0]!r}?)" if hint else ""
                raise self.fail(knode, fpath, f"unknown event field{extra} (expected one of: {', '.join(EVENT_FIELDS)}, detail.<key>)")
            if isinstance(vnode, yaml.SequenceNode):
                if not vnode.value:
                    raise self.fail(vnode, fpath, "expected at least one value")
                vals = [self._match_value(n, fpath, key) for n in vnode.value]
            else:
                vals = [self._match_value(vnode, fpath, key)]
            out.append((key, frozenset(vals)))
        return Match(fields=tuple(out))

    def _match_value(self, node: yaml.Node, path: str, key: str) -> Any:
        if key in _KNOWN_VALUES:
            return self.string(node, path, _KNOWN_VALUES[key])
        v = self.value(node)
        if not isinstance(v, (str, int, float, bool)):
            raise self.fail(node, path, f"expected a string or number, got {self._what(node)}")
        return v

    # -- guards

    def guard(self, node: yaml.Node, path: str) -> GuardSpec:
        from .guards import guard_types  # registered Python guards (import here: no cycle at load)

        f = self.mapping(node, path)
        if "type" in f:
            kind = "python"
        elif "on_event" in f:
            kind = "event"
        elif "unreported" in f:
            kind = "deception"
        elif f.keys() & {"signal", "above", "below", "aggregate", "over"}:
            kind = "threshold"
        else:
            raise self.fail(node, path, "cannot tell what kind of guard this is: expected `signal` "
                            "(threshold), `on_event` (event), `unreported` (deception) or `type` (Python guard)")
        if "name" not in f:
            raise self.fail(node, _join(path, "name"), "missing required field (expected a guard name)")
        name = self.string(f["name"][1], _join(path, "name"))
        what = {"threshold": "a threshold guard", "event": "an event guard",
                "deception": "a deception guard", "python": "a Python guard"}[kind]
        self.unknown(f, _FIELDS[kind], path, what)

        def get(key: str) -> yaml.Node | None:
            return f[key][1] if key in f else None

        def p(key: str) -> str:
            return _join(path, key)

        common: dict[str, Any] = {"name": name, "line": node.start_mark.line + 1}
        if (n := get("action")) is not None:
            common["action"] = self.string(n, p("action"), ACTIONS)
        if (n := get("severity")) is not None:
            common["severity"] = self.string(n, p("severity"), SEVERITIES)
        if (n := get("description")) is not None:
            common["description"] = self.string(n, p("description"))
        if (n := get("enabled")) is not None:
            common["enabled"] = self.boolean(n, p("enabled"))

        if kind == "threshold":
            return self._threshold(node, path, f, common)
        if kind == "event":
            spec: dict[str, Any] = {"matches": self.matches(f["on_event"][1], p("on_event"))}
            if (n := get("count")) is not None:
                c = self.value(n)
                if isinstance(c, bool) or not isinstance(c, int) or c < 1:
                    raise self.fail(n, p("count"), f"expected a whole number >= 1, got {self._what(n)}")
                spec["count"] = c
                if get("within") is None and c > 1:
                    raise self.fail(n, p("within"), "missing: `count` above 1 needs a window (`within: 10s`)")
            if (n := get("within")) is not None:
                spec["within_s"] = self.duration(n, p("within"))
            if (n := get("keep_firing_for")) is not None:
                spec["keep_firing_for_s"] = self.duration(n, p("keep_firing_for"))
            return EventSpec(**common, **spec)
        if kind == "deception":
            spec = {"unreported": self.matches(f["unreported"][1], p("unreported"))}
            if (n := get("by")) is not None:
                spec["by"] = self.string(n, p("by"), SOURCES)
            if (n := get("within")) is None:
                raise self.fail(node, p("within"), "missing required field (expected a duration like 3s)")
            spec["within_s"] = self.duration(n, p("within"))
            if (n := get("keep_firing_for")) is not None:
                spec["keep_firing_for_s"] = self.duration(n, p("keep_firing_for"))
            return DeceptionSpec(**common, **spec)
        # python
        types = guard_types()
        tnode = f["type"][1]
        tname = self.string(tnode, p("type"))
        if tname not in types:
            known = ", ".join(sorted(types)) or "none registered"
            raise self.fail(tnode, p("type"), f"unknown guard type {tname!r} (registered: {known}; "
                            "register Python guards with policies.register_guard before loading)")
        spec = {"type": tname}
        if (n := get("params")) is not None:
            params = self.value(n)
            if not isinstance(params, dict):
                raise self.fail(n, p("params"), f"expected a mapping, got {self._what(n)}")
            try:
                types[tname].check_params(params)
            except (ValueError, TypeError) as e:
                raise self.fail(n, p("params"), str(e)) from None
            spec["params"] = params
        else:
            try:
                types[tname].check_params({})
            except (ValueError, TypeError) as e:
                raise self.fail(tnode, p("params"), str(e)) from None
        if (n := get("for")) is not None:
            spec["for_s"] = self.duration(n, p("for"))
        if (n := get("keep_firing_for")) is not None:
            spec["keep_firing_for_s"] = self.duration(n, p("keep_firing_for"))
        return PythonSpec(**common, **spec)

    def _threshold(self, node: yaml.Node, path: str, f: dict, common: dict) -> ThresholdSpec:
        def get(key: str) -> yaml.Node | None:
            return f[key][1] if key in f else None

        def p(key: str) -> str:
            return _join(path, key)

        if (n := get("signal")) is None:
            raise self.fail(node, p("signal"), "missing required field (expected a sample field such as cpu_ratio)")
        signal = self.string(n, p("signal"))
        if not _SIGNAL_RE.match(signal):
            raise self.fail(n, p("signal"), f"expected a sample field name such as cpu_ratio, got {signal!r}")
        above, below = get("above"), get("below")
        if above is None and below is None:
            raise self.fail(node, p("above"), "missing: a threshold guard needs `above` or `below`")
        if above is not None and below is not None:
            raise self.fail(below, p("below"), "give `above` or `below`, not both")
        op = "above" if above is not None else "below"
        threshold = self.number(above if above is not None else below, p(op))  # type: ignore[arg-type]
        spec: dict[str, Any] = {"signal": signal, "op": op, "threshold": threshold}
        if (n := get("for")) is not None:
            spec["for_s"] = self.duration(n, p("for"))
        if (n := get("keep_firing_for")) is not None:
            spec["keep_firing_for_s"] = self.duration(n, p("keep_firing_for"))
        wrong, right = ("clear_above", "clear_below") if op == "above" else ("clear_below", "clear_above")
        if (n := get(wrong)) is not None:
            raise self.fail(n, p(wrong), f"a guard that fires {op} a threshold clears with `{right}`")
        if (n := get(right)) is not None:
            clear = self.number(n, p(right))
            if (op == "above" and clear > threshold) or (op == "below" and clear < threshold):
                rel = "at or below" if op == "above" else "at or above"
                raise self.fail(n, p(right), f"expected a value {rel} the threshold {threshold:g}, got {clear:g}")
            spec["clear"] = clear
        agg, over = get("aggregate"), get("over")
        if agg is not None:
            spec["aggregate"] = self.string(agg, p("aggregate"), AGGREGATES)
            if over is None:
                raise self.fail(agg, p("over"), "missing: an aggregate needs a window (`over: 30s`)")
            spec["over_s"] = self.duration(over, p("over"))
            if spec["over_s"] <= 0:
                raise self.fail(over, p("over"), "expected a window longer than 0s")
        elif over is not None:
            raise self.fail(over, p("aggregate"), "missing: `over` needs an `aggregate` (avg, max, min or rate)")
        return ThresholdSpec(**common, **spec)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def load_policy(source: str | os.PathLike[str], *, file: str | None = None) -> Policy:
    """Parse a policy from a file path or from YAML text; PolicyError(file, line, field) if bad.

    A string that contains a newline or starts with `guards:` or `{` is read as YAML
    text; anything else is a path.
    """
    if isinstance(source, os.PathLike) or (isinstance(source, str) and "\n" not in source
                                            and not source.lstrip().startswith(("guards:", "{"))):
        path = os.fspath(source)
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as e:
            raise PolicyError(f"cannot read policy: {e.strerror}", file=path) from None
        file = file or path
    else:
        text = str(source)
        file = file or "<policy>"
    return parse_policy(text, file=file)


def parse_policy(text: str, *, file: str = "<policy>") -> Policy:
    """Parse policy YAML text (see load_policy)."""
    p = _Parser(file)
    root = compose(text, file=file, error=PolicyError)
    if root is None:
        raise PolicyError("empty policy (expected a mapping with `guards:`)", file=file, line=1)
    top = p.mapping(root, "")
    p.unknown(top, _TOP_FIELDS, "", "a policy")
    if "guards" not in top:
        raise p.fail(root, "guards", "missing required field (expected a list of guards)")
    gnode = top["guards"][1]
    if not isinstance(gnode, yaml.SequenceNode):
        raise p.fail(gnode, "guards", f"expected a list of guards, got {p._what(gnode)}")
    guards: list[GuardSpec] = []
    seen: dict[str, int] = {}
    for i, n in enumerate(gnode.value):
        g = p.guard(n, f"guards[{i}]")
        if g.name in seen:
            raise p.fail(n, f"guards[{i}].name", f"duplicate guard name {g.name!r} (first at line {seen[g.name]})")
        seen[g.name] = g.line or 0
        guards.append(g)
    meta: dict[str, str] = {}
    for key in ("name", "description"):
        if key in top:
            meta[key] = p.string(top[key][1], key)
    if "version" in top:
        v = p.value(top["version"][1])
        if v != 1:
            raise p.fail(top["version"][1], "version", f"unsupported policy version {v!r} (expected 1)")
    return Policy(guards=tuple(guards), file=file, sha256=hashlib.sha256(text.encode()).hexdigest(), **meta)


def default_policy_path() -> str:
    """Where the shipped default policy lives (package data)."""
    return os.path.join(os.path.dirname(__file__), "default.yaml")


@functools.cache
def default_policy() -> Policy:
    """The shipped default policy (policies/default.yaml); parsed once (a Policy is frozen)."""
    return load_policy(default_policy_path())
