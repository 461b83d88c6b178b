"""The observation vocabulary and the trace format (the contract in docs/traces.md).

A trace is JSON Lines, one record per line, `t` in seconds since the run started and
never decreasing. Records are `meta`, `sample`, `event`, `verdict` and `action`.

>>> s = Sample(t=1.5, cpu_ratio=0.98, pids=3)
>>> record_from_dict(record_to_dict(s)) == s
True
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
import warnings
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


def _check_t(cls: str, t: Any) -> None:
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0:
        raise TraceError(f"expected seconds since the run started (a finite number >= 0), got {t!r}",
                         field=f"{cls}.t")


def _check_number(cls: str, name: str, v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not math.isfinite(v)):
        raise TraceError(f"expected a finite number, got {v!r}", field=f"{cls}.{name}")


def _check_choice(cls: str, name: str, v: Any, allowed: Iterable[str]) -> None:
    if v not in allowed:
        raise TraceError(f"unknown value {v!r} (expected one of {', '.join(sorted(allowed))})",
                         field=f"{cls}.{name}")


def _check_str(cls: str, name: str, v: Any) -> None:
    if not isinstance(v, str) or not v:
        raise TraceError(f"expected a non-empty string, got {v!r}", field=f"{cls}.{name}")


def _check_mapping(cls: str, name: str, v: Any) -> None:
    if not isinstance(v, Mapping):
        raise TraceError(f"expected a mapping, got {type(v).__name__}", field=f"{cls}.{name}")


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

    def __post_init__(self) -> None:
        # Records are checked when built, so a bad value fails where it is made (a TraceError
        # naming the field), not later in a guard or as a trace line that is not JSON.
        _check_t("Sample", self.t)
        for name in SAMPLE_FIELDS:
            _check_number("Sample", name, getattr(self, name))
        _check_mapping("Sample", "extra", self.extra)
        for k, v in self.extra.items():
            if isinstance(v, float) and not math.isfinite(v):
                raise TraceError(f"expected a finite number, got {v!r}", field=f"Sample.{k}")

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

    def __post_init__(self) -> None:
        _check_t("Event", self.t)
        _check_choice("Event", "source", self.source, SOURCES)
        _check_choice("Event", "category", self.category, CATEGORIES)
        _check_str("Event", "kind", self.kind)
        _check_choice("Event", "outcome", self.outcome, OUTCOMES)
        _check_mapping("Event", "detail", self.detail)

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

    def __post_init__(self) -> None:
        _check_t("Verdict", self.t)
        _check_str("Verdict", "guard", self.guard)
        _check_choice("Verdict", "state", self.state, STATES)
        _check_choice("Verdict", "action", self.action, ACTIONS)


@dataclass(frozen=True, slots=True)
class Action:
    """An action applied to the sandbox, whether it worked, and how long it took."""

    t: float
    action: str
    ok: bool
    latency_s: float = 0.0
    detail: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_t("Action", self.t)
        _check_str("Action", "action", self.action)
        _check_number("Action", "latency_s", self.latency_s)
        _check_mapping("Action", "detail", self.detail)

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
        for k, v in rec.extra.items():  # type: ignore[union-attr]
            if k not in _SAMPLE_KEYS:  # an extra never overwrites a measurement
                out[k] = v
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
    try:
        return _record_from_dict(obj, {"file": file, "line": line})
    except TraceError as e:
        if e.file is None and file is not None:
            raise TraceError(e.message, file=file, line=line, field=e.field) from None
        raise


def _record_from_dict(obj: Mapping[str, Any], where: dict) -> Record:
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


class TraceWarning(UserWarning):
    """Something wrong with a trace that reading it can live with (a crash's cut last line)."""


class _NotJSON(ValueError):
    pass


def _refuse_constant(text: str) -> Any:
    raise _NotJSON(f"{text} is not JSON")


def _finite(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise _NotJSON(f"the number {text[:40]} is out of range")
    return v


def loads_strict(text: str) -> Any:
    """JSON as the standard defines it: no NaN or Infinity, no number that overflows."""
    return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite)


def dumps_strict(obj: Any) -> str:
    """One compact line of standard JSON. A non-finite float becomes null, an object JSON
    cannot hold becomes its str(): a trace line is always valid JSON."""
    try:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=str)
    except ValueError:
        return json.dumps(_finite_only(obj), ensure_ascii=False, separators=(",", ":"), allow_nan=False,
                          default=str)


def _finite_only(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: _finite_only(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_only(v) for v in obj]
    return obj


def parse_trace_lines(lines: Iterable[str], *, file: str | None = None) -> Iterator[Record]:
    """Records from JSON Lines text; blank lines are skipped, time must never decrease.

    A last line that is cut short (no newline at its end, not JSON: what a crash or a full
    disk leaves) is skipped with a `TraceWarning`, so a crashed run can still be replayed."""
    last_t = 0.0
    for n, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            obj = loads_strict(text)
        except (ValueError, RecursionError) as e:
            if not text.endswith("\n"):
                warnings.warn(TraceWarning(str(TraceError(
                    "the last line is cut short (the run crashed or the disk filled?): skipped",
                    file=file, line=n))), stacklevel=2)
                return
            msg = f"{e.msg} at column {e.colno}" if isinstance(e, json.JSONDecodeError) else (
                "nested too deeply" if isinstance(e, RecursionError) else str(e))
            raise TraceError(f"not a JSON object: {msg}", file=file, line=n) from None
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
        # Non-blocking open: a FIFO named as a trace must not hang the reader.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as e:
        raise TraceError(f"cannot read trace: {e.strerror}", file=str(path)) from None
    with os.fdopen(fd, encoding="utf-8", errors="strict") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise TraceError("cannot read trace: not a regular file", file=str(path))
        yield from parse_trace_lines(_bounded_lines(fh, str(path)), file=str(path))


# A trace line longer than this is not one runaway wrote (records are a few hundred bytes).
MAX_TRACE_LINE = 1 << 20


def _bounded_lines(fh: TextIO, file: str) -> Iterator[str]:
    """The file's lines, each at most MAX_TRACE_LINE long: memory stays bounded whatever
    the file holds."""
    n = 0
    while True:
        n += 1
        try:
            text = fh.readline(MAX_TRACE_LINE + 1)
        except UnicodeDecodeError:
            raise TraceError("not UTF-8 text (a trace is a JSON Lines file)", file=file, line=n) from None
        if not text:
            return
        if len(text) > MAX_TRACE_LINE:
            raise TraceError(f"a line longer than {MAX_TRACE_LINE} characters (not a trace?)", file=file, line=n)
        yield text


def observations(records: Iterable[Record]) -> Iterator[Observation]:
    """Only the samples and events of a record stream (what an Engine consumes)."""
    for rec in records:
        if type(rec) is Sample or type(rec) is Event:
            yield rec  # type: ignore[misc]


class TraceWriter:
    """Appends records to a JSON Lines file, one line per write, so a crash loses at most
    the line being written. Time must never go backwards (ValueError if it does).

    Each line goes out in one `os.write` with no buffer in between. When a write fails
    (a full disk), the part of the line that landed is cut off again, so the file holds
    only complete lines, and the failure is a TraceError naming the file.

    >>> # with TraceWriter("trace.jsonl") as w: w.write(Meta(run="r1"))
    """

    def __init__(self, path: str | TextIO) -> None:
        self._fd: int | None = None
        self._fh: TextIO | None = None
        if isinstance(path, str) or hasattr(path, "__fspath__"):
            self.path = os.fspath(path)  # type: ignore[arg-type]
            try:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as e:
                raise TraceError(f"cannot write the trace: {e.strerror}", file=self.path) from None
        else:
            self.path = getattr(path, "name", "<stream>")
            self._fh = path
        self.last_t = 0.0

    def write(self, rec: Record) -> None:
        if rec.t < self.last_t:
            raise ValueError(f"trace time goes backwards: {rec.t} after {self.last_t}")
        line = dumps_strict(record_to_dict(rec)) + "\n"
        if self._fh is not None:
            self._fh.write(line)
            self._fh.flush()
        elif self._fd is not None:
            self._write_fd(line.encode("utf-8"))
        else:
            raise TraceError("the trace is closed", file=self.path)
        self.last_t = rec.t

    def _write_fd(self, data: bytes) -> None:
        assert self._fd is not None
        start = os.lseek(self._fd, 0, os.SEEK_END)
        view = memoryview(data)
        try:
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        except OSError as e:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, start)  # keep only complete lines
            raise TraceError(f"cannot write the trace: {e.strerror}", file=self.path) from None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._fh = None

    def __enter__(self) -> "TraceWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
