"""Shared test setup: hypothesis profiles and the Docker marker.

CI sets CI=true, which makes hypothesis load its built-in `ci` profile (derandomized, no
deadline); we extend that profile rather than replace it.
"""

from __future__ import annotations

import functools
import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", settings.get_profile("ci"), max_examples=60,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=40, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@functools.cache
def docker_unavailable_reason() -> str | None:
    """None when a Docker daemon answers, else why not (the skip reason)."""
    try:
        import docker

        client = docker.from_env(timeout=5)
        client.ping()
        client.close()
        return None
    except Exception as e:  # any failure to reach a daemon means: skip with the reason
        return f"no Docker daemon answers: {type(e).__name__}: {e}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = None
    for item in items:
        if item.get_closest_marker("docker") is None:
            continue
        if reason is None:
            reason = docker_unavailable_reason() or ""
        # CI has a daemon: a skip there would hide a defect, so there the test runs and fails.
        if reason and not os.environ.get("CI"):
            item.add_marker(pytest.mark.skip(reason=reason))
