/*  The scheduler's hosts: registering a worker daemon with its slots and functions,
    its credits (idle processes) and the per-function lists of hosts with a credit,
    and removing it with the tasks it was running. Joining and leaving are rare and may
    cost O(functions + pools); a credit costs O(functions of the host). */
#include "dpool_sched_internal.h"

#include <stdlib.h>

// Tasks waiting for a function that a host now offers go back to their pools: new
// submissions at the back, oldest first; re-runs at the front, so the walk for those
// goes newest first and the oldest re-run ends up first.
static void
s_adopt_orphans(dpool_sched_t *self, const dpool_sched_function_t *function)
{
    for (int pass = 0; pass < 2; pass++) {
        bool retries = pass == 1;
        dpool_link_t *link = retries ? self->orphans.prev : self->orphans.next;
        while (link != &self->orphans) {
            dpool_link_t *next = retries ? link->prev : link->next;
            dpool_sched_task_t *task = DPOOL_SCHED_TASK_OF(link, link);
            if (task->function == function && task->retry == retries) {
                dpool_list_remove(link);
                task->pool->orphans--;
                dpool_sched_enqueue(self, task, retries);
            }
            link = next;
        }
    }
}

// A change in the cluster's size moves the cap of every cap-0 pool. O(pools), rare.
static void
s_refile_cluster_pools(dpool_sched_t *self)
{
    for (dpool_link_t *link = self->pools.next; link != &self->pools; link = link->next) {
        dpool_sched_pool_t *pool = DPOOL_SCHED_POOL_OF(link, all_link);
        if (pool->cap == 0)
            dpool_sched_pool_refile(self, pool);
    }
}

static void
s_host_free(dpool_sched_host_t *host)
{
    free(host->offers);
    free(host);
}

dpool_sched_host_t *
dpool_sched_host_add(dpool_sched_t *self, void *host_data, uint32_t processes,
                     const char *const *functions, size_t function_count)
{
    dpool_sched_host_t *host = calloc(1, sizeof *host);
    if (!host || !(host->offers =
                       calloc(function_count ? function_count : 1, sizeof(dpool_sched_offer_t)))) {
        free(host);
        return NULL;
    }
    host->data = host_data;
    host->processes = processes;
    dpool_list_init(&host->leases);
    dpool_list_push_back(&self->hosts, &host->all_link);
    for (size_t i = 0; i < function_count; i++) {
        dpool_sched_function_t *function = dpool_sched_function_get(self, functions[i]);
        if (!function)
            continue; // out of memory: the host offers one function fewer
        bool duplicate = false;
        for (size_t j = 0; j < host->offer_count; j++)
            duplicate = duplicate || host->offers[j].function == function;
        if (duplicate)
            continue;
        dpool_sched_offer_t *offer = &host->offers[host->offer_count++];
        offer->host = host;
        offer->function = function;
        dpool_list_init(&offer->link);
        function->refs++;
        if (function->offered_by++ == 0)
            s_adopt_orphans(self, function);
    }
    self->total_processes += processes;
    s_refile_cluster_pools(self);
    return host;
}

void
dpool_sched_host_withdraw(dpool_sched_host_t *host)
{
    for (size_t i = 0; i < host->offer_count; i++)
        dpool_list_remove(&host->offers[i].link);
}

void
dpool_sched_host_set_chaining(dpool_sched_host_t *host, bool chains)
{
    host->chains = chains;
}

bool
dpool_sched_host_usable(const dpool_sched_host_t *host)
{
    return host->credits > 0 && host->running < host->processes;
}

void
dpool_sched_host_offer(dpool_sched_t *self, dpool_sched_host_t *host)
{
    for (size_t i = 0; i < host->offer_count; i++) {
        dpool_sched_offer_t *offer = &host->offers[i];
        dpool_list_push_back(&offer->function->free_offers, &offer->link);
        dpool_sched_function_wake(self, offer->function);
    }
}

/*  Which host a new lease goes to. One whose lease has just ended well comes first
    (its processes and its daemon are warm: a pool of 4 on 10 daemons of 100 ran about
    20% faster when its leases, ending and starting again, stayed on the same daemons
    instead of touring all ten), while one that has just taken a lease goes behind the
    others (dpool_sched_lease_start), so leases that run at once still spread over
    hosts. A host whose task failed (a process lost, a task refused) or that reports a
    new idle process goes behind the others too: a task that is run again should not
    go straight back to where it just failed. */
void
dpool_sched_host_prefer(dpool_sched_host_t *host)
{
    for (size_t i = 0; i < host->offer_count; i++) {
        dpool_sched_offer_t *offer = &host->offers[i];
        dpool_list_remove(&offer->link);
        dpool_list_push_front(&offer->function->free_offers, &offer->link);
    }
}

/*  Credits are counted as the daemon grants them and spends them (one per TASK that
    is not chained), up to the host's process count: that keeps both sides' counts
    equal. A credit may arrive while every process is held by a lease (a replacement
    process reported idle before the chained task meant for it arrived; the daemon
    then refuses that task and the lease ends), so a new lease needs a credit *and* a
    process no lease holds: the host never runs more leases than processes, whatever
    a daemon claims. */
uint32_t
dpool_sched_credit(dpool_sched_t *self, dpool_sched_host_t *host, uint32_t credits)
{
    uint32_t room = host->processes - host->credits;
    uint32_t accepted = credits < room ? credits : room;
    if (accepted == 0)
        return 0;
    bool was_usable = dpool_sched_host_usable(host);
    host->credits += accepted;
    if (!was_usable && dpool_sched_host_usable(host))
        dpool_sched_host_offer(self, host);
    return accepted;
}

void
dpool_sched_host_remove(dpool_sched_t *self, dpool_sched_host_t **host_p,
                        dpool_sched_visit_fn *visit, void *ctx)
{
    dpool_sched_host_t *host = *host_p;
    if (!host)
        return;
    *host_p = NULL;
    host->credits = 0; // so that no lease ending here offers it again
    dpool_sched_host_withdraw(host);
    dpool_link_t *link;
    while ((link = dpool_list_front(&host->leases))) {
        dpool_sched_lease_t *lease = DPOOL_CONTAINER_OF(link, dpool_sched_lease_t, host_link);
        dpool_sched_task_t *task = DPOOL_SCHED_TASK_OF(lease->chain.next, lease_link);
        // Tasks chained behind the running one never started: they queue again, in order.
        if (lease->length > 1)
            dpool_sched_unchain_from(self, DPOOL_SCHED_TASK_OF(task->lease_link.next, lease_link));
        dpool_sched_pool_t *pool = task->pool;
        dpool_sched_unlink_dispatched(self, task);
        pool->failed++;
        if (visit)
            visit(ctx, dpool_sched_task_id_of(self, task), task->data);
        dpool_sched_task_free(self, task);
        dpool_sched_pool_refile(self, pool);
    }
    bool lost_function = false;
    for (size_t i = 0; i < host->offer_count; i++) {
        dpool_sched_function_t *function = host->offers[i].function;
        lost_function = lost_function || function->offered_by == 1;
        function->offered_by--;
        // Parked pools re-check: with no host left, their oldest task becomes an orphan.
        dpool_sched_function_wake(self, function);
        dpool_sched_function_unref(self, function);
    }
    self->total_processes -= host->processes;
    for (link = self->pools.next; lost_function && link != &self->pools; link = link->next) {
        dpool_sched_pool_t *pool = DPOOL_SCHED_POOL_OF(link, all_link);
        if (!pool->parked_on && !dpool_list_linked(&pool->ring_link) && pool->queue_length)
            dpool_list_push_back(&self->ring, &pool->ring_link);
    }
    dpool_list_remove(&host->all_link);
    s_host_free(host);
}
