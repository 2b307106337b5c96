/*  dpool_peer: a test playing a client or a worker on a raw DEALER socket, speaking
    docs/PROTOCOL.md through dpool_proto. Nothing here asserts: every function returns
    what happened, and the test decides (criterion asserts belong in the test's process
    and file, not in this static library). */
#ifndef DPOOL_PEER_H
#define DPOOL_PEER_H

#include "dpool_proto.h"

#include <czmq.h>
#include <stdbool.h>

// A DEALER with linger 0 connected to endpoint, with routing_id as its identity (NULL:
// ZeroMQ picks one). Returns NULL on failure.
zsock_t *dpool_peer_connect(const char *endpoint, const char *routing_id);

// The same as a CURVE client: cert's key pair (NULL: a plain peer) and the broker's
// public key in Z85 text (server_key, used only with a cert).
zsock_t *dpool_peer_connect_curve(const char *endpoint, const char *routing_id, zcert_t *cert,
                                  const char *server_key);

// Sends msg without a routing id (its payload moves into the message). Returns DPOOL_OK
// or dpool_proto_send's error.
int dpool_peer_send(zsock_t *sock, dpool_msg_t *msg);

// Waits at most timeout_ms for one message and decodes it into *msg (zeroed first; the
// caller resets it). Returns DPOOL_OK, DPOOL_ERR_TIMEOUT when nothing arrived, or
// DPOOL_ERR_PROTO when the message was malformed, with the reason in *why (may be NULL).
int dpool_peer_recv(zsock_t *sock, dpool_msg_t *msg, int timeout_ms, const char **why);

// The next message that is not a HEARTBEAT, each wait at most timeout_ms: as
// dpool_peer_recv, which it calls until something else arrives.
int dpool_peer_next(zsock_t *sock, dpool_msg_t *msg, int timeout_ms, const char **why);

// The protocol messages in one received ZeroMQ message (*zmsg_p, consumed): the
// messages of a BATCH, or the message itself, each as dpool_proto_decode takes it.
// Returns an owned zlist of owned zmsg_t * (pop and destroy them), or NULL when it
// was a malformed BATCH.
zlist_t *dpool_peer_split(zmsg_t **zmsg_p, bool with_routing_id);

// Receives one ZeroMQ message on router (a test playing the broker) and hands each
// protocol message in it (one, or those of a BATCH) to handle, with the sender's
// routing id; both are borrowed for the call. Returns DPOOL_OK, or DPOOL_ERR_PROTO
// at the first malformed one (*why says why; the rest are dropped), DPOOL_ERR_IO.
typedef void(dpool_peer_handle_fn)(void *ctx, zframe_t *peer, dpool_msg_t *msg);
int dpool_peer_route_one(zsock_t *router, dpool_peer_handle_fn *handle, void *ctx,
                         const char **why);

// A payload frame holding the msgpack array [text]. Returns NULL on failure.
zframe_t *dpool_peer_payload_str(const char *text);

#endif
