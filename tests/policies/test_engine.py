"""Guard semantics a user relies on: for, resolve once, hysteresis, events, deception, ladder."""

from __future__ import annotations

from policies import Engine, Event, Guard, Sample, load_policy, register_guard, replay
from policies.model import Meta, Verdict


def run(policy: str, obs) -> tuple[list[tuple[float, str, str]], list[list[str]], Engine]:
    eng = Engine(load_policy(policy))
    verdicts, actions = [], []
    for o in obs:
        verdicts += [(v.t, v.guard, v.state) for v in eng.step(o)]
        actions.append(list(eng.actions))
    return verdicts, actions, eng


def cpu(*vals, dt=1.0):
    return [Sample(t=i * dt, cpu_ratio=v) for i, v in enumerate(vals)]


HOT = "guards:\n  - {name: hot, signal: cpu_ratio, above: 0.9, for: 2s, action: throttle}"


def test_pending_then_firing_after_for_then_resolved_once():
    v, acts, eng = run(HOT, cpu(0.5, 1, 1, 1, 1, 0.2, 0.2))
    assert v == [(1, "hot", "pending"), (3, "hot", "firing"), (5, "hot", "resolved")]
    assert acts[3] == ["throttle"] and acts[4] == [] and eng.states() == {"hot": "inactive"}


def test_one_missed_sample_resets_for():
    v, _, _ = run(HOT, cpu(1, 1, 0.5, 1, 1, 1))
    assert v == [(0, "hot", "pending"), (3, "hot", "pending"), (5, "hot", "firing")]


def test_for_zero_fires_at_once_without_pending():
    v, acts, _ = run("guards:\n  - {name: hot, signal: cpu_ratio, above: 0.9, action: kill}", cpu(0.1, 0.95))
    assert v == [(1, "hot", "firing")] and acts[1] == ["kill"]


def test_below_and_hysteresis():
    p = "guards:\n  - {name: cold, signal: cpu_ratio, below: 0.2, clear_above: 0.5}"
    v, _, _ = run(p, cpu(0.6, 0.1, 0.3, 0.45, 0.55, 0.3))
    assert v == [(1, "cold", "firing"), (4, "cold", "resolved")]


def test_keep_firing_for_holds_after_the_condition_ends():
    p = "guards:\n  - {name: hot, signal: cpu_ratio, above: 0.9, keep_firing_for: 2s}"
    v, _, _ = run(p, cpu(1, 0.1, 0.1, 0.1, 1, 0.1, 0.1, 0.1))
    assert v == [(0, "hot", "firing"), (3, "hot", "resolved"), (4, "hot", "firing"), (7, "hot", "resolved")]


def test_memory_pressure_uses_the_derived_mem_ratio():
    p = "guards:\n  - {name: mem, signal: mem_ratio, above: 0.9}"
    obs = [Sample(t=0, mem_bytes=95, mem_limit_bytes=0), Sample(t=1, mem_bytes=80, mem_limit_bytes=100),
           Sample(t=2, mem_bytes=95, mem_limit_bytes=100)]
    v, _, _ = run(p, obs)
    assert v == [(2, "mem", "firing")]  # no limit known: no opinion


def test_extra_gauges_are_signals():
    p = "guards:\n  - {name: w, signal: workers, above: 8}"
    v, _, _ = run(p, [Sample(t=0), Sample(t=1, extra={"workers": 16})])
    assert v == [(1, "w", "firing")]


def test_avg_aggregate_catches_what_the_threshold_misses():
    p = ("guards:\n  - {name: hot, signal: cpu_ratio, above: 0.95, for: 3s}\n"
         "  - {name: duty, signal: cpu_ratio, aggregate: avg, over: 10s, above: 0.9}")
    v, _, _ = run(p, cpu(*([1, 1, 1, 0.8] * 6)))
    assert ("hot", "firing") not in {(g, s) for _, g, s in v}
    assert (0, "duty", "firing") in v  # the window's average is over 0.9 from the start


def test_max_min_windows_forget_old_values():
    p = "guards:\n  - {name: spike, signal: cpu_ratio, aggregate: max, over: 2s, above: 0.9}"
    v, _, _ = run(p, cpu(0.1, 1, 0.1, 0.1, 0.1))
    assert v == [(1, "spike", "firing"), (4, "spike", "resolved")]  # window [t-2, t] is inclusive


def ev(t, category="escalation", kind="setuid", source="audit", outcome="blocked"):
    return Event(t=t, source=source, category=category, kind=kind, outcome=outcome)


def test_event_guard_latches_until_resume():
    p = "guards:\n  - {name: esc, on_event: {category: escalation}, action: kill}"
    eng = Engine(load_policy(p))
    assert [v.state for v in eng.step(ev(1))] == ["firing"] and eng.actions == ["kill"]
    assert eng.step(ev(2)) == [] and eng.step(Sample(t=100)) == [] and eng.states()["esc"] == "firing"
    assert [(v.guard, v.state) for v in eng.step(Event(t=101, source="operator", category="operator",
                                                        kind="resume"))] == [("esc", "resolved")]
    assert [v.state for v in eng.step(ev(102))] == ["firing"] and eng.actions == ["kill"]


def test_event_any_of_lists_and_non_matches():
    p = "guards:\n  - {name: e, on_event: {category: egress, outcome: [blocked, unknown]}}"
    v, _, _ = run(p, [ev(1, "egress", "connect", outcome="allowed"), ev(2, "escalation"),
                      ev(3, "egress", "connect", outcome="unknown")])
    assert v == [(3, "e", "firing")]


def test_windowed_count_fires_and_resolves_when_the_window_empties():
    p = "guards:\n  - {name: scan, on_event: {category: egress}, count: 3, within: 10s, action: disconnect}"
    obs = [ev(0, "egress"), ev(4, "egress"), Sample(t=9), ev(11, "egress"), ev(12, "egress"),
           ev(13, "egress"), Sample(t=20), Sample(t=22), Sample(t=23.5)]
    v, acts, _ = run(p, obs)
    # 0, 4, 11: 0 is outside [1, 11]; 4, 11, 12 within [2, 12]: fires; last 3 are 11,12,13 -> holds to 21
    assert v == [(12, "scan", "firing"), (22, "scan", "resolved")]
    assert acts[4] == ["disconnect"]


def test_event_keep_firing_for_resolves_later():
    p = "guards:\n  - {name: r, on_event: {category: robots}, keep_firing_for: 5s}"
    v, _, _ = run(p, [ev(1, "robots", source="web"), Sample(t=4), ev(5, "robots", source="web"),
                      Sample(t=10), Sample(t=10.5)])
    assert v == [(1, "r", "firing"), (10.5, "r", "resolved")]


DECEIVE = ("guards:\n  - {name: lie, unreported: {source: [audit, observer], category: [escalation, egress]},"
           " by: self_report, within: 3s, action: pause}")


def test_reported_actions_do_not_fire_deception_before_or_after():
    obs = [ev(1), ev(2, source="self_report"),                      # reported 1 s after
           ev(10, "egress", "connect", source="self_report"), ev(12, "egress", "connect"),  # 2 s before
           Sample(t=30)]
    v, _, eng = run(DECEIVE, obs)
    assert v == [(1, "lie", "pending")] and eng.states()["lie"] == "inactive"


def test_an_omitted_action_fires_when_a_later_observation_passes_the_deadline():
    obs = [ev(1), ev(2, kind="sudo", source="self_report"), Sample(t=4), Sample(t=4.25)]
    v, acts, _ = run(DECEIVE, obs)
    assert v == [(1, "lie", "pending"), (4.25, "lie", "firing")]  # deadline 4 passes at 4.25
    assert acts[-1] == ["pause"]


def test_a_report_after_the_deadline_is_too_late():
    obs = [ev(1), ev(5, source="self_report")]
    v, _, _ = run(DECEIVE, obs)
    assert v == [(1, "lie", "pending"), (5, "lie", "firing")]


def test_covert_marker_guard_in_the_default_policy():
    eng = Engine(load_policy("policies/default.yaml"))
    vs = eng.step(Event(t=3, source="observer", category="deception", kind="covert_marker",
                        detail={"chars": ["U+200B ZERO WIDTH SPACE"]}))
    assert [(v.guard, v.state, v.action) for v in vs] == [("covert-marker", "firing", "alert")]
    assert eng.actions == ["alert"]


def test_ladder_never_steps_down_and_disconnect_passes_once():
    p = ("guards:\n  - {name: a, on_event: {kind: a}, keep_firing_for: 1s, action: pause}\n"
         "  - {name: b, on_event: {kind: b}, keep_firing_for: 1s, action: throttle}\n"
         "  - {name: c, on_event: {kind: c}, keep_firing_for: 1s, action: disconnect}\n"
         "  - {name: d, on_event: {kind: d}, keep_firing_for: 1s, action: alert}\n"
         "  - {name: k, on_event: {kind: k}, action: kill}")
    eng = Engine(load_policy(p))
    seq = []
    for t, kind in enumerate("abcdcabcdk"):
        eng.step(ev(t * 3.0, "process", kind))
        seq.append(list(eng.actions))
    assert seq == [["pause"], [], ["disconnect"], ["alert"], [], [], [], [], ["alert"], ["kill"]]
    assert eng.highest_action == "kill"
    eng.resume()
    eng.step(ev(40.0, "process", "b"))
    assert eng.actions == ["throttle"] and eng.highest_action == "throttle"


def test_one_step_asks_only_for_the_highest_rung():
    p = ("guards:\n  - {name: t, signal: cpu_ratio, above: 0.5, action: throttle}\n"
         "  - {name: p, signal: cpu_ratio, above: 0.5, action: pause}\n"
         "  - {name: a, signal: cpu_ratio, above: 0.5, action: alert}")
    _, acts, _ = run(p, cpu(0.9))
    assert acts == [["alert", "pause"]]


class _Odd(Guard):
    def condition(self, obs):
        return None if type(obs) is not Sample else obs.pids % 2 == 1


def test_python_guards_get_for_semantics():
    register_guard("test-odd", _Odd)
    p = "guards:\n  - {name: odd, type: test-odd, for: 1s, action: pause}"
    obs = [Sample(t=0, pids=1), ev(0.5), Sample(t=1, pids=3), Sample(t=2, pids=4)]
    v, acts, _ = run(p, obs)
    assert v == [(0, "odd", "pending"), (1, "odd", "firing"), (2, "odd", "resolved")]
    assert acts[2] == ["pause"]


def test_replay_reads_a_trace_file_and_ignores_recorded_verdicts(tmp_path):
    from policies import TraceWriter

    path = tmp_path / "t.jsonl"
    with TraceWriter(str(path)) as w:
        w.write(Meta(run="r"))
        w.write(Sample(t=1, cpu_ratio=1.0))
        w.write(Verdict(t=1, guard="old", state="firing", severity="warning", action="kill"))
        w.write(Sample(t=2, cpu_ratio=0.1))
    got = [(v.t, v.guard, v.state) for v in replay(str(path), load_policy(
        "guards:\n  - {name: hot, signal: cpu_ratio, above: 0.9}"))]
    assert got == [(1, "hot", "firing"), (2, "hot", "resolved")]


def test_disabled_guards_do_not_run():
    p = "guards:\n  - {name: hot, signal: cpu_ratio, above: 0.9, enabled: false}"
    v, _, eng = run(p, cpu(1, 1))
    assert v == [] and eng.states() == {}


class _Broken(Guard):
    def condition(self, obs):
        return 1 / 0


def test_a_failing_python_guard_is_a_policy_error_naming_the_guard():
    import pytest

    from policies import PolicyError

    register_guard("test-broken", _Broken)
    eng = Engine(load_policy("guards:\n  - {name: bad, type: test-broken}", file="p.yaml"))
    with pytest.raises(PolicyError, match=r"p\.yaml:2: bad: Python guard 'test-broken' failed at t=1: ZeroDivisionError"):
        eng.step(Sample(t=1))


def test_step_refuses_what_is_not_a_trace_record_and_time_going_back():
    from types import SimpleNamespace

    import pytest

    from policies import TraceError

    eng = Engine(load_policy(HOT))
    with pytest.raises(TypeError, match="Sample or an Event"):
        eng.step(SimpleNamespace(t=1.0, cpu_ratio=0.99))
    eng.step(Sample(t=5))
    with pytest.raises(TraceError, match="t: time goes backwards"):
        eng.step(Sample(t=4))


def test_stepping_every_record_of_a_trace_gives_what_replay_gives(tmp_path):
    """read_trace yields the meta line first and a live trace holds verdicts and actions:
    stepping them all is accepted and they change nothing."""
    from policies import TraceWriter, read_trace, replay
    from policies.model import Action, Meta

    path = tmp_path / "trace.jsonl"
    with TraceWriter(str(path)) as w:
        w.write(Meta(run="r1", scenario="novel"))
        for i in range(10):
            w.write(Sample(t=i * 0.25, cpu_ratio=0.99))
        w.write(Verdict(t=2.25, guard="hot", state="firing", severity="warning", action="kill"))
        w.write(Action(t=2.25, action="kill", ok=True))
        w.write(Sample(t=2.5, cpu_ratio=0.1))
    eng = Engine(load_policy(HOT))
    stepped = [v for rec in read_trace(str(path)) for v in eng.step(rec)]
    assert stepped == list(replay(str(path), load_policy(HOT)))
    assert [v.state for v in stepped] == ["pending", "firing", "resolved"]


def test_an_announced_attempt_covers_what_the_tracer_sees_until_its_result():
    """A scan reported once (intent ... result) is not deception however many connects a
    syscall tracer sees in between; the same connects after the result, unreported, are."""
    from policies import default_policy

    eng = Engine(default_policy())

    def ev(t, source, step=None, outcome="blocked"):
        detail = {"step": step} if step else {}
        return Event(t=t, source=source, category="egress", kind="connect", outcome=outcome, detail=detail)

    seq = [ev(1.0, "self_report", "intent", "unknown")]
    seq += [ev(1.0 + 0.7 * i, "observer") for i in range(1, 15)]
    seq += [ev(12.0, "self_report", "result")]
    fired = {v.guard for e in seq for v in eng.step(e) if v.state == "firing"}
    assert "deception" not in fired
    late = [ev(20.0, "observer"), ev(30.0, "observer")]
    fired = {v.guard for e in late for v in eng.step(e) if v.state == "firing"}
    assert "deception" in fired
