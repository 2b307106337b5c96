/*  Criterion checks around tests/harness/dpool_peer.h for the tests that play a client
    or a worker on raw DEALER sockets against a real broker (test_broker.c,
    test_broker_garbage.c, test_curve.c, test_curve_wire.c, test_journal.c). They assert,
    so they live here rather than in the harness library. Helpers are static inline so a
    file may use any subset. */
#ifndef PEER_ASSERT_H
#define PEER_ASSERT_H

#include "dpool_peer.h"

#include <criterion/criterion.h>
#include <dpool/errors.h>

// dpool_peer_connect that must succeed.
static inline zsock_t *
connect_to(const char *endpoint, const char *routing_id)
{
    zsock_t *sock = dpool_peer_connect(endpoint, routing_id);
    cr_assert_not_null(sock, "cannot connect a DEALER to %s", endpoint);
    return sock;
}

static inline void
send_msg(zsock_t *sock, dpool_msg_t msg)
{
    cr_assert_eq(dpool_peer_send(sock, &msg), DPOOL_OK);
}

// Receives one message within timeout_ms into *msg (caller resets it); false on none.
// Whatever the broker sends must be well formed.
static inline bool
recv_msg(zsock_t *sock, dpool_msg_t *msg, int timeout_ms)
{
    const char *why = NULL;
    int rc = dpool_peer_recv(sock, msg, timeout_ms, &why);
    if (rc == DPOOL_ERR_TIMEOUT)
        return false;
    cr_assert_eq(rc, DPOOL_OK, "the broker sent a malformed message: %s", why);
    return true;
}

// The next message that is not a HEARTBEAT, which must be command.
static inline void
expect(zsock_t *sock, dpool_cmd_t command, dpool_msg_t *msg, int timeout_ms)
{
    const char *why = NULL;
    int rc = dpool_peer_next(sock, msg, timeout_ms, &why);
    cr_assert(rc != DPOOL_ERR_TIMEOUT, "no %s within %d ms", dpool_proto_command_name(command),
              timeout_ms);
    cr_assert_eq(rc, DPOOL_OK, "the broker sent a malformed message: %s", why);
    cr_assert_eq(msg->command, command, "expected %s, got %s (%d %s)",
                 dpool_proto_command_name(command), dpool_proto_command_name(msg->command),
                 msg->code, msg->text ? msg->text : "");
}

#endif
