"""Reading cgroup files: v1 (this machine, tested live in test_docker.py) and v2 layouts."""

from __future__ import annotations

from pathlib import Path

from sandbox.cgroup import Cgroup, reading_from_stats


def test_a_v2_cgroup_reads_like_docker_stats(tmp_path: Path) -> None:
    (tmp_path / "cpu.stat").write_text(
        "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\nnr_periods 40\n"
        "nr_throttled 12\nthrottled_usec 300000\n")
    (tmp_path / "memory.current").write_text("104857600\n")
    (tmp_path / "memory.stat").write_text("anon 94371840\nfile 10485760\ninactive_file 4194304\n")
    (tmp_path / "memory.max").write_text("268435456\n")
    (tmp_path / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    (tmp_path / "pids.current").write_text("7\n")
    (tmp_path / "cpu.max").write_text("50000 100000\n")
    r = Cgroup(2, tmp_path, tmp_path, tmp_path, tmp_path, tmp_path).read()
    assert r is not None
    assert r.cpu_ns == 2_500_000_000 and r.nr_throttled == 12 and r.throttled_ns == 300_000_000
    assert r.mem_bytes == 104857600 - 4194304 and r.mem_limit_bytes == 256 << 20
    assert r.pids == 7 and r.oom_kills == 1 and r.cpu_quota_cpus == 0.5


def test_an_unlimited_v2_cgroup_says_so(tmp_path: Path) -> None:
    (tmp_path / "cpu.stat").write_text("usage_usec 10\n")
    (tmp_path / "memory.max").write_text("max\n")
    (tmp_path / "cpu.max").write_text("max 100000\n")
    r = Cgroup(2, tmp_path, tmp_path, tmp_path, tmp_path, tmp_path).read()
    assert r.mem_limit_bytes == 0 and r.cpu_quota_cpus is None


def test_a_gone_cgroup_reads_as_none(tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    assert Cgroup(1, gone, gone, gone, gone).read() is None
    assert Cgroup(2, gone, gone, gone, gone).read() is None


def test_stats_api_answers_map_to_the_same_fields() -> None:
    stats = {
        "cpu_stats": {"cpu_usage": {"total_usage": 7_000_000_000},
                      "throttling_data": {"periods": 70, "throttled_periods": 20, "throttled_time": 9}},
        "memory_stats": {"usage": 50 << 20, "limit": 256 << 20, "stats": {"total_inactive_file": 10 << 20}},
        "pids_stats": {"current": 4},
    }
    r = reading_from_stats(stats)
    assert (r.cpu_ns, r.mem_bytes, r.mem_limit_bytes, r.pids, r.nr_throttled) == \
        (7_000_000_000, 40 << 20, 256 << 20, 4, 20)
