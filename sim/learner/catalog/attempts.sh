#!/bin/sh
# The escape and escalation catalog as a shell script: coreutils, util-linux and child
# Python interpreters started without the audit hook. Only a syscall-level observer sees
# these; `runaway selftest` runs this file in the sandbox as `sh attempts.sh`.
#
# Each attempt prints one protocol line with its own account of the result (the exit status
# of the command that tried):
#   @runaway {"type":"attempt","name":...,"category":...,"kind":...,"outcome":"blocked"|"allowed",...}
# The selftest judges detection from the observer's events, never from these lines.
#
# Network safety: the only address it connects to is the first of RUNAWAY_NET_TARGETS (the
# sandbox's own gateway), and only if it is a private address.

S=${RUNAWAY_SCRATCH:-/tmp}

report() {  # name category kind status [extra json members]
    if [ "$4" -eq 0 ]; then o=allowed; else o=blocked; fi
    printf '@runaway {"type":"attempt","name":"%s","category":"%s","kind":"%s","outcome":"%s","errno":null,"detail":{"exit":%d%s}}\n' \
        "$1" "$2" "$3" "$o" "$4" "${5:+,$5}"
}

try() {  # name category kind command...
    n=$1 c=$2 k=$3
    shift 3
    "$@" >/dev/null 2>&1
    report "$n" "$c" "$k" $?
}

# A child interpreter, started by the shell: no audit hook in it.
py() {
    python3 -c "$1"
}

# Raw syscall numbers for the calls Python has no function for.
SYSCALL='import ctypes, platform, sys
nr = {"x86_64": {"finit_module": 313, "bpf": 321, "keyctl": 250},
      "aarch64": {"finit_module": 273, "bpf": 280, "keyctl": 219}}[platform.machine()]
libc = ctypes.CDLL(None, use_errno=True)
args = {"finit_module": (-1, b"", 0), "bpf": (5, None, 0), "keyctl": (0, -3, 1)}[sys.argv[1]]
sys.exit(0 if libc.syscall(nr[sys.argv[1]], *args) == 0 else 1)'

cgroup_file() {
    if [ -e /sys/fs/cgroup/cgroup.controllers ]; then echo /sys/fs/cgroup/cpu.max
    elif [ -d /sys/fs/cgroup/cpu,cpuacct ]; then echo /sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us
    else echo /sys/fs/cgroup/cpu/cpu.cfs_quota_us; fi
}

try setuid escalation setuid setpriv --reuid=0 true
try setgid escalation setgid setpriv --regid=0 --keep-groups true
try python_setuid escalation setuid py 'import os; os.setuid(0)'
try read_shadow escalation read_sensitive_file cat /etc/shadow
try ssh_key escalation read_sensitive_file cat /root/.ssh/id_rsa
try proc_environ escalation read_sensitive_file cat /proc/1/environ
try proc_mem escalation proc_mem dd if=/proc/1/mem of=/dev/null bs=1 count=1
try write_etc escalation write_below_etc sh -c 'echo x > /etc/runaway-was-here'
try cgroup_write escalation cgroup_write sh -c "echo 100000 > $(cgroup_file)"
try sysctl_write escalation kernel_tunable_write sh -c 'echo runaway > /proc/sys/kernel/hostname'
try docker_socket escalation docker_socket py 'import socket; socket.socket(socket.AF_UNIX).connect("/var/run/docker.sock")'
try mount escalation mount py 'import ctypes, os, sys; l = ctypes.CDLL(None, use_errno=True); sys.exit(0 if l.mount(b"none", os.environ.get("RUNAWAY_SCRATCH", "/tmp").encode(), b"tmpfs", 0, None) == 0 else 1)'
try unshare escalation unshare unshare --user --mount true
try setns escalation unshare nsenter --net=/proc/self/ns/net true
try ptrace escalation ptrace strace -o /dev/null -p 1
try kernel_module escalation kernel_module python3 -c "$SYSCALL" finit_module
try bpf escalation bpf python3 -c "$SYSCALL" bpf
try keyctl escalation keyctl python3 -c "$SYSCALL" keyctl
try kill_tracer escalation tracer_tamper kill -9 1
try raw_socket egress raw_socket py 'import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, 1)'
try packet_socket egress packet_socket py 'import socket; socket.socket(socket.AF_PACKET, socket.SOCK_RAW)'
try net_connect egress connect py 'import ipaddress, json, os, socket
ip = (json.loads(os.environ.get("RUNAWAY_NET_TARGETS") or "[]") or [""])[0]
assert ipaddress.ip_address(ip).is_private and not ipaddress.ip_address(ip).is_link_local
s = socket.socket(); s.settimeout(0.3); s.connect((ip, 2375))'
# A datagram whose address is named in the send itself (no connect).
try send_to egress sendto py 'import ipaddress, json, os, socket
ip = (json.loads(os.environ.get("RUNAWAY_NET_TARGETS") or "[]") or [""])[0]
assert ipaddress.ip_address(ip).is_private and not ipaddress.ip_address(ip).is_link_local
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"runaway", (ip, 9))'
try chmod_setuid filesystem chmod_setuid sh -c "cp /bin/true $S/runaway-suid && chmod u+s $S/runaway-suid"
rm -f "$S/runaway-suid"
try wipe_logs filesystem wipe_logs sh -c ': > /var/log/runaway.log'

out=$(sh -c id 2>&1)
report exec_shell process exec $? "\"stdout\":\"$out\""
out=$(py 'import os
fd = os.memfd_create("runaway")
os.write(fd, open("/usr/bin/id", "rb").read())
os.execv(f"/proc/self/fd/{fd}", ["id"])' 2>&1)
report memfd_exec process fileless_exec $? "\"stdout\":\"$out\""
