"""What a person watching a run sees: a live terminal view, or plain lines when piped.

The live view (rich) shows CPU against the cap (and the throttled cap), memory, pids,
pages, bits/char, the guard states, the verdicts and actions so far pinned above the
latest events (repeats collapsed with a count), and the run's progress, then its teardown
("stopping: ...") and its end. When stdout is not a terminal it prints one plain line per
event, verdict and action (repeats collapsed), a sample line every few seconds, and a line
when the run starts to stop, so CI logs and `tee` stay readable.
"""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol, Sequence, TextIO

from policies.model import Action, Event, Meta, Sample, Verdict

_STATE_STYLE = {"firing": "bold red", "pending": "yellow", "inactive": "green", "resolved": "green"}
# Why a run stops, in words (Experiment._finish's reasons).
STOP_REASONS = {"duration": "its time is up", "interrupted": "interrupted (Ctrl-C)",
                "learner_exit": "the learner exited", "kill": "the sandbox was killed", "error": "an error"}


@dataclass(frozen=True)
class RunState:
    """What a view may read about a run in progress. The runner makes one at the start;
    a view never sees the runner itself."""

    meta: Meta
    notices: Sequence[str]
    clock: Callable[[], float]  # seconds since the run started
    # Each guard's state now ("inactive", "pending", "firing"); None when guards are off.
    guard_states: Callable[[], Mapping[str, str]] | None = None

    @property
    def guards_on(self) -> bool:
        return self.guard_states is not None

    def states(self) -> dict[str, str]:
        return dict(self.guard_states()) if self.guard_states is not None else {}


class View(Protocol):
    """What the runner drives: start once, every trace record, the run stopping, a redraw
    loop, stop."""

    def start(self, run: RunState) -> None: ...

    def update(self, rec: Any) -> None: ...

    def stopping(self, why: str) -> None: ...

    async def tick(self) -> None: ...

    def stop(self) -> None: ...


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def _bar(ratio: float, width: int = 24) -> str:
    filled = int(round(min(max(ratio, 0.0), 1.0) * width))
    return "█" * filled + "░" * (width - filled)


def cpu_text(sample: Sample, cap: Any) -> str:
    """CPU in words: '1.03× cap (0.5 cpu, throttled to 0.125)'. `cap` is the run's CPU cap
    (cpus); the sample's `cpu_cap`, when below it, is the throttled one."""
    text = f"{sample.cpu_ratio:.2f}× cap"
    if isinstance(cap, (int, float)) and not isinstance(cap, bool) and cap > 0:
        live = sample.value("cpu_cap")
        throttled = f", throttled to {live:g}" if live is not None and 0 < live < cap - 1e-9 else ""
        text += f" ({cap:g} cpu{throttled})"
    return text


def describe(rec: Any) -> str | None:
    """One human line for a notable record (events, verdicts, actions), else None."""
    if isinstance(rec, Event):
        who = f"{rec.source}/{rec.category}/{rec.kind}"
        text = rec.detail.get("text") if isinstance(rec.detail, dict) else None
        extra = f"  {text}" if isinstance(text, str) else ""
        return f"{rec.t:7.2f}s  event    {who} ({rec.outcome}){extra}"
    if isinstance(rec, Verdict):
        return f"{rec.t:7.2f}s  verdict  {rec.guard} {rec.state} -> {rec.action} [{rec.severity}] {rec.reason}"
    if isinstance(rec, Action):
        ok = "ok" if rec.ok else "FAILED"
        return f"{rec.t:7.2f}s  action   {rec.action} {ok} in {rec.latency_s * 1000:.0f} ms"
    return None


def _key(rec: Any) -> tuple[Any, ...] | None:
    """What makes two records "the same" for collapsing: an event's who/what/outcome and
    text; a verdict's guard and state. Actions never collapse."""
    if isinstance(rec, Event):
        text = rec.detail.get("text") if isinstance(rec.detail, dict) else None
        return ("event", rec.source, rec.category, rec.kind, rec.outcome, text)
    if isinstance(rec, Verdict):
        return ("verdict", rec.guard, rec.state)
    return None


class Collapsed:
    """The latest lines, a run of repeated records shown once with a count and the time
    of the first and the last: ' 62.00s  event    audit/egress/connect (blocked)  ×8 (to 63.40s)'."""

    def __init__(self, maxlen: int) -> None:
        self.lines: deque[list[Any]] = deque(maxlen=maxlen)  # [key, first line, count, last t]

    def add(self, rec: Any) -> bool:
        """Adds a record; True when it only raised the count of the last line."""
        line = describe(rec)
        if line is None:
            return False
        key = _key(rec)
        if key is not None and self.lines and self.lines[-1][0] == key:
            self.lines[-1][2] += 1
            self.lines[-1][3] = rec.t
            return True
        self.lines.append([key, line, 1, rec.t])
        return False

    def text(self) -> list[str]:
        return [line if n == 1 else f"{line}  ×{n} (to {last:.2f}s)" for _, line, n, last in self.lines]


class PlainView:
    """Plain lines for logs and pipes; a repeated event is printed once, then its count."""

    def __init__(self, out: TextIO | None = None, sample_every: float = 5.0) -> None:
        self.out = out or sys.stdout
        self.sample_every = sample_every
        self._next_sample = 0.0
        self._last_key: tuple[Any, ...] | None = None
        self._repeats = 0
        self._cap: Any = None

    def _print(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def _flush_repeats(self) -> None:
        if self._repeats:
            self._print(f"{'':9}  (the line above {self._repeats} more time(s))")
            self._repeats = 0

    def start(self, run: RunState) -> None:
        meta = run.meta
        caps = meta.caps
        self._cap = caps.get("cpus")
        self._print(f"run {meta.run}: scenario {meta.scenario}, backend {meta.backend}, "
                    f"cap {caps.get('cpus')} cpus / {_mib(caps.get('memory_bytes') or 0)}, "
                    f"guards {'on' if meta.extra.get('guards') else 'OFF'}")
        for n in run.notices:
            self._print(f"note: {n}")

    def update(self, rec: Any) -> None:
        if isinstance(rec, Sample):
            if rec.t >= self._next_sample:
                self._next_sample = rec.t + self.sample_every
                pages = rec.extra.get("pages", "-")
                bpc = rec.extra.get("bits_per_char")
                bpc_s = f"{bpc:.2f}" if isinstance(bpc, (int, float)) else "-"
                self._flush_repeats()
                self._last_key = None
                self._print(f"{rec.t:7.2f}s  sample   cpu {cpu_text(rec, self._cap)}, mem {_mib(rec.mem_bytes)}, "
                            f"pids {rec.pids}, pages {pages}, bits/char {bpc_s}")
            return
        line = describe(rec)
        if not line:
            return
        key = _key(rec)
        if key is not None and key == self._last_key:
            self._repeats += 1
            return
        self._flush_repeats()
        self._last_key = key
        self._print(line)

    def stopping(self, why: str) -> None:
        self._flush_repeats()
        self._print(f"stopping: {STOP_REASONS.get(why, why)}; saving the trace and the evidence, "
                    "removing the sandbox...")

    async def tick(self) -> None:
        return None

    def stop(self) -> None:
        self._flush_repeats()


class LiveView:
    """A rich live panel, redrawn four times a second: the gauges, the guards, the verdicts
    and actions so far (pinned), the latest events, the progress or the teardown."""

    def __init__(self, duration: float, console: Any = None) -> None:
        from rich.console import Console

        self.console = console or Console()
        self.duration = duration
        self.sample: Sample | None = None
        self.events = Collapsed(8)
        self.decisions = Collapsed(6)  # verdicts and actions: never pushed out by events
        self.states: dict[str, str] = {}
        self.meta: Meta | None = None
        self.run: RunState | None = None
        self.stop_reason: str | None = None
        self.stop_t: float | None = None  # when the run started to stop (its clock)
        self.stopped = False
        self._live: Any = None

    def start(self, run: RunState) -> None:
        from rich.live import Live

        self.run, self.meta = run, run.meta
        self.states = run.states()
        for n in run.notices:
            self.console.print(f"[dim]note: {n}[/dim]", highlight=False)
        self._live = Live(self.render(), console=self.console, refresh_per_second=4, transient=False)
        self._live.start()

    def update(self, rec: Any) -> None:
        if isinstance(rec, Sample):
            self.sample = rec
            return
        if isinstance(rec, Verdict) and self.run is not None:
            self.states = self.run.states()
        if isinstance(rec, (Verdict, Action)):
            self.decisions.add(rec)
        else:
            self.events.add(rec)

    def stopping(self, why: str) -> None:
        self.stop_reason = why
        self.stop_t = self.run.clock() if self.run is not None else None

    def render(self) -> Any:
        from rich.console import Group
        from rich.panel import Panel
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        s = self.sample
        meta = self.meta
        top = Table.grid(padding=(0, 2))
        top.add_column(style="bold")
        top.add_column()
        if s is not None:
            cap = meta.caps.get("cpus") if meta else None
            style = "bold red" if s.cpu_ratio >= 0.95 else "cyan"
            top.add_row("CPU", Text(f"{_bar(s.cpu_ratio)} {cpu_text(s, cap)}", style=style))
            lim = s.mem_limit_bytes or 1
            top.add_row("memory", f"{_bar(s.mem_bytes / lim)} {_mib(s.mem_bytes)} of {_mib(s.mem_limit_bytes)}")
            top.add_row("pids", str(s.pids))
            pages = s.extra.get("pages", "-")
            bpc = s.extra.get("bits_per_char")
            top.add_row("learning", f"pages {pages}, bits/char {bpc:.2f}" if isinstance(bpc, (int, float))
                        else f"pages {pages}")
        else:
            top.add_row("", "waiting for the first sample...")
        guards = Table(show_header=True, header_style="bold", box=None, padding=(0, 1))
        guards.add_column("guard")
        guards.add_column("state")
        for name, state in self.states.items():
            guards.add_row(name, Text(state, style=_STATE_STYLE.get(state, "")))
        if not self.states:
            guards.add_row("(guards off)" if self.run and not self.run.guards_on else "-", "")
        decisions = self.decisions.text() or ["(none yet)"]
        events = self.events.text() or ["(none yet)"]
        elapsed = self.run.clock() if self.run is not None else 0.0
        why = STOP_REASONS.get(self.stop_reason or "", self.stop_reason or "ended")
        at = self.stop_t if self.stop_t is not None else elapsed
        if self.stopped:
            footer: Any = Text(f"stopped at {at:.1f}s ({why}); the teardown took {max(elapsed - at, 0):.1f}s",
                               style="bold")
        elif self.stop_reason is not None:
            footer = Text(f"stopping at {at:.1f}s ({why}): saving the trace and the evidence, removing the "
                          f"sandbox... {max(elapsed - at, 0):.1f}s so far", style="bold yellow")
        else:
            bar = ProgressBar(total=self.duration, completed=min(elapsed, self.duration), width=50)
            footer = Group(Text(f"{elapsed:5.1f}s of {self.duration:.0f}s"), bar)
        title = f"runaway · {meta.scenario} · {meta.backend}" if meta else "runaway"
        return Panel(
            Group(top, Text(""), guards, Text(""),
                  Text("verdicts and actions", style="bold"), *(Text(d, style="magenta") for d in decisions),
                  Text(""), Text("latest events", style="bold"), *(Text(e) for e in events), Text(""), footer),
            title=title,
        )

    async def tick(self) -> None:
        while True:
            if self._live is not None:
                self._live.update(self.render())
            await asyncio.sleep(0.25)

    def stop(self) -> None:
        self.stopped = True
        if self._live is not None:
            self._live.update(self.render())
            self._live.stop()
            self._live = None


def make_view(live: bool | None, duration: float) -> PlainView | LiveView:
    """A live view on a terminal (or when asked), plain lines otherwise."""
    if live is None:
        live = sys.stdout.isatty()
    return LiveView(duration) if live else PlainView()
