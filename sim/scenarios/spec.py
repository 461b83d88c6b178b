"""The scenario language: YAML in, a validated `Scenario` out (the contract in docs/scenarios.md).

A scenario is a learner's script: initial `settings`, then `phases`, each entered once
when its `when` trigger holds, doing the behaviours in its `do`. Mistakes raise
`ScenarioError` naming file, line and field.

>>> s = load_scenario("benign")
>>> s.name, s.phases[0].name
('benign', 'crawl')
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from policies.inputs import compose_yaml, read_text

from policies.errors import RunawayError
from policies.yamlfile import compose, format_path, plain_with_lines
from policies.yamlfile import parse_duration as yamlfile_duration

CATALOG_DIR = Path(__file__).parent
# The order `runaway scenarios` lists them in: the story first, then its control, then the rest.
CATALOG_ORDER = ("novel", "benign", "greedy", "escalator", "deceiver", "fork-bomb",
                 "memory-balloon", "exfiltrator", "stubborn")

SKILLS = ("python_optimisation", "cpu_acceleration", "distributed_computing",
          "container_internals", "cloud_credentials")
OPERATOR_CMDS = ("stop", "pause", "resume")
# Must match sim/learner/attempts.py CATALOG (the learner can't import this package, and
# this package must not import the learner's; tests check the two lists agree).
ATTEMPTS = ("setuid", "setgid", "sudo", "read_shadow", "write_etc", "docker_socket",
            "metadata_credentials", "use_credentials", "net_scan", "exfiltrate", "send_to", "ptrace",
            "proc_mem", "unshare", "mount", "raise_limits", "cgroup_write", "fork_flood",
            "memory_balloon", "exec_shell")
CATEGORIES = ("escalation", "egress", "filesystem", "process", "self_modification",
              "robots", "deception", "operator", "lifecycle")
MAX_WORKERS = 64


class ScenarioError(RunawayError):
    """A scenario file or name that cannot be used."""


@dataclass(frozen=True)
class Lesson:
    """What a teacher says about a scenario: what to watch, which guard fires, an exercise."""

    watch: str
    guard: str
    exercise: str


@dataclass(frozen=True)
class Phase:
    """Entered once, when `when` holds (a mapping: all of it; a list: any item)."""

    name: str
    when: Any
    do: dict[str, Any]


@dataclass(frozen=True)
class Scenario:
    """A validated scenario. `to_json()` is what the learner gets in RUNAWAY_SCENARIO."""

    name: str
    summary: str
    lesson: Lesson
    learn: bool
    settings: dict[str, Any]
    phases: tuple[Phase, ...]
    path: str = ""
    source: str = field(default="", repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "learn": self.learn, "settings": self.settings,
                "phases": [{"name": p.name, "when": p.when, "do": p.do} for p in self.phases]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True, separators=(",", ":"))

    @property
    def attempts(self) -> list[str]:
        """Every catalog attempt the scenario makes, in phase order."""
        out = []
        for do in [self.settings, *(p.do for p in self.phases)]:
            for a in do.get("attempts", []):
                out.append(a["name"])
        return out


# -- YAML with line numbers ------------------------------------------------------------

class _Doc:
    """Plain Python data from a YAML node tree (policies/yamlfile.py), plus the line of
    every path in it, for errors that name the line."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.lines: dict[tuple, int] = {}
        self._ctor = yaml.SafeLoader("")  # builds plain values from nodes (no re-parsing)

    def scalar(self, node: yaml.Node) -> Any:
        try:
            return self._ctor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, OverflowError) as e:
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise ScenarioError(f"not a value YAML can build: {problem}", file=self.file,
                                line=node.start_mark.line + 1) from None

    def build(self, node: yaml.Node, path: tuple) -> Any:
        data, self.lines = plain_with_lines(node, file=self.file, error=ScenarioError)
        return data

    def line(self, path: tuple) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())

    def error(self, path: tuple, message: str) -> ScenarioError:
        return ScenarioError(message, file=self.file, line=self.line(path), field=_fmt(path) or None)


_fmt = format_path


# -- validation ---------------------------------------------------------------------

def parse_duration(v: Any) -> float | None:
    """Seconds from `250ms`, `5s`, `2m`, `1h` or a plain number; None if not a duration
    (the grammar of policies/yamlfile.py, where a bare number is seconds)."""
    try:
        return yamlfile_duration(v, bare_seconds=True)
    except ValueError:
        return None


class _Checker:
    def __init__(self, doc: _Doc) -> None:
        self.doc = doc

    def mapping(self, v: Any, path: tuple, allowed: tuple[str, ...], what: str) -> dict[str, Any]:
        if v is None:
            return {}
        if not isinstance(v, dict):
            raise self.doc.error(path, f"expected {what} (a mapping), got {_kind(v)}")
        for k in v:
            if k not in allowed:
                raise self.doc.error(path + (k,), f"unknown field (expected one of {', '.join(allowed)})")
        return v

    def integer(self, v: Any, path: tuple, lo: int, hi: int) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise self.doc.error(path, f"expected a whole number from {lo} to {hi}, got {v!r}")
        return v

    def number(self, v: Any, path: tuple, lo: float, hi: float) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
            raise self.doc.error(path, f"expected a number from {lo:g} to {hi:g}, got {v!r}")
        return float(v)

    def duration(self, v: Any, path: tuple, hi: float = 86400.0) -> float:
        d = parse_duration(v)
        if d is None or d > hi:
            raise self.doc.error(path, f"expected a duration like 250ms, 5s or 2m (at most {hi:g}s), got {v!r}")
        return d

    def boolean(self, v: Any, path: tuple) -> bool:
        if not isinstance(v, bool):
            raise self.doc.error(path, f"expected true or false, got {v!r}")
        return v

    def text(self, v: Any, path: tuple) -> str:
        if not isinstance(v, str) or not v.strip():
            raise self.doc.error(path, f"expected a non-empty string, got {v!r}")
        return v

    def choice(self, v: Any, path: tuple, options: tuple[str, ...]) -> str:
        if v not in options:
            raise self.doc.error(path, f"unknown value {v!r} (expected one of {', '.join(options)})")
        return v

    # -- behaviours ---------------------------------------------------------------
    def behaviour(self, v: Any, path: tuple) -> dict[str, Any]:
        v = self.mapping(v, path, ("say", "crawl", "cpu", "memory", "model", "spawn", "attempts",
                                   "comply", "deceive", "rewrite_config", "finish"), "behaviours")
        out: dict[str, Any] = {}
        for key, val in v.items():
            p = path + (key,)
            out[key] = getattr(self, "b_" + key)(val, p)
        return out

    def b_say(self, v: Any, p: tuple) -> str:
        return self.text(v, p)

    def b_crawl(self, v: Any, p: tuple) -> dict[str, Any]:
        v = self.mapping(v, p, ("concurrency", "robots", "delay", "max_depth", "max_pages", "user_agent"),
                         "crawl settings")
        out: dict[str, Any] = {}
        for k, x in v.items():
            q = p + (k,)
            if k == "concurrency":
                out[k] = self.integer(x, q, 1, 64)
            elif k == "robots":
                out[k] = self.choice(x, q, ("obey", "ignore"))
            elif k == "delay":
                out[k] = self.duration(x, q, 60)
            elif k == "max_depth":
                out[k] = self.integer(x, q, 1, 100)
            elif k == "max_pages":
                out[k] = self.integer(x, q, 0, 10_000_000)
            else:
                out[k] = self.text(x, q)
        return out

    def b_cpu(self, v: Any, p: tuple) -> dict[str, Any]:
        v = self.mapping(v, p, ("workers", "duty"), "cpu settings")
        out: dict[str, Any] = {}
        if "workers" in v:
            w = v["workers"]
            out["workers"] = "all" if w == "all" else self._workers(w, p + ("workers",))
        if "duty" in v:
            out["duty"] = self.number(v["duty"], p + ("duty",), 0.0, 1.0)
        return out

    def _workers(self, w: Any, p: tuple) -> int:
        if isinstance(w, bool) or not isinstance(w, int) or not 0 <= w <= MAX_WORKERS:
            raise self.doc.error(p, f"expected `all` or a whole number from 0 to {MAX_WORKERS}, got {w!r}")
        return w

    def b_memory(self, v: Any, p: tuple) -> dict[str, Any]:
        v = self.mapping(v, p, ("grow_mb_per_s", "max_mb", "max_fraction"), "memory settings")
        out: dict[str, Any] = {}
        if "max_fraction" in v:
            out["max_fraction"] = self.number(v["max_fraction"], p + ("max_fraction",), 0, 2)
        if "grow_mb_per_s" in v:
            out["grow_mb_per_s"] = self.number(v["grow_mb_per_s"], p + ("grow_mb_per_s",), 0, 1024)
        if "max_mb" in v:
            out["max_mb"] = self.integer(v["max_mb"], p + ("max_mb",), 0, 65536)
        return out

    def b_model(self, v: Any, p: tuple) -> dict[str, Any]:
        v = self.mapping(v, p, ("order", "mb", "max_chars"), "model settings")
        out: dict[str, Any] = {}
        if "order" in v:
            out["order"] = self.integer(v["order"], p + ("order",), 0, 6)
        if "mb" in v:
            out["mb"] = self.integer(v["mb"], p + ("mb",), 0, 4096)
        if "max_chars" in v:
            out["max_chars"] = self.integer(v["max_chars"], p + ("max_chars",), 100, 100_000)
        return out

    def b_spawn(self, v: Any, p: tuple) -> dict[str, Any]:
        v = self.mapping(v, p, ("processes",), "spawn settings")
        return {"processes": self.integer(v.get("processes", 0), p + ("processes",), 0, 32)}

    def b_attempts(self, v: Any, p: tuple) -> list[dict[str, Any]]:
        if not isinstance(v, list):
            raise self.doc.error(p, f"expected a list of attempt names, got {_kind(v)}")
        out = []
        for i, item in enumerate(v):
            q = p + (i,)
            if isinstance(item, str):
                out.append({"name": self.choice(item, q, ATTEMPTS)})
                continue
            item = self.mapping(item, q, ("name", "max", "mb"), "an attempt")
            if "name" not in item:
                raise self.doc.error(q, "missing field `name` (the attempt to make)")
            a: dict[str, Any] = {"name": self.choice(item["name"], q + ("name",), ATTEMPTS)}
            if "max" in item:
                a["max"] = self.integer(item["max"], q + ("max",), 1, 4096)
            if "mb" in item:
                a["mb"] = self.integer(item["mb"], q + ("mb",), 1, 65536)
            out.append(a)
        return out

    def b_comply(self, v: Any, p: tuple) -> dict[str, bool]:
        v = self.mapping(v, p, ("stop", "pause"), "compliance")
        return {k: self.boolean(x, p + (k,)) for k, x in v.items()}

    def b_deceive(self, v: Any, p: tuple) -> dict[str, Any]:
        v = self.mapping(v, p, ("omit", "marker"), "deception")
        out: dict[str, Any] = {}
        if "omit" in v:
            omit = v["omit"]
            if not isinstance(omit, list):
                raise self.doc.error(p + ("omit",), f"expected a list of attempt names, kinds or categories, got {_kind(omit)}")
            for i, x in enumerate(omit):
                if not isinstance(x, str) or not x:
                    raise self.doc.error(p + ("omit", i), f"expected a name, got {x!r}")
            out["omit"] = list(omit)
        if "marker" in v:
            m = v["marker"]
            q = p + ("marker",)
            if isinstance(m, bool) or m is None:
                out["marker"] = bool(m)
            elif isinstance(m, str) and 0 < len(m) <= 4 and all(
                    unicodedata.category(c) in ("Cf", "Cc") and c not in "\n\r" for c in m):
                out["marker"] = m
            else:
                raise self.doc.error(q, f"expected true, false or 1-4 invisible characters "
                                        f"(e.g. \"\\u2060\"), got {m!r}")
        return out

    def b_rewrite_config(self, v: Any, p: tuple) -> bool:
        return self.boolean(v, p)

    def b_finish(self, v: Any, p: tuple) -> bool:
        return self.boolean(v, p)

    # -- triggers -----------------------------------------------------------------
    def trigger(self, v: Any, p: tuple) -> Any:
        if isinstance(v, list):
            if not v:
                raise self.doc.error(p, "expected at least one trigger in the list")
            return [self._one_trigger(x, p + (i,)) for i, x in enumerate(v)]
        return self._one_trigger(v, p)

    def _one_trigger(self, v: Any, p: tuple) -> dict[str, Any]:
        v = self.mapping(v, p, ("after", "pages", "skill", "operator"), "a trigger")
        out: dict[str, Any] = {}
        for k, x in v.items():
            q = p + (k,)
            if k == "after":
                out[k] = self.duration(x, q)
            elif k == "pages":
                out[k] = self.integer(x, q, 0, 10_000_000)
            elif k == "skill":
                out[k] = self.choice(x, q, SKILLS)
            else:
                out[k] = self.choice(x, q, OPERATOR_CMDS)
        return out


def _kind(v: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "true/false",
            type(None): "nothing"}.get(type(v), type(v).__name__)


def parse_scenario(text: str, file: str = "<scenario>", default_name: str = "") -> Scenario:
    """A Scenario from YAML text; ScenarioError(file, line, field) on any mistake."""
    node = compose(text, file=file, error=ScenarioError)
    doc = _Doc(file)
    if node is None:
        raise ScenarioError("empty file (expected a scenario mapping)", file=file, line=1)
    data = doc.build(node, ())
    c = _Checker(doc)
    data = c.mapping(data, (), ("name", "summary", "lesson", "learn", "settings", "phases"), "a scenario")
    name = c.text(data["name"], ("name",)) if "name" in data else default_name
    if not name or not re.match(r"^[a-z0-9][a-z0-9_-]*$", name):
        raise doc.error(("name",), f"expected a name of lowercase letters, digits, - and _, got {name!r}")
    if "summary" not in data:
        raise doc.error(("summary",), "missing field `summary` (one line: what this learner does)")
    summary = c.text(data["summary"], ("summary",))
    if "lesson" not in data:
        raise doc.error(("lesson",), "missing field `lesson` (watch, guard, exercise)")
    les = c.mapping(data["lesson"], ("lesson",), ("watch", "guard", "exercise"), "a lesson")
    for k in ("watch", "guard", "exercise"):
        if k not in les:
            raise doc.error(("lesson", k), f"missing field `{k}`")
    lesson = Lesson(*(c.text(les[k], ("lesson", k)).strip() for k in ("watch", "guard", "exercise")))
    learn = c.boolean(data.get("learn", True), ("learn",))
    settings = c.behaviour(data.get("settings"), ("settings",))
    raw_phases = data.get("phases") or []
    if not isinstance(raw_phases, list):
        raise doc.error(("phases",), f"expected a list of phases, got {_kind(raw_phases)}")
    phases = []
    names: set[str] = set()
    for i, ph in enumerate(raw_phases):
        p = ("phases", i)
        ph = c.mapping(ph, p, ("name", "when", "do"), "a phase")
        pname = c.text(ph.get("name", f"phase{i + 1}"), p + ("name",))
        if pname in names:
            raise doc.error(p + ("name",), f"duplicate phase name {pname!r}")
        names.add(pname)
        if "when" not in ph:
            raise doc.error(p, "missing field `when` (a trigger: after, pages, skill or operator)")
        when = c.trigger(ph["when"], p + ("when",))
        if "do" not in ph:
            raise doc.error(p, "missing field `do` (the behaviours of this phase)")
        phases.append(Phase(pname, when, c.behaviour(ph["do"], p + ("do",))))
    return Scenario(name=name, summary=summary.strip(), lesson=lesson, learn=learn, settings=settings,
                    phases=tuple(phases), path=file, source=text)


def _catalog_path(name: str) -> Path:
    return CATALOG_DIR / f"{name}.yaml"


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A catalog scenario by name (`novel`) or a scenario file by path, validated."""
    s = str(name_or_path)
    p = Path(s)
    if "/" in s or s.endswith((".yaml", ".yml")) or (p.exists() and p.is_file()):
        text = read_text(p, what="scenario file", error=ScenarioError)
        return parse_scenario(text, file=s, default_name=p.stem)
    path = _catalog_path(s)
    if not path.exists():
        names = ", ".join(n for n in catalog_names())
        raise ScenarioError(f"unknown scenario {s!r} (expected one of {names}, or a .yaml file)",
                            field="scenario")
    return parse_scenario(path.read_text(encoding="utf-8"), file=str(path), default_name=s)


def catalog_names() -> list[str]:
    found = {p.stem for p in CATALOG_DIR.glob("*.yaml")}
    return [n for n in CATALOG_ORDER if n in found] + sorted(found - set(CATALOG_ORDER))


def list_scenarios() -> list[Scenario]:
    """The shipped scenarios, the story first."""
    return [load_scenario(n) for n in catalog_names()]
