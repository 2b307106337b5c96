/*  dpool_uplink: the worker daemon's one DEALER connection to the broker. It picks
    the routing id ("W" + 16 random hex digits), sends dpool_msg_t messages without
    ever blocking the daemon's loop, and receives decoded ones, dropping (with a
    WARN) whatever is malformed. With a CURVE key pair it encrypts the connection and
    keeps a broker's ERROR -17 (not authorised) as the uplink's refusal. */
#ifndef DPOOL_UPLINK_H
#define DPOOL_UPLINK_H

#include "dpool_proto.h"

typedef struct dpool_uplink_t dpool_uplink_t;

// Creates the DEALER and connects it to endpoint (borrowed). With cert (borrowed; its
// keys are copied into the socket) the connection is a CURVE client of the broker whose
// public key is broker_key (Z85, borrowed); both NULL: no encryption. Returns an owned
// object, or NULL (logged) when the socket cannot be made or the endpoint is bad.
dpool_uplink_t *dpool_uplink_new(const char *endpoint, zcert_t *cert, const char *broker_key);

// Closes the connection, giving queued messages (a BYE) up to a second to leave.
// NULL-safe; sets *self_p to NULL.
void dpool_uplink_destroy(dpool_uplink_t **self_p);

// The routing id (borrowed from self).
const char *dpool_uplink_id(const dpool_uplink_t *self);

// The socket handle for zmq_poll (borrowed from self).
void *dpool_uplink_handle(dpool_uplink_t *self);

// Whether messages from the broker wait, unread. Looks at the socket (two system calls)
// only when something was sent or read since a look found it empty: libzmq takes
// messages in on its own thread, and the socket's descriptor signals only a change.
bool dpool_uplink_waiting(dpool_uplink_t *self);

// Sends msg; its payload, if any, is consumed whatever happens; the rest stays the
// caller's. A send that would block (broker away, queue full) fails at once.
// Returns DPOOL_OK or a negative code (logged at WARN).
int dpool_uplink_send(dpool_uplink_t *self, dpool_msg_t *msg);

// Sends what dpool_uplink_send gathered (one message, or a BATCH of them). The
// daemon's loop calls it before it waits. Returns DPOOL_OK or a negative code.
int dpool_uplink_flush(dpool_uplink_t *self);

// Takes the next well-formed message, without blocking, into msg (which the
// caller has zeroed or reset, and resets after use). Malformed messages are logged
// and skipped, and so is an ERROR -17 (not authorised), which is logged at ERROR once
// and kept as the refusal. Returns true with a message, false when none is waiting.
bool dpool_uplink_recv(dpool_uplink_t *self, dpool_msg_t *msg);

// The broker's text when it refused this daemon's key or role (ERROR -17), or NULL.
// Borrowed from self. A refused daemon cannot work: its loop stops.
const char *dpool_uplink_refusal(const dpool_uplink_t *self);

#endif
