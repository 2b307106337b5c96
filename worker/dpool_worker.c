/*  The worker daemon: one poll loop over the broker's DEALER and, per worker
    process, its channel and its stdout and stderr pipes.

    Credits. The broker may hold one credit per idle process and no more (that is
    what makes a pool's cap exact), so the daemon keeps `granted`, the credits the
    broker holds, and `idle`, its idle processes, and tops the broker up whenever
    idle > granted: with a result (credits = 1), or with CREDIT at the end of a loop
    turn, which batches the hello's credits. A process that dies while idle leaves
    granted > idle, so its replacement earns no second credit; a TASK that arrives
    for it meanwhile waits in `pending` for the first process to become idle.

    Output before results. A worker process flushes stdout and stderr before it
    writes its result, so when the result frame arrives the daemon drains both pipes
    and forwards what they hold, and only then sends WORKER_RESULT.

    Processes are forked before the ZeroMQ socket exists; replacements are forked
    later from the daemon, and dpool_proc makes them drop every inherited fd. */
#define _GNU_SOURCE // gethostname and strndup with C11 on
#include "dpool_worker.h"

#include "dpool_builtins.h"
#include "dpool_clock.h"
#include "dpool_functions.h"
#include "dpool_log.h"
#include "dpool_proc.h"
#include "dpool_proto.h"
#include "dpool_runner.h"
#include "dpool_uplink.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// PROTOCOL.md: "The daemon sends HEARTBEAT [] every second".
#define S_HEARTBEAT_MS 1000
// A process that dies within this long of starting is restarted after a growing
// delay (doubling up to S_RESTART_DELAY_MAX_MS), so a module that kills every
// process it is loaded into costs a few forks a second, not a fork storm.
#define S_SHORT_LIFE_MS 1000
#define S_RESTART_DELAY_MIN_MS 100
#define S_RESTART_DELAY_MAX_MS 5000
// TASKs held while no process is idle. The broker sends a TASK only against a
// credit, so more than a handful means a confused broker.
#define S_PENDING_MAX 1024
// Bytes read from an output pipe in one go: one WORKER_OUTPUT each.
#define S_OUTPUT_CHUNK 65536

typedef enum { S_EMPTY, S_STARTING, S_IDLE, S_BUSY, S_RETIRING } s_state_t;

typedef struct {
    dpool_proc_t *proc; // NULL when S_EMPTY
    s_state_t state;
    uint64_t task_id; // when S_BUSY
    unsigned tasks_done;
    int64_t spawned_at;
    int64_t spawn_at; // when S_EMPTY: when to start the replacement
    int64_t restart_delay;
} s_slot_t;

typedef struct {
    uint64_t task_id;
    char *function;
    zframe_t *args;
} s_pending_t;

struct dpool_worker_t {
    char *endpoint;
    char host[256];
    unsigned processes;
    dpool_functions_t *functions;
    dpool_runner_config_t runner;
    s_slot_t *slots;
    zlist_t *pending; // of s_pending_t, oldest first
    dpool_uplink_t *uplink;
    unsigned idle;
    unsigned granted;
    int64_t heartbeat_at;
    int64_t hello_at;
    char *buffer; // S_OUTPUT_CHUNK bytes for pipe reads
};

// How many credits the broker should get now, counted as given.
static unsigned
s_take_credits(dpool_worker_t *self)
{
    if (self->idle <= self->granted)
        return 0;
    unsigned credits = self->idle - self->granted;
    self->granted = self->idle;
    return credits;
}

static void
s_send_hello(dpool_worker_t *self)
{
    size_t count = dpool_functions_size(self->functions);
    const char **names = calloc(count ? count : 1, sizeof *names);
    if (!names)
        return;
    for (size_t i = 0; i < count; i++)
        names[i] = dpool_functions_name(self->functions, i);
    dpool_msg_t msg = {.command = DPOOL_CMD_WORKER_HELLO,
                       .name = self->host,
                       .pid = (uint32_t)getpid(),
                       .count = self->processes,
                       .functions = (char **)names,
                       .function_count = count};
    dpool_uplink_send(self->uplink, &msg);
    free(names);
    self->hello_at = dpool_clock_ms();
    // A new registration holds no credits: every idle process earns one again.
    self->granted = 0;
}

static void
s_send_result(dpool_worker_t *self, uint64_t task_id, int code, const char *message,
              zframe_t **payload_p, unsigned credits)
{
    dpool_msg_t msg = {.command = DPOOL_CMD_WORKER_RESULT,
                       .task_id = task_id,
                       .code = code,
                       .text = (char *)message,
                       .count = credits,
                       .payload = payload_p ? *payload_p : NULL};
    if (payload_p)
        *payload_p = NULL;
    dpool_uplink_send(self->uplink, &msg);
}

static void
s_forward_output(dpool_worker_t *self, s_slot_t *slot, int stream, size_t size)
{
    if (slot->state != S_BUSY) {
        DPOOL_LOG_DEBUG("dropped %zu bytes of output from idle worker process %d", size,
                        (int)dpool_proc_pid(slot->proc));
        return;
    }
    dpool_msg_t msg = {.command = DPOOL_CMD_WORKER_OUTPUT,
                       .task_id = slot->task_id,
                       .count = (uint32_t)stream,
                       .text = self->buffer,
                       .text_size = size};
    dpool_uplink_send(self->uplink, &msg);
}

// Reads stream once (on poll readiness) or, with drain, until it is empty.
static void
s_read_output(dpool_worker_t *self, s_slot_t *slot, int stream, bool drain)
{
    for (;;) {
        ssize_t got = dpool_proc_read_output(slot->proc, stream, self->buffer, S_OUTPUT_CHUNK);
        if (got <= 0)
            return;
        s_forward_output(self, slot, stream, (size_t)got);
        if (!drain)
            return;
    }
}

static void
s_drain_output(dpool_worker_t *self, s_slot_t *slot)
{
    s_read_output(self, slot, DPOOL_STREAM_STDOUT, true);
    s_read_output(self, slot, DPOOL_STREAM_STDERR, true);
}

static void
s_spawn(dpool_worker_t *self, s_slot_t *slot)
{
    int64_t now = dpool_clock_ms();
    slot->proc = dpool_proc_spawn(dpool_runner_main, &self->runner);
    if (!slot->proc) {
        slot->spawn_at = now + S_RESTART_DELAY_MAX_MS;
        return;
    }
    slot->state = S_STARTING;
    slot->tasks_done = 0;
    slot->spawned_at = now;
}

// Empties slot after its process ended (crash, exit, KILL) and schedules the
// replacement. restart_now skips the back-off: a KILL is no sign of a sick module.
static void
s_bury(dpool_worker_t *self, s_slot_t *slot, bool restart_now)
{
    int64_t now = dpool_clock_ms();
    if (slot->state == S_IDLE)
        self->idle--;
    if (restart_now || now - slot->spawned_at >= S_SHORT_LIFE_MS)
        slot->restart_delay = 0;
    else if (slot->restart_delay < S_RESTART_DELAY_MIN_MS)
        slot->restart_delay = S_RESTART_DELAY_MIN_MS;
    else if (slot->restart_delay < S_RESTART_DELAY_MAX_MS)
        slot->restart_delay *= 2;
    slot->spawn_at = now + slot->restart_delay;
    dpool_proc_destroy(&slot->proc);
    slot->state = S_EMPTY;
}

// The process in slot died or broke its channel: its running task, if any, is
// lost, and the result says how.
static void
s_on_death(dpool_worker_t *self, s_slot_t *slot)
{
    char why[512];
    s_drain_output(self, slot);
    dpool_proc_reap(slot->proc, self->host, why, sizeof why);
    if (slot->state == S_BUSY) {
        DPOOL_LOG_WARN("task %" PRIu64 " lost: %s", slot->task_id, why);
        s_send_result(self, slot->task_id, DPOOL_ERR_WORKER_LOST, why, NULL, 0);
    } else if (slot->state != S_RETIRING) {
        DPOOL_LOG_WARN("%s while idle", why);
    }
    s_bury(self, slot, slot->state == S_RETIRING);
}

static void
s_pending_destroy(s_pending_t **task_p)
{
    if (!*task_p)
        return;
    free((*task_p)->function);
    zframe_destroy(&(*task_p)->args);
    free(*task_p);
    *task_p = NULL;
}

static void s_on_idle(dpool_worker_t *self, s_slot_t *slot);

// Hands a task to the idle process in slot. The task frame is the function name,
// a NUL, and the argument bytes exactly as they came from the broker.
static void
s_start(dpool_worker_t *self, s_slot_t *slot, uint64_t task_id, const char *function,
        zframe_t *args)
{
    slot->state = S_BUSY;
    slot->task_id = task_id;
    int rc = dpool_channel_send_task(dpool_proc_channel(slot->proc), function, zframe_data(args),
                                     zframe_size(args));
    if (rc == DPOOL_ERR_INVALID) {
        slot->state = S_IDLE;
        s_send_result(self, task_id, DPOOL_ERR_TOO_BIG, "task arguments are too big", NULL, 0);
        s_on_idle(self, slot);
    } else if (rc != DPOOL_OK) {
        s_on_death(self, slot);
    }
}

// The process in slot is free: it takes the oldest pending task, or counts as idle.
static void
s_on_idle(dpool_worker_t *self, s_slot_t *slot)
{
    s_pending_t *task = zlist_pop(self->pending);
    if (!task) {
        slot->state = S_IDLE;
        self->idle++;
        return;
    }
    s_start(self, slot, task->task_id, task->function, task->args);
    s_pending_destroy(&task);
}

static void
s_on_result(dpool_worker_t *self, s_slot_t *slot, const uint8_t *body, size_t size)
{
    int code;
    char *message = NULL;
    const uint8_t *result;
    size_t result_size;
    if (slot->state != S_BUSY ||
        !dpool_channel_parse_result(body, size, &code, &message, &result, &result_size)) {
        s_on_death(self, slot); // a process that breaks the channel's rules is not trusted
        return;
    }
    zframe_t *payload = code == DPOOL_OK ? zframe_new(result, result_size) : NULL;
    s_drain_output(self, slot);
    uint64_t task_id = slot->task_id;
    unsigned max = self->runner.max_tasks;
    if (max && ++slot->tasks_done >= max)
        slot->state = S_RETIRING; // it exits by itself; its replacement brings the credit
    else
        s_on_idle(self, slot);
    unsigned credits = slot->state == S_IDLE ? s_take_credits(self) : 0;
    s_send_result(self, task_id, code, message, &payload, credits);
    free(message);
}

static void
s_on_channel(dpool_worker_t *self, s_slot_t *slot)
{
    dpool_channel_t *channel = dpool_proc_channel(slot->proc);
    int fill = dpool_channel_fill(channel);
    // Frames that arrived before an end of file still count: a process that retires
    // after its last task writes the result and exits at once.
    for (;;) {
        uint8_t kind;
        const uint8_t *body;
        size_t size;
        int rc = dpool_channel_next(channel, false, &kind, &body, &size);
        if (rc == 0)
            break;
        if (rc == 1 && kind == DPOOL_CHANNEL_READY && slot->state == S_STARTING) {
            s_on_idle(self, slot);
        } else if (rc == 1 && kind == DPOOL_CHANNEL_RESULT) {
            s_on_result(self, slot, body, size);
        } else {
            s_on_death(self, slot);
        }
        if (!slot->proc || slot->state == S_EMPTY)
            return;
    }
    if (fill != DPOOL_OK)
        s_on_death(self, slot);
}

static s_slot_t *
s_find_slot(dpool_worker_t *self, s_state_t state, uint64_t task_id)
{
    for (unsigned i = 0; i < self->processes; i++) {
        s_slot_t *slot = &self->slots[i];
        if (slot->state == state && (state != S_BUSY || slot->task_id == task_id))
            return slot;
    }
    return NULL;
}

static void
s_on_task(dpool_worker_t *self, dpool_msg_t *msg)
{
    if (self->granted == 0)
        DPOOL_LOG_WARN("task %" PRIu64 " arrived without a credit", msg->task_id);
    else
        self->granted--;
    if (!dpool_functions_lookup(self->functions, msg->name)) {
        char *why = zsys_sprintf("no function \"%s\" on worker host %s", msg->name, self->host);
        s_send_result(self, msg->task_id, DPOOL_ERR_NO_FUNCTION, why, NULL, s_take_credits(self));
        zstr_free(&why);
        return;
    }
    s_slot_t *slot = s_find_slot(self, S_IDLE, 0);
    if (slot) {
        self->idle--;
        s_start(self, slot, msg->task_id, msg->name, msg->payload);
        return;
    }
    s_pending_t *task = calloc(1, sizeof *task);
    if (!task || zlist_size(self->pending) >= S_PENDING_MAX || zlist_append(self->pending, task)) {
        free(task);
        s_send_result(self, msg->task_id, DPOOL_ERR_QUEUE_FULL,
                      "worker daemon has no idle process for this task", NULL, 0);
        return;
    }
    *task = (s_pending_t){msg->task_id, msg->name, msg->payload};
    msg->name = NULL; // moved into the pending task
    msg->payload = NULL;
}

static void
s_on_kill(dpool_worker_t *self, dpool_msg_t *msg)
{
    s_slot_t *slot = s_find_slot(self, S_BUSY, msg->task_id);
    if (slot) {
        char why[512];
        dpool_proc_reap(slot->proc, self->host, why, sizeof why);
        s_bury(self, slot, true); // its replacement's CREDIT stands for it
        return;
    }
    for (s_pending_t *task = zlist_first(self->pending); task; task = zlist_next(self->pending)) {
        if (task->task_id == msg->task_id) {
            zlist_remove(self->pending, task);
            s_pending_destroy(&task);
            return;
        }
    }
    DPOOL_LOG_DEBUG("KILL for task %" PRIu64 ", which runs here no more", msg->task_id);
}

static void
s_on_error(dpool_worker_t *self, dpool_msg_t *msg)
{
    DPOOL_LOG_WARN("broker reports error %d: %s", msg->code, msg->text ? msg->text : "");
    // A broker that restarted does not know this daemon and says so; hello again,
    // but not more than once a second in case our hello is what it refuses.
    if (msg->text && strstr(msg->text, "WORKER_HELLO") &&
        dpool_clock_ms() - self->hello_at >= S_HEARTBEAT_MS)
        s_send_hello(self);
}

typedef void(s_handler_fn)(dpool_worker_t *self, dpool_msg_t *msg);

static void
s_on_broker(dpool_worker_t *self)
{
    static const struct {
        dpool_cmd_t command;
        s_handler_fn *handler;
    } handlers[] = {
        {DPOOL_CMD_TASK, s_on_task},
        {DPOOL_CMD_KILL, s_on_kill},
        {DPOOL_CMD_HEARTBEAT, NULL}, // a sign of life; nothing to answer
        {DPOOL_CMD_ERROR, s_on_error},
    };
    const size_t count = sizeof handlers / sizeof handlers[0];
    dpool_msg_t msg = {0};
    // Everything readable, before any dispatching: a burst of TASKs is one turn.
    while (dpool_uplink_recv(self->uplink, &msg)) {
        size_t i = 0;
        while (i < count && handlers[i].command != msg.command)
            i++;
        if (i < count && handlers[i].handler)
            handlers[i].handler(self, &msg);
        else if (i == count)
            DPOOL_LOG_WARN("dropped %s from the broker: not a command for workers",
                           dpool_proto_command_name(msg.command));
        dpool_msg_reset(&msg);
    }
}

static void
s_on_timers(dpool_worker_t *self)
{
    int64_t now = dpool_clock_ms();
    if (now >= self->heartbeat_at) {
        dpool_msg_t msg = {.command = DPOOL_CMD_HEARTBEAT};
        dpool_uplink_send(self->uplink, &msg);
        self->heartbeat_at = now + S_HEARTBEAT_MS;
    }
    for (unsigned i = 0; i < self->processes; i++)
        if (self->slots[i].state == S_EMPTY && now >= self->slots[i].spawn_at)
            s_spawn(self, &self->slots[i]);
    unsigned credits = s_take_credits(self);
    if (credits) {
        dpool_msg_t msg = {.command = DPOOL_CMD_CREDIT, .count = credits};
        dpool_uplink_send(self->uplink, &msg);
    }
}

// Milliseconds until the next timer is due, for zmq_poll.
static long
s_poll_timeout(dpool_worker_t *self)
{
    int64_t next = self->heartbeat_at;
    for (unsigned i = 0; i < self->processes; i++)
        if (self->slots[i].state == S_EMPTY && self->slots[i].spawn_at < next)
            next = self->slots[i].spawn_at;
    int64_t wait = next - dpool_clock_ms();
    return wait < 0 ? 0 : (long)wait;
}

// What one poll item stands for: the broker (proc == NULL) or a process's
// channel (stream 0) or output pipe.
typedef struct {
    s_slot_t *slot;
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
        s_slot_t *slot = &self->slots[i];
        if (!slot->proc)
            continue;
        // Output first: a result must not overtake output that was already there.
        const int streams[] = {DPOOL_STREAM_STDOUT, DPOOL_STREAM_STDERR};
        for (int k = 0; k < 2; k++) {
            int fd = dpool_proc_output_fd(slot->proc, streams[k]);
            if (fd < 0)
                continue;
            items[n] = (zmq_pollitem_t){.fd = fd, .events = ZMQ_POLLIN};
            refs[n++] = (s_item_ref_t){slot, slot->proc, streams[k]};
        }
        items[n] = (zmq_pollitem_t){.fd = dpool_channel_fd(dpool_proc_channel(slot->proc)),
                                    .events = ZMQ_POLLIN};
        refs[n++] = (s_item_ref_t){slot, slot->proc, 0};
    }
    return n;
}

static void
s_on_items(dpool_worker_t *self, zmq_pollitem_t *items, s_item_ref_t *refs, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        s_slot_t *slot = refs[i].slot;
        // An earlier item may have buried this process; nothing is spawned until
        // the timers run, so a live slot->proc equal to the ref is the same process.
        if (!(items[i].revents & (ZMQ_POLLIN | ZMQ_POLLERR)) || slot->proc != refs[i].proc)
            continue;
        if (refs[i].stream)
            s_read_output(self, slot, refs[i].stream, false);
        else
            s_on_channel(self, slot);
    }
    if (items[0].revents & ZMQ_POLLIN)
        s_on_broker(self);
}

static int
s_connect(dpool_worker_t *self)
{
    self->uplink = dpool_uplink_new(self->endpoint);
    if (!self->uplink)
        return DPOOL_ERR_IO;
    DPOOL_LOG_INFO("worker %s on %s: %u processes, %zu functions, broker %s",
                   dpool_uplink_id(self->uplink), self->host, self->processes,
                   dpool_functions_size(self->functions), self->endpoint);
    return DPOOL_OK;
}

static void
s_stop_processes(dpool_worker_t *self)
{
    for (unsigned i = 0; i < self->processes; i++) {
        dpool_proc_destroy(&self->slots[i].proc);
        self->slots[i].state = S_EMPTY;
    }
    self->idle = 0;
}

int
dpool_worker_run(dpool_worker_t *self, volatile sig_atomic_t *stop)
{
    for (unsigned i = 0; i < self->processes; i++)
        s_spawn(self, &self->slots[i]); // before the ZeroMQ context exists
    size_t max_items = 1 + 3 * (size_t)self->processes;
    zmq_pollitem_t *items = calloc(max_items, sizeof *items);
    s_item_ref_t *refs = calloc(max_items, sizeof *refs);
    int rc = items && refs ? s_connect(self) : DPOOL_ERR_NOMEM;
    if (rc == DPOOL_OK)
        s_send_hello(self);
    self->heartbeat_at = dpool_clock_ms() + S_HEARTBEAT_MS;
    while (rc == DPOOL_OK && !*stop) {
        size_t n = s_fill_items(self, items, refs);
        if (zmq_poll(items, (int)n, s_poll_timeout(self)) < 0) {
            if (zmq_errno() == EINTR)
                continue;
            DPOOL_LOG_ERROR("poll failed: %s", zmq_strerror(zmq_errno()));
            rc = DPOOL_ERR_IO;
            break;
        }
        s_on_items(self, items, refs, n);
        s_on_timers(self);
    }
    if (self->hello_at) {
        dpool_msg_t bye = {.command = DPOOL_CMD_BYE};
        dpool_uplink_send(self->uplink, &bye);
    }
    s_stop_processes(self);
    dpool_uplink_destroy(&self->uplink);
    free(items);
    free(refs);
    return rc;
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
    self->pending = zlist_new();
    self->buffer = malloc(S_OUTPUT_CHUNK);
    if (!self->endpoint || !self->functions || !self->slots || !self->pending || !self->buffer ||
        dpool_builtins_register(self->functions) != DPOOL_OK)
        goto nomem;
    for (size_t i = 0; i < config->module_count; i++)
        if (dpool_functions_load(self->functions, config->modules[i], error, error_size) !=
            DPOOL_OK)
            goto fail;
    self->runner = (dpool_runner_config_t){self->functions, config->max_tasks_per_child};
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
    for (s_pending_t *task = self->pending ? zlist_pop(self->pending) : NULL; task;
         task = zlist_pop(self->pending))
        s_pending_destroy(&task);
    zlist_destroy(&self->pending);
    dpool_uplink_destroy(&self->uplink);
    dpool_functions_destroy(&self->functions);
    free(self->slots);
    free(self->buffer);
    free(self->endpoint);
    free(self);
    *self_p = NULL;
}
