"""The runner over the in-memory fake backend: the whole run (session order, protocol
lines, guards, the action ladder, the trace) without Docker or a learner process."""

from __future__ import annotations

from pathlib import Path

import pytest

from fake_backend import NAME, FakeBackend
from policies.model import Action, Event, Meta, Sample, Verdict, read_trace
from sim.lab.runner import Experiment, RunConfig

POLICY = """
guards:
  - {name: busy, signal: cpu_ratio, above: 0.5, action: throttle}
  - {name: pegged, signal: cpu_ratio, above: 0.9, for: 100ms, action: kill}
  - {name: setuid, on_event: {category: escalation}, action: pause}
"""


def _hot(n: int, every: float = 0.02, ratio: float = 0.99) -> list[tuple[float, Sample]]:
    return [(i * every, Sample(t=0.0, cpu_ratio=ratio, mem_bytes=1 << 20, mem_limit_bytes=256 << 20, pids=1))
            for i in range(n)]


async def _run(tmp_path: Path, script, policy: str = POLICY, duration: float = 3.0, linger: bool = True):
    pol = tmp_path / "policy.yaml"
    pol.write_text(policy)
    out = tmp_path / "run"
    with FakeBackend(script, linger=linger) as fake:
        res = await Experiment(RunConfig(scenario="benign", backend=NAME, policy=str(pol), duration=duration,
                                         profile="ci", out=out, metrics_port=None),
                               handle_signals=False).run()
    return res, fake.opened[0], list(read_trace(str(out / "trace.jsonl")))


async def test_a_pegged_learner_is_throttled_then_killed_and_the_trace_says_so(tmp_path):
    res, sb, records = await _run(tmp_path, _hot(30))
    assert res.stopped_by == "kill"
    assert [name for name, _ in sb.applied] == ["throttle", "kill"]
    # the throttle lowers the cap to a quarter of the profile's
    assert sb.applied[0][1] == pytest.approx(0.5 * 0.25)
    actions = [r for r in records if isinstance(r, Action)]
    assert [(a.action, a.ok) for a in actions] == [("throttle", True), ("kill", True)]
    firing = [r.guard for r in records if isinstance(r, Verdict) and r.state == "firing"]
    assert firing[:2] == ["busy", "pegged"]
    meta = records[0]
    assert isinstance(meta, Meta) and meta.backend == NAME and meta.extra["security_boundary"] is False
    assert sb.closed


async def test_the_session_opens_the_web_before_the_learner_starts(tmp_path):
    res, sb, _ = await _run(tmp_path, _hot(3, ratio=0.1), duration=0.5)
    assert sb.started is not None and sb.started["allowed"], "the web's port was opened before start"
    port = sb.started["allowed"][0]
    assert sb.started["env"]["RUNAWAY_WEB"] == f"http://web.internal:{port}"
    assert set(sb.started["hosts"]) == {"web.internal", "metadata.internal", "cloud.internal"}
    assert res.stopped_by == "duration"


async def test_protocol_lines_become_events_and_gauges_in_the_trace(tmp_path):
    script = [
        (0.0, ("stdout", '@runaway {"type":"gauge","pages":12}')),
        (0.01, Sample(t=0.0, cpu_ratio=0.1)),
        (0.02, ("stderr", '@runaway {"type":"event","source":"audit","category":"escalation",'
                          '"kind":"setuid","outcome":"blocked"}')),
        (0.03, ("stdout", '@runaway {"type":"event","source":"observer","category":"escalation","kind":"x"}')),
        (0.04, Sample(t=0.0, cpu_ratio=0.1)),
    ]
    res, sb, records = await _run(tmp_path, script, duration=0.6)
    events = [r for r in records if isinstance(r, Event) and r.category == "escalation"]
    # the learner may not pose as the observer: only its audit line is an event
    assert [(e.source, e.kind) for e in events] == [("audit", "setuid")]
    assert [name for name, _ in sb.applied] == ["pause"]
    samples = [r for r in records if isinstance(r, Sample)]
    assert samples and all(s.extra.get("pages") == 12 for s in samples)
    assert (res.out / "learner.log").read_text().count("@runaway") == 3


async def test_the_learner_exiting_ends_the_run(tmp_path):
    res, _, records = await _run(tmp_path, _hot(2, ratio=0.1), linger=False, duration=30.0)
    assert res.stopped_by == "learner_exit"
    assert any(isinstance(r, Event) and r.kind == "exit" for r in records)


def test_a_registered_backend_is_a_cli_choice_and_is_cleaned():
    from sandbox import clean
    from sim.cli import BackendChoice

    with FakeBackend() as fake:
        assert NAME in BackendChoice().choices
        removed = clean("some-run")
        assert fake.cleaned == ["some-run"] and "fake sandboxes" in removed
    assert NAME not in BackendChoice().choices
