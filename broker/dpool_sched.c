/*  The scheduler: pools, hosts, functions and task records, with the dispatch rule
    of dpool_sched.h. Everything is linked intrusively (dpool_list.h) so that queueing,
    dispatching and completing a task allocate nothing once the task slab has grown:

      ring            pools that have queued work and room under their cap
      function        hosts offering it that have a credit ("free offers"), and the
                      pools whose oldest task waits for one of those ("parked")
      orphans         tasks whose function no host offers, oldest first; the grace
                      period is one constant, so oldest first is also soonest due

    A pool is in at most one of: the ring, one function's parked list, nowhere (no
    work or no room). Whatever can change that (submit, complete, credit, a host
    joining or leaving) re-files the pools it touches. */
#include "dpool_sched_internal.h"

#include <czmq.h>
#include <stdlib.h>
#include <string.h>

// 2^10 records per slab chunk: 80 KiB, so growth is rare and chunk pointers never move.

static dpool_sched_task_t *
s_slot(const dpool_sched_t *self, uint32_t index)
{
    return &self->chunks[index >> DPOOL_SCHED_CHUNK_BITS][index & (DPOOL_SCHED_CHUNK_SIZE - 1)];
}

uint64_t
dpool_sched_task_id_of(const dpool_sched_t *self, const dpool_sched_task_t *task)
{
    (void)self;
    return (uint64_t)task->generation << 32 | task->index;
}

static bool
s_grow(dpool_sched_t *self)
{
    if (self->chunk_count >= (UINT32_MAX >> DPOOL_SCHED_CHUNK_BITS))
        return false;
    dpool_sched_task_t **chunks = realloc(self->chunks, (self->chunk_count + 1) * sizeof *chunks);
    if (!chunks)
        return false;
    self->chunks = chunks;
    dpool_sched_task_t *chunk = calloc(DPOOL_SCHED_CHUNK_SIZE, sizeof *chunk);
    if (!chunk)
        return false;
    chunks[self->chunk_count] = chunk;
    uint32_t base = (uint32_t)(self->chunk_count * DPOOL_SCHED_CHUNK_SIZE);
    for (uint32_t i = DPOOL_SCHED_CHUNK_SIZE; i-- > 0;) {
        chunk[i].index = base + i;
        chunk[i].generation = self->generation_base;
        chunk[i].next_free = self->free_head;
        self->free_head = base + i;
    }
    self->chunk_count++;
    return true;
}

static dpool_sched_task_t *
s_task_alloc(dpool_sched_t *self)
{
    if (self->free_head == DPOOL_SCHED_NO_TASK && !s_grow(self))
        return NULL;
    dpool_sched_task_t *task = s_slot(self, self->free_head);
    self->free_head = task->next_free;
    uint32_t generation = dpool_sched_next_generation(task->generation);
    uint32_t index = task->index;
    memset(task, 0, sizeof *task);
    task->index = index;
    task->generation = generation;
    dpool_list_init(&task->link);
    dpool_list_init(&task->lease_link);
    self->task_count++;
    return task;
}

static dpool_sched_task_t *
s_task_lookup(const dpool_sched_t *self, uint64_t task_id)
{
    uint32_t index = (uint32_t)task_id;
    if (index >= self->chunk_count * DPOOL_SCHED_CHUNK_SIZE)
        return NULL;
    dpool_sched_task_t *task = s_slot(self, index);
    if (task->state == DPOOL_SCHED_FREE || task->generation != (uint32_t)(task_id >> 32))
        return NULL;
    return task;
}

void
dpool_sched_function_unref(dpool_sched_t *self, dpool_sched_function_t *function)
{
    if (--function->refs == 0)
        zhashx_delete(self->functions, function->name);
}

void
dpool_sched_task_free(dpool_sched_t *self, dpool_sched_task_t *task)
{
    dpool_sched_function_unref(self, task->function);
    task->state = DPOOL_SCHED_FREE;
    task->data = NULL;
    task->next_free = self->free_head;
    self->free_head = task->index;
    self->task_count--;
}

static void
s_function_destroy(void **item)
{
    dpool_sched_function_t *function = *item;
    if (function) {
        free(function->name);
        free(function);
        *item = NULL;
    }
}

dpool_sched_function_t *
dpool_sched_function_get(dpool_sched_t *self, const char *name)
{
    dpool_sched_function_t *function = zhashx_lookup(self->functions, name);
    if (function)
        return function;
    function = calloc(1, sizeof *function);
    if (!function || !(function->name = strdup(name))) {
        free(function);
        return NULL;
    }
    dpool_list_init(&function->free_offers);
    dpool_list_init(&function->parked);
    zhashx_insert(self->functions, function->name, function);
    return function;
}

dpool_sched_t *
dpool_sched_new(int64_t grace_ms)
{
    dpool_sched_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->functions = zhashx_new();
    if (!self->functions) {
        free(self);
        return NULL;
    }
    // Records are owned here and freed by refcount; keys live inside the records.
    zhashx_set_destructor(self->functions, s_function_destroy);
    zhashx_set_key_duplicator(self->functions, NULL);
    zhashx_set_key_destructor(self->functions, NULL);
    self->grace_ms = grace_ms;
    self->free_head = DPOOL_SCHED_NO_TASK;
    dpool_list_init(&self->ring);
    dpool_list_init(&self->pools);
    dpool_list_init(&self->orphans);
    dpool_list_init(&self->hosts);
    return self;
}

static void
s_pool_destroy(dpool_sched_pool_t *pool)
{
    dpool_list_remove(&pool->ring_link);
    dpool_list_remove(&pool->all_link);
    free(pool);
}

void
dpool_sched_destroy(dpool_sched_t **self_p)
{
    dpool_sched_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    dpool_link_t *link;
    while ((link = dpool_list_front(&self->pools)))
        s_pool_destroy(DPOOL_SCHED_POOL_OF(link, all_link));
    while ((link = dpool_list_front(&self->hosts))) {
        dpool_list_remove(link);
        dpool_sched_host_t *host = DPOOL_CONTAINER_OF(link, dpool_sched_host_t, all_link);
        dpool_link_t *lease_link;
        while ((lease_link = dpool_list_front(&host->leases))) {
            dpool_list_remove(lease_link);
            free(DPOOL_CONTAINER_OF(lease_link, dpool_sched_lease_t, host_link));
        }
        free(host->offers);
        free(host);
    }
    zhashx_destroy(&self->functions);
    for (size_t i = 0; i < self->chunk_count; i++)
        free(self->chunks[i]);
    free(self->chunks);
    free(self);
}

static uint32_t
s_effective_cap(const dpool_sched_t *self, const dpool_sched_pool_t *pool)
{
    return pool->cap ? pool->cap : self->total_processes;
}

static bool
s_has_room(const dpool_sched_t *self, const dpool_sched_pool_t *pool)
{
    return pool->running_count < s_effective_cap(self, pool);
}

// Puts a pool into the ring when it has work, room (or a lease to chain onto) and
// waits for nothing else.
void
dpool_sched_pool_refile(dpool_sched_t *self, dpool_sched_pool_t *pool)
{
    if (pool->parked_on || dpool_list_linked(&pool->ring_link))
        return;
    if (pool->queue_length > 0 &&
        (s_has_room(self, pool) || dpool_sched_chainable_lease(self, pool)))
        dpool_list_push_back(&self->ring, &pool->ring_link);
}

void
dpool_sched_unpark(dpool_sched_t *self, dpool_sched_pool_t *pool)
{
    if (!pool->parked_on)
        return;
    dpool_list_remove(&pool->ring_link);
    pool->parked_on = NULL;
    self->parked_pools--;
}

static void
s_park(dpool_sched_t *self, dpool_sched_pool_t *pool, dpool_sched_function_t *function)
{
    dpool_list_remove(&pool->ring_link);
    dpool_list_push_back(&function->parked, &pool->ring_link);
    pool->parked_on = function;
    self->parked_pools++;
}

// A function got a free host, or lost its last one: its parked pools try again, and
// before the pools already in the ring: they waited, while a pool whose own task just
// ended would otherwise take the process it freed again and again.
void
dpool_sched_function_wake(dpool_sched_t *self, dpool_sched_function_t *function)
{
    dpool_link_t *link;
    while ((link = function->parked.prev) != &function->parked) {
        dpool_sched_pool_t *pool = DPOOL_SCHED_POOL_OF(link, ring_link);
        dpool_sched_unpark(self, pool);
        dpool_sched_pool_refile(self, pool);
        if (dpool_list_linked(&pool->ring_link)) {
            dpool_list_remove(&pool->ring_link);
            dpool_list_push_front(&self->ring, &pool->ring_link);
        }
    }
}

dpool_sched_pool_t *
dpool_sched_pool_new(dpool_sched_t *self, uint32_t cap)
{
    dpool_sched_pool_t *pool = calloc(1, sizeof *pool);
    if (!pool)
        return NULL;
    pool->cap = cap;
    dpool_list_init(&pool->ring_link);
    dpool_list_init(&pool->queue);
    dpool_list_init(&pool->running);
    dpool_list_init(&pool->leases);
    dpool_list_push_back(&self->pools, &pool->all_link);
    return pool;
}

bool
dpool_sched_pool_remove(dpool_sched_t *self, dpool_sched_pool_t **pool_p)
{
    (void)self;
    dpool_sched_pool_t *pool = *pool_p;
    if (!pool)
        return true;
    if (pool->queue_length || pool->orphans || pool->running_count)
        return false;
    s_pool_destroy(pool);
    *pool_p = NULL;
    return true;
}

void
dpool_sched_pool_stats(dpool_sched_t *self, const dpool_sched_pool_t *pool,
                       dpool_sched_pool_stats_t *stats)
{
    stats->cap = pool->cap;
    stats->effective_cap = s_effective_cap(self, pool);
    stats->queued = pool->queue_length + pool->orphans;
    stats->running = pool->running_count;
    stats->done = pool->done;
    stats->failed = pool->failed;
}

static void
s_make_orphan(dpool_sched_t *self, dpool_sched_task_t *task, int64_t now_ms)
{
    task->state = DPOOL_SCHED_ORPHAN;
    task->deadline = now_ms + self->grace_ms;
    task->pool->orphans++;
    dpool_list_push_back(&self->orphans, &task->link);
}

void
dpool_sched_enqueue(dpool_sched_t *self, dpool_sched_task_t *task, bool at_front)
{
    dpool_sched_pool_t *pool = task->pool;
    task->state = DPOOL_SCHED_QUEUED;
    pool->queue_length++;
    if (at_front) {
        dpool_list_push_front(&pool->queue, &task->link);
        // A new oldest task: whatever the pool waited for may no longer matter.
        dpool_sched_unpark(self, pool);
    } else
        dpool_list_push_back(&pool->queue, &task->link);
    dpool_sched_pool_refile(self, pool);
}

static int
s_submit(dpool_sched_t *self, dpool_sched_pool_t *pool, const char *function, void *task_data,
         int64_t now_ms, bool at_front, uint64_t *task_id)
{
    dpool_sched_function_t *record = dpool_sched_function_get(self, function);
    if (!record)
        return -1;
    dpool_sched_task_t *task = s_task_alloc(self);
    if (!task) {
        if (record->refs == 0)
            zhashx_delete(self->functions, record->name);
        return -1;
    }
    record->refs++;
    task->pool = pool;
    task->function = record;
    task->data = task_data;
    task->retry = at_front;
    if (record->offered_by == 0)
        s_make_orphan(self, task, now_ms);
    else
        dpool_sched_enqueue(self, task, at_front);
    *task_id = dpool_sched_task_id_of(self, task);
    return 0;
}

int
dpool_sched_submit(dpool_sched_t *self, dpool_sched_pool_t *pool, const char *function,
                   void *task_data, int64_t now_ms, uint64_t *task_id)
{
    return s_submit(self, pool, function, task_data, now_ms, false, task_id);
}

int
dpool_sched_requeue(dpool_sched_t *self, dpool_sched_pool_t *pool, const char *function,
                    void *task_data, int64_t now_ms, uint64_t *task_id)
{
    return s_submit(self, pool, function, task_data, now_ms, true, task_id);
}

bool
dpool_sched_dispatch(dpool_sched_t *self, int64_t now_ms, int64_t now_us,
                     dpool_sched_dispatch_t *out)
{
    dpool_link_t *link;
    while ((link = dpool_list_front(&self->ring))) {
        dpool_sched_pool_t *pool = DPOOL_SCHED_POOL_OF(link, ring_link);
        dpool_link_t *head = dpool_list_front(&pool->queue);
        if (!head) {
            dpool_list_remove(link);
            continue;
        }
        dpool_sched_task_t *task = DPOOL_SCHED_TASK_OF(head, link);
        dpool_sched_function_t *function = task->function;
        if (function->offered_by == 0) {
            dpool_list_remove(head);
            pool->queue_length--;
            s_make_orphan(self, task, now_ms);
            continue;
        }
        bool room = s_has_room(self, pool);
        dpool_link_t *free_offer = room ? dpool_list_front(&function->free_offers) : NULL;
        dpool_sched_lease_t *lease = free_offer ? NULL : dpool_sched_chainable_lease(self, pool);
        if (lease && !dpool_sched_lease_takes(lease, function, now_us))
            lease = NULL;
        if (free_offer) {
            dpool_sched_offer_t *offer = DPOOL_CONTAINER_OF(free_offer, dpool_sched_offer_t, link);
            if (!dpool_sched_lease_start(task, offer, now_us)) {
                dpool_list_remove(link); // out of memory: the next completion tries again
                continue;
            }
            out->after_id = 0;
        } else if (lease) {
            dpool_sched_task_t *tail = DPOOL_SCHED_TASK_OF(lease->chain.prev, lease_link);
            out->after_id = dpool_sched_task_id_of(self, tail);
            dpool_sched_lease_append(task, lease, now_us);
            // Leases take turns too: the next chained task goes to another process.
            dpool_list_remove(&lease->pool_link);
            dpool_list_push_back(&pool->leases, &lease->pool_link);
        } else if (room) {
            // FIFO: the oldest task waits for its function, and so does the pool.
            s_park(self, pool, function);
            continue;
        } else {
            dpool_list_remove(link);
            continue;
        }
        dpool_sched_pool_refile(self, pool);
        out->task_id = dpool_sched_task_id_of(self, task);
        out->task_data = task->data;
        out->host_data = task->lease->host->data;
        return true;
    }
    return false;
}

static dpool_sched_task_t *
s_dispatched_on(const dpool_sched_t *self, uint64_t task_id, const dpool_sched_host_t *from_host)
{
    dpool_sched_task_t *task = s_task_lookup(self, task_id);
    if (!task || (task->state != DPOOL_SCHED_RUNNING && task->state != DPOOL_SCHED_CHAINED))
        return NULL;
    return !from_host || task->lease->host == from_host ? task : NULL;
}

void *
dpool_sched_complete(dpool_sched_t *self, uint64_t task_id, const dpool_sched_host_t *from_host,
                     bool success, int64_t now_us)
{
    dpool_sched_task_t *task = s_dispatched_on(self, task_id, from_host);
    if (!task)
        return NULL;
    dpool_sched_pool_t *pool = task->pool;
    if (now_us > 0 && task->state == DPOOL_SCHED_RUNNING)
        dpool_sched_lease_timed_end(task, success, now_us);
    dpool_sched_host_t *host = task->lease->host;
    bool lease_ends = task->lease->length == 1;
    dpool_sched_unlink_dispatched(self, task);
    if (success && lease_ends && dpool_sched_host_usable(host))
        dpool_sched_host_prefer(host);
    if (success)
        pool->done++;
    else
        pool->failed++;
    void *data = task->data;
    dpool_sched_task_free(self, task);
    dpool_sched_pool_refile(self, pool);
    return data;
}

bool
dpool_sched_unchained(dpool_sched_t *self, uint64_t task_id, const dpool_sched_host_t *from_host)
{
    dpool_sched_task_t *task = s_dispatched_on(self, task_id, from_host);
    if (!task)
        return false;
    dpool_sched_unchain_from(self, task);
    return true;
}

const char *
dpool_sched_task_function(const dpool_sched_t *self, uint64_t task_id)
{
    const dpool_sched_task_t *task = s_task_lookup(self, task_id);
    return task ? task->function->name : NULL;
}

void *
dpool_sched_task_data(const dpool_sched_t *self, uint64_t task_id,
                      const dpool_sched_host_t *from_host)
{
    const dpool_sched_task_t *task = from_host ? s_dispatched_on(self, task_id, from_host) : NULL;
    return task ? task->data : NULL;
}

void *
dpool_sched_cancel(dpool_sched_t *self, uint64_t task_id, void **host_data)
{
    *host_data = NULL;
    dpool_sched_task_t *task = s_task_lookup(self, task_id);
    if (!task)
        return NULL;
    dpool_sched_pool_t *pool = task->pool;
    if (task->state == DPOOL_SCHED_RUNNING || task->state == DPOOL_SCHED_CHAINED) {
        *host_data = task->lease->host->data;
        dpool_sched_unlink_dispatched(self, task);
    } else {
        bool was_head = dpool_list_front(&pool->queue) == &task->link;
        dpool_list_remove(&task->link);
        if (was_head)
            dpool_sched_unpark(self, pool);
        if (task->state == DPOOL_SCHED_QUEUED)
            pool->queue_length--;
        else
            pool->orphans--;
    }
    pool->failed++;
    void *data = task->data;
    dpool_sched_task_free(self, task);
    dpool_sched_pool_refile(self, pool);
    return data;
}

static void
s_visit_list(dpool_sched_t *self, const dpool_link_t *head, const dpool_sched_pool_t *pool,
             dpool_sched_visit_fn *visit, void *ctx)
{
    for (dpool_link_t *link = head->next; link != head; link = link->next) {
        dpool_sched_task_t *task = DPOOL_SCHED_TASK_OF(link, link);
        if (!pool || task->pool == pool)
            visit(ctx, dpool_sched_task_id_of(self, task), task->data);
    }
}

void
dpool_sched_pool_foreach(dpool_sched_t *self, dpool_sched_pool_t *pool, dpool_sched_visit_fn *visit,
                         void *ctx)
{
    s_visit_list(self, &pool->queue, NULL, visit, ctx);
    s_visit_list(self, &pool->running, NULL, visit, ctx);
    if (pool->orphans)
        s_visit_list(self, &self->orphans, pool, visit, ctx);
}

size_t
dpool_sched_expire(dpool_sched_t *self, int64_t now_ms, dpool_sched_visit_fn *visit, void *ctx)
{
    size_t expired = 0;
    dpool_link_t *link;
    while ((link = dpool_list_front(&self->orphans))) {
        dpool_sched_task_t *task = DPOOL_SCHED_TASK_OF(link, link);
        if (task->deadline > now_ms)
            break;
        dpool_list_remove(link);
        task->pool->orphans--;
        task->pool->failed++;
        if (visit)
            visit(ctx, dpool_sched_task_id_of(self, task), task->data);
        dpool_sched_task_free(self, task);
        expired++;
    }
    return expired;
}

int64_t
dpool_sched_next_deadline(const dpool_sched_t *self)
{
    dpool_link_t *link = dpool_list_front(&self->orphans);
    return link ? DPOOL_SCHED_TASK_OF(link, link)->deadline : -1;
}

void
dpool_sched_drain(dpool_sched_t *self, dpool_sched_visit_fn *visit, void *ctx)
{
    for (size_t index = 0; index < self->chunk_count * DPOOL_SCHED_CHUNK_SIZE; index++) {
        dpool_sched_task_t *task = s_slot(self, (uint32_t)index);
        if (task->state == DPOOL_SCHED_FREE)
            continue;
        uint64_t task_id = dpool_sched_task_id_of(self, task);
        void *host_data = NULL;
        void *data = dpool_sched_cancel(self, task_id, &host_data);
        if (visit)
            visit(ctx, task_id, data);
    }
}

void
dpool_sched_set_id_base(dpool_sched_t *self, uint32_t base)
{
    self->generation_base = base;
}

uint32_t
dpool_sched_total_processes(const dpool_sched_t *self)
{
    return self->total_processes;
}

uint32_t
dpool_sched_host_running(const dpool_sched_host_t *host)
{
    return host->running;
}

uint32_t
dpool_sched_host_credits(const dpool_sched_host_t *host)
{
    uint32_t free_processes = host->processes - host->running;
    return host->credits < free_processes ? host->credits : free_processes;
}

uint32_t
dpool_sched_host_processes(const dpool_sched_host_t *host)
{
    return host->processes;
}

size_t
dpool_sched_task_count(const dpool_sched_t *self)
{
    return self->task_count;
}
