"""One attempt, one event: the audit hook's account of a call the syscall tracer also saw.

A Python agent is watched twice: by its audit hook (inside, before the call, richer detail,
but the agent's own process could forge it) and by the syscall tracer (outside, after the
call, with its result). The runner steps the tracer's event through the guards, always,
and records the audit hook's twin with `detail.corroborates` (the engine does not step
those; see docs/traces.md). A twin has the same category and kind and arrives within
`window_s` of the other, whichever comes first; each event is a twin of at most one other.

An audit event that arrives first is held up to `hold_s` for its tracer twin; one that has
none by then is stepped on its own (the hook sees things the tracer does not, e.g. a ctypes
lookup). A forged audit line can therefore never stand in for a tracer event.

>>> from policies.model import Event
>>> c = Corroborator()
>>> tr = Event(t=1.0, source="observer", category="escalation", kind="setuid", outcome="blocked", detail={"syscall": "setuid"})
>>> c.tracer(tr, now=1.0)
[]
>>> au = Event(t=1.0, source="audit", category="escalation", kind="setuid")
>>> c.audit(au, now=1.1) is not None
True
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
from typing import Any

from policies.model import Event

WINDOW_S = 2.0
HOLD_S = 0.3

Key = tuple[str, str]


def is_tracer_event(ev: Event) -> bool:
    """An event of the syscall tracer (the observer's events that name their syscall)."""
    return ev.source == "observer" and "syscall" in ev.detail


def corroborating(ev: Event, twin: Event) -> Event:
    """`ev` marked as a second sighting of `twin`."""
    return dataclasses.replace(ev, detail={**ev.detail, "corroborates": {
        "source": twin.source, "syscall": twin.detail.get("syscall"), "outcome": twin.outcome}})


class Corroborator:
    """Pairs tracer events with audit events of the same category and kind (see the module)."""

    def __init__(self, window_s: float = WINDOW_S, hold_s: float = HOLD_S) -> None:
        self.window_s = window_s
        self.hold_s = hold_s
        self._tracer: dict[Key, collections.deque[tuple[float, Event]]] = {}
        self._held: dict[int, tuple[float, Event]] = {}
        self._ids = itertools.count()

    def _key(self, ev: Event) -> Key:
        return (ev.category, ev.kind)

    def tracer(self, ev: Event, now: float) -> list[Event]:
        """A tracer event (step it): returns the held audit twin it absorbs, marked, if any."""
        key = self._key(ev)
        for hid, (at, held) in sorted(self._held.items()):
            if self._key(held) == key and now - at <= self.window_s:
                del self._held[hid]
                return [corroborating(held, ev)]
        q = self._tracer.setdefault(key, collections.deque(maxlen=256))
        q.append((now, ev))
        return []

    def audit(self, ev: Event, now: float) -> Event | None:
        """An audit event: its marked form when a tracer twin already came (record it, do
        not step it), else None (hold it: `hold` then `release`)."""
        q = self._tracer.get(self._key(ev))
        while q and now - q[0][0] > self.window_s:
            q.popleft()
        if q:
            _, twin = q.popleft()
            return corroborating(ev, twin)
        return None

    def hold(self, ev: Event, now: float) -> int:
        hid = next(self._ids)
        self._held[hid] = (now, ev)
        return hid

    def release(self, hid: int) -> Event | None:
        """The held event if no twin came for it (step it now), else None."""
        got = self._held.pop(hid, None)
        return got[1] if got else None

    def stats(self) -> dict[str, Any]:
        return {"held": len(self._held)}
