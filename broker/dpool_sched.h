/*  dpool_sched: the broker's scheduler, a pure module (no sockets, no clock: time
    comes in as a parameter), so it is tested directly and fast.

    It owns pools, worker hosts and task records, and decides which task runs next on
    which host:
      - a pool's tasks leave in FIFO order, at most `cap` running at once (cap 0 = the
        cluster's current number of worker processes): a pool holds at most `cap`
        leases, a lease being one process from the dispatch of a task against a
        credit until the last task sent to that process answered;
      - chaining: when a pool's tasks are short (a moving average of their run time),
        a lease is sent the pool's next tasks ahead, each to run after the one before
        it in the same process (TASK's `after`), so that process does not idle for a
        broker round trip between tasks; the cap still holds, as a lease runs one task
        at a time. Chaining pauses while any pool waits for a free process;
      - pools with work and room take turns (a round-robin ring);
      - a task goes only to a host that offers its function and has a credit (one
        credit = one idle process); a task whose function no host offers waits in an
        orphan queue for grace_ms, then expires.
    Every operation is O(1) per task, except the rare ones that say otherwise (a host
    joining or leaving, terminate), which are O(affected items).

    Tasks are named by a 64-bit id made here (slot index + generation), so a stale id
    (a late result for a task already terminated) is recognised and ignored. Each task
    and host carries an opaque pointer for its owner (the broker): the scheduler never
    frees or reads it. */
#ifndef DPOOL_SCHED_H
#define DPOOL_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct dpool_sched dpool_sched_t;
typedef struct dpool_sched_pool dpool_sched_pool_t;
typedef struct dpool_sched_host dpool_sched_host_t;

// Called for each task a call hands back (expired, cancelled, lost with its host).
// The task is gone from the scheduler when the visitor returns.
typedef void(dpool_sched_visit_fn)(void *ctx, uint64_t task_id, void *task_data);

// Pool counters for status.
typedef struct {
    uint32_t cap;           // as set; 0 = cluster size
    uint32_t effective_cap; // the cap in force now
    size_t queued;          // waiting, including those whose function nobody offers yet
    size_t running;
    uint64_t done;
    uint64_t failed;
} dpool_sched_pool_stats_t;

// Creates a scheduler. grace_ms: how long a task may wait for a host offering its
// function. Returns an owned scheduler or NULL on out-of-memory.
dpool_sched_t *dpool_sched_new(int64_t grace_ms);

// Destroys the scheduler with every pool, host and task record. The owner's data
// pointers are not freed (free them first, e.g. with dpool_sched_drain). NULL-safe.
void dpool_sched_destroy(dpool_sched_t **self_p);

// Creates a pool with this cap. Returns a pool handle owned by the scheduler (valid
// until dpool_sched_pool_remove) or NULL on out-of-memory.
dpool_sched_pool_t *dpool_sched_pool_new(dpool_sched_t *self, uint32_t cap);

// Removes a pool that has no queued or running task. Returns false (and keeps it)
// when it still has tasks. Sets *pool_p to NULL on success.
bool dpool_sched_pool_remove(dpool_sched_t *self, dpool_sched_pool_t **pool_p);

// Fills *stats for pool.
void dpool_sched_pool_stats(dpool_sched_t *self, const dpool_sched_pool_t *pool,
                            dpool_sched_pool_stats_t *stats);

// Queues a task for function in pool. The function name is copied. task_data is the
// owner's, handed back by dispatch, complete, cancel and expire. Returns 0 and the
// new task's id in *task_id, or -1 on out-of-memory.
int dpool_sched_submit(dpool_sched_t *self, dpool_sched_pool_t *pool, const char *function,
                       void *task_data, int64_t now_ms, uint64_t *task_id);

// Queues a task at the front of pool, so it runs before the pool's other queued tasks
// (a retry of a task lost with its worker keeps its place in the FIFO). As
// dpool_sched_submit otherwise; the new id differs from the lost one's.
int dpool_sched_requeue(dpool_sched_t *self, dpool_sched_pool_t *pool, const char *function,
                        void *task_data, int64_t now_ms, uint64_t *task_id);

// Registers a worker host with `processes` slots offering these functions (copied),
// with no credit yet. host_data is the owner's. Returns the host handle (owned by the
// scheduler until dpool_sched_host_remove) or NULL on out-of-memory.
dpool_sched_host_t *dpool_sched_host_add(dpool_sched_t *self, void *host_data, uint32_t processes,
                                         const char *const *functions, size_t function_count);

// Lets the scheduler send host chained tasks (its daemon said it runs them); a host
// starts without.
void dpool_sched_host_set_chaining(dpool_sched_host_t *host, bool chains);

// Removes a host. Every task running on it is handed to visit (the owner fails or
// re-submits it) and then freed; tasks chained behind them queue again at the front of
// their pools. O(functions + tasks sent to the host).
void dpool_sched_host_remove(dpool_sched_t *self, dpool_sched_host_t **host_p,
                             dpool_sched_visit_fn *visit, void *ctx);

// Adds credits (idle processes) to host. Credits beyond its process count are ignored,
// and a new lease needs a credit and a process no lease holds (a confused or hostile
// peer cannot make the broker over-dispatch). Returns the number of credits accepted.
uint32_t dpool_sched_credit(dpool_sched_t *self, dpool_sched_host_t *host, uint32_t credits);

// What dpool_sched_dispatch picked.
typedef struct {
    uint64_t task_id;
    uint64_t after_id; // 0: a new lease (a credit was used); else the task it follows
    void *task_data;
    void *host_data;
} dpool_sched_dispatch_t;

// Picks the next dispatch: the oldest task of a pool that is under its cap, for a
// host with a credit that offers the function (a new lease, using the credit), or for
// a lease of the pool that may take one more (chained). Returns true and fills *out;
// false when nothing can be sent now. Call it until it returns false after anything
// that may free capacity. now_us times the tasks (it is what chaining goes by).
bool dpool_sched_dispatch(dpool_sched_t *self, int64_t now_ms, int64_t now_us,
                          dpool_sched_dispatch_t *out);

// Ends a dispatched task (its result arrived); the next task of its lease, if any,
// is the running one now. success feeds the pool's counters; now_us (0 = unknown)
// its run-time average. Returns the task's data, or NULL when task_id is unknown,
// stale or not dispatched (the owner drops the late message). from_host, when not
// NULL, must be the host the task was sent to, or NULL is returned: a host cannot
// finish another host's task.
void *dpool_sched_complete(dpool_sched_t *self, uint64_t task_id,
                           const dpool_sched_host_t *from_host, bool success, int64_t now_us);

// A chained task that its host did not run (the task before it had ended when it
// arrived: DPOOL_ERR_UNCHAINED): it and the tasks chained after it go back to the
// front of their pool, in order, under new ids. False when task_id is unknown, stale
// or not sent to from_host.
bool dpool_sched_unchained(dpool_sched_t *self, uint64_t task_id,
                           const dpool_sched_host_t *from_host);

// The function name of a queued or running task (borrowed, valid while the task is),
// or NULL when task_id is unknown or stale.
const char *dpool_sched_task_function(const dpool_sched_t *self, uint64_t task_id);

// The data of a task running on from_host, or NULL when the id is unknown, stale, not
// running or running on another host (output for it is then dropped).
void *dpool_sched_task_data(const dpool_sched_t *self, uint64_t task_id,
                            const dpool_sched_host_t *from_host);

// Removes a queued or running task (terminate). Returns its data, or NULL when the id
// is unknown. When it was running, *host_data is set to its host's data (so the owner
// can tell the host to kill it), else to NULL.
void *dpool_sched_cancel(dpool_sched_t *self, uint64_t task_id, void **host_data);

// Hands every task of pool (queued and running) to visit without removing anything;
// the visitor must not call into the scheduler. O(tasks of the pool).
void dpool_sched_pool_foreach(dpool_sched_t *self, dpool_sched_pool_t *pool,
                              dpool_sched_visit_fn *visit, void *ctx);

// Hands every task whose grace ran out by now_ms (no host offers its function) to
// visit, then frees them and counts them failed. Returns how many expired.
size_t dpool_sched_expire(dpool_sched_t *self, int64_t now_ms, dpool_sched_visit_fn *visit,
                          void *ctx);

// The earliest grace deadline, or -1 when no task waits for a function.
int64_t dpool_sched_next_deadline(const dpool_sched_t *self);

// Hands every remaining task to visit and frees it (for shutdown).
void dpool_sched_drain(dpool_sched_t *self, dpool_sched_visit_fn *visit, void *ctx);

// Task ids of records made from now on start their generation at base (call it before
// the first submit): a broker run passes something random, so an id from an earlier
// run (a late result from a daemon that outlived the broker) names no task of this one.
void dpool_sched_set_id_base(dpool_sched_t *self, uint32_t base);

// Cluster figures for status.
uint32_t dpool_sched_total_processes(const dpool_sched_t *self);
uint32_t dpool_sched_host_running(const dpool_sched_host_t *host);
uint32_t dpool_sched_host_credits(const dpool_sched_host_t *host);
uint32_t dpool_sched_host_processes(const dpool_sched_host_t *host);
size_t dpool_sched_task_count(const dpool_sched_t *self);

#endif
