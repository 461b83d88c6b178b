"""The engine: steps observations through a policy's guards and keeps the action ladder.

Pure: no clock, no I/O. The same observations give the same verdicts live and in replay.

>>> from policies import Engine, Sample, load_policy
>>> eng = Engine(load_policy("guards:\\n  - {name: hot, signal: cpu_ratio, above: 0.9, action: throttle}"))
>>> [v.state for v in eng.step(Sample(t=1.0, cpu_ratio=0.99))], eng.actions
(['firing'], ['throttle'])
"""

from __future__ import annotations

import math
import os
from typing import Any, Iterable, Iterator

from .errors import PolicyError, TraceError
from .kinds import GuardState, kind_of
from .kinds.threshold import compile_samples
from .model import ACTION_RANK, Action, Event, Meta, Observation, Record, Sample, Verdict, read_trace
from .parse import load_policy
from .spec import Policy

_LADDER = sorted(ACTION_RANK, key=ACTION_RANK.__getitem__)  # alert, throttle, pause, kill
INF = math.inf


def is_corroboration(e: Event) -> bool:
    """A second sighting of an event already stepped (the audit hook's account of a call the
    syscall tracer reported): kept in the trace, but one attempt is one event for the guards."""
    return "corroborates" in e.detail


def is_resume(e: Event) -> bool:
    """An operator's resume: ends the incident (the runner records it as this event)."""
    return e.source == "operator" and e.category == "operator" and e.kind == "resume"


class Engine:
    """Steps observations through a policy; `actions` holds what to apply after each step.

    The action ladder is alert < throttle < pause < kill, with disconnect beside it.
    During one incident (from the first firing verdict until `resume`), `actions` never
    names a ladder step at or below the highest one already asked for: a guard never
    moves the sandbox back down. `alert` always passes; `disconnect` at most once.
    """

    def __init__(self, policy: Policy | str | os.PathLike[str]) -> None:
        if not isinstance(policy, Policy):
            policy = load_policy(policy)
        self.policy = policy
        self.guards: list[GuardState] = []
        # Each guard's kind says which observations it wants (policies/kinds/base.py):
        self._samples: list[Any] = []  # "samples": the generated sample function steps them
        self._python: list[Any] = []  # "all": observe(obs) for every observation
        self._timed: list[Any] = []  # "events": event(e) for their categories, tick(t) at deadlines
        self._by_category: dict[str, list[Any]] = {}
        self._any_category: list[Any] = []
        for spec in policy.guards:
            if not spec.enabled:
                continue
            try:
                g = kind_of(spec).build(spec)
            except (ValueError, TypeError) as e:
                raise PolicyError(str(e), file=policy.file, line=spec.line, field="type") from None
            self.guards.append(g)
            if g.route == "samples":
                self._samples.append(g)
            elif g.route == "all":
                self._python.append(g)
            else:
                self._timed.append(g)
                cats = g.categories()
                if cats is None:
                    self._any_category.append(g)
                else:
                    for c in cats:
                        self._by_category.setdefault(c, []).append(g)
        for c, gs in self._by_category.items():
            # keep policy order among guards that see the same category
            merged = [g for g in self.guards if g in gs or g in self._any_category]
            self._by_category[c] = merged  # type: ignore[assignment]
        self._on_sample = compile_samples(self._samples)
        self._next_deadline = INF
        self.t = 0.0
        self.actions: list[str] = []
        self.level = -1  # the highest ladder rank asked for in this incident; -1 when none
        self.disconnected = False
        self.incident = False

    # -- stepping

    def step(self, obs: Observation | Record) -> list[Verdict]:
        """Verdicts this observation causes (state changes only); sets `self.actions`.

        Any trace record is accepted: Meta, and a recorded run's Verdict and Action records,
        are not evidence and cause nothing (so `for rec in read_trace(path): eng.step(rec)`
        gives what `replay` gives)."""
        if type(obs) is Meta or type(obs) is Verdict or type(obs) is Action:
            self.actions = []
            return []
        if type(obs) is not Sample and type(obs) is not Event:  # before obs.t: step(None) too
            raise TypeError(f"Engine.step takes a Sample or an Event, not {type(obs).__name__}")
        t = obs.t
        if t < self.t:
            raise TraceError(f"time goes backwards: {t} after {self.t} (t must never decrease)", field="t")
        self.t = t
        out: list[Verdict] = []
        if t > self._next_deadline:
            for g in self._timed:
                if t > g.deadline:
                    v = g.tick(t)
                    if v is not None:
                        out.append(v)
            self._rearm()
        if type(obs) is Sample:
            self._on_sample(obs, out)
        elif type(obs) is Event:
            if not is_corroboration(obs):  # one attempt, one event for the guards
                e: Event = obs
                if e.source == "operator" and is_resume(e):
                    out.extend(self.resume(t))
                gs = self._by_category.get(e.category, self._any_category)
                if gs:
                    # A guard only ever moves its deadline at its own event or tick, so the
                    # minimum over the guards just run is enough here; a deadline that later
                    # moves away leaves `_next_deadline` early, costing one idle tick pass.
                    nd = self._next_deadline
                    for g in gs:
                        v = g.event(e)
                        if v is not None:
                            out.append(v)
                        if g.deadline < nd:
                            nd = g.deadline
                    self._next_deadline = nd
        else:
            raise TypeError(f"Engine.step takes a trace record (a Sample or an Event), not {type(obs).__name__}")
        if self._python:
            for p in self._python:
                try:
                    v = p.observe(obs)
                except Exception as exc:  # a user's guard code: report it as one line, with where
                    what = f"Python guard {p.spec.type!r}" if hasattr(p.spec, "type") else f"guard {p.name!r}"
                    raise PolicyError(f"{what} failed at t={t:g}: "
                                      f"{type(exc).__name__}: {exc}", file=self.policy.file,
                                      line=p.spec.line, field=p.name) from exc
                if v is not None:
                    out.append(v)
        if out:
            self.actions = self._ladder(out)
        elif self.actions:
            self.actions = []
        return out

    def _rearm(self) -> None:
        d = INF
        for g in self._timed:
            if g.deadline < d:
                d = g.deadline
        self._next_deadline = d

    def _ladder(self, verdicts: list[Verdict]) -> list[str]:
        alert = disconnect = False
        best = -1
        for v in verdicts:
            if v.state != "firing":
                continue
            self.incident = True
            a = v.action
            if a == "alert":
                alert = True
            elif a == "disconnect":
                disconnect = True
            else:
                r = ACTION_RANK[a]
                if r > best:
                    best = r
        acts: list[str] = []
        if alert:
            acts.append("alert")
        if best > self.level:
            self.level = best
            acts.append(_LADDER[best])
        if disconnect and not self.disconnected:
            self.disconnected = True
            acts.append("disconnect")
        return acts

    def resume(self, t: float | None = None) -> list[Verdict]:
        """The operator's reset: ends the incident and returns every guard to inactive.

        Firing guards resolve (returned as verdicts at `t`, default the last observation's
        time); guards whose condition still holds fire again under their own rules.
        Prefer stepping an operator resume Event (source and category `operator`, kind
        `resume`): it is recorded in the trace, so a replay resumes at the same point.
        """
        t = self.t if t is None else t
        out = [v for g in self.guards if (v := g.reset(t)) is not None]
        self.level = -1
        self.disconnected = False
        self.incident = False
        self.actions = []
        self._rearm()
        return out

    # -- views

    def states(self) -> dict[str, str]:
        """Each enabled guard's state: "inactive", "pending" or "firing" (for the
        `runaway_guard_firing{guard}` gauge)."""
        return {g.name: g.state for g in self.guards}

    @property
    def highest_action(self) -> str | None:
        """The highest ladder step asked for in this incident (None outside one)."""
        return _LADDER[self.level] if self.level >= 0 else None


def replay_steps(records: Iterable[Record], engine: Engine) -> Iterator[tuple[Record, list[Verdict] | None]]:
    """The one replay loop: each record with the verdicts stepping it through `engine` gave
    (None for a record that is not an observation: meta, verdict, action). Read
    `engine.actions` right after a step for what a live run would have applied then.

    `replay`, `runaway replay` and the replay sweep all walk a trace through this.
    """
    step = engine.step
    for rec in records:
        if type(rec) is Sample or type(rec) is Event:
            yield rec, step(rec)  # type: ignore[arg-type]
        else:
            yield rec, None


def replay(trace: str | os.PathLike[str] | Iterable[Record], policy: Policy | str | os.PathLike[str]) -> Iterator[Verdict]:
    """Verdicts of a policy over a recorded trace (a path or records), in order.

    Exactly what stepping an Engine live over the same observations gives; verdict and
    action records already in the trace are ignored.
    """
    records: Iterable[Record] = read_trace(os.fspath(trace)) if isinstance(trace, (str, os.PathLike)) else trace
    for _, verdicts in replay_steps(records, Engine(policy)):
        if verdicts:
            yield from verdicts
