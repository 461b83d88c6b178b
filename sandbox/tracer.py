"""The syscall tracer: strace as the sandbox's init, its output on a channel only we read.

Every process of the sandbox, whatever its language, is traced by Debian's strace:

    strace --seccomp-bpf -f -q -ttt -yy -e signal=SIGSYS -e trace=<sandbox.syscalls.TRACED> \
        -e inject=<what the profile hands over>:error=EPERM -o /run/runaway/tracer/syscalls \
        -- setpriv --reuid=U --regid=G --clear-groups --inh-caps=-all --bounding-set=-all -- <agent argv>

  (in the default `seccomp` mode, under the sandbox's own seccomp profile: sandbox/seccomp.py)

- strace runs as root with only the capabilities it needs (`TRACER_CAPS`), as the
  container's PID 1. The agent runs as the spec's unprivileged user with no capability
  (setpriv drops them before the agent's exec). The agent cannot signal the tracer (another
  uid, and the kernel ignores SIGKILL/SIGSTOP sent to a namespace's init from inside), cannot
  ptrace it, and cannot detach itself (only the tracer detaches; a tracee stays traced
  across fork and exec).
- The output goes to a FIFO in a host directory only root may enter, mounted read-only;
  it is opened for writing by strace alone and read by the controller alone: the agent's
  stdout and stderr (protocol lines) never mix with it, and /proc/1/fd is closed to it.
- If the tracer goes, the whole sandbox goes with it (the namespace's init), and the
  channel ends before the traced root's exit line: `TracerChannel` reports that as
  `escalation/tracer_lost`. Losing the tracer is never silent.

`TracerChannel` owns the FIFO, reads it in the controller's event loop and feeds the
`Classifier` (sandbox/syscalls.py) that turns lines into events.
"""

from __future__ import annotations

import asyncio
import collections
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

from policies.model import Event

from .seccomp import SEND_WITH_ADDRESS, TracedProfile
from .syscalls import STRSIZE, TRACED, TRACER_REFUSES, Classifier, KnownLinks, SyscallContext

# Where the channel's directory is mounted inside the sandbox, and the FIFO's name.
TRACER_DIR = "/run/runaway/tracer"
FIFO_NAME = "syscalls"
# What strace needs as root: ptrace a process of another uid (SYS_PTRACE), and the
# launcher's switch to the agent's uid and gid (SETUID, SETGID) with an empty bounding set
# (SETPCAP), so that the agent can never gain a capability back. Nothing else.
TRACER_CAPS = ("SYS_PTRACE", "SETUID", "SETGID", "SETPCAP")
TRACER_CAP_MASK = (1 << 19) | (1 << 8) | (1 << 7) | (1 << 6)
TRACER_USER = "0:0"
# `seccomp` (the default): strace's BPF filter stops only on TRACED, and the sandbox runs
# Docker's own seccomp profile with the traced calls it refuses handed to the tracer, which
# refuses them itself, and with address-naming sends refused by SIGSYS (sandbox/seccomp.py).
# `ptrace`: strace stops on every call (slower) and needs no profile of ours: it sees every
# call before seccomp, including those Docker refuses by an explicit rule (clone with
# namespace flags). The sandbox falls back to it where the engine's profile cannot be read.
MODES = ("ptrace", "seccomp")
DEFAULT_MODE = "seccomp"
# In a channel's directory: the controller that made it ("<pid>:<start ticks>").
OWNER_FILE = "owner"


def strace_argv(output: str, mode: str = DEFAULT_MODE, program: str = "strace",
                profile: TracedProfile | None = None) -> list[str]:
    """strace with the contract's calls and the output format `Classifier` reads, to `output`.

    In `seccomp` mode, `profile` is the sandbox's (sandbox/seccomp.py): strace refuses the
    calls it hands over, and leaves `sendto` to it when sends are split.

    In both modes strace refuses `TRACER_REFUSES` itself (sandbox/syscalls.py says why).

    >>> from sandbox.seccomp import TracedProfile
    >>> a = strace_argv("out", "seccomp", profile=TracedProfile({}, ("mount", "bpf"), "EPERM", True))
    >>> [x for x in a if x.startswith("inject=")], "?sendto" in a[a.index("-o") - 5].split(",")
    (['inject=mount,bpf:error=EPERM', 'inject=io_uring_setup:error=EPERM'], False)
    """
    if mode not in MODES:
        raise ValueError(f"unknown tracer mode {mode!r} (expected one of {', '.join(MODES)})")
    split = mode == "seccomp" and profile is not None and profile.sends_split
    # "?" lets a call this kernel or strace does not know be skipped, not refused.
    calls = ["?" + c for c in TRACED if not (split and c == SEND_WITH_ADDRESS)]
    # SIGSYS: what a send refused by the profile's trap leaves (the tracer sees it first).
    strace = [program, "-f", "-q", "-ttt", "-yy", "-s", str(STRSIZE), "-e", "signal=SIGSYS",
              "-e", "trace=" + ",".join(calls)]
    handed: tuple[str, ...] = ()
    if mode == "seccomp":
        strace.insert(1, "--seccomp-bpf")
        if profile is not None and profile.handed:
            handed = profile.handed
            # No "?": a handed call strace did not know would run, so it must refuse to start.
            strace += ["-e", f"inject={','.join(handed)}:error={profile.errno}"]
    if own := [c for c in TRACER_REFUSES if c not in handed]:
        strace += ["-e", f"inject={','.join(own)}:error=EPERM"]
    return [*strace, "-o", output]


def tracer_argv(argv: Sequence[str], user: str, mode: str = DEFAULT_MODE, fifo: str = FIFO_NAME,
                profile: TracedProfile | None = None) -> list[str]:
    """The sandbox's command: strace (root) -> setpriv (to `user`, no caps) -> argv.

    >>> tracer_argv(["sh", "agent.sh"], "65534:65534")[-9:]
    ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all', '--bounding-set=-all', '--', 'sh', 'agent.sh']
    """
    uid, _, gid = user.partition(":")
    strace = strace_argv(f"{TRACER_DIR}/{fifo}", mode, profile=profile)
    launcher = ["setpriv", f"--reuid={uid}", f"--regid={gid or uid}", "--clear-groups", "--inh-caps=-all",
                "--bounding-set=-all", "--"]
    return [*strace, "--", *launcher, *argv]


class TracerChannel:
    """The tracer's output, read in the event loop: events to `on_events`, the end to `on_end`.

    The FIFO is opened for reading (and, until the tracer's first line, for writing too, so
    that a read before strace opens it does not look like its end) before the sandbox
    starts. `on_end(lost: bool, detail)` is called each time the output ends: `lost` when the
    traced root's exit was never seen (the tracer died, was killed, or the sandbox was torn
    down under it). A restarted sandbox's new tracer opens the same FIFO and is read on.
    """

    def __init__(self, ctx: SyscallContext, on_events: Callable[[list[Event]], None],
                 on_end: Callable[[bool, dict], None], *, mode: str = DEFAULT_MODE,
                 directory: Path | None = None, name: str = FIFO_NAME, prefix: str = "runaway-tracer-",
                 owner: str = "", links: KnownLinks | None = None) -> None:
        self.ctx = ctx
        self.mode = mode
        self.name = name
        self.on_events = on_events
        self.on_end = on_end
        # Mode 0700, ours; a second channel (a command run in the sandbox) shares the first's.
        self._own_dir = directory is None
        self.dir = Path(tempfile.mkdtemp(prefix=prefix)) if directory is None else Path(directory)
        if directory is None and owner:
            (self.dir / OWNER_FILE).write_text(owner)  # for `runaway clean` after a crash
        self.fifo = self.dir / name
        os.mkfifo(self.fifo, 0o600)
        self._rfd = os.open(self.fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        self._wfd: int | None = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        # The links the sandbox's processes made: shared with the channels of its exec
        # commands, and kept when a restarted sandbox's new tracer is read on.
        self.links = KnownLinks() if links is None else links
        self.classifier = Classifier(ctx, links=self.links)
        self.ended = threading.Event()
        self.attached = False
        self._stopping = False
        self.expected_end = False  # set before we end the tracer ourselves: no loss then
        self._loop: asyncio.AbstractEventLoop | None = None
        self._buf = b""
        # Seconds from a traced call (strace's clock) to its line being read here.
        self.lags: collections.deque[float] = collections.deque(maxlen=10_000)
        self.events = 0

    @property
    def agent_started(self) -> bool:
        return self.classifier.agent_started

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Reads from now on, in `loop` itself (call it in the loop's thread): a line is
        classified as soon as the loop wakes for it, with no thread between."""
        self._loop = loop
        loop.add_reader(self._rfd, self._readable)

    def _hold_open(self) -> None:
        if self._wfd is None and not self._stopping:
            self._wfd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)

    def _let_go(self) -> None:
        if self._wfd is not None:
            os.close(self._wfd)
            self._wfd = None

    def _readable(self) -> None:
        try:
            data = os.read(self._rfd, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            if not self.attached:
                self.attached = True
                self.ended.clear()
                self._let_go()  # the tracer holds the write end now: its end is ours to see
            *lines, self._buf = (self._buf + data).split(b"\n")
            now = time.time()
            out: list[Event] = []
            for raw in lines:
                evs = self.classifier.feed(raw.decode("utf-8", "replace"))
                if evs:
                    out += evs
                    self.lags.extend(now - e.t for e in evs)
            if out:
                self.events += len(out)
                self.on_events(out)
            return
        # End of output: every writer closed it.
        if not self._stopping:
            c = self.classifier
            lost = not c.root_ended and not self.expected_end
            self.on_end(lost, {"lines": c.lines, "agent_started": c.agent_started,
                               "attached": self.attached, "mode": self.mode, "channel": self.name})
            # A restarted sandbox runs a new tracer on the same FIFO: wait for it (holding
            # a write end of our own, so that the FIFO is not endlessly at its end).
            self.classifier = Classifier(self.ctx, links=self.links)
            self.attached = False
            self._buf = b""
            self._hold_open()
        self.ended.set()

    def wait_ended(self, timeout: float) -> bool:
        """Blocks until the current tracer's output has ended (or `timeout`); call it from
        another thread than the loop's (asyncio.to_thread)."""
        return self.ended.wait(timeout)

    def close(self) -> None:
        """Stops reading and removes the FIFO (and its directory, if ours). Idempotent; call
        it in the loop's thread."""
        self._stopping = True
        self._let_go()
        if self._loop is not None:
            try:
                self._loop.remove_reader(self._rfd)
            except (ValueError, RuntimeError):  # the loop is closed already
                pass
            self._loop = None
        try:
            os.close(self._rfd)
        except OSError:
            pass
        self.ended.set()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            self.fifo.unlink(missing_ok=True)


def leftover_dirs(prefix: str = "runaway-tracer-") -> list[tuple[Path, str]]:
    """Channel directories in the temporary directory, with their owner ("" if unknown)."""
    out = []
    for d in Path(tempfile.gettempdir()).glob(prefix + "*"):
        try:
            owner = (d / OWNER_FILE).read_text().strip()
        except OSError:
            owner = ""
        out.append((d, owner))
    return out
