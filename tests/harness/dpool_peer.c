/*  dpool_peer: raw protocol peers for tests (see dpool_peer.h). */
#include "dpool_peer.h"

#include <dpool/errors.h>
#include <msgpack.h>
#include <string.h>

zsock_t *
dpool_peer_connect_curve(const char *endpoint, const char *routing_id, zcert_t *cert,
                         const char *server_key)
{
    zsock_t *sock = zsock_new(ZMQ_DEALER);
    if (!sock)
        return NULL;
    zsock_set_linger(sock, 0);
    if (routing_id)
        zsock_set_identity(sock, routing_id);
    if (cert) {
        zcert_apply(cert, sock);
        zsock_set_curve_serverkey(sock, server_key);
    }
    if (zsock_connect(sock, "%s", endpoint) != 0)
        zsock_destroy(&sock);
    return sock;
}

zsock_t *
dpool_peer_connect(const char *endpoint, const char *routing_id)
{
    return dpool_peer_connect_curve(endpoint, routing_id, NULL, NULL);
}

int
dpool_peer_send(zsock_t *sock, dpool_msg_t *msg)
{
    return dpool_proto_send(sock, msg, NULL);
}

int
dpool_peer_recv(zsock_t *sock, dpool_msg_t *msg, int timeout_ms, const char **why)
{
    memset(msg, 0, sizeof *msg);
    zpoller_t *poller = zpoller_new(sock, NULL);
    bool got = zpoller_wait(poller, timeout_ms) == sock;
    zpoller_destroy(&poller);
    if (!got)
        return DPOOL_ERR_TIMEOUT;
    zmsg_t *zmsg = zmsg_recv(sock);
    const char *reason = NULL;
    int rc = dpool_proto_decode(&zmsg, false, NULL, msg, &reason);
    if (why)
        *why = reason;
    return rc;
}

int
dpool_peer_next(zsock_t *sock, dpool_msg_t *msg, int timeout_ms, const char **why)
{
    for (;;) {
        int rc = dpool_peer_recv(sock, msg, timeout_ms, why);
        if (rc != DPOOL_OK || msg->command != DPOOL_CMD_HEARTBEAT)
            return rc;
        dpool_msg_reset(msg);
    }
}

zframe_t *
dpool_peer_payload_str(const char *text)
{
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init(&buffer);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &buffer, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_str(&pk, strlen(text));
    msgpack_pack_str_body(&pk, text, strlen(text));
    zframe_t *frame = zframe_new(buffer.data, buffer.size);
    msgpack_sbuffer_destroy(&buffer);
    return frame;
}
