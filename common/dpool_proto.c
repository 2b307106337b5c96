/*  Frames of the wire protocol: the 4-byte header, the msgpack body built by
    dpool_codec, and the optional payload frame that is carried opaque. Everything
    that arrives here comes from the network, so every check ends in DPOOL_ERR_PROTO
    with a reason, never in an assert. */
#include "dpool_proto.h"
#include "dpool_codec.h"

#include <dpool/errors.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define S_BODY_START_SIZE 256

void
dpool_msg_reset(dpool_msg_t *msg)
{
    if (!msg)
        return;
    free(msg->name);
    free(msg->text);
    for (size_t i = 0; i < msg->function_count; i++)
        free(msg->functions[i]);
    free(msg->functions);
    zframe_destroy(&msg->payload);
    memset(msg, 0, sizeof *msg);
}

const char *
dpool_proto_command_name(int command)
{
    switch (command) {
    case DPOOL_CMD_POOL_OPEN:
        return "POOL_OPEN";
    case DPOOL_CMD_POOL_OPENED:
        return "POOL_OPENED";
    case DPOOL_CMD_SUBMIT:
        return "SUBMIT";
    case DPOOL_CMD_RESULT:
        return "RESULT";
    case DPOOL_CMD_OUTPUT:
        return "OUTPUT";
    case DPOOL_CMD_TERMINATE:
        return "TERMINATE";
    case DPOOL_CMD_POOL_RELEASE:
        return "POOL_RELEASE";
    case DPOOL_CMD_STATUS:
        return "STATUS";
    case DPOOL_CMD_STATUS_REPLY:
        return "STATUS_REPLY";
    case DPOOL_CMD_ERROR:
        return "ERROR";
    case DPOOL_CMD_WORKER_HELLO:
        return "WORKER_HELLO";
    case DPOOL_CMD_CREDIT:
        return "CREDIT";
    case DPOOL_CMD_TASK:
        return "TASK";
    case DPOOL_CMD_WORKER_RESULT:
        return "WORKER_RESULT";
    case DPOOL_CMD_WORKER_OUTPUT:
        return "WORKER_OUTPUT";
    case DPOOL_CMD_KILL:
        return "KILL";
    case DPOOL_CMD_HEARTBEAT:
        return "HEARTBEAT";
    case DPOOL_CMD_BYE:
        return "BYE";
    default:
        return NULL;
    }
}

bool
dpool_proto_buildable_as(dpool_cmd_t command, bool has_payload)
{
    dpool_payload_rule_t rule;
    if (!dpool_codec_known(command, &rule))
        return false;
    return !((rule == DPOOL_PAYLOAD_REQUIRED && !has_payload) ||
             (rule == DPOOL_PAYLOAD_NONE && has_payload));
}

bool
dpool_proto_buildable(const dpool_msg_t *msg)
{
    return dpool_proto_buildable_as(msg->command, msg->payload != NULL);
}

// Encodes msg's body into body (which the caller destroys). msgpack's buffer starts at
// 8 KiB; a body is rarely over a few dozen bytes, and a small block comes from malloc's
// per-thread cache, an 8 KiB one does not.
static int
s_encode_body(const dpool_msg_t *msg, msgpack_sbuffer *body)
{
    msgpack_sbuffer_init(body);
    body->data = malloc(S_BODY_START_SIZE);
    body->alloc = body->data ? S_BODY_START_SIZE : 0;
    return dpool_codec_encode(msg, body);
}

zmsg_t *
dpool_proto_build(const dpool_msg_t *msg, zframe_t *routing_id)
{
    if (!dpool_proto_buildable(msg))
        return NULL;
    msgpack_sbuffer body;
    zmsg_t *zmsg = NULL;
    if (s_encode_body(msg, &body) != DPOOL_OK)
        goto fail;
    zmsg = zmsg_new();
    if (!zmsg)
        goto fail;
    const uint8_t header[DPOOL_PROTO_HEADER_SIZE] = {'D', 'P', DPOOL_PROTO_VERSION,
                                                     (uint8_t)msg->command};
    if ((routing_id && zmsg_addmem(zmsg, zframe_data(routing_id), zframe_size(routing_id))) ||
        zmsg_addmem(zmsg, header, sizeof header) || zmsg_addmem(zmsg, body.data, body.size))
        goto fail;
    msgpack_sbuffer_destroy(&body);
    if (msg->payload) {
        // The payload frame moves as it is: no copy of task arguments or results.
        dpool_msg_t *owner = (dpool_msg_t *)msg;
        zmsg_append(zmsg, &owner->payload);
    }
    return zmsg;
fail:
    msgpack_sbuffer_destroy(&body);
    zmsg_destroy(&zmsg);
    return NULL;
}

int
dpool_proto_send(zsock_t *sock, dpool_msg_t *msg, zframe_t *routing_id)
{
    // Frame by frame, without building a zmsg_t: on a message alone that is most of the
    // sender's cost (a list and a frame object allocated and freed per frame). ZeroMQ
    // copies the routing id, header and body, a few dozen bytes each.
    if (!dpool_proto_buildable(msg))
        return DPOOL_ERR_INVALID;
    msgpack_sbuffer body;
    if (s_encode_body(msg, &body) != DPOOL_OK) {
        msgpack_sbuffer_destroy(&body);
        return DPOOL_ERR_INVALID;
    }
    void *handle = zsock_resolve(sock);
    const uint8_t header[DPOOL_PROTO_HEADER_SIZE] = {'D', 'P', DPOOL_PROTO_VERSION,
                                                     (uint8_t)msg->command};
    int last_flags = msg->payload ? ZMQ_SNDMORE : 0;
    // A message is accepted or refused whole at its first frame: ZeroMQ counts its
    // high-water mark in messages, so once one frame is queued the others follow.
    bool sent = (!routing_id || zmq_send(handle, zframe_data(routing_id), zframe_size(routing_id),
                                         ZMQ_SNDMORE) >= 0) &&
                zmq_send(handle, header, sizeof header, ZMQ_SNDMORE) >= 0 &&
                zmq_send(handle, body.data, body.size, last_flags) >= 0 &&
                (!msg->payload || zframe_send(&msg->payload, sock, 0) == 0);
    msgpack_sbuffer_destroy(&body);
    zframe_destroy(&msg->payload); // moved, or left by a failed send: gone all the same
    return sent ? DPOOL_OK : DPOOL_ERR_IO;
}

// Drops what is left of a message whose first frames were read.
static void
s_discard_rest(void *handle, bool more)
{
    while (more) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        more = zmq_msg_recv(&part, handle, 0) >= 0 && zmq_msg_more(&part);
        zmq_msg_close(&part);
    }
}

zmsg_t *
dpool_proto_recv(zsock_t *sock)
{
    // The first frame is read into a message on the stack, so that finding none waiting
    // (how every loop that reads a socket empty ends) allocates nothing, as zmsg_recv
    // would; it is short (a routing id or a header) and copied, without its metadata
    // (CURVE's User-Id is read from the frame after a routing id). The frames after it
    // move into frames of their own: a payload is not copied.
    void *handle = zsock_resolve(sock);
    zmq_msg_t first;
    zmq_msg_init(&first);
    if (zmq_msg_recv(&first, handle, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&first);
        return NULL;
    }
    bool more = zmq_msg_more(&first);
    zmsg_t *zmsg = zmsg_new();
    zframe_t *frame = zmsg ? zframe_new(zmq_msg_data(&first), zmq_msg_size(&first)) : NULL;
    zmq_msg_close(&first);
    if (!frame || zmsg_append(zmsg, &frame) != 0)
        goto fail;
    int error = ENOMEM;
    while (more) {
        // The rest of a message arrives with its first frame: this never waits.
        frame = zframe_recv(handle);
        if (!frame && zmq_errno() == EINTR)
            continue;
        if (!frame) {
            error = zmq_errno(); // the context ends: what was read is dropped
            goto fail;
        }
        more = zframe_more(frame);
        if (zmsg_append(zmsg, &frame) != 0)
            goto fail;
    }
    return zmsg;
fail:
    zframe_destroy(&frame);
    zmsg_destroy(&zmsg);
    s_discard_rest(handle, more);
    errno = error;
    return NULL;
}

int
dpool_proto_decode_parts(const uint8_t *header, size_t header_size, const uint8_t *body,
                         size_t body_size, bool has_payload, dpool_msg_t *msg, const char **why)
{
    if (header_size != DPOOL_PROTO_HEADER_SIZE) {
        *why = "header frame is not 4 bytes";
        return DPOOL_ERR_PROTO;
    }
    if (header[0] != 'D' || header[1] != 'P') {
        *why = "header does not start with DP";
        return DPOOL_ERR_PROTO;
    }
    if (header[2] != DPOOL_PROTO_VERSION) {
        *why = "unsupported protocol version";
        return DPOOL_ERR_PROTO;
    }
    dpool_payload_rule_t rule;
    if (!dpool_codec_known(header[3], &rule)) {
        *why = "unknown command";
        return DPOOL_ERR_PROTO;
    }
    msg->command = (dpool_cmd_t)header[3];
    if (has_payload && rule == DPOOL_PAYLOAD_NONE) {
        *why = "payload frame on a command that takes none";
        return DPOOL_ERR_PROTO;
    }
    if (!has_payload && rule == DPOOL_PAYLOAD_REQUIRED) {
        *why = "payload frame missing";
        return DPOOL_ERR_PROTO;
    }
    return dpool_codec_decode(body, body_size, msg, why);
}

int
dpool_proto_decode(zmsg_t **zmsg_p, bool with_routing_id, zframe_t **routing_id_p, dpool_msg_t *msg,
                   const char **why)
{
    zmsg_t *zmsg = *zmsg_p;
    *zmsg_p = NULL;
    int rc = DPOOL_ERR_PROTO;
    if (with_routing_id && routing_id_p)
        *routing_id_p = zmsg_pop(zmsg);
    else if (with_routing_id) {
        zframe_t *discarded = zmsg_pop(zmsg);
        zframe_destroy(&discarded);
    }
    size_t frames = zmsg_size(zmsg);
    if (frames < 2 || frames > 3) {
        *why = "message does not have 2 or 3 frames after the routing id";
        goto done;
    }
    zframe_t *header = zmsg_first(zmsg);
    zframe_t *body = zmsg_next(zmsg);
    zframe_t *payload = zmsg_next(zmsg);
    if (payload && zframe_size(payload) == 0) {
        // One msgpack value is never empty; and a BATCH marks "no payload" that way.
        *why = "payload frame is empty";
        goto done;
    }
    rc = dpool_proto_decode_parts(zframe_data(header), zframe_size(header), zframe_data(body),
                                  zframe_size(body), payload != NULL, msg, why);
    if (rc == DPOOL_OK && payload) {
        zmsg_remove(zmsg, payload); // moved as it came: no copy of arguments or results
        msg->payload = payload;
    }
done:
    zmsg_destroy(&zmsg);
    return rc;
}
