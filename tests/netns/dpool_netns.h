/*  dpool_netns: several hosts on one machine, made of Linux network namespaces, for the
    multi-host tests (tests/test_multihost.c includes dpool_netns.c directly, as the
    test CMake file builds one source per test).

    Topology: a namespace "dpool-<pid>-net" holds a bridge br0 and nothing else; each
    host is a namespace "dpool-<pid>-<name>" with loopback up and an eth0 that is one
    end of a veth pair whose other end ("v-<name>") is a port of br0, addressed
    10.213.7.<n>/24. Nothing is created in the caller's own network namespace, so no
    test traffic can leave the namespaces, and two runs (two pids) never share a name.

    Processes started on a host run in its network namespace, in a UTS namespace whose
    host name is the host's name (so `hostpid` and `dpool status` tell the hosts
    apart), and in a mount namespace where /etc/hosts names every host of the topology
    (so `tcp://broker:5555` resolves as it does between Compose containers). They are
    forked and exec'd directly (no shell), tracked by PID, die with PR_SET_PDEATHSIG =
    SIGKILL when the test process dies, and are stopped by PID.

    Teardown removes exactly the namespaces this object created (the veths and the
    bridge go with them): in dpool_netns_destroy, and, should the test process be
    killed before it gets there, in a reaper process that holds the other end of a pipe
    and deletes every name it was told about when that pipe closes. */
#ifndef DPOOL_NETNS_H
#define DPOOL_NETNS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct dpool_netns dpool_netns_t;

// Makes the bridge namespace and the reaper. Returns an owned topology, or NULL with
// the reason (no root, no `ip`, the kernel refused) written to why (why_size bytes).
dpool_netns_t *dpool_netns_new(char *why, size_t why_size);

// Stops every process still running (by PID, last started first), deletes every
// namespace created, removes the scratch folder (kept when $DPOOL_TEST_KEEP is set).
// NULL-safe; sets *self_p to NULL.
void dpool_netns_destroy(dpool_netns_t **self_p);

// Adds a host called name (1..12 characters of [a-z0-9]) with the next address.
// Returns its address ("10.213.7.N", borrowed, valid for the topology's life) or NULL.
const char *dpool_netns_add_host(dpool_netns_t *self, const char *name);

// The address of host name, or NULL when there is no such host (borrowed).
const char *dpool_netns_address(const dpool_netns_t *self, const char *name);

// Starts argv (NULL-terminated; argv[0] is a path when it holds a '/', else the name of
// a program in the build's bin folder) on host, with extra environment entries
// "NAME=value" (NULL-terminated, may be NULL), stdin from /dev/null, stdout to
// out_path and stderr to err_path (NULL = the host's log file <dir>/<host>.log).
// Returns the pid or -1.
pid_t dpool_netns_spawn(dpool_netns_t *self, const char *host, const char *const *argv,
                        const char *const *env, const char *out_path, const char *err_path);

// dpool_netns_spawn, and with contain = true, the program runs as process 1 of a PID
// namespace of its own under the returned pid (a small parent that waits for it and
// exits with its status): everything the program starts, which no death signal
// covers (the commands of a shell script), is killed by the kernel when it ends, when
// the returned pid is stopped, or when the test process dies.
pid_t dpool_netns_spawn_contained(dpool_netns_t *self, const char *host, const char *const *argv,
                                  const char *const *env, const char *out_path,
                                  const char *err_path, bool contain);

// Waits up to timeout_s for a process started here to exit. Returns its exit status
// (0..255), 128 + signal when a signal ended it, or -1 when it was still running (it
// is then killed with SIGKILL and reaped) or is not ours.
int dpool_netns_wait(dpool_netns_t *self, pid_t pid, double timeout_s);

// Runs argv on host (as dpool_netns_spawn; contained when argv[0] is /bin/sh) and
// waits up to timeout_s; *out_p and
// *err_p (may be NULL) receive what it printed, owned by the caller. Returns as
// dpool_netns_wait.
int dpool_netns_run(dpool_netns_t *self, const char *host, const char *const *argv,
                    const char *const *env, double timeout_s, char **out_p, char **err_p);

// Stops a process started here: SIGTERM, up to 5 s, then SIGKILL. Returns its wait
// status, or -1 when pid is not ours.
int dpool_netns_stop(dpool_netns_t *self, pid_t pid);

// Sends signum to a process started here. Returns false when pid is not ours.
bool dpool_netns_signal(dpool_netns_t *self, pid_t pid, int signum);

// Sets host's eth0 up or down (`ip -n NS link set eth0 up|down`): down cuts the
// host off the bridge as a pulled cable would. Returns true when ip succeeded.
bool dpool_netns_set_link(dpool_netns_t *self, const char *host, bool up);

// Moves the calling thread (only it: network namespaces are per thread) into host's
// network namespace, so sockets it, and threads it starts afterwards, open are that
// host's. Returns true on success.
bool dpool_netns_enter(dpool_netns_t *self, const char *host);

// The scratch folder (borrowed): host logs <host>.log and files of the caller's.
const char *dpool_netns_dir(const dpool_netns_t *self);

// Reads a whole file into an owned NUL-terminated string, or NULL.
char *dpool_netns_slurp(const char *path);

#endif
