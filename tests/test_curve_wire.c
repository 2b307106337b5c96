/*  What crosses the wire between a client and the CURVE broker (docs/PROTOCOL.md,
    "Security (CURVE)"): a TCP relay between a client and the broker keeps a copy of
    every byte and shows that no task payload crosses the wire in clear, while it does
    without CURVE. The broker, worker and keys come from curve_fixture.h. */
#include "curve_fixture.h"

#include <criterion/criterion.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MARKER "PLAINTEXT-MARKER-4242"

TestSuite(curve_wire, .init = setup, .fini = teardown, .timeout = 60);

// A TCP relay from 127.0.0.1:<port> to the broker's port that keeps a copy of every
// byte it passes, in either direction: what a capture of the broker's port would see.
#define RELAY_LINKS 8

typedef struct {
    int listener;
    int port;
    int target_port;
    atomic_bool stop;
    pthread_t thread;
    int fds[RELAY_LINKS][2]; // accepted side, broker side; -1 when free
    char *seen;              // every byte relayed; read after the thread ended
    size_t seen_size;
} relay_t;

static void
relay_close(relay_t *relay, int link)
{
    close(relay->fds[link][0]);
    close(relay->fds[link][1]);
    relay->fds[link][0] = relay->fds[link][1] = -1;
}

static void
relay_accept(relay_t *relay)
{
    int in = accept(relay->listener, NULL, NULL);
    if (in < 0)
        return;
    int link = 0;
    while (link < RELAY_LINKS && relay->fds[link][0] >= 0)
        link++;
    int out = link < RELAY_LINKS ? socket(AF_INET, SOCK_STREAM, 0) : -1;
    struct sockaddr_in to = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)relay->target_port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (out >= 0 && connect(out, (struct sockaddr *)&to, sizeof to) == 0) {
        relay->fds[link][0] = in;
        relay->fds[link][1] = out;
        return;
    }
    close(in);
    if (out >= 0)
        close(out);
}

// Copies what is readable on side of link to the other side; false at the end.
static bool
relay_pass(relay_t *relay, int link, int side)
{
    char buffer[16384];
    ssize_t got = read(relay->fds[link][side], buffer, sizeof buffer);
    if (got <= 0)
        return false;
    // No criterion assert here: this is not the test's thread.
    char *seen = realloc(relay->seen, relay->seen_size + (size_t)got);
    if (!seen)
        abort();
    relay->seen = seen;
    memcpy(relay->seen + relay->seen_size, buffer, (size_t)got);
    relay->seen_size += (size_t)got;
    for (ssize_t sent = 0; sent < got;) {
        ssize_t n = write(relay->fds[link][1 - side], buffer + sent, (size_t)(got - sent));
        if (n <= 0)
            return false;
        sent += n;
    }
    return true;
}

static void *
relay_run(void *arg)
{
    relay_t *relay = arg;
    while (!atomic_load(&relay->stop)) {
        struct pollfd fds[1 + 2 * RELAY_LINKS];
        int links[1 + 2 * RELAY_LINKS];
        nfds_t n = 0;
        fds[n++] = (struct pollfd){.fd = relay->listener, .events = POLLIN};
        for (int link = 0; link < RELAY_LINKS; link++)
            for (int side = 0; side < 2 && relay->fds[link][0] >= 0; side++) {
                links[n] = link * 2 + side;
                fds[n++] = (struct pollfd){.fd = relay->fds[link][side], .events = POLLIN};
            }
        if (poll(fds, n, 50) <= 0)
            continue;
        if (fds[0].revents & POLLIN)
            relay_accept(relay);
        for (nfds_t i = 1; i < n; i++) {
            int link = links[i] / 2, side = links[i] % 2;
            if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) && relay->fds[link][0] >= 0 &&
                !relay_pass(relay, link, side))
                relay_close(relay, link);
        }
    }
    return NULL;
}

static void
relay_start(relay_t *relay, const char *broker_endpoint)
{
    memset(relay, 0, sizeof *relay);
    for (int link = 0; link < RELAY_LINKS; link++)
        relay->fds[link][0] = relay->fds[link][1] = -1;
    const char *colon = strrchr(broker_endpoint, ':');
    cr_assert_not_null(colon);
    relay->target_port = atoi(colon + 1);
    relay->listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in at = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t size = sizeof at;
    cr_assert_eq(bind(relay->listener, (struct sockaddr *)&at, sizeof at), 0);
    cr_assert_eq(listen(relay->listener, 8), 0);
    cr_assert_eq(getsockname(relay->listener, (struct sockaddr *)&at, &size), 0);
    relay->port = ntohs(at.sin_port);
    atomic_init(&relay->stop, false);
    cr_assert_eq(pthread_create(&relay->thread, NULL, relay_run, relay), 0);
}

static void
relay_stop(relay_t *relay)
{
    atomic_store(&relay->stop, true);
    pthread_join(relay->thread, NULL);
    for (int link = 0; link < RELAY_LINKS; link++)
        if (relay->fds[link][0] >= 0)
            relay_close(relay, link);
    close(relay->listener);
}

// Runs echo [MARKER] from a client that reaches the broker through a relay; returns
// the relay (stopped) with what it saw. cert NULL: the client speaks without CURVE.
static void
echo_marker_through_relay(const char *endpoint, zcert_t *cert, relay_t *relay)
{
    zsock_t *direct = peer(endpoint, cert, "Cdirect");
    wait_processes(direct, 1);
    zsock_destroy(&direct);
    relay_start(relay, endpoint);
    char relayed[64];
    snprintf(relayed, sizeof relayed, "tcp://127.0.0.1:%d", relay->port);
    zsock_t *client = peer(relayed, cert, "Crelayed");
    dpool_msg_t result;
    echo_through(client, MARKER, &result);
    dpool_msg_reset(&result);
    zsock_destroy(&client);
    relay_stop(relay);
    cr_assert_gt(relay->seen_size, 0, "nothing went through the relay");
}

Test(curve_wire, task_payloads_do_not_cross_the_wire_in_clear)
{
    const char *endpoint = start_curve_broker();
    start_curve_worker("worker.key_secret");
    relay_t relay;
    echo_marker_through_relay(endpoint, client_cert, &relay);
    cr_assert_not(s_contains(relay.seen, relay.seen_size, MARKER),
                  "the marker crossed the wire in clear with CURVE");
    free(relay.seen);
}

Test(curve_wire, without_curve_the_same_relay_sees_the_payload)
{
    // The control: proves the relay would have caught the marker in clear.
    const char *endpoint = dpool_harness_start_broker(harness, NULL);
    cr_assert_not_null(endpoint);
    cr_assert_gt(dpool_harness_start_worker(harness, 1, NULL), 0);
    relay_t relay;
    echo_marker_through_relay(endpoint, NULL, &relay);
    cr_assert(s_contains(relay.seen, relay.seen_size, MARKER),
              "the relay did not see the marker in %zu bytes without CURVE", relay.seen_size);
    free(relay.seen);
}
