"""The report's plots, drawn with matplotlib's Agg backend into PNG bytes (no display needed).

Every plot shares the x axis (seconds since the run started) and marks the moments that
matter: guard verdicts and containment actions, labelled, so a workshop audience can read
"the CPU pegged here, the guard fired there, the sandbox was killed here".
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # before pyplot: reports are drawn on headless machines
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from policies.model import Action, Event, Meta, Record, Sample, Verdict  # noqa: E402

from .scorecard import CONTAINING_ACTIONS, CPU_PEGGED  # noqa: E402

# Every figure has the same width and the same axes rectangle (in inches), and none is
# cropped (no bbox "tight"), so the time axes of all the plots line up on the page.
FIG_W = 11.0
AX_LEFT_IN, AX_RIGHT_IN = 1.55, 2.75   # room for the events' category names / the legends
AX_H = 2.3                              # height of the plotting area, inches
DPI = 100
MIB = 1024 * 1024
LABEL_FONT = 8
LANE_H = 0.2                            # inches per row of labels above the CPU plot
MERGE_WITHIN_S = 3.0                    # an action this soon after its verdict shares its label

# Colour-blind-safe palette (Okabe-Ito), fixed per category so reports compare.
CATEGORY_COLOURS = {
    "escalation": "#D55E00", "egress": "#E69F00", "filesystem": "#CC79A7",
    "process": "#0072B2", "self_modification": "#009E73", "robots": "#F0E442",
    "deception": "#000000", "operator": "#56B4E9", "lifecycle": "#999999",
}
OUTCOME_MARKERS = {"blocked": ("x", "blocked by the sandbox"), "allowed": ("o", "allowed"),
                   "unknown": ("^", "outcome unknown")}
OPERATOR_COLOUR = "#222222"
FIRING_COLOUR = "#C00000"
ACTION_COLOUR = "#6A3D9A"
PENDING_COLOUR = "#F4B400"
VERDICT_STYLES = {"firing": (FIRING_COLOUR, "--"), "pending": (PENDING_COLOUR, ":"), "resolved": ("#009E73", ":")}


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
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    return buf.getvalue()


def _plain(text: str) -> str:
    # Names come from policies and traces; a `$` would switch matplotlib to math mode.
    return text.replace("$", r"\$")


def _xmax(run: Run) -> float:
    # A little room after the last record, so a kill at the very end is visible.
    return max(run.end * 1.03 + 0.5, 1.0)


def _figure(title: str, run: Run, *, ax_h: float = AX_H, top_in: float = 0.45) -> tuple[plt.Figure, Axes]:
    """A figure whose axes sit at the same place, in inches, as every other plot's."""
    bottom_in = 0.55
    h = bottom_in + ax_h + top_in
    fig = plt.figure(figsize=(FIG_W, h), dpi=DPI)
    ax = fig.add_axes((AX_LEFT_IN / FIG_W, bottom_in / h, (FIG_W - AX_LEFT_IN - AX_RIGHT_IN) / FIG_W, ax_h / h))
    fig.text(AX_LEFT_IN / FIG_W, 1 - 0.08 / h, _plain(title), ha="left", va="top", fontsize=12, fontweight="bold")
    ax.set_xlabel("time since the run started (s)")
    ax.set_xlim(0, _xmax(run))
    ax.grid(True, alpha=0.3)
    return fig, ax


def _legend(ax: Axes, handles: list[Any], **kw: Any) -> None:
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=LABEL_FONT,
                  borderaxespad=0.0, **kw)


def pending_spans(run: Run) -> list[tuple[str, float, float]]:
    """(guard, start, end) of every pending stretch: from a pending verdict to the guard's
    next verdict (firing, resolved, or pending again after it silently lapsed), or the end."""
    spans = []
    by_guard: dict[str, list[Verdict]] = {}
    for v in run.verdicts:
        by_guard.setdefault(v.guard, []).append(v)
    for guard, vs in by_guard.items():
        for i, v in enumerate(vs):
            if v.state == "pending":
                end = vs[i + 1].t if i + 1 < len(vs) else run.end
                spans.append((guard, v.t, max(end, v.t)))
    return sorted(spans, key=lambda s: s[1])


def _marks(run: Run) -> list[tuple[float, str, str, bool]]:
    """(t, label, colour, bold) of what the plots mark: each guard's firing, each
    containment action, each operator command. An action that follows the firing that
    asked for it within MERGE_WITHIN_S shares its label ("escalation fires -> kill", with
    "+2.0s" when it took effect that much later)."""
    out = []
    actions = [a for a in run.actions if a.action in CONTAINING_ACTIONS or a.action in ("alert", "resume")]
    used: set[int] = set()
    for v in run.verdicts:
        if v.state != "firing":
            continue
        a = next((a for i, a in enumerate(actions) if i not in used and a.action == v.action
                  and v.t <= a.t <= v.t + MERGE_WITHIN_S), None)
        if a is not None:
            used.add(actions.index(a))
            tail = "" if a.ok else " (failed)"
            later = f" +{a.t - v.t:.1f}s" if a.t - v.t >= 0.5 else ""  # the action's own line is there
            out.append((v.t, f"{v.guard} fires \u2192 {a.action}{tail}{later}", ACTION_COLOUR if a.ok else "#7F7F7F",
                        True))
        else:
            out.append((v.t, f"{v.guard} fires", FIRING_COLOUR, False))
    for i, a in enumerate(actions):
        if i not in used:
            out.append((a.t, a.action + ("" if a.ok else " (failed)"), ACTION_COLOUR if a.ok else "#7F7F7F", True))
    for e in run.events:
        if e.source == "operator" and e.category == "operator":
            out.append((e.t, f"operator: {e.kind}", OPERATOR_COLOUR, True))
    return sorted(out, key=lambda m: m[0])


def _lanes(marks: list[tuple[float, str, str, bool]], xmax: float) -> list[tuple[float, str, str, bool, int, str]]:
    """Places each label in the first row where it overlaps no other: (t, label, colour,
    bold, row, ha). A label near the right edge ends at its mark instead of starting there."""
    axes_w_in = FIG_W - AX_LEFT_IN - AX_RIGHT_IN
    per_char = LABEL_FONT * 0.62 / 72 * xmax / axes_w_in  # data units per character, a bit generous
    pad = 2 * per_char
    rows_end: list[float] = []
    out = []
    for t, text, colour, bold in marks:
        w = (len(text) + 1) * per_char * (1.1 if bold else 1.0)
        ha = "left" if t + w <= xmax else "right"
        lo, hi = (t, t + w) if ha == "left" else (t - w, t)
        for row, end in enumerate(rows_end):
            if lo >= end + pad:
                rows_end[row] = hi
                break
        else:
            rows_end.append(hi)
            row = len(rows_end) - 1
        out.append((t, text, colour, bold, row, ha))
    return out


def _mark_containment(ax: Axes, run: Run, *, shade_pending: bool = False) -> list[Any]:
    """Vertical lines at every firing, action and operator command; pending stretches
    shaded. Returns the legend handles."""
    handles: list[Any] = []
    spans = pending_spans(run) if shade_pending else []
    for _guard, a, b in spans:
        ax.axvspan(a, b, color=PENDING_COLOUR, alpha=0.16, linewidth=0, zorder=0)
    if spans:
        handles.append(Patch(color=PENDING_COLOUR, alpha=0.35, label="a guard pending\n(waiting out its for:)"))
    marks = _marks(run)
    for t, _text, colour, bold in marks:
        ax.axvline(t, color=colour, linestyle="-" if bold else "--", linewidth=1.5 if bold else 1.1,
                   alpha=0.75, zorder=2)
    if any(c == FIRING_COLOUR for _, _, c, _ in marks):
        handles.append(Line2D([], [], color=FIRING_COLOUR, linestyle="--", label="a guard fires"))
    if any(c == ACTION_COLOUR for _, _, c, _ in marks):
        handles.append(Line2D([], [], color=ACTION_COLOUR, linewidth=1.5, label="action applied"))
    if any(c == OPERATOR_COLOUR for _, _, c, _ in marks):
        handles.append(Line2D([], [], color=OPERATOR_COLOUR, linewidth=1.5, label="operator command"))
    return handles


def _no_data(ax: Axes, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} in this trace", transform=ax.transAxes, ha="center",
            va="center", color="#7F7F7F")


def _finish(fig: plt.Figure, ax: Axes, run: Run, handles: list[Any], *, empty: bool, what: str = "samples",
            shade_pending: bool = False) -> bytes:
    if empty:
        _no_data(ax, what)
    _legend(ax, handles + _mark_containment(ax, run, shade_pending=shade_pending))
    return _png(fig)


def throttled_caps(run: Run) -> list[tuple[float, float]]:
    """(t, cap as a fraction of the run's CPU cap) wherever the live cap changed: from the
    samples' `cpu_cap` (cpus) when they carry it, else from throttle actions' detail."""
    cap = run.meta.caps.get("cpus")
    if not isinstance(cap, (int, float)) or isinstance(cap, bool) or cap <= 0:
        return []
    out: list[tuple[float, float]] = []
    for s in run.samples:
        live = s.value("cpu_cap")
        if live is not None and live > 0:
            frac = round(live / cap, 4)
            if not out or out[-1][1] != frac:
                out.append((s.t, frac))
    if out:
        return out if any(f < 1 for _, f in out) else []
    for a in run.actions:
        if a.action == "throttle" and a.ok:
            cpus = a.detail.get("cpus")
            after = cpus[-1] if isinstance(cpus, list) and cpus else cpus
            if isinstance(after, (int, float)) and not isinstance(after, bool) and after > 0:
                out.append((a.t, round(after / cap, 4)))
    return out


def plot_cpu(run: Run) -> bytes:
    """CPU used against the cap over time: the cap, the throttled cap, guards pending
    (shaded) and firing, actions, each labelled in rows above the plot that never collide."""
    placed = _lanes(_marks(run), _xmax(run))
    rows = 1 + max((p[4] for p in placed), default=-1)
    top_in = 0.5 + rows * LANE_H
    fig, ax = _figure("CPU against the cap", run, top_in=top_in)
    ax.set_ylabel("CPU used / CPU cap")
    handles: list[Any] = []
    cpus = run.meta.caps.get("cpus")
    # The cap and the yardstick go under the CPU line, so a CPU pegged at exactly 1.0 shows.
    ax.axhline(1.0, color=FIRING_COLOUR, linewidth=1.0, linestyle=(0, (6, 3)), zorder=1)
    handles.append(Line2D([], [], color=FIRING_COLOUR, linewidth=1.0, linestyle=(0, (6, 3)),
                          label=f"cap = 1.0 ({cpus:g} CPUs)" if isinstance(cpus, (int, float)) else "cap = 1.0"))
    ax.axhline(CPU_PEGGED, color=FIRING_COLOUR, linewidth=0.7, linestyle=":", zorder=1)
    handles.append(Line2D([], [], color=FIRING_COLOUR, linewidth=0.7, linestyle=":",
                          label=f"pegged ({CPU_PEGGED:g}, scorecard)"))
    steps = throttled_caps(run)
    if steps:
        xs = [t for t, _ in steps] + [_xmax(run)]
        ys = [f for _, f in steps] + [steps[-1][1]]
        ax.step(xs, ys, where="post", color="#8C564B", linewidth=1.6, zorder=2)
        low = min(f for _, f in steps)
        label = f"throttled cap ({low * cpus:g} CPUs)" if isinstance(cpus, (int, float)) else "throttled cap"
        handles.append(Line2D([], [], color="#8C564B", linewidth=1.6, label=label))
    ax.plot([s.t for s in run.samples], [s.cpu_ratio for s in run.samples], color="#0072B2", linewidth=1.8,
            zorder=3, label="CPU used")
    handles.insert(0, Line2D([], [], color="#0072B2", linewidth=1.8, label="CPU used"))
    ax.set_ylim(0, max([1.2] + [s.cpu_ratio * 1.08 for s in run.samples]))
    # Labels above the plot, in axes-fraction y, one row each.
    ax_h_frac = AX_H
    for t, text, colour, bold, row, ha in placed:
        y = 1.0 + (0.08 + row * LANE_H) / ax_h_frac
        ax.annotate(_plain(text), (t, y), xycoords=("data", "axes fraction"), ha=ha, va="bottom",
                    fontsize=LABEL_FONT, color=colour, fontweight="bold" if bold else "normal",
                    annotation_clip=False, xytext=(2 if ha == "left" else -2, 0), textcoords="offset points")
        ax.plot([t, t], [1.0, y], transform=ax.get_xaxis_transform(), color=colour, linewidth=0.6,
                alpha=0.5, clip_on=False)
    return _finish(fig, ax, run, handles, empty=not run.samples, shade_pending=True)


def _scaled(ax: Axes, peak: float, limit: float, what: str, unit: str, fmt: Any) -> Any:
    """Draws the limit when it is on the scale; when usage stays under a quarter of it the
    axis zooms to the usage and the legend says how far off the limit is."""
    if limit > 0 and peak >= 0.25 * limit:
        ax.axhline(limit, color=FIRING_COLOUR, linewidth=1.2, linestyle=(0, (6, 3)), zorder=1)
        ax.set_ylim(0, limit * 1.08)
        return Line2D([], [], color=FIRING_COLOUR, linewidth=1.2, linestyle=(0, (6, 3)),
                      label=f"{what} limit ({fmt(limit)} {unit})")
    ax.set_ylim(0, max(peak * 1.3, 1e-9))
    if limit > 0:
        pct = 100 * peak / limit
        return Patch(color="none", label=f"{what} limit: {fmt(limit)} {unit}".rstrip() + f"\noff the scale (peak {pct:.0f}%)")
    return None


def plot_memory(run: Run) -> bytes:
    """Memory used (MiB) against the limit; zoomed to the usage when it stays far below."""
    fig, ax = _figure("Memory against the limit", run)
    ax.set_ylabel("memory (MiB)")
    used = [s.mem_bytes / MIB for s in run.samples]
    ax.plot([s.t for s in run.samples], used, color="#009E73", linewidth=1.6, zorder=3)
    handles: list[Any] = [Line2D([], [], color="#009E73", linewidth=1.6, label="memory used")]
    limit = max((s.mem_limit_bytes for s in run.samples), default=0) / MIB
    h = _scaled(ax, max(used, default=0.0), limit, "memory", "MiB", lambda x: f"{x:,.0f}")
    if h is not None:
        handles.append(h)
    return _finish(fig, ax, run, handles, empty=not run.samples)


def plot_pids(run: Run) -> bytes:
    """Processes and threads in the sandbox (a fork flood shows here), against the limit."""
    fig, ax = _figure("Processes in the sandbox", run)
    ax.set_ylabel("processes and threads")
    pids = [s.pids for s in run.samples]
    ax.step([s.t for s in run.samples], pids, where="post", color="#0072B2", linewidth=1.6, zorder=3)
    handles: list[Any] = [Line2D([], [], color="#0072B2", linewidth=1.6, label="pids")]
    limit = run.meta.caps.get("pids")
    limit = float(limit) if isinstance(limit, (int, float)) and not isinstance(limit, bool) else 0.0
    h = _scaled(ax, float(max(pids, default=0)), limit, "pids", "", lambda x: f"{x:g}")
    if h is not None:
        handles.append(h)
    return _finish(fig, ax, run, handles, empty=not run.samples)


def plot_events(run: Run) -> bytes:
    """One row per category (colour), one mark per event (shape: the outcome)."""
    present = {e.category for e in run.events}
    cats = [c for c in CATEGORY_COLOURS if c in present] + sorted(present - set(CATEGORY_COLOURS))
    fig, ax = _figure("Events over time, by category", run, ax_h=max(1.4, 0.36 * len(cats) + 0.4))
    ax.grid(True, axis="x", alpha=0.3)
    ax.grid(False, axis="y")
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
    ax.set_yticks(range(len(cats)), [_plain(f"{c} ({counts[c]})") for c in cats], fontsize=LABEL_FONT + 1)
    for tick, c in zip(ax.get_yticklabels(), cats):
        tick.set_color("#333333")
    ax.set_ylim(-0.7, max(len(cats) - 0.3, 0.7))
    handles: list[Any] = [Line2D([], [], marker=m, linestyle="", color="#333333", label=lab)
                          for m, lab in OUTCOME_MARKERS.values()]
    handles += [Patch(color=CATEGORY_COLOURS.get(c, "#7F7F7F"), label=c) for c in cats]
    return _finish(fig, ax, run, handles, empty=not cats, what="events")


def plot_learning(run: Run) -> bytes:
    """The learning curve: bits per character falling as the learner learns, and pages crawled."""
    fig, ax = _figure("Learning curve", run)
    ax.set_ylabel("bits per character")
    pts = [(s.t, s.value("bits_per_char")) for s in run.samples]
    pts = [(t, v) for t, v in pts if v is not None]
    ax.plot([t for t, _ in pts], [v for _, v in pts], color="#0072B2", linewidth=1.6, zorder=3)
    ax.set_ylim(bottom=0, top=max([1.0] + [v * 1.1 for _, v in pts]))
    ax2 = ax.twinx()
    pages = [(s.t, s.value("pages")) for s in run.samples]
    pages = [(t, v) for t, v in pages if v is not None]
    ax2.plot([t for t, _ in pages], [v for _, v in pages], color="#009E73", linewidth=1.6, linestyle="--")
    ax2.set_ylabel("pages crawled")
    ax2.set_ylim(bottom=0, top=max([10.0] + [v * 1.1 for _, v in pages]))
    handles: list[Any] = [Line2D([], [], color="#0072B2", linewidth=1.6, label="bits per character\n(lower = learned more)"),
                          Line2D([], [], color="#009E73", linewidth=1.6, linestyle="--", label="pages crawled (right)")]
    handles += _mark_containment(ax, run)
    if not pts and not pages:
        _no_data(ax, "learner gauges")
    # The right axis' labels take room: the legend starts 0.8 inch after the axes.
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1 + 0.8 / (FIG_W - AX_LEFT_IN - AX_RIGHT_IN), 1.0),
              fontsize=LABEL_FONT, borderaxespad=0.0)
    return _png(fig)


PLOTS: Sequence[tuple[str, str, Any]] = (
    ("cpu", "CPU used against the cap, with guard verdicts and actions", plot_cpu),
    ("events", "Events over time by category", plot_events),
    ("memory", "Memory used against the limit", plot_memory),
    ("pids", "Processes in the sandbox", plot_pids),
    ("learning", "Learning curve: bits per character and pages crawled", plot_learning),
)
# How to read each plot (the report's captions). Every plot has the same time axis.
CAPTIONS: Mapping[str, str] = {
    "cpu": "1.0 is the sandbox's CPU cap. Shaded: a guard pending (its condition holds, not yet for long "
           "enough); dashed red: a guard fires; purple: the action taken; brown: the cap after a throttle.",
    "events": "One row per category; the shape is the outcome (x blocked by the sandbox, o allowed, "
              "^ unknown). The number is how many events of that category.",
    "memory": "The limit is drawn when usage comes near it; otherwise the legend says how far off it is.",
    "pids": "A fork flood shows as a climb towards the pids limit.",
    "learning": "Bits per character fall as the learner learns from the pages it crawls (dashed, right axis).",
}


def render_all(run: Run) -> dict[str, bytes]:
    """Every plot of the report as PNG bytes, by name, in report order."""
    return {name: fn(run) for name, _alt, fn in PLOTS}
