"""The observation vocabulary and the trace format (the contract in docs/traces.md).

A trace is JSON Lines, one record per line, `t` in seconds since the run started and
never decreasing. Records are `meta`, `sample`, `event`, `verdict` and `action`.

>>> s = Sample(t=1.5, cpu_ratio=0.98, pids=3)
>>> record_from_dict(record_to_dict(s)) == s
True
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, TextIO, Union

from .errors import TraceError

SOURCES = frozenset({"audit", "observer", "web", "self_report", "operator"})
CATEGORIES = frozenset(
    {
        "escalation",
        "egress",
        "filesystem",
        "process",
        "self_modification",
        "robots",
        "deception",
        "operator",
        "lifecycle",
    }
)
OUTCOMES = frozenset({"blocked", "allowed", "unknown"})
STATES = frozenset({"pending", "firing", "resolved"})
ACTIONS = ("alert", "throttle", "pause", "kill", "disconnect")
# The ladder: within one incident a sandbox only moves up it. `disconnect` stands beside
# it (it cuts the network without changing the CPU state), so it has no rank.
ACTION_RANK = {"alert": 0, "throttle": 1, "pause": 2, "kill": 3}

# Sample fields every backend fills; anything else a sample carries goes to `extra`.
SAMPLE_FIELDS = (
    "cpu_ratio",
    "cpu_seconds",
    "mem_bytes",
    "mem_limit_bytes",
    "pids",
    "net_rx_bytes",
    "net_tx_bytes",
)


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of the sandbox's resources (cpu_ratio 1.0 = pegged at the cap)."""

    t: float
    cpu_ratio: float = 0.0
    cpu_seconds: float = 0.0
    mem_bytes: int = 0
    mem_limit_bytes: int = 0
    pids: int = 0
    net_rx_bytes: int = 0
    net_tx_bytes: int = 0
    # Optional learner gauges (pages, bits_per_char, workers) and unknown fields.
    extra: Mapping[str, Any] = field(default_factory=dict, compare=True)

    def value(self, name: str) -> float | None:
        """The named signal, or None when this sample does not carry it."""
        if name in SAMPLE_FIELDS:
            return getattr(self, name)
        v = self.extra.get(name)
        return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    def __hash__(self) -> int:  # extra is a dict; hash what is hashable
        return hash((self.t, self.cpu_ratio, self.cpu_seconds, self.mem_bytes, self.pids))


@dataclass(frozen=True, slots=True)
class Event:
    """Something seen happen: by the audit hook, the observer, the web, the learner or an operator."""

    t: float
    source: str
    category: str
    kind: str
    outcome: str = "unknown"
    detail: Mapping[str, Any] = field(default_factory=dict)

    def __hash__(self) -> int:
        return hash((self.t, self.source, self.category, self.kind, self.outcome))


@dataclass(frozen=True, slots=True)
class Verdict:
    """A guard's state change: pending, firing or resolved, and the action it asks for."""

    t: float
    guard: str
    state: str
    severity: str
    action: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Action:
    """An action applied to the sandbox, whether it worked, and how long it took."""

    t: float
    action: str
    ok: bool
    latency_s: float = 0.0
    detail: Mapping[str, Any] = field(default_factory=dict)

    def __hash__(self) -> int:
        return hash((self.t, self.action, self.ok, self.latency_s))


@dataclass(frozen=True, slots=True)
class Meta:
    """The first line of a trace: what ran, where, under which caps and policy."""

    t: float = 0.0
    run: str = ""
    scenario: str = ""
    seed: int = 0
    backend: str = ""
    caps: Mapping[str, Any] = field(default_factory=dict)
    policy_sha256: str = ""
    versions: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __hash__(self) -> int:
        return hash((self.run, self.scenario, self.seed))


Observation = Union[Sample, Event]
Record = Union[Meta, Sample, Event, Verdict, Action]

_TYPE_OF = {Meta: "meta", Sample: "sample", Event: "event", Verdict: "verdict", Action: "action"}


def record_to_dict(rec: Record) -> dict[str, Any]:
    """The JSON object for one trace line (field order fixed: type, t, then the rest)."""
    kind = _TYPE_OF[type(rec)]
    out: dict[str, Any] = {"type": kind, "t": round(rec.t, 6)}
    if kind == "sample":
        for name in SAMPLE_FIELDS:
            out[name] = getattr(rec, name)
        out.update(rec.extra)  # type: ignore[union-attr]
    elif kind == "event":
        out.update(
            source=rec.source, category=rec.category, kind=rec.kind,  # type: ignore[union-attr]
            outcome=rec.outcome, detail=dict(rec.detail),  # type: ignore[union-attr]
        )
    elif kind == "verdict":
        out.update(
            guard=rec.guard, state=rec.state, severity=rec.severity,  # type: ignore[union-attr]
            action=rec.action, reason=rec.reason,  # type: ignore[union-attr]
        )
    elif kind == "action":
        out.update(
            action=rec.action, ok=rec.ok, latency_s=rec.latency_s,  # type: ignore[union-attr]
            detail=dict(rec.detail),  # type: ignore[union-attr]
        )
    else:
        m: Meta = rec  # type: ignore[assignment]
        out.update(
            run=m.run, scenario=m.scenario, seed=m.seed, backend=m.backend, caps=dict(m.caps),
            policy_sha256=m.policy_sha256, versions=dict(m.versions),
        )
        out.update(m.extra)
    return out


def _num(obj: Mapping[str, Any], name: str, where: dict, default: Any = None, *, integer: bool = False) -> Any:
    if name not in obj:
        if default is None:
            raise TraceError(f"missing required field (expected a number)", field=name, **where)
        return default
    v = obj[name]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not math.isfinite(v)):
        raise TraceError(f"expected a number, got {v!r}", field=name, **where)
    if integer:
        return int(v)
    return v


def _str(obj: Mapping[str, Any], name: str, where: dict, allowed: frozenset[str] | None = None,
         default: str | None = None) -> str:
    if name not in obj:
        if default is not None:
            return default
        raise TraceError("missing required field (expected a string)", field=name, **where)
    v = obj[name]
    if not isinstance(v, str) or not v:
        raise TraceError(f"expected a non-empty string, got {v!r}", field=name, **where)
    if allowed is not None and v not in allowed:
        raise TraceError(f"unknown value {v!r} (expected one of {', '.join(sorted(allowed))})",
                         field=name, **where)
    return v


def _obj(obj: Mapping[str, Any], name: str, where: dict) -> dict:
    v = obj.get(name, {})
    if not isinstance(v, dict):
        raise TraceError(f"expected an object, got {v!r}", field=name, **where)
    return v


_META_KEYS = {"type", "t", "run", "scenario", "seed", "backend", "caps", "policy_sha256", "versions"}
_SAMPLE_KEYS = {"type", "t", *SAMPLE_FIELDS}


def record_from_dict(obj: Mapping[str, Any], *, file: str | None = None, line: int | None = None) -> Record:
    """Parse one trace object; a mistake raises TraceError naming file, line and field."""
    where = {"file": file, "line": line}
    if not isinstance(obj, dict):
        raise TraceError(f"expected a JSON object, got {type(obj).__name__}", **where)
    kind = obj.get("type")
    if kind not in ("meta", "sample", "event", "verdict", "action"):
        raise TraceError(
            f"unknown record type {kind!r} (expected meta, sample, event, verdict or action)",
            field="type", **where,
        )
    t = float(_num(obj, "t", where, 0.0 if kind == "meta" else None))
    if t < 0:
        raise TraceError(f"expected seconds since the run started (>= 0), got {t}", field="t", **where)
    if kind == "sample":
        return Sample(
            t=t,
            cpu_ratio=float(_num(obj, "cpu_ratio", where, 0.0)),
            cpu_seconds=float(_num(obj, "cpu_seconds", where, 0.0)),
            mem_bytes=_num(obj, "mem_bytes", where, 0, integer=True),
            mem_limit_bytes=_num(obj, "mem_limit_bytes", where, 0, integer=True),
            pids=_num(obj, "pids", where, 0, integer=True),
            net_rx_bytes=_num(obj, "net_rx_bytes", where, 0, integer=True),
            net_tx_bytes=_num(obj, "net_tx_bytes", where, 0, integer=True),
            extra={k: v for k, v in obj.items() if k not in _SAMPLE_KEYS},
        )
    if kind == "event":
        return Event(
            t=t,
            source=_str(obj, "source", where, SOURCES),
            category=_str(obj, "category", where, CATEGORIES),
            kind=_str(obj, "kind", where),
            outcome=_str(obj, "outcome", where, OUTCOMES, default="unknown"),
            detail=_obj(obj, "detail", where),
        )
    if kind == "verdict":
        return Verdict(
            t=t,
            guard=_str(obj, "guard", where),
            state=_str(obj, "state", where, STATES),
            severity=_str(obj, "severity", where, default="warning"),
            action=_str(obj, "action", where, frozenset(ACTIONS)),
            reason=str(obj.get("reason", "")),
        )
    if kind == "action":
        ok = obj.get("ok")
        if not isinstance(ok, bool):
            raise TraceError(f"expected true or false, got {ok!r}", field="ok", **where)
        return Action(
            t=t,
            action=_str(obj, "action", where),
            ok=ok,
            latency_s=float(_num(obj, "latency_s", where, 0.0)),
            detail=_obj(obj, "detail", where),
        )
    seed = obj.get("seed", 0)
    return Meta(
        t=t,
        run=str(obj.get("run", "")),
        scenario=str(obj.get("scenario", "")),
        seed=seed if isinstance(seed, int) else 0,
        backend=str(obj.get("backend", "")),
        caps=_obj(obj, "caps", where),
        policy_sha256=str(obj.get("policy_sha256", "")),
        versions=_obj(obj, "versions", where),
        extra={k: v for k, v in obj.items() if k not in _META_KEYS},
    )


def parse_trace_lines(lines: Iterable[str], *, file: str | None = None) -> Iterator[Record]:
    """Records from JSON Lines text; blank lines are skipped, time must never decrease."""
    last_t = 0.0
    for n, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise TraceError(f"not a JSON object: {e.msg} at column {e.colno}", file=file, line=n) from None
        rec = record_from_dict(obj, file=file, line=n)
        if rec.t < last_t:
            raise TraceError(
                f"time goes backwards: {rec.t} after {last_t} (t must never decrease)",
                file=file, line=n, field="t",
            )
        last_t = rec.t
        yield rec


def read_trace(path: str) -> Iterator[Record]:
    """Records of a trace file, in order. A bad line raises TraceError(file, line, field).

    >>> # for rec in read_trace("runs/x/trace.jsonl"): ...
    """
    try:
        fh = open(path, encoding="utf-8")
    except OSError as e:
        raise TraceError(f"cannot read trace: {e.strerror}", file=str(path)) from None
    with fh:
        yield from parse_trace_lines(fh, file=str(path))


def observations(records: Iterable[Record]) -> Iterator[Observation]:
    """Only the samples and events of a record stream (what an Engine consumes)."""
    for rec in records:
        if type(rec) is Sample or type(rec) is Event:
            yield rec  # type: ignore[misc]


class TraceWriter:
    """Appends records to a JSON Lines file, one flushed line each, so a crash loses at
    most the line being written. Time must never go backwards (ValueError if it does).

    >>> # with TraceWriter("trace.jsonl") as w: w.write(Meta(run="r1"))
    """

    def __init__(self, path: str | TextIO) -> None:
        if isinstance(path, str) or hasattr(path, "__fspath__"):
            self._fh: TextIO = open(path, "a", encoding="utf-8")
            self._own = True
        else:
            self._fh = path  # type: ignore[assignment]
            self._own = False
        self.last_t = 0.0

    def write(self, rec: Record) -> None:
        if rec.t < self.last_t:
            raise ValueError(f"trace time goes backwards: {rec.t} after {self.last_t}")
        self.last_t = rec.t
        self._fh.write(json.dumps(record_to_dict(rec), ensure_ascii=False, separators=(",", ":")) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._own and not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> "TraceWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
