"""`runaway selftest`: run the learner's catalog of escape attempts in a sandbox and check each.

Like falco's event-generator for its rules: every attempt in `learner.attempts` runs inside
the sandbox, and each row says whether it was contained (blocked, or left harmless such as
a mock-web credential) and whether it was detected (an audit event from the in-process
hook, an observer event seen from outside, or a mock-web event). A row fails when an
attempt got through or went unseen; the command exits 1 if any row fails.

On the process backend the attempts are dry-runs: that sandbox is not a boundary and we
may be root on the host, so a real write below /etc would land. There the selftest checks
detection only, and says so.

>>> # report = asyncio.run(run_selftest("process")); print(report.to_text())
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from policies.errors import RunawayError
from policies.model import Event
from sandbox import SandboxSpec
from sandbox.registry import choose_backend

from . import protocol
from .session import SandboxSession

# Attempts whose only target is the mock web: "allowed" there means the honeypot got a
# fake credential, which is harmless by construction and must be seen by the web.
MOCK_WEB_KINDS = frozenset({"metadata_credentials", "cloud_api"})
# Small caps so the flood and the balloon hit them quickly; the attempts aim past them.
SELFTEST_SPEC = SandboxSpec(cpus=0.5, memory="128m", pids=64)
DRY_RUN_NOTE = ("attempts were DRY RUNS: the process backend is not a security boundary and "
                "runs on this host (as root, a real write below /etc would land), so this "
                "checks detection only, not containment")


@dataclass(frozen=True, slots=True)
class Row:
    """One attempt's verdict: what the learner saw, how it was contained, who detected it."""

    name: str
    category: str
    kind: str
    outcome: str  # the attempt's own result: blocked | allowed | dry_run
    contained: str  # blocked | harmless | dry-run | ESCAPED | not attempted
    detected_by: tuple[str, ...]
    passed: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class SelftestReport:
    """Every row of one selftest run, and what the user must know about the backend."""

    backend: str
    security_boundary: bool
    dry_run: bool
    notices: tuple[str, ...]
    rows: tuple[Row, ...]
    errors: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.rows) and all(r.passed for r in self.rows) and not self.errors

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "security_boundary": self.security_boundary,
            "dry_run": self.dry_run,
            "notices": list(self.notices),
            "passed": self.passed,
            "rows": [dict(asdict(r), detected_by=list(r.detected_by)) for r in self.rows],
            "errors": list(self.errors),
            **self.extra,
        }

    def to_text(self) -> str:
        lines = [f"runaway selftest: backend {self.backend}"
                 f"{'' if self.security_boundary else ' (NOT a security boundary)'}"]
        lines += [f"note: {n}" for n in self.notices]
        w = max([len(r.name) for r in self.rows] + [7])
        lines.append(f"{'attempt':{w}}  {'kind':36} {'contained':14} {'detected by':18} result")
        for r in self.rows:
            kind = f"{r.category}/{r.kind}"
            by = ",".join(r.detected_by) or "NOT DETECTED"
            lines.append(f"{r.name:{w}}  {kind:36} {r.contained:14} {by:18} "
                         f"{'pass' if r.passed else 'FAIL'}{'  ' + r.detail if r.detail else ''}")
        lines += [f"error: {e}" for e in self.errors]
        n_fail = sum(not r.passed for r in self.rows)
        verdict = "passed" if self.passed else f"FAILED ({n_fail} of {len(self.rows)} rows)"
        lines.append(f"{len(self.rows)} rows: {verdict}")
        return "\n".join(lines)


def check_attempt_names(names: Sequence[str]) -> None:
    """Refuse attempt names the catalog does not have (RunawayError: one line, exit 2)."""
    from sim.learner.attempts import CATALOG  # the catalog's names; it runs in the sandbox

    for name in names:
        if name not in CATALOG:
            raise RunawayError(f"unknown attempt {name!r} (expected one of {', '.join(CATALOG)})",
                               field="--attempt")


def _unprivileged(detail: dict[str, Any]) -> bool:
    """Whether an exec attempt's `id` output shows a non-root user and group."""
    out = str(detail.get("stdout", ""))
    return out.startswith("uid=") and "uid=0(" not in out and "gid=0(" not in out \
        and "euid=0(" not in out


def judge(attempts: list[dict[str, Any]], audit: list[dict[str, Any]], observed: list[Event],
          web: list[Event], *, dry_run_expected: bool) -> list[Row]:
    """The rows for what one catalog run produced (pure: the CLI's tests feed it directly).

    Each attempt writes exactly one audit event with its category and kind (the catalog's
    contract), so the n-th attempt of a kind is matched with the n-th audit event of it.
    """
    audit_left: dict[tuple[str, str], int] = {}
    for ev in audit:
        if ev.get("outcome") in ("blocked", "allowed"):  # attempt scopes; not bare hook events
            key = (str(ev.get("category")), str(ev.get("kind")))
            audit_left[key] = audit_left.get(key, 0) + 1
    rows = []
    for a in attempts:
        cat, kind, outcome = str(a.get("category")), str(a.get("kind")), str(a.get("outcome"))
        detail = a.get("detail") if isinstance(a.get("detail"), dict) else {}
        by: list[str] = []
        if audit_left.get((cat, kind), 0) > 0:
            audit_left[(cat, kind)] -= 1
            by.append("audit")
        if any(e.category == cat and e.kind == kind for e in observed):
            by.append("observer")
        if kind in MOCK_WEB_KINDS and any(e.kind == kind or e.category == "escalation" for e in web):
            by.append("web")
        note = ""
        if outcome == "dry_run":
            contained = "dry-run"
            ok = dry_run_expected
            if not ok:
                note = "expected a real attempt on this backend"
        elif outcome == "blocked":
            contained = "blocked"
            ok = True
            err = a.get("errno")
            note = f"errno {err}" if err else str(detail.get("error", ""))[:60]
        elif outcome == "allowed" and kind in MOCK_WEB_KINDS:
            contained = "harmless"
            ok = True
            note = "mock web only (fake credentials)"
        elif outcome == "allowed" and kind == "exec" and _unprivileged(detail):
            # Running a program inside the sandbox is what a sandbox is for; it is an
            # escape only if it ran with privilege, which the `id` output shows.
            contained = "harmless"
            ok = True
            note = f"ran unprivileged inside: {str(detail.get('stdout', ''))[:40]}"
        else:
            contained = "ESCAPED"
            ok = False
            note = "the attempt succeeded inside the sandbox"
        ok = ok and bool(by)
        name = str(a.get("name"))
        if detail.get("scan") and "port" in detail:  # one row per scanned address and port
            host = detail.get("host")
            name += f" {host}:{detail['port']}" if host else f":{detail['port']}"
        rows.append(Row(name=name, category=cat, kind=kind, outcome=outcome,
                        contained=contained, detected_by=tuple(by), passed=ok, detail=note))
    gains = [e for e in observed if e.category == "escalation" and e.outcome == "allowed"]
    rows.append(Row(
        name="observer", category="escalation", kind="uid_or_caps", outcome="allowed" if gains else "blocked",
        contained="ESCAPED" if gains else "blocked", detected_by=("observer",), passed=not gains,
        detail=("gained: " + "; ".join(f"{e.kind} {dict(e.detail)}" for e in gains)[:200]) if gains
        else "no process gained a uid or a capability"))
    return rows


async def run_selftest(backend: str = "auto", *, spec: SandboxSpec = SELFTEST_SPEC,
                       run_id: str | None = None, timeout_s: float = 120.0,
                       names: list[str] | None = None) -> SelftestReport:
    """Runs the attempt catalog (or `names` of it) in a fresh sandbox and judges each row."""
    run_id = run_id or f"selftest-{uuid.uuid4().hex[:8]}"
    notices: list[str] = []
    if backend == "auto":
        backend = choose_backend("auto", notices).name
    # The catalog needs only the standard library, so the process backend can run it as
    # its unprivileged user even where no interpreter with aiohttp is readable by that user.
    extra = {"python_modules": ()} if backend == "process" else {}
    session = SandboxSession.open(spec, backend, run_id=run_id, notices=notices, **extra)
    sb = session.sandbox
    dry_run = not sb.is_security_boundary
    if dry_run:
        notices.append(DRY_RUN_NOTE)
    t0 = time.monotonic()
    clock = lambda: time.monotonic() - t0  # noqa: E731
    web_events: list[Event] = []
    observed: list[Event] = []
    attempts: list[dict[str, Any]] = []
    audit: list[dict[str, Any]] = []
    errors: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix=f"runaway-{run_id}-"))
    try:
        await session.prepare()
        env = {"RUNAWAY_ATTEMPTS": "real", "RUNAWAY_SEED": "0"}
        try:
            from sim.web import MockWeb  # type: ignore[attr-defined]
        except ImportError:
            MockWeb = None
            notices.append("the mock web is not available: the two metadata attempts have no target")
        if MockWeb is not None:
            await session.serve(MockWeb(0, 100, on_event=web_events.append, clock=clock, rate_limit=None))
            env.update(session.web_env())
        control = tmp / "control"
        control.touch()
        argv = ["python3", "-m", "learner.bootstrap", "--", "-m", "learner.attempts"]
        argv += names or ["--all"]
        argv += ["--fork-max", str((spec.pids or 64) + 32),
                 "--balloon-mb", str(((spec.memory or (128 << 20)) >> 20) + 64)]
        await session.start(argv, env, control, clock)

        async def read_output() -> None:
            async for _, line in sb.output():
                obj = protocol.decode(line)
                if obj is None:
                    continue
                if obj.get("type") == "attempt":
                    attempts.append(obj)
                elif obj.get("type") == "event" and obj.get("source") == "audit":
                    audit.append(obj)

        async def read_observations() -> None:
            async for ob in sb.observations():
                if isinstance(ob, Event) and ob.category != "lifecycle":
                    observed.append(ob)

        try:
            await asyncio.wait_for(asyncio.gather(read_output(), read_observations()), timeout_s)
        except asyncio.TimeoutError:
            errors.append(f"the catalog did not finish within {timeout_s:g}s")
        if not attempts:
            errors.append("the catalog reported no attempts (see the learner's output)")
    finally:
        try:
            await session.close()
        finally:
            for p in tmp.iterdir():
                p.unlink()
            tmp.rmdir()
    rows = judge(attempts, audit, observed, web_events, dry_run_expected=dry_run)
    return SelftestReport(backend=sb.backend, security_boundary=sb.is_security_boundary,
                          dry_run=dry_run, notices=tuple(notices), rows=tuple(rows),
                          errors=tuple(errors), extra={"run": run_id})
