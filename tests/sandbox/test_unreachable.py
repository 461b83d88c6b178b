"""A configured sandbox that does not answer is a clear error, never a quiet step down."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sandbox import SandboxError
from sandbox.registry import Backend, choose_backend, register_backend, unregister_backend


def _runaway(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sim", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


def _backend(name: str, *, configured: str | None) -> Backend:
    return Backend(name=name, factory=lambda *a, **k: None, unavailable=lambda: "it does not answer",
                   clean=lambda *a, **k: {}, is_security_boundary=True, preference=1000,
                   configured=lambda: configured)


def test_auto_passes_over_a_backend_that_is_not_set_up_here():
    register_backend(_backend("absent", configured=None))
    try:
        notices: list[str] = []
        chosen = choose_backend("auto", notices)
        assert chosen.name != "absent"
        assert any("absent" in n for n in notices)
    finally:
        unregister_backend("absent")


def test_auto_refuses_a_backend_that_is_configured_but_does_not_answer():
    register_backend(_backend("broken", configured="BROKEN_HOST=x"))
    try:
        with pytest.raises(SandboxError, match=r"broken backend is configured \(BROKEN_HOST=x\)"):
            choose_backend("auto", [])
    finally:
        unregister_backend("broken")


def test_a_wrong_docker_host_stops_the_run_before_anything_is_made(tmp_path):
    out = tmp_path / "run"
    r = _runaway("run", "benign", "--duration", "5", "--out", str(out),
                 DOCKER_HOST="unix:///nonexistent/docker.sock")
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "configured (DOCKER_HOST=unix:///nonexistent" in r.stderr
    assert "Traceback" not in r.stderr and not out.exists()


def test_clean_says_when_docker_does_not_answer():
    r = _runaway("clean", DOCKER_HOST="unix:///nonexistent/docker.sock")
    assert r.returncode == 0, r.stderr
    assert "Docker does not answer" in r.stderr and "Traceback" not in r.stderr
