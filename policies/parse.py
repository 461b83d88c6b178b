"""Reading a policy file: YAML guard files parsed into frozen `Policy` values.

Each guard mapping is handed to the guard kind its keys name (policies/kinds/), which
parses it; this module does what is common: the top level, the guard's name, action,
severity, description and enabled, duplicate names. Every mistake names the file, the
line and the field (`guards[2].for`), and what was expected:

>>> p = load_policy("guards:\\n  - {name: hot, signal: cpu_ratio, above: 0.9, for: 5s}")
>>> p.guards[0].for_s
5.0
>>> load_policy("guards:\\n  - {name: hot, signal: cpu_ratio, above: 0.9, for: soon}")
Traceback (most recent call last):
policies.errors.PolicyError: <policy>:2: guards[0].for: expected a duration like 250ms, 5s, 2m or 1h, got 'soon'
"""

from __future__ import annotations

import functools
import hashlib
import os
from typing import Any

import yaml

from .errors import PolicyError
from .inputs import read_text
from .kinds import kinds, sniff
from .model import ACTIONS
from .spec import COMMON_FIELDS, SEVERITIES, TOP_FIELDS, FieldReader, Fields, GuardSpec, Policy, join
from .yamlfile import compose


def parse_guard(r: FieldReader, node: yaml.Node, path: str) -> GuardSpec:
    """One guard mapping, parsed by the kind its keys name."""
    f = Fields(r.mapping(node, path), path)
    kind = sniff(f.keys())
    if kind is None:
        hints = [k.hint for k in kinds() if k.hint]
        listed = ", ".join(hints[:-1]) + f" or {hints[-1]}" if len(hints) > 1 else "".join(hints)
        raise r.fail(node, path, f"cannot tell what kind of guard this is: expected {listed}")
    if "name" not in f:
        raise r.fail(node, join(path, "name"), "missing required field (expected a guard name)")
    name = r.string(f["name"][1], join(path, "name"))
    r.unknown(f, COMMON_FIELDS + kind.fields, path, kind.what)
    common: dict[str, Any] = {"name": name, "line": node.start_mark.line + 1}
    for key, choices in (("action", ACTIONS), ("severity", SEVERITIES), ("description", None)):
        if key in f:
            common[key] = r.string(f[key][1], join(path, key), choices)
    if "enabled" in f:
        common["enabled"] = r.boolean(f["enabled"][1], join(path, "enabled"))
    return kind.parse(r, node, path, f, common)


def load_policy(source: str | os.PathLike[str], *, file: str | None = None) -> Policy:
    """Parse a policy from a file path or from YAML text; PolicyError(file, line, field) if bad.

    A string that contains a newline or starts with `guards:` or `{` is read as YAML
    text; anything else is a path.
    """
    if isinstance(source, os.PathLike) or (isinstance(source, str) and "\n" not in source
                                            and not source.lstrip().startswith(("guards:", "{"))):
        path = os.fspath(source)
        text = read_text(path, what="policy", error=PolicyError)
        file = file or path
    else:
        text = str(source)
        file = file or "<policy>"
    return parse_policy(text, file=file)


def parse_policy(text: str, *, file: str = "<policy>") -> Policy:
    """Parse policy YAML text (see load_policy)."""
    r = FieldReader(file)
    root = compose(text, file=file, error=PolicyError)
    if root is None:
        raise PolicyError("empty policy (expected a mapping with `guards:`)", file=file, line=1)
    top = r.mapping(root, "")
    r.unknown(top, TOP_FIELDS, "", "a policy")
    if "guards" not in top:
        raise r.fail(root, "guards", "missing required field (expected a list of guards)")
    gnode = top["guards"][1]
    if not isinstance(gnode, yaml.SequenceNode):
        raise r.fail(gnode, "guards", f"expected a list of guards, got {r.what(gnode)}")
    guards: list[GuardSpec] = []
    seen: dict[str, int] = {}
    for i, n in enumerate(gnode.value):
        g = parse_guard(r, n, f"guards[{i}]")
        if g.name in seen:
            raise r.fail(n, f"guards[{i}].name", f"duplicate guard name {g.name!r} (first at line {seen[g.name]})")
        seen[g.name] = g.line or 0
        guards.append(g)
    meta: dict[str, str] = {}
    for key in ("name", "description"):
        if key in top:
            meta[key] = r.string(top[key][1], key)
    if "version" in top:
        v = r.value(top["version"][1])
        if v != 1:
            raise r.fail(top["version"][1], "version", f"unsupported policy version {v!r} (expected 1)")
    return Policy(guards=tuple(guards), file=file, sha256=hashlib.sha256(text.encode()).hexdigest(), **meta)


def default_policy_path() -> str:
    """Where the shipped default policy lives (package data)."""
    return os.path.join(os.path.dirname(__file__), "default.yaml")


@functools.cache
def default_policy() -> Policy:
    """The shipped default policy (policies/default.yaml); parsed once (a Policy is frozen)."""
    return load_policy(default_policy_path())
