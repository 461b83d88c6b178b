"""Linux process events (the netlink proc connector): fork, exec, uid/gid change, exit as they happen.

Polling /proc for a uid or capability gain costs CPU on every tick and still sees a change
only at the next tick. The kernel's proc connector instead sends a message for every fork,
exec and id change on the host the moment it happens, so an observer can re-read just the
process that changed. It needs CAP_NET_ADMIN (root); `ProcEvents.open()` returns None
where it is not available and the caller falls back to polling.

>>> ev = ProcEvents.open()  # None unless root
"""

from __future__ import annotations

import ctypes
import os
import socket
import struct
from dataclasses import dataclass

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
PROC_CN_MCAST_IGNORE = 2
NLMSG_DONE = 3
SO_ATTACH_FILTER = 26

# proc_event.what (linux/cn_proc.h)
FORK, EXEC, UID, GID, EXIT = 0x1, 0x2, 0x4, 0x40, 0x80000000
KINDS = {FORK: "fork", EXEC: "exec", UID: "uid", GID: "gid", EXIT: "exit"}

_HDR = 16 + 20  # nlmsghdr + cn_msg
_EVENT = struct.Struct("=IIQ")  # what, cpu, timestamp_ns
_FOUR = struct.Struct("=IIII")


@dataclass(frozen=True, slots=True)
class ProcEvent:
    """One kernel process event. `pid`/`tgid` name the process it is about; for a fork they
    are the child's and `parent_tgid` the parent's; for uid/gid `ids` is (real, effective)."""

    kind: str
    pid: int
    tgid: int
    parent_tgid: int = 0
    ids: tuple[int, int] = (0, 0)


class ProcEvents:
    """A subscribed proc-connector socket. Non-blocking: `read()` drains what is queued."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    @classmethod
    def open(cls) -> "ProcEvents | None":
        """A listening socket, or None without the privilege (or the kernel option)."""
        if os.geteuid() != 0:
            return None
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC,
                                 NETLINK_CONNECTOR)
        except (OSError, AttributeError):
            return None
        try:
            sock.bind((0, CN_IDX_PROC))  # port 0: the kernel picks a unique one per socket
            cls._attach_filter(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sock.send(cls._control(PROC_CN_MCAST_LISTEN))
            sock.setblocking(False)
        except OSError:
            sock.close()
            return None
        return cls(sock)

    @staticmethod
    def _attach_filter(sock: socket.socket) -> None:
        """Let only exec and uid/gid events through, in the kernel.

        The connector reports every fork, exec, exit and rename on the host; on a busy
        machine that is hundreds a second, each of which would wake the controller. An
        escalation shows at an exec (a setuid binary) or an id change, so those are kept;
        forks are followed by the samples' scans and by the parent of an exec.
        """
        keep = [int.from_bytes(struct.pack("=I", w), "big") for w in (EXEC, UID, GID)]
        # classic BPF: A = what (loaded big-endian); accept if it is one of `keep`.
        prog = [(0x20, 0, 0, _HDR)]  # BPF_LD|BPF_W|BPF_ABS
        for i, k in enumerate(keep):
            prog.append((0x15, len(keep) - i, 0, k))  # BPF_JMP|BPF_JEQ|BPF_K -> accept
        prog += [(0x06, 0, 0, 0), (0x06, 0, 0, 0xFFFFFFFF)]  # BPF_RET: drop / accept
        buf = ctypes.create_string_buffer(b"".join(struct.pack("=HBBI", *ins) for ins in prog))
        fprog = struct.pack("HL", len(prog), ctypes.addressof(buf))
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)

    @staticmethod
    def _control(op: int) -> bytes:
        payload = struct.pack("=I", op)
        cn = struct.pack("=IIIIHH", CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(payload), 0) + payload
        return struct.pack("=IHHII", 16 + len(cn), NLMSG_DONE, 0, 0, 0) + cn

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self) -> tuple[list[ProcEvent], bool]:
        """(events queued now, whether some were lost to a full buffer)."""
        out: list[ProcEvent] = []
        lost = False
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                break
            except OSError:  # ENOBUFS: the kernel dropped events; the caller rescans
                lost = True
                continue
            if len(data) < _HDR + _EVENT.size + 8:
                continue
            what, _, _ = _EVENT.unpack_from(data, _HDR)
            kind = KINDS.get(what)
            if kind is None:
                continue
            base = _HDR + _EVENT.size
            if kind == "fork":
                _, ptgid, cpid, ctgid = _FOUR.unpack_from(data, base)
                out.append(ProcEvent(kind, cpid, ctgid, parent_tgid=ptgid))
            elif kind in ("uid", "gid"):
                pid, tgid, real, eff = _FOUR.unpack_from(data, base)
                out.append(ProcEvent(kind, pid, tgid, ids=(real, eff)))
            else:
                pid, tgid = struct.unpack_from("=II", data, base)
                out.append(ProcEvent(kind, pid, tgid))
        return out, lost

    def close(self) -> None:
        try:
            self.sock.send(self._control(PROC_CN_MCAST_IGNORE))
        except OSError:
            pass
        self.sock.close()
