"""The `seccomp` mode's profile: the engine's own, with the traced calls it refuses handed to
the tracer and address-naming sends refused by SIGSYS (sandbox/seccomp.py)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, strategies as st

from sandbox.seccomp import ProfileUnavailable, read_bundle_profile, traced_profile

NAMES = ["read", "write", "sendto", "mount", "unshare", "clone", "clone3", "bpf", "openat", "keyctl", "ptrace",
         "seccomp"]
X86_64 = "SCMP_ARCH_X86_64"
ARGS = [{"index": 0, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}]


@st.composite
def engine_profiles(draw):
    """Profiles shaped like Docker's: a refusing default, rules allowing names outright or on
    a condition, and explicit refusals with their own errno."""
    rules = []
    for name in draw(st.lists(st.sampled_from(NAMES), unique=True)):
        kind = draw(st.sampled_from(["allow", "allow_if", "errno"]))
        if kind == "allow":
            rules.append({"names": [name], "action": "SCMP_ACT_ALLOW"})
        elif kind == "allow_if":
            rules.append({"names": [name], "action": "SCMP_ACT_ALLOW", "args": ARGS})
        else:
            rules.append({"names": [name], "action": "SCMP_ACT_ERRNO", "errnoRet": 38})
    return {"defaultAction": "SCMP_ACT_ERRNO", "architectures": [X86_64, "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": rules}


def verdict(profile: dict, name: str, addr: int = 0, addrlen: int = 0, flags: int = 0) -> str:
    """What a profile does to a call (this test's own reading: the first rule whose conditions
    all hold; sendto's address and its length, and seccomp's flags, are given; clone's flags
    are taken as met)."""
    ops = {"SCMP_CMP_EQ": lambda a, c: a == c["value"], "SCMP_CMP_NE": lambda a, c: a != c["value"],
           "SCMP_CMP_LT": lambda a, c: a < c["value"], "SCMP_CMP_GE": lambda a, c: a >= c["value"],
           "SCMP_CMP_MASKED_EQ": lambda a, c: a & c["value"] == c.get("valueTwo", 0)}
    given = {4: addr, 5: addrlen} if name == "sendto" else {1: flags} if name == "seccomp" else {}
    for r in profile["syscalls"]:
        if name not in r["names"]:
            continue
        args = r.get("args") or []
        if all(ops[a["op"]](given[a["index"]], a) for a in args if a["index"] in given):
            return r["action"] + ("(cond)" if any(a["index"] not in given for a in args) else "")
    return profile["defaultAction"]


@given(engine_profiles(), st.lists(st.sampled_from(NAMES), unique=True))
def test_only_traced_calls_the_default_refuses_change_and_sends_split_by_their_address(engine, traced):
    """Every traced call the engine refuses by its default action goes to the tracer (TRACE) and
    is in the tracer's refusal list; every other call keeps the engine's verdict, except a
    sendto the engine allows outright, which stays allowed without an address or with one
    too short for an internet peer, and is trapped with any other, and a seccomp(2) the
    engine allows outright, which is trapped when it asks for a notification listener;
    only the native architecture is listed."""
    conditional = any(r["names"] == ["seccomp"] and r.get("args") and r["action"] == "SCMP_ACT_ALLOW"
                      for r in engine["syscalls"])
    if conditional:  # allowed on conditions of the engine's own: not narrowed, not used
        with pytest.raises(ProfileUnavailable, match="notification listener"):
            traced_profile(engine, traced, arch=X86_64)
        return
    tp = traced_profile(engine, traced, arch=X86_64)
    assert tp.profile["architectures"] == [X86_64]  # 32-bit and x32 calls end their process
    named = {n for r in engine["syscalls"] for n in r["names"]}
    assert set(tp.handed) == {n for n in traced if n not in named}
    for name in NAMES:
        before, after = verdict(engine, name), verdict(tp.profile, name)
        if name in tp.handed:
            assert (before, after) == ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")
        elif name == "sendto" and before == "SCMP_ACT_ALLOW":
            assert tp.sends_split
            assert after == "SCMP_ACT_ALLOW"  # no address: a connected socket's peer
            assert verdict(tp.profile, name, 0x7F00, 12) == "SCMP_ACT_ALLOW"  # netlink's 12 bytes
            for addrlen in (16, 28, 110, 2**32 + 12):
                assert verdict(tp.profile, name, 0x7F00, addrlen) == "SCMP_ACT_TRAP", addrlen
        elif name == "seccomp" and before == "SCMP_ACT_ALLOW":
            assert after == "SCMP_ACT_ALLOW"  # a filter of its own, without a listener
            for flags in (8, 8 | 1, 2**32 + 8):
                assert verdict(tp.profile, name, flags=flags) == "SCMP_ACT_TRAP", flags
        else:
            assert after == before
    assert tp.profile["defaultAction"] == engine["defaultAction"]
    json.loads(tp.to_json())  # Docker takes it as JSON


def test_a_profile_that_allows_by_default_hands_nothing_over():
    tp = traced_profile({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": []}, ["mount"], arch=X86_64)
    assert tp.handed == () and not tp.sends_split


def test_an_errno_strace_cannot_be_told_is_refused_not_guessed():
    with pytest.raises(ProfileUnavailable, match="errno 99"):
        traced_profile({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 99, "syscalls": []}, ["mount"],
                       arch=X86_64)
    assert traced_profile({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38, "syscalls": []},
                          ["mount"], arch=X86_64).errno == "ENOSYS"


def test_a_profile_for_another_architecture_is_not_used():
    with pytest.raises(ProfileUnavailable, match="architecture"):
        traced_profile({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_AARCH64"],
                        "syscalls": []}, ["mount"], arch=X86_64)


def test_a_bundle_is_read_where_the_engine_keeps_it_and_seccomp_off_is_said(tmp_path):
    root = tmp_path / "v2"
    (root / "moby" / "abc").mkdir(parents=True)
    (root / "moby" / "abc" / "config.json").write_text(json.dumps({"linux": {"seccomp": {"defaultAction": "X"}}}))
    assert read_bundle_profile("abc", [str(tmp_path / "none"), str(root)]) == {"defaultAction": "X"}
    assert read_bundle_profile("other", [str(root)]) is None
    (root / "moby" / "off").mkdir()
    (root / "moby" / "off" / "config.json").write_text(json.dumps({"linux": {}}))
    with pytest.raises(ProfileUnavailable, match="without a seccomp profile"):
        read_bundle_profile("off", [str(root)])
