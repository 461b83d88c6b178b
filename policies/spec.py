"""The policy language's values: a `Policy` of guard specs, and the reader guard kinds parse
their fields with. Each kind's own spec, parser and run-time guard live in policies/kinds/;
policies/parse.py reads a whole file.

Every mistake names the file, the line and the field (`guards[2].for`), and what was
expected, so a policy author never needs a traceback.

>>> Match(fields=(("category", frozenset({"escalation"})),)).describe()
'category=escalation'
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any, Mapping

import yaml

from .errors import PolicyError
from .model import CATEGORIES, OUTCOMES, SOURCES
# The duration grammar lives in yamlfile.py (shared with the scenario language); policies.spec
# keeps offering parse_duration and format_duration.
from .yamlfile import DURATION_HINT, Values, format_duration, parse_duration  # noqa: F401

SEVERITIES = ("info", "warning", "critical")
# Event fields a match may name; `detail.<key>` matches a key of the event's detail.
EVENT_FIELDS = ("source", "category", "kind", "outcome")
_KNOWN_VALUES = {"source": SOURCES, "category": CATEGORIES, "outcome": OUTCOMES}
# Fields every guard takes; each kind adds its own (GuardKind.fields).
COMMON_FIELDS = ("name", "action", "severity", "description", "enabled")
TOP_FIELDS = ("guards", "name", "description", "version")

# Names that moved to their kind's module (policies/kinds/) or to policies/parse.py, still
# importable from here. Looked up on first use, so this module imports neither.
_MOVED = {
    "ThresholdSpec": "policies.kinds.threshold", "AGGREGATES": "policies.kinds.threshold",
    "DERIVED_SIGNALS": "policies.kinds.threshold", "EventSpec": "policies.kinds.event",
    "DeceptionSpec": "policies.kinds.deception", "PythonSpec": "policies.kinds.python",
    "load_policy": "policies.parse", "parse_policy": "policies.parse",
    "default_policy": "policies.parse", "default_policy_path": "policies.parse",
}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


class FieldReader:
    """Reads a guard's fields off the composed YAML node tree, so every value keeps its line
    number and every mistake names file, line and field. Guard kinds parse with it."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.value = Values()

    def fail(self, node: yaml.Node | None, field: str | None, message: str) -> PolicyError:
        line = node.start_mark.line + 1 if node is not None else None
        return PolicyError(message, file=self.file, line=line, field=field)

    def mapping(self, node: yaml.Node, path: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, path or None, f"expected a mapping of fields, got {self.what(node)}")
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for k, v in node.value:
            key = self.value(k)
            if not isinstance(key, str):
                raise self.fail(k, path or None, f"field names must be strings, got {key!r}")
            if key in out:
                raise self.fail(k, join(path, key), "field given twice")
            out[key] = (k, v)
        return out

    @staticmethod
    def what(node: yaml.Node) -> str:
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
                raise self.fail(knode, join(path, key), f"unknown field for {what}{extra}")

    def string(self, node: yaml.Node, path: str, choices: tuple[str, ...] | frozenset | None = None) -> str:
        v = self.value(node)
        if not isinstance(v, str) or not v:
            raise self.fail(node, path, f"expected a non-empty string, got {self.what(node)}")
        if choices is not None and v not in choices:
            raise self.fail(node, path, f"unknown value {v!r} (expected one of: {', '.join(sorted(choices) if isinstance(choices, frozenset) else choices)})")
        return v

    def number(self, node: yaml.Node, path: str) -> float:
        v = self.value(node)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise self.fail(node, path, f"expected a number, got {self.what(node)}")
        return float(v)

    def duration(self, node: yaml.Node, path: str, *, positive: bool = False) -> float:
        v = self.value(node)
        try:
            d = parse_duration(v)
        except ValueError:
            raise self.fail(node, path, f"expected {DURATION_HINT}, got {str(v)[:40]!r}") from None
        if positive and d <= 0:
            raise self.fail(node, path, f"expected a window longer than 0s, got {v!r}")
        return d

    def boolean(self, node: yaml.Node, path: str) -> bool:
        v = self.value(node)
        if not isinstance(v, bool):
            raise self.fail(node, path, f"expected true or false, got {self.what(node)}")
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
            fpath = join(path, key)
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
            raise self.fail(node, path, f"expected a string or number, got {self.what(node)}")
        return v

    # -- guards

class Fields(dict):
    """A guard mapping's fields ({key: (key node, value node)}) at `path`: `get(key)` is the
    value node or None, `at(key)` the field's path for errors (`guards[0].for`)."""

    def __init__(self, fields: Mapping[str, tuple[yaml.Node, yaml.Node]], path: str) -> None:
        super().__init__(fields)
        self.path = path

    def get(self, key: str) -> yaml.Node | None:  # type: ignore[override]
        return self[key][1] if key in self else None

    def at(self, key: str) -> str:
        return join(self.path, key)


def join(path: str, key: str) -> str:
    """`guards[0].for` from `guards[0]` and `for`."""
    return f"{path}.{key}" if path else key
