/*  The broker's socket, main loop, outbox and timers. One ROUTER; each loop turn reads
    every message that is ready (up to DPOOL_BROKER_BATCH) and hands each to
    dpool_broker_inbound.c, then lets the scheduler dispatch as many tasks as credits
    and caps allow, then runs the timers (grace periods, heartbeats), then sends what
    the turn produced, one message per peer. */
#include "dpool_broker_internal.h"
#include "dpool_clock.h"

#include <dpool/errors.h>
#include <errno.h>
#include <poll.h>
#include <sys/random.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
dpool_broker_config_defaults(dpool_broker_config_t *config)
{
    memset(config, 0, sizeof *config);
    config->bind = DPOOL_DEFAULT_ENDPOINT;
    config->grace_ms = 10000;
    config->max_queued = 10000000;
    config->max_message = 64 * 1024 * 1024;
}

bool
dpool_broker_endpoint_is_local(const char *endpoint)
{
    if (strncmp(endpoint, "ipc://", 6) == 0 || strncmp(endpoint, "inproc://", 9) == 0)
        return true;
    if (strncmp(endpoint, "tcp://", 6) != 0)
        return false;
    const char *host = endpoint + 6;
    // "tcp://eth0;127.0.0.1:5555" names a source interface first; the bind is what counts.
    const char *semicolon = strchr(host, ';');
    if (semicolon)
        host = semicolon + 1;
    if (strncmp(host, "127.", 4) == 0 || strncmp(host, "localhost:", 10) == 0 ||
        strncmp(host, "[::1]:", 6) == 0)
        return true;
    return false;
}

size_t
dpool_broker_frame_hash(const void *key)
{
    // FNV-1a over the routing id's bytes.
    const zframe_t *frame = key;
    const unsigned char *bytes = zframe_data((zframe_t *)frame);
    size_t size = zframe_size((zframe_t *)frame); // a library call: once, not per byte
    size_t hash = 14695981039346656037ULL;
    for (size_t i = 0; i < size; i++)
        hash = (hash ^ bytes[i]) * 1099511628211ULL;
    return hash;
}

int
dpool_broker_frame_compare(const void *a, const void *b)
{
    zframe_t *left = (zframe_t *)a, *right = (zframe_t *)b;
    size_t left_size = zframe_size(left), right_size = zframe_size(right);
    if (left_size != right_size)
        return left_size < right_size ? -1 : 1;
    return memcmp(zframe_data(left), zframe_data(right), left_size);
}

static void
s_frame_destroy(void **item)
{
    zframe_destroy((zframe_t **)item);
}

static void
s_batch_destroy(void **item)
{
    dpool_batch_destroy((dpool_batch_t **)item);
}

static zhashx_t *
s_peer_table(void)
{
    zhashx_t *table = zhashx_new();
    if (!table)
        return NULL;
    // Keys are the records' own routing-id frames: no copy, freed with the record.
    zhashx_set_key_hasher(table, dpool_broker_frame_hash);
    zhashx_set_key_comparator(table, dpool_broker_frame_compare);
    zhashx_set_key_duplicator(table, NULL);
    zhashx_set_key_destructor(table, NULL);
    return table;
}

static bool
s_write_endpoint_file(const char *path, const char *endpoint)
{
    char temporary[4096];
    snprintf(temporary, sizeof temporary, "%s.tmp", path);
    FILE *file = fopen(temporary, "w");
    if (!file)
        return false;
    bool written = fprintf(file, "%s\n", endpoint) > 0;
    written = fclose(file) == 0 && written;
    // rename makes the file appear whole: a test polling for it never reads half a line.
    return written && rename(temporary, path) == 0;
}

static int
s_bind(dpool_broker_t *self, char *why, size_t why_size)
{
    self->router = zsock_new(ZMQ_ROUTER);
    if (!self->router) {
        snprintf(why, why_size, "cannot create a socket: %s", zmq_strerror(zmq_errno()));
        return -1;
    }
    // A peer that vanishes must not keep the broker's send queue growing for ever, and a
    // message to a vanished peer is dropped rather than blocking the loop.
    zsock_set_router_mandatory(self->router, 0);
    zsock_set_sndhwm(self->router, 0);
    zsock_set_rcvhwm(self->router, 0);
    zsock_set_rcvtimeo(self->router, 0); // s_drain reads what is there, never waits
    // A peer whose link was cut comes back on a new connection with its old routing id
    // while the broker may still hold the dead one: the new connection takes the id over
    // (without handover ZeroMQ would refuse it until TCP gives up on the old one).
    zsock_set_router_handover(self->router, 1);
    // ZMTP heartbeats drop connections that went silent, so they do not linger.
    zsock_set_heartbeat_ivl(self->router, 1000);
    zsock_set_heartbeat_timeout(self->router, 3000);
    zsock_set_linger(self->router, 0);
    if (self->auth)
        dpool_auth_apply(self->auth, self->router);
    // Two limits. Up to twice --max-message (and at least a BATCH's largest frame), a
    // message is received, refused with TOO_BIG and counted (dpool_broker_handle), so its
    // sender learns why. Past that ZeroMQ refuses it before buffering and drops the
    // connection: no peer can make the broker hold more. ZeroMQ's limit is per frame, and a BATCH's
    // messages share one frame, which a sender keeps under DPOOL_BATCH_FRAME_MAX.
    int64_t hard_limit = 2 * self->config.max_message + 65536;
    if (hard_limit < DPOOL_BATCH_FRAME_MAX + 65536)
        hard_limit = DPOOL_BATCH_FRAME_MAX + 65536;
    zsock_set_maxmsgsize(self->router, (int)(hard_limit > INT32_MAX ? INT32_MAX : hard_limit));
    if (zsock_bind(self->router, "%s", self->config.bind) < 0) {
        snprintf(why, why_size, "cannot bind %s: %s", self->config.bind, zmq_strerror(zmq_errno()));
        return -1;
    }
    self->endpoint = zsock_last_endpoint(self->router);
    if (!self->endpoint) {
        snprintf(why, why_size, "cannot read the bound endpoint");
        return -1;
    }
    if (self->config.endpoint_file &&
        !s_write_endpoint_file(self->config.endpoint_file, self->endpoint)) {
        snprintf(why, why_size, "cannot write %s: %s", self->config.endpoint_file, strerror(errno));
        return -1;
    }
    return 0;
}

// How long a client rebuilt from the journal has to come back before it counts as
// vanished: generous, since it must notice the restart and reconnect first.
#define S_REPLAYED_CLIENT_GRACE_MS (10 * DPOOL_HEARTBEAT_MS * DPOOL_HEARTBEAT_LIVENESS)

// Rebuilds one journalled task exactly as its POOL_OPEN and SUBMIT built it.
static void
s_replay_entry(void *ctx, const dpool_journal_entry_t *entry)
{
    dpool_broker_t *self = ctx;
    zframe_t *routing_id = zframe_new(entry->client_id, entry->client_id_size);
    dpool_client_t *client = routing_id ? dpool_clients_get(self, routing_id) : NULL;
    zframe_destroy(&routing_id);
    if (!client)
        return;
    client->heartbeats = true;
    client->expires_ms = self->now_ms + S_REPLAYED_CLIENT_GRACE_MS;
    dpool_pool_spec_t spec = {.pool_ref = entry->pool_ref,
                              .name = entry->pool_name,
                              .cap = entry->cap,
                              .retries = entry->retries,
                              .time_limit_ms = entry->time_limit_ms};
    dpool_pool_ref_t *ref = dpool_pools_open(self, client, &spec);
    dpool_msg_t submit = {
        .task_id = entry->task_id, .name = (char *)entry->function, .flags = entry->flags};
    if (!ref ||
        dpool_pools_accept(self, client, ref, &submit, entry->args, entry->args_size) != DPOOL_OK)
        DPOOL_LOG_ERROR("cannot rebuild a journalled task: out of memory");
}

static int
s_open_journal(dpool_broker_t *self, char *why, size_t why_size)
{
    self->replaying = true;
    self->journal =
        dpool_journal_open(self->config.journal_dir, s_replay_entry, self, why, why_size);
    self->replaying = false;
    if (!self->journal)
        return -1;
    DPOOL_LOG_INFO("journal %s: %zu accepted tasks carried over", self->config.journal_dir,
                   dpool_journal_live(self->journal));
    return 0;
}

static uint64_t
s_random_epoch(void)
{
    uint64_t epoch = 0;
    if (getrandom(&epoch, sizeof epoch, 0) != (ssize_t)sizeof epoch)
        epoch = (uint64_t)dpool_clock_wall() ^ ((uint64_t)getpid() << 32);
    return epoch ? epoch : 1;
}

dpool_broker_t *
dpool_broker_new(const dpool_broker_config_t *config, char *why, size_t why_size)
{
    if (!config->insecure && !config->curve_secret &&
        !dpool_broker_endpoint_is_local(config->bind)) {
        snprintf(why, why_size,
                 "%s is not a loopback address: binding it without CURVE needs --insecure",
                 config->bind);
        return NULL;
    }
    if (!config->curve_secret != !config->authorized) {
        snprintf(why, why_size, "--curve-secret and --authorized go together");
        return NULL;
    }
    dpool_broker_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(why, why_size, "out of memory");
        return NULL;
    }
    self->config = *config;
    self->sched = dpool_sched_new(config->grace_ms);
    self->clients = s_peer_table();
    self->hosts = s_peer_table();
    self->named_pools = zhashx_new();
    self->outbox = zhashx_new();
    if (self->outbox) {
        zhashx_set_key_hasher(self->outbox, dpool_broker_frame_hash);
        zhashx_set_key_comparator(self->outbox, dpool_broker_frame_compare);
        zhashx_set_key_duplicator(self->outbox, NULL); // inserted keys are our own copies
        zhashx_set_key_destructor(self->outbox, s_frame_destroy);
        zhashx_set_destructor(self->outbox, s_batch_destroy);
    }
    if (!self->sched || !self->clients || !self->hosts || !self->named_pools || !self->outbox) {
        snprintf(why, why_size, "out of memory");
        goto fail;
    }
    self->now_us = dpool_clock_us();
    self->started_ms = self->now_ms = self->now_us / 1000;
    self->epoch = s_random_epoch();
    dpool_sched_set_id_base(self->sched, (uint32_t)(self->epoch >> 32) ^ (uint32_t)self->epoch);
    if (config->curve_secret &&
        !(self->auth = dpool_auth_new(config->curve_secret, config->authorized, why, why_size)))
        goto fail;
    if (config->journal_dir && s_open_journal(self, why, why_size) < 0)
        goto fail;
    if (s_bind(self, why, why_size) < 0)
        goto fail;
    self->next_heartbeat_ms = self->now_ms + DPOOL_HEARTBEAT_MS;
    return self;
fail:
    dpool_broker_destroy(&self);
    return NULL;
}

void
dpool_broker_free_task(dpool_task_t *task)
{
    if (!task)
        return;
    free(task->function);
    free(task);
}

static void
s_free_task(void *ctx, uint64_t task_id, void *data)
{
    (void)ctx;
    (void)task_id;
    dpool_broker_free_task(data);
}

void
dpool_broker_destroy(dpool_broker_t **self_p)
{
    dpool_broker_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    // The journal is closed (and committed) before the tasks go: they stay durable.
    dpool_journal_close(&self->journal);
    if (self->sched)
        dpool_sched_drain(self->sched, s_free_task, NULL);
    if (self->hosts)
        dpool_hosts_destroy_all(self);
    if (self->clients)
        dpool_clients_destroy_all(self);
    if (self->named_pools)
        dpool_pools_destroy_all(self);
    zhashx_destroy(&self->hosts);
    zhashx_destroy(&self->clients);
    zhashx_destroy(&self->named_pools);
    dpool_sched_destroy(&self->sched);
    if (self->router && self->outbox)
        dpool_broker_flush(self);
    zhashx_destroy(&self->outbox);
    zsock_destroy(&self->router);
    dpool_auth_destroy(&self->auth);
    zstr_free(&self->endpoint);
    free(self);
}

const char *
dpool_broker_endpoint(const dpool_broker_t *self)
{
    return self->endpoint;
}

#define S_OUTBOX_PEERS_KEPT 256

// Sends what waits for one peer. The batch's key frame stays with the outbox.
static void
s_send_batch(dpool_broker_t *self, zframe_t *routing_id, dpool_batch_t *batch)
{
    size_t count = dpool_batch_count(batch);
    int rc = dpool_batch_send(batch, self->router, routing_id);
    if (rc != DPOOL_OK)
        DPOOL_LOG_WARN("cannot send %zu messages to a peer: %s", count,
                       rc == DPOOL_ERR_IO ? zmq_strerror(zmq_errno()) : dpool_strerror(rc));
}

void
dpool_broker_batches_to(dpool_broker_t *self, zframe_t *routing_id)
{
    if (zhashx_lookup(self->outbox, routing_id))
        return;
    zframe_t *key = zframe_dup(routing_id);
    dpool_batch_t *batch = key ? dpool_batch_new() : NULL;
    if (!batch || zhashx_insert(self->outbox, key, batch) != 0) {
        zframe_destroy(&key);
        dpool_batch_destroy(&batch); // out of memory: the peer gets messages one by one
    }
}

// The end of a send: a failure logged, a full batch sent.
static void
s_sent(dpool_broker_t *self, zframe_t *routing_id, dpool_batch_t *batch, const dpool_msg_t *msg,
       int rc)
{
    if (rc != DPOOL_OK)
        DPOOL_LOG_WARN("cannot send %s: %s", dpool_proto_command_name(msg->command),
                       dpool_strerror(rc));
    else if (batch && dpool_batch_full(batch))
        s_send_batch(self, routing_id, batch);
}

void
dpool_broker_send(dpool_broker_t *self, zframe_t *routing_id, dpool_msg_t *msg)
{
    dpool_batch_t *batch = zhashx_lookup(self->outbox, routing_id);
    int rc = batch ? dpool_batch_add(batch, msg) : dpool_proto_send(self->router, msg, routing_id);
    zframe_destroy(&msg->payload); // left with us when the message broke its schema
    s_sent(self, routing_id, batch, msg, rc);
}

void
dpool_broker_send_copy(dpool_broker_t *self, zframe_t *routing_id, dpool_msg_t *msg,
                       const void *payload, size_t payload_size)
{
    dpool_batch_t *batch = zhashx_lookup(self->outbox, routing_id);
    int rc;
    if (batch)
        rc = dpool_batch_add_copy(batch, msg, payload, payload_size);
    else if (!(msg->payload = zframe_new(payload, payload_size)))
        rc = DPOOL_ERR_NOMEM;
    else // sent alone: the payload needs a frame of its own
        rc = dpool_proto_send(self->router, msg, routing_id);
    zframe_destroy(&msg->payload); // made for a message sent alone, if not sent
    s_sent(self, routing_id, batch, msg, rc);
}

void
dpool_broker_flush(dpool_broker_t *self)
{
    for (dpool_batch_t *batch = zhashx_first(self->outbox); batch;
         batch = zhashx_next(self->outbox))
        s_send_batch(self, (zframe_t *)zhashx_cursor(self->outbox), batch);
    // Peers come and go: the outbox forgets them once it holds many (emptying the
    // table every turn would cost a fresh table every turn); a peer that still
    // batches is back in it with its next BATCH.
    if (zhashx_size(self->outbox) > S_OUTBOX_PEERS_KEPT)
        zhashx_purge(self->outbox);
}

void
dpool_broker_send_error(dpool_broker_t *self, zframe_t *routing_id, int code, const char *text)
{
    dpool_msg_t msg = {.command = DPOOL_CMD_ERROR, .code = code, .text = (char *)text};
    dpool_broker_send(self, routing_id, &msg);
}

void
dpool_broker_finish_task(dpool_broker_t *self, dpool_task_t *task, int code, const char *text,
                         dpool_msg_t *result)
{
    dpool_client_t *client = task->client;
    dpool_msg_t msg = {.command = DPOOL_CMD_RESULT,
                       .task_id = task->client_task_id,
                       .code = code,
                       .text = (char *)text};
    // A failed chunk still carries the results of the items before the failing one.
    if (result && !result->payload && result->payload_lent)
        dpool_broker_send_copy(self, client->routing_id, &msg, result->payload_lent,
                               result->payload_lent_size);
    else {
        if (result) {
            msg.payload = result->payload; // moves on as it came
            result->payload = NULL;
        }
        dpool_broker_send(self, client->routing_id, &msg);
    }
    zframe_destroy(&msg.payload);
    if (client->task_ids)
        zhashx_delete(client->task_ids, &task->client_task_id);
    if (self->journal &&
        dpool_journal_done(self->journal, zframe_data(client->routing_id),
                           zframe_size(client->routing_id), task->client_task_id) != 0)
        DPOOL_LOG_ERROR("out of memory journalling a completion");
    dpool_pool_t *pool = task->pool;
    dpool_broker_free_task(task);
    client->tasks--;
    dpool_clients_release_if_idle(self, client);
    // A named pool whose holders all left lives on for its tasks; the last one frees it.
    if (pool->holders == 0)
        dpool_pools_release(self, pool);
}

bool
dpool_broker_retry_task(dpool_broker_t *self, dpool_task_t *task)
{
    // Losses, not dispatches, count: a chained task that was queued again without
    // running (refused, or its host left before it started) has used no retry.
    if (!task->function || ++task->losses > task->pool->retries)
        return false;
    uint64_t task_id;
    return dpool_sched_requeue(self->sched, task->pool->sched_pool, task->function, task,
                               self->now_ms, &task_id) == 0;
}

static void
s_dispatch(dpool_broker_t *self)
{
    dpool_sched_dispatch_t next;
    while (dpool_sched_dispatch(self->sched, self->now_ms, self->now_us, &next)) {
        dpool_task_t *task = next.task_data;
        dpool_host_t *host = next.host_data;
        dpool_msg_t msg = {.command = DPOOL_CMD_TASK,
                           .task_id = next.task_id,
                           .after_id = next.after_id,
                           .name = (char *)dpool_sched_task_function(self->sched, next.task_id),
                           .flags = task->flags,
                           .time_limit_ms = task->pool->time_limit_ms};
        // A copy: the task keeps its arguments for a retry, and holding them inline costs
        // less memory per queued task than a frame of their own.
        dpool_broker_send_copy(self, host->routing_id, &msg, task->args, task->args_size);
    }
}

static void
s_fail_expired(void *ctx, uint64_t task_id, void *data)
{
    dpool_broker_t *self = ctx;
    dpool_task_t *task = data;
    char text[DPOOL_PROTO_NAME_MAX + 96];
    // The visitor runs before the scheduler frees the record, so the name is still there.
    const char *function = dpool_sched_task_function(self->sched, task_id);
    snprintf(text, sizeof text, "no worker offers function \"%s\" (waited %.1f s for one)",
             function ? function : "?", (double)self->config.grace_ms / 1000.0);
    dpool_broker_finish_task(self, task, DPOOL_ERR_NO_FUNCTION, text, NULL);
}

static void
s_run_timers(dpool_broker_t *self)
{
    dpool_sched_expire(self->sched, self->now_ms, s_fail_expired, self);
    if (self->now_ms >= self->next_heartbeat_ms) {
        dpool_hosts_tick(self);
        dpool_clients_tick(self);
        self->next_heartbeat_ms = self->now_ms + DPOOL_HEARTBEAT_MS;
    }
}

static long
s_poll_timeout(const dpool_broker_t *self)
{
    int64_t due = self->next_heartbeat_ms;
    int64_t grace = dpool_sched_next_deadline(self->sched);
    if (grace >= 0 && grace < due)
        due = grace;
    int64_t wait = due - dpool_clock_ms();
    return wait < 0 ? 0 : (long)wait;
}

// Reads every message that is ready, up to one batch (the router receives without
// waiting). Returns 1 when it stopped at the batch limit, 0 when none waits (the last
// receive said so, having taken every signal ZeroMQ had for the socket), -1 on a fatal
// socket error.
static int
s_drain(dpool_broker_t *self)
{
    for (int i = 0; i < DPOOL_BROKER_BATCH; i++) {
        zmsg_t *zmsg = dpool_proto_recv(self->router);
        if (!zmsg && zmq_errno() == ENOMEM) {
            DPOOL_LOG_ERROR("out of memory: a message was dropped");
            continue;
        }
        if (!zmsg)
            return (zmq_errno() == EAGAIN || zmq_errno() == EINTR) ? 0 : -1;
        dpool_broker_handle(self, &zmsg);
    }
    return 1;
}

// Whether messages wait on the router: a send may have taken its descriptor's signal.
static bool
s_router_waiting(dpool_broker_t *self)
{
    return (zsock_events(self->router) & ZMQ_POLLIN) != 0;
}

// SIGHUP: reads the authorised keys again; on failure the old ones stay in force.
static void
s_reload_keys(dpool_broker_t *self)
{
    char why[512];
    if (!self->auth)
        DPOOL_LOG_INFO("SIGHUP: no CURVE keys to reload (started without --curve-secret)");
    else if (dpool_auth_reload(self->auth, why, sizeof why) != DPOOL_OK)
        DPOOL_LOG_ERROR("SIGHUP: keys not reloaded, the previous ones stay: %s", why);
}

int
dpool_broker_run(dpool_broker_t *self, volatile sig_atomic_t *stop)
{
    DPOOL_LOG_INFO("listening on %s", self->endpoint);
    // The loop waits on the router's own descriptor and looks at the socket when it
    // wakes (a zmq_poll asks the socket for its events before and after it sleeps):
    // it receives until nothing waits, and before sleeping asks once whether this
    // turn's sends left messages waiting.
    struct pollfd item = {.fd = zsock_fd(self->router), .events = POLLIN};
    bool waiting = true;
    while (!*stop) {
        if (!waiting && poll(&item, 1, s_poll_timeout(self)) < 0 && errno != EINTR) {
            DPOOL_LOG_ERROR("poll failed: %s", strerror(errno));
            return -1;
        }
        self->now_us = dpool_clock_us();
        self->now_ms = self->now_us / 1000;
        if (self->config.reload_keys && *self->config.reload_keys) {
            *self->config.reload_keys = 0;
            s_reload_keys(self);
        }
        int drained = s_drain(self);
        if (drained < 0) {
            DPOOL_LOG_ERROR("receive failed: %s", zmq_strerror(zmq_errno()));
            return -1;
        }
        s_dispatch(self);
        s_run_timers(self);
        s_dispatch(self);
        // Group commit: one write and one fdatasync for everything this turn accepted.
        if (self->journal && dpool_journal_commit(self->journal) != 0)
            DPOOL_LOG_ERROR("journal commit failed: %s (retried next turn)", strerror(errno));
        // What this turn produced for each peer leaves as one message (a BATCH).
        dpool_broker_flush(self);
        waiting = drained == 1 || s_router_waiting(self);
    }
    DPOOL_LOG_INFO("stopping");
    return 0;
}
