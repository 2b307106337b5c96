/*  The pool's I/O thread. User threads never touch the DEALER (STYLE: a socket
    belongs to one thread): they push ready-made protocol messages into the actor pipe
    and this thread forwards them, so the hot path is one inproc hop and no decoding.
    Results come back in completion order and are matched through the pending table.

    Broker loss: ZMTP heartbeats (1 s, dropped after 3 s of silence) make a dead or
    unreachable broker show up as a DISCONNECTED socket event even without a TCP reset;
    if no reconnect follows within the connect timeout, every pending task fails with
    DPOOL_ERR_UNREACHABLE, so no get / join waits forever. */
#include "dpool_io.h"
#include "dpool_result.h"

#include <dpool_clock.h>
#include <stdlib.h>
#include <string.h>

#define S_HEARTBEAT_IVL_MS 1000
#define S_HEARTBEAT_TIMEOUT_MS 3000
// Long enough for POOL_RELEASE to leave after the socket is closed, short enough that a
// program whose broker is gone does not hang at exit (CZMQ terminates the context then).
#define S_LINGER_MS 1000
// Messages taken from one socket before looking at the others again.
#define S_BATCH 256

typedef struct {
    char *endpoint;
    char *pool_name;
    uint32_t cap;
    uint32_t retries;
    uint32_t time_limit_ms;
    int64_t timeout_ms;
    dpool_output_fn *output;
    void *output_arg;
    dpool_pending_t *pending;
    char routing_id[18]; // 'C' + 16 hex digits
    // owned by the I/O thread once it runs
    zsock_t *dealer;
    zsock_t *monitor;
    int64_t lost_since; // ms; 0 while connected (or never connected yet)
} s_state_t;

struct _dpool_io_t {
    zactor_t *actor;
    s_state_t state; // read by the thread; the user side only frees it after the join
};

// The open handshake's outcome, reported to dpool_io_new over the pipe.
static void
s_report(zsock_t *pipe, int code, uint32_t cap, const char *message)
{
    zsock_send(pipe, "i4s", code, cap, message ? message : "");
}

static int
s_setup_sockets(s_state_t *self, char *why, size_t why_size)
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
    zsock_set_heartbeat_ivl(self->dealer, S_HEARTBEAT_IVL_MS);
    zsock_set_heartbeat_timeout(self->dealer, S_HEARTBEAT_TIMEOUT_MS);
    char monitor_ep[64];
    snprintf(monitor_ep, sizeof monitor_ep, "inproc://dpool-monitor-%s", self->routing_id);
    if (zmq_socket_monitor(zsock_resolve(self->dealer), monitor_ep,
                           ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED) != 0)
        return snprintf(why, why_size, "cannot monitor the socket"), DPOOL_ERR_IO;
    self->monitor = zsock_new_pair(monitor_ep);
    if (!self->monitor)
        return snprintf(why, why_size, "cannot connect the socket monitor"), DPOOL_ERR_IO;
    if (zsock_connect(self->dealer, "%s", self->endpoint) != 0)
        return snprintf(why, why_size, "bad broker endpoint \"%s\"", self->endpoint),
               DPOOL_ERR_INVALID;
    return DPOOL_OK;
}

static void
s_on_monitor(s_state_t *self)
{
    zmsg_t *event = zmsg_recv(self->monitor);
    zframe_t *head = event ? zmsg_first(event) : NULL;
    if (head && zframe_size(head) >= 2) {
        uint16_t id;
        memcpy(&id, zframe_data(head), sizeof id);
        if (id == ZMQ_EVENT_CONNECTED)
            self->lost_since = 0;
        else if (id == ZMQ_EVENT_DISCONNECTED && self->lost_since == 0)
            self->lost_since = dpool_clock_ms();
    }
    zmsg_destroy(&event);
}

// Receives one message from the broker into msg; false when it is malformed (dropped:
// nothing from the network may stop this thread).
static bool
s_recv(s_state_t *self, dpool_msg_t *msg)
{
    zmsg_t *zmsg = zmsg_recv(self->dealer);
    if (!zmsg)
        return false;
    const char *why = NULL;
    memset(msg, 0, sizeof *msg);
    return dpool_proto_decode(&zmsg, false, NULL, msg, &why) == DPOOL_OK;
}

// Waits for POOL_OPENED until the connect timeout. Returns DPOOL_OK with *cap_p, or a
// failure code with why filled; DPOOL_ERR_STATE when the owner gave up ($TERM).
static int
s_open(s_state_t *self, zsock_t *pipe, uint32_t *cap_p, char *why, size_t why_size)
{
    dpool_msg_t open = {.command = DPOOL_CMD_POOL_OPEN,
                        .pool_ref = DPOOL_IO_POOL_REF,
                        .name = self->pool_name,
                        .count = self->cap,
                        .retries = self->retries,
                        .time_limit_ms = self->time_limit_ms};
    if (dpool_proto_send(self->dealer, &open, NULL) != DPOOL_OK)
        return snprintf(why, why_size, "cannot queue POOL_OPEN"), DPOOL_ERR_IO;
    zpoller_t *poller = zpoller_new(pipe, self->dealer, self->monitor, NULL);
    if (!poller)
        return snprintf(why, why_size, "cannot create a poller"), DPOOL_ERR_NOMEM;
    int64_t deadline = dpool_clock_ms() + self->timeout_ms;
    int rc = DPOOL_ERR_UNREACHABLE;
    snprintf(why, why_size, "no answer from the broker at %s within %.1f s", self->endpoint,
             (double)self->timeout_ms / 1000.0);
    for (int64_t now = dpool_clock_ms(); now < deadline; now = dpool_clock_ms()) {
        void *which = zpoller_wait(poller, (int)(deadline - now));
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
s_on_broker(s_state_t *self)
{
    for (int i = 0; i < S_BATCH && (zsock_events(self->dealer) & ZMQ_POLLIN); i++) {
        dpool_msg_t msg;
        if (!s_recv(self, &msg))
            continue;
        if (msg.command == DPOOL_CMD_OUTPUT)
            self->output(self->output_arg, msg.task_id, (int)msg.count, msg.text, msg.text_size);
        else if (msg.command == DPOOL_CMD_RESULT)
            dpool_pending_complete(self->pending, msg.task_id, msg.code, msg.text, &msg.payload);
        // Anything else (an ERROR about a message of ours, a stray POOL_OPENED) concerns
        // no task: the library does not log, and no waiter needs waking.
        dpool_msg_reset(&msg);
    }
}

// Forwards user messages to the broker; returns false on $TERM.
static bool
s_on_pipe(s_state_t *self, zsock_t *pipe)
{
    for (int i = 0; i < S_BATCH && (zsock_events(pipe) & ZMQ_POLLIN); i++) {
        zmsg_t *zmsg = zmsg_recv(pipe);
        if (!zmsg)
            return false;
        zframe_t *first = zmsg_first(zmsg);
        if (zframe_streq(first, "$TERM")) {
            zmsg_destroy(&zmsg);
            return false;
        }
        if (zmsg_send(&zmsg, self->dealer) != 0)
            zmsg_destroy(&zmsg);
    }
    return true;
}

static int
s_poll_timeout(const s_state_t *self)
{
    if (self->lost_since == 0)
        return -1;
    int64_t left = self->lost_since + self->timeout_ms - dpool_clock_ms();
    return left > 0 ? (int)left : -1;
}

static void
s_check_lost(s_state_t *self)
{
    if (self->lost_since == 0 || dpool_clock_ms() - self->lost_since < self->timeout_ms)
        return;
    if (dpool_pending_count(self->pending) == 0)
        return;
    char why[200];
    snprintf(why, sizeof why, "lost the connection to the broker at %s for more than %.1f s",
             self->endpoint, (double)self->timeout_ms / 1000.0);
    dpool_pending_fail_all(self->pending, DPOOL_ERR_UNREACHABLE, why);
}

static void
s_run(s_state_t *self, zsock_t *pipe)
{
    zpoller_t *poller = zpoller_new(pipe, self->dealer, self->monitor, NULL);
    if (!poller)
        return;
    bool running = true;
    while (running) {
        void *which = zpoller_wait(poller, s_poll_timeout(self));
        if (which == pipe)
            running = s_on_pipe(self, pipe);
        else if (which == self->dealer)
            s_on_broker(self);
        else if (which == self->monitor)
            s_on_monitor(self);
        else if (zpoller_terminated(poller))
            running = false;
        s_check_lost(self);
    }
    zpoller_destroy(&poller);
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
    s_state_t *self = args;
    zsock_signal(pipe, 0);
    char why[256] = "";
    uint32_t cap = 0;
    int rc = s_setup_sockets(self, why, sizeof why);
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
s_state_free(s_state_t *state)
{
    free(state->endpoint);
    free(state->pool_name);
}

static int
s_state_init(s_state_t *state, const dpool_io_config_t *config)
{
    state->endpoint = strdup(config->endpoint);
    state->pool_name = config->pool_name ? strdup(config->pool_name) : NULL;
    if (!state->endpoint || (config->pool_name && !state->pool_name))
        return DPOOL_ERR_NOMEM;
    state->cap = config->cap;
    state->retries = config->retries;
    state->time_limit_ms = config->time_limit_ms;
    state->timeout_ms = (int64_t)(config->connect_timeout * 1000.0);
    state->output = config->output;
    state->output_arg = config->output_arg;
    state->pending = config->pending;
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
dpool_io_send(dpool_io_t *self, dpool_msg_t *msg)
{
    return dpool_proto_send(zactor_sock(self->actor), msg, NULL);
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
