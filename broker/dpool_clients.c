/*  Client commands: POOL_OPEN, SUBMIT, TERMINATE, POOL_RELEASE, STATUS. A client record
    is made on a client's first message and freed when it holds no pool and no task,
    so a client that is done leaves nothing behind. Pool refs are per client: a client
    normally has one or two pools, so they sit in a small array rather than a table. */
#include "dpool_broker_internal.h"
#include "dpool_log.h"

#include <dpool/errors.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static dpool_client_t *
s_client_get(dpool_broker_t *self, zframe_t *routing_id)
{
    dpool_client_t *client = zhashx_lookup(self->clients, routing_id);
    if (client)
        return client;
    client = calloc(1, sizeof *client);
    if (!client)
        return NULL;
    client->routing_id = zframe_dup(routing_id);
    if (!client->routing_id) {
        free(client);
        return NULL;
    }
    zhashx_insert(self->clients, client->routing_id, client);
    return client;
}

static void
s_client_free(dpool_client_t *client)
{
    zframe_destroy(&client->routing_id);
    free(client->refs);
    free(client);
}

void
dpool_clients_release_if_idle(dpool_broker_t *self, dpool_client_t *client)
{
    if (client->ref_count || client->tasks)
        return;
    zhashx_delete(self->clients, client->routing_id);
    s_client_free(client);
}

// Writes the client's routing id as text for the log: printable ids as they are.
static void
s_client_name(const dpool_client_t *client, char *name, size_t name_size)
{
    size_t size = zframe_size(client->routing_id);
    const char *bytes = (const char *)zframe_data(client->routing_id);
    bool printable = size > 0 && size < name_size;
    for (size_t i = 0; printable && i < size; i++)
        printable = bytes[i] > 0x20 && bytes[i] < 0x7f;
    snprintf(name, name_size, "%.*s", printable ? (int)size : 0, bytes);
    if (!printable)
        snprintf(name, name_size, "(binary id of %zu bytes)", size);
}

static dpool_pool_ref_t *
s_ref_find(dpool_client_t *client, uint32_t ref)
{
    for (size_t i = 0; i < client->ref_count; i++)
        if (client->refs[i].ref == ref)
            return &client->refs[i];
    return NULL;
}

static dpool_pool_t *
s_pool_new(dpool_broker_t *self, const char *name, const char *label, const dpool_msg_t *open)
{
    dpool_pool_t *pool = calloc(1, sizeof *pool);
    if (!pool)
        return NULL;
    pool->name = name ? strdup(name) : NULL;
    pool->label = strdup(label);
    pool->sched_pool = dpool_sched_pool_new(self->sched, open->count);
    pool->retries = open->retries;
    pool->time_limit_ms = open->time_limit_ms;
    if ((name && !pool->name) || !pool->label || !pool->sched_pool) {
        dpool_sched_pool_remove(self->sched, &pool->sched_pool);
        free(pool->name);
        free(pool->label);
        free(pool);
        return NULL;
    }
    if (name)
        zhashx_insert(self->named_pools, name, pool);
    return pool;
}

// Frees a pool nobody holds once its last task is gone; keeps it otherwise.
static void
s_pool_release(dpool_broker_t *self, dpool_pool_t *pool)
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
s_pool_open(dpool_broker_t *self, dpool_client_t *client, const dpool_msg_t *msg)
{
    if (msg->name) {
        dpool_pool_t *pool = zhashx_lookup(self->named_pools, msg->name);
        if (pool)
            return pool; // the first opener's cap stays (PROTOCOL.md, "Open a pool")
        return s_pool_new(self, msg->name, msg->name, msg);
    }
    // Private pools are shown in status by their client's routing id and ref.
    char label[DPOOL_PROTO_NAME_MAX + 32];
    size_t size = zframe_size(client->routing_id);
    const char *bytes = (const char *)zframe_data(client->routing_id);
    bool printable = size > 0 && size <= DPOOL_PROTO_NAME_MAX;
    for (size_t i = 0; printable && i < size; i++)
        printable = bytes[i] > 0x20 && bytes[i] < 0x7f;
    if (printable)
        snprintf(label, sizeof label, "private:%.*s:%u", (int)size, bytes, msg->pool_ref);
    else
        snprintf(label, sizeof label, "private:%u", msg->pool_ref);
    return s_pool_new(self, NULL, label, msg);
}

static void
s_reply_opened(dpool_broker_t *self, dpool_client_t *client, uint32_t ref, int code,
               const char *text, uint32_t cap)
{
    dpool_msg_t reply = {.command = DPOOL_CMD_POOL_OPENED,
                         .pool_ref = ref,
                         .code = code,
                         .text = (char *)text,
                         .count = cap};
    dpool_broker_send(self, client->routing_id, &reply);
}

static void
s_on_pool_open(dpool_broker_t *self, dpool_client_t *client, dpool_msg_t *msg)
{
    if (s_ref_find(client, msg->pool_ref)) {
        s_reply_opened(self, client, msg->pool_ref, DPOOL_ERR_INVALID,
                       "pool_ref is already open on this connection", 0);
        return;
    }
    if (client->ref_count == client->ref_capacity) {
        size_t capacity = client->ref_capacity ? client->ref_capacity * 2 : 2;
        dpool_pool_ref_t *refs = realloc(client->refs, capacity * sizeof *refs);
        if (!refs) {
            s_reply_opened(self, client, msg->pool_ref, DPOOL_ERR_NOMEM, "out of memory", 0);
            return;
        }
        client->refs = refs;
        client->ref_capacity = capacity;
    }
    dpool_pool_t *pool = s_pool_open(self, client, msg);
    if (!pool) {
        s_reply_opened(self, client, msg->pool_ref, DPOOL_ERR_NOMEM, "out of memory", 0);
        return;
    }
    pool->holders++;
    client->refs[client->ref_count++] = (dpool_pool_ref_t){.ref = msg->pool_ref, .pool = pool};
    dpool_sched_pool_stats_t stats;
    dpool_sched_pool_stats(self->sched, pool->sched_pool, &stats);
    s_reply_opened(self, client, msg->pool_ref, DPOOL_OK, NULL, stats.effective_cap);
}

static void
s_reply_result(dpool_broker_t *self, dpool_client_t *client, uint64_t task_id, int code,
               const char *text)
{
    dpool_msg_t reply = {
        .command = DPOOL_CMD_RESULT, .task_id = task_id, .code = code, .text = (char *)text};
    dpool_broker_send(self, client->routing_id, &reply);
}

static void
s_on_submit(dpool_broker_t *self, dpool_client_t *client, dpool_msg_t *msg)
{
    dpool_pool_ref_t *ref = s_ref_find(client, msg->pool_ref);
    if (!ref) {
        char text[64];
        snprintf(text, sizeof text, "pool %u is not open", msg->pool_ref);
        s_reply_result(self, client, msg->task_id, DPOOL_ERR_INVALID, text);
        return;
    }
    if ((int64_t)dpool_sched_task_count(self->sched) >= self->config.max_queued) {
        // Back-pressure: refused before anything is kept, so nothing accepted is dropped.
        s_reply_result(self, client, msg->task_id, DPOOL_ERR_QUEUE_FULL,
                       "queue full: the broker holds its --max-queued limit of tasks");
        return;
    }
    dpool_task_t *task = calloc(1, sizeof *task);
    uint64_t task_id;
    bool keep_name = task && ref->pool->retries > 0;
    if (!task || (keep_name && !(task->function = strdup(msg->name))) ||
        dpool_sched_submit(self->sched, ref->pool->sched_pool, msg->name, task, self->now_ms,
                           &task_id) != 0) {
        dpool_broker_free_task(task);
        s_reply_result(self, client, msg->task_id, DPOOL_ERR_NOMEM, "broker out of memory");
        return;
    }
    task->client = client;
    task->pool = ref->pool;
    task->flags = msg->flags;
    task->client_task_id = msg->task_id;
    task->args = msg->payload;
    msg->payload = NULL;
    client->tasks++;
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

// Fails every task of this client in pool as terminated; running ones are killed.
static void
s_terminate(dpool_broker_t *self, dpool_client_t *client, dpool_pool_t *pool)
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

static void
s_on_terminate(dpool_broker_t *self, dpool_client_t *client, dpool_msg_t *msg)
{
    dpool_pool_ref_t *ref = s_ref_find(client, msg->pool_ref);
    if (ref)
        s_terminate(self, client, ref->pool);
    else
        dpool_broker_send_error(self, client->routing_id, DPOOL_ERR_INVALID,
                                "TERMINATE names a pool that is not open");
}

static void
s_on_release(dpool_broker_t *self, dpool_client_t *client, dpool_msg_t *msg)
{
    dpool_pool_ref_t *ref = s_ref_find(client, msg->pool_ref);
    if (!ref) {
        dpool_broker_send_error(self, client->routing_id, DPOOL_ERR_INVALID,
                                "POOL_RELEASE names a pool that is not open");
        return;
    }
    dpool_pool_t *pool = ref->pool;
    s_terminate(self, client, pool);
    ref = s_ref_find(client, msg->pool_ref); // s_terminate may have grown nothing, but be exact
    *ref = client->refs[--client->ref_count];
    pool->holders--;
    s_pool_release(self, pool);
}

static void
s_on_status(dpool_broker_t *self, dpool_client_t *client)
{
    dpool_msg_t reply = {.command = DPOOL_CMD_STATUS_REPLY, .payload = dpool_status_build(self)};
    if (!reply.payload) {
        dpool_broker_send_error(self, client->routing_id, DPOOL_ERR_NOMEM, "out of memory");
        return;
    }
    dpool_broker_send(self, client->routing_id, &reply);
}

// Drops what a gone client holds: private pools are terminated and freed, named ones
// released with their tasks left to run. The record itself goes when its last task does.
static void
s_vanish(dpool_broker_t *self, dpool_client_t *client, const char *how)
{
    char name[80];
    s_client_name(client, name, sizeof name);
    DPOOL_LOG_INFO("client %s %s: its private pools are terminated", name, how);
    client->heartbeats = false;
    while (client->ref_count > 0) {
        dpool_pool_ref_t ref = client->refs[client->ref_count - 1];
        if (!ref.pool->name)
            s_terminate(self, client, ref.pool);
        client->ref_count--;
        ref.pool->holders--;
        s_pool_release(self, ref.pool);
    }
}

void
dpool_clients_on_message(dpool_broker_t *self, zframe_t *routing_id, dpool_msg_t *msg)
{
    dpool_client_t *client = s_client_get(self, routing_id);
    if (!client) {
        DPOOL_LOG_ERROR("out of memory for a new client");
        return;
    }
    if (msg->command == DPOOL_CMD_HEARTBEAT)
        client->heartbeats = true;
    client->expires_ms = self->now_ms + DPOOL_HEARTBEAT_MS * DPOOL_HEARTBEAT_LIVENESS;
    switch (msg->command) {
    case DPOOL_CMD_BYE:
        s_vanish(self, client, "left");
        break;
    case DPOOL_CMD_POOL_OPEN:
        s_on_pool_open(self, client, msg);
        break;
    case DPOOL_CMD_SUBMIT:
        s_on_submit(self, client, msg);
        break;
    case DPOOL_CMD_TERMINATE:
        s_on_terminate(self, client, msg);
        break;
    case DPOOL_CMD_POOL_RELEASE:
        s_on_release(self, client, msg);
        break;
    case DPOOL_CMD_STATUS:
        s_on_status(self, client);
        break;
    default:
        break;
    }
    dpool_clients_release_if_idle(self, client);
}

void
dpool_clients_tick(dpool_broker_t *self)
{
    zlist_t *vanished = zlist_new();
    for (dpool_client_t *client = zhashx_first(self->clients); client;
         client = zhashx_next(self->clients)) {
        if (!client->heartbeats)
            continue;
        if (client->expires_ms <= self->now_ms) {
            zlist_append(vanished, client);
            continue;
        }
        dpool_msg_t beat = {.command = DPOOL_CMD_HEARTBEAT};
        dpool_broker_send(self, client->routing_id, &beat);
    }
    for (dpool_client_t *client = zlist_first(vanished); client; client = zlist_next(vanished)) {
        s_vanish(self, client, "vanished");
        dpool_clients_release_if_idle(self, client);
    }
    zlist_destroy(&vanished);
}

void
dpool_clients_destroy_all(dpool_broker_t *self)
{
    dpool_client_t *client;
    while ((client = zhashx_first(self->clients))) {
        for (size_t i = 0; i < client->ref_count; i++) {
            dpool_pool_t *pool = client->refs[i].pool;
            pool->holders--;
            s_pool_release(self, pool);
        }
        zhashx_delete(self->clients, client->routing_id);
        s_client_free(client);
    }
}
