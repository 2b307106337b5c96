/*  The scheduler's leases (see dpool_sched_internal.h): a pool's hold on one worker
    process, the chain of tasks sent to it, the timing that decides how many tasks a
    lease is sent ahead, and giving tasks back when a chain breaks. dpool_sched.c
    decides when to start a lease or to chain; this file keeps the records. */
#include "dpool_sched_internal.h"

#include <stdlib.h>

// When the running task of its lease began: when it was sent, or when the task before
// it in the same process ended, whichever came later.
static int64_t
s_began(const dpool_sched_task_t *task)
{
    return task->sent_us > task->lease->last_end_us ? task->sent_us : task->lease->last_end_us;
}

// How many tasks a lease of pool may hold: 1 (no chaining) until the pool has a
// figure for its tasks' run time, then enough to cover DPOOL_SCHED_CHAIN_AHEAD_US.
static uint32_t
s_chain_depth(const dpool_sched_pool_t *pool)
{
    if (!pool->timed)
        return 1;
    double service = pool->service_us > 1.0 ? pool->service_us : 1.0;
    double depth = 1.0 + DPOOL_SCHED_CHAIN_AHEAD_US / service;
    return depth >= DPOOL_SCHED_CHAIN_MAX ? DPOOL_SCHED_CHAIN_MAX : (uint32_t)depth;
}

dpool_sched_lease_t *
dpool_sched_chainable_lease(const dpool_sched_t *self, const dpool_sched_pool_t *pool)
{
    dpool_link_t *link = dpool_list_front(&pool->leases);
    if (!link || self->parked_pools > 0)
        return NULL;
    dpool_sched_lease_t *lease = DPOOL_CONTAINER_OF(link, dpool_sched_lease_t, pool_link);
    return lease->host->chains && lease->length < s_chain_depth(pool) ? lease : NULL;
}

static bool
s_host_offers(const dpool_sched_host_t *host, const dpool_sched_function_t *function)
{
    for (size_t i = 0; i < host->offer_count; i++)
        if (host->offers[i].function == function)
            return true;
    return false;
}

void
dpool_sched_lease_append(dpool_sched_task_t *task, dpool_sched_lease_t *lease, int64_t now_us)
{
    dpool_sched_pool_t *pool = task->pool;
    dpool_list_remove(&task->link);
    pool->queue_length--;
    task->state = lease->length == 0 ? DPOOL_SCHED_RUNNING : DPOOL_SCHED_CHAINED;
    task->lease = lease;
    task->sent_us = now_us;
    dpool_list_push_back(&pool->running, &task->link);
    dpool_list_push_back(&lease->chain, &task->lease_link);
    lease->length++;
    // The pool goes to the back of the ring, so pools with work take turns.
    dpool_list_remove(&pool->ring_link);
}

bool
dpool_sched_lease_start(dpool_sched_task_t *task, dpool_sched_offer_t *offer, int64_t now_us)
{
    dpool_sched_lease_t *lease = calloc(1, sizeof *lease);
    if (!lease)
        return false;
    dpool_sched_pool_t *pool = task->pool;
    dpool_sched_host_t *host = offer->host;
    lease->pool = pool;
    lease->host = host;
    lease->last_end_us = now_us;
    dpool_list_init(&lease->chain);
    dpool_list_push_front(&pool->leases, &lease->pool_link);
    dpool_list_push_back(&host->leases, &lease->host_link);
    pool->running_count++;
    host->running++;
    host->credits--;
    if (!dpool_sched_host_usable(host))
        dpool_sched_host_withdraw(host);
    else {
        dpool_list_remove(&offer->link);
        dpool_list_push_back(&offer->function->free_offers, &offer->link);
    }
    dpool_sched_lease_append(task, lease, now_us);
    return true;
}

bool
dpool_sched_lease_takes(const dpool_sched_lease_t *lease, const dpool_sched_function_t *function,
                        int64_t now_us)
{
    // A running task that has run this long is no short task, whatever the average says.
    const dpool_sched_task_t *head = DPOOL_SCHED_TASK_OF(lease->chain.next, lease_link);
    return s_host_offers(lease->host, function) &&
           now_us - s_began(head) <= DPOOL_SCHED_CHAIN_OVERDUE_US;
}

void
dpool_sched_lease_timed_end(dpool_sched_task_t *task, bool success, int64_t now_us)
{
    dpool_sched_pool_t *pool = task->pool;
    int64_t began = s_began(task);
    double took = now_us > began ? (double)(now_us - began) : 0.0;
    // Failures say little about how long tasks run (a crash or a missing function ends
    // one at once).
    if (success) {
        pool->service_us = pool->timed ? pool->service_us + (took - pool->service_us) / 8 : took;
        pool->timed = true;
    }
    task->lease->last_end_us = now_us;
}

void
dpool_sched_unlink_dispatched(dpool_sched_t *self, dpool_sched_task_t *task)
{
    dpool_sched_lease_t *lease = task->lease;
    dpool_sched_pool_t *pool = task->pool;
    dpool_list_remove(&task->link);
    dpool_list_remove(&task->lease_link);
    task->lease = NULL;
    if (--lease->length > 0) {
        dpool_sched_task_t *head = DPOOL_SCHED_TASK_OF(lease->chain.next, lease_link);
        head->state = DPOOL_SCHED_RUNNING;
        // It has room again: the next chained task comes here first.
        dpool_list_remove(&lease->pool_link);
        dpool_list_push_front(&pool->leases, &lease->pool_link);
        return;
    }
    dpool_sched_host_t *host = lease->host;
    bool was_usable = dpool_sched_host_usable(host);
    dpool_list_remove(&lease->pool_link);
    dpool_list_remove(&lease->host_link);
    free(lease);
    pool->running_count--;
    host->running--;
    if (!was_usable && dpool_sched_host_usable(host))
        dpool_sched_host_offer(self, host);
}

void
dpool_sched_unchain_from(dpool_sched_t *self, dpool_sched_task_t *task)
{
    dpool_sched_lease_t *lease = task->lease;
    dpool_sched_pool_t *pool = task->pool;
    // Newest first, each at the front: they end up in their old order.
    for (bool done = false; !done;) {
        dpool_sched_task_t *last = DPOOL_SCHED_TASK_OF(lease->chain.prev, lease_link);
        done = last == task;
        dpool_sched_unlink_dispatched(self, last); // may free the lease: the last turn
        // A new id: a late message about the one that was sent is then stale.
        last->generation = dpool_sched_next_generation(last->generation);
        last->retry = true;
        dpool_sched_enqueue(self, last, true);
    }
    dpool_sched_pool_refile(self, pool);
}
