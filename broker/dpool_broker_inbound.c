/*  What arrives on the broker's socket: each ZeroMQ message's sender is admitted by
    its key (with CURVE), a BATCH is taken apart, each message is decoded (a BATCH's
    where it lies), checked against --max-message and the sender's role, and handed to
    the client or host module by command. A malformed message is counted, logged at
    WARN and answered with ERROR; nothing that arrives can stop the loop. */
#include "dpool_broker_internal.h"

#include <dpool/errors.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static bool
s_is_client_command(dpool_cmd_t command)
{
    return command == DPOOL_CMD_POOL_OPEN || command == DPOOL_CMD_SUBMIT ||
           command == DPOOL_CMD_TERMINATE || command == DPOOL_CMD_POOL_RELEASE ||
           command == DPOOL_CMD_STATUS;
}

// Counts a message refused for its key or role, answers ERROR -17 and logs it, at most
// once a second: a stranger must not be able to flood the log.
static void
s_refuse(dpool_broker_t *self, zframe_t *routing_id, const char *key, const char *why)
{
    self->unauthorised++;
    if (self->now_ms - self->unauthorised_logged_ms >= 1000) {
        DPOOL_LOG_WARN("refused a message from key %s: %s (%" PRIu64 " refused so far)",
                       *key ? key : "?", why, self->unauthorised);
        self->unauthorised_logged_ms = self->now_ms;
    }
    dpool_broker_send_error(self, routing_id, DPOOL_ERR_NOT_AUTHORISED, why);
}

// With CURVE: the roles of the key that sent *zmsg_p, copied to key (for the log). A
// message from a key that is not authorised goes no further (it is not even decoded):
// it is answered ERROR -17 and consumed, and 0 is returned.
static unsigned
s_admit(dpool_broker_t *self, zmsg_t **zmsg_p, char key[DPOOL_AUTH_KEY_TEXT + 1])
{
    zframe_t *routing_id = zmsg_first(*zmsg_p);
    // The routing id frame is made by the ROUTER; the peer's first frame has the key.
    zframe_t *first = routing_id ? zmsg_next(*zmsg_p) : NULL;
    const char *peer_key = first ? dpool_auth_peer_key(first) : NULL;
    if (peer_key)
        memcpy(key, peer_key, DPOOL_AUTH_KEY_TEXT + 1);
    unsigned roles = dpool_auth_roles(self->auth, peer_key);
    if (!roles) {
        if (routing_id)
            s_refuse(self, routing_id, key, dpool_auth_refusal(0, 0));
        zmsg_destroy(zmsg_p);
    }
    return roles;
}

// A message over --max-message: a SUBMIT fails as TOO_BIG (so the client fails that
// task instead of sending it again), anything else gets ERROR TOO_BIG.
static void
s_refuse_oversized(dpool_broker_t *self, zframe_t *routing_id, const dpool_msg_t *msg, size_t size)
{
    self->oversized++;
    char text[160];
    snprintf(text, sizeof text, "message of %zu bytes is over the broker's --max-message of %lld",
             size, (long long)self->config.max_message);
    DPOOL_LOG_WARN("refused a %s: %s", dpool_proto_command_name(msg->command), text);
    if (msg->command == DPOOL_CMD_SUBMIT) {
        dpool_msg_t reply = {.command = DPOOL_CMD_RESULT,
                             .task_id = msg->task_id,
                             .code = DPOOL_ERR_TOO_BIG,
                             .text = text};
        dpool_broker_send(self, routing_id, &reply);
    } else
        dpool_broker_send_error(self, routing_id, DPOOL_ERR_TOO_BIG, text);
}

// One decoded message (rc and why from its decoding) from routing_id (borrowed), of
// size bytes on the wire.
static void
s_handle_decoded(dpool_broker_t *self, zframe_t *routing_id, int rc, dpool_msg_t *msg,
                 const char *why, size_t size, unsigned roles, const char *key)
{
    const char *refusal = NULL;
    if (rc == DPOOL_OK && (int64_t)size > self->config.max_message)
        s_refuse_oversized(self, routing_id, msg, size);
    else if (rc != DPOOL_OK) {
        self->malformed++;
        DPOOL_LOG_WARN("dropped a malformed message: %s", why);
        if (routing_id)
            dpool_broker_send_error(self, routing_id, rc, why);
    } else if (self->auth && (refusal = dpool_auth_refusal(roles, msg->command)))
        s_refuse(self, routing_id, key, refusal);
    else if (s_is_client_command(msg->command) ||
             ((msg->command == DPOOL_CMD_HEARTBEAT || msg->command == DPOOL_CMD_BYE) &&
              zhashx_lookup(self->clients, routing_id)))
        dpool_clients_on_message(self, routing_id, msg);
    else
        dpool_hosts_on_message(self, routing_id, msg);
    dpool_msg_reset(msg);
}

// The messages of a BATCH (count of them, checked whole in run), each as if it had come
// alone. They are decoded in place, payloads too.
static void
s_handle_batch(dpool_broker_t *self, zframe_t *routing_id, zframe_t *run, int count, unsigned roles,
               const char *key)
{
    dpool_broker_batches_to(self, routing_id);
    size_t at = 0;
    for (int i = 0; i < count; i++) {
        dpool_batch_part_t part;
        dpool_batch_part(run, &at, &part);
        dpool_msg_t msg = {0};
        const char *why = "unknown";
        // The payload stays where it lies: a SUBMIT's is copied into its task, a result's
        // into its client's BATCH (or a frame when the client takes messages one by one).
        int rc = dpool_batch_decode_part_lent(&part, &msg, &why);
        size_t size =
            zframe_size(routing_id) + DPOOL_PROTO_HEADER_SIZE + part.body_size + part.payload_size;
        s_handle_decoded(self, routing_id, rc, &msg, why, size, roles, key);
    }
}

void
dpool_broker_handle(dpool_broker_t *self, zmsg_t **zmsg_p)
{
    unsigned roles = 0;
    char key[DPOOL_AUTH_KEY_TEXT + 1] = "";
    if (self->auth && !(roles = s_admit(self, zmsg_p, key)))
        return;
    const char *why = "unknown";
    zframe_t *run = NULL;
    int count = dpool_batch_open(*zmsg_p, true, &run, &why);
    if (count == 0) {
        zframe_t *routing_id = NULL;
        dpool_msg_t msg = {0};
        size_t size = zmsg_content_size(*zmsg_p);
        int rc = dpool_proto_decode(zmsg_p, true, &routing_id, &msg, &why);
        s_handle_decoded(self, routing_id, rc, &msg, why, size, roles, key);
        zframe_destroy(&routing_id);
        return;
    }
    zframe_t *routing_id = zmsg_first(*zmsg_p);
    if (count < 0) {
        self->malformed++;
        DPOOL_LOG_WARN("dropped a malformed message: %s", why);
        dpool_broker_send_error(self, routing_id, DPOOL_ERR_PROTO, why);
    } else
        s_handle_batch(self, routing_id, run, count, roles, key);
    zmsg_destroy(zmsg_p);
}
