/*  Client commands: POOL_OPEN, SUBMIT, TERMINATE, POOL_RELEASE, STATUS. A client record
    is made on a client's first message and freed when it holds no pool and no task,
    so a client that is done leaves nothing behind. Pool refs are per client: a client
    normally has one or two pools, so they sit in a small array rather than a table. */
#include "dpool_broker_internal.h"

#include <dpool/errors.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t
s_task_id_hash(const void *key)
{
    uint64_t id = *(const uint64_t *)key;
    return (size_t)(id * 0x9e3779b97f4a7c15ULL);
}

static int
s_task_id_compare(const void *a, const void *b)
{
    uint64_t left = *(const uint64_t *)a, right = *(const uint64_t *)b;
    return left < right ? -1 : left > right;
}

dpool_client_t *
dpool_clients_get(dpool_broker_t *self, zframe_t *routing_id)
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
s_add_task_id(void *ctx, uint64_t task_id, void *data)
{
    (void)task_id;
    dpool_task_t *task = data;
    if (task->client == ((void **)ctx)[0])
        zhashx_insert(((void **)ctx)[1], &task->client_task_id, task);
}

zhashx_t *
dpool_clients_task_ids(dpool_broker_t *self, dpool_client_t *client)
{
    if (client->task_ids)
        return client->task_ids;
    zhashx_t *task_ids = zhashx_new();
    if (!task_ids)
        return NULL;
    // Keys point at the task records' own ids: no copies, nothing to free.
    zhashx_set_key_hasher(task_ids, s_task_id_hash);
    zhashx_set_key_comparator(task_ids, s_task_id_compare);
    zhashx_set_key_duplicator(task_ids, NULL);
    zhashx_set_key_destructor(task_ids, NULL);
    // Once per client, O(tasks of its pools): only a client that re-sends pays it.
    void *ctx[2] = {client, task_ids};
    for (size_t i = 0; i < client->ref_count; i++)
        dpool_sched_pool_foreach(self->sched, client->refs[i].pool->sched_pool, s_add_task_id, ctx);
    client->task_ids = task_ids;
    return task_ids;
}

static void
s_client_free(dpool_client_t *client)
{
    zframe_destroy(&client->routing_id);
    zhashx_destroy(&client->task_ids);
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

bool
dpool_clients_name(const dpool_client_t *client, char *name, size_t name_size)
{
    size_t size = zframe_size(client->routing_id);
    const char *bytes = (const char *)zframe_data(client->routing_id);
    bool printable = size > 0 && size < name_size;
    for (size_t i = 0; printable && i < size; i++)
        printable = bytes[i] > 0x20 && bytes[i] < 0x7f;
    snprintf(name, name_size, "%.*s", printable ? (int)size : 0, bytes);
    if (!printable)
        snprintf(name, name_size, "(binary id of %zu bytes)", size);
    return printable;
}

static void
s_reply_opened(dpool_broker_t *self, dpool_client_t *client, uint32_t ref, int code,
               const char *text, uint32_t cap)
{
    dpool_msg_t reply = {.command = DPOOL_CMD_POOL_OPENED,
                         .pool_ref = ref,
                         .code = code,
                         .text = (char *)text,
                         .count = cap,
                         .task_id = self->epoch};
    dpool_broker_send(self, client->routing_id, &reply);
}

static void
s_on_pool_open(dpool_broker_t *self, dpool_client_t *client, dpool_msg_t *msg)
{
    dpool_pool_spec_t spec = {.pool_ref = msg->pool_ref,
                              .name = msg->name,
                              .cap = msg->count,
                              .retries = msg->retries,
                              .time_limit_ms = msg->time_limit_ms};
    dpool_pool_ref_t *ref = dpool_pools_open(self, client, &spec);
    if (!ref) {
        s_reply_opened(self, client, msg->pool_ref, DPOOL_ERR_NOMEM, "out of memory", 0);
        return;
    }
    dpool_sched_pool_stats_t stats;
    dpool_sched_pool_stats(self->sched, ref->pool->sched_pool, &stats);
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
    dpool_pool_ref_t *ref = dpool_pools_find(client, msg->pool_ref);
    if (!ref) {
        char text[64];
        snprintf(text, sizeof text, "pool %u is not open", msg->pool_ref);
        s_reply_result(self, client, msg->task_id, DPOOL_ERR_INVALID, text);
        return;
    }
    // A SUBMIT always has its arguments: in a frame of their own, or lent from a BATCH.
    const uint8_t *args = msg->payload ? zframe_data(msg->payload) : msg->payload_lent;
    size_t args_size = msg->payload ? zframe_size(msg->payload) : msg->payload_lent_size;
    int rc = dpool_pools_accept(self, client, ref, msg, args, args_size);
    if (rc == DPOOL_ERR_QUEUE_FULL)
        // Back-pressure: refused before anything is kept, so nothing accepted is dropped.
        s_reply_result(self, client, msg->task_id, rc,
                       "queue full: the broker holds its --max-queued limit of tasks");
    else if (rc != DPOOL_OK)
        s_reply_result(self, client, msg->task_id, rc, "broker out of memory");
}

static void
s_on_terminate(dpool_broker_t *self, dpool_client_t *client, dpool_msg_t *msg)
{
    dpool_pool_ref_t *ref = dpool_pools_find(client, msg->pool_ref);
    if (ref)
        dpool_pools_terminate(self, client, ref->pool);
    else
        dpool_broker_send_error(self, client->routing_id, DPOOL_ERR_INVALID,
                                "TERMINATE names a pool that is not open");
}

static void
s_on_release(dpool_broker_t *self, dpool_client_t *client, dpool_msg_t *msg)
{
    dpool_pool_ref_t *ref = dpool_pools_find(client, msg->pool_ref);
    if (!ref) {
        dpool_broker_send_error(self, client->routing_id, DPOOL_ERR_INVALID,
                                "POOL_RELEASE names a pool that is not open");
        return;
    }
    dpool_pool_t *pool = ref->pool;
    dpool_pools_terminate(self, client, pool);
    ref =
        dpool_pools_find(client, msg->pool_ref); // s_terminate may have grown nothing, but be exact
    *ref = client->refs[--client->ref_count];
    pool->holders--;
    dpool_pools_release(self, pool);
}

static void
s_on_status(dpool_broker_t *self, dpool_client_t *client)
{
    // A STATUS answer promises that every earlier submission of this client is on disk:
    // clients (and tests) can use it as a barrier.
    if (self->journal && dpool_journal_commit(self->journal) != 0)
        DPOOL_LOG_ERROR("journal commit failed before a status reply");
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
    dpool_clients_name(client, name, sizeof name);
    DPOOL_LOG_INFO("client %s %s: its private pools are terminated", name, how);
    client->heartbeats = false;
    while (client->ref_count > 0) {
        dpool_pool_ref_t ref = client->refs[client->ref_count - 1];
        if (!ref.pool->name)
            dpool_pools_terminate(self, client, ref.pool);
        client->ref_count--;
        ref.pool->holders--;
        dpool_pools_release(self, ref.pool);
    }
}

void
dpool_clients_on_message(dpool_broker_t *self, zframe_t *routing_id, dpool_msg_t *msg)
{
    dpool_client_t *client = dpool_clients_get(self, routing_id);
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
        dpool_msg_t beat = {.command = DPOOL_CMD_HEARTBEAT, .task_id = self->epoch};
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
            dpool_pools_release(self, pool);
        }
        zhashx_delete(self->clients, client->routing_id);
        s_client_free(client);
    }
}
