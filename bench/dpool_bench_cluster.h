/*  dpool_bench_cluster: the dpool-bench modes that need more than one client and the
    broker: `queue` (broker memory per queued task, then the drain rate once workers
    join), `backlog` (the drain rate of a queue behind processes already up) and `wide`
    (dispatch rate with K worker daemons x P processes connected).
    Both start the worker daemons they need themselves (dpool-worker from the same
    folder as dpool-bench) and stop them by PID. */
#ifndef DPOOL_BENCH_CLUSTER_H
#define DPOOL_BENCH_CLUSTER_H

#include <dpool/dpool.h>
#include <sys/types.h>

typedef struct {
    const char *broker;   // endpoint (borrowed)
    const char *self_exe; // argv[0] of dpool-bench, to find dpool-worker beside it
    pid_t broker_pid;     // for the broker's RSS; 0 = unknown (queue mode then fails)
    int cap;              // --processes: the pool's cap in wide mode (0 = every process)
} dpool_bench_env_t;

// queue N: submit N no-op tasks with no worker connected (the broker must run with a
// --grace longer than the run), report broker RSS growth per queued task, then start
// 2 worker daemons x 2 processes and report the drain rate. Returns an exit code.
int dpool_bench_queue(const dpool_bench_env_t *env, long count);

// backlog N: start 2 worker daemons x 2 processes, hold all four with the sleeps of
// another pool, queue N no-op tasks behind them, and report the drain rate from the
// moment the sleeps end: the broker dispatching a queue of N to processes that are
// already up, where queue N also times the daemons' start. With held > 0 the figure
// is the dispatch rate while the queue stays at N instead: for each of the first
// `held` results one more task is submitted, and the last four fifths of those results
// are timed (a drain of 1,000 is mostly the start of chaining). Returns an exit code.
int dpool_bench_backlog(const dpool_bench_env_t *env, long count, long held);

// wide K P N: start K worker daemons of P processes, then N pipelined no-op tasks in a
// pool of env->cap; reports the dispatch rate. Returns an exit code.
int dpool_bench_wide(const dpool_bench_env_t *env, long daemons, long processes, long count);

#endif
