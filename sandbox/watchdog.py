"""A dead man's switch: a sandbox never outlives the controller that started it.

A backend arms a watchdog before it makes anything: `python3 -m sandbox.watchdog RUN_ID`,
a small process in its own session holding the read end of a pipe whose write end only
the controller has. The controller never writes to it until it has closed its sandbox
itself, then it writes `done` and the watchdog exits quietly. However else the controller
ends (SIGKILL, a crash, the OOM killer), the kernel closes the pipe: the watchdog reads
end-of-file (or sees itself orphaned) and at once removes everything labelled with the run
(`sandbox.clean(run_id)`: its containers, network and firewall rules, or the process
backend's processes and private tree). It depends on none of the controller's cleanup
code running.

    dog = arm("20260101T000000Z-novel-0001")   # before the sandbox makes anything
    ...
    disarm(dog)                                # after close() removed it all
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

# How often the watchdog also checks that its controller is still its parent (a backstop
# for a pipe whose write end some forked child kept open).
POLL_S = 0.2
_ROOT = Path(__file__).resolve().parent.parent


def arm(run_id: str) -> subprocess.Popen | None:
    """Start the watchdog for `run_id`; None where it cannot start (then `clean` remains)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNAWAY_")}
    # This checkout first, whatever is installed: the watchdog must be the code that armed it.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "sandbox.watchdog", run_id, str(os.getpid())],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=env, cwd="/", start_new_session=True, close_fds=True,
        )
    except OSError:
        return None


def disarm(dog: subprocess.Popen | None) -> None:
    """The controller closed its sandbox itself: let the watchdog go without doing anything."""
    if dog is None or dog.stdin is None:
        return
    try:
        dog.stdin.write(b"done\n")
        dog.stdin.close()
    except OSError:  # it is gone already
        pass
    try:
        dog.wait(timeout=5)
    except subprocess.TimeoutExpired:
        dog.kill()


def _wait_for_controller(controller: int) -> bool:
    """Block until the controller says done (True) or is gone (False)."""
    fd = sys.stdin.fileno()
    got = b""
    while True:
        ready, _, _ = select.select([fd], [], [], POLL_S)
        if ready:
            chunk = os.read(fd, 64)
            if not chunk:
                return got.strip() == b"done"
            got = (got + chunk)[-64:]
        elif os.getppid() != controller:
            return False


def main(argv: list[str]) -> int:
    run_id, controller = argv[0], int(argv[1])
    # A terminal's Ctrl-C or hang-up is meant for the controller; this one outlives it.
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    from sandbox import clean  # imported (with the Docker SDK) before it is needed

    if _wait_for_controller(controller):
        return 0
    clean(run_id)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
