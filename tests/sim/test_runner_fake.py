"""The runner over the in-memory fake backend: the whole run (session order, protocol
lines, guards, the action ladder, the trace) without Docker or a learner process.

These runs write the scorecard but draw no report.html (`report=False`, `--no-report`):
its plots would be most of each test's time. The end-to-end tests draw it."""

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


async def _run(tmp_path: Path, script, policy: str = POLICY, duration: float = 3.0, linger: bool = True,
               **options):
    pol = tmp_path / "policy.yaml"
    pol.write_text(policy)
    out = tmp_path / "run"
    with FakeBackend(script, linger=linger, **options) as fake:
        res = await Experiment(RunConfig(scenario="benign", backend=NAME, policy=str(pol), duration=duration,
                                         profile="ci", out=out, metrics_port=None, report=False),
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


async def test_what_preparing_the_sandbox_finds_is_in_the_runs_notices(tmp_path):
    """Docker's tracer falls back to ptrace mode in prepare(); the run's meta line says so."""
    said = "the syscall tracer runs in ptrace mode (...): no OCI bundle"
    res, _, records = await _run(tmp_path, _hot(3, ratio=0.1), duration=0.2, prepared_notice=said)
    assert said in records[0].extra["notices"] and said in res.notices
    assert records[0].extra["notices"].count(said) == 1


async def test_the_session_opens_the_web_before_the_learner_starts(tmp_path):
    res, sb, _ = await _run(tmp_path, _hot(3, ratio=0.1), duration=0.2)
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


PLUGIN = '''
from policies import Guard, Sample, register_guard

@register_guard("plugin-workers")
class ManyWorkers(Guard):
    def condition(self, obs):
        if type(obs) is not Sample or "workers" not in obs.extra:
            return None
        return obs.extra["workers"] > self.params.get("limit", 8)
'''


def test_plugin_guards_work_live_in_run_and_in_a_sweep(tmp_path, monkeypatch):
    """`--plugin` on `run` and `sweep` imports the module that registers a Python guard
    before the policy is read, so the guard runs live and in a replay sweep."""
    from click.testing import CliRunner

    from sim.cli import _register, cli
    from sim.lab import runner

    monkeypatch.setattr(runner, "METRICS_LINGER_S", 0.0)  # no Prometheus scrapes this exporter

    (tmp_path / "plugin_guards.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    pol = tmp_path / "p.yaml"
    pol.write_text("guards:\n  - {name: workers, type: plugin-workers, params: {limit: 4}, action: pause}\n")
    script = [(0.0, ("stdout", '@runaway {"type":"gauge","workers":9}')), *_hot(5, ratio=0.1)]
    _register()
    with FakeBackend(script) as fake:
        r = CliRunner().invoke(cli, ["run", "benign", "--backend", NAME, "--policy", str(pol), "--plugin",
                                     "plugin_guards", "--duration", "0.5", "--plain", "--out", str(tmp_path / "run"),
                                     "--profile", "ci", "--metrics-port", "0", "--no-report"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert [name for name, _ in fake.opened[0].applied] == ["pause"]
    r = CliRunner().invoke(cli, ["sweep", "--replay", str(tmp_path / "run"), "--policy", str(pol), "--plugin",
                                 "plugin_guards", "--out", str(tmp_path / "sweep")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    import csv

    rows = list(csv.DictReader((tmp_path / "sweep" / "runs.csv").open()))
    assert rows and all("p" in row.values() and "benign" in row.values() for row in rows), rows
