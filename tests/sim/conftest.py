"""Fixtures for tests/sim: a real Prometheus (Debian's package) on loopback."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Callable, ContextManager, Iterator, Sequence

import pytest

from sim.lab.promserver import PrometheusError, local_prometheus


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
        try:
            with local_prometheus(tmp_path, target_port, rule_files=rule_files) as base:
                yield base
        except PrometheusError as e:
            pytest.fail(str(e))

    return run
