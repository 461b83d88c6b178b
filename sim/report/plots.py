"""The report's plots, drawn with matplotlib's Agg backend into PNG bytes (no display needed).

Every plot shares the x axis (seconds since the run started) and marks the moments that
matter: guard verdicts and containment actions, labelled, so a workshop audience can read
"the CPU pegged here, the guard fired there, the sandbox was killed here".
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import matplotlib

matplotlib.use("Agg")  # before pyplot: reports are drawn on headless machines
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from policies.model import Action, Event, Meta, Record, Sample, Verdict  # noqa: E402

from .scorecard import CONTAINING_ACTIONS, CPU_PEGGED  # noqa: E402

FIGSIZE = (10.0, 3.4)
DPI = 110
MIB = 1024 * 1024

# Colour-blind-safe palette (Okabe-Ito), fixed per category so reports compare.
CATEGORY_COLOURS = {
    "escalation": "#D55E00", "egress": "#E69F00", "filesystem": "#CC79A7",
    "process": "#0072B2", "self_modification": "#009E73", "robots": "#F0E442",
    "deception": "#000000", "operator": "#56B4E9", "lifecycle": "#999999",
}
OUTCOME_MARKERS = {"blocked": ("x", "blocked by the sandbox"), "allowed": ("o", "allowed"),
                   "unknown": ("^", "outcome unknown")}
OPERATOR_COLOUR = "#222222"
VERDICT_STYLES = {"firing": ("#C00000", "--"), "pending": ("#E69F00", ":"), "resolved": ("#009E73", ":")}


@dataclass
class Run:
    """A trace split by record type, which every plot and table reads."""

    meta: Meta = field(default_factory=Meta)
    samples: list[Sample] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    end: float = 0.0

    @classmethod
    def of(cls, records: Iterable[Record]) -> "Run":
        run = cls()
        seen_meta = False
        for rec in records:
            run.end = max(run.end, rec.t)
            if isinstance(rec, Sample):
                run.samples.append(rec)
            elif isinstance(rec, Event):
                run.events.append(rec)
            elif isinstance(rec, Verdict):
                run.verdicts.append(rec)
            elif isinstance(rec, Action):
                run.actions.append(rec)
            elif isinstance(rec, Meta) and not seen_meta:
                run.meta, seen_meta = rec, True
        return run


def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _plain(text: str) -> str:
    # Names come from policies and traces; a `$` would switch matplotlib to math mode.
    return text.replace("$", r"\$")


def _xmax(run: Run) -> float:
    # A little room after the last record, so a kill at the very end is visible.
    return max(run.end * 1.03 + 0.5, 1.0)


def _label(ax: Axes, text: str, t: float, y: float, dy: float, colour: str, **kw: Any) -> None:
    """A label beside a vertical mark; on the right side of the plot it goes to the left."""
    right = t > 0.75 * ax.get_xlim()[1]
    ax.annotate(_plain(text), (t, y), xytext=(-3 if right else 3, dy), textcoords="offset points",
                ha="right" if right else "left", fontsize=8, color=colour,
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8}, **kw)


def _axes(title: str, ylabel: str, run: Run) -> tuple[plt.Figure, Axes]:
    fig, ax = plt.subplots(figsize=FIGSIZE)
    ax.set_title(title, loc="left", fontsize=12, fontweight="bold")
    ax.set_xlabel("time since the run started (s)")
    ax.set_ylabel(ylabel)
    ax.set_xlim(0, _xmax(run))
    ax.grid(True, alpha=0.3)
    return fig, ax


def _mark_containment(ax: Axes, run: Run, *, labels: bool) -> list[Line2D]:
    """Vertical lines for firing verdicts and ok containing actions; labelled on the CPU plot."""
    handles: list[Line2D] = []
    ymax = ax.get_ylim()[1]
    firing = [v for v in run.verdicts if v.state == "firing"]
    for i, v in enumerate(firing):
        ax.axvline(v.t, color=VERDICT_STYLES["firing"][0], linestyle="--", linewidth=1.2, alpha=0.8)
        if labels:
            # Stagger labels downwards so guards firing close together stay readable.
            _label(ax, f"{v.guard} fires", v.t, ymax, -12 - 11 * (i % 4), VERDICT_STYLES["firing"][0])
    if firing:
        handles.append(Line2D([], [], color=VERDICT_STYLES["firing"][0], linestyle="--",
                              label="guard fires (verdict)"))
    done = [a for a in run.actions if a.action in CONTAINING_ACTIONS or a.action in ("alert", "resume")]
    for i, a in enumerate(done):
        colour = "#6A3D9A" if a.ok else "#7F7F7F"
        ax.axvline(a.t, color=colour, linestyle="-", linewidth=1.6, alpha=0.7)
        if labels:
            _label(ax, f"{a.action}{'' if a.ok else ' (failed)'}", a.t, ax.get_ylim()[0], 4 + 11 * (i % 3),
                   colour, fontweight="bold")
    if done:
        handles.append(Line2D([], [], color="#6A3D9A", linewidth=1.6, label="action applied"))
    commands = [e for e in run.events if e.source == "operator" and e.category == "operator"]
    for i, e in enumerate(commands):
        ax.axvline(e.t, color=OPERATOR_COLOUR, linestyle="-.", linewidth=1.4)
        if labels:
            _label(ax, f"operator: {e.kind}", e.t, (ax.get_ylim()[0] + ax.get_ylim()[1]) / 2,
                   11 * (i % 3), OPERATOR_COLOUR, fontweight="bold")
    if commands:
        handles.append(Line2D([], [], color=OPERATOR_COLOUR, linestyle="-.", label="operator command"))
    return handles


def _no_data(ax: Axes, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} in this trace", transform=ax.transAxes, ha="center",
            va="center", color="#7F7F7F")


def _finish_sample_plot(fig: plt.Figure, ax: Axes, run: Run, *, labels: bool) -> bytes:
    """What every plot over the samples ends with: the no-data note, the containment marks
    (labelled on the first plot only, to keep the others readable) and the legend."""
    if not run.samples:
        _no_data(ax, "samples")
    handles = _mark_containment(ax, run, labels=labels)
    h, _ = ax.get_legend_handles_labels()
    ax.legend(handles=h + handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return _png(fig)


def plot_cpu(run: Run) -> bytes:
    """CPU used against the cap over time, with verdicts and actions marked and labelled."""
    fig, ax = _axes("CPU against the cap", "CPU used / CPU cap", run)
    ts = [s.t for s in run.samples]
    ax.plot(ts, [s.cpu_ratio for s in run.samples], color="#0072B2", linewidth=1.5, label="CPU ratio")
    cpus = run.meta.caps.get("cpus")
    cap_label = f"cap ({cpus} CPUs) = 1.0" if cpus else "cap = 1.0"
    ax.axhline(1.0, color="#C00000", linewidth=1.5, label=cap_label)
    ax.axhline(CPU_PEGGED, color="#C00000", linewidth=0.8, linestyle=":",
               label=f"pegged ({CPU_PEGGED:g}, the scorecard's yardstick)")
    top = max([1.25] + [s.cpu_ratio * 1.1 for s in run.samples])
    ax.set_ylim(0, top)
    return _finish_sample_plot(fig, ax, run, labels=True)


def plot_memory(run: Run) -> bytes:
    """Memory used against the limit, in MiB."""
    fig, ax = _axes("Memory against the limit", "memory (MiB)", run)
    ts = [s.t for s in run.samples]
    ax.plot(ts, [s.mem_bytes / MIB for s in run.samples], color="#009E73", linewidth=1.5, label="memory used")
    limits = [s.mem_limit_bytes / MIB for s in run.samples]
    if any(limits):
        ax.plot(ts, limits, color="#C00000", linewidth=1.5, label="memory limit")
    ax.set_ylim(bottom=0)
    return _finish_sample_plot(fig, ax, run, labels=False)


def plot_pids(run: Run) -> bytes:
    """Processes and threads in the sandbox (a fork flood shows here)."""
    fig, ax = _axes("Processes in the sandbox", "processes and threads", run)
    ax.step([s.t for s in run.samples], [s.pids for s in run.samples], where="post", color="#0072B2",
            linewidth=1.5, label="pids")
    limit = run.meta.caps.get("pids")
    if isinstance(limit, (int, float)) and not isinstance(limit, bool) and limit > 0:
        ax.axhline(limit, color="#C00000", linewidth=1.5, label=f"pids limit ({limit:g})")
    ax.set_ylim(bottom=0)
    return _finish_sample_plot(fig, ax, run, labels=False)


def plot_events(run: Run) -> bytes:
    """One row per category, one mark per event; the mark's shape is the outcome."""
    present = {e.category for e in run.events}
    cats = [c for c in CATEGORY_COLOURS if c in present] + sorted(present - set(CATEGORY_COLOURS))
    fig, ax = plt.subplots(figsize=(FIGSIZE[0], max(2.4, 1.2 + 0.42 * len(cats))))
    ax.set_title("Events over time, by category", loc="left", fontsize=12, fontweight="bold")
    ax.set_xlabel("time since the run started (s)")
    ax.set_xlim(0, _xmax(run))
    ax.grid(True, axis="x", alpha=0.3)
    row = {c: i for i, c in enumerate(cats)}
    for outcome, (marker, _label) in OUTCOME_MARKERS.items():
        for c in cats:
            xs = [e.t for e in run.events if e.category == c and e.outcome == outcome]
            if xs:
                filled = marker != "x"
                ax.scatter(xs, [row[c]] * len(xs), marker=marker, s=36, linewidths=1.4,
                           color=CATEGORY_COLOURS.get(c, "#7F7F7F"), edgecolors="#333333" if filled else None,
                           alpha=0.85, zorder=3)
    counts = {c: sum(e.category == c for e in run.events) for c in cats}
    ax.set_yticks(range(len(cats)), [_plain(f"{c} ({counts[c]})") for c in cats])
    ax.set_ylim(-0.7, max(len(cats) - 0.3, 0.7))
    ax.set_ylabel("category (events)")
    if not cats:
        _no_data(ax, "events")
    handles = [Line2D([], [], marker=m, linestyle="", color="#333333", label=lab)
               for m, lab in OUTCOME_MARKERS.values()]
    handles += _mark_containment(ax, run, labels=False)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
              title="outcome", title_fontsize=8)
    return _png(fig)


def plot_learning(run: Run) -> bytes:
    """The learning curve: bits per character falling as the learner learns, and pages crawled."""
    fig, ax = _axes("Learning curve", "bits per character (lower = learned more)", run)
    pts = [(s.t, s.value("bits_per_char")) for s in run.samples]
    pts = [(t, v) for t, v in pts if v is not None]
    ax.plot([t for t, _ in pts], [v for _, v in pts], color="#0072B2", linewidth=1.5, label="bits per character")
    ax.set_ylim(bottom=0)
    ax2 = ax.twinx()
    pages = [(s.t, s.value("pages")) for s in run.samples]
    pages = [(t, v) for t, v in pages if v is not None]
    ax2.plot([t for t, _ in pages], [v for _, v in pages], color="#009E73", linewidth=1.5,
             linestyle="--", label="pages crawled")
    ax2.set_ylabel("pages crawled")
    ax2.set_ylim(bottom=0)
    if not pts and not pages:
        _no_data(ax, "learner gauges")
    handles = _mark_containment(ax, run, labels=False)
    h1, _ = ax.get_legend_handles_labels()
    h2, _ = ax2.get_legend_handles_labels()
    ax.legend(handles=h1 + h2 + handles, loc="upper left", bbox_to_anchor=(1.08, 1.0), fontsize=8)
    return _png(fig)


PLOTS: Sequence[tuple[str, str, Any]] = (
    ("cpu", "CPU used against the cap, with guard verdicts and actions", plot_cpu),
    ("memory", "Memory used against the limit", plot_memory),
    ("pids", "Processes in the sandbox", plot_pids),
    ("events", "Events over time by category", plot_events),
    ("learning", "Learning curve: bits per character and pages crawled", plot_learning),
)


def render_all(run: Run) -> dict[str, bytes]:
    """Every plot of the report as PNG bytes, by name, in report order."""
    return {name: fn(run) for name, _alt, fn in PLOTS}
