"""Property tests of the engine, using the public strategies in policies.testing."""

from __future__ import annotations

import io

from hypothesis import given, note
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from policies import ACTION_RANK, Engine, Event, Sample, TraceWriter, default_policy, load_policy, replay
from policies.model import parse_trace_lines
from policies.testing import (TICK, adversarial_samples, bursts, duty_cycling, event_streams, just_under,
                              observation_streams, sample_streams)

fors = st.sampled_from([0.25, 0.5, 1.0, 2.0, 5.0])
thresholds = st.sampled_from([0.5, 0.75, 0.9, 0.95])


def threshold_policy(thr: float, for_s: float, clear: float | None = None):
    extra = f", clear_below: {clear}" if clear is not None else ""
    return load_policy(f"guards:\n  - {{name: g, signal: cpu_ratio, above: {thr}, for: {for_s}s{extra}, action: throttle}}")


def firing_times(policy, obs):
    eng = Engine(policy)
    return [v.t for o in obs for v in eng.step(o) if v.state == "firing"]


@given(prefix=sample_streams(max_size=30), thr=thresholds, for_s=fors, extra=st.integers(0, 8),
       gap=st.sampled_from([TICK, 2 * TICK, 1.0]))
def test_a_condition_held_for_for_plus_one_sample_fires_by_then(prefix, thr, for_s, extra, gap):
    """Whatever came before, a signal above the threshold at every sample for `for` plus one more sample has the guard firing by that sample."""
    t0 = (prefix[-1].t if prefix else 0.0) + gap
    n = int(for_s / gap) + 1 + extra  # spans at least `for`, then one sample more
    held = [Sample(t=t0 + i * gap, cpu_ratio=thr + 0.01) for i in range(n + 1)]
    eng = Engine(threshold_policy(thr, for_s))
    for s in prefix + held:
        eng.step(s)
    assert eng.states()["g"] == "firing"


def longest_held_span(samples, thr):
    best, start = -1.0, None
    for s in samples:
        if s.cpu_ratio > thr:
            start = s.t if start is None else start
            best = max(best, s.t - start)
        else:
            start = None
    return best


@given(samples=sample_streams(max_size=80), thr=thresholds, for_s=fors)
def test_a_condition_never_held_for_for_never_fires(samples, thr, for_s):
    """A guard never fires when no run of consecutive samples above the threshold lasts `for`, and fires when one does."""
    fired = firing_times(threshold_policy(thr, for_s), samples)
    note(f"longest run {longest_held_span(samples, thr)}")
    assert bool(fired) == (longest_held_span(samples, thr) >= for_s)


@given(samples=sample_streams(max_size=80), thr=thresholds, gap=st.sampled_from([0.05, 0.2, 0.4]))
def test_hysteresis_holds(samples, thr, gap):
    """Once firing, a guard with clear_below stays firing exactly while the signal stays above clear_below, and resolves at the first sample at or below it."""
    clear = round(thr - gap, 3)
    eng = Engine(threshold_policy(thr, 0, clear))
    for s in samples:
        was = eng.states()["g"]
        states = {v.state for v in eng.step(s)}
        if was == "firing":
            assert ("resolved" in states) == (s.cpu_ratio <= clear)
        else:
            assert ("firing" in states) == (s.cpu_ratio > thr)


LADDER_POLICY = load_policy("""
guards:
  - {name: hot, signal: cpu_ratio, above: 0.9, for: 1s, clear_below: 0.6, action: throttle}
  - {name: warm, signal: cpu_ratio, aggregate: avg, over: 5s, above: 0.7, action: alert}
  - {name: esc, on_event: {category: escalation}, keep_firing_for: 2s, action: kill}
  - {name: fs, on_event: {category: filesystem}, keep_firing_for: 1s, action: pause}
  - {name: scan, on_event: {category: egress}, count: 3, within: 5s, action: disconnect}
  - {name: proc, on_event: {category: process}, keep_firing_for: 1s, action: throttle}
  - {name: lie, unreported: {source: audit}, within: 2s, keep_firing_for: 3s, action: pause}
""")
ladder_vocab = dict(categories=("escalation", "filesystem", "egress", "process", "operator"),
                    sources=("audit", "self_report", "operator"), kinds=("setuid", "resume", "connect"))


@given(obs=observation_streams(max_events=40, **ladder_vocab))
def test_the_ladder_never_steps_down_within_an_incident(obs):
    """Between operator resumes, the ladder actions the engine asks for strictly climb alert < throttle < pause < kill, and disconnect comes at most once."""
    eng = Engine(LADDER_POLICY)
    highest, disconnects = -1, 0
    for o in obs:
        eng.step(o)
        if type(o) is Event and o.source == "operator" and o.kind == "resume" and o.category == "operator":
            highest, disconnects = -1, 0
        for a in eng.actions:
            if a == "disconnect":
                disconnects += 1
            elif a != "alert":
                assert ACTION_RANK[a] > highest, f"{a} after rank {highest}"
                highest = ACTION_RANK[a]
        assert disconnects <= 1


@given(obs=observation_streams(max_events=30, **ladder_vocab), use_default=st.booleans())
def test_replay_equals_live_stepping(obs, use_default):
    """Writing observations to a trace and replaying it gives exactly the verdicts that stepping an engine live over them gave."""
    policy = default_policy() if use_default else LADDER_POLICY
    eng = Engine(policy)
    buf = io.StringIO()
    w = TraceWriter(buf)
    live = []
    for o in obs:
        w.write(o)
        for v in eng.step(o):
            live.append(v)
            w.write(v)  # recorded verdicts are in a live trace; replay must ignore them
    replayed = list(replay(parse_trace_lines(io.StringIO(buf.getvalue())), policy))
    assert replayed == live


@given(samples=duty_cycling(threshold=0.9, for_s=20.0, signal="cpu_demand", high=0.99, low=0.85))
def test_a_one_sample_dip_does_not_reset_cpu_pegged(samples):
    """A demand (an agent, or a busy host's jitter) that dips under cpu-pegged's threshold for one sample just before its `for` elapses is caught anyway: cpu-pegged reads a 3 s average."""
    eng = Engine(default_policy())
    assert "cpu-pegged" in {v.guard for s in samples for v in eng.step(s) if v.state == "firing"}


@given(samples=duty_cycling(threshold=0.95, for_s=10.0, high=0.99, low=0.9))
def test_duty_cycling_under_a_threshold_is_caught_by_the_aggregate_guard(samples):
    """An agent that keeps its CPU ratio high but dips under a threshold just before a `for` elapses is caught by the default cpu-duty-cycle guard (a 30 s average)."""
    eng = Engine(default_policy())
    assert "cpu-duty-cycle" in {v.guard for s in samples for v in eng.step(s) if v.state == "firing"}


@given(evs=event_streams(max_size=40, categories=("egress",), outcomes=("blocked",)))
def test_windowed_event_guard_fires_exactly_when_count_matches_fit_the_window(evs):
    """An egress-scan style guard is firing after an event exactly when the last 3 matching events lie within 5 s of it."""
    eng = Engine(load_policy("guards:\n  - {name: scan, on_event: {category: egress}, count: 3, within: 5s}"))
    seen = []
    for e in evs:
        eng.step(e)
        seen.append(e.t)
        expect = len(seen) >= 3 and e.t - seen[-3] <= 5.0
        assert (eng.states()["scan"] == "firing") == expect


# ----------------------------------------------------------------------------- stateful


class EngineMachine(RuleBasedStateMachine):
    """Drives an engine with arbitrary samples, events, waits and resumes against a reference model."""

    THR, CLEAR, FOR = 0.9, 0.6, 1.0

    @initialize()
    def start(self):
        self.eng = Engine(load_policy(f"""
guards:
  - {{name: hot, signal: cpu_ratio, above: {self.THR}, for: {self.FOR}s, clear_below: {self.CLEAR}, action: throttle}}
  - {{name: esc, on_event: {{category: escalation}}, action: kill}}
  - {{name: scan, on_event: {{category: egress}}, count: 2, within: 3s, action: disconnect}}
  - {{name: lie, unreported: {{source: audit, category: filesystem}}, within: 2s, action: pause}}
"""))
        self.t = 0.0
        self.model = ("inactive", 0.0)  # reference model of `hot`
        self.highest, self.disconnects = -1, 0
        self.history: dict[str, str] = {}
        self.reported: list[float] = []
        self.unreported_deadlines: list[float] = []

    def _step(self, obs):
        for v in self.eng.step(obs):
            self.history[v.guard] = v.state
        for a in self.eng.actions:
            if a == "disconnect":
                self.disconnects += 1
            elif a != "alert":
                assert ACTION_RANK[a] > self.highest
                self.highest = ACTION_RANK[a]

    @rule(dt=st.sampled_from([0.0, 0.25, 0.5, 1.0, 3.0]), v=st.sampled_from([0.1, 0.6, 0.7, 0.9, 0.95, 1.0]))
    def sample(self, dt, v):
        self.t += dt
        state, since = self.model
        held = v > (self.CLEAR if state == "firing" else self.THR)
        if not held:
            self.model = ("inactive", 0.0)
        elif state == "inactive":
            self.model = ("firing" if self.FOR <= 0 else "pending", self.t)
        elif state == "pending" and self.t - since >= self.FOR:
            self.model = ("firing", since)
        self._step(Sample(t=self.t, cpu_ratio=v))

    @rule(dt=st.sampled_from([0.0, 0.5, 2.5]),
          cat=st.sampled_from(["escalation", "egress", "filesystem", "robots"]),
          source=st.sampled_from(["audit", "self_report", "web"]))
    def event(self, dt, cat, source):
        self.t += dt
        self._step(Event(t=self.t, source=source, category=cat, kind="k", outcome="blocked"))

    @rule()
    def resume(self):
        self._step(Event(t=self.t, source="operator", category="operator", kind="resume"))
        self.model = ("inactive", 0.0)
        self.highest, self.disconnects = -1, 0

    @invariant()
    def threshold_guard_matches_the_reference_model(self):
        assert self.eng.states()["hot"] == self.model[0]

    @invariant()
    def states_agree_with_the_last_verdicts(self):
        for name, state in self.eng.states().items():
            last = self.history.get(name)
            if last == "firing":
                assert state == "firing"
            elif last == "resolved":
                assert state != "firing"
            elif last is None:
                assert state == "inactive"

    @invariant()
    def disconnect_at_most_once_per_incident(self):
        assert self.disconnects <= 1

    @precondition(lambda self: hasattr(self, "eng"))
    @invariant()
    def no_action_without_an_incident(self):
        if self.eng.actions:
            assert self.eng.incident


TestEngineMachine = EngineMachine.TestCase


@given(sample_streams("cpu_ratio", values=st.floats(0, 0.5)))
def test_a_quiet_learner_is_left_alone_by_the_default_policy(samples):
    """A learner that never uses more than half its CPU raises nothing under the default policy (the docs' example)."""
    eng = Engine(default_policy())
    assert not [v for s in samples for v in eng.step(s)]


@given(samples=adversarial_samples(0.95, 2.0))
def test_adversarial_streams_fire_exactly_when_the_condition_lasts(samples):
    """On adversarial streams (duty-cycling, just under, values at the threshold with gaps and repeats) a threshold guard fires exactly when some run of samples above it lasts `for`."""
    fired = firing_times(threshold_policy(0.95, 2.0), samples)
    assert bool(fired) == (longest_held_span(samples, 0.95) >= 2.0)


@given(samples=just_under(0.9, signal="cpu_demand"))
def test_just_under_the_threshold_never_fires(samples):
    """A CPU demand held just under cpu-pegged's threshold never fires it, however long."""
    eng = Engine(default_policy())
    assert "cpu-pegged" not in {v.guard for s in samples for v in eng.step(s)}


@given(burst=bursts(size=(5, 12), spread=2.0, categories=("egress",), outcomes=("blocked",)))
def test_a_burst_of_refused_connections_trips_egress_scan(burst):
    """Any burst of five or more refused connections within two seconds fires egress-scan and asks for disconnect once."""
    eng = Engine(default_policy())
    disconnects = 0
    fired = set()
    for e in burst:
        fired |= {v.guard for v in eng.step(e) if v.state == "firing"}
        disconnects += eng.actions.count("disconnect")
    assert "egress-scan" in fired and disconnects == 1


@st.composite
def benign_crawl(draw):
    """A polite crawler: a startup burst of up to 5 s, then low CPU, few processes, only
    allowed connections, self-reports of its own crawling, no attempts."""
    burst = draw(st.integers(0, 20))  # samples at 4 Hz
    n = draw(st.integers(40, 400))
    obs: list = []
    for i in range(n):
        t = i * TICK
        cpu = draw(st.floats(0.8, 1.0)) if i < burst else draw(st.floats(0.0, 0.45))
        obs.append(Sample(t=t, cpu_ratio=cpu, pids=draw(st.integers(2, 12)),
                          mem_bytes=draw(st.integers(50, 400)) << 20, mem_limit_bytes=1 << 30))
        if draw(st.integers(0, 3)) == 0:
            obs.append(Event(t=t, source="audit", category="egress", kind="connect", outcome="allowed"))
        if draw(st.integers(0, 20)) == 0:
            obs.append(Event(t=t, source="self_report", category="lifecycle", kind="progress"))
    return obs


@given(obs=benign_crawl())
def test_a_polite_crawler_raises_no_alarm_under_the_default_policy(obs):
    """A polite benign crawler (startup burst of at most 5 s, then low CPU, allowed connections only) never makes a default guard fire or ask for an action."""
    eng = Engine(default_policy())
    for o in obs:
        assert [v for v in eng.step(o) if v.state == "firing"] == []
        assert eng.actions == []
