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
#include "dpool_sched.h"
#include "dpool_list.h"

#include <czmq.h>
#include <stdlib.h>
#include <string.h>

// 2^10 records per slab chunk: 80 KiB, so growth is rare and chunk pointers never move.
#define S_CHUNK_BITS 10
#define S_CHUNK_SIZE (1u << S_CHUNK_BITS)
#define S_NO_TASK UINT32_MAX

typedef enum { S_FREE = 0, S_QUEUED, S_ORPHAN, S_RUNNING } s_state_t;

typedef struct s_function s_function_t;

typedef struct {
    dpool_link_t link;      // pool queue, orphan queue or pool running list
    dpool_link_t host_link; // host's running list while running
    dpool_sched_pool_t *pool;
    s_function_t *function;
    dpool_sched_host_t *host;
    void *data;
    int64_t deadline;
    uint32_t generation;
    uint32_t index; // fixed slot number, part of the id
    uint32_t next_free;
    uint8_t state;
    bool retry; // queued at the front: a re-run keeps its place, also after waiting as an orphan
} s_task_t;

struct s_function {
    char *name;
    size_t refs;              // tasks naming it + hosts offering it
    uint32_t offered_by;      // hosts offering it
    dpool_link_t free_offers; // offers whose host has a credit, in round-robin order
    dpool_link_t parked;      // pools waiting for a free offer
};

typedef struct {
    dpool_link_t link; // in function->free_offers while the host has credits
    dpool_sched_host_t *host;
    s_function_t *function;
} s_offer_t;

struct dpool_sched_host {
    void *data;
    uint32_t processes;
    uint32_t credits;
    uint32_t running;
    s_offer_t *offers;
    size_t offer_count;
    dpool_link_t running_tasks;
    dpool_link_t all_link;
};

struct dpool_sched_pool {
    dpool_link_t ring_link; // in the ring or in parked_on->parked
    dpool_link_t all_link;  // in every-pool list
    dpool_link_t queue;
    dpool_link_t running;
    s_function_t *parked_on;
    uint32_t cap;
    size_t queue_length;
    size_t orphans;
    size_t running_count;
    uint64_t done;
    uint64_t failed;
};

struct dpool_sched {
    int64_t grace_ms;
    zhashx_t *functions; // name -> s_function_t
    dpool_link_t ring;
    dpool_link_t pools;
    dpool_link_t orphans;
    dpool_link_t hosts;
    uint32_t total_processes;
    s_task_t **chunks;
    size_t chunk_count;
    uint32_t free_head;
    size_t task_count;
};

#define S_TASK_OF(ptr, member) DPOOL_CONTAINER_OF(ptr, s_task_t, member)
#define S_POOL_OF(ptr, member) DPOOL_CONTAINER_OF(ptr, dpool_sched_pool_t, member)

static s_task_t *
s_slot(const dpool_sched_t *self, uint32_t index)
{
    return &self->chunks[index >> S_CHUNK_BITS][index & (S_CHUNK_SIZE - 1)];
}

static uint64_t
s_task_id(const dpool_sched_t *self, const s_task_t *task)
{
    (void)self;
    return (uint64_t)task->generation << 32 | task->index;
}

static bool
s_grow(dpool_sched_t *self)
{
    if (self->chunk_count >= (UINT32_MAX >> S_CHUNK_BITS))
        return false;
    s_task_t **chunks = realloc(self->chunks, (self->chunk_count + 1) * sizeof *chunks);
    if (!chunks)
        return false;
    self->chunks = chunks;
    s_task_t *chunk = calloc(S_CHUNK_SIZE, sizeof *chunk);
    if (!chunk)
        return false;
    chunks[self->chunk_count] = chunk;
    uint32_t base = (uint32_t)(self->chunk_count * S_CHUNK_SIZE);
    for (uint32_t i = S_CHUNK_SIZE; i-- > 0;) {
        chunk[i].index = base + i;
        chunk[i].next_free = self->free_head;
        self->free_head = base + i;
    }
    self->chunk_count++;
    return true;
}

static s_task_t *
s_task_alloc(dpool_sched_t *self)
{
    if (self->free_head == S_NO_TASK && !s_grow(self))
        return NULL;
    s_task_t *task = s_slot(self, self->free_head);
    self->free_head = task->next_free;
    uint32_t generation = task->generation + 1;
    uint32_t index = task->index;
    memset(task, 0, sizeof *task);
    task->index = index;
    task->generation = generation ? generation : 1; // id 0 never names a task
    dpool_list_init(&task->link);
    dpool_list_init(&task->host_link);
    self->task_count++;
    return task;
}

static s_task_t *
s_task_lookup(const dpool_sched_t *self, uint64_t task_id)
{
    uint32_t index = (uint32_t)task_id;
    if (index >= self->chunk_count * S_CHUNK_SIZE)
        return NULL;
    s_task_t *task = s_slot(self, index);
    if (task->state == S_FREE || task->generation != (uint32_t)(task_id >> 32))
        return NULL;
    return task;
}

static void
s_function_unref(dpool_sched_t *self, s_function_t *function)
{
    if (--function->refs == 0)
        zhashx_delete(self->functions, function->name);
}

static void
s_task_free(dpool_sched_t *self, s_task_t *task)
{
    s_function_unref(self, task->function);
    task->state = S_FREE;
    task->data = NULL;
    task->next_free = self->free_head;
    self->free_head = task->index;
    self->task_count--;
}

static void
s_function_destroy(void **item)
{
    s_function_t *function = *item;
    if (function) {
        free(function->name);
        free(function);
        *item = NULL;
    }
}

static s_function_t *
s_function_get(dpool_sched_t *self, const char *name)
{
    s_function_t *function = zhashx_lookup(self->functions, name);
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
    self->free_head = S_NO_TASK;
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
        s_pool_destroy(S_POOL_OF(link, all_link));
    while ((link = dpool_list_front(&self->hosts))) {
        dpool_list_remove(link);
        dpool_sched_host_t *host = DPOOL_CONTAINER_OF(link, dpool_sched_host_t, all_link);
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

// Puts a pool into the ring when it has work and room and waits for nothing else.
static void
s_pool_refile(dpool_sched_t *self, dpool_sched_pool_t *pool)
{
    if (pool->parked_on || dpool_list_linked(&pool->ring_link))
        return;
    if (pool->queue_length > 0 && s_has_room(self, pool))
        dpool_list_push_back(&self->ring, &pool->ring_link);
}

// A function got a free host, or lost its last one: its parked pools try again.
static void
s_function_wake(dpool_sched_t *self, s_function_t *function)
{
    dpool_link_t *link;
    while ((link = dpool_list_front(&function->parked))) {
        dpool_sched_pool_t *pool = S_POOL_OF(link, ring_link);
        dpool_list_remove(link);
        pool->parked_on = NULL;
        s_pool_refile(self, pool);
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
s_make_orphan(dpool_sched_t *self, s_task_t *task, int64_t now_ms)
{
    task->state = S_ORPHAN;
    task->deadline = now_ms + self->grace_ms;
    task->pool->orphans++;
    dpool_list_push_back(&self->orphans, &task->link);
}

static void
s_enqueue(dpool_sched_t *self, s_task_t *task, bool at_front)
{
    dpool_sched_pool_t *pool = task->pool;
    task->state = S_QUEUED;
    pool->queue_length++;
    if (at_front) {
        dpool_list_push_front(&pool->queue, &task->link);
        // A new oldest task: whatever the pool waited for may no longer matter.
        if (pool->parked_on) {
            dpool_list_remove(&pool->ring_link);
            pool->parked_on = NULL;
        }
    } else
        dpool_list_push_back(&pool->queue, &task->link);
    s_pool_refile(self, pool);
}

static int
s_submit(dpool_sched_t *self, dpool_sched_pool_t *pool, const char *function, void *task_data,
         int64_t now_ms, bool at_front, uint64_t *task_id)
{
    s_function_t *record = s_function_get(self, function);
    if (!record)
        return -1;
    s_task_t *task = s_task_alloc(self);
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
        s_enqueue(self, task, at_front);
    *task_id = s_task_id(self, task);
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

// Tasks waiting for a function that a host now offers go back to their pools: new
// submissions at the back, oldest first; re-runs at the front, so the walk for those
// goes newest first and the oldest re-run ends up first.
static void
s_adopt_orphans(dpool_sched_t *self, const s_function_t *function)
{
    for (int pass = 0; pass < 2; pass++) {
        bool retries = pass == 1;
        dpool_link_t *link = retries ? self->orphans.prev : self->orphans.next;
        while (link != &self->orphans) {
            dpool_link_t *next = retries ? link->prev : link->next;
            s_task_t *task = S_TASK_OF(link, link);
            if (task->function == function && task->retry == retries) {
                dpool_list_remove(link);
                task->pool->orphans--;
                s_enqueue(self, task, retries);
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
        dpool_sched_pool_t *pool = S_POOL_OF(link, all_link);
        if (pool->cap == 0)
            s_pool_refile(self, pool);
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
    if (!host || !(host->offers = calloc(function_count ? function_count : 1, sizeof(s_offer_t)))) {
        free(host);
        return NULL;
    }
    host->data = host_data;
    host->processes = processes;
    dpool_list_init(&host->running_tasks);
    dpool_list_push_back(&self->hosts, &host->all_link);
    for (size_t i = 0; i < function_count; i++) {
        s_function_t *function = s_function_get(self, functions[i]);
        if (!function)
            continue; // out of memory: the host offers one function fewer
        bool duplicate = false;
        for (size_t j = 0; j < host->offer_count; j++)
            duplicate = duplicate || host->offers[j].function == function;
        if (duplicate)
            continue;
        s_offer_t *offer = &host->offers[host->offer_count++];
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

static void
s_host_offers_withdraw(dpool_sched_host_t *host)
{
    for (size_t i = 0; i < host->offer_count; i++)
        dpool_list_remove(&host->offers[i].link);
}

uint32_t
dpool_sched_credit(dpool_sched_t *self, dpool_sched_host_t *host, uint32_t credits)
{
    uint32_t busy = host->credits + host->running;
    uint32_t room = host->processes > busy ? host->processes - busy : 0;
    uint32_t accepted = credits < room ? credits : room;
    if (accepted == 0)
        return 0;
    bool was_empty = host->credits == 0;
    host->credits += accepted;
    if (!was_empty)
        return accepted;
    for (size_t i = 0; i < host->offer_count; i++) {
        s_offer_t *offer = &host->offers[i];
        dpool_list_push_back(&offer->function->free_offers, &offer->link);
        s_function_wake(self, offer->function);
    }
    return accepted;
}

static void
s_unlink_running(s_task_t *task)
{
    dpool_list_remove(&task->link);
    dpool_list_remove(&task->host_link);
    task->pool->running_count--;
    task->host->running--;
}

void
dpool_sched_host_remove(dpool_sched_t *self, dpool_sched_host_t **host_p,
                        dpool_sched_visit_fn *visit, void *ctx)
{
    dpool_sched_host_t *host = *host_p;
    if (!host)
        return;
    *host_p = NULL;
    s_host_offers_withdraw(host);
    dpool_link_t *link;
    while ((link = dpool_list_front(&host->running_tasks))) {
        s_task_t *task = S_TASK_OF(link, host_link);
        dpool_sched_pool_t *pool = task->pool;
        s_unlink_running(task);
        pool->failed++;
        if (visit)
            visit(ctx, s_task_id(self, task), task->data);
        s_task_free(self, task);
        s_pool_refile(self, pool);
    }
    bool lost_function = false;
    for (size_t i = 0; i < host->offer_count; i++) {
        s_function_t *function = host->offers[i].function;
        lost_function = lost_function || function->offered_by == 1;
        function->offered_by--;
        // Parked pools re-check: with no host left, their oldest task becomes an orphan.
        s_function_wake(self, function);
        s_function_unref(self, function);
    }
    self->total_processes -= host->processes;
    for (link = self->pools.next; lost_function && link != &self->pools; link = link->next) {
        dpool_sched_pool_t *pool = S_POOL_OF(link, all_link);
        if (!pool->parked_on && !dpool_list_linked(&pool->ring_link) && pool->queue_length)
            dpool_list_push_back(&self->ring, &pool->ring_link);
    }
    dpool_list_remove(&host->all_link);
    s_host_free(host);
}

// Starts task on the host of offer. Keeps hosts in round-robin order per function.
static void
s_start(dpool_sched_t *self, s_task_t *task, s_offer_t *offer)
{
    dpool_sched_pool_t *pool = task->pool;
    dpool_sched_host_t *host = offer->host;
    dpool_list_remove(&task->link);
    pool->queue_length--;
    task->state = S_RUNNING;
    task->host = host;
    dpool_list_push_back(&pool->running, &task->link);
    dpool_list_push_back(&host->running_tasks, &task->host_link);
    pool->running_count++;
    host->running++;
    if (--host->credits == 0)
        s_host_offers_withdraw(host);
    else {
        dpool_list_remove(&offer->link);
        dpool_list_push_back(&offer->function->free_offers, &offer->link);
    }
    // The pool goes to the back of the ring, so pools with work take turns.
    dpool_list_remove(&pool->ring_link);
    s_pool_refile(self, pool);
}

bool
dpool_sched_dispatch(dpool_sched_t *self, int64_t now_ms, uint64_t *task_id, void **task_data,
                     void **host_data)
{
    dpool_link_t *link;
    while ((link = dpool_list_front(&self->ring))) {
        dpool_sched_pool_t *pool = S_POOL_OF(link, ring_link);
        dpool_link_t *head = dpool_list_front(&pool->queue);
        if (!head) {
            dpool_list_remove(link);
            continue;
        }
        s_task_t *task = S_TASK_OF(head, link);
        s_function_t *function = task->function;
        if (function->offered_by == 0) {
            dpool_list_remove(head);
            pool->queue_length--;
            s_make_orphan(self, task, now_ms);
            continue;
        }
        if (!s_has_room(self, pool)) {
            dpool_list_remove(link);
            continue;
        }
        dpool_link_t *free_offer = dpool_list_front(&function->free_offers);
        if (!free_offer) {
            // FIFO: the oldest task waits for its function, and so does the pool.
            dpool_list_remove(link);
            dpool_list_push_back(&function->parked, link);
            pool->parked_on = function;
            continue;
        }
        s_offer_t *offer = DPOOL_CONTAINER_OF(free_offer, s_offer_t, link);
        *host_data = offer->host->data;
        s_start(self, task, offer);
        *task_id = s_task_id(self, task);
        *task_data = task->data;
        return true;
    }
    return false;
}

void *
dpool_sched_complete(dpool_sched_t *self, uint64_t task_id, const dpool_sched_host_t *from_host,
                     bool success)
{
    s_task_t *task = s_task_lookup(self, task_id);
    if (!task || task->state != S_RUNNING || (from_host && task->host != from_host))
        return NULL;
    dpool_sched_pool_t *pool = task->pool;
    s_unlink_running(task);
    if (success)
        pool->done++;
    else
        pool->failed++;
    void *data = task->data;
    s_task_free(self, task);
    s_pool_refile(self, pool);
    return data;
}

const char *
dpool_sched_task_function(const dpool_sched_t *self, uint64_t task_id)
{
    const s_task_t *task = s_task_lookup(self, task_id);
    return task ? task->function->name : NULL;
}

void *
dpool_sched_task_data(const dpool_sched_t *self, uint64_t task_id,
                      const dpool_sched_host_t *from_host)
{
    const s_task_t *task = s_task_lookup(self, task_id);
    if (!task || task->state != S_RUNNING || task->host != from_host)
        return NULL;
    return task->data;
}

void *
dpool_sched_cancel(dpool_sched_t *self, uint64_t task_id, void **host_data)
{
    *host_data = NULL;
    s_task_t *task = s_task_lookup(self, task_id);
    if (!task)
        return NULL;
    dpool_sched_pool_t *pool = task->pool;
    if (task->state == S_RUNNING) {
        *host_data = task->host->data;
        s_unlink_running(task);
    } else {
        bool was_head = dpool_list_front(&pool->queue) == &task->link;
        dpool_list_remove(&task->link);
        if (was_head && pool->parked_on) {
            dpool_list_remove(&pool->ring_link);
            pool->parked_on = NULL;
        }
        if (task->state == S_QUEUED)
            pool->queue_length--;
        else
            pool->orphans--;
    }
    pool->failed++;
    void *data = task->data;
    s_task_free(self, task);
    s_pool_refile(self, pool);
    return data;
}

static void
s_visit_list(dpool_sched_t *self, const dpool_link_t *head, const dpool_sched_pool_t *pool,
             dpool_sched_visit_fn *visit, void *ctx)
{
    for (dpool_link_t *link = head->next; link != head; link = link->next) {
        s_task_t *task = S_TASK_OF(link, link);
        if (!pool || task->pool == pool)
            visit(ctx, s_task_id(self, task), task->data);
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
        s_task_t *task = S_TASK_OF(link, link);
        if (task->deadline > now_ms)
            break;
        dpool_list_remove(link);
        task->pool->orphans--;
        task->pool->failed++;
        if (visit)
            visit(ctx, s_task_id(self, task), task->data);
        s_task_free(self, task);
        expired++;
    }
    return expired;
}

int64_t
dpool_sched_next_deadline(const dpool_sched_t *self)
{
    dpool_link_t *link = dpool_list_front(&self->orphans);
    return link ? S_TASK_OF(link, link)->deadline : -1;
}

void
dpool_sched_drain(dpool_sched_t *self, dpool_sched_visit_fn *visit, void *ctx)
{
    for (size_t index = 0; index < self->chunk_count * S_CHUNK_SIZE; index++) {
        s_task_t *task = s_slot(self, (uint32_t)index);
        if (task->state == S_FREE)
            continue;
        uint64_t task_id = s_task_id(self, task);
        void *host_data = NULL;
        void *data = dpool_sched_cancel(self, task_id, &host_data);
        if (visit)
            visit(ctx, task_id, data);
    }
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
    return host->credits;
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
