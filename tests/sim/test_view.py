"""The live view and the plain lines, fed a run's records as the runner feeds them."""

from __future__ import annotations

import io

from rich.console import Console

from policies import Engine, default_policy
from policies.model import Action, Event, Meta, Sample, Verdict
from sim.lab.view import LiveView, PlainView, RunState, cpu_text

META = Meta(run="r1", scenario="novel", backend="docker", caps={"cpus": 0.5, "memory_bytes": 256 * 2**20},
            extra={"guards": True})


class FakeExperiment:
    """What a view reads from the runner: notices, the engine, the clock."""

    def __init__(self) -> None:
        self.notices = ["the ci profile was chosen"]
        self.engine = Engine(default_policy())
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def state(self) -> RunState:
        """What the runner hands a view (sim.lab.view.RunState)."""
        return RunState(meta=META, notices=self.notices, clock=self.clock, guard_states=self.engine.states)


def story() -> list:
    recs: list = [Sample(t=1.0, cpu_ratio=1.03, mem_bytes=50 * 2**20, mem_limit_bytes=256 * 2**20, pids=3,
                         extra={"cpu_cap": 0.5, "pages": 10})]
    recs.append(Verdict(t=2.0, guard="egress-scan", state="firing", severity="critical", action="disconnect",
                        reason="5 matches"))
    recs.append(Action(t=2.1, action="disconnect", ok=True, latency_s=0.1))
    recs.append(Verdict(t=3.0, guard="escalation", state="firing", severity="critical", action="kill",
                        reason="audit escalation/setuid (blocked)"))
    recs += [Event(t=3.0 + i / 10, source="audit", category="egress", kind="connect", outcome="blocked")
             for i in range(8)]
    recs.append(Sample(t=4.0, cpu_ratio=0.24, mem_bytes=50 * 2**20, mem_limit_bytes=256 * 2**20, pids=3,
                       extra={"cpu_cap": 0.125, "pages": 12}))
    return recs


def render(view: LiveView) -> str:
    console = Console(width=110, record=True, file=io.StringIO())
    console.print(view.render())
    return console.export_text()


def test_cpu_reads_as_a_multiple_of_the_cap_with_the_throttled_cap():
    assert cpu_text(Sample(t=0, cpu_ratio=1.03, extra={"cpu_cap": 0.5}), 0.5) == "1.03× cap (0.5 cpu)"
    assert cpu_text(Sample(t=0, cpu_ratio=1.03, extra={"cpu_cap": 0.125}), 0.5) == \
        "1.03× cap (0.5 cpu, throttled to 0.125)"
    assert cpu_text(Sample(t=0, cpu_ratio=0.5), None) == "0.50× cap"


def test_verdicts_stay_in_sight_above_a_flood_of_repeated_events():
    exp = FakeExperiment()
    view = LiveView(duration=20, console=Console(file=io.StringIO()))
    view.run, view.meta = exp.state(), META
    for rec in story():
        view.update(rec)
    text = render(view)
    # Eight identical blocked connects are one line with a count; the verdicts and the
    # action are pinned above the events, not pushed out by them.
    assert text.count("audit/egress/connect (blocked)") == 1 and "×8" in text
    assert text.index("egress-scan firing") < text.index("latest events") < text.index("audit/egress/connect")
    assert "escalation firing" in text and "disconnect ok" in text
    assert "0.24× cap (0.5 cpu, throttled to 0.125)" in text
    # The teardown has a state, then the end.
    assert "of 20s" in text
    exp.now = 20.1
    view.stopping("duration")
    exp.now = 22.9
    text = render(view)
    assert "stopping at 20.1s (its time is up)" in text and "22.9s of 20s" not in text
    view.stop()
    assert "stopped at 20.1s (its time is up); the teardown took 2.8s" in render(view)


def test_plain_lines_collapse_repeats_and_say_when_the_run_stops():
    out = io.StringIO()
    view = PlainView(out=out)
    view.start(FakeExperiment().state())
    for rec in story():
        view.update(rec)
    view.stopping("kill")
    view.stop()
    lines = out.getvalue().splitlines()
    assert sum("audit/egress/connect (blocked)" in ln for ln in lines) == 1
    assert any("the line above 7 more time(s)" in ln for ln in lines)
    assert any("cpu 1.03× cap (0.5 cpu)" in ln for ln in lines)
    assert lines[-1].startswith("stopping: the sandbox was killed")
