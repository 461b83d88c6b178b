"""The learner's output is untrusted input: whatever it prints cannot blind the guards,
move the run's clock, or break the trace."""

from __future__ import annotations

import asyncio
import io
import json
import math
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies import Engine, load_policy
from policies.model import Sample, TraceWriter, Verdict, loads_strict, read_trace
from sim.lab import protocol
from sim.lab.metrics import RunMetrics
from sim.lab.runner import DEFAULT_POLICY, Experiment, RunConfig

SAMPLE_DT = 0.25
PEGGED_FOR_S = 20.0  # the default policy's cpu-pegged `for:`


class Consumer:
    """The runner's consumer (the code path every line and sample takes in a run) on a
    clock the test moves, so a 20 s story takes milliseconds."""

    def __init__(self, trace_path: Path) -> None:
        self.now = 0.0
        exp = Experiment(RunConfig(), handle_signals=False)
        exp.clock = lambda: self.now  # type: ignore[method-assign]
        exp.engine = Engine(load_policy(str(DEFAULT_POLICY)))
        exp.trace = TraceWriter(str(trace_path))
        exp.metrics = RunMetrics("r", "agent")
        exp.log = io.StringIO()
        self.exp = exp

    async def feed(self, lines_per_sample: list[list[str]], seconds: float) -> None:
        n = int(seconds / SAMPLE_DT)
        for i in range(n):
            self.now = i * SAMPLE_DT
            for line in lines_per_sample[i % len(lines_per_sample)] if lines_per_sample else ():
                await self.exp._handle(("line", "stdout", line))
            # A pegging agent: the observer sees the CPU at its cap, every sample.
            await self.exp._handle(Sample(t=self.now, cpu_ratio=1.0, cpu_seconds=self.now * 0.5, pids=3,
                                          extra={"cpu_demand": 1.0}))
        self.exp.trace.close()


def _fired(path: Path, guard: str) -> list[float]:
    return [r.t for r in read_trace(str(path)) if isinstance(r, Verdict) and r.guard == guard
            and r.state == "firing"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
numbers = st.one_of(st.floats(), st.integers(), st.sampled_from([1e300, -1e300, 0, -1, 10**30]))
protocol_objects = st.one_of(
    st.fixed_dictionaries({"type": st.just("gauge")}, optional={
        "pages": numbers, "cpu_ratio": numbers, "bits_per_char": numbers, "wall": numbers, "t": numbers}),
    st.fixed_dictionaries({
        "type": st.just("event"),
        "source": st.sampled_from(["self_report", "audit", "observer", "operator", "x"]),
        "category": st.sampled_from(["lifecycle", "escalation", "operator", "nope"]),
        "kind": st.text(min_size=0, max_size=10),
    }, optional={"wall": numbers, "t": numbers, "outcome": st.text(max_size=8), "detail": json_values}),
    st.dictionaries(st.text(max_size=8), json_values, max_size=5),
)


def _dump(obj: object) -> str:
    return protocol.PREFIX + json.dumps(obj, allow_nan=True)


agent_lines = st.one_of(
    st.text(max_size=80),
    protocol_objects.map(_dump),
    st.text(max_size=80).map(lambda s: protocol.PREFIX + s),
    st.integers(1, 50_000).map(lambda n: protocol.PREFIX + "[" * n),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(st.lists(st.lists(agent_lines, max_size=4), max_size=6))
def test_whatever_an_agent_prints_a_pegging_agent_is_caught_and_the_trace_stays_json(tmp_path_factory, lines):
    """Whatever lines an agent prints, a pegging agent is still caught by cpu-pegged (at its
    `for:`), and every trace line is standard JSON."""
    path = tmp_path_factory.mktemp("run") / "trace.jsonl"
    c = Consumer(path)
    asyncio.run(c.feed(lines, PEGGED_FOR_S + 4))
    for text in path.read_text(encoding="utf-8").split("\n")[:-1]:
        rec = loads_strict(text)  # no NaN, no Infinity
        assert isinstance(rec, dict)
    fired = _fired(path, "cpu-pegged")
    assert fired and fired[0] <= PEGGED_FOR_S + 2 * SAMPLE_DT


def test_a_far_future_wall_stamp_does_not_blind_the_guards(tmp_path):
    # The attack: one line stamped at 1e300 used to put every later record there.
    poison = ('@runaway {"type":"event","source":"self_report","category":"lifecycle","kind":"say",'
              '"wall":1e300}')
    c = Consumer(tmp_path / "trace.jsonl")
    asyncio.run(c.feed([[poison]], PEGGED_FOR_S + 4))
    recs = list(read_trace(str(tmp_path / "trace.jsonl")))
    assert max(r.t for r in recs) < PEGGED_FOR_S + 4
    assert _fired(tmp_path / "trace.jsonl", "cpu-pegged")


def test_nan_gauges_are_refused_and_recorded(tmp_path):
    c = Consumer(tmp_path / "trace.jsonl")
    asyncio.run(c.feed([['@runaway {"type":"gauge","pages":NaN}'], ['@runaway {"type":"gauge","pages":1e999}']],
                       2.0))
    recs = list(read_trace(str(tmp_path / "trace.jsonl")))
    refused = [r for r in recs if getattr(r, "kind", "") == "bad_protocol_line"]
    assert refused and refused[0].source == "observer" and refused[0].category == "deception"
    assert all(not isinstance(r, Sample) or "pages" not in r.extra for r in recs)


def test_a_gauge_cannot_overwrite_what_the_observer_measured(tmp_path):
    c = Consumer(tmp_path / "trace.jsonl")
    asyncio.run(c.feed([['@runaway {"type":"gauge","cpu_ratio":0.0,"pages":3}',
                         '@runaway {"type":"gauge","cpu_demand":0.0,"pages":3}']], 2.0))
    samples = [r for r in read_trace(str(tmp_path / "trace.jsonl")) if isinstance(r, Sample)]
    assert samples and all(s.cpu_ratio == 1.0 and s.extra["cpu_demand"] == 1.0 for s in samples)


def test_a_flood_of_lines_is_cut_to_the_budget_and_reported():
    now = [0.0]
    gate = protocol.OutputGate(lambda: now[0])
    admitted = sum(gate.admit("x" * 10) for _ in range(100_000))
    assert admitted == protocol.LINE_BURST
    now[0] = 2.0
    ev = gate.report()
    assert ev is not None and ev.kind == "output_flood" and ev.detail["dropped_lines"] == 100_000 - admitted
    assert gate.admit("x")  # the budget refills with time
    assert not math.isnan(ev.t)
