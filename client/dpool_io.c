/*  The pool's I/O thread. User threads write their messages into the outbox
    (dpool_outbox) and wake this thread with an eventfd when it was empty; the thread
    sends what one wake-up finds as BATCHes, with no decoding. Results come back in
    completion order and are matched through the pending table.

    A task alone in flight is the one exception to "the DEALER is this thread's": the
    thread lends the socket to its submitting thread (dpool_io_lend.c).

    Liveness, both ways (docs/PROTOCOL.md, "Heartbeats"): once the pool is open this
    thread sends HEARTBEAT every second, and counts the broker lost after 3 s without
    any message from it, or at once when the socket reports the connection gone. ZMTP
    heartbeats on the DEALER stay on as well: they are what makes libzmq drop a dead
    TCP connection and reconnect (every 100 ms, backing off to 2 s) without a reset.

    Recovery after a reconnect (a resync) and a lost broker: dpool_io_recovery.c. */
#include "dpool_io_internal.h"
#include "dpool_batch.h"
#include "dpool_curve.h"
#include "dpool_outbox.h"
#include "dpool_output.h"
#include "dpool_result.h"

#include <dpool_clock.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

// The protocol's client heartbeat, and how long a silent broker is still alive: three
// beats, as for worker daemons, so one late beat is not a loss.
#define S_HEARTBEAT_MS 1000
#define S_LIVENESS_MS (3 * S_HEARTBEAT_MS)
// libzmq's reconnect backoff: quick for a broker restarting, bounded for one that is
// down for long.
#define S_RECONNECT_IVL_MS 100
#define S_RECONNECT_IVL_MAX_MS 2000
// Long enough for POOL_RELEASE to leave after the socket is closed, short enough that a
// program whose broker is gone does not hang at exit (CZMQ terminates the context then).
#define S_LINGER_MS 1000
// Messages taken from one socket before looking at the others again.
#define S_BATCH 256

// The open handshake's outcome, reported to dpool_io_new over the pipe.
static void
s_report(zsock_t *pipe, int code, uint32_t cap, const char *message)
{
    zsock_send(pipe, "i4s", code, cap, message ? message : "");
}

static int
s_setup_sockets(dpool_io_state_t *self, char *why, size_t why_size)
{
    self->dealer = zsock_new(ZMQ_DEALER);
    if (!self->dealer)
        return snprintf(why, why_size, "cannot create a socket"), DPOOL_ERR_IO;
    zsock_set_identity(self->dealer, self->routing_id);
    // Unbounded queues: a full receive queue would make the broker's ROUTER drop our
    // results, and a blocked send would stop this thread from reading them.
    zsock_set_sndhwm(self->dealer, 0);
    zsock_set_rcvhwm(self->dealer, 0);
    zsock_set_linger(self->dealer, S_LINGER_MS);
    zsock_set_heartbeat_ivl(self->dealer, S_HEARTBEAT_MS);
    zsock_set_heartbeat_timeout(self->dealer, S_LIVENESS_MS);
    zsock_set_reconnect_ivl(self->dealer, S_RECONNECT_IVL_MS);
    zsock_set_reconnect_ivl_max(self->dealer, S_RECONNECT_IVL_MAX_MS);
    char monitor_ep[64];
    snprintf(monitor_ep, sizeof monitor_ep, "inproc://dpool-monitor-%s", self->routing_id);
    if (zmq_socket_monitor(zsock_resolve(self->dealer), monitor_ep,
                           ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED) != 0)
        return snprintf(why, why_size, "cannot monitor the socket"), DPOOL_ERR_IO;
    self->monitor = zsock_new_pair(monitor_ep);
    if (!self->monitor)
        return snprintf(why, why_size, "cannot connect the socket monitor"), DPOOL_ERR_IO;
    int curve =
        dpool_curve_apply(self->dealer, self->curve_secret, self->broker_key, why, why_size);
    if (curve != DPOOL_OK)
        return curve;
    if (zsock_connect(self->dealer, "%s", self->endpoint) != 0)
        return snprintf(why, why_size, "bad broker endpoint \"%s\"", self->endpoint),
               DPOOL_ERR_INVALID;
    return DPOOL_OK;
}

static void
s_send_beat(dpool_io_state_t *self)
{
    dpool_msg_t beat = {.command = DPOOL_CMD_HEARTBEAT};
    dpool_proto_send(self->dealer, &beat, NULL);
    self->next_beat = dpool_clock_ms() + S_HEARTBEAT_MS;
}

// Returns the event id read from the monitor, or 0.
static uint16_t
s_on_monitor(dpool_io_state_t *self)
{
    zmsg_t *event = zmsg_recv(self->monitor);
    zframe_t *head = event ? zmsg_first(event) : NULL;
    uint16_t id = 0;
    if (head && zframe_size(head) >= 2)
        memcpy(&id, zframe_data(head), sizeof id);
    zmsg_destroy(&event);
    if (id == ZMQ_EVENT_CONNECTED)
        self->connected = true;
    else if (id == ZMQ_EVENT_DISCONNECTED) {
        self->connected = false;
        dpool_io_mark_lost(self);
    }
    return id;
}

// Decodes the next message from the broker into msg, the rest of a BATCH first.
// Returns DPOOL_OK, DPOOL_ERR_PROTO for a malformed one (dropped: nothing from the
// network may stop this thread), or 1 when none waits (or when reading may not go on:
// at most S_BATCH reads per call of dpool_io_on_broker).
static int
s_next(dpool_io_state_t *self, int *reads, dpool_msg_t *msg)
{
    const char *why = NULL;
    memset(msg, 0, sizeof *msg);
    if (!dpool_batch_inbox_waiting(&self->inbox) && (*reads)++ >= S_BATCH)
        return 1;
    return dpool_batch_inbox_recv(&self->inbox, self->dealer, msg, &why);
}

// Receives one message from the broker into msg; false when none waits or it is
// malformed.
static bool
s_recv(dpool_io_state_t *self, dpool_msg_t *msg)
{
    int reads = 0;
    return s_next(self, &reads, msg) == DPOOL_OK;
}

int
dpool_io_send_open(dpool_io_state_t *self)
{
    dpool_msg_t open = {.command = DPOOL_CMD_POOL_OPEN,
                        .pool_ref = DPOOL_IO_POOL_REF,
                        .name = self->pool_name,
                        .count = self->cap,
                        .retries = self->retries,
                        .time_limit_ms = self->time_limit_ms};
    return dpool_proto_send(self->dealer, &open, NULL);
}

// Waits for POOL_OPENED until the connect timeout. Returns DPOOL_OK with *cap_p, or a
// failure code with why filled; DPOOL_ERR_STATE when the owner gave up ($TERM).
static int
s_open(dpool_io_state_t *self, zsock_t *pipe, uint32_t *cap_p, char *why, size_t why_size)
{
    if (dpool_io_send_open(self) != DPOOL_OK)
        return snprintf(why, why_size, "cannot queue POOL_OPEN"), DPOOL_ERR_IO;
    zpoller_t *poller = zpoller_new(pipe, self->dealer, self->monitor, NULL);
    if (!poller)
        return snprintf(why, why_size, "cannot create a poller"), DPOOL_ERR_NOMEM;
    int64_t deadline = dpool_clock_ms() + self->timeout_ms;
    int rc = DPOOL_ERR_UNREACHABLE;
    snprintf(why, why_size, "no answer from the broker at %s within %.1f s", self->endpoint,
             (double)self->timeout_ms / 1000.0);
    for (int64_t now = dpool_clock_ms(); now < deadline; now = dpool_clock_ms()) {
        // The rest of a BATCH first: the socket does not wake the poller for it.
        void *which = dpool_batch_inbox_waiting(&self->inbox)
                          ? self->dealer
                          : zpoller_wait(poller, (int)(deadline - now));
        if (which == pipe) {
            rc = DPOOL_ERR_STATE;
            break;
        }
        if (which == self->monitor)
            s_on_monitor(self);
        dpool_msg_t msg;
        if (which != self->dealer || !s_recv(self, &msg))
            continue;
        if (msg.command == DPOOL_CMD_POOL_OPENED && msg.pool_ref == DPOOL_IO_POOL_REF) {
            rc = msg.code;
            *cap_p = msg.count;
            self->epoch = msg.task_id;
        } else if (msg.command == DPOOL_CMD_ERROR)
            rc = msg.code < 0 ? msg.code : DPOOL_ERR_PROTO;
        if (rc != DPOOL_ERR_UNREACHABLE)
            snprintf(why, why_size, "%s", msg.text ? msg.text : "");
        dpool_msg_reset(&msg);
        if (rc != DPOOL_ERR_UNREACHABLE)
            break;
    }
    zpoller_destroy(&poller);
    return rc;
}

static void
s_on_output(dpool_io_state_t *self, const dpool_msg_t *msg)
{
    if (self->output)
        self->output(self->output_arg, msg->task_id, (int)msg->count, msg->text, msg->text_size);
    else
        dpool_output_write(self->writer, (int)msg->count, msg->name, msg->text, msg->text_size);
}

// Handles what the broker sent. Returns true when it stopped at the read limit with
// more waiting; false when none waits (the last look at the socket said so).
bool
dpool_io_on_broker(dpool_io_state_t *self)
{
    int reads = 0, rc;
    dpool_msg_t msg;
    while ((rc = s_next(self, &reads, &msg)) != 1) {
        if (rc != DPOOL_OK) {
            self->last_heard = dpool_clock_ms(); // malformed, but the broker is there
            continue;
        }
        if (msg.command == DPOOL_CMD_OUTPUT)
            s_on_output(self, &msg);
        bool outcome = !dpool_io_on_state(self, &msg);
        if (outcome && msg.payload_lent)
            dpool_pending_complete_bytes(self->pending, msg.task_id, msg.code, msg.text,
                                         msg.payload_lent, msg.payload_lent_size);
        else if (outcome)
            dpool_pending_complete(self->pending, msg.task_id, msg.code, msg.text, &msg.payload);
        // Anything else (an ERROR about a message of ours, a STATUS_REPLY) concerns no
        // task: the library does not log, and no waiter needs waking.
        dpool_msg_reset(&msg);
    }
    return reads > S_BATCH;
}

// Sends what user threads posted since the last take, as BATCHes.
static void
s_send_posted(dpool_io_state_t *self)
{
    bool released = false;
    dpool_outbox_take(self->outbox, &self->outgoing, &released);
    if (released)
        self->released = true;
    if (self->lost)
        dpool_io_send_without_submits(self);
    else
        dpool_batch_send(self->outgoing, self->dealer, NULL); // lost like a failed send
}

// Whether sock holds a message; *gone when the context is terminating.
static bool
s_readable(zsock_t *sock, bool *gone)
{
    uint32_t events = 0;
    size_t size = sizeof events;
    if (zmq_getsockopt(zsock_resolve(sock), ZMQ_EVENTS, &events, &size) != 0)
        *gone = *gone || zmq_errno() == ETERM;
    return (events & ZMQ_POLLIN) != 0;
}

// Reads the owner's commands from the actor pipe; false on $TERM or when the context
// is going. What was posted before $TERM still leaves.
static bool
s_on_pipe(dpool_io_state_t *self, zsock_t *pipe)
{
    bool gone = false, term = false;
    while (!term && s_readable(pipe, &gone)) {
        zmsg_t *zmsg = zmsg_recv(pipe);
        term = !zmsg ? zmq_errno() != EINTR : zframe_streq(zmsg_first(zmsg), "$TERM");
        zmsg_destroy(&zmsg);
    }
    if (term || gone)
        s_send_posted(self);
    return !term && !gone;
}

static void
s_on_monitor_events(dpool_io_state_t *self)
{
    bool gone = false;
    while (s_readable(self->monitor, &gone))
        if (s_on_monitor(self) == ZMQ_EVENT_CONNECTED && !self->released)
            s_send_beat(self);
}

// A post's wake-up: the count is read (zeroed) before the outbox is taken, so a post
// that lands after the take wakes the thread again.
static void
s_on_wake(dpool_io_state_t *self)
{
    uint64_t count;
    if (read(self->wake_fd, &count, sizeof count) < 0 && errno != EAGAIN)
        return;
    s_send_posted(self);
}

static void
s_on_timers(dpool_io_state_t *self)
{
    int64_t now = dpool_clock_ms();
    if (!self->lost && now - self->last_heard >= S_LIVENESS_MS)
        dpool_io_mark_lost(self);
    // No beats into a socket that is down: they would only queue up. A reconnect sends
    // one at once (s_run), which is what gets a restarted broker to answer.
    if (now >= self->next_beat) {
        if (self->connected && !self->released)
            s_send_beat(self);
        else
            self->next_beat = now + S_HEARTBEAT_MS;
    }
    dpool_io_check_lost(self);
}

int
dpool_io_poll_timeout(const dpool_io_state_t *self)
{
    int64_t now = dpool_clock_ms();
    int64_t next = self->next_beat;
    if (!self->lost && self->last_heard + S_LIVENESS_MS < next)
        next = self->last_heard + S_LIVENESS_MS;
    int64_t give_up = self->lost_since + self->reconnect_ms;
    if (self->lost && self->reconnect_ms >= 0 && give_up > now && give_up < next)
        next = give_up;
    return next > now ? (int)(next - now) : 0;
}

static int
s_socket_fd(zsock_t *sock)
{
    int fd = -1;
    size_t size = sizeof fd;
    return zmq_getsockopt(zsock_resolve(sock), ZMQ_FD, &fd, &size) == 0 ? fd : -1;
}

// Whether the thread's wait looks at the DEALER. A caller standing in for the thread
// (dpool_io_await) takes it out, so the broker's answer wakes that caller alone.
void
dpool_io_watch_dealer(dpool_io_state_t *self, bool watch)
{
    struct epoll_event event = {.events = watch ? EPOLLIN : 0, .data.u32 = DPOOL_IO_FD_DEALER};
    int rc = epoll_ctl(self->watch_fd, EPOLL_CTL_MOD, self->dealer_fd, &event);
    // Not watched again (out of kernel memory): the thread tries at its next turn.
    self->dealer_unwatched = rc != 0 || !watch;
}

// Waits for the thread's descriptors; ready[i] says which woke it.
static void
s_wait(dpool_io_state_t *self, int timeout, bool ready[DPOOL_IO_FDS])
{
    struct epoll_event events[DPOOL_IO_FDS];
    int n = epoll_wait(self->watch_fd, events, DPOOL_IO_FDS, timeout);
    memset(ready, 0, DPOOL_IO_FDS * sizeof *ready);
    for (int i = 0; i < n; i++)
        ready[events[i].data.u32] = true;
}

static bool
s_watch_all(dpool_io_state_t *self, zsock_t *pipe)
{
    int fds[DPOOL_IO_FDS] = {
        [DPOOL_IO_FD_WAKE] = self->wake_fd,
        [DPOOL_IO_FD_DEALER] = s_socket_fd(self->dealer),
        [DPOOL_IO_FD_MONITOR] = s_socket_fd(self->monitor),
        [DPOOL_IO_FD_PIPE] = s_socket_fd(pipe),
    };
    self->dealer_fd = fds[DPOOL_IO_FD_DEALER];
    // Two sets of the same descriptors: the thread's, and one a stand-in waits on
    // (dpool_io_lend.c) while the DEALER is out of the thread's. A set kept between
    // waits spares each wait registering on every descriptor, as a poll does.
    int *sets[] = {&self->watch_fd, &self->stand_in_fd};
    for (size_t set = 0; set < sizeof sets / sizeof *sets; set++) {
        if ((*sets[set] = epoll_create1(EPOLL_CLOEXEC)) < 0)
            return false;
        for (uint32_t i = 0; i < DPOOL_IO_FDS; i++) {
            struct epoll_event event = {.events = EPOLLIN, .data.u32 = i};
            if (fds[i] < 0 || epoll_ctl(*sets[set], EPOLL_CTL_ADD, fds[i], &event) != 0)
                return false;
        }
    }
    return true;
}

// The thread's loop. It waits on the sockets' own descriptors (a zmq_poll asks every
// socket for its events before and after it sleeps, two system calls each time) and
// looks at a socket only when its descriptor woke it. The DEALER is the exception:
// any send or receive on it may take its descriptor's signal, so the broker's messages
// are read until none waits at the end of every turn, after this turn's sends; only
// then may the thread sleep.
static void
s_run(dpool_io_state_t *self, zsock_t *pipe)
{
    pthread_mutex_lock(&self->socket_lock);
    self->connected = true; // POOL_OPENED just came in on it
    self->last_heard = dpool_clock_ms();
    s_send_beat(self);
    atomic_store(&self->running, true);
    bool ready[DPOOL_IO_FDS] = {true, true, true, true}; // the first turn looks at everything
    while (true) {
        if (ready[DPOOL_IO_FD_PIPE] && !s_on_pipe(self, pipe))
            break;
        if (ready[DPOOL_IO_FD_MONITOR])
            s_on_monitor_events(self);
        if (ready[DPOOL_IO_FD_WAKE])
            s_on_wake(self);
        if (self->dealer_unwatched)
            dpool_io_watch_dealer(self, true);
        s_on_timers(self);
        bool more = dpool_io_on_broker(self);
        int timeout = more ? 0 : dpool_io_poll_timeout(self);
        pthread_mutex_unlock(&self->socket_lock);
        s_wait(self, timeout, ready);
        pthread_mutex_lock(&self->socket_lock);
    }
    atomic_store(&self->running, false);
    pthread_mutex_unlock(&self->socket_lock);
}

// After a failed open: nothing to do but wait for the owner's $TERM.
static void
s_wait_term(zsock_t *pipe)
{
    while (true) {
        char *command = zstr_recv(pipe);
        bool term = !command || streq(command, "$TERM");
        zstr_free(&command);
        if (term)
            return;
    }
}

static void
s_actor(zsock_t *pipe, void *args)
{
    dpool_io_state_t *self = args;
    zsock_signal(pipe, 0);
    char why[256] = "";
    uint32_t cap = 0;
    int rc = s_setup_sockets(self, why, sizeof why);
    if (rc == DPOOL_OK && !s_watch_all(self, pipe)) {
        snprintf(why, sizeof why, "cannot watch the sockets: %s", strerror(errno));
        rc = DPOOL_ERR_IO;
    }
    if (rc == DPOOL_OK)
        rc = s_open(self, pipe, &cap, why, sizeof why);
    if (rc != DPOOL_ERR_STATE)
        s_report(pipe, rc, cap, why);
    if (rc == DPOOL_OK)
        s_run(self, pipe);
    else {
        if (self->dealer)
            zsock_set_linger(self->dealer, 0); // nothing queued is worth waiting for
        if (rc != DPOOL_ERR_STATE)
            s_wait_term(pipe);
    }
    if (self->dealer)
        zmq_socket_monitor(zsock_resolve(self->dealer), NULL, 0);
    zsock_destroy(&self->monitor);
    zsock_destroy(&self->dealer);
}

static void
s_state_free(dpool_io_state_t *state)
{
    free(state->endpoint);
    free(state->curve_secret);
    free(state->broker_key);
    free(state->pool_name);
    dpool_output_destroy(&state->writer);
    dpool_batch_destroy(&state->outgoing);
    dpool_outbox_destroy(&state->outbox);
    dpool_batch_inbox_clear(&state->inbox);
    if (state->wake_fd >= 0)
        close(state->wake_fd);
    if (state->watch_fd >= 0)
        close(state->watch_fd);
    if (state->stand_in_fd >= 0)
        close(state->stand_in_fd);
    pthread_mutex_destroy(&state->socket_lock);
}

static int
s_state_init(dpool_io_state_t *state, const dpool_io_config_t *config)
{
    state->endpoint = strdup(config->endpoint);
    state->pool_name = config->pool_name ? strdup(config->pool_name) : NULL;
    state->curve_secret = config->curve_secret ? strdup(config->curve_secret) : NULL;
    state->broker_key = config->broker_key ? strdup(config->broker_key) : NULL;
    state->outgoing = dpool_batch_new();
    state->outbox = dpool_outbox_new();
    state->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    state->watch_fd = -1;
    state->stand_in_fd = -1;
    pthread_mutex_init(&state->socket_lock, NULL);
    if (!state->endpoint || !state->outgoing || !state->outbox || state->wake_fd < 0 ||
        (config->pool_name && !state->pool_name) ||
        (config->curve_secret && !state->curve_secret) ||
        (config->broker_key && !state->broker_key))
        return DPOOL_ERR_NOMEM;
    state->cap = config->cap;
    state->retries = config->retries;
    state->time_limit_ms = config->time_limit_ms;
    state->timeout_ms = (int64_t)(config->connect_timeout * 1000.0);
    state->reconnect_ms =
        config->reconnect_timeout < 0 ? -1 : (int64_t)(config->reconnect_timeout * 1000.0);
    state->output = config->output;
    state->output_arg = config->output_arg;
    if (!state->output && !(state->writer = dpool_output_new(config->output_prefix_host)))
        return DPOOL_ERR_NOMEM;
    state->pending = config->pending;
    state->inbox.lend = true; // results are copied once, from the BATCH into their handles
    zuuid_t *uuid = zuuid_new();
    if (!uuid)
        return DPOOL_ERR_NOMEM;
    snprintf(state->routing_id, sizeof state->routing_id, "C%.16s", zuuid_str(uuid));
    zuuid_destroy(&uuid);
    return DPOOL_OK;
}

// Reads the open outcome; the thread reports within the connect timeout, the slack is
// for a machine too loaded to schedule it.
static int
s_await_open(dpool_io_t *self, uint32_t *cap_p, dpool_error_t *err)
{
    zpoller_t *poller = zpoller_new(self->actor, NULL);
    int wait_ms = (int)self->state.timeout_ms + 5000;
    if (!poller || zpoller_wait(poller, wait_ms) != self->actor) {
        zpoller_destroy(&poller);
        dpool_error_set(err, DPOOL_ERR_UNREACHABLE, "no answer from the broker at %s",
                        self->state.endpoint);
        return DPOOL_ERR_UNREACHABLE;
    }
    zpoller_destroy(&poller);
    int code = DPOOL_ERR_IO;
    uint32_t cap = 0;
    char *message = NULL;
    if (zsock_recv(self->actor, "i4s", &code, &cap, &message) != 0)
        code = DPOOL_ERR_IO;
    dpool_error_set(err, code, "%s", message ? message : "cannot start the I/O thread");
    zstr_free(&message);
    *cap_p = cap;
    return code;
}

dpool_io_t *
dpool_io_new(const dpool_io_config_t *config, uint32_t *cap_p, dpool_error_t *err)
{
    dpool_io_t *self = calloc(1, sizeof *self);
    if (!self) {
        dpool_error_set(err, DPOOL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (s_state_init(&self->state, config) != DPOOL_OK) {
        dpool_error_set(err, DPOOL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    self->actor = zactor_new(s_actor, &self->state);
    if (!self->actor) {
        dpool_error_set(err, DPOOL_ERR_IO, "cannot start the I/O thread");
        goto fail;
    }
    if (s_await_open(self, cap_p, err) != DPOOL_OK)
        goto fail;
    return self;
fail:
    dpool_io_destroy(&self);
    return NULL;
}

int
dpool_io_wake_thread(dpool_io_state_t *state)
{
    uint64_t one = 1;
    return write(state->wake_fd, &one, sizeof one) == sizeof one ? DPOOL_OK : DPOOL_ERR_IO;
}

// Wakes the I/O thread after the first post since its last take. A wake-up that
// cannot be written leaves the next post to try again.
static int
s_wake(dpool_io_t *self, int rc, bool wake)
{
    if (rc == DPOOL_OK && wake && dpool_io_wake_thread(&self->state) != DPOOL_OK) {
        dpool_outbox_unwake(self->state.outbox);
        rc = DPOOL_ERR_IO;
    }
    return rc;
}

int
dpool_io_send(dpool_io_t *self, dpool_msg_t *msg)
{
    bool wake = false;
    int rc = dpool_outbox_post(self->state.outbox, msg, &wake);
    return s_wake(self, rc, wake);
}

int
dpool_io_send_encoded(dpool_io_t *self, const uint8_t *message, size_t size)
{
    bool wake = false;
    int rc = dpool_outbox_post_encoded(self->state.outbox, message, size, &wake);
    return s_wake(self, rc, wake);
}

int
dpool_io_send_alone(dpool_io_t *self, zmsg_t **zmsg_p)
{
    bool wake = false;
    int rc = dpool_outbox_post_alone(self->state.outbox, zmsg_p, &wake);
    return s_wake(self, rc, wake);
}

void
dpool_io_destroy(dpool_io_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dpool_io_t *self = *self_p;
    *self_p = NULL;
    zactor_destroy(&self->actor);
    s_state_free(&self->state);
    free(self);
}
