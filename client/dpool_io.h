/*  dpool_io: a pool's background I/O thread (a zactor). It owns the pool's only
    ZeroMQ socket, a DEALER to the broker (a user thread borrows it, under a lock,
    only to send a lone task while the thread sleeps): it opens the pool, forwards
    what user threads post to it, hands OUTPUT to the output handler and RESULT
    to the pending table, keeps the broker's liveness with HEARTBEATs, re-opens the pool
    and re-sends every unanswered SUBMIT when the broker restarted or came back, and
    fails pending tasks when the broker stays lost past the reconnect timeout. */
#ifndef DPOOL_IO_H
#define DPOOL_IO_H

#include "dpool_pending.h"

#include <dpool_proto.h>

// The one pool_ref a pool uses: each pool has its own connection (and routing id).
#define DPOOL_IO_POOL_REF 1

typedef struct {
    const char *endpoint;     // broker endpoint
    const char *pool_name;    // NULL = private pool
    uint32_t cap;             // 0 = the cluster's process count
    uint32_t retries;         // re-runs of a task after a lost worker
    uint32_t time_limit_ms;   // per task; 0 = none
    double connect_timeout;   // seconds, > 0: the first POOL_OPENED must come within it
    double reconnect_timeout; // seconds a lost broker may stay lost before the pending
                              // tasks fail as unreachable; < 0 = for ever
    dpool_output_fn *output;  // NULL = the default writer (dpool_output)
    void *output_arg;
    bool output_prefix_host;  // the default writer prefixes lines with "[host] "
    dpool_pending_t *pending; // borrowed: must outlive the dpool_io_t
    const char *curve_secret; // CURVE certificate files, or NULL (see dpool_curve.h)
    const char *broker_key;
} dpool_io_config_t;

typedef struct _dpool_io_t dpool_io_t;

// Starts the thread, connects and opens the pool (config is copied). Returns an owned
// dpool_io_t once the broker answered POOL_OPENED with success, *cap_p set to the cap
// in force; else NULL with *err filled (DPOOL_ERR_UNREACHABLE when no answer came
// within the connect timeout, the broker's code and message when it refused,
// DPOOL_ERR_INVALID for a bad endpoint, DPOOL_ERR_NOMEM).
dpool_io_t *dpool_io_new(const dpool_io_config_t *config, uint32_t *cap_p, dpool_error_t *err);

// Hands msg to the I/O thread, which sends it to the broker unchanged, after what was
// handed before (msg->payload moves; the rest stays the caller's). Not thread-safe:
// callers serialise. Returns DPOOL_OK, DPOOL_ERR_INVALID (msg breaks its schema),
// DPOOL_ERR_NOMEM or DPOOL_ERR_IO.
int dpool_io_send(dpool_io_t *self, dpool_msg_t *msg);

// As dpool_io_send, for a message that dpool_batch_encode wrote (size bytes, borrowed).
// A SUBMIT is not sent while the broker is lost: the resync sends the pending table's
// copy. Not thread-safe: callers serialise. Returns DPOOL_OK, DPOOL_ERR_NOMEM or
// DPOOL_ERR_IO.
int dpool_io_send_encoded(dpool_io_t *self, const uint8_t *message, size_t size);

// As dpool_io_send_encoded, but when the I/O thread is idle (waiting for the broker)
// and nothing posted before waits, message is sent on the DEALER by the calling
// thread itself: a lone task does not wait for the I/O thread to wake up. Meant for
// messages that have the connection to themselves: a stream of them would leave one
// by one instead of in BATCHes.
int dpool_io_send_direct(dpool_io_t *self, const uint8_t *message, size_t size);
// Waits for a lone task's result on the calling thread while the I/O thread sleeps:
// the caller reads the broker's messages itself (and hands them on as the thread
// would, output handler included), so the result does not wait for the thread to wake
// up and then wake the caller. Returns when result is ready, at once when the thread
// is at work, or when something else needs the thread; the caller then waits on
// result as usual.
void dpool_io_await(dpool_io_t *self, dpool_result_t *result);
// As dpool_io_send_encoded, for a large message in its plain form (dpool_batch_plain):
// its frames go on as they are (*zmsg_p moves, always).
int dpool_io_send_alone(dpool_io_t *self, zmsg_t **zmsg_p);

// Stops the thread after it has forwarded everything sent before, closes the socket
// and frees self. NULL-safe; sets *self_p to NULL.
void dpool_io_destroy(dpool_io_t **self_p);

#endif
