"""What a person watching a run sees: a live terminal view, or plain lines when piped.

The live view (rich) shows CPU against the cap, memory, pids, pages, bits/char, the guard
states, the latest events and a progress bar for the run's duration. When stdout is not a
terminal it prints one plain line per event, verdict and action, and a sample line every
few seconds, so CI logs and `tee` stay readable.
"""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from typing import Any, TextIO

from policies.model import Action, Event, Meta, Sample, Verdict

_STATE_STYLE = {"firing": "bold red", "pending": "yellow", "inactive": "green", "resolved": "green"}


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def _bar(ratio: float, width: int = 24) -> str:
    filled = int(round(min(max(ratio, 0.0), 1.0) * width))
    return "█" * filled + "░" * (width - filled)


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


class PlainView:
    """Plain lines for logs and pipes."""

    def __init__(self, out: TextIO | None = None, sample_every: float = 5.0) -> None:
        self.out = out or sys.stdout
        self.sample_every = sample_every
        self._next_sample = 0.0

    def start(self, exp: Any, meta: Meta) -> None:
        caps = meta.caps
        print(f"run {meta.run}: scenario {meta.scenario}, backend {meta.backend}, "
              f"cap {caps.get('cpus')} cpus / {_mib(caps.get('memory_bytes') or 0)}, "
              f"guards {'on' if meta.extra.get('guards') else 'OFF'}", file=self.out, flush=True)
        for n in exp.notices:
            print(f"note: {n}", file=self.out, flush=True)

    def update(self, rec: Any) -> None:
        if isinstance(rec, Sample):
            if rec.t >= self._next_sample:
                self._next_sample = rec.t + self.sample_every
                pages = rec.extra.get("pages", "-")
                bpc = rec.extra.get("bits_per_char")
                bpc_s = f"{bpc:.2f}" if isinstance(bpc, (int, float)) else "-"
                print(f"{rec.t:7.2f}s  sample   cpu {rec.cpu_ratio:5.2f} of cap, mem {_mib(rec.mem_bytes)}, "
                      f"pids {rec.pids}, pages {pages}, bits/char {bpc_s}", file=self.out, flush=True)
            return
        line = describe(rec)
        if line:
            print(line, file=self.out, flush=True)

    async def tick(self, exp: Any) -> None:
        return None

    def stop(self) -> None:
        pass


class LiveView:
    """A rich live panel, redrawn four times a second."""

    def __init__(self, duration: float) -> None:
        from rich.console import Console

        self.console = Console()
        self.duration = duration
        self.sample: Sample | None = None
        self.events: deque[str] = deque(maxlen=8)
        self.states: dict[str, str] = {}
        self.meta: Meta | None = None
        self.exp: Any = None
        self._live: Any = None

    def start(self, exp: Any, meta: Meta) -> None:
        from rich.live import Live

        self.exp, self.meta = exp, meta
        if exp.engine is not None:
            self.states = dict(exp.engine.states())
        for n in exp.notices:
            self.console.print(f"[dim]note: {n}[/dim]")
        self._live = Live(self._render(), console=self.console, refresh_per_second=4, transient=False)
        self._live.start()

    def update(self, rec: Any) -> None:
        if isinstance(rec, Sample):
            self.sample = rec
            return
        if isinstance(rec, Verdict) and self.exp is not None and self.exp.engine is not None:
            self.states = dict(self.exp.engine.states())
        line = describe(rec)
        if line:
            self.events.append(line)

    def _render(self) -> Any:
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
            cap = meta.caps.get("cpus") if meta else "?"
            style = "bold red" if s.cpu_ratio >= 0.95 else "cyan"
            top.add_row("CPU", Text(f"{_bar(s.cpu_ratio)} {s.cpu_ratio * 100:5.1f}% of {cap} cpus", style=style))
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
            guards.add_row("(guards off)" if self.exp and self.exp.engine is None else "-", "")
        elapsed = self.exp.clock() if self.exp is not None else 0.0
        bar = ProgressBar(total=self.duration, completed=min(elapsed, self.duration), width=50)
        title = f"runaway · {meta.scenario} · {meta.backend}" if meta else "runaway"
        return Panel(
            Group(top, Text(""), guards, Text(""), Text("latest", style="bold"),
                  *(Text(e) for e in self.events), Text(""),
                  Group(Text(f"{elapsed:5.1f}s of {self.duration:.0f}s"), bar)),
            title=title,
        )

    async def tick(self, exp: Any) -> None:
        while True:
            if self._live is not None:
                self._live.update(self._render())
            await asyncio.sleep(0.25)

    def stop(self) -> None:
        if self._live is not None:
            self._live.update(self._render())
            self._live.stop()
            self._live = None


def make_view(live: bool | None, duration: float) -> PlainView | LiveView:
    """A live view on a terminal (or when asked), plain lines otherwise."""
    if live is None:
        live = sys.stdout.isatty()
    return LiveView(duration) if live else PlainView()
