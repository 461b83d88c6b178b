"""Hypothesis strategies for property-testing guards: sample and event streams, adversarial ones.

Import them the way you import `hypothesis.strategies`, and state a property of your own
guard. Times are multiples of `tick` (0.25 s by default: exact in binary floating point,
so `for` boundaries are hit exactly) and never decrease; a stream is a list.

Example, a user's property test::

    from hypothesis import given
    from policies import Engine, load_policy
    from policies.testing import duty_cycling

    POLICY = load_policy("policy.yaml")   # has cpu-duty-cycle: avg over 30s above 0.85

    @given(duty_cycling(threshold=0.95, for_s=10.0, high=0.99, low=0.9))
    def test_duty_cycling_is_caught(samples):
        '''An agent that dips under the threshold to reset `for` is still caught.'''
        eng = Engine(POLICY)
        fired = {v.guard for s in samples for v in eng.step(s) if v.state == "firing"}
        assert "cpu-duty-cycle" in fired
"""

from __future__ import annotations

from typing import Sequence

from hypothesis import strategies as st

from .model import CATEGORIES, OUTCOMES, SOURCES, Event, Observation, Sample

TICK = 0.25


@st.composite
def times(draw: st.DrawFn, n: int, *, tick: float = TICK, start: float = 0.0,
          gaps: bool = True, duplicates: bool = True) -> list[float]:
    """`n` never-decreasing times on a `tick` grid: mostly one tick apart, sometimes a gap
    (the sampler stalled) or a repeat (two observations at the same instant)."""
    steps = [1]
    if gaps:
        steps += [2, 5, 40]
    if duplicates:
        steps += [0]
    weights = st.sampled_from([1] * 12 + steps[1:]) if len(steps) > 1 else st.just(1)
    out, k = [], round(start / tick)
    for i in range(n):
        if i:
            k += draw(weights)
        out.append(k * tick)
    return out


@st.composite
def sample_streams(draw: st.DrawFn, signal: str = "cpu_ratio", *,
                   values: st.SearchStrategy[float] | None = None, min_size: int = 1,
                   max_size: int = 60, tick: float = TICK, gaps: bool = True,
                   duplicates: bool = True) -> list[Sample]:
    """Samples carrying `signal` (a Sample field or an extra gauge) with drawn values."""
    if values is None:
        # a coarse grid hits thresholds such as 0.95 exactly, where off-by-one bugs live
        values = st.integers(0, 24).map(lambda k: k / 20)
    n = draw(st.integers(min_size, max_size))
    ts = draw(times(n, tick=tick, gaps=gaps, duplicates=duplicates))
    return [_sample(t, signal, draw(values)) for t in ts]


def _sample(t: float, signal: str, v: float) -> Sample:
    if signal in ("cpu_ratio", "cpu_seconds"):
        return Sample(t=t, **{signal: float(v)})
    if signal in ("mem_bytes", "mem_limit_bytes", "pids", "net_rx_bytes", "net_tx_bytes"):
        return Sample(t=t, **{signal: int(v)})
    if signal == "mem_ratio":
        return Sample(t=t, mem_bytes=int(v * 1_000_000), mem_limit_bytes=1_000_000)
    if signal == "pids_ratio":
        return Sample(t=t, pids=int(v * 1000), extra={"pids_limit": 1000})
    return Sample(t=t, extra={signal: v})


def events(*, sources: Sequence[str] = tuple(sorted(SOURCES)),
           categories: Sequence[str] = tuple(sorted(CATEGORIES)),
           kinds: Sequence[str] = ("setuid", "connect", "fork", "write_below_etc", "covert_marker",
                                   "robots_violation", "skill_unlocked"),
           outcomes: Sequence[str] = tuple(sorted(OUTCOMES)), t: float = 0.0) -> st.SearchStrategy[Event]:
    """One event with fields drawn from the given vocabularies (time `t`)."""
    return st.builds(Event, t=st.just(t), source=st.sampled_from(list(sources)),
                     category=st.sampled_from(list(categories)), kind=st.sampled_from(list(kinds)),
                     outcome=st.sampled_from(list(outcomes)))


@st.composite
def event_streams(draw: st.DrawFn, *, min_size: int = 0, max_size: int = 40, tick: float = TICK,
                  gaps: bool = True, duplicates: bool = True, **vocab: Sequence[str]) -> list[Event]:
    """Events in time order; keyword arguments narrow the vocabulary (see `events`)."""
    n = draw(st.integers(min_size, max_size))
    ts = draw(times(n, tick=tick, gaps=gaps, duplicates=duplicates))
    return [draw(events(t=t, **vocab)) for t in ts]


@st.composite
def bursts(draw: st.DrawFn, *, size: tuple[int, int] = (2, 12), spread: float = 1.0,
           start: float = 0.0, **vocab: Sequence[str]) -> list[Event]:
    """A burst: several events within `spread` seconds, many at the very same instant."""
    n = draw(st.integers(*size))
    offs = sorted(draw(st.lists(st.sampled_from([0.0, 0.0, spread / 4, spread / 2, spread]),
                                min_size=n, max_size=n)))
    return [draw(events(t=start + o, **vocab)) for o in offs]


@st.composite
def observation_streams(draw: st.DrawFn, *, max_samples: int = 60, max_events: int = 20,
                        signal: str = "cpu_ratio", **vocab: Sequence[str]) -> list[Observation]:
    """Samples and events interleaved in time order (as a live run delivers them)."""
    samples = draw(sample_streams(signal, min_size=0, max_size=max_samples))
    evs = draw(event_streams(max_size=max_events, **vocab))
    merged: list[Observation] = [*samples, *evs]
    merged.sort(key=lambda o: o.t)  # stable: ties keep samples first
    return merged


@st.composite
def duty_cycling(draw: st.DrawFn, threshold: float, for_s: float, *, signal: str = "cpu_ratio",
                 high: float | None = None, low: float | None = None, periods: tuple[int, int] = (8, 20),
                 tick: float = TICK) -> list[Sample]:
    """Adversarial: above `threshold` for a little less than `for_s`, one sample below it,
    again and again, so a plain threshold guard's `for` is reset every time while the
    average stays high."""
    high = threshold + 0.04 if high is None else high
    low = threshold - 0.05 if low is None else low
    out: list[Sample] = []
    k = 0
    max_high = max(int(for_s / tick) - 1, 1)  # strictly under `for`
    for _ in range(draw(st.integers(*periods))):
        for _ in range(draw(st.integers(max(1, max_high - 3), max_high))):
            out.append(_sample(k * tick, signal, high))
            k += 1
        out.append(_sample(k * tick, signal, low))
        k += 1
    return out


@st.composite
def just_under(draw: st.DrawFn, threshold: float, *, signal: str = "cpu_ratio",
               margin: float = 0.02, size: tuple[int, int] = (10, 120), tick: float = TICK) -> list[Sample]:
    """Adversarial: a signal held just under `threshold` (never crossing it)."""
    n = draw(st.integers(*size))
    vals = st.floats(threshold - margin, threshold, exclude_max=True, allow_nan=False)
    return [_sample(i * tick, signal, draw(vals)) for i in range(n)]


def adversarial_samples(threshold: float, for_s: float, *, signal: str = "cpu_ratio") -> st.SearchStrategy[list[Sample]]:
    """Any of the adversarial sample streams: duty-cycling, just under, or gappy noise."""
    return st.one_of(
        duty_cycling(threshold, for_s, signal=signal),
        just_under(threshold, signal=signal),
        sample_streams(signal, values=st.sampled_from([threshold - 0.01, threshold, threshold + 0.01])),
    )


__all__ = [
    "TICK", "adversarial_samples", "bursts", "duty_cycling", "event_streams", "events", "just_under",
    "observation_streams", "sample_streams", "times",
]
