"""`runaway web`: bad values exit 2 with one line; it serves until Ctrl-C and exits cleanly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sim", "web", *args], capture_output=True, text=True,
                          env=ENV, timeout=60)


@pytest.mark.parametrize("args, field", [
    (["--seed", "x"], "--seed"), (["--seed", "-4"], "--seed"), (["--pages", "3"], "--pages"),
    (["--pages", "ten"], "--pages"), (["--port", "70000"], "--port"), (["--port", "-1"], "--port"),
    (["--rate-limit", "fast"], "--rate-limit"),
])
def test_bad_values_get_one_line_and_exit_2(args, field):
    p = _run(*args)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"runaway: {field}: "), p.stderr
    assert "Traceback" not in p.stderr


def _serve_then_ctrl_c(*args: str, before=lambda port: None) -> tuple[int, str]:
    """`runaway web --port 0 ARGS`: once it prints its address, `before(port)`, then Ctrl-C.
    Returns its exit status and the rest of its stderr."""
    proc = subprocess.Popen([sys.executable, "-m", "sim", "web", "--port", "0", *args],
                            stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        line = proc.stderr.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert m, line
        before(int(m.group(1)))
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err


def test_serves_until_interrupted_then_exits_cleanly():
    def page_5(port: int) -> None:
        # No proxy from the environment: this request goes to loopback and nowhere else.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{port}/page/5", timeout=10) as r:
            assert r.status == 200 and b"<!doctype html>" in r.read()

    status, err = _serve_then_ctrl_c("--pages", "100", "--seed", "3", before=page_5)
    assert status == 0
    assert "Traceback" not in err and "stopped" in err


def test_ctrl_c_right_after_the_address_is_printed_still_stops_cleanly():
    """Whoever reads the address may stop the web at once: by then Ctrl-C is handled (it
    used to be installed after the line, and such a Ctrl-C exited 130 with "interrupted")."""
    status, err = _serve_then_ctrl_c("--pages", "100")
    assert status == 0, err
    assert "stopped" in err and "interrupted" not in err


def test_help_describes_the_command():
    p = _run("--help")
    assert p.returncode == 0 and "--pages" in p.stdout and "mock web" in p.stdout
