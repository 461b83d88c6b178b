"""A configured sandbox that does not answer is a clear error, never a quiet step down."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from fake_dockerd import OPENING, FakeDockerd  # tests/ is on sys.path
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


def _clean_says_docker_does_not_answer(r: subprocess.CompletedProcess[str], within: str) -> None:
    assert r.returncode == 0, r.stderr  # what could be cleaned was (docs/sandbox.md, "clean")
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("runaway: Docker does not answer"), r.stderr
    assert within in lines[0] and "run `runaway clean` again" in lines[0]
    assert "Traceback" not in r.stderr and "nothing to clean" not in r.stdout


def test_clean_says_docker_does_not_answer_when_it_never_does():
    with FakeDockerd() as d:  # accepts, never answers
        r = _runaway("clean", "--run", f"t-{uuid.uuid4().hex[:8]}", DOCKER_HOST=d.url)
    _clean_says_docker_does_not_answer(r, "timed out after 3 s")


@pytest.mark.slow
def test_clean_says_docker_does_not_answer_when_it_stops_half_way():
    """The daemon answers the client's version and ping, then nothing: clean waits out
    its 60 s timeout on the container list and says so, not a traceback."""
    with FakeDockerd(answer=OPENING) as d:
        r = _runaway("clean", "--run", f"t-{uuid.uuid4().hex[:8]}", DOCKER_HOST=d.url)
        assert any(p.endswith("/containers/json") for p in d.requests), d.requests
    _clean_says_docker_does_not_answer(r, "timed out after 60 s")


def test_image_show_without_a_daemon_is_one_line_and_exit_2():
    r = _runaway("image", "show", DOCKER_HOST="unix:///nonexistent/docker.sock")
    assert r.returncode == 2, r.stderr
    assert r.stderr == "runaway: image: Docker does not answer (no such socket)\n"
