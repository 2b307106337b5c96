/*  dpool_runner: the loop a worker process runs. It runs the initializer, if any,
    announces itself ready, then takes one task (or chunk) at a time from the daemon
    over its channel, runs it, flushes stdout and stderr, and sends the result back. */
#ifndef DPOOL_RUNNER_H
#define DPOOL_RUNNER_H

#include "dpool_functions.h"
#include "dpool_proc.h"

typedef struct {
    const dpool_functions_t *functions; // borrowed: the process's copy of the daemon's
    unsigned max_tasks;                 // exit after this many tasks (a chunk is one); 0 = never
    const char *initializer;            // borrowed: run once with [] before the first task;
                                        // NULL = none
} dpool_runner_config_t;

// The dpool_proc_main_fn of a worker process: arg is a dpool_runner_config_t
// (borrowed), shared the memory its daemon shares with it. Never returns: the process exits with
// status 0 when the daemon closes the channel or after max_tasks tasks, and with 1 on a channel
// error or after telling the daemon (INIT_FAILED) that the initializer failed.
void dpool_runner_main(void *arg, int channel_fd, dpool_proc_shared_t *shared);

#endif
