"""The sandbox spec, its profiles and admission: what a user is told and refused."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from sandbox.base import SandboxError
from sandbox.spec import PROFILES, Mount, SandboxSpec, admit, choose_profile, format_size, parse_size


def test_profiles_match_the_design() -> None:
    assert (PROFILES["novel"].cpus, PROFILES["novel"].memory) == (4.0, 8 << 30)
    assert (PROFILES["laptop"].cpus, PROFILES["laptop"].memory) == (1.0, 1 << 30)
    assert (PROFILES["ci"].cpus, PROFILES["ci"].memory) == (0.5, 256 << 20)
    for spec in PROFILES.values():
        assert admit(spec) == []  # every shipped profile is safe as it is


def test_defaults_are_the_hardened_ones() -> None:
    s = SandboxSpec()
    assert s.uid not in (None, 0)
    assert s.read_only_root and s.no_new_privileges and not s.privileged
    assert s.cap_drop == ("ALL",) and s.cap_add == ()
    assert s.network == "mock-web-only" and s.sample_hz == 4.0


def test_without_a_request_the_largest_fitting_profile_is_picked_and_said() -> None:
    c = choose_profile(None, host_cpus=2)
    assert c.name == "laptop" and c.spec is PROFILES["laptop"]
    assert "laptop" in c.notice and "2 CPUs" in c.notice
    assert choose_profile(None, host_cpus=0.5).name == "ci"
    assert choose_profile(None, host_cpus=16).name == "novel"


def test_a_requested_profile_that_does_not_fit_is_refused_with_the_largest_that_would() -> None:
    with pytest.raises(SandboxError, match=r"'novel' caps 4 CPUs but this host has 2.*largest that fits is 'laptop'") as e:
        choose_profile("novel", host_cpus=2)
    assert e.value.field == "profile"
    assert choose_profile("ci", host_cpus=2).notice is None
    with pytest.raises(SandboxError, match="unknown profile 'huge'"):
        choose_profile("huge", host_cpus=2)


@pytest.mark.parametrize(
    "spec, field, words",
    [
        (SandboxSpec(privileged=True), "privileged", "privileged"),
        (SandboxSpec(mounts=(Mount("/var/run/docker.sock", "/var/run/docker.sock"),)), "mounts[0]", "socket"),
        (SandboxSpec(mounts=(Mount("/etc", "/host-etc"),), scratch_dir="/tmp/scratch"), "mounts[0]", "outside the scratch dir"),
        (SandboxSpec(cap_add=("SYS_ADMIN",)), "cap_add", "SYS_ADMIN"),
        (SandboxSpec(network="host"), "network", "host network"),
        (SandboxSpec(cpus=None), "cpus", "no limit"),
        (SandboxSpec(memory=0), "memory", "no limit"),
        (SandboxSpec(pids=None), "pids", "no limit"),
        (SandboxSpec(user="0:0"), "user", "root"),
    ],
)
def test_admission_refuses_dangerous_specs_with_the_reason(spec: SandboxSpec, field: str, words: str) -> None:
    with pytest.raises(SandboxError, match=words) as e:
        admit(spec)
    assert e.value.field == field
    assert "--unsafe" in str(e.value)
    waived = admit(spec, unsafe=True)  # unsafe admits it and hands back what to record
    assert waived and waived[0].startswith(field)


def test_mounts_under_the_scratch_dir_are_admitted(tmp_path) -> None:
    spec = SandboxSpec(scratch_dir=str(tmp_path), mounts=(Mount(str(tmp_path / "data"), "/data"),))
    assert admit(spec) == []


def test_overrides_name_the_bad_field() -> None:
    s = PROFILES["ci"].with_overrides({"memory": "512m", "cap_add": []})
    assert s.memory == 512 << 20 and s.cpus == 0.5
    with pytest.raises(SandboxError) as e:
        PROFILES["ci"].with_overrides({"memory": "lots"}, file="s.yaml")
    assert str(e.value).startswith("s.yaml: sandbox.memory: expected a size")
    with pytest.raises(SandboxError, match="unknown sandbox field 'cpu'"):
        PROFILES["ci"].with_overrides({"cpu": 2})


@given(st.integers(min_value=0, max_value=1 << 44))
def test_sizes_round_trip(n: int) -> None:
    """Any byte count formats to a spelling that parses back to the same count."""
    assert parse_size(format_size(n)) == n


def test_open_sandbox_names_a_bad_backend() -> None:
    from sandbox import open_sandbox

    with pytest.raises(SandboxError, match="unknown backend 'vm'") as e:
        open_sandbox(PROFILES["ci"], "vm", run_id="r")
    assert e.value.field == "backend"


@pytest.mark.docker
def test_auto_picks_docker_where_a_daemon_answers() -> None:
    from sandbox import open_sandbox

    notices: list[str] = []
    sb = open_sandbox(PROFILES["ci"], "auto", run_id="r-auto", notices=notices)
    assert sb.backend == "docker" and sb.is_security_boundary and notices == []
