"""Reading the project's YAML files: one loader that keeps line numbers, one duration grammar.

The policy language (policies/spec.py) and the scenario language (sim/scenarios/spec.py)
both read their files through here, so a mistake in either names the file and the line,
and a limit or a fix made here holds for both. This is the one place YAML text becomes a
node tree and the one place a duration such as `250ms` or `1m30s` is read.

>>> doc = compose("a: 1\\nb: [2, 3]\\n", file="x.yaml", error=RunawayError)
>>> values, lines = plain_with_lines(doc, file="x.yaml", error=RunawayError)
>>> values, lines[("b",)]
({'a': 1, 'b': [2, 3]}, 2)
>>> parse_duration("1m30s"), parse_duration(5, bare_seconds=True)
(90.0, 5.0)
"""

from __future__ import annotations

import math
import re
from typing import Any

import yaml

from .errors import RunawayError

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_BARE_SECONDS = re.compile(r"\d+(?:\.\d+)?")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
DURATION_HINT = "a duration like 250ms, 5s, 2m or 1h"
# The longest duration a file may name: 30 days (longer is a typo, e.g. `for: 1e26h`, and
# would not survive the export to Prometheus rules).
MAX_DURATION_S = 30 * 24 * 3600.0


def parse_duration(text: Any, *, bare_seconds: bool = False) -> float:
    """Seconds in a duration such as `250ms`, `5s`, `2m`, `1h` or `1m30s` (ValueError if
    not one). The number 0 is a duration; with `bare_seconds` (the scenario language) any
    non-negative number, or a string of one, is that many seconds."""
    if isinstance(text, bool):
        raise ValueError(text)
    if isinstance(text, (int, float)):
        if text == 0 or (bare_seconds and text >= 0):
            return float(text)
        raise ValueError(text)
    if not isinstance(text, str):
        raise ValueError(text)
    s = text.strip()
    if bare_seconds and _BARE_SECONDS.fullmatch(s):
        return float(s)
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(s):
        if m.start() != pos:
            raise ValueError(text)
        total += float(m.group(1)) * _UNIT_S[m.group(2)]
        pos = m.end()
    if pos == 0 or pos != len(s) or not math.isfinite(total) or total > MAX_DURATION_S:
        raise ValueError(text)
    return total


def format_duration(seconds: float) -> str:
    """The Prometheus spelling of a duration (`1m30s`, `250ms`); whole milliseconds."""
    ms = int(round(seconds * 1000))
    if ms == 0:
        return "0s"
    out = []
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        if ms >= size:
            out.append(f"{ms // size}{unit}")
            ms %= size
    return "".join(out)


def compose(text: str, *, file: str, error: type[RunawayError]) -> yaml.Node | None:
    """The node tree of YAML text (None for an empty document); a syntax error becomes
    `error("not valid YAML: ...", file=, line=)`, never a traceback."""
    from .inputs import compose_yaml

    # Depth and alias expansion bounded (a "billion laughs" is one line, not the host's memory).
    return compose_yaml(text, file=file, error=error)


class Values:
    """Plain Python values (str, int, float, bool, None, lists, dicts) built from nodes,
    with YAML's own tag resolution (`yes` stays a string, `1.5` is a float)."""

    def __init__(self) -> None:
        self._ctor = yaml.SafeLoader("")

    def __call__(self, node: yaml.Node) -> Any:
        try:
            return self._ctor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, OverflowError) as e:  # e.g. a date like 2024-13-45
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise RunawayError(f"not a value YAML can build: {problem}", line=node.start_mark.line + 1) from None


def plain_with_lines(node: yaml.Node, *, file: str, error: type[RunawayError]) -> tuple[Any, dict[tuple, int]]:
    """The plain value of a node tree and the line of every path in it (a path is a tuple
    of keys and list indexes; the root is `()`). A key given twice is `error`."""
    value = Values()
    lines: dict[tuple, int] = {}

    def build(n: yaml.Node, path: tuple) -> Any:
        lines[path] = n.start_mark.line + 1
        if isinstance(n, yaml.MappingNode):
            out: dict[str, Any] = {}
            for k, v in n.value:
                key = k.value if isinstance(k, yaml.ScalarNode) else str(value(k))
                if key in out:
                    raise error("duplicate key", file=file, line=k.start_mark.line + 1,
                                field=format_path(path + (key,)))
                lines[path + (key,)] = k.start_mark.line + 1
                out[key] = build(v, path + (key,))
            return out
        if isinstance(n, yaml.SequenceNode):
            return [build(v, path + (i,)) for i, v in enumerate(n.value)]
        return value(n)

    return build(node, ()), lines


def format_path(path: tuple) -> str:
    """`phases[1].do.crawl` for ("phases", 1, "do", "crawl")."""
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out
