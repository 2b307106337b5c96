/*  Network-namespace topologies for the multi-host tests. Every namespace, veth and
    bridge is made by iproute2's `ip`, run by fork/exec with an argument vector (never
    through a shell); every process started on a host is forked here and enters the
    host's namespaces itself before exec, so its pid is the one we track and stop.

    The children of a fork from a test process (criterion may run threads in it) only
    make system calls before exec: everything they need (paths, the environment, the
    host's names) is prepared before the fork. */
#define _GNU_SOURCE // setns, unshare, pipe2, sethostname
#include "dpool_netns.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef DPOOL_BIN_DIR
#define DPOOL_BIN_DIR "."
#endif

#define S_MAX_HOSTS 12
#define S_MAX_PROCESSES 64
#define S_SUBNET "10.213.7."

extern char **environ;

typedef struct {
    char name[13];    // host name (1..12 characters), also its UTS host name
    char ns[48];      // dpool-<pid>-<name>
    char ns_path[80]; // /run/netns/<ns>, where `ip netns add` mounts it
    char address[20];
    char log[300];
} s_host_t;

struct dpool_netns {
    char prefix[32]; // dpool-<pid>
    char bridge_ns[48];
    char ip[64]; // path of the ip program
    char dir[256];
    char hosts_file[300];
    s_host_t hosts[S_MAX_HOSTS];
    size_t host_count;
    bool bridge_made;
    pid_t pids[S_MAX_PROCESSES];
    size_t pid_count;
    unsigned runs; // dpool_netns_run calls, naming their capture files
    int reaper_fd; // write end: one namespace name per line; closing it triggers the reaper
    pid_t reaper;
};

static double
s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

// Runs `ip args...` and waits for it. Returns true on exit status 0; otherwise writes
// what ip printed on stderr (or why it could not run) to why, when why is not NULL.
static bool
s_ip(const dpool_netns_t *self, const char *const *args, char *why, size_t why_size)
{
    const char *argv[16] = {"ip"};
    size_t argc = 1;
    for (size_t i = 0; args[i] && argc < 15; i++)
        argv[argc++] = args[i];
    argv[argc] = NULL;
    int err[2];
    if (pipe2(err, O_CLOEXEC) < 0)
        return false;
    pid_t pid = fork();
    if (pid < 0) {
        close(err[0]);
        close(err[1]);
        return false;
    }
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
        dup2(err[1], STDERR_FILENO);
        execv(self->ip, (char *const *)argv);
        _exit(127);
    }
    close(err[1]);
    char text[512] = "";
    size_t got = 0;
    ssize_t n;
    while (got + 1 < sizeof text && (n = read(err[0], text + got, sizeof text - 1 - got)) > 0)
        got += (size_t)n;
    text[got] = '\0';
    close(err[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!ok && why) {
        text[strcspn(text, "\n")] = '\0';
        snprintf(why, why_size, "`ip %s %s %s %s` failed: %s", args[0], args[1] ? args[1] : "",
                 args[1] && args[2] ? args[2] : "", args[1] && args[2] && args[3] ? args[3] : "",
                 got ? text : "(no message)");
    }
    return ok;
}

// The reaper: waits for the test process's end of the pipe to close (a normal
// teardown or the test process dying by any means), then deletes every namespace it
// was told about. Runs in its own session so a signal to the test's process group
// does not take it down with the test; only system calls after the fork.
static void
s_reaper_run(int fd, const char *ip)
{
    setsid();
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    int null = open("/dev/null", O_RDWR);
    dup2(null, STDIN_FILENO);
    dup2(null, STDOUT_FILENO);
    dup2(null, STDERR_FILENO);
    for (int other = 3; other < 1024; other++)
        if (other != fd)
            close(other);
    char names[4096];
    size_t got = 0;
    ssize_t n;
    while (got < sizeof names - 1) {
        n = read(fd, names + got, sizeof names - 1 - got);
        if (n > 0)
            got += (size_t)n;
        else if (n == 0 || errno != EINTR)
            break;
    }
    names[got] = '\0';
    char *name = names;
    while (*name) {
        char *end = strchr(name, '\n');
        if (!end)
            break;
        *end = '\0';
        pid_t pid = fork();
        if (pid == 0) {
            const char *argv[] = {"ip", "netns", "delete", name, NULL};
            execv(ip, (char *const *)argv);
            _exit(127);
        }
        if (pid > 0)
            waitpid(pid, NULL, 0);
        name = end + 1;
    }
    _exit(0);
}

static bool
s_reaper_start(dpool_netns_t *self)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0)
        return false;
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return false;
    }
    if (pid == 0) {
        close(fds[1]);
        s_reaper_run(fds[0], self->ip);
    }
    close(fds[0]);
    self->reaper = pid;
    self->reaper_fd = fds[1];
    return true;
}

// Tells the reaper about a namespace before it exists, so there is no moment when it
// exists and the reaper does not know it.
static void
s_reaper_note(dpool_netns_t *self, const char *ns)
{
    char line[64];
    int size = snprintf(line, sizeof line, "%s\n", ns);
    if (self->reaper_fd >= 0 && write(self->reaper_fd, line, (size_t)size) != size)
        fprintf(stderr, "dpool_netns: cannot tell the reaper about %s\n", ns);
}

static bool
s_find_ip(dpool_netns_t *self)
{
    static const char *const candidates[] = {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"};
    for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++)
        if (access(candidates[i], X_OK) == 0) {
            snprintf(self->ip, sizeof self->ip, "%s", candidates[i]);
            return true;
        }
    return false;
}

static bool
s_make_bridge(dpool_netns_t *self, char *why, size_t why_size)
{
    s_reaper_note(self, self->bridge_ns);
    if (!s_ip(self, (const char *[]){"netns", "add", self->bridge_ns, NULL}, why, why_size))
        return false;
    self->bridge_made = true;
    const char *ns = self->bridge_ns;
    return s_ip(self, (const char *[]){"-n", ns, "link", "set", "lo", "up", NULL}, why, why_size) &&
           s_ip(self, (const char *[]){"-n", ns, "link", "add", "br0", "type", "bridge", NULL}, why,
                why_size) &&
           s_ip(self, (const char *[]){"-n", ns, "link", "set", "br0", "up", NULL}, why, why_size);
}

dpool_netns_t *
dpool_netns_new(char *why, size_t why_size)
{
    snprintf(why, why_size, "out of memory");
    dpool_netns_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->reaper_fd = -1;
    self->reaper = -1;
    snprintf(self->prefix, sizeof self->prefix, "dpool-%d", (int)getpid());
    snprintf(self->bridge_ns, sizeof self->bridge_ns, "%s-net", self->prefix);
    snprintf(self->dir, sizeof self->dir, "/tmp/dpool-netns.XXXXXX");
    if (geteuid() != 0) {
        snprintf(why, why_size, "not running as root (euid %d): cannot make network namespaces",
                 (int)geteuid());
        goto fail;
    }
    if (!s_find_ip(self)) {
        snprintf(why, why_size, "no `ip` program (iproute2) in /usr/sbin, /sbin, /usr/bin, /bin");
        goto fail;
    }
    if (!mkdtemp(self->dir)) {
        snprintf(why, why_size, "mkdtemp: %s", strerror(errno));
        self->dir[0] = '\0';
        goto fail;
    }
    snprintf(self->hosts_file, sizeof self->hosts_file, "%s/hosts", self->dir);
    if (!s_reaper_start(self)) {
        snprintf(why, why_size, "cannot start the reaper process: %s", strerror(errno));
        goto fail;
    }
    if (!s_make_bridge(self, why, why_size))
        goto fail;
    return self;
fail:
    dpool_netns_destroy(&self);
    return NULL;
}

static ssize_t
s_find_pid(const dpool_netns_t *self, pid_t pid)
{
    for (size_t i = 0; i < self->pid_count; i++)
        if (self->pids[i] == pid)
            return (ssize_t)i;
    return -1;
}

static void
s_forget_pid(dpool_netns_t *self, pid_t pid)
{
    ssize_t index = s_find_pid(self, pid);
    if (index >= 0)
        self->pids[index] = self->pids[--self->pid_count];
}

static int
s_remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

// Closes the reaper's pipe (it then deletes, again, what is already gone) and reaps it.
static void
s_reaper_stop(dpool_netns_t *self)
{
    if (self->reaper_fd >= 0)
        close(self->reaper_fd);
    self->reaper_fd = -1;
    if (self->reaper <= 0)
        return;
    double deadline = s_now() + 10;
    while (waitpid(self->reaper, NULL, WNOHANG) == 0) {
        if (s_now() > deadline) {
            kill(self->reaper, SIGKILL);
            waitpid(self->reaper, NULL, 0);
            break;
        }
        usleep(10000);
    }
    self->reaper = -1;
}

void
dpool_netns_destroy(dpool_netns_t **self_p)
{
    dpool_netns_t *self = self_p ? *self_p : NULL;
    if (!self)
        return;
    *self_p = NULL;
    while (self->pid_count > 0)
        dpool_netns_stop(self, self->pids[self->pid_count - 1]);
    for (size_t i = self->host_count; i > 0; i--)
        if (!s_ip(self, (const char *[]){"netns", "delete", self->hosts[i - 1].ns, NULL}, NULL, 0))
            fprintf(stderr, "dpool_netns: could not delete namespace %s\n", self->hosts[i - 1].ns);
    if (self->bridge_made &&
        !s_ip(self, (const char *[]){"netns", "delete", self->bridge_ns, NULL}, NULL, 0))
        fprintf(stderr, "dpool_netns: could not delete namespace %s\n", self->bridge_ns);
    s_reaper_stop(self);
    if (self->dir[0] && !getenv("DPOOL_TEST_KEEP"))
        nftw(self->dir, s_remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(self);
}

static bool
s_valid_name(const char *name)
{
    size_t size = strlen(name);
    if (size == 0 || size > 12)
        return false;
    for (size_t i = 0; i < size; i++)
        if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9')))
            return false;
    return true;
}

static const s_host_t *
s_host(const dpool_netns_t *self, const char *name)
{
    for (size_t i = 0; i < self->host_count; i++)
        if (strcmp(self->hosts[i].name, name) == 0)
            return &self->hosts[i];
    return NULL;
}

// /etc/hosts of the topology, bind-mounted over /etc/hosts for every process started
// on a host: rewritten in place, so processes already running see later hosts too.
static bool
s_write_hosts_file(const dpool_netns_t *self)
{
    FILE *file = fopen(self->hosts_file, "w");
    if (!file)
        return false;
    fprintf(file, "127.0.0.1\tlocalhost\n");
    for (size_t i = 0; i < self->host_count; i++)
        fprintf(file, "%s\t%s\n", self->hosts[i].address, self->hosts[i].name);
    return fclose(file) == 0;
}

static bool
s_wire_host(dpool_netns_t *self, const s_host_t *host, char *why, size_t why_size)
{
    char veth[16], cidr[24];
    snprintf(veth, sizeof veth, "v-%s", host->name);
    snprintf(cidr, sizeof cidr, "%s/24", host->address);
    const char *net = self->bridge_ns, *ns = host->ns;
    // The veth is made inside the bridge namespace with its peer placed straight into
    // the host's: neither end ever exists in the namespace the test runs in.
    return s_ip(self,
                (const char *[]){"-n", net, "link", "add", veth, "type", "veth", "peer", "name",
                                 "eth0", "netns", ns, NULL},
                why, why_size) &&
           s_ip(self, (const char *[]){"-n", net, "link", "set", veth, "master", "br0", "up", NULL},
                why, why_size) &&
           s_ip(self, (const char *[]){"-n", ns, "link", "set", "lo", "up", NULL}, why, why_size) &&
           s_ip(self, (const char *[]){"-n", ns, "addr", "add", cidr, "dev", "eth0", NULL}, why,
                why_size) &&
           s_ip(self, (const char *[]){"-n", ns, "link", "set", "eth0", "up", NULL}, why, why_size);
}

const char *
dpool_netns_add_host(dpool_netns_t *self, const char *name)
{
    if (!s_valid_name(name) || s_host(self, name) || self->host_count == S_MAX_HOSTS) {
        fprintf(stderr, "dpool_netns: bad or duplicate host name \"%s\"\n", name);
        return NULL;
    }
    s_host_t *host = &self->hosts[self->host_count];
    memset(host, 0, sizeof *host);
    snprintf(host->name, sizeof host->name, "%s", name);
    // Through a local: gcc's -Wrestrict takes host (inside self) and self->prefix for one object.
    char ns[sizeof host->ns];
    snprintf(ns, sizeof ns, "%s-%s", self->prefix, name);
    memcpy(host->ns, ns, sizeof ns);
    snprintf(host->address, sizeof host->address, S_SUBNET "%zu", self->host_count + 1);
    // Through locals: gcc's -Wrestrict sees one object in host's fields and self's.
    char ns_path[sizeof host->ns_path], log[sizeof host->log];
    snprintf(ns_path, sizeof ns_path, "/run/netns/%s-%s", self->prefix, name);
    snprintf(log, sizeof log, "%s/%s.log", self->dir, name);
    memcpy(host->ns_path, ns_path, sizeof ns_path);
    memcpy(host->log, log, sizeof log);
    char why[600];
    s_reaper_note(self, host->ns);
    if (!s_ip(self, (const char *[]){"netns", "add", host->ns, NULL}, why, sizeof why)) {
        fprintf(stderr, "dpool_netns: %s\n", why);
        return NULL;
    }
    self->host_count++; // from here on, destroy deletes it
    if (!s_wire_host(self, host, why, sizeof why) || !s_write_hosts_file(self)) {
        fprintf(stderr, "dpool_netns: host %s: %s\n", name, why);
        return NULL;
    }
    return host->address;
}

const char *
dpool_netns_address(const dpool_netns_t *self, const char *name)
{
    const s_host_t *host = s_host(self, name);
    return host ? host->address : NULL;
}

// Processes: spawn, wait, run, stop, signal, enter (kept apart to keep files short).
#include "dpool_netns_proc.c"
