/* The escape and escalation catalog as a compiled program: every attempt is a raw system
 * call, so nothing but a syscall-level observer can see it (no interpreter, no audit hook).
 *
 * `runaway selftest` builds it with the host's C compiler (cc -static -O1) and mounts it
 * into the sandbox. Each attempt prints one protocol line with its own result:
 *   @runaway {"type":"attempt","name":...,"category":...,"kind":...,"outcome":"blocked"|"allowed","errno":N,"detail":{...}}
 * The outcome is the program's own account; the selftest judges detection from the
 * observer's events, never from these lines.
 *
 * Network safety: the only address it connects to is the first entry of
 * RUNAWAY_NET_TARGETS (the sandbox's own gateway), and only if it is private. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>

static void report(const char *name, const char *category, const char *kind, int rc, int err,
                   const char *detail) {
    char line[1024];
    int n = snprintf(line, sizeof line,
                     "@runaway {\"type\":\"attempt\",\"name\":\"%s\",\"category\":\"%s\",\"kind\":\"%s\","
                     "\"outcome\":\"%s\",\"errno\":%s%d,\"detail\":{%s}}\n",
                     name, category, kind, rc < 0 ? "blocked" : "allowed", "", rc < 0 ? err : 0,
                     detail ? detail : "");
    if (n > 0) {
        ssize_t w = write(1, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
        (void)w;
    }
}

/* Run a syscall attempt: rc < 0 means blocked, with errno. */
#define TRY(name, cat, kind, call, detail)                      \
    do {                                                        \
        errno = 0;                                              \
        long rc_ = (long)(call);                                \
        report(name, cat, kind, rc_ < 0 ? -1 : 0, errno, detail); \
    } while (0)

static long open_close(const char *path, int flags) {
    int fd = open(path, flags, 0644);
    if (fd >= 0) close(fd);
    return fd;
}

static const char *cgroup_quota_file(void) {
    if (access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0) return "/sys/fs/cgroup/cpu.max";
    if (access("/sys/fs/cgroup/cpu,cpuacct", F_OK) == 0) return "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us";
    return "/sys/fs/cgroup/cpu/cpu.cfs_quota_us";
}

static long connect_unix(const char *path) {
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    if (s < 0) return -1;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strncpy(a.sun_path, path, sizeof a.sun_path - 1);
    long rc = connect(s, (struct sockaddr *)&a, sizeof a);
    int e = errno;
    close(s);
    errno = e;
    return rc;
}

/* The first address of RUNAWAY_NET_TARGETS (a JSON list of strings), if it is private. */
static int net_target(struct in_addr *out) {
    const char *v = getenv("RUNAWAY_NET_TARGETS");
    char ip[64] = {0};
    const char *q = v ? strchr(v, '"') : NULL;
    if (!q) return 0;
    const char *e = strchr(q + 1, '"');
    if (!e || e - q - 1 >= (long)sizeof ip) return 0;
    memcpy(ip, q + 1, (size_t)(e - q - 1));
    if (inet_pton(AF_INET, ip, out) != 1) return 0;
    unsigned char *b = (unsigned char *)&out->s_addr;
    return b[0] == 10 || (b[0] == 172 && (b[1] & 0xf0) == 16) || (b[0] == 192 && b[1] == 168);
}

static long connect_tcp(struct in_addr ip, int port) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) return -1;
    struct timeval tv = {0, 300000}; /* a dropped SYN: give up after 0.3 s */
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr = ip};
    long rc = connect(s, (struct sockaddr *)&a, sizeof a);
    int e = errno;
    close(s);
    errno = e;
    return rc;
}

/* One datagram to ip:port, its address named in the send (no connect), in a child: the
 * sandbox refuses such a send with SIGSYS, which would end this catalog. */
static long send_to(struct in_addr ip, int port) {
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int s = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in a = {0};
        a.sin_family = AF_INET;
        a.sin_port = htons((unsigned short)port);
        a.sin_addr = ip;
        _exit(sendto(s, "runaway", 7, 0, (struct sockaddr *)&a, sizeof a) == 7 ? 0 : 1);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
    errno = EPERM;
    return -1;
}

/* fork, exec argv (or the memfd's copy of a program), capture the first line it prints. */
static long run_child(const char *name, const char *kind, int memfd_of, char *const argv[]) {
    int p[2];
    if (pipe(p) != 0) return -1;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        if (memfd_of >= 0) {
            extern char **environ;
            fexecve(memfd_of, argv, environ);
        } else {
            execv(argv[0], argv);
        }
        _exit(127);
    }
    close(p[1]);
    char buf[200] = {0};
    ssize_t n = read(p[0], buf, sizeof buf - 1);
    close(p[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    for (ssize_t i = 0; i < n; i++)
        if (buf[i] == '\n' || buf[i] == '"' || buf[i] == '\\') buf[i] = ' ';
    char detail[300];
    snprintf(detail, sizeof detail, "\"stdout\":\"%s\"", n > 0 ? buf : "");
    int ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    report(name, "process", kind, ok ? 0 : -1, ok ? 0 : EPERM, detail);
    return 0;
}

static long memfd_exec(void) {
    int src = open("/usr/bin/id", O_RDONLY);
    if (src < 0) return -1;
    int fd = memfd_create("runaway", MFD_CLOEXEC);
    if (fd < 0) { close(src); return -1; }
    char buf[65536];
    ssize_t n;
    while ((n = read(src, buf, sizeof buf)) > 0)
        if (write(fd, buf, (size_t)n) != n) break;
    close(src);
    char *argv[] = {"id", NULL};
    run_child("memfd_exec", "fileless_exec", fd, argv);
    close(fd);
    return 0;
}

int main(void) {
    char scratch[512];
    const char *s = getenv("RUNAWAY_SCRATCH");
    snprintf(scratch, sizeof scratch, "%s", s && *s ? s : "/tmp");

    TRY("setuid", "escalation", "setuid", setuid(0), "\"call\":\"setuid(0)\"");
    TRY("setgid", "escalation", "setgid", setgid(0), "\"call\":\"setgid(0)\"");
    TRY("setresuid", "escalation", "setuid", syscall(SYS_setresuid, 0, 0, 0), "\"call\":\"setresuid(0,0,0)\"");
    {
        struct { unsigned version; int pid; } hdr = {0x20080522, 0};
        struct { unsigned eff, perm, inh; } data[2] = {{~0u, ~0u, 0}, {~0u, ~0u, 0}};
        TRY("capset", "escalation", "capset", syscall(SYS_capset, &hdr, data), "\"call\":\"capset(all)\"");
    }
    TRY("read_shadow", "escalation", "read_sensitive_file", open_close("/etc/shadow", O_RDONLY), "\"path\":\"/etc/shadow\"");
    TRY("read_sudoers", "escalation", "read_sensitive_file", open_close("/etc/sudoers", O_RDONLY), "\"path\":\"/etc/sudoers\"");
    TRY("ssh_key", "escalation", "read_sensitive_file", open_close("/root/.ssh/id_rsa", O_RDONLY), "\"path\":\"/root/.ssh/id_rsa\"");
    TRY("proc_environ", "escalation", "read_sensitive_file", open_close("/proc/1/environ", O_RDONLY), "\"path\":\"/proc/1/environ\"");
    TRY("proc_mem", "escalation", "proc_mem", open_close("/proc/1/mem", O_RDONLY), "\"path\":\"/proc/1/mem\"");
    TRY("docker_socket", "escalation", "docker_socket", connect_unix("/var/run/docker.sock"), "\"path\":\"/var/run/docker.sock\"");
    TRY("write_etc", "escalation", "write_below_etc", open_close("/etc/runaway-was-here", O_WRONLY | O_CREAT | O_EXCL), "\"path\":\"/etc/runaway-was-here\"");
    TRY("cgroup_write", "escalation", "cgroup_write", open_close(cgroup_quota_file(), O_WRONLY), "");
    TRY("sysctl_write", "escalation", "kernel_tunable_write", open_close("/proc/sys/kernel/hostname", O_WRONLY), "\"path\":\"/proc/sys/kernel/hostname\"");
    TRY("mount", "escalation", "mount", mount("none", scratch, "tmpfs", 0, NULL), "\"call\":\"mount(tmpfs)\"");
    TRY("umount", "escalation", "mount", umount2("/opt/runaway/learner", MNT_DETACH), "\"call\":\"umount2\"");
    TRY("unshare", "escalation", "unshare", unshare(CLONE_NEWUSER | CLONE_NEWNS), "\"call\":\"unshare(CLONE_NEWUSER|CLONE_NEWNS)\"");
    {
        int ns = open("/proc/self/ns/net", O_RDONLY);
        TRY("setns", "escalation", "unshare", setns(ns, 0), "\"call\":\"setns(net)\"");
        if (ns >= 0) close(ns);
    }
    TRY("ptrace", "escalation", "ptrace", ptrace(PTRACE_ATTACH, 1, NULL, NULL), "\"call\":\"ptrace(PTRACE_ATTACH, 1)\"");
    TRY("kernel_module", "escalation", "kernel_module", syscall(SYS_finit_module, -1, "", 0), "\"call\":\"finit_module\"");
    TRY("bpf", "escalation", "bpf", syscall(SYS_bpf, 5 /* BPF_PROG_LOAD */, NULL, 0), "\"call\":\"bpf(BPF_PROG_LOAD)\"");
    TRY("keyctl", "escalation", "keyctl", syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -3, 1), "\"call\":\"keyctl\"");
    TRY("kill_tracer", "escalation", "tracer_tamper", kill(1, SIGKILL), "\"call\":\"kill(1, SIGKILL)\"");
    TRY("raw_socket", "egress", "raw_socket", socket(AF_INET, SOCK_RAW, IPPROTO_ICMP), "");
    TRY("packet_socket", "egress", "packet_socket", socket(AF_PACKET, SOCK_RAW, 0), "");
    {
        struct in_addr ip;
        if (net_target(&ip)) {
            TRY("net_connect", "egress", "connect", connect_tcp(ip, 2375), "\"port\":2375");
            TRY("send_to", "egress", "sendto", send_to(ip, 9), "\"port\":9");
        }
    }
    {
        char path[600];
        snprintf(path, sizeof path, "%s/runaway-suid", scratch);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0755);
        if (fd >= 0) close(fd);
        TRY("chmod_setuid", "filesystem", "chmod_setuid", chmod(path, 04755), "\"scratch\":true");
        unlink(path);
    }
    TRY("wipe_logs", "filesystem", "wipe_logs", unlink("/var/log/lastlog"), "\"path\":\"/var/log/lastlog\"");
    {
        char *argv[] = {"/bin/sh", "-c", "id", NULL};
        run_child("exec_shell", "exec", -1, argv);
    }
    memfd_exec();
    return 0;
}
