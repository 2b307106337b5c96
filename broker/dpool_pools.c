/*  Pools and the tasks clients put in them: opening a pool ref (a private pool, or a
    named one shared by every client that names it), accepting a task into the
    scheduler (refusing past --max-queued, ignoring a re-sent one it already holds),
    terminating a client's tasks in a pool, and freeing pools nobody holds. Both live
    client commands and the journal's replay come through here, so a restarted broker
    rebuilds exactly what the commands would have built. */
#include "dpool_broker_internal.h"

#include <dpool/errors.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static dpool_pool_t *
s_pool_new(dpool_broker_t *self, const char *label, const dpool_pool_spec_t *spec)
{
    dpool_pool_t *pool = calloc(1, sizeof *pool);
    if (!pool)
        return NULL;
    pool->name = spec->name ? strdup(spec->name) : NULL;
    pool->label = strdup(label);
    pool->sched_pool = dpool_sched_pool_new(self->sched, spec->cap);
    pool->retries = spec->retries;
    pool->time_limit_ms = spec->time_limit_ms;
    if ((spec->name && !pool->name) || !pool->label || !pool->sched_pool) {
        dpool_sched_pool_remove(self->sched, &pool->sched_pool);
        free(pool->name);
        free(pool->label);
        free(pool);
        return NULL;
    }
    if (pool->name)
        zhashx_insert(self->named_pools, pool->name, pool);
    return pool;
}

void
dpool_pools_release(dpool_broker_t *self, dpool_pool_t *pool)
{
    if (pool->holders > 0 || !dpool_sched_pool_remove(self->sched, &pool->sched_pool))
        return;
    if (pool->name)
        zhashx_delete(self->named_pools, pool->name);
    free(pool->name);
    free(pool->label);
    free(pool);
}

static dpool_pool_t *
s_pool_find_or_make(dpool_broker_t *self, dpool_client_t *client, const dpool_pool_spec_t *spec)
{
    if (spec->name) {
        dpool_pool_t *pool = zhashx_lookup(self->named_pools, spec->name);
        if (pool)
            return pool; // the first opener's settings stay (PROTOCOL.md, "Open a pool")
        return s_pool_new(self, spec->name, spec);
    }
    // Private pools are shown in status by their client's routing id and ref.
    char name[DPOOL_PROTO_NAME_MAX + 1], label[DPOOL_PROTO_NAME_MAX + 32];
    if (dpool_clients_name(client, name, sizeof name))
        snprintf(label, sizeof label, "private:%s:%u", name, spec->pool_ref);
    else
        snprintf(label, sizeof label, "private:%u", spec->pool_ref);
    return s_pool_new(self, label, spec);
}

dpool_pool_ref_t *
dpool_pools_find(dpool_client_t *client, uint32_t ref)
{
    for (size_t i = 0; i < client->ref_count; i++)
        if (client->refs[i].ref == ref)
            return &client->refs[i];
    return NULL;
}

dpool_pool_ref_t *
dpool_pools_open(dpool_broker_t *self, dpool_client_t *client, const dpool_pool_spec_t *spec)
{
    // Opening a ref that is open already is how a client re-attaches after the broker
    // restarted from its journal (or after a lost reply): it is the same pool.
    dpool_pool_ref_t *ref = dpool_pools_find(client, spec->pool_ref);
    if (ref)
        return ref;
    if (client->ref_count == client->ref_capacity) {
        size_t capacity = client->ref_capacity ? client->ref_capacity * 2 : 2;
        dpool_pool_ref_t *refs = realloc(client->refs, capacity * sizeof *refs);
        if (!refs)
            return NULL;
        client->refs = refs;
        client->ref_capacity = capacity;
    }
    dpool_pool_t *pool = s_pool_find_or_make(self, client, spec);
    if (!pool)
        return NULL;
    pool->holders++;
    ref = &client->refs[client->ref_count++];
    *ref = (dpool_pool_ref_t){.ref = spec->pool_ref, .pool = pool};
    return ref;
}

static void
s_journal_submit(dpool_broker_t *self, const dpool_task_t *task, const char *function)
{
    const dpool_pool_t *pool = task->pool;
    dpool_sched_pool_stats_t stats;
    dpool_sched_pool_stats(self->sched, pool->sched_pool, &stats);
    dpool_journal_entry_t entry = {
        .client_id = zframe_data(task->client->routing_id),
        .client_id_size = zframe_size(task->client->routing_id),
        .pool_ref = task->pool_ref,
        .pool_name = pool->name,
        .cap = stats.cap,
        .retries = pool->retries,
        .time_limit_ms = pool->time_limit_ms,
        .task_id = task->client_task_id,
        .function = function,
        .flags = task->flags,
        .args = task->args,
        .args_size = task->args_size,
    };
    if (dpool_journal_submit(self->journal, &entry) != 0)
        DPOOL_LOG_ERROR("out of memory journalling a task: it is not durable");
}

// True when the client already holds this task: a re-send after a reconnect.
static bool
s_is_resent(dpool_broker_t *self, dpool_client_t *client, uint64_t client_task_id)
{
    if (client_task_id > client->last_task_id && !client->task_ids) {
        client->last_task_id = client_task_id;
        return false;
    }
    if (client_task_id > client->last_task_id)
        client->last_task_id = client_task_id;
    zhashx_t *task_ids = dpool_clients_task_ids(self, client);
    return task_ids && zhashx_lookup(task_ids, &client_task_id);
}

int
dpool_pools_accept(dpool_broker_t *self, dpool_client_t *client, const dpool_pool_ref_t *ref,
                   const dpool_msg_t *submit, const uint8_t *args, size_t args_size)
{
    uint64_t client_task_id = submit->task_id;
    if (s_is_resent(self, client, client_task_id))
        return DPOOL_OK; // a re-send of a task still held: it runs once
    if ((int64_t)dpool_sched_task_count(self->sched) >= self->config.max_queued)
        return DPOOL_ERR_QUEUE_FULL;
    dpool_task_t *task = calloc(1, sizeof *task + args_size);
    uint64_t task_id;
    bool keep_name = task && ref->pool->retries > 0;
    if (!task || (keep_name && !(task->function = strdup(submit->name))) ||
        dpool_sched_submit(self->sched, ref->pool->sched_pool, submit->name, task, self->now_ms,
                           &task_id) != 0) {
        dpool_broker_free_task(task);
        return DPOOL_ERR_NOMEM;
    }
    task->client = client;
    task->pool = ref->pool;
    task->pool_ref = ref->ref;
    task->flags = submit->flags;
    task->client_task_id = client_task_id;
    task->args_size = args_size;
    memcpy(task->args, args, args_size);
    if (client->task_ids)
        zhashx_insert(client->task_ids, &task->client_task_id, task);
    client->tasks++;
    if (self->journal && !self->replaying)
        s_journal_submit(self, task, submit->name);
    return DPOOL_OK;
}

typedef struct {
    dpool_client_t *client;
    uint64_t *ids;
    size_t count;
    size_t capacity;
} s_collect_t;

static void
s_collect_client_task(void *ctx, uint64_t task_id, void *data)
{
    s_collect_t *collect = ctx;
    const dpool_task_t *task = data;
    if (task->client != collect->client)
        return;
    if (collect->count == collect->capacity) {
        size_t capacity = collect->capacity ? collect->capacity * 2 : 64;
        uint64_t *ids = realloc(collect->ids, capacity * sizeof *ids);
        if (!ids)
            return; // out of memory: this task is not terminated now; its result still comes
        collect->ids = ids;
        collect->capacity = capacity;
    }
    collect->ids[collect->count++] = task_id;
}

void
dpool_pools_terminate(dpool_broker_t *self, dpool_client_t *client, dpool_pool_t *pool)
{
    s_collect_t collect = {.client = client};
    dpool_sched_pool_foreach(self->sched, pool->sched_pool, s_collect_client_task, &collect);
    // Keep the client record alive while its last tasks are finished one by one.
    client->ref_count++;
    for (size_t i = 0; i < collect.count; i++) {
        void *host_data = NULL;
        dpool_task_t *task = dpool_sched_cancel(self->sched, collect.ids[i], &host_data);
        if (!task)
            continue;
        if (host_data) {
            dpool_host_t *host = host_data;
            dpool_msg_t kill = {.command = DPOOL_CMD_KILL, .task_id = collect.ids[i]};
            dpool_broker_send(self, host->routing_id, &kill);
        }
        dpool_broker_finish_task(self, task, DPOOL_ERR_TERMINATED, "terminated", NULL);
    }
    client->ref_count--;
    free(collect.ids);
}

void
dpool_pools_destroy_all(dpool_broker_t *self)
{
    dpool_pool_t *pool;
    while ((pool = zhashx_first(self->named_pools))) {
        // The scheduler was drained, so this succeeds; if not, its destroy frees the rest.
        dpool_sched_pool_remove(self->sched, &pool->sched_pool);
        zhashx_delete(self->named_pools, pool->name);
        free(pool->name);
        free(pool->label);
        free(pool);
    }
}
