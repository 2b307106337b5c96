/*  What the pool's I/O thread (dpool_io.c), the user threads it lends its socket to
    (dpool_io_lend.c) and its recovery after a reconnect (dpool_io_recovery.c) share:
    the thread's state, and the steps of its loop run from another file. Not part of
    libdpool's interface. */
#ifndef DPOOL_IO_INTERNAL_H
#define DPOOL_IO_INTERNAL_H

#include "dpool_batch.h"
#include "dpool_io.h"
#include "dpool_outbox.h"
#include "dpool_output.h"

#include <pthread.h>
#include <stdatomic.h>

// The descriptors the thread waits on.
enum { DPOOL_IO_FD_WAKE, DPOOL_IO_FD_DEALER, DPOOL_IO_FD_MONITOR, DPOOL_IO_FD_PIPE, DPOOL_IO_FDS };

typedef struct {
    char *endpoint;
    char *pool_name;
    char *curve_secret; // CURVE certificate files, or NULL
    char *broker_key;
    uint32_t cap;
    uint32_t retries;
    uint32_t time_limit_ms;
    int64_t timeout_ms;   // connect timeout
    int64_t reconnect_ms; // -1 = for ever
    dpool_output_fn *output;
    void *output_arg;
    dpool_output_t *writer; // the default writer, when output is NULL
    dpool_pending_t *pending;
    dpool_outbox_t *outbox;    // what user threads post
    dpool_batch_t *outgoing;   // what one wake-up took from the outbox, being sent
    dpool_batch_inbox_t inbox; // the rest of a BATCH from the broker
    char routing_id[18];       // 'C' + 16 hex digits
    int wake_fd;               // eventfd: a post tells the thread there is something to send
    // Held by the thread except while it waits in epoll: whoever holds it may use the
    // DEALER and read what follows (a lone task is sent by its own thread: dpool_io_lend.c).
    pthread_mutex_t socket_lock;
    atomic_bool running;   // s_run's loop is on: the socket is open and the pool too
    int dealer_fd;         // the DEALER's descriptor, in both epoll sets below
    int watch_fd;          // the thread's epoll set of those descriptors
    int stand_in_fd;       // the same descriptors, for a stand-in to wait on
    bool dealer_unwatched; // the DEALER is out of that set (a stand-in has it)
    zsock_t *dealer;
    zsock_t *monitor;
    uint64_t epoch;     // the broker's, from POOL_OPENED / HEARTBEAT; 0 = take the next
    bool connected;     // as the socket monitor last said
    bool lost;          // the broker is lost; recovery follows its next message
    bool reopening;     // a re-sent POOL_OPEN has no POOL_OPENED yet
    bool released;      // POOL_RELEASE went out: no more beats, no recovery
    int64_t lost_since; // ms, while lost
    int64_t last_heard; // ms of the broker's last message
    int64_t next_beat;  // ms
} dpool_io_state_t;

struct _dpool_io_t {
    zactor_t *actor;
    dpool_io_state_t state; // read by the thread; the user side only frees it after the join
};

// Handles what the broker sent, under socket_lock. Returns true when it stopped at the
// read limit with more waiting; false when none waits (the last look at the socket said
// so, having taken every signal ZeroMQ had for it).
bool dpool_io_on_broker(dpool_io_state_t *self);

// Milliseconds until the next heartbeat or liveness deadline, for a wait.
int dpool_io_poll_timeout(const dpool_io_state_t *self);

// Wakes the thread (its eventfd). Returns DPOOL_OK or DPOOL_ERR_IO.
int dpool_io_wake_thread(dpool_io_state_t *self);

// Under socket_lock: whether the thread's wait looks at the DEALER. A caller standing
// in for the thread takes it out, so the broker's answer wakes that caller alone.
void dpool_io_watch_dealer(dpool_io_state_t *self, bool watch);

// Sends POOL_OPEN with the pool's settings: the first open, and each resync's.
// Returns what dpool_proto_send returns.
int dpool_io_send_open(dpool_io_state_t *self);

// Counts the broker lost from now, unless it already is.
void dpool_io_mark_lost(dpool_io_state_t *self);

// Handles what in msg concerns the connection rather than a task (the broker's epoch,
// a lost broker speaking again, an answer that it forgot us), resyncing once if one of
// them calls for it. Returns true when msg has been dealt with; false for an outcome
// that the pending table takes.
bool dpool_io_on_state(dpool_io_state_t *self, const dpool_msg_t *msg);

// While the broker is lost: sends what was taken from the outbox but its SUBMITs,
// which the resync re-sends from the pending table.
void dpool_io_send_without_submits(dpool_io_state_t *self);

// Fails every pending task as unreachable once the broker has been lost past the
// reconnect timeout (never when that is -1).
void dpool_io_check_lost(dpool_io_state_t *self);

#endif
