/*  dpool_worker: the worker daemon. It loads the task modules, forks and supervises
    its worker processes, and holds the host's one DEALER connection to the broker
    (docs/PROTOCOL.md, "The worker daemon's conversation"). */
#ifndef DPOOL_WORKER_DAEMON_H
#define DPOOL_WORKER_DAEMON_H

#include <signal.h>
#include <stddef.h>

// How many processes one daemon may run: a bound on what a typo can fork.
#define DPOOL_WORKER_PROCESSES_MAX 1024
// New processes in a row whose initializer failed before the daemon gives up: one
// failure may be bad luck (a file not there yet), five with back-off in between
// (a second or two) are a broken initializer, and retrying it forever helps nobody.
#define DPOOL_WORKER_INIT_FAILURES_MAX 5

typedef struct {
    const char *endpoint;         // the broker's, e.g. "tcp://127.0.0.1:5555"
    unsigned processes;           // 1..DPOOL_WORKER_PROCESSES_MAX
    unsigned max_tasks_per_child; // 0 = a process runs tasks until it dies
    const char *const *modules;   // paths of task modules to load, in order
    size_t module_count;
    const char *initializer;  // function run with [] in each new process first; NULL = none
    const char *curve_secret; // this daemon's zcert secret file; NULL = no CURVE
    const char *broker_key;   // with curve_secret: the broker's zcert public file
} dpool_worker_config_t;

typedef struct dpool_worker_t dpool_worker_t;

// Builds a daemon from config (borrowed; strings are copied): registers the
// built-ins and loads every module. Starts no process and opens no socket yet.
// Returns an owned object, or NULL with a one-line reason (naming the module file
// when a module fails, the initializer when no function has its name, or a CURVE
// key file that cannot be read) written to error (error_size bytes, caller-owned).
dpool_worker_t *dpool_worker_new(const dpool_worker_config_t *config, char *error,
                                 size_t error_size);

// Kills and reaps any process still running, frees everything. NULL-safe; sets
// *self_p to NULL.
void dpool_worker_destroy(dpool_worker_t **self_p);

// Forks the worker processes, connects to the broker, says hello and serves tasks
// until *stop (set by a signal handler) becomes non-zero; then says BYE, kills and
// reaps every process. Returns DPOOL_OK after a requested stop, or a negative code
// when it cannot run (socket or poll failure, logged) or gives up on its own
// (DPOOL_ERR_TASK_FAILED: the initializer failed in DPOOL_WORKER_INIT_FAILURES_MAX
// new processes in a row; DPOOL_ERR_NOT_AUTHORISED: the broker refused this daemon's
// key; dpool_worker_error says so).
int dpool_worker_run(dpool_worker_t *self, volatile sig_atomic_t *stop);

// Why the last run stopped on its own: a one-line text (borrowed from self) naming
// the initializer and its message, or NULL.
const char *dpool_worker_error(const dpool_worker_t *self);

#endif
