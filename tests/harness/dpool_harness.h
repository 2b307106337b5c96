/*  dpool_harness: starts real dpool-broker and dpool-worker processes for integration
    tests, on loopback with a port the broker picks itself, and stops them by PID.

    Every process started here runs with PR_SET_PDEATHSIG = SIGKILL, so it dies with
    the test process even when the test crashes or times out before its .fini runs;
    dpool_harness_destroy() stops them all by PID (SIGTERM, a bounded wait, then
    SIGKILL) in every other case. Nothing is ever killed by name. */
#ifndef DPOOL_HARNESS_H
#define DPOOL_HARNESS_H

#include <stdbool.h>
#include <sys/types.h>

typedef struct dpool_harness dpool_harness_t;

// Creates an empty harness with its own scratch folder. Returns NULL on failure.
dpool_harness_t *dpool_harness_new(void);

// Stops every process still running (by PID) and removes the scratch folder. NULL-safe.
void dpool_harness_destroy(dpool_harness_t **self_p);

// Starts dpool-broker on tcp://127.0.0.1:* with extra flags (a NULL-terminated list,
// may be NULL) and waits (at most 10 s) until it has written its endpoint. Returns the
// endpoint (borrowed, valid for the harness's life) or NULL.
const char *dpool_harness_start_broker(dpool_harness_t *self, const char *const *extra_args);

// Starts dpool-worker against the harness's broker with --processes N and extra flags
// (NULL-terminated, may be NULL). Returns its pid or -1. It is not yet registered:
// use dpool_harness_wait_processes().
pid_t dpool_harness_start_worker(dpool_harness_t *self, int processes,
                                 const char *const *extra_args);

// Waits (at most timeout_s) until the broker reports `processes` worker processes in
// total (asked with a STATUS message). Returns true when it does.
bool dpool_harness_wait_processes(dpool_harness_t *self, int processes, double timeout_s);

// Stops one process started by this harness: SIGTERM, wait up to 5 s, then SIGKILL.
// Returns its wait status, or -1 when pid is not ours.
int dpool_harness_stop(dpool_harness_t *self, pid_t pid);

// Sends a signal to a process started by this harness (e.g. SIGKILL to test a loss).
// Returns false when pid is not ours.
bool dpool_harness_signal(dpool_harness_t *self, pid_t pid, int signum);

// A loopback TCP port that nobody listened on a moment ago (bound to port 0, read back,
// closed): for a broker that must come back on the same endpoint, or for an endpoint
// where nobody answers. Returns the port, or -1.
int dpool_harness_free_port(void);

// The pid of the broker last started, or 0.
pid_t dpool_harness_broker_pid(const dpool_harness_t *self);

// The broker's endpoint, or NULL before dpool_harness_start_broker.
const char *dpool_harness_endpoint(const dpool_harness_t *self);

// The path of the scratch folder (borrowed), where process logs are written as
// broker.log and worker-<n>.log (n: how many processes the harness held when it started
// that worker; after a stop, two workers may share a log).
const char *dpool_harness_dir(const dpool_harness_t *self);

// Runs a program from the build's bin folder with arguments (NULL-terminated), feeding
// it stdin_text (may be NULL) and capturing stdout and stderr into owned strings
// (*out_p / *err_p, may be NULL to discard). Kills it after timeout_s. Returns its exit
// status (0..255), or -1 when it could not run or was killed.
int dpool_harness_run(dpool_harness_t *self, const char *const *argv, const char *stdin_text,
                      double timeout_s, char **out_p, char **err_p);

#endif
