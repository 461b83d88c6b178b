"""The kernel's process events (proc connector) as the process sandbox's observer reads them."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from sandbox.proc_events import ProcEvents


@pytest.mark.skipif(os.geteuid() != 0, reason="the proc connector needs root (CAP_NET_ADMIN)")
def test_exec_and_setuid_are_reported_and_forks_filtered_out():
    """A child that drops to uid 65534 and execs shows as a uid event then an exec event
    for its pid; its fork and exit are dropped by the kernel-side filter."""
    ev = ProcEvents.open()
    assert ev is not None
    try:
        def drop() -> None:
            os.setgid(65534)
            os.setuid(65534)

        p = subprocess.Popen(["/bin/true"], preexec_fn=drop)
        p.wait()
        mine = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(e.kind == "exec" for e in mine):
            got, _ = ev.read()
            mine += [e for e in got if e.tgid == p.pid]
            time.sleep(0.01)
        kinds = [e.kind for e in mine]
        assert "exec" in kinds and "uid" in kinds and "gid" in kinds
        assert "fork" not in kinds and "exit" not in kinds
        uid_ev = next(e for e in mine if e.kind == "uid")
        assert uid_ev.ids == (65534, 65534)
    finally:
        ev.close()


def test_open_without_root_gives_none_not_an_error():
    """Without privilege the observer must fall back to polling, not fail: checked in a
    forked child that has become uid 65534 (or in this process when it is not root)."""
    if os.geteuid() != 0:
        assert ProcEvents.open() is None
        return
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            os.setgid(65534)
            os.setuid(65534)
            code = 0 if ProcEvents.open() is None else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
