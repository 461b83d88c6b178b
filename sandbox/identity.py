"""Escalation as seen from outside: a process whose ids or capabilities rose above its baseline.

Every backend watches its learner's processes in /proc (`SandboxBase._check_identity`,
sandbox/monitor.py) and turns any gain into observer events (outcome `allowed`: this is
what a real escape looks like from outside). Each gain is reported once per process.
"""

from __future__ import annotations

from typing import Hashable, MutableSet

from policies.model import Event

from .procfs import cap_names

# (uid, euid, gid, egid, cap_eff), as procfs.read_ids gives them.
Ids = tuple[int, int, int, int, int]


def ids_key(status: bytes) -> bytes:
    r"""The part of a /proc/<pid>/status that an escalation changes (the Uid and Gid lines,
    CapEff), as bytes: comparing it with the last look's is the whole cost of a process
    whose identity has not changed.

    >>> ids_key(b"Name:\tsh\nUid:\t1\t1\t1\t1\nGid:\t2\t2\t2\t2\nGroups:\t\nCapEff:\t0\nX:\t1\n")
    b'\nUid:\t1\t1\t1\t1\nGid:\t2\t2\t2\t2\nCapEff:\t0'
    """
    i, j = status.find(b"\nUid:"), status.find(b"\nCapEff:")
    return status[i:status.find(b"\n", status.find(b"\nGid:") + 1)] + status[j:status.find(b"\n", j + 1)]


def identity_events(t: float, pid: int, name: str, base: Ids, now: Ids,
                    reported: MutableSet[tuple[Hashable, str]], who: Hashable) -> list[Event]:
    """The escalation events for what `now` gained over `base`: uid_change, gid_change and
    capability_gain, each at most once per `who` (the pid, or pid and start time where pids
    are reused), remembered in `reported`.

    >>> seen = set()
    >>> [e.kind for e in identity_events(1.0, 7, "sh", (65534, 65534, 65534, 65534, 0), (65534, 0, 65534, 65534, 1 << 21), seen, 7)]
    ['uid_change', 'capability_gain']
    >>> identity_events(1.5, 7, "sh", (65534, 65534, 65534, 65534, 0), (65534, 0, 65534, 65534, 1 << 21), seen, 7)
    []
    """
    b_uid, b_euid, b_gid, b_egid, b_caps = base
    uid, euid, gid, egid, caps = now
    out: list[Event] = []

    def once(what: str, kind: str, detail: dict) -> None:
        if (who, what) not in reported:
            reported.add((who, what))
            out.append(Event(t=t, source="observer", category="escalation", kind=kind, outcome="allowed",
                             detail={"pid": pid, "name": name, **detail}))

    if uid != b_uid or euid != b_euid:
        once("uid", "uid_change", {"uid": [b_uid, uid], "euid": [b_euid, euid]})
    if gid != b_gid or egid != b_egid:
        once("gid", "gid_change", {"gid": [b_gid, gid], "egid": [b_egid, egid]})
    gained = caps & ~b_caps
    if gained:
        once("caps", "capability_gain", {"caps": cap_names(gained)})
    return out
