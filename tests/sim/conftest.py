"""Fixtures for tests/sim: a real Prometheus (Debian's package) on loopback."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Callable, ContextManager, Iterator, Sequence

import pytest
import yaml


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def prometheus(tmp_path: Path) -> Callable[..., ContextManager[str]]:
    """`with prometheus(target_port, rule_files=[...]) as base_url:` runs a Prometheus on
    127.0.0.1 that scrapes 127.0.0.1:target_port every second (and evaluates the given rule
    files every second), waits until it is ready (30 s at most) and always stops it.
    Skips where the `prometheus` binary is missing, except in CI (.ci/run installs it)."""
    binary = shutil.which("prometheus")
    if binary is None:
        why = "prometheus not installed (Debian package `prometheus`; .ci/run installs it)"
        # CI installs it: there a skip would hide a defect, so it fails instead.
        pytest.fail(why) if os.environ.get("CI") else pytest.skip(why)

    @contextlib.contextmanager
    def run(target_port: int, rule_files: Sequence[str | Path] = ()) -> Iterator[str]:
        config = tmp_path / "prometheus.yml"
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(f) for f in rule_files],
            "scrape_configs": [{"job_name": "runaway",
                                "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}]}],
        }))
        port = _free_port()
        log_path = tmp_path / "prometheus.log"
        with open(log_path, "w") as log:
            proc = subprocess.Popen(
                [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT)
            base = f"http://127.0.0.1:{port}"
            try:
                deadline = time.monotonic() + 30
                while True:
                    if proc.poll() is not None:
                        pytest.fail(f"prometheus exited {proc.returncode}: {log_path.read_text()[-800:]}")
                    with contextlib.suppress(OSError):
                        with urllib.request.urlopen(f"{base}/-/ready", timeout=2) as r:
                            if r.status == 200:
                                break
                    if time.monotonic() > deadline:
                        pytest.fail("prometheus not ready within 30 s")
                    time.sleep(0.2)
                yield base
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    return run
