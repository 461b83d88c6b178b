"""A new guard kind is one module registered through policies.kinds: the parser, the engine
and the rules export find it there, with no edit anywhere else."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from policies import Engine, PolicyError, Sample, load_policy
from policies.kinds import Conditional, GuardKind, kind_of, kinds, register_kind, unregister_kind
from policies.kinds.threshold import signal_getter
from policies.promql import export_rules
from policies.spec import GuardSpec, join


@dataclass(frozen=True, kw_only=True)
class RisingSpec(GuardSpec):
    """A signal that rises by more than `by` from one sample to the next."""

    signal: str
    by: float

    def describe(self) -> str:
        return f"{self.signal} rises by more than {self.by:g} between samples"


class RisingGuard(Conditional):
    __slots__ = ("get", "by", "prev", "last")
    route = "all"

    def __init__(self, spec: RisingSpec) -> None:
        super().__init__(spec, 0.0, 0.0)
        self.get = signal_getter(spec.signal)
        self.by = spec.by
        self.prev: float | None = None
        self.last = 0.0

    def observe(self, obs):  # type: ignore[no-untyped-def]
        if type(obs) is not Sample or (v := self.get(obs)) is None:
            return None
        prev, self.prev = self.prev, v
        if prev is None:
            return None
        self.last = v - prev
        return self.advance(obs.t, self.last > self.by, lambda: f"{self.spec.signal} rose by {self.last:g}")


class RisingKind(GuardKind):
    name = "rising"
    what = "a rising guard"
    hint = "`rises_by` (rising)"
    keys = frozenset({"rises_by"})
    fields = ("signal", "rises_by")
    spec_types = (RisingSpec,)
    rank = 5  # before threshold, which also claims `signal`

    def parse(self, r, node, path, f, common):  # type: ignore[no-untyped-def]
        if "signal" not in f:
            raise r.fail(node, join(path, "signal"), "missing required field (expected a sample field)")
        return RisingSpec(**common, signal=r.string(f["signal"][1], join(path, "signal")),
                          by=r.number(f["rises_by"][1], join(path, "rises_by")))

    def build(self, spec):  # type: ignore[no-untyped-def]
        return RisingGuard(spec)


POLICY = """
guards:
  - {name: pages-jump, signal: pages, rises_by: 100, action: pause}
  - {name: hot, signal: cpu_ratio, above: 0.9, action: throttle}
"""


@pytest.fixture
def rising():
    register_kind(RisingKind)
    yield
    unregister_kind("rising")


def test_a_registered_kind_parses_runs_and_ladders_like_the_built_in_ones(rising):
    policy = load_policy(POLICY)
    assert [kind_of(g).name for g in policy.guards] == ["rising", "threshold"]
    eng = Engine(policy)
    assert eng.step(Sample(t=0.0, extra={"pages": 10})) == []
    assert eng.step(Sample(t=1.0, extra={"pages": 60})) == []
    fired = eng.step(Sample(t=2.0, cpu_ratio=0.95, extra={"pages": 400}))
    assert [(v.guard, v.state) for v in fired] == [("hot", "firing"), ("pages-jump", "firing")]
    assert "rose by 340" in fired[1].reason
    assert eng.actions == ["pause"]  # the ladder: pause outranks throttle
    assert [(v.guard, v.state) for v in eng.step(Sample(t=3.0, cpu_ratio=0.95, extra={"pages": 410}))] == [("pages-jump", "resolved")]


def test_a_registered_kind_has_its_own_errors_and_is_skipped_by_the_rules_export(rising):
    with pytest.raises(PolicyError, match=r"guards\[0\]\.over: unknown field for a rising guard"):
        load_policy("guards:\n  - {name: j, signal: pages, rises_by: 5, over: 5s}\n")
    assert "`rises_by` (rising)" in [k.hint for k in kinds()]
    _, skipped = export_rules(load_policy(POLICY))
    assert skipped == [("pages-jump", "a rising guard has no PromQL equivalent")]


def test_without_the_kind_the_same_guard_is_a_threshold_guard_with_an_unknown_field():
    with pytest.raises(PolicyError, match=r"guards\[0\]\.rises_by: unknown field for a threshold guard"):
        load_policy(POLICY)
