"""A real Prometheus (Debian's `prometheus` binary) on a free loopback port, for the tests
and benchmarks that check runaway against it: one place that starts, waits for and stops it."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Iterator, Sequence


class PrometheusError(RuntimeError):
    """Prometheus is missing, exited, or did not become ready."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def local_prometheus(workdir: Path, target_port: int, *, interval: str = "1s",
                     rule_files: Sequence[str | Path] = (), ready_s: float = 30.0) -> Iterator[str]:
    """Runs Prometheus on 127.0.0.1 scraping 127.0.0.1:target_port and evaluating
    `rule_files` every `interval`; yields its base URL once ready and always stops it."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise PrometheusError("prometheus not installed (Debian package `prometheus`)")
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    config.write_text(json.dumps({  # JSON is YAML
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(f) for f in rule_files],
        "scrape_configs": [{"job_name": "runaway", "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}]}],
    }))
    port = free_port()
    log_path = workdir / "prometheus.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'prometheus-data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + ready_s
            while True:
                if proc.poll() is not None:
                    raise PrometheusError(f"prometheus exited {proc.returncode}: {log_path.read_text()[-800:]}")
                with contextlib.suppress(OSError):
                    with urllib.request.urlopen(f"{base}/-/ready", timeout=2) as r:
                        if r.status == 200:
                            break
                if time.monotonic() > deadline:
                    raise PrometheusError(f"prometheus not ready within {ready_s:g} s")
                time.sleep(0.2)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
