/*  Several protocol messages in one ZeroMQ message (docs/PROTOCOL.md, "Batches").
    A busy peer sends what one loop turn produced for a peer as one BATCH, so the
    cost of a ZeroMQ message (a wake-up of the I/O thread, a system call or two) is
    paid once per turn, not once per task. A lone message goes out in its plain form.

    A BATCH is two frames: the header with command DPOOL_CMD_BATCH, then its messages
    one after another, each as its 4-byte header, its body's length (uint32, network
    order), its body, its payload's length (0 when it has none: a payload, one msgpack
    value, is never empty) and its payload. A message whose body and payload are over
    16 KiB is not copied into a batch: it goes alone, in its plain form, in its turn. */
#ifndef DPOOL_BATCH_H
#define DPOOL_BATCH_H

#include "dpool_proto.h"

#include <czmq.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>

// Flush a batch at this many messages or bytes, whichever comes first: the peer's
// decoding stays incremental and no batch grows without bound in a long turn.
#define DPOOL_BATCH_MAX_MESSAGES 512
#define DPOOL_BATCH_MAX_BYTES (256 * 1024)
// A message whose body and payload are over this many bytes goes alone, not copied.
#define DPOOL_BATCH_INLINE_MAX (16 * 1024)
// The largest frame of messages a BATCH holds: a run is closed before a message would
// take it past DPOOL_BATCH_MAX_BYTES, and no message in it is over the inline limit.
#define DPOOL_BATCH_FRAME_MAX (DPOOL_BATCH_MAX_BYTES + DPOOL_BATCH_INLINE_MAX + 64)

typedef struct dpool_batch dpool_batch_t;

// Creates an empty batch. Returns an owned batch or NULL on out-of-memory.
dpool_batch_t *dpool_batch_new(void);

// Destroys the batch and what it holds. NULL-safe; sets *self_p to NULL.
void dpool_batch_destroy(dpool_batch_t **self_p);

// Appends msg, built as dpool_proto_build does (msg->payload moves in). Returns
// DPOOL_OK, or DPOOL_ERR_INVALID for a message that breaks its schema, or
// DPOOL_ERR_NOMEM.
int dpool_batch_add(dpool_batch_t *self, dpool_msg_t *msg);

// As dpool_batch_add, for a msg without a payload frame whose payload is payload_size
// bytes at payload (borrowed; NULL for none): copied into the batch without a frame
// made for it first, as the broker sends a queued task's arguments.
int dpool_batch_add_copy(dpool_batch_t *self, dpool_msg_t *msg, const void *payload,
                         size_t payload_size);

// Writes msg at the end of out as a BATCH holds it (header, body length, body, payload
// length, payload), with payload_size bytes of payload (borrowed; msg->payload must be
// NULL). A message encoded once can then be kept and added to batches by copying.
// Returns DPOOL_OK, DPOOL_ERR_INVALID (msg breaks its schema, or the payload is 4 GiB
// or more) or DPOOL_ERR_NOMEM; out is as it was on failure.
int dpool_batch_encode(const dpool_msg_t *msg, const void *payload, size_t payload_size,
                       msgpack_sbuffer *out);

// Appends a message that dpool_batch_encode wrote (size bytes at message, borrowed:
// copied). Returns DPOOL_OK or DPOOL_ERR_NOMEM.
int dpool_batch_add_encoded(dpool_batch_t *self, const uint8_t *message, size_t size);

// Whether a message that dpool_batch_encode wrote is large enough to go alone.
bool dpool_batch_goes_alone(const uint8_t *message);

// The plain form (header, body and payload frames) of a message that
// dpool_batch_encode wrote (borrowed). Returns an owned zmsg_t, or NULL when memory
// runs out.
zmsg_t *dpool_batch_plain(const uint8_t *message);

// Sends a message that dpool_batch_encode wrote (borrowed) on sock in its plain form,
// as dpool_batch_plain then zmsg_send would, without building the zmsg_t. Returns
// DPOOL_OK or DPOOL_ERR_IO.
int dpool_batch_send_plain(zsock_t *sock, const uint8_t *message);

// The command of a plain message (its header frame first), or 0 when it has no header.
int dpool_batch_plain_command(zmsg_t *zmsg);

// Appends a plain message that goes alone, in its turn (*zmsg_p moves, always).
// Returns DPOOL_OK or DPOOL_ERR_NOMEM.
int dpool_batch_add_alone(dpool_batch_t *self, zmsg_t **zmsg_p);

// Messages and bytes waiting.
size_t dpool_batch_count(const dpool_batch_t *self);
bool dpool_batch_full(const dpool_batch_t *self);

// Takes the next ZeroMQ message of what waits (prefixed by a copy of routing_id when
// not NULL): a message that goes alone, the plain message when one is left, a BATCH
// when more are. Returns an owned zmsg_t, or NULL when the batch is empty or memory
// ran out (the messages are then lost, as a failed send would lose them). Call until
// it returns NULL to empty the batch.
zmsg_t *dpool_batch_take(dpool_batch_t *self, zframe_t *routing_id);

// Sends what waits (dpool_batch_take) on sock. Returns DPOOL_OK (also when nothing
// waited), DPOOL_ERR_NOMEM, or DPOOL_ERR_IO when ZeroMQ refused it (the messages are
// lost, as a failed send loses them; zmq_errno says why).
int dpool_batch_send(dpool_batch_t *self, zsock_t *sock, zframe_t *routing_id);

// One message of a BATCH, in place (borrowed from its frame).
typedef struct {
    const uint8_t *header; // DPOOL_PROTO_HEADER_SIZE bytes
    const uint8_t *body;
    size_t body_size;
    const uint8_t *payload; // NULL when the message has none
    size_t payload_size;
} dpool_batch_part_t;

// When zmsg (the routing id frame first when with_routing_id) is a BATCH, checks it
// whole and returns how many messages it holds, with *run_p set to its frame of
// messages (borrowed from zmsg); 0 when it is no BATCH; -1 when it is a malformed
// one, with *why naming the fault. zmsg stays the caller's.
int dpool_batch_open(zmsg_t *zmsg, bool with_routing_id, zframe_t **run_p, const char **why);

// Reads the message at *at (0 for the first) of a run dpool_batch_open checked, and
// moves *at to the next.
void dpool_batch_part(zframe_t *run, size_t *at, dpool_batch_part_t *part);

// The bytes part takes in its run: what dpool_batch_add_encoded takes to copy it on.
size_t dpool_batch_part_size(const dpool_batch_part_t *part);

// Decodes part into msg (its payload copied into a frame of its own). Returns what
// dpool_proto_decode_parts returns, or DPOOL_ERR_NOMEM; msg then needs no freeing.
int dpool_batch_decode_part(const dpool_batch_part_t *part, dpool_msg_t *msg, const char **why);

// As dpool_batch_decode_part, its payload lent instead (msg->payload_lent points into
// the run, valid while the run is): no frame made, nothing copied.
int dpool_batch_decode_part_lent(const dpool_batch_part_t *part, dpool_msg_t *msg,
                                 const char **why);

// What a peer receives, read one message at a time: the messages of a BATCH are
// decoded in place, without a message object each. Zero it to start.
typedef struct {
    zmsg_t *batch; // the BATCH being read, or NULL
    zframe_t *run; // its frame of messages
    size_t at;     // where its next message starts
    int left;      // messages not read yet
    // Set by the owner: payloads of a BATCH's messages are lent (msg->payload_lent)
    // instead of copied into frames of their own, and the BATCH is kept until the next
    // read. A plain message's payload still comes as its frame (msg->payload).
    bool lend;
} dpool_batch_inbox_t;

// Whether messages of a BATCH wait in inbox.
bool dpool_batch_inbox_waiting(const dpool_batch_inbox_t *inbox);

// Takes *zmsg_p (consumed, always), a ZeroMQ message just received (no routing id): a
// plain message is decoded into msg; of a BATCH the first message is, and the rest wait
// in inbox. Returns the decoding's code (DPOOL_ERR_PROTO with *why for a malformed
// message or BATCH, which is dropped whole); msg needs freeing only after DPOOL_OK.
int dpool_batch_inbox_put(dpool_batch_inbox_t *inbox, zmsg_t **zmsg_p, dpool_msg_t *msg,
                          const char **why);

// Decodes the next waiting message of the BATCH in inbox into msg; as
// dpool_batch_inbox_put.
int dpool_batch_inbox_next(dpool_batch_inbox_t *inbox, dpool_msg_t *msg, const char **why);

// The next message for inbox's owner, decoded into msg: the next waiting one of a
// BATCH, else what sock has received (without waiting). Returns as
// dpool_batch_inbox_put, DPOOL_ERR_NOMEM when a message was dropped for want of
// memory (more may wait), or 1 when nothing waits anywhere.
int dpool_batch_inbox_recv(dpool_batch_inbox_t *inbox, zsock_t *sock, dpool_msg_t *msg,
                           const char **why);

// Drops what waits in inbox.
void dpool_batch_inbox_clear(dpool_batch_inbox_t *inbox);

// Splits a received BATCH. Returns 0 when *zmsg_p is no BATCH (left untouched); 1
// when it was one: *zmsg_p is consumed and each of its messages, as
// dpool_proto_decode takes it (the routing id frame first, copied, when
// with_routing_id), is appended to out (a zlist of owned zmsg_t *); -1 when it was a
// malformed BATCH: consumed, nothing appended, *why names the fault.
int dpool_batch_split(zmsg_t **zmsg_p, bool with_routing_id, zlist_t *out, const char **why);

#endif
