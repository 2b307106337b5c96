/*  The DEALER to the broker. Everything it receives comes from the network, so a
    message that does not decode is dropped with a WARN and never reaches the
    daemon's handlers. Sends use a zero send timeout: with the broker away for long
    enough to fill the queue, a heartbeat is better lost than the loop that
    supervises the worker processes stalled. What one loop turn sends leaves as one
    BATCH at the end of the turn (dpool_uplink_flush), and a BATCH from the broker is
    taken apart here. */
#define _GNU_SOURCE // getrandom with C11 on
#include "dpool_uplink.h"

#include "dpool_batch.h"

#include "dpool_log.h"

#include <dpool/errors.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

struct dpool_uplink_t {
    zsock_t *sock;
    dpool_batch_t *outgoing;
    dpool_batch_inbox_t inbox; // the rest of a BATCH from the broker
    char id[18];
    char *refusal; // owned: the broker's ERROR -17 text, or NULL
    // No message waits and the socket's descriptor holds every signal: nothing was sent
    // since a look at the socket found it empty (a send may take the descriptor's signal).
    bool quiet;
};

dpool_uplink_t *
dpool_uplink_new(const char *endpoint, zcert_t *cert, const char *broker_key)
{
    dpool_uplink_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    uint8_t random[8] = {0};
    if (getrandom(random, sizeof random, 0) != (ssize_t)sizeof random)
        DPOOL_LOG_WARN("getrandom failed; the routing id is less random");
    snprintf(self->id, sizeof self->id, "W%02x%02x%02x%02x%02x%02x%02x%02x", random[0], random[1],
             random[2], random[3], random[4], random[5], random[6], random[7]);
    self->sock = zsock_new(ZMQ_DEALER);
    self->outgoing = dpool_batch_new();
    if (!self->sock || !self->outgoing) {
        DPOOL_LOG_ERROR("cannot create the broker socket");
        goto fail;
    }
    zsock_set_identity(self->sock, self->id); // ZMQ_IDENTITY is ZMQ_ROUTING_ID's old name
    zsock_set_sndtimeo(self->sock, 0);
    zsock_set_linger(self->sock, 1000); // time for the BYE to leave
    // ZMTP heartbeats drop a connection that has been silent for 3 s, so after a cut
    // link ZeroMQ reconnects at once (with its own backoff) instead of waiting on TCP
    // retransmissions whose interval doubles while the link is down.
    zsock_set_heartbeat_ivl(self->sock, 1000);
    zsock_set_heartbeat_timeout(self->sock, 3000);
    zsock_set_reconnect_ivl(self->sock, 100);
    zsock_set_reconnect_ivl_max(self->sock, 2000);
    if (cert) {
        zcert_apply(cert, self->sock);
        zsock_set_curve_serverkey(self->sock, broker_key);
    }
    if (zsock_connect(self->sock, "%s", endpoint) != 0) {
        DPOOL_LOG_ERROR("cannot connect to %s: %s", endpoint, zmq_strerror(zmq_errno()));
        goto fail;
    }
    return self;
fail:
    dpool_uplink_destroy(&self);
    return NULL;
}

void
dpool_uplink_destroy(dpool_uplink_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dpool_uplink_flush(*self_p);
    zsock_destroy(&(*self_p)->sock);
    dpool_batch_destroy(&(*self_p)->outgoing);
    dpool_batch_inbox_clear(&(*self_p)->inbox);
    free((*self_p)->refusal);
    free(*self_p);
    *self_p = NULL;
}

const char *
dpool_uplink_id(const dpool_uplink_t *self)
{
    return self->id;
}

void *
dpool_uplink_handle(dpool_uplink_t *self)
{
    return zsock_resolve(self->sock);
}

int
dpool_uplink_send(dpool_uplink_t *self, dpool_msg_t *msg)
{
    int rc = dpool_batch_add(self->outgoing, msg);
    zframe_destroy(&msg->payload); // left with us when the message broke its schema
    if (rc != DPOOL_OK)
        DPOOL_LOG_WARN("cannot send %s to the broker: %s", dpool_proto_command_name(msg->command),
                       dpool_strerror(rc));
    else if (dpool_batch_full(self->outgoing))
        rc = dpool_uplink_flush(self);
    return rc;
}

bool
dpool_uplink_waiting(dpool_uplink_t *self)
{
    if (dpool_batch_inbox_waiting(&self->inbox))
        return true;
    if (!self->quiet)
        self->quiet = !(zsock_events(self->sock) & ZMQ_POLLIN);
    return !self->quiet;
}

int
dpool_uplink_flush(dpool_uplink_t *self)
{
    size_t count = dpool_batch_count(self->outgoing);
    if (count > 0)
        self->quiet = false;
    int rc = dpool_batch_send(self->outgoing, self->sock, NULL);
    if (rc != DPOOL_OK)
        DPOOL_LOG_WARN("cannot send %zu messages to the broker: %s", count,
                       rc == DPOOL_ERR_IO ? zmq_strerror(zmq_errno()) : dpool_strerror(rc));
    return rc;
}

bool
dpool_uplink_recv(dpool_uplink_t *self, dpool_msg_t *msg)
{
    const char *why = "";
    int rc;
    // The rest of a BATCH first, then what the socket holds.
    while ((rc = dpool_batch_inbox_recv(&self->inbox, self->sock, msg, &why)) != 1) {
        if (rc != DPOOL_OK) {
            DPOOL_LOG_WARN("dropped a malformed message from the broker: %s", why);
            continue;
        }
        self->quiet = false;
        if (msg->command != DPOOL_CMD_ERROR || msg->code != DPOOL_ERR_NOT_AUTHORISED)
            return true;
        // Every message of a refused daemon is refused; one line says it.
        if (!self->refusal) {
            self->refusal = strdup(msg->text ? msg->text : "not authorised");
            DPOOL_LOG_ERROR("the broker refused this worker: %s",
                            self->refusal ? self->refusal : "not authorised");
        }
        dpool_msg_reset(msg);
    }
    self->quiet = true; // the last look found nothing
    return false;
}

const char *
dpool_uplink_refusal(const dpool_uplink_t *self)
{
    return self->refusal;
}
