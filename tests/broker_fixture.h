/*  Shared by the broker tests (test_broker.c: the conversations; test_broker_limits.c:
    queue and message limits, batches): a broker per test started by the harness, a
    client and a worker peer played by the test on raw DEALER sockets, and helpers that
    speak docs/PROTOCOL.md for them. Criterion runs each test in its own process, so
    this file's static state is per test. setup() and teardown() are each file's suite
    .init and .fini. */
#ifndef BROKER_FIXTURE_H
#define BROKER_FIXTURE_H

#include "dpool_harness.h"
#include "dpool_proto.h"
#include "peer_assert.h"

#include <criterion/criterion.h>

static dpool_harness_t *harness;
static const char *endpoint;
static zsock_t *client;
static zsock_t *worker;

static inline zsock_t *
connect_peer(const char *routing_id)
{
    return connect_to(endpoint, routing_id);
}

static inline void
setup(void)
{
    harness = dpool_harness_new();
    cr_assert_not_null(harness);
    const char *args[] = {"--grace", "1", NULL};
    endpoint = dpool_harness_start_broker(harness, args);
    cr_assert_not_null(endpoint);
    client = connect_peer("Ctest-client");
    worker = connect_peer("Wtest-worker");
}

static inline void
teardown(void)
{
    zsock_destroy(&client);
    zsock_destroy(&worker);
    dpool_harness_destroy(&harness);
}

static inline void
register_worker(const char *const *functions, size_t count, uint32_t processes)
{
    dpool_msg_t hello = {.command = DPOOL_CMD_WORKER_HELLO,
                         .name = "testhost",
                         .pid = 4242,
                         .count = processes,
                         .functions = (char **)functions,
                         .function_count = count};
    send_msg(worker, hello);
    send_msg(worker, (dpool_msg_t){.command = DPOOL_CMD_CREDIT, .count = processes});
}

static inline void
open_pool(uint32_t ref, uint32_t cap)
{
    send_msg(client, (dpool_msg_t){.command = DPOOL_CMD_POOL_OPEN, .pool_ref = ref, .count = cap});
    dpool_msg_t opened;
    expect(client, DPOOL_CMD_POOL_OPENED, &opened, 5000);
    cr_assert_eq(opened.pool_ref, ref);
    cr_assert_eq(opened.code, DPOOL_OK);
    dpool_msg_reset(&opened);
}

static inline void
submit(uint32_t ref, uint64_t task_id, const char *function)
{
    send_msg(client, (dpool_msg_t){.command = DPOOL_CMD_SUBMIT,
                                   .pool_ref = ref,
                                   .task_id = task_id,
                                   .name = (char *)function,
                                   .payload = dpool_peer_payload_str("argument")});
}

#endif
