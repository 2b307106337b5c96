/*  dpool_outbox: what user threads send to the broker, waiting for the pool's I/O
    thread. A submitter writes its message into the outbox's batch under the outbox's
    own lock and wakes the I/O thread only when the batch was empty since the thread
    last took it; the thread takes the whole batch at once and sends it. So a stream
    of submissions costs a copy each and one wake-up per turn of the I/O thread, not a
    ZeroMQ message through the actor pipe each. The socket stays the I/O thread's
    alone (STYLE: a socket belongs to one thread).

    The outbox keeps the order in which messages were posted, SUBMITs and pool
    commands alike. While the I/O thread counts the broker lost it says so here, and
    SUBMITs are not posted: the pending table keeps each one before it is posted and
    the resync re-sends it to the broker that answers again (SUBMITs posted before the
    loss and taken after it are dropped by the I/O thread for the same reason). */
#ifndef DPOOL_OUTBOX_H
#define DPOOL_OUTBOX_H

#include <dpool_batch.h>
#include <stdbool.h>

typedef struct dpool_outbox dpool_outbox_t;

// An empty outbox, or NULL when memory runs out.
dpool_outbox_t *dpool_outbox_new(void);

// Frees the outbox and what waits in it. NULL-safe; sets *self_p to NULL.
void dpool_outbox_destroy(dpool_outbox_t **self_p);

// Posts a message that dpool_batch_encode wrote (size bytes, borrowed: copied); a
// SUBMIT is dropped while the broker is lost. *wake_p says whether the I/O thread must
// be woken (the first message since it last took the outbox). Returns DPOOL_OK or
// DPOOL_ERR_NOMEM.
int dpool_outbox_post_encoded(dpool_outbox_t *self, const uint8_t *message, size_t size,
                              bool *wake_p);

// Posts a plain message that goes alone (dpool_batch_plain; *zmsg_p moves, always); as
// dpool_outbox_post_encoded.
int dpool_outbox_post_alone(dpool_outbox_t *self, zmsg_t **zmsg_p, bool *wake_p);

// Posts msg (msg->payload moves in, always), encoded here; as
// dpool_outbox_post_encoded. Returns what dpool_batch_encode or dpool_outbox_post_encoded
// returns.
int dpool_outbox_post(dpool_outbox_t *self, dpool_msg_t *msg, bool *wake_p);

// After a wake-up said by a post could not be delivered: the next post wakes again.
void dpool_outbox_unwake(dpool_outbox_t *self);

// For the I/O thread: swaps what was posted with *batch_p, which must be empty, and
// sets *released_p when a POOL_RELEASE was among it.
void dpool_outbox_take(dpool_outbox_t *self, dpool_batch_t **batch_p, bool *released_p);

// Whether nothing posted waits to be taken.
bool dpool_outbox_empty(dpool_outbox_t *self);

// For the I/O thread: whether the broker is lost (SUBMITs wait for the resync).
void dpool_outbox_set_lost(dpool_outbox_t *self, bool lost);

#endif
