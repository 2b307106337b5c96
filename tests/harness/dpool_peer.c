/*  dpool_peer: raw protocol peers for tests (see dpool_peer.h). */
#include "dpool_peer.h"
#include "dpool_batch.h"

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

// The rest of a BATCH a socket received, per socket (a peer that sent one may get
// them; most tests never do). Reachable for the process's life, so never a leak.
static zlist_t *
s_held_for(zsock_t *sock)
{
    static zhashx_t *held = NULL;
    if (!held && !(held = zhashx_new()))
        return NULL;
    char key[32];
    snprintf(key, sizeof key, "%p", (void *)sock);
    zlist_t *list = zhashx_lookup(held, key);
    if (!list && (list = zlist_new()))
        zhashx_insert(held, key, list);
    return list;
}

int
dpool_peer_recv(zsock_t *sock, dpool_msg_t *msg, int timeout_ms, const char **why)
{
    memset(msg, 0, sizeof *msg);
    zlist_t *held = s_held_for(sock);
    zmsg_t *zmsg = held ? zlist_pop(held) : NULL;
    if (!zmsg) {
        zpoller_t *poller = zpoller_new(sock, NULL);
        bool got = zpoller_wait(poller, timeout_ms) == sock;
        zpoller_destroy(&poller);
        if (!got)
            return DPOOL_ERR_TIMEOUT;
        zmsg = zmsg_recv(sock);
        const char *split_why = NULL;
        int split = held ? dpool_batch_split(&zmsg, false, held, &split_why) : 0;
        if (split < 0) {
            if (why)
                *why = split_why;
            return DPOOL_ERR_PROTO;
        }
        if (split > 0)
            zmsg = zlist_pop(held);
    }
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

zlist_t *
dpool_peer_split(zmsg_t **zmsg_p, bool with_routing_id)
{
    zlist_t *parts = zlist_new();
    if (!parts) {
        zmsg_destroy(zmsg_p);
        return NULL;
    }
    const char *why = NULL;
    int split = dpool_batch_split(zmsg_p, with_routing_id, parts, &why);
    if (split == 0)
        zlist_append(parts, *zmsg_p);
    *zmsg_p = NULL;
    if (split < 0)
        zlist_destroy(&parts);
    return parts;
}

int
dpool_peer_route_one(zsock_t *router, dpool_peer_handle_fn *handle, void *ctx, const char **why)
{
    zmsg_t *received = zmsg_recv(router);
    if (!received)
        return DPOOL_ERR_IO;
    zlist_t *parts = dpool_peer_split(&received, true);
    if (!parts) {
        *why = "malformed BATCH";
        return DPOOL_ERR_PROTO;
    }
    int rc = DPOOL_OK;
    zmsg_t *zmsg;
    while ((zmsg = zlist_pop(parts))) {
        zframe_t *peer = NULL;
        dpool_msg_t msg = {0};
        if (rc == DPOOL_OK && (rc = dpool_proto_decode(&zmsg, true, &peer, &msg, why)) == DPOOL_OK)
            handle(ctx, peer, &msg);
        dpool_msg_reset(&msg);
        zframe_destroy(&peer);
        zmsg_destroy(&zmsg);
    }
    zlist_destroy(&parts);
    return rc;
}
