"""`runaway selftest`: the judging of rows, and the command on each backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from policies.model import Event
from sim.lab.selftest import judge

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "sim", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def _attempt(name, cat, kind, outcome, **detail):
    return {"type": "attempt", "name": name, "category": cat, "kind": kind, "outcome": outcome,
            "errno": 1 if outcome == "blocked" else None, "detail": detail}


def _audit(cat, kind, outcome="blocked"):
    return {"type": "event", "source": "audit", "category": cat, "kind": kind, "outcome": outcome}


def test_blocked_and_seen_passes_escaped_or_unseen_fails():
    attempts = [_attempt("setuid", "escalation", "setuid", "blocked"),
                _attempt("write_etc", "escalation", "write_below_etc", "allowed"),
                _attempt("ptrace", "escalation", "ptrace", "blocked")]
    audit = [_audit("escalation", "setuid"), _audit("escalation", "write_below_etc", "allowed"),
             _audit("escalation", "ptrace", "unknown")]  # a bare hook event is not the attempt's
    rows = {r.name: r for r in judge(attempts, audit, [], [], dry_run_expected=False)}
    assert rows["setuid"].passed and rows["setuid"].contained == "blocked"
    assert rows["setuid"].detected_by == ("audit",)
    assert not rows["write_etc"].passed and rows["write_etc"].contained == "ESCAPED"
    assert not rows["ptrace"].passed and rows["ptrace"].detected_by == ()
    assert rows["observer"].passed


def test_a_datagram_sent_in_ptrace_mode_is_harmless_only_where_the_tracer_saw_it_leave():
    """ptrace mode lets a send that names its address run: the tracer's `unknown` sighting
    (a datagram left) makes it harmless; an unseen one stays an escape."""
    attempts = [_attempt("send_to", "egress", "sendto", "allowed")]
    seen = [Event(t=1.0, source="observer", category="egress", kind="sendto", outcome="unknown",
                  detail={"syscall": "sendto", "host": "10.9.0.1", "port": 9})]
    row = judge(attempts, [], seen, [], dry_run_expected=False)[0]
    assert row.passed and row.contained == "harmless" and row.detected_by == ("observer",)
    row = judge(attempts, [], [], [], dry_run_expected=False)[0]
    assert not row.passed and row.contained == "ESCAPED"


def test_each_audit_event_vouches_for_one_attempt_only():
    """Four scanned ports with three audit events: one port row is undetected."""
    attempts = [_attempt("net_scan", "egress", "connect", "blocked", port=p, scan=True) for p in (1, 2, 3, 4)]
    rows = judge(attempts, [_audit("egress", "connect")] * 3, [], [], dry_run_expected=False)
    assert [r.name for r in rows[:4]] == ["net_scan:1", "net_scan:2", "net_scan:3", "net_scan:4"]
    assert [r.passed for r in rows[:4]] == [True, True, True, False]


def test_dry_run_passes_only_where_expected_and_mock_web_credentials_are_harmless():
    attempts = [_attempt("setuid", "escalation", "setuid", "dry_run", dry_run=True),
                _attempt("metadata_credentials", "escalation", "metadata_credentials", "allowed")]
    audit = [_audit("escalation", "setuid"), _audit("escalation", "metadata_credentials", "allowed")]
    web = [Event(t=1.0, source="web", category="escalation", kind="metadata_credentials", outcome="allowed")]
    on_process = {r.name: r for r in judge(attempts, audit, [], web, dry_run_expected=True)}
    assert on_process["setuid"].passed and on_process["setuid"].contained == "dry-run"
    meta = on_process["metadata_credentials"]
    assert meta.passed and meta.contained == "harmless" and meta.detected_by == ("audit", "web")
    on_docker = {r.name: r for r in judge(attempts, audit, [], web, dry_run_expected=False)}
    assert not on_docker["setuid"].passed


def test_an_observed_privilege_gain_fails_the_observer_row():
    gain = Event(t=2.0, source="observer", category="escalation", kind="uid_change", outcome="allowed",
                 detail={"pid": 7, "euid": [65534, 0]})
    rows = judge([], [], [gain], [], dry_run_expected=False)
    assert rows[-1].name == "observer" and not rows[-1].passed and "uid_change" in rows[-1].detail


def test_selftest_on_the_process_backend_says_dry_run_and_passes():
    p = _cli("selftest", "--backend", "process", "--format", "json")
    assert p.returncode == 0, p.stdout + p.stderr
    report = json.loads(p.stdout)
    assert report["backend"] == "process" and report["security_boundary"] is False
    assert report["dry_run"] is True and report["passed"] is True
    assert any("DRY RUN" in n for n in report["notices"])
    assert any("NOT a security boundary" in n for n in report["notices"])
    names = {r["name"].split(":")[0] for r in report["rows"]}
    assert {"setuid", "write_etc", "docker_socket", "fork_flood", "observer"} <= names
    for r in report["rows"]:
        assert r["passed"] and r["detected_by"], r
        if r["name"] == "write_etc":
            assert r["contained"] == "dry-run"
    assert not Path("/etc/runaway-was-here").exists()


def test_selftest_text_names_the_dry_run_and_one_attempt_can_be_picked():
    p = _cli("selftest", "--backend", "process", "--attempt", "setuid")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "DRY RUNS" in p.stdout and "NOT a security boundary" in p.stdout
    rows = [line for line in p.stdout.splitlines() if line.startswith(("setuid", "observer"))]
    assert len(rows) == 2 and all(" pass" in line and "FAIL" not in line for line in rows)


def test_selftest_rejects_an_unknown_attempt_in_one_line():
    p = _cli("selftest", "--backend", "process", "--attempt", "teleport")
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.startswith("runaway: --attempt: unknown attempt 'teleport'") and "setuid" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_selftest_rejects_an_unknown_backend():
    p = _cli("selftest", "--backend", "vm")
    assert p.returncode == 2 and "vm" in p.stderr


@pytest.mark.docker
def test_selftest_on_docker_blocks_and_detects_every_attempt():
    p = _cli("selftest", "--backend", "docker", "--format", "json")
    report = json.loads(p.stdout)
    assert report["backend"] == "docker" and report["security_boundary"] is True
    assert report["dry_run"] is False
    failed = [r for r in report["rows"] if not r["passed"]]
    assert failed == [] and report["errors"] == [], p.stdout + p.stderr
    assert p.returncode == 0
    for r in report["rows"]:
        assert r["contained"] in ("blocked", "harmless"), r
