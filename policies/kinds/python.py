"""Python guards: a registered `Guard` subclass's condition, run under the same states as
threshold guards (`for`, `keep_firing_for`). Named in YAML by `type:`::

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

Their condition is Python code, so they have no PromQL equivalent.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from ..errors import PolicyError
from ..model import Event, Sample, Verdict
from ..spec import Fields, FieldReader, GuardSpec
from ..yamlfile import format_duration
from .base import Conditional, GuardKind, Rule, register_kind

if TYPE_CHECKING:
    import yaml


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


def import_plugins(modules: Iterable[str]) -> None:
    """Import modules that register Python guards (`runaway run|sweep|replay|policy check
    --plugin MODULE`); PolicyError naming the module if one cannot be imported."""
    for mod in modules:
        try:
            importlib.import_module(mod)
        except ImportError as e:
            raise PolicyError(f"cannot import {mod!r}: {e}", field="--plugin") from None


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


class PythonGuard(Conditional):
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


@register_kind
class PythonKind(GuardKind):
    name = "python"
    what = "a Python guard"
    hint = "`type` (Python guard)"
    keys = frozenset({"type"})
    fields = ("type", "params", "for", "keep_firing_for")
    spec_types = (PythonSpec,)
    rank = 0

    def parse(self, r: FieldReader, node: "yaml.Node", path: str, f: Fields, common: dict) -> PythonSpec:
        types = guard_types()
        tnode = f["type"][1]
        tname = r.string(tnode, f.at("type"))
        if tname not in types:
            known = ", ".join(sorted(types)) or "none registered"
            raise r.fail(tnode, f.at("type"), f"unknown guard type {tname!r} (registered: {known}; "
                            "register Python guards with policies.register_guard before loading)")
        spec = {"type": tname}
        if (n := f.get("params")) is not None:
            params = r.value(n)
            if not isinstance(params, dict):
                raise r.fail(n, f.at("params"), f"expected a mapping, got {r.what(n)}")
            try:
                types[tname].check_params(params)
            except (ValueError, TypeError) as e:
                raise r.fail(n, f.at("params"), str(e)) from None
            spec["params"] = params
        else:
            try:
                types[tname].check_params({})
            except (ValueError, TypeError) as e:
                raise r.fail(tnode, f.at("params"), str(e)) from None
        if (n := f.get("for")) is not None:
            spec["for_s"] = r.duration(n, f.at("for"))
        if (n := f.get("keep_firing_for")) is not None:
            spec["keep_firing_for_s"] = r.duration(n, f.at("keep_firing_for"))
        return PythonSpec(**common, **spec)

    def build(self, spec: PythonSpec) -> PythonGuard:  # type: ignore[override]
        return PythonGuard(spec)

    def promql(self, spec: PythonSpec) -> tuple[Rule | None, str]:  # type: ignore[override]
        return None, "Python guard: its condition is Python code"
