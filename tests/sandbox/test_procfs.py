"""procfs readers on real processes: identity, capabilities, groups, trees, CPU time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from sandbox import procfs


@pytest.fixture
def child_tree():
    """A parent in its own session with one sleeping grandchild, killed at the end."""
    code = (
        "import subprocess, sys, time\n"
        "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(c.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                         start_new_session=True)
    grandchild = int(p.stdout.readline())
    yield p, grandchild
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()


def test_read_status_of_self_matches_os():
    st = procfs.read_status(os.getpid())
    assert st is not None
    assert (st.pid, st.ppid) == (os.getpid(), os.getppid())
    assert (st.uid, st.euid, st.gid, st.egid) == (os.getuid(), os.geteuid(), os.getgid(), os.getegid())
    assert st.state in "RS"
    assert st.rss_bytes > 0


def test_root_has_caps_and_dropped_child_has_none():
    """A root process shows CAP_SYS_ADMIN; a child that became nobody shows no capability."""
    if os.geteuid() != 0:
        pytest.skip("needs root to compare a privileged and a dropped process")
    assert "CAP_SYS_ADMIN" in procfs.read_status(os.getpid()).caps

    def drop() -> None:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)

    p = subprocess.Popen(["/bin/sleep", "30"], preexec_fn=drop)
    try:
        for _ in range(100):  # wait for exec to have happened
            st = procfs.read_status(p.pid)
            if st and st.name == "sleep":
                break
            time.sleep(0.01)
        assert st is not None and st.name == "sleep"
        assert (st.uid, st.euid) == (65534, 65534)
        assert st.cap_eff == 0 and st.caps == []
    finally:
        p.kill()
        p.wait()


def test_gone_process_reads_as_none():
    p = subprocess.Popen(["/bin/true"])
    p.wait()
    assert procfs.read_status(p.pid) is None
    assert procfs.read_stat(p.pid) is None
    assert procfs.cpu_seconds(p.pid) == 0.0
    assert procfs.cmdline(p.pid) == []


def test_group_session_and_tree(child_tree):
    parent, grandchild = child_tree
    assert procfs.pids_of_group(parent.pid) == sorted([parent.pid, grandchild])
    assert procfs.pids_of_session(parent.pid) == sorted([parent.pid, grandchild])
    assert procfs.descendants(parent.pid) == [grandchild]
    assert grandchild not in procfs.pids_of_group(os.getpgrp())
    rows = procfs.process_list([parent.pid, grandchild])
    assert [r["pid"] for r in rows] == sorted([parent.pid, grandchild])
    assert any("time.sleep(60)" in " ".join(r["cmdline"]) for r in rows)


def test_stat_cpu_seconds_grow_with_work():
    p = subprocess.Popen([sys.executable, "-c", "import time\nt=time.process_time()\nwhile time.process_time()-t<0.5: pass\ninput()"],
                         stdin=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while procfs.cpu_seconds(p.pid) < 0.4 and time.monotonic() < deadline:
            time.sleep(0.05)
        st = procfs.read_stat(p.pid)
        assert st is not None and st.cpu_seconds >= 0.4
        assert st.pgrp == os.getpgrp() and st.ppid == os.getpid()
    finally:
        p.kill()
        p.wait()


def test_parse_stat_with_parens_and_spaces_in_name():
    """A command name like `a) b (c` must not shift the fields after it."""
    fields = ["S", "1", "42", "42"] + ["0"] * 7 + ["300", "200"] + ["0"] * 4 + ["3", "0", "12345", "0", "10"]
    text = "77 (a) b (c) " + " ".join(fields)
    st = procfs.parse_stat(text)
    assert st.comm == "a) b (c" and st.pid == 77 and st.ppid == 1 and st.pgrp == 42
    assert st.utime_s == 300 / procfs.CLK_TCK and st.stime_s == 200 / procfs.CLK_TCK
    assert st.threads == 3 and st.start_ticks == 12345 and st.rss_bytes == 10 * procfs.PAGE_SIZE


@given(st.sets(st.integers(min_value=0, max_value=63)))
def test_cap_names_round_trip(bits):
    """Every set bit of a mask gives exactly one name, and names map back to their bits."""
    mask = sum(1 << b for b in bits)
    names = procfs.cap_names(mask)
    assert len(names) == len(bits)
    back = 0
    for n in names:
        back |= 1 << (procfs.CAPABILITIES.index(n) if n in procfs.CAPABILITIES else int(n[4:]))
    assert back == mask


def test_pids_of_cgroup_reads_cgroup_procs(tmp_path: Path):
    """The reader takes cgroup.procs as the kernel writes it; a gone cgroup gives []."""
    (tmp_path / "cgroup.procs").write_text("12\n7\n12\n")
    assert procfs.pids_of_cgroup(tmp_path) == [7, 12]
    assert procfs.pids_of_cgroup(tmp_path / "gone") == []


def test_pids_of_real_cgroup_contains_self():
    """Our own cgroup (v1 or v2, read from /proc/self/cgroup) lists this process."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, rel = line.split(":", 2)
        if controllers in ("", "pids") or "pids" in controllers.split(","):
            base = Path("/sys/fs/cgroup") / ("pids" if controllers else "")
            path = base / rel.lstrip("/")
            if (path / "cgroup.procs").exists():
                assert os.getpid() in procfs.pids_of_cgroup(path)
                return
    pytest.skip("no readable pids cgroup of our own on this machine")


def test_net_dev_of_self_is_readable():
    rx, tx = procfs.read_net_dev(os.getpid(), skip_loopback=False)
    assert rx >= 0 and tx >= 0
