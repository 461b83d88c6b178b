"""The syscall contract (docs/traces.md, "Syscall events"): strace's lines, as strace 6.1
prints them in the sandbox (`-f -ttt -yy`), become the documented events with the call's
result; the launcher's own calls, the mock web and loopback are not events."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from sandbox.syscalls import Classifier, SyscallContext
from sandbox.seccomp import TracedProfile
from sandbox.tracer import tracer_argv

WEB = ("10.9.0.1", 8080)
CTX = SyscallContext(scratch=("/scratch",), web=WEB, web_ports=(8080,), uid=65534, gid=65534,
                     tracer_dir="/run/runaway/tracer")

LAUNCH = [
    '9     1796158653.001910 capset({version=_LINUX_CAPABILITY_VERSION_3, pid=9}, {effective=1<<CAP_SETGID, permitted=1<<CAP_SETGID, inheritable=0}) = 0',
    '9     1796158652.900000 execve("/usr/bin/setpriv", ["setpriv", "--reuid=65534"], 0x7ff /* 8 vars */) = 0',
    '9     1796158653.009879 setresuid(65534, 65534, 65534) = 0',
    '9     1796158653.012569 execve("/opt/runaway/agent/attempts", ["/opt/runaway/agent/attempts"], 0x7ff /* 8 vars */) = 0',
]


def classifier() -> Classifier:
    c = Classifier(CTX)
    for line in LAUNCH:
        assert c.feed(line) == [], line  # the launcher (root, before the agent's exec) is ours
    assert c.agent_started
    return c


# (strace line, category, kind, outcome): one row of the contract each.
CONTRACT = [
    ('9 1.0 setuid(0)       = -1 EPERM (Operation not permitted)', "escalation", "setuid", "blocked"),
    ('9 1.0 setresgid(0, 0, 0) = -1 EPERM (Operation not permitted)', "escalation", "setgid", "blocked"),
    ('9 1.0 setgroups(0, NULL) = -1 EPERM (Operation not permitted)', "escalation", "setgid", "blocked"),
    ('9 1.0 capset({version=_LINUX_CAPABILITY_VERSION_3, pid=0}, {effective=1<<CAP_SYS_ADMIN, permitted=1<<CAP_SYS_ADMIN, inheritable=0}) = -1 EPERM (Operation not permitted)',
     "escalation", "capset", "blocked"),
    ('9 1.0 ptrace(PTRACE_ATTACH, 1) = -1 EPERM (Operation not permitted)', "escalation", "ptrace", "blocked"),
    ('9 1.0 mount("none", "/scratch", "tmpfs", 0, NULL) = -1 EPERM (Operation not permitted)', "escalation", "mount", "blocked"),
    ('9 1.0 umount2("/opt/runaway/learner", MNT_DETACH) = -1 EPERM (Operation not permitted)', "escalation", "mount", "blocked"),
    ('9 1.0 unshare(CLONE_NEWNS|CLONE_NEWUSER) = -1 EPERM (Operation not permitted)', "escalation", "unshare", "blocked"),
    ('9 1.0 setns(3, CLONE_NEWNET)  = -1 EPERM (Operation not permitted)', "escalation", "unshare", "blocked"),
    ('9 1.0 finit_module(-1, "", 0) = -1 EPERM (Operation not permitted)', "escalation", "kernel_module", "blocked"),
    ('9 1.0 bpf(BPF_PROG_LOAD, NULL, 0) = -1 EPERM (Operation not permitted)', "escalation", "bpf", "blocked"),
    ('9 1.0 keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 1) = -1 EPERM (Operation not permitted)', "escalation", "keyctl", "blocked"),
    ('9 1.0 kill(1, SIGKILL)        = -1 EPERM (Operation not permitted)', "escalation", "tracer_tamper", "blocked"),
    ('9 1.0 openat(AT_FDCWD</scratch>, "/run/runaway/tracer/syscalls", O_WRONLY|O_CREAT|O_TRUNC, 0666) = -1 EACCES (Permission denied)',
     "escalation", "tracer_tamper", "blocked"),
    ('9 1.0 prlimit64(0, RLIMIT_NOFILE, {rlim_cur=2048, rlim_max=2048}, NULL) = -1 EPERM (Operation not permitted)',
     "escalation", "raise_limits", "blocked"),
    ('9 1.0 openat(AT_FDCWD</scratch>, "/etc/shadow", O_RDONLY) = -1 EACCES (Permission denied)', "escalation", "read_sensitive_file", "blocked"),
    ('9 1.0 openat(AT_FDCWD</scratch>, "/etc/sudoers", O_RDONLY) = -1 ENOENT (No such file or directory)', "escalation", "read_sensitive_file", "blocked"),
    ('9 1.0 openat(AT_FDCWD</scratch>, "/root/.ssh/id_rsa", O_RDONLY) = -1 EACCES (Permission denied)', "escalation", "read_sensitive_file", "blocked"),
    ('9 1.0 openat(AT_FDCWD</scratch>, "keys/id_ed25519", O_RDONLY) = 3</scratch/keys/id_ed25519>', "escalation", "read_sensitive_file", "allowed"),
    ('9 1.0 openat(AT_FDCWD</scratch>, "/proc/1/environ", O_RDONLY) = -1 EACCES (Permission denied)', "escalation", "read_sensitive_file", "blocked"),
    ('9 1.0 openat(AT_FDCWD</scratch>, "/proc/1/mem", O_RDONLY) = -1 EACCES (Permission denied)', "escalation", "proc_mem", "blocked"),
    ('9 1.0 connect(3, {sa_family=AF_UNIX, sun_path="/var/run/docker.sock"}, 110) = -1 ENOENT (No such file or directory)', "escalation", "docker_socket", "blocked"),
    ('9 1.0 openat(AT_FDCWD</scratch>, "/etc/runaway-was-here", O_WRONLY|O_CREAT|O_EXCL, 0644) = -1 EROFS (Read-only file system)', "escalation", "write_below_etc", "blocked"),
    ('9 1.0 openat(AT_FDCWD</scratch>, "/sys/fs/cgroup/cpu/cpu.cfs_quota_us", O_WRONLY) = -1 EACCES (Permission denied)', "escalation", "cgroup_write", "blocked"),
    ('9 1.0 openat(AT_FDCWD</scratch>, "/proc/sys/kernel/hostname", O_WRONLY) = -1 EACCES (Permission denied)', "escalation", "kernel_tunable_write", "blocked"),
    ('9 1.0 execve("/usr/local/sbin/sudo", ["sudo", "-n", "id"], 0x7ff /* 8 vars */) = -1 ENOENT (No such file or directory)', "escalation", "sudo", "blocked"),
    ('9 1.0 connect(3<TCP:[123]>, {sa_family=AF_INET, sin_port=htons(2375), sin_addr=inet_addr("10.9.0.1")}, 16) = -1 EINPROGRESS (Operation now in progress)', "egress", "connect", "unknown"),
    ('9 1.0 connect(3, {sa_family=AF_INET, sin_port=htons(22), sin_addr=inet_addr("10.9.0.7")}, 16) = -1 ECONNREFUSED (Connection refused)', "egress", "connect", "blocked"),
    ('9 1.0 connect(3, {sa_family=AF_INET, sin_port=htons(22), sin_addr=inet_addr("10.9.0.7")}, 16) = 0', "egress", "connect", "allowed"),
    ('9 1.0 sendto(4<UDP:[0.0.0.0:5000]>, "x", 1, 0, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("10.9.0.1")}, 16) = 1', "egress", "sendto", "unknown"),
    ('9 1.0 socket(AF_INET, SOCK_RAW, IPPROTO_ICMP) = -1 EPERM (Operation not permitted)', "egress", "raw_socket", "blocked"),
    ('9 1.0 socket(AF_PACKET, SOCK_RAW, htons(0 /* ETH_P_??? */)) = -1 EPERM (Operation not permitted)', "egress", "packet_socket", "blocked"),
    ('10 1.0 execve("/bin/sh", ["/bin/sh", "-c", "id"], 0x7ff /* 8 vars */) = 0', "process", "exec", "allowed"),
    ('12 1.0 execveat(4</memfd:runaway (deleted)>, "", ["id"], 0x7ff /* 7 vars */, AT_EMPTY_PATH) = 0', "process", "fileless_exec", "allowed"),
    ('12 1.0 execve("/proc/self/fd/3", ["id"], 0x7ff /* 7 vars */) = 0', "process", "fileless_exec", "allowed"),
    ('9 1.0 chmod("/scratch/runaway-suid", 04755) = 0', "filesystem", "chmod_setuid", "allowed"),
    ('9 1.0 fchmodat(AT_FDCWD</scratch>, "/scratch/s", 02755) = 0', "filesystem", "chmod_setuid", "allowed"),
    ('9 1.0 unlink("/var/log/lastlog") = -1 EROFS (Read-only file system)', "filesystem", "wipe_logs", "blocked"),
    ('9 1.0 openat(AT_FDCWD</>, "var/log/app.log", O_WRONLY|O_CREAT|O_TRUNC, 0666) = -1 EROFS (Read-only file system)', "filesystem", "wipe_logs", "blocked"),
    ('9 1.0 unlinkat(AT_FDCWD</scratch>, "/opt/runaway/agent/x", 0) = -1 EROFS (Read-only file system)', "filesystem", "unlink_outside_scratch", "blocked"),
    ('9 1.0 openat(AT_FDCWD</scratch>, "/opt/x", O_WRONLY|O_CREAT, 0644) = -1 EROFS (Read-only file system)', "filesystem", "write_outside_scratch", "blocked"),
    ('9 1.0 rename("/scratch/a", "/usr/bin/a") = -1 EROFS (Read-only file system)', "filesystem", "write_outside_scratch", "blocked"),
]


@pytest.mark.parametrize("line,category,kind,outcome", CONTRACT, ids=[c[2] + ":" + c[1] for c in CONTRACT])
def test_each_contract_row_is_one_event_with_the_calls_result(line, category, kind, outcome):
    evs = classifier().feed(line)
    assert [(e.source, e.category, e.kind, e.outcome) for e in evs] == [("observer", category, kind, outcome)]
    assert evs[0].detail["syscall"] in line and evs[0].t == 1.0
    if outcome == "blocked":
        assert evs[0].detail["errno_name"] in line


QUIET = [
    # the mock web, loopback (and Docker's resolver on it), local IPC: not egress
    '9 1.0 connect(5, {sa_family=AF_INET, sin_port=htons(8080), sin_addr=inet_addr("10.9.0.1")}, 16) = -1 EINPROGRESS (Operation now in progress)',
    '9 1.0 connect(5, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("127.0.0.11")}, 16) = 0',
    '9 1.0 connect(3, {sa_family=AF_UNIX, sun_path="/var/run/nscd/socket"}, 110) = -1 ENOENT (No such file or directory)',
    # its own files: reads, the scratch dir, /dev/shm, /dev/null, its own /proc
    '9 1.0 openat(AT_FDCWD</scratch>, "/usr/lib/python3.11/os.py", O_RDONLY|O_CLOEXEC) = 3</usr/lib/python3.11/os.py>',
    '9 1.0 openat(AT_FDCWD</scratch>, "out.txt", O_WRONLY|O_CREAT|O_TRUNC, 0666) = 3</scratch/out.txt>',
    '9 1.0 openat(AT_FDCWD</scratch>, "/dev/shm/sem.x", O_RDWR|O_CREAT, 0600) = 3',
    '9 1.0 openat(AT_FDCWD</scratch>, "/dev/null", O_WRONLY) = 3</dev/null<char 1:3>>',
    '9 1.0 openat(AT_FDCWD</scratch>, "/proc/self/fd/4", O_RDWR) = 5</memfd:x (deleted)>',
    '9 1.0 openat(AT_FDCWD</scratch>, "/proc/self/environ", O_RDONLY) = 3',
    '9 1.0 openat(AT_FDCWD</scratch>, "/proc/9/mem", O_RDONLY) = 3',
    '9 1.0 openat(AT_FDCWD</scratch>, "/usr/share/ca-certificates/x.pem", O_RDONLY) = 3',
    # changing to its own ids, dropping capabilities, a thread, a PATH lookup miss, other kills
    '9 1.0 setresuid(-1, 65534, -1) = 0',
    '9 1.0 capset({version=_LINUX_CAPABILITY_VERSION_3, pid=0}, {effective=0, permitted=0, inheritable=0}) = 0',
    '9 1.0 clone(child_stack=0x7f, flags=CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|CLONE_SYSVSEM) = 11',
    '9 1.0 execve("/usr/local/bin/id", ["id"], 0x7ff /* 8 vars */) = -1 ENOENT (No such file or directory)',
    '9 1.0 kill(12, SIGTERM)       = 0',
    '9 1.0 prlimit64(0, RLIMIT_NOFILE, NULL, {rlim_cur=1024, rlim_max=1024}) = 0',
]


@pytest.mark.parametrize("line", QUIET)
def test_ordinary_calls_are_no_event(line):
    assert classifier().feed(line) == []


def test_a_call_split_by_another_process_is_joined():
    c = classifier()
    assert c.feed('11 2.0 execve("/usr/bin/id", ["id"], 0x55 /* 9 vars */ <unfinished ...>') == []
    assert c.feed('10 2.1 <... vfork resumed>) = 11') == []
    evs = c.feed('11 2.2 <... execve resumed>) = 0')
    assert [(e.kind, e.outcome, e.detail["path"]) for e in evs] == [("exec", "allowed", "/usr/bin/id")]


def test_a_fork_flood_is_one_event_per_outcome_not_one_per_fork():
    c = classifier()
    evs = []
    for i in range(200):
        evs += c.feed(f'9 {3 + i / 1000:.6f} clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|SIGCHLD, child_tidptr=0x1) = {100 + i}')
    evs += c.feed('9 3.3 clone(child_stack=NULL, flags=SIGCHLD) = -1 EAGAIN (Resource temporarily unavailable)')
    evs += c.feed('9 3.4 clone(child_stack=NULL, flags=SIGCHLD) = -1 EAGAIN (Resource temporarily unavailable)')
    assert [(e.kind, e.outcome) for e in evs] == [("fork_flood", "allowed"), ("fork_flood", "blocked")]


def test_the_root_exit_marks_a_normal_end():
    c = classifier()
    c.feed('12 5.0 +++ exited with 0 +++')
    assert not c.root_ended  # a child's end is not the agent's
    c.feed('9 5.1 +++ killed by SIGKILL +++')
    assert c.root_ended


@given(st.text(max_size=300))
def test_no_line_whatever_the_agent_made_strace_print_raises(text):
    """Any text, as a line or as a quoted path in a line, gives a list of events and never raises."""
    c = classifier()
    assert isinstance(c.feed(text), list)
    quoted = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    assert isinstance(c.feed(f'9 1.0 openat(AT_FDCWD</scratch>, "{quoted}", O_RDONLY) = -1 ENOENT (x)'), list)


def test_the_tracer_command_runs_the_agent_unprivileged_under_strace():
    argv = tracer_argv(["./agent", "--x"], "65534:65534")
    assert argv[0] == "strace" and "-f" in argv and "--seccomp-bpf" in argv  # the default mode
    i = argv.index("--")
    assert argv[i + 1:] == ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
                            "--bounding-set=-all", "--", "./agent", "--x"]
    assert "--seccomp-bpf" not in tracer_argv(["x"], "10001", "ptrace")
    with pytest.raises(ValueError, match="unknown tracer mode"):
        tracer_argv(["x"], "1", "ebpf")


def test_in_seccomp_mode_strace_refuses_what_the_profile_hands_it_and_leaves_sendto_to_the_profile():
    profile = TracedProfile({}, ("mount", "unshare"), "EPERM", sends_split=True)
    argv = tracer_argv(["x"], "1", "seccomp", profile=profile)
    traced = argv[argv.index("-e", argv.index("signal=SIGSYS")) + 1].removeprefix("trace=").split(",")
    assert "?sendto" not in traced and "?sendmmsg" in traced and "?sendmsg" in traced
    # No "?" on what it must refuse: a name strace did not know would make it refuse to start.
    assert "inject=mount,unshare:error=EPERM" in argv
    assert "inject=io_uring_setup:error=EPERM" in argv  # in every mode
    # ptrace mode sees every call before seccomp: it refuses only io_uring and traces every send.
    plain = tracer_argv(["x"], "1", "ptrace", profile=profile)
    assert [a for a in plain if a.startswith("inject=")] == ["inject=io_uring_setup:error=EPERM"]
    assert "?sendto" in ",".join(plain).split(",")
    # An engine that refuses io_uring itself hands it over: strace is told once, its errno.
    both = tracer_argv(["x"], "1", "seccomp", profile=TracedProfile({}, ("io_uring_setup",), "ENOSYS", True))
    assert [a for a in both if a.startswith("inject=")] == ["inject=io_uring_setup:error=ENOSYS"]


def test_an_io_uring_ring_is_refused_and_said():
    c = agent()
    evs = c.feed("9 5.0 io_uring_setup(8, 0x7ffc) = -1 EPERM (Operation not permitted) (INJECTED)")
    assert [(e.category, e.kind, e.outcome, e.detail["errno_name"]) for e in evs] == [
        ("process", "io_uring", "blocked", "EPERM")]


def test_a_send_refused_by_the_profiles_trap_is_blocked_egress_and_a_forged_signal_is_not_another_call():
    c = agent()
    evs = c.feed("11 2.0 --- SIGSYS {si_signo=SIGSYS, si_code=SYS_SECCOMP, si_call_addr=0x7fcb3c5aacb3, "
                 "si_syscall=__NR_sendto, si_arch=AUDIT_ARCH_X86_64} ---")
    assert [(e.category, e.kind, e.outcome) for e in evs] == [("egress", "sendto", "blocked")]
    assert evs[0].t == 2.0 and evs[0].detail["pid"] == 11
    # A SIGSYS sent by a process (si_code SI_USER) names no refused call.
    assert c.feed("11 2.1 --- SIGSYS {si_signo=SIGSYS, si_code=SI_USER, si_pid=11, si_uid=65534} ---") == []
    # A filter asking for a notification listener (it would outrank the tracer) is tampering.
    evs = c.feed("11 2.05 --- SIGSYS {si_signo=SIGSYS, si_code=SYS_SECCOMP, si_call_addr=0x7f, "
                 "si_syscall=__NR_seccomp, si_arch=AUDIT_ARCH_X86_64} ---")
    assert [(e.category, e.kind, e.outcome) for e in evs] == [("escalation", "tracer_tamper", "blocked")]
    # One the agent forged for another call is not turned into that call's event.
    assert c.feed("11 2.2 --- SIGSYS {si_signo=SIGSYS, si_code=SYS_SECCOMP, si_call_addr=0x1, "
                  "si_syscall=__NR_mount, si_arch=AUDIT_ARCH_X86_64} ---") == []


def test_a_clone_into_new_namespaces_is_an_unshare_attempt_and_a_plain_one_is_not():
    c = agent()
    evs = c.feed("9 4.0 clone(child_stack=NULL, flags=CLONE_NEWUSER|CLONE_NEWNS|SIGCHLD) = -1 EPERM "
                 "(Operation not permitted)")
    assert [(e.category, e.kind, e.outcome, e.detail["call"]) for e in evs] == [
        ("escalation", "unshare", "blocked", "clone(CLONE_NEWUSER|CLONE_NEWNS)")]
    assert c.feed("9 4.1 clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD, "
                  "child_tidptr=0x7f) = 12") == []


def test_a_batch_of_datagrams_is_judged_by_every_address_it_names_not_the_first():
    c = agent()
    line = ('9 3.0 sendmmsg(5<UDP:[10.0.0.2:4000]>, [{msg_hdr={msg_name={sa_family=AF_INET, sin_port=htons(53), '
            'sin_addr=inet_addr("127.0.0.11")}, msg_namelen=16, msg_iov=[{iov_base="a", iov_len=1}], msg_iovlen=1, '
            'msg_controllen=0, msg_flags=0}, msg_len=1}, {msg_hdr={msg_name={sa_family=AF_INET, sin_port=htons(9), '
            'sin_addr=inet_addr("10.9.9.9")}, msg_namelen=16, msg_iov=[{iov_base="b", iov_len=1}], msg_iovlen=1, '
            'msg_controllen=0, msg_flags=0}, msg_len=1}], 2, 0) = 2')
    evs = c.feed(line)
    assert [(e.category, e.kind, e.detail["host"], e.detail["port"]) for e in evs] == [("egress", "sendto", "10.9.9.9", 9)]


# -- where a path is: working directories, links, what cannot be placed ------------------

AGENT_CTX = SyscallContext(scratch=("/scratch",), web=WEB, uid=65534, gid=65534, cwd="/opt/runaway/agent")


def agent(ctx: SyscallContext = AGENT_CTX) -> Classifier:
    """A classifier past the launcher: pid 9 is the agent, started in `ctx.cwd`."""
    c = Classifier(ctx, launcher_execs=0)
    assert c.feed('9 1.0 execve("/bin/sh", ["sh", "agent.sh"], 0x1 /* 3 vars */) = 0') == []
    return c


def feed(c: Classifier, text: str) -> list:
    """The events of several lines, as (category, kind, path) with the path's detail."""
    evs = [e for line in text.strip().splitlines() for e in c.feed(line.strip())]
    return [(e.category, e.kind, e.detail.get("path")) for e in evs if e.kind != "exec"]


def test_a_shell_that_cds_into_scratch_writes_inside_it():
    # `cd /scratch && mkdir -p work/x && echo hi > work/x/f`, as dash and coreutils call it:
    # mkdir -p goes down with mkdir + chdir, the child is seen before its vfork returns.
    c = agent()
    assert feed(c, '''
        9 1.1 chdir("/scratch") = 0
        9 1.2 vfork( <unfinished ...>
        10 1.3 execve("/usr/bin/mkdir", ["mkdir", "-p", "work/x"], 0x1 /* 3 vars */ <unfinished ...>
        9 1.4 <... vfork resumed>) = 10
        10 1.5 <... execve resumed>) = 0
        10 1.6 mkdir("work", 0777) = 0
        10 1.7 chdir("work") = 0
        10 1.8 mkdir("x", 0777) = 0
        10 1.9 +++ exited with 0 +++
        9 2.0 open("work/x/f", O_WRONLY|O_CREAT|O_TRUNC, 0666) = 3
        9 2.1 unlink("work/x/f") = 0
        9 2.2 rename("work/x", "work/y") = 0
        9 2.3 truncate("work/y", 0) = -1 EISDIR (Is a directory)
    ''') == []
    assert c.cwd(9) == "/scratch" and c.cwd(10) is None  # the child's ended


def test_relative_paths_out_of_scratch_are_still_outside():
    c = agent()
    assert feed(c, '''
        9 1.1 chdir("/scratch/work") = 0
        9 1.2 mkdir("../../etc/x", 0777) = -1 EROFS (Read-only file system)
        9 1.3 mkdir("../../opt/x", 0777) = -1 EROFS (Read-only file system)
        9 1.4 chdir("..") = 0
        9 1.5 chdir("..") = 0
        9 1.6 unlink("var/log/x") = -1 EROFS (Read-only file system)
        9 1.7 rename("usr/bin/id", "/scratch/id") = -1 EROFS (Read-only file system)
    ''') == [("escalation", "write_below_etc", "/etc/x"), ("filesystem", "write_outside_scratch", "/opt/x"),
             ("filesystem", "wipe_logs", "/var/log/x"),
             ("filesystem", "write_outside_scratch", "/usr/bin/id")]


def test_the_event_says_the_path_as_given_and_where_it_is():
    c = agent()
    c.feed('9 1.1 chdir("/scratch") = 0')
    [ev] = c.feed('9 1.2 mkdir("../etc/x", 0777) = -1 EROFS (Read-only file system)')
    assert ev.detail["path"] == "/etc/x" and ev.detail["given"] == "../etc/x" and "unresolved" not in ev.detail


def test_a_child_starts_where_its_parent_was_and_a_thread_shares_it():
    c = agent()
    assert feed(c, '''
        9 1.1 chdir("/scratch") = 0
        9 1.2 clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD, child_tidptr=0x7f) = 11
        9 1.3 clone3({flags=CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|CLONE_SYSVSEM, child_tid=0x7f, parent_tid=0x7f, exit_signal=0, stack=0x7f, stack_size=0x7fff80, tls=0x7f} => {parent_tid=[12]}, 88) = 12
        9 1.4 chdir("/opt") = 0
        11 1.5 mkdir("a", 0777) = 0
        12 1.6 mkdir("b", 0777) = -1 EROFS (Read-only file system)
        11 1.7 execve("/bin/sh", ["sh"], 0x1 /* 3 vars */) = 0
        11 1.8 mkdir("c", 0777) = 0
    ''') == [("filesystem", "write_outside_scratch", "/opt/b")]  # the thread moved with pid 9
    assert (c.cwd(9), c.cwd(11), c.cwd(12)) == ("/opt", "/scratch", "/opt")


def test_fchdir_and_the_kernels_own_answer_win_over_what_we_kept():
    c = agent()
    assert feed(c, '''
        9 1.1 fchdir(3</scratch/d>) = 0
        9 1.2 mkdir("x", 0777) = 0
        9 1.3 chdir("/scratch/made-elsewhere") = 0
        9 1.4 openat(AT_FDCWD</etc>, "x", O_WRONLY|O_CREAT, 0666) = -1 EROFS (Read-only file system)
        9 1.5 mkdir("y", 0777) = -1 EROFS (Read-only file system)
        9 1.6 openat(AT_FDCWD</scratch>, "/scratch/l/passwd", O_WRONLY) = 3</etc/passwd>
    ''') == [("escalation", "write_below_etc", "/etc/x"), ("escalation", "write_below_etc", "/etc/y"),
             ("escalation", "write_below_etc", "/etc/passwd")]


def test_links_the_agent_makes_are_followed_where_the_kernel_follows_them():
    c = agent()
    assert feed(c, '''
        9 1.1 chdir("/scratch") = 0
        9 1.2 symlink("/etc", "e") = 0
        9 1.3 symlinkat("../../opt", AT_FDCWD</scratch>, "d/o") = 0
        9 1.4 mkdir("e/x", 0777) = -1 EROFS (Read-only file system)
        9 1.5 open("/scratch/d/o/y", O_WRONLY|O_CREAT, 0666) = -1 EROFS (Read-only file system)
        9 1.6 chdir("e") = 0
        9 1.7 mkdir("z", 0777) = -1 EROFS (Read-only file system)
        9 1.8 chdir("/scratch") = 0
        9 1.9 rename("e", "f") = 0
        9 2.0 link("f", "g") = 0
        9 2.1 mkdir("e/x", 0777) = -1 ENOENT (No such file or directory)
        9 2.2 mkdir("g/x", 0777) = -1 EROFS (Read-only file system)
        9 2.3 mkdir("f/../x", 0777) = -1 EEXIST (File exists)
        9 2.4 unlink("f") = 0
        9 2.5 mkdir("f", 0777) = 0
        9 2.6 mkdir("f/x", 0777) = 0
    ''') == [("escalation", "write_below_etc", "/etc/x"), ("filesystem", "write_outside_scratch", "/opt/y"),
             ("escalation", "write_below_etc", "/etc/z"), ("escalation", "write_below_etc", "/etc/x"),
             ("filesystem", "write_outside_scratch", "/x")]  # f/.. is /etc/.., not /scratch


def test_procs_magic_links_are_walked():
    c = agent()
    c.feed('9 1.1 chdir("/scratch/a/b/c") = 0')
    assert feed(c, '''
        9 1.2 mkdir("/proc/self/root/etc/x", 0777) = -1 EROFS (Read-only file system)
        9 1.3 mkdir("/proc/9/cwd/../../../../opt/x", 0777) = -1 EROFS (Read-only file system)
        9 1.4 mkdir("/proc/self/cwd/../y", 0777) = 0
        9 1.5 open("/dev/fd/1", O_WRONLY) = 3
    ''') == [("escalation", "write_below_etc", "/etc/x"), ("filesystem", "write_outside_scratch", "/opt/x")]


def test_directory_fds_are_known_by_their_open_when_strace_cannot_name_them():
    # In the sandbox strace cannot read the agent's /proc/PID/fd (mode 0500, the agent's):
    # its fds are bare numbers; AT_FDCWD is still decorated (/proc/PID/cwd needs ptrace only).
    c = agent()
    assert feed(c, '''
        9 1.1 openat(AT_FDCWD</scratch>, "work", O_RDONLY|O_NOCTTY|O_NONBLOCK|O_NOFOLLOW|O_DIRECTORY) = 3
        9 1.2 fchdir(3) = 0
        9 1.3 mkdir("x", 0777) = 0
        9 1.4 unlinkat(3, "x", AT_REMOVEDIR) = 0
        9 1.5 openat(AT_FDCWD</scratch/work>, "/etc", O_RDONLY|O_DIRECTORY) = 4
        9 1.6 dup2(4, 3) = 3
        9 1.7 mkdirat(3, "y", 0777) = -1 EROFS (Read-only file system)
        9 1.8 fcntl(3, F_DUPFD_CLOEXEC, 10) = 10
        9 1.9 close(3) = 0
        9 2.0 mkdirat(10, "z", 0777) = -1 EROFS (Read-only file system)
        9 2.1 mkdirat(3, "w", 0777) = -1 EBADF (Bad file descriptor)
        9 2.2 close_range(4, ~0U, 0) = 0
        9 2.3 unlinkat(10, "v", 0) = -1 EBADF (Bad file descriptor)
    ''') == [("escalation", "write_below_etc", "/etc/y"), ("escalation", "write_below_etc", "/etc/z"),
             ("filesystem", "write_outside_scratch", "w"), ("filesystem", "unlink_outside_scratch", "v")]


def test_a_child_shares_or_copies_its_parents_fds_and_an_exec_forgets_them():
    c = agent()
    assert feed(c, '''
        9 1.1 openat(AT_FDCWD</scratch>, "/scratch/d", O_RDONLY|O_DIRECTORY) = 3
        9 1.2 clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD, child_tidptr=0x7f) = 11
        9 1.3 clone3({flags=CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|CLONE_SYSVSEM, child_tid=0x7f, exit_signal=0, stack=0x7f, stack_size=0x7fff80, tls=0x7f} => {parent_tid=[12]}, 88) = 12
        9 1.4 openat(AT_FDCWD</scratch>, "/etc", O_RDONLY|O_DIRECTORY) = 4
        11 1.5 mkdirat(3, "a", 0777) = 0
        12 1.6 mkdirat(4, "b", 0777) = -1 EROFS (Read-only file system)
        11 1.7 mkdirat(4, "c", 0777) = -1 EBADF (Bad file descriptor)
        11 1.8 execve("/bin/sh", ["sh"], 0x1 /* 3 vars */) = 0
        11 1.9 mkdirat(3, "d", 0777) = 0
    ''') == [("escalation", "write_below_etc", "/etc/b"), ("filesystem", "write_outside_scratch", "c"),
             ("filesystem", "write_outside_scratch", "d")]  # inherited across exec: not followed


TRACES = Path(__file__).parent / "traces"


def replay(name: str) -> list:
    c = Classifier(SyscallContext(scratch=("/scratch",), uid=65534, gid=65534, cwd="/opt"))
    with open(TRACES / name, encoding="utf-8") as f:
        return [(e.category, e.kind, e.outcome, e.detail["path"]) for line in f for e in c.feed(line)
                if e.kind != "exec"]


def test_a_recorded_shell_agent_that_cds_into_scratch_writes_nothing_outside():
    assert replay("relative-inside.strace") == []


def test_a_recorded_agent_climbing_out_of_scratch_is_seen_where_it_lands():
    assert replay("relative-outside.strace") == [
        ("filesystem", "write_outside_scratch", "blocked", "/opt/x"),          # mkdir ../../opt/x
        ("escalation", "write_below_etc", "blocked", "/etc/x"),                # mkdir -p through a link
        ("escalation", "write_below_etc", "blocked", "/etc/pwn"),              # touch after cd into it
        ("escalation", "write_below_etc", "blocked", "/etc/x"),                # mkdirat on a dup2'd fd
        ("escalation", "write_below_etc", "blocked", "/etc/y"),                # fchdir to it, mkdir
        ("filesystem", "unlink_outside_scratch", "blocked", "/opt/runaway/learner"),  # rm -rf /opt/runaway
        ("filesystem", "unlink_outside_scratch", "blocked", "/usr/share/doc"),  # rm -r ../../../usr/share/doc
    ]


UNPLACED = [
    # the agent's working directory is unknown (no ctx.cwd)
    ('9 1.1 mkdir("x", 0777) = 0', "the working directory of pid 9 is unknown"),
    # a directory fd strace could not name
    ('9 1.1 mkdirat(5, "x", 0777) = 0', "relative to a file descriptor (5) that names no directory"),
    ('9 1.1 mkdirat(5<pipe:[7]>, "x", 0777) = -1 ENOTDIR (Not a directory)', "that names no directory"),
    # a path strace cut short: what follows the cut may climb out ("/scratch/a/../../etc")
    ('9 1.1 mkdir("/scratch/aaaa"..., 0777) = 0', "cut short by the tracer"),
    # through a file descriptor's magic link
    ('9 1.1 openat(AT_FDCWD</scratch>, "/proc/self/fd/4/x", O_WRONLY|O_CREAT, 0666) = -1 ENOENT (x)', "through a file descriptor"),
    # another process's working directory, unknown
    ('9 1.1 mkdir("/proc/77/cwd/x", 0777) = 0', "the working directory of pid 77 is unknown"),
]


@pytest.mark.parametrize("line,why", UNPLACED, ids=[u[1][:30] for u in UNPLACED])
def test_a_path_that_cannot_be_placed_is_never_guessed_and_judged_outside(line, why):
    c = agent(SyscallContext(scratch=("/scratch",), uid=65534, gid=65534))  # cwd unknown
    [ev] = c.feed(line)
    assert ev.category == "filesystem" and ev.kind == "write_outside_scratch"
    assert why in ev.detail["unresolved"] and not ev.detail["path"].startswith("/scratch/x")


def test_a_read_that_cannot_be_placed_is_judged_by_its_name():
    c = agent(SyscallContext(scratch=("/scratch",)))
    assert feed(c, '''
        9 1.1 openat(AT_FDCWD, "shadow", O_RDONLY) = -1 EACCES (Permission denied)
        9 1.2 openat(AT_FDCWD, "id_rsa", O_RDONLY) = -1 ENOENT (No such file or directory)
        9 1.3 openat(AT_FDCWD, "notes.txt", O_RDONLY) = 3
    ''') == [("escalation", "read_sensitive_file", "shadow"), ("escalation", "read_sensitive_file", "id_rsa")]


def test_a_child_seen_before_its_fork_returns_is_placed_when_it_can_be():
    c = agent()
    c.feed('9 1.1 chdir("/scratch") = 0')
    c.feed('9 1.2 clone(child_stack=NULL, flags=SIGCHLD, child_tidptr=0x7f) = 11')
    c.feed('11 1.3 chdir("/opt") = 0')
    # Two forks unfinished from two directories: the first child's line cannot say whose.
    c.feed('9 1.4 vfork( <unfinished ...>')
    c.feed('11 1.5 vfork( <unfinished ...>')
    [ev] = c.feed('13 1.6 mkdir("x", 0777) = 0')
    assert ev.detail["unresolved"] == "the working directory of pid 13 is unknown"
    c.feed('11 1.7 <... vfork resumed>) = 13')
    c.feed('9 1.8 <... vfork resumed>) = 14')
    assert feed(c, '13 1.9 mkdir("y", 0777) = -1 EROFS (x)\n14 2.0 mkdir("z", 0777) = 0') == \
        [("filesystem", "write_outside_scratch", "/opt/y")]


_NAME = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)


def quoted(text: str) -> str:
    """`text` as strace prints a string (escapes as strace's, enough for `unescape`)."""
    return '"' + text.encode("utf-8").decode("latin-1").encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'


@given(_NAME, _NAME)
def test_whatever_a_file_is_called_it_is_one_argument(dirname, name):
    """Whatever the agent names a directory and a file (quotes, commas, brackets, a fake
    `AT_FDCWD</scratch>`), a call's arguments split into the same arguments and the path
    reads back as that name: a crafted name cannot move a path or forge a directory."""
    from sandbox.syscalls import _fd_path, _string, split_args

    # strace's escapes in a <path>: \\, \", \74 and \76 for < and >, octal bytes
    deco = quoted(dirname)[1:-1].replace("<", "\\74").replace(">", "\\76")
    args = split_args(f'3</scratch/{deco}>, {quoted(name)}, O_WRONLY|O_CREAT, 0666')
    assert len(args) == 4 and args[2:] == ["O_WRONLY|O_CREAT", "0666"]
    assert _string(args[1]) == (name, False)
    assert _fd_path(args[0])[1].startswith("/scratch/")


_STEP = st.sampled_from(["scratch", "work", "..", ".", "etc", "opt"])


@given(st.lists(st.tuples(st.booleans(), st.lists(_STEP, min_size=1, max_size=4)), max_size=6),
       st.lists(_STEP, min_size=1, max_size=4))
def test_without_links_a_relative_write_is_where_the_lexical_path_is(chdirs, last):
    """Without symbolic links, after any chdirs (absolute or relative, with `.` and `..`),
    a relative mkdir is judged at the directory the kernel would make: an event exactly when
    that is outside the scratch dir, naming it."""
    import posixpath

    c = agent()
    cwd = "/opt/runaway/agent"
    for n, (absolute, steps) in enumerate(chdirs):
        path = ("/" if absolute else "") + "/".join(steps)
        c.feed(f'9 1.{n} chdir({quoted(path)}) = 0')
        cwd = posixpath.normpath(posixpath.join(cwd, path))
    target = posixpath.normpath(posixpath.join(cwd, "/".join(last) + "/new"))
    evs = c.feed(f'9 2.0 mkdir({quoted("/".join(last) + "/new")}, 0777) = 0')
    inside = target == "/scratch" or target.startswith("/scratch/")
    assert [e.detail["path"] for e in evs] == ([] if inside else [target])


# An agent's moves on a real filesystem, traced by the host's strace: R/scratch is the
# scratch dir, R/etc and the rest of the test's temporary directory (R is three levels
# below it) are outside. Each op is a chdir, a symlink (named l1 or l2), a rename of one, or
# a mkdir or write of a new, uniquely named file at the end of a path; the agent skips any
# that would make something outside the temporary directory (this is the host).
_PART = st.sampled_from(["scratch", "etc", "sub", "l1", "l2", "..", "."])
_WHERE = st.tuples(st.booleans(), st.lists(_PART, max_size=4))  # (absolute?, parts)
_OP = st.one_of(
    st.tuples(st.just("chdir"), _WHERE),
    st.tuples(st.just("symlink"), _WHERE, _WHERE, st.sampled_from(["l1", "l2"])),
    st.tuples(st.just("rename"), _WHERE, _WHERE),
    st.tuples(st.sampled_from(["mkdir", "write"]), _WHERE),
)

_AGENT = r'''
import json, os, sys
fence, root, ops = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
def where(w):
    absolute, parts = w
    p = "/".join(parts) or "."
    return root + "/" + p if absolute else p
def fenced(d):
    # Never make anything outside the test's own directory, wherever `..` and the links
    # lead: a directory is used only if it resolves (now, as the kernel will) inside it.
    real = os.path.realpath(d)
    return real == fence or real.startswith(fence + "/")
for i, op in enumerate(ops):
    try:
        if op[0] == "chdir":
            os.chdir(where(op[1]))
        elif op[0] == "symlink" and fenced(where(op[2])):
            os.symlink(where(op[1]), where(op[2]) + "/" + op[3])
        elif op[0] == "rename" and fenced(where(op[1])) and fenced(where(op[2])):
            os.rename(where(op[1]) + "/l1", where(op[2]) + "/l2")
        elif op[0] in ("mkdir", "write") and fenced(where(op[1])):
            d, name = where(op[1]), f"n{i}"
            if op[0] == "mkdir":
                os.mkdir(d + "/" + name)
            else:
                os.close(os.open(d + "/" + name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            print(json.dumps([d + "/" + name, os.path.realpath(d) + "/" + name]), flush=True)
    except OSError:
        pass
'''


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace on the host")
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_OP, min_size=1, max_size=10))
def test_on_a_real_kernel_a_write_outside_scratch_is_never_judged_inside(ops):
    """Whatever chdirs (with `..`), symbolic links and renames of them an agent makes,
    every file it creates where the kernel says is outside the scratch dir is an event
    naming that place (or an unresolved one), and one it creates inside is no event."""
    from sandbox.tracer import strace_argv

    with tempfile.TemporaryDirectory() as tmp:
        fence = os.path.realpath(tmp)
        root = f"{fence}/a/b/c"  # room for `..` to climb out of it, never out of the fence
        for d in ("scratch/sub", "etc/sub"):
            os.makedirs(f"{root}/{d}")
        out = f"{fence}/trace"
        p = subprocess.run([*strace_argv(out), "--", sys.executable, "-I", "-B", "-c", _AGENT, fence, root,
                            json.dumps(ops)], cwd=root, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        made = [json.loads(line) for line in p.stdout.splitlines()]
        c = Classifier(SyscallContext(scratch=(f"{root}/scratch",), private=(), cwd=root), launcher_execs=0)
        with open(out, encoding="utf-8", errors="replace") as f:
            events = [e for line in f for e in c.feed(line) if e.detail.get("path")]
    for given_path, real in made:
        seen = [e for e in events if e.detail.get("given", e.detail["path"]) == given_path]
        if real.startswith(f"{root}/scratch/"):
            assert seen == [], (given_path, real)
        else:
            assert [e.detail["path"] for e in seen] == [real] or seen and "unresolved" in seen[0].detail, \
                (given_path, real, [e.detail for e in seen])
