/*  The scheduler's records, shared by its three files: dpool_sched.c (tasks,
    functions, pools, dispatch), dpool_sched_hosts.c (hosts, their credits and offers)
    and dpool_sched_leases.c (leases and their chains). Not used outside the
    scheduler. */
#ifndef DPOOL_SCHED_INTERNAL_H
#define DPOOL_SCHED_INTERNAL_H

#include "dpool_list.h"
#include "dpool_sched.h"

#include <czmq.h>

// 2^10 task records per slab chunk (80 KiB): growth is rare, and records never move,
// so the intrusive links into them stay valid.
#define DPOOL_SCHED_CHUNK_BITS 10
#define DPOOL_SCHED_CHUNK_SIZE (1u << DPOOL_SCHED_CHUNK_BITS)
#define DPOOL_SCHED_NO_TASK UINT32_MAX

// Chaining: a lease sends its pool's next tasks ahead to the process it holds for
// up to about this much expected work, so the process does not idle for a broker
// round trip between short tasks ...
#define DPOOL_SCHED_CHAIN_AHEAD_US 2000
// ... and never more than this many tasks at once (the daemon's queue, and the
// latency a newly arriving pool waits for the process, stay small).
#define DPOOL_SCHED_CHAIN_MAX 64
// A lease whose running task has run this long takes no more: the average said short,
// this one is not, and what is chained behind it waits.
#define DPOOL_SCHED_CHAIN_OVERDUE_US 10000

typedef enum {
    DPOOL_SCHED_FREE = 0,
    DPOOL_SCHED_QUEUED,
    DPOOL_SCHED_ORPHAN,
    DPOOL_SCHED_RUNNING, // the head of its lease: the process runs it
    DPOOL_SCHED_CHAINED  // sent to its lease's process, to run after the one before it
} dpool_sched_state_t;

typedef struct dpool_sched_function dpool_sched_function_t;
typedef struct dpool_sched_lease dpool_sched_lease_t;

typedef struct {
    dpool_link_t link;       // pool queue, orphan queue or pool's dispatched list
    dpool_link_t lease_link; // its lease's chain while dispatched
    dpool_sched_pool_t *pool;
    dpool_sched_function_t *function;
    dpool_sched_lease_t *lease; // while dispatched
    void *data;
    union {
        int64_t deadline; // an orphan: when its grace ends (ms)
        int64_t sent_us;  // dispatched: when it was sent (us)
    };
    uint32_t generation;
    uint32_t index; // fixed slot number, part of the id
    uint32_t next_free;
    uint8_t state;
    bool retry; // queued at the front: a re-run keeps its place, also after waiting as an orphan
} dpool_sched_task_t;

struct dpool_sched_function {
    char *name;
    size_t refs;              // tasks naming it + hosts offering it
    uint32_t offered_by;      // hosts offering it
    dpool_link_t free_offers; // offers whose host has a credit, the next lease's first
    dpool_link_t parked;      // pools waiting for a free offer
};

typedef struct {
    dpool_link_t link; // in function->free_offers while the host has credits
    dpool_sched_host_t *host;
    dpool_sched_function_t *function;
} dpool_sched_offer_t;

/*  A lease: one process of a host, held by one pool from the dispatch of a task
    against a credit until the last task sent to that process has answered. The
    pool's cap counts leases, so it holds exactly: a lease's tasks run one after the
    other in its process (the worker daemon starts a chained task when the one before
    it ends), never side by side. */
struct dpool_sched_lease {
    dpool_link_t pool_link; // pool->leases; ones that just made room come first
    dpool_link_t host_link; // host->leases
    dpool_link_t chain;     // its tasks, the running one first
    dpool_sched_pool_t *pool;
    dpool_sched_host_t *host;
    uint32_t length;
    int64_t last_end_us; // when its previous task answered (or the lease began)
};

struct dpool_sched_host {
    void *data;
    uint32_t processes;
    uint32_t credits; // as the daemon granted them, at most processes
    uint32_t running; // leases
    bool chains;      // its daemon runs chained TASKs
    dpool_sched_offer_t *offers;
    size_t offer_count;
    dpool_link_t leases;
    dpool_link_t all_link;
};

struct dpool_sched_pool {
    dpool_link_t ring_link; // in the ring or in parked_on->parked
    dpool_link_t all_link;  // in every-pool list
    dpool_link_t queue;
    dpool_link_t running; // every dispatched task (running or chained)
    dpool_link_t leases;
    dpool_sched_function_t *parked_on;
    uint32_t cap;
    size_t queue_length;
    size_t orphans;
    size_t running_count; // leases: processes the pool holds, what its cap counts
    double service_us;    // moving average of its tasks' run time, as the broker sees it
    bool timed;           // service_us has a figure
    uint64_t done;
    uint64_t failed;
};

struct dpool_sched {
    int64_t grace_ms;
    zhashx_t *functions; // name -> dpool_sched_function_t
    dpool_link_t ring;
    dpool_link_t pools;
    dpool_link_t orphans;
    dpool_link_t hosts;
    uint32_t total_processes;
    size_t parked_pools;      // while any pool waits for a free process, no lease chains
    uint32_t generation_base; // where new records' generations start (per broker run)
    dpool_sched_task_t **chunks;
    size_t chunk_count;
    uint32_t free_head;
    size_t task_count;
};

#define DPOOL_SCHED_TASK_OF(ptr, member) DPOOL_CONTAINER_OF(ptr, dpool_sched_task_t, member)
#define DPOOL_SCHED_POOL_OF(ptr, member) DPOOL_CONTAINER_OF(ptr, dpool_sched_pool_t, member)

// The generation after this one; never 0, so id 0 never names a task.
static inline uint32_t
dpool_sched_next_generation(uint32_t generation)
{
    return generation + 1 ? generation + 1 : 1;
}

// Helpers the files share (each defined once, in the file named).
// dpool_sched.c:
uint64_t dpool_sched_task_id_of(const dpool_sched_t *self, const dpool_sched_task_t *task);
void dpool_sched_task_free(dpool_sched_t *self, dpool_sched_task_t *task);
dpool_sched_function_t *dpool_sched_function_get(dpool_sched_t *self, const char *name);
void dpool_sched_function_unref(dpool_sched_t *self, dpool_sched_function_t *function);
// A function got a free host, or lost its last one: its parked pools try again.
void dpool_sched_function_wake(dpool_sched_t *self, dpool_sched_function_t *function);
// Puts a pool into the ring when it has work and room and waits for nothing else.
void dpool_sched_pool_refile(dpool_sched_t *self, dpool_sched_pool_t *pool);
void dpool_sched_enqueue(dpool_sched_t *self, dpool_sched_task_t *task, bool at_front);
// Takes a pool out of its function's parked list (it waits no more).
void dpool_sched_unpark(dpool_sched_t *self, dpool_sched_pool_t *pool);
// dpool_sched_leases.c:
// The lease of pool that may take one more task now, or NULL. Chaining waits while
// any pool waits for a free process: leases must end then, so that pool gets one.
dpool_sched_lease_t *dpool_sched_chainable_lease(const dpool_sched_t *self,
                                                 const dpool_sched_pool_t *pool);
// Whether lease may be sent a task of function now: its host offers it, and its running
// task has not run past DPOOL_SCHED_CHAIN_OVERDUE_US.
bool dpool_sched_lease_takes(const dpool_sched_lease_t *lease,
                             const dpool_sched_function_t *function, int64_t now_us);
// Starts task on the host of offer under a new lease; the host goes behind the others
// with a credit for the function. False when out of memory (nothing changed).
bool dpool_sched_lease_start(dpool_sched_task_t *task, dpool_sched_offer_t *offer, int64_t now_us);
// Moves the oldest queued task of its pool into lease, as the lease's newest task.
void dpool_sched_lease_append(dpool_sched_task_t *task, dpool_sched_lease_t *lease, int64_t now_us);
// The running task of its lease answered at now_us: feeds the pool's run-time average
// (successes only) and the lease's clock.
void dpool_sched_lease_timed_end(dpool_sched_task_t *task, bool success, int64_t now_us);
// Takes a dispatched task out of its lease; ends the lease when it was the last one.
void dpool_sched_unlink_dispatched(dpool_sched_t *self, dpool_sched_task_t *task);
// Queues task and every task chained after it in its lease at the front of their
// pool, in order and under new ids (messages about the old ones are then stale), and
// ends the lease when nothing is left in it.
void dpool_sched_unchain_from(dpool_sched_t *self, dpool_sched_task_t *task);
// dpool_sched_hosts.c:
// A host can start a new lease: it has a credit and a process no lease holds.
bool dpool_sched_host_usable(const dpool_sched_host_t *host);
// Takes the host's offers out of every function's free list (it has no usable credit).
void dpool_sched_host_withdraw(dpool_sched_host_t *host);
// Puts the host's offers back when it became usable (and wakes parked pools).
void dpool_sched_host_offer(dpool_sched_t *self, dpool_sched_host_t *host);
// A lease on the host ended well and it can start another: its offers go first.
void dpool_sched_host_prefer(dpool_sched_host_t *host);

#endif
