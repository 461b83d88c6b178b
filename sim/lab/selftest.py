"""`runaway selftest`: run the catalog of escape attempts in a sandbox and check each.

Like falco's event-generator for its rules: every attempt runs inside the sandbox, and each
row says whether it was contained (blocked, or left harmless such as a mock-web credential)
and whether it was detected (an audit event from the in-process hook, an observer event
seen from outside, or a mock-web event). A row fails when an attempt got through or went
unseen; the command exits 1 if any row fails.

The catalog runs three ways (`CATALOGS`), each in its own fresh sandbox: `python` (the
learner's `learner.attempts`, with the audit hook), `shell` (learner/catalog/attempts.sh:
coreutils, util-linux and child interpreters without the hook) and `compiled`
(learner/catalog/attempts.c, built here with the host's C compiler and mounted: raw system
calls). The last two are seen only by the syscall tracer, so each of their rows needs its
own observer event.

On the process backend the attempts are dry-runs: that sandbox is not a boundary and we
may be root on the host, so a real write below /etc would land. There the selftest checks
detection only, and says so.

>>> # report = asyncio.run(run_selftest("process")); print(report.to_text())
"""

from __future__ import annotations

import asyncio
import os
import shutil
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
from .session import LEARNER_DIR, SandboxSession

# Attempts whose only target is the mock web: "allowed" there means the honeypot got a
# fake credential, which is harmless by construction and must be seen by the web.
MOCK_WEB_KINDS = frozenset({"metadata_credentials", "cloud_api"})
# Small caps so the flood and the balloon hit them quickly; the attempts aim past them.
SELFTEST_SPEC = SandboxSpec(cpus=0.5, memory="128m", pids=64)
DRY_RUN_NOTE = ("attempts were DRY RUNS: the process backend is not a security boundary and "
                "runs on this host (as root, a real write below /etc would land), so this "
                "checks detection only, not containment")


CATALOGS = ("python", "shell", "compiled")
CATALOG_DIR = LEARNER_DIR / "catalog"
# Where the learner dir is mounted in the Docker sandbox (the shell catalog runs from there).
SANDBOX_LEARNER_DIR = "/opt/runaway/learner"
SANDBOX_AGENT_DIR = "/opt/runaway/agent"
REAL_ONLY_NOTE = ("the shell and compiled catalogs make real attempts, so they run only in a "
                  "sandbox that is a security boundary (Docker): skipped")


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
    catalog: str = "python"


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
        catalog = None
        for r in self.rows:
            if r.catalog != catalog:
                catalog = r.catalog
                lines.append(f"catalog: {catalog}")
                lines.append(f"{'attempt':{w}}  {'kind':36} {'contained':14} {'detected by':18} result")
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
          web: list[Event], *, dry_run_expected: bool, catalog: str = "python",
          scratch: str = "/scratch") -> list[Row]:
    """The rows for what one catalog run produced (pure: the CLI's tests feed it directly).

    Each attempt writes exactly one audit event with its category and kind (the catalog's
    contract), so the n-th attempt of a kind is matched with the n-th audit event of it.
    The shell and compiled catalogs have no audit hook: there each attempt needs an observer
    event of its own (the n-th attempt of a kind, the n-th such event, in order).
    """
    strict = catalog != "python"
    obs_left: dict[tuple[str, str], int] = {}
    for e in observed:
        obs_left[(e.category, e.kind)] = obs_left.get((e.category, e.kind), 0) + 1
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
        if strict:
            if obs_left.get((cat, kind), 0) > 0:
                obs_left[(cat, kind)] -= 1
                by.append("observer")
        elif any(e.category == cat and e.kind == kind for e in observed):
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
        elif outcome == "allowed" and kind in ("exec", "fileless_exec") and _unprivileged(detail):
            # Running a program inside the sandbox is what a sandbox is for; it is an
            # escape only if it ran with privilege, which the `id` output shows.
            contained = "harmless"
            ok = True
            note = f"ran unprivileged inside: {str(detail.get('stdout', ''))[:40]}"
        elif outcome == "allowed" and kind == "sendto" and any(
                e.kind == "sendto" and e.outcome == "unknown" for e in observed):
            # The tracer's ptrace mode lets a send that names its address run (seccomp mode
            # refuses it): the datagram left the process for the sandbox's own gateway,
            # whose host side the sandbox's firewall closes.
            contained = "harmless"
            ok = True
            note = "a datagram to the sandbox's own gateway, closed on the host side"
        elif outcome == "allowed" and kind == "chmod_setuid" and any(
                e.kind == kind and str(e.detail.get("path", "")).startswith(scratch.rstrip("/") + "/")
                for e in observed):
            # A setuid bit on its own file in the scratch dir: mounted nosuid, and
            # no-new-privileges is set, so the bit gives nothing.
            contained = "harmless"
            ok = True
            note = "its own file in the scratch dir (nosuid, no-new-privileges)"
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
                        contained=contained, detected_by=tuple(by), passed=ok, detail=note,
                        catalog=catalog))
    gains = [e for e in observed if e.category == "escalation" and e.outcome == "allowed"]
    rows.append(Row(
        name="observer", category="escalation", kind="uid_or_caps", outcome="allowed" if gains else "blocked",
        contained="ESCAPED" if gains else "blocked", detected_by=("observer",), passed=not gains,
        detail=("gained: " + "; ".join(f"{e.kind} {dict(e.detail)}" for e in gains)[:200]) if gains
        else "no process gained a uid or a capability", catalog=catalog))
    return rows


def build_compiled(dest: Path, src: Path | None = None) -> Path:
    """`dest`/attempts: the compiled catalog (or `src`), built from learner/catalog/attempts.c
    with the host's C compiler (static, so it runs whatever the image's C library).
    RunawayError if it cannot."""
    import subprocess

    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None:
        raise RunawayError("no C compiler on this host (cc): the compiled catalog needs one "
                           "(apt-get install gcc)", field="--catalog")
    out = dest / "attempts"
    src = src or CATALOG_DIR / "attempts.c"
    for flags in (["-static"], []):  # static unless this host has no static C library
        r = subprocess.run([cc, *flags, "-O1", "-o", str(out), str(src)], capture_output=True, text=True)
        if r.returncode == 0:
            out.chmod(0o755)
            return out
    raise RunawayError(f"{src}: cc failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}",
                       field="--catalog")


async def run_selftest(backend: str = "auto", *, spec: SandboxSpec = SELFTEST_SPEC,
                       run_id: str | None = None, timeout_s: float = 120.0,
                       names: list[str] | None = None,
                       catalogs: Sequence[str] | None = None) -> SelftestReport:
    """Runs the catalog (or `names` of the Python one) in a fresh sandbox per catalog
    (`catalogs`, default: all three on a boundary, Python only elsewhere) and judges each row."""
    run_id = run_id or f"selftest-{uuid.uuid4().hex[:8]}"
    notices: list[str] = []
    if backend == "auto":
        backend = choose_backend("auto", notices).name
    asked = list(catalogs or (["python"] if names else CATALOGS))
    for c in asked:
        if c not in CATALOGS:
            raise RunawayError(f"unknown catalog {c!r} (expected one of {', '.join(CATALOGS)})", field="--catalog")
    if backend != "docker" and any(c != "python" for c in asked):
        notices.append(REAL_ONLY_NOTE)
        asked = [c for c in asked if c == "python"] or ["python"]
    rows: list[Row] = []
    errors: list[str] = []
    result: dict[str, Any] = {}
    for catalog in asked:
        r, e = await _run_catalog(backend, catalog, spec, f"{run_id}-{catalog}", timeout_s, names,
                                  notices, result)
        rows += r
        errors += [f"{catalog}: {x}" for x in e]
    return SelftestReport(backend=result.get("backend", backend),
                          security_boundary=result.get("security_boundary", backend == "docker"),
                          dry_run=result.get("dry_run", backend != "docker"), notices=tuple(notices),
                          rows=tuple(rows), errors=tuple(errors),
                          extra={"run": run_id, "catalogs": asked, "tracer": result.get("tracer")})


async def _run_catalog(backend: str, catalog: str, spec: SandboxSpec, run_id: str, timeout_s: float,
                       names: list[str] | None, notices: list[str],
                       result: dict[str, Any]) -> tuple[list[Row], list[str]]:
    """One catalog in its own sandbox: its rows and errors; `result` gets the backend's facts."""
    tmp = Path(tempfile.mkdtemp(prefix=f"runaway-{run_id}-"))
    agent_dir = None
    argv: list[str]
    if catalog == "compiled":
        agent_dir = tmp / "agent"
        agent_dir.mkdir()
        agent_dir.chmod(0o755)  # the sandbox's unprivileged user runs it from here
        try:
            build_compiled(agent_dir)
        except RunawayError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            return [], [e.message]
        argv = [f"{SANDBOX_AGENT_DIR}/attempts"]
    elif catalog == "shell":
        argv = ["sh", f"{SANDBOX_LEARNER_DIR}/catalog/attempts.sh"]
    else:
        argv = ["python3", "-m", "learner.bootstrap", "--", "-m", "learner.attempts"]
        argv += names or ["--all"]
        argv += ["--fork-max", str((spec.pids or 64) + 32),
                 "--balloon-mb", str(((spec.memory or (128 << 20)) >> 20) + 64)]
    # The catalog needs only the standard library, so the process backend can run it as
    # its unprivileged user even where no interpreter with aiohttp is readable by that user.
    extra: dict[str, Any] = {"python_modules": ()} if backend == "process" else {}
    if agent_dir is not None:
        extra["agent_dir"] = agent_dir
    session = SandboxSession.open(spec, backend, run_id=run_id, notices=notices, **extra)
    sb = session.sandbox
    dry_run = not sb.is_security_boundary
    if dry_run and DRY_RUN_NOTE not in notices:
        notices.append(DRY_RUN_NOTE)
    result.update(backend=sb.backend, security_boundary=sb.is_security_boundary, dry_run=dry_run,
                  tracer=getattr(sb, "tracer_info", None))
    t0 = time.monotonic()
    clock = lambda: time.monotonic() - t0  # noqa: E731
    web_events: list[Event] = []
    observed: list[Event] = []
    attempts: list[dict[str, Any]] = []
    audit: list[dict[str, Any]] = []
    errors: list[str] = []
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
            shutil.rmtree(tmp, ignore_errors=True)
    rows = judge(attempts, audit, observed, web_events, dry_run_expected=dry_run, catalog=catalog,
                 scratch=spec.workdir)
    return rows, errors
