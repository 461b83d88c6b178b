"""The syscall tracer in the real Docker sandbox: it sees a shell agent's calls with their
results, the agent holds no capability and cannot kill, stop or write to the tracer, and a
tracer that goes anyway is an escalation event, never silence."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from policies.model import Event
from sandbox import PROFILES, open_sandbox

pytestmark = [pytest.mark.docker, pytest.mark.slow]

LEARNER_DIR = Path(__file__).resolve().parents[2] / "sim" / "learner"


async def run_agent(tmp_path: Path, script: str, during=None, timeout: float = 60.0, **options):
    """Runs `sh -c script` in a fresh ci sandbox; (output lines, events, the sandbox)."""
    from sandbox.image import build_image

    build_image()
    sb = open_sandbox(PROFILES["ci"], "docker", run_id=f"t-tr-{uuid.uuid4().hex[:8]}", **options)
    lines: list[str] = []
    events: list[Event] = []
    try:
        await sb.prepare()
        control = tmp_path / "control"
        control.touch()
        t0 = time.monotonic()
        await sb.start(["sh", "-c", script], {}, LEARNER_DIR, {}, control, lambda: time.monotonic() - t0)

        async def out():
            async for _, line in sb.output():
                lines.append(line)

        async def obs():
            async for o in sb.observations():
                if isinstance(o, Event):
                    events.append(o)

        tasks = [asyncio.ensure_future(out()), asyncio.ensure_future(obs())]
        if during is not None:
            await during(sb, lines)
        await asyncio.wait_for(asyncio.gather(*tasks), timeout)
    finally:
        await sb.close()
    return lines, events, sb


async def test_the_agent_has_no_capability_and_cannot_kill_stop_or_forge_the_tracer(tmp_path):
    lines, events, sb = await run_agent(tmp_path, (
        "grep -E '^(Uid|CapInh|CapPrm|CapEff|CapBnd|CapAmb)' /proc/self/status; "
        "kill -9 1; echo kill=$?; kill -STOP 1; echo stop=$?; "
        "echo '9 1.0 setuid(0) = 0' > /run/runaway/tracer/syscalls; echo write=$?; "
        "cat /proc/1/fd/1 </dev/null >/dev/null 2>&1; echo fd=$?; echo done"))
    text = "\n".join(lines)
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert f"{cap}:\t0000000000000000" in text, text
    assert "Uid:\t65534\t65534\t65534\t65534" in text
    assert "kill=1" in text and "stop=1" in text and "write=2" in text and "fd=1" in text and "done" in text
    tamper = [e for e in events if e.kind == "tracer_tamper"]
    assert [e.outcome for e in tamper] == ["blocked"] * 3, tamper  # kill, stop, the channel
    assert not [e for e in events if e.kind == "tracer_lost"], "the tracer survived"
    assert not [e for e in events if e.category == "escalation" and e.outcome == "allowed"], \
        "neither the tracer (root, its own caps) nor the agent counts as a privilege gain"
    assert sb.tracer_info["caps"] == ["SYS_PTRACE", "SETUID", "SETGID", "SETPCAP"]
    assert sb.tracer_info["agent_caps"] == []


async def test_a_lost_tracer_is_an_escalation_and_the_sandbox_ends_with_it(tmp_path):
    async def kill_tracer(sb, lines):
        deadline = time.monotonic() + 20
        while "ready" not in lines:
            assert time.monotonic() < deadline, lines
            await asyncio.sleep(0.05)
        os.kill(sb.pid, signal.SIGKILL)  # from the host: only the host can

    t0 = time.monotonic()
    lines, events, _ = await run_agent(tmp_path, "echo ready; sleep 40; echo survived", kill_tracer)
    lost = [e for e in events if e.kind == "tracer_lost"]
    assert [(e.source, e.category, e.outcome) for e in lost] == [("observer", "escalation", "unknown")]
    assert "survived" not in lines, "every traced process died with the tracer"
    assert events[-1].kind == "exit" and time.monotonic() - t0 < 30


async def test_a_shell_agents_calls_are_events_with_their_results(tmp_path):
    _, events, _ = await run_agent(tmp_path, (
        "cat /etc/shadow; echo x > /etc/passwd; python3 -c 'import os; os.setuid(0)'; "
        "touch \"$RUNAWAY_SCRATCH/ok\"; exit 0"))
    got = {(e.category, e.kind, e.outcome) for e in events if e.source == "observer"}
    assert ("escalation", "read_sensitive_file", "blocked") in got
    assert ("escalation", "write_below_etc", "blocked") in got
    assert ("escalation", "setuid", "blocked") in got, "a child interpreter, no audit hook"
    assert not [e for e in events if e.category == "filesystem"], "the scratch dir is its own"
    execs = [e.detail["path"] for e in events if e.kind == "exec"]
    assert "/usr/bin/cat" in execs and "/usr/bin/python3" in execs


# unshare(CLONE_NEWUSER), mount() and io_uring_setup (425) through libc, then a datagram: connected (its address
# given once, to connect) and then named in the send itself (sendto), in a child.
REFUSED = r"""
import ctypes, os, socket
libc = ctypes.CDLL(None, use_errno=True)
print("unshare", libc.unshare(0x10000000), os.strerror(ctypes.get_errno()), flush=True)
print("mount", libc.mount(b"none", b"/mnt", b"tmpfs", 0, None), os.strerror(ctypes.get_errno()), flush=True)
print("io_uring", libc.syscall(425, 8, ctypes.create_string_buffer(120)), os.strerror(ctypes.get_errno()), flush=True)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect(("127.0.0.1", 9))
print("send", s.send(b"x"), flush=True)
pid = os.fork()
if pid == 0:
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"y", ("127.0.0.1", 9))
    print("sendto returned", flush=True)
    os._exit(0)
print("child", os.waitpid(pid, 0)[1] & 0x7f, flush=True)
"""


async def test_calls_the_engine_refuses_reach_the_tracer_and_still_fail_and_a_send_naming_its_address_is_trapped(
        tmp_path):
    lines, events, sb = await run_agent(tmp_path, f"python3 -c '{REFUSED}'")
    assert sb.tracer == "seccomp" and sb.notice == ""
    assert "unshare -1 Operation not permitted" in lines and "mount -1 Operation not permitted" in lines, lines
    assert "io_uring -1 Operation not permitted" in lines, "refused by the tracer: no ring runs unseen"
    assert "send 1" in lines, "a connected datagram socket sends, untraced"
    assert "sendto returned" not in lines and f"child {int(signal.SIGSYS)}" in lines, lines
    got = [(e.category, e.kind, e.outcome, e.detail.get("errno_name")) for e in events if e.source == "observer"
           and e.category in ("escalation", "egress")]
    assert ("escalation", "unshare", "blocked", "EPERM") in got and ("escalation", "mount", "blocked", "EPERM") in got
    assert ("egress", "sendto", "blocked", None) in got, got
    assert ("process", "io_uring", "blocked") in {(e.category, e.kind, e.outcome) for e in events}
    info = sb.tracer_info["seccomp"]
    assert {"mount", "unshare", "bpf", "keyctl", "setns", "init_module"} <= set(info["handed_to_tracer"])
    assert info["sends_with_address"] == "refused (SIGSYS)"


# A seccomp filter of the agent's own whose USER_NOTIF answers would outrank the tracer's
# TRACE (its listener could let unshare run unseen), then a 32-bit call (int 0x80: getpid),
# each in a child. Compiled with the host's cc; the flags are SECCOMP_SET_MODE_FILTER (1)
# and SECCOMP_FILTER_FLAG_NEW_LISTENER (8).
OUTRANK = r"""
#include <stdio.h>
#include <stddef.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
static int child(int which) {
    pid_t p = fork();
    if (p == 0) {
        if (which == 0) {
            struct sock_filter f[] = {
                BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
                BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_unshare, 0, 1),
                BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
                BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
            struct sock_fprog prog = {sizeof f / sizeof f[0], f};
            prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            long fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
            printf("listener %ld\n", fd);
        } else {
            long r;
            __asm__ volatile("int $0x80" : "=a"(r) : "a"(20L) : "memory");
            printf("int80 %ld\n", r);
        }
        fflush(stdout);
        _exit(0);
    }
    int st = 0;
    waitpid(p, &st, 0);
    return WIFSIGNALED(st) ? WTERMSIG(st) : 0;
}
int main(void) {
    printf("listener child %d\n", child(0));
    printf("int80 child %d\n", child(1));
    return 0;
}
"""


async def test_a_filter_that_would_outrank_the_tracer_and_a_32_bit_call_each_end_their_process(tmp_path):
    import shutil
    import subprocess

    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.fail("no C compiler on this host (CI installs one)")
    agent = tmp_path / "agent"
    agent.mkdir()
    (agent / "outrank.c").write_text(OUTRANK)
    subprocess.run([cc, "-static", "-O1", "-o", str(agent / "outrank"), str(agent / "outrank.c")], check=True)
    agent.chmod(0o755)
    lines, events, sb = await run_agent(tmp_path, "/opt/runaway/agent/outrank", agent_dir=agent)
    sys_ = int(signal.SIGSYS)
    assert f"listener child {sys_}" in lines and f"int80 child {sys_}" in lines, lines
    assert not any(line.startswith(("listener ", "int80 ")) and "child" not in line for line in lines), lines
    tamper = [e for e in events if e.kind == "tracer_tamper"]
    assert [(e.outcome, e.detail["syscall"]) for e in tamper] == [("blocked", "seccomp")], tamper


async def test_where_the_engines_profile_cannot_be_read_the_tracer_stops_on_every_call_and_says_so(
        tmp_path, monkeypatch):
    from sandbox import seccomp

    monkeypatch.setattr(seccomp, "engine_profile", functools.partial(
        seccomp.engine_profile, roots=(str(tmp_path / "nowhere"),), timeout_s=1.0))
    lines, events, sb = await run_agent(tmp_path, f"python3 -c '{REFUSED}'")
    assert sb.tracer == "ptrace" and "ptrace mode" in sb.notice and "no OCI bundle" in sb.notice
    got = {(e.category, e.kind, e.outcome) for e in events if e.source == "observer"}
    # Seen before Docker's own profile refuses them; the send with an address runs (to the
    # sandbox's own loopback, which is no egress).
    assert ("escalation", "unshare", "blocked") in got and ("escalation", "mount", "blocked") in got
    assert ("process", "io_uring", "blocked") in got and "io_uring -1 Operation not permitted" in lines
    assert "sendto returned" in lines
    assert "tracer_lost" not in {e.kind for e in events}


def test_clean_removes_a_crashed_runs_tracer_channel_and_spares_a_live_ones():
    from sandbox.backends.docker import _owner, clean
    from sandbox.syscalls import SyscallContext
    from sandbox.tracer import TracerChannel

    tag = uuid.uuid4().hex[:8]
    dead = TracerChannel(SyscallContext(), lambda e: None, lambda lost, d: None,
                         prefix=f"runaway-tracer-t-{tag}-a-", owner="1:1")  # pid 1 never started at tick 1
    live = TracerChannel(SyscallContext(), lambda e: None, lambda lost, d: None,
                         prefix=f"runaway-tracer-t-{tag}-b-", owner=_owner())
    try:
        removed = clean()
        assert dead.dir.name in removed["tracer channels"] and not dead.dir.exists()
        assert live.dir.exists() and live.dir.name not in removed["tracer channels"]
    finally:
        live.close()
        dead.close()
