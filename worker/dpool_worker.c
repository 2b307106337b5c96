/*  The worker daemon: one epoll loop over the broker's DEALER and, per worker
    process, its channel and its stdout and stderr pipes; then the timers:
    heartbeats, replacements of dead processes, time limits of running tasks. epoll,
    not poll: a wake-up costs what is ready, not what is watched (100 processes are
    301 descriptors), so the daemon's cost per task does not grow with its processes.
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
#include <stdint.h>
#include <sys/epoll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// When slot next needs the timers: its replacement's start, its task's time limit, a
// look at the results its process keeps back, or never (INT64_MAX).
static int64_t
s_slot_due(const dpool_slot_t *slot)
{
    if (slot->state == DPOOL_SLOT_EMPTY)
        return slot->spawn_at;
    int64_t due = INT64_MAX;
    if (slot->state == DPOOL_SLOT_BUSY && slot->deadline)
        due = slot->deadline;
    if (slot->state == DPOOL_SLOT_BUSY && slot->kept_check_at && slot->kept_check_at < due)
        due = slot->kept_check_at;
    return due;
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
    if (now >= self->slot_timers_at) {
        int64_t slots_next = INT64_MAX;
        for (unsigned i = 0; i < self->processes; i++) {
            dpool_slot_t *slot = &self->slots[i];
            if (slot->state == DPOOL_SLOT_BUSY && slot->kept_check_at && slot->kept_check_at <= now)
                dpool_slots_on_kept_timer(self, slot);
            if (slot->state == DPOOL_SLOT_BUSY && slot->deadline && slot->deadline <= now)
                dpool_slots_time_out(self, slot); // the slot is EMPTY now, due at once
            if (s_slot_due(slot) <= now && slot->state == DPOOL_SLOT_EMPTY)
                dpool_slots_spawn(self, slot);
            int64_t due = s_slot_due(slot);
            slots_next = due < slots_next ? due : slots_next;
        }
        self->slot_timers_at = slots_next;
    }
    int64_t next =
        self->heartbeat_at < self->slot_timers_at ? self->heartbeat_at : self->slot_timers_at;
    unsigned credits = dpool_tasks_take_credits(self);
    if (credits) {
        dpool_msg_t msg = {.command = DPOOL_CMD_CREDIT, .count = credits};
        dpool_uplink_send(self->uplink, &msg);
    }
    return next;
}

void
dpool_worker_timer_at(dpool_worker_t *self, int64_t when)
{
    if (when < self->slot_timers_at)
        self->slot_timers_at = when;
}

// Milliseconds from now until due, for epoll_wait.
static int
s_poll_timeout(int64_t due)
{
    int64_t wait = due - dpool_clock_ms();
    return wait < 0 ? 0 : wait > INT32_MAX ? INT32_MAX : (int)wait;
}

// An epoll key: the broker's socket, or a slot's channel (stream 0) or output pipe.
#define S_BROKER_KEY UINT64_MAX

static uint64_t
s_key(const dpool_worker_t *self, const dpool_slot_t *slot, int stream)
{
    return (uint64_t)(slot - self->slots) << 2 | (uint64_t)stream;
}

static bool
s_watch_fd(dpool_worker_t *self, int fd, uint64_t key)
{
    struct epoll_event event = {.events = EPOLLIN, .data.u64 = key};
    if (fd < 0 || epoll_ctl(self->watch_fd, EPOLL_CTL_ADD, fd, &event) == 0)
        return true;
    DPOOL_LOG_ERROR("cannot watch a descriptor: %s", strerror(errno));
    return false;
}

bool
dpool_worker_watch(dpool_worker_t *self, dpool_slot_t *slot)
{
    slot->watched = 0;
    const int streams[] = {0, DPOOL_STREAM_STDOUT, DPOOL_STREAM_STDERR};
    for (int k = 0; k < 3; k++) {
        int fd = streams[k] ? dpool_proc_output_fd(slot->proc, streams[k])
                            : dpool_channel_fd(dpool_proc_channel(slot->proc));
        if (!s_watch_fd(self, fd, s_key(self, slot, streams[k]))) {
            dpool_worker_unwatch(self, slot);
            return false;
        }
        slot->watched |= 1u << streams[k];
    }
    return true;
}

void
dpool_worker_unwatch_output(dpool_worker_t *self, dpool_slot_t *slot, int stream)
{
    if (!(slot->watched & (1u << stream)))
        return;
    slot->watched &= ~(1u << stream);
    int fd = stream ? dpool_proc_output_fd(slot->proc, stream)
                    : dpool_channel_fd(dpool_proc_channel(slot->proc));
    if (fd >= 0 && self->watch_fd >= 0)
        epoll_ctl(self->watch_fd, EPOLL_CTL_DEL, fd, NULL);
}

void
dpool_worker_unwatch(dpool_worker_t *self, dpool_slot_t *slot)
{
    if (!slot->proc)
        return;
    dpool_worker_unwatch_output(self, slot, 0);
    dpool_worker_unwatch_output(self, slot, DPOOL_STREAM_STDOUT);
    dpool_worker_unwatch_output(self, slot, DPOOL_STREAM_STDERR);
}

// What one epoll_wait found: per process the channel before the pipes, so a result
// drains its task's output itself (dpool_slots.c) and a pipe is read here only when
// that has not emptied it.
static void
s_on_events(dpool_worker_t *self, const struct epoll_event *events, size_t n, bool broker)
{
    for (size_t i = 0; i < n; i++)
        if (events[i].data.u64 != S_BROKER_KEY)
            self->slots[events[i].data.u64 >> 2].output_ready = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t key = events[i].data.u64;
        if (key == S_BROKER_KEY)
            broker = true;
        else if (key & 3)
            self->slots[key >> 2].output_ready |= 1u << (key & 3);
    }
    // A process buried by an earlier event is not replaced before the timers run, so a
    // slot with a process is the one the event was for.
    for (size_t i = 0; i < n; i++) {
        uint64_t key = events[i].data.u64;
        dpool_slot_t *slot = key == S_BROKER_KEY ? NULL : &self->slots[key >> 2];
        if (slot && (key & 3) == 0 && slot->proc)
            dpool_slots_on_channel(self, slot);
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t key = events[i].data.u64;
        dpool_slot_t *slot = key == S_BROKER_KEY ? NULL : &self->slots[key >> 2];
        int stream = (int)(key & 3);
        if (slot && stream && slot->proc && (slot->output_ready & (1u << stream)))
            dpool_slots_on_output(self, slot, stream); // not drained with a result
    }
    if (broker)
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
        dpool_worker_unwatch(self, &self->slots[i]);
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
    size_t max_events = 1 + 3 * (size_t)self->processes;
    struct epoll_event *events = calloc(max_events, sizeof *events);
    self->watch_fd = epoll_create1(EPOLL_CLOEXEC);
    int rc = events && self->watch_fd >= 0 ? DPOOL_OK : DPOOL_ERR_NOMEM;
    for (unsigned i = 0; rc == DPOOL_OK && i < self->processes; i++)
        dpool_slots_spawn(self, &self->slots[i]); // before the ZeroMQ context exists
    if (rc == DPOOL_OK)
        rc = s_connect(self);
    if (rc == DPOOL_OK) {
        int fd = -1;
        size_t size = sizeof fd;
        bool has_fd = zmq_getsockopt(dpool_uplink_handle(self->uplink), ZMQ_FD, &fd, &size) == 0;
        rc = has_fd && fd >= 0 && s_watch_fd(self, fd, S_BROKER_KEY) ? DPOOL_OK : DPOOL_ERR_IO;
    }
    if (rc == DPOOL_OK)
        dpool_tasks_send_hello(self);
    self->heartbeat_at = dpool_clock_ms() + DPOOL_WORKER_HEARTBEAT_MS;
    int64_t due = self->heartbeat_at;
    while (rc == DPOOL_OK && !*stop) {
        dpool_uplink_flush(self->uplink);
        bool broker = dpool_uplink_waiting(self->uplink);
        int n =
            epoll_wait(self->watch_fd, events, (int)max_events, broker ? 0 : s_poll_timeout(due));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            DPOOL_LOG_ERROR("poll failed: %s", strerror(errno));
            rc = DPOOL_ERR_IO;
            break;
        }
        s_on_events(self, events, (size_t)n, broker);
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
    if (self->watch_fd >= 0)
        close(self->watch_fd);
    self->watch_fd = -1;
    free(events);
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
    self->watch_fd = -1;
    self->processes = config->processes;
    self->endpoint = strdup(config->endpoint);
    self->functions = dpool_functions_new();
    self->slots = calloc(config->processes, sizeof *self->slots);
    self->fill_due = calloc(config->processes, sizeof *self->fill_due);
    self->initializer = config->initializer ? strdup(config->initializer) : NULL;
    self->pending = zlist_new();
    self->buffer = malloc(DPOOL_WORKER_OUTPUT_CHUNK);
    self->kept_copy = malloc(DPOOL_PROC_KEPT_MAX);
    if (!self->endpoint || !self->functions || !self->slots || !self->fill_due ||
        !s_new_queues(self) || !self->pending || !self->buffer || !self->kept_copy ||
        (config->initializer && !self->initializer) ||
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
    free(self->fill_due);
    free(self->buffer);
    free(self->kept_copy);
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
