/*  The scheduler's records, shared by its two files: dpool_sched.c (tasks, functions,
    pools, dispatch) and dpool_sched_hosts.c (hosts, their credits and offers). Not
    used outside the scheduler. */
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

typedef enum {
    DPOOL_SCHED_FREE = 0,
    DPOOL_SCHED_QUEUED,
    DPOOL_SCHED_ORPHAN,
    DPOOL_SCHED_RUNNING
} dpool_sched_state_t;

typedef struct dpool_sched_function dpool_sched_function_t;

typedef struct {
    dpool_link_t link;      // pool queue, orphan queue or pool running list
    dpool_link_t host_link; // host's running list while running
    dpool_sched_pool_t *pool;
    dpool_sched_function_t *function;
    dpool_sched_host_t *host;
    void *data;
    int64_t deadline;
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
    dpool_link_t free_offers; // offers whose host has a credit, in round-robin order
    dpool_link_t parked;      // pools waiting for a free offer
};

typedef struct {
    dpool_link_t link; // in function->free_offers while the host has credits
    dpool_sched_host_t *host;
    dpool_sched_function_t *function;
} dpool_sched_offer_t;

struct dpool_sched_host {
    void *data;
    uint32_t processes;
    uint32_t credits;
    uint32_t running;
    dpool_sched_offer_t *offers;
    size_t offer_count;
    dpool_link_t running_tasks;
    dpool_link_t all_link;
};

struct dpool_sched_pool {
    dpool_link_t ring_link; // in the ring or in parked_on->parked
    dpool_link_t all_link;  // in every-pool list
    dpool_link_t queue;
    dpool_link_t running;
    dpool_sched_function_t *parked_on;
    uint32_t cap;
    size_t queue_length;
    size_t orphans;
    size_t running_count;
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
    dpool_sched_task_t **chunks;
    size_t chunk_count;
    uint32_t free_head;
    size_t task_count;
};

#define DPOOL_SCHED_TASK_OF(ptr, member) DPOOL_CONTAINER_OF(ptr, dpool_sched_task_t, member)
#define DPOOL_SCHED_POOL_OF(ptr, member) DPOOL_CONTAINER_OF(ptr, dpool_sched_pool_t, member)

// Helpers the two files share (each defined once, in the file named).
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
// dpool_sched_hosts.c:
// Takes the host's offers out of every function's free list (it has no credit left).
void dpool_sched_host_withdraw(dpool_sched_host_t *host);
// Unlinks a running task from its pool's and host's running lists.
void dpool_sched_unlink_running(dpool_sched_task_t *task);

#endif
