/*  The worker daemon: one poll loop over the broker's DEALER and, per worker
    process, its channel and its stdout and stderr pipes; then the timers:
    heartbeats, replacements of dead processes, time limits of running tasks.
    dpool_worker_internal.h describes the credits, dpool_slots.c the processes,
    dpool_tasks.c the broker's commands.

    Timers take no heap: processes are few (at most DPOOL_WORKER_PROCESSES_MAX), so
    one O(processes) pass per loop turn finds what is due and the nearest deadline,
    which bounds the next poll. Nothing is scanned per message.

    Processes are forked before the ZeroMQ socket exists; replacements are forked
    later from the daemon, and dpool_proc makes them drop every inherited fd. */
#define _GNU_SOURCE // gethostname and strndup with C11 on
#include "dpool_worker_internal.h"

#include "dpool_builtins.h"
#include "dpool_clock.h"
#include "dpool_log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// When slot next needs the timers: its replacement's start, its task's time limit,
// or never (INT64_MAX).
static int64_t
s_slot_due(const dpool_slot_t *slot)
{
    if (slot->state == DPOOL_SLOT_EMPTY)
        return slot->spawn_at;
    if (slot->state == DPOOL_SLOT_BUSY && slot->deadline)
        return slot->deadline;
    return INT64_MAX;
}

// Runs what is due; returns when the next timer is due.
static int64_t
s_on_timers(dpool_worker_t *self)
{
    int64_t now = dpool_clock_ms();
    if (now >= self->heartbeat_at) {
        dpool_msg_t msg = {.command = DPOOL_CMD_HEARTBEAT};
        dpool_uplink_send(self->uplink, &msg);
        self->heartbeat_at = now + DPOOL_WORKER_HEARTBEAT_MS;
    }
    int64_t next = self->heartbeat_at;
    for (unsigned i = 0; i < self->processes; i++) {
        dpool_slot_t *slot = &self->slots[i];
        if (s_slot_due(slot) <= now && slot->state == DPOOL_SLOT_BUSY)
            dpool_slots_time_out(self, slot); // the slot is EMPTY now, due at once
        if (s_slot_due(slot) <= now && slot->state == DPOOL_SLOT_EMPTY)
            dpool_slots_spawn(self, slot);
        int64_t due = s_slot_due(slot);
        next = due < next ? due : next;
    }
    unsigned credits = dpool_tasks_take_credits(self);
    if (credits) {
        dpool_msg_t msg = {.command = DPOOL_CMD_CREDIT, .count = credits};
        dpool_uplink_send(self->uplink, &msg);
    }
    return next;
}

// Milliseconds from now until due, for zmq_poll.
static long
s_poll_timeout(int64_t due)
{
    int64_t wait = due - dpool_clock_ms();
    return wait < 0 ? 0 : (long)wait;
}

// What one poll item stands for: the broker (proc == NULL) or a process's
// channel (stream 0) or output pipe.
typedef struct {
    dpool_slot_t *slot;
    dpool_proc_t *proc;
    int stream;
} s_item_ref_t;

static size_t
s_fill_items(dpool_worker_t *self, zmq_pollitem_t *items, s_item_ref_t *refs)
{
    size_t n = 0;
    items[n] = (zmq_pollitem_t){.socket = dpool_uplink_handle(self->uplink), .events = ZMQ_POLLIN};
    refs[n++] = (s_item_ref_t){NULL, NULL, 0};
    for (unsigned i = 0; i < self->processes; i++) {
        dpool_slot_t *slot = &self->slots[i];
        if (!slot->proc)
            continue;
        // The channel before the pipes: poll looks at its descriptors in this order,
        // so a pipe it finds empty after a result came holds no output of that task
        // (see output_ready in dpool_worker_internal.h).
        items[n] = (zmq_pollitem_t){.fd = dpool_channel_fd(dpool_proc_channel(slot->proc)),
                                    .events = ZMQ_POLLIN};
        refs[n++] = (s_item_ref_t){slot, slot->proc, 0};
        const int streams[] = {DPOOL_STREAM_STDOUT, DPOOL_STREAM_STDERR};
        for (int k = 0; k < 2; k++) {
            int fd = dpool_proc_output_fd(slot->proc, streams[k]);
            if (fd < 0)
                continue;
            items[n] = (zmq_pollitem_t){.fd = fd, .events = ZMQ_POLLIN};
            refs[n++] = (s_item_ref_t){slot, slot->proc, streams[k]};
        }
    }
    return n;
}

static void
s_on_items(dpool_worker_t *self, zmq_pollitem_t *items, s_item_ref_t *refs, size_t n)
{
    for (size_t i = 1; i < n; i++)
        if (refs[i].stream == 0)
            refs[i].slot->output_ready = 0;
    for (size_t i = 1; i < n; i++)
        if (refs[i].stream && (items[i].revents & (ZMQ_POLLIN | ZMQ_POLLERR)))
            refs[i].slot->output_ready |= 1u << refs[i].stream;
    for (size_t i = 1; i < n; i++) {
        dpool_slot_t *slot = refs[i].slot;
        // An earlier item may have buried this process; nothing is spawned until
        // the timers run, so a live slot->proc equal to the ref is the same process.
        if (!(items[i].revents & (ZMQ_POLLIN | ZMQ_POLLERR)) || slot->proc != refs[i].proc)
            continue;
        if (refs[i].stream) {
            if (slot->output_ready & (1u << refs[i].stream)) // not drained with a result
                dpool_slots_on_output(self, slot, refs[i].stream);
        } else {
            slot->output_known = true;
            dpool_slots_on_channel(self, slot);
            slot->output_known = false;
        }
    }
    if (items[0].revents & ZMQ_POLLIN)
        dpool_tasks_on_broker(self);
}

static int
s_connect(dpool_worker_t *self)
{
    self->uplink = dpool_uplink_new(self->endpoint, self->cert, self->broker_key);
    if (!self->uplink)
        return DPOOL_ERR_IO;
    DPOOL_LOG_INFO("worker %s on %s: %u processes, %zu functions, broker %s",
                   dpool_uplink_id(self->uplink), self->host, self->processes,
                   dpool_functions_size(self->functions), self->endpoint);
    return DPOOL_OK;
}

// Stops every process; the tasks queued behind them are dropped too (the broker
// fails what it had sent here when the daemon leaves).
static void
s_stop_processes(dpool_worker_t *self)
{
    for (unsigned i = 0; i < self->processes; i++) {
        dpool_proc_destroy(&self->slots[i].proc);
        self->slots[i].state = DPOOL_SLOT_EMPTY;
        dpool_slots_clear_queue(&self->slots[i]);
        dpool_tasks_jobs_clear(self->slots[i].ahead);
    }
    self->idle = 0;
}

// Gives every slot its chain queue; false when memory runs out.
static bool
s_new_queues(dpool_worker_t *self)
{
    for (unsigned i = 0; i < self->processes; i++)
        if (!(self->slots[i].queue = zlist_new()) || !(self->slots[i].ahead = zlist_new()))
            return false;
    return true;
}

int
dpool_worker_run(dpool_worker_t *self, volatile sig_atomic_t *stop)
{
    for (unsigned i = 0; i < self->processes; i++)
        dpool_slots_spawn(self, &self->slots[i]); // before the ZeroMQ context exists
    size_t max_items = 1 + 3 * (size_t)self->processes;
    zmq_pollitem_t *items = calloc(max_items, sizeof *items);
    s_item_ref_t *refs = calloc(max_items, sizeof *refs);
    int rc = items && refs ? s_connect(self) : DPOOL_ERR_NOMEM;
    if (rc == DPOOL_OK)
        dpool_tasks_send_hello(self);
    self->heartbeat_at = dpool_clock_ms() + DPOOL_WORKER_HEARTBEAT_MS;
    int64_t due = self->heartbeat_at;
    while (rc == DPOOL_OK && !*stop) {
        dpool_uplink_flush(self->uplink);
        size_t n = s_fill_items(self, items, refs);
        if (zmq_poll(items, (int)n, s_poll_timeout(due)) < 0) {
            if (zmq_errno() == EINTR)
                continue;
            DPOOL_LOG_ERROR("poll failed: %s", zmq_strerror(zmq_errno()));
            rc = DPOOL_ERR_IO;
            break;
        }
        s_on_items(self, items, refs, n);
        if (dpool_uplink_refusal(self->uplink)) {
            // Without its key authorised the daemon can do nothing; retrying would spin.
            zstr_free(&self->error);
            self->error = zsys_sprintf("the broker refused this worker: %s (check its key in the "
                                       "broker's authorised workers/ folder)",
                                       dpool_uplink_refusal(self->uplink));
            rc = DPOOL_ERR_NOT_AUTHORISED;
            break;
        }
        due = s_on_timers(self);
        if (self->error)
            rc = DPOOL_ERR_TASK_FAILED;
    }
    if (self->hello_at && rc != DPOOL_ERR_NOT_AUTHORISED) {
        dpool_msg_t bye = {.command = DPOOL_CMD_BYE};
        dpool_uplink_send(self->uplink, &bye);
    }
    s_stop_processes(self);
    dpool_uplink_destroy(&self->uplink);
    free(items);
    free(refs);
    return rc;
}

// Loads this daemon's key pair and the broker's public key for CURVE. Returns DPOOL_OK,
// or DPOOL_ERR_INVALID with a one-line reason naming the file in error.
static int
s_load_keys(dpool_worker_t *self, const dpool_worker_config_t *config, char *error,
            size_t error_size)
{
    self->cert = zcert_load(config->curve_secret);
    const char *secret = self->cert ? zcert_secret_txt(self->cert) : NULL;
    if (!secret || strspn(secret, "0") == strlen(secret)) {
        snprintf(error, error_size, "--curve-secret %s: %s", config->curve_secret,
                 self->cert ? "holds no secret key (give the _secret file)"
                            : "cannot read a CURVE certificate there");
        return DPOOL_ERR_INVALID;
    }
    zcert_t *broker = config->broker_key ? zcert_load(config->broker_key) : NULL;
    if (!broker) {
        snprintf(error, error_size, "--broker-key %s: cannot read a CURVE certificate there",
                 config->broker_key ? config->broker_key : "(missing)");
        return DPOOL_ERR_INVALID;
    }
    self->broker_key = strdup(zcert_public_txt(broker));
    zcert_destroy(&broker);
    if (!self->broker_key) {
        snprintf(error, error_size, "out of memory");
        return DPOOL_ERR_NOMEM;
    }
    return DPOOL_OK;
}

dpool_worker_t *
dpool_worker_new(const dpool_worker_config_t *config, char *error, size_t error_size)
{
    if (!config->endpoint || config->processes < 1 ||
        config->processes > DPOOL_WORKER_PROCESSES_MAX) {
        snprintf(error, error_size, "invalid worker configuration");
        return NULL;
    }
    dpool_worker_t *self = calloc(1, sizeof *self);
    if (!self)
        goto nomem;
    self->processes = config->processes;
    self->endpoint = strdup(config->endpoint);
    self->functions = dpool_functions_new();
    self->slots = calloc(config->processes, sizeof *self->slots);
    self->initializer = config->initializer ? strdup(config->initializer) : NULL;
    self->pending = zlist_new();
    self->buffer = malloc(DPOOL_WORKER_OUTPUT_CHUNK);
    if (!self->endpoint || !self->functions || !self->slots || !s_new_queues(self) ||
        !self->pending || !self->buffer || (config->initializer && !self->initializer) ||
        dpool_builtins_register(self->functions) != DPOOL_OK)
        goto nomem;
    for (size_t i = 0; i < config->module_count; i++)
        if (dpool_functions_load(self->functions, config->modules[i], error, error_size) !=
            DPOOL_OK)
            goto fail;
    if (self->initializer && !dpool_functions_lookup(self->functions, self->initializer)) {
        snprintf(error, error_size,
                 "--initializer %s: no such function (neither a built-in nor in a loaded module)",
                 self->initializer);
        goto fail;
    }
    self->runner =
        (dpool_runner_config_t){self->functions, config->max_tasks_per_child, self->initializer};
    if (config->curve_secret && s_load_keys(self, config, error, error_size) != DPOOL_OK)
        goto fail;
    if (gethostname(self->host, sizeof self->host - 1) != 0 || !self->host[0])
        snprintf(self->host, sizeof self->host, "unknown");
    return self;
nomem:
    snprintf(error, error_size, "out of memory");
fail:
    dpool_worker_destroy(&self);
    return NULL;
}

void
dpool_worker_destroy(dpool_worker_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dpool_worker_t *self = *self_p;
    if (self->slots)
        s_stop_processes(self);
    for (unsigned i = 0; self->slots && i < self->processes; i++) {
        zlist_destroy(&self->slots[i].queue);
        zlist_destroy(&self->slots[i].ahead);
    }
    dpool_tasks_jobs_clear(self->pending);
    zlist_destroy(&self->pending);
    dpool_uplink_destroy(&self->uplink);
    dpool_functions_destroy(&self->functions);
    free(self->slots);
    free(self->buffer);
    free(self->endpoint);
    free(self->initializer);
    zstr_free(&self->error);
    zcert_destroy(&self->cert);
    free(self->broker_key);
    free(self);
    *self_p = NULL;
}

const char *
dpool_worker_error(const dpool_worker_t *self)
{
    return self->error;
}
