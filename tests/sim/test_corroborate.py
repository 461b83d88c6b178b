"""One attempt seen by the syscall tracer and by the audit hook is one event for the guards."""

from __future__ import annotations

from policies import Engine
from policies.model import Event
from sim.lab.corroborate import Corroborator
from sim.lab.runner import DEFAULT_POLICY


def tracer(t, kind="connect", cat="egress", outcome="blocked"):
    return Event(t=t, source="observer", category=cat, kind=kind, outcome=outcome, detail={"syscall": "connect"})


def audit(t, kind="connect", cat="egress", outcome="unknown"):
    return Event(t=t, source="audit", category=cat, kind=kind, outcome=outcome, detail={"op": "socket.connect"})


def test_an_audit_event_after_its_tracer_twin_is_a_corroboration():
    c = Corroborator()
    assert c.tracer(tracer(1.0), now=1.0) == []
    twin = c.audit(audit(1.0), now=1.05)
    assert twin is not None and twin.detail["corroborates"]["source"] == "observer"
    assert c.audit(audit(1.1), now=1.1) is None, "each tracer event vouches for one audit event only"


def test_a_held_audit_event_is_absorbed_by_the_tracer_twin_or_released_alone():
    c = Corroborator()
    assert c.audit(audit(1.0), now=1.0) is None
    hid = c.hold(audit(1.0), now=1.0)
    [twin] = c.tracer(tracer(1.01), now=1.01)
    assert twin.source == "audit" and "corroborates" in twin.detail
    assert c.release(hid) is None
    hid = c.hold(audit(2.0, kind="ctypes", cat="process"), now=2.0)
    alone = c.release(hid)
    assert alone is not None and "corroborates" not in alone.detail


def test_a_forged_audit_line_never_stands_in_for_a_tracer_event():
    c = Corroborator()
    forged = audit(1.0, outcome="blocked")
    hid = c.hold(forged, now=1.0)
    real = tracer(1.1, outcome="allowed")
    absorbed = c.tracer(real, now=1.1)  # the real event is still stepped by the runner
    assert [e.source for e in absorbed] == ["audit"] and c.release(hid) is None


def test_the_engine_counts_five_attempts_seen_twice_as_five():
    """egress-scan fires at 5 refused connects: 3 seen twice must not fire it."""
    eng = Engine(DEFAULT_POLICY)
    c = Corroborator()
    fired = []
    for i in range(3):
        t = 1.0 + i
        ev = tracer(t)
        fired += [v.guard for v in eng.step(ev) if v.state == "firing"]
        c.tracer(ev, now=t)
        twin = c.audit(audit(t), now=t)
        fired += [v.guard for v in eng.step(twin) if v.state == "firing"]
    assert "egress-scan" not in fired
