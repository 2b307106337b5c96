/*  The broker's limits against peers played by the test (broker_fixture.h): a full
    queue, a re-sent submission, messages and batches over --max-message, and payloads
    carried through BATCHes both ways. */
#include "broker_fixture.h"
#include "dpool_batch.h"

#include <dpool/errors.h>
#include <msgpack.h>
#include <string.h>

TestSuite(broker_limits, .init = setup, .fini = teardown, .timeout = 30);

// Starts a broker of its own with args (NULL-terminated), connects a client peer and
// opens pool 1 of cap 1 on it. Returns the peer; *harness_p and *endpoint_p are set.
static zsock_t *
s_open_on_own_broker(const char **args, dpool_harness_t **harness_p, const char **endpoint_p)
{
    *harness_p = dpool_harness_new();
    cr_assert_not_null(*harness_p);
    *endpoint_p = dpool_harness_start_broker(*harness_p, args);
    cr_assert_not_null(*endpoint_p);
    zsock_t *peer = connect_to(*endpoint_p, NULL);
    send_msg(peer, (dpool_msg_t){.command = DPOOL_CMD_POOL_OPEN, .pool_ref = 1, .count = 1});
    dpool_msg_t reply;
    expect(peer, DPOOL_CMD_POOL_OPENED, &reply, 5000);
    dpool_msg_reset(&reply);
    return peer;
}

Test(broker_limits, submissions_past_max_queued_fail_as_queue_full_and_lose_nothing)
{
    const char *args[] = {"--max-queued", "3", NULL};
    dpool_harness_t *small = NULL;
    const char *small_endpoint = NULL;
    zsock_t *peer = s_open_on_own_broker(args, &small, &small_endpoint);
    dpool_msg_t reply;
    for (uint64_t id = 1; id <= 5; id++)
        send_msg(peer, (dpool_msg_t){.command = DPOOL_CMD_SUBMIT,
                                     .pool_ref = 1,
                                     .task_id = id,
                                     .name = "f",
                                     .payload = dpool_peer_payload_str("a")});
    for (uint64_t id = 4; id <= 5; id++) {
        expect(peer, DPOOL_CMD_RESULT, &reply, 5000);
        cr_assert_eq(reply.task_id, id, "task %lu was refused instead of a later one",
                     (unsigned long)reply.task_id);
        cr_assert_eq(reply.code, DPOOL_ERR_QUEUE_FULL);
        cr_assert(strstr(reply.text, "queue full"), "message: %s", reply.text);
        dpool_msg_reset(&reply);
    }
    zsock_destroy(&peer);
    dpool_harness_destroy(&small);
}

Test(broker_limits, a_resent_submission_of_a_task_still_held_runs_once)
{
    const char *functions[] = {"f"};
    open_pool(1, 4);
    submit(1, 1, "f");
    submit(1, 2, "f");
    submit(1, 1, "f"); // the client reconnected and re-sends what has no result yet
    submit(1, 3, "f");
    register_worker(functions, 1, 4);
    dpool_msg_t task;
    int tasks = 0;
    // The first may take a loaded broker a while; the rest come right after it.
    for (int wait_ms = 5000; recv_msg(worker, &task, wait_ms); wait_ms = 700) {
        tasks += task.command == DPOOL_CMD_TASK;
        dpool_msg_reset(&task);
    }
    cr_assert_eq(tasks, 3, "%d tasks dispatched for 3 distinct task ids", tasks);
}

static zframe_t *
payload_of_size(size_t size)
{
    // [bin of size bytes]: any content; only the size matters here.
    zframe_t *frame = zframe_new(NULL, size + 6);
    uint8_t *bytes = zframe_data(frame);
    memset(bytes, 0, size + 6);
    bytes[0] = 0x91;
    bytes[1] = 0xc6; // bin 32
    bytes[2] = (uint8_t)(size >> 24);
    bytes[3] = (uint8_t)(size >> 16);
    bytes[4] = (uint8_t)(size >> 8);
    bytes[5] = (uint8_t)size;
    return frame;
}

static long
status_figure(zsock_t *sock, const char *key)
{
    send_msg(sock, (dpool_msg_t){.command = DPOOL_CMD_STATUS});
    dpool_msg_t status;
    expect(sock, DPOOL_CMD_STATUS_REPLY, &status, 5000);
    msgpack_unpacked unpacked;
    msgpack_unpacked_init(&unpacked);
    long figure = -1;
    if (msgpack_unpack_next(&unpacked, (const char *)zframe_data(status.payload),
                            zframe_size(status.payload), NULL) == MSGPACK_UNPACK_SUCCESS)
        for (uint32_t i = 0; i < unpacked.data.via.map.size; i++) {
            msgpack_object_kv kv = unpacked.data.via.map.ptr[i];
            if (kv.key.via.str.size == strlen(key) &&
                memcmp(kv.key.via.str.ptr, key, kv.key.via.str.size) == 0)
                figure = (long)kv.val.via.u64;
        }
    msgpack_unpacked_destroy(&unpacked);
    dpool_msg_reset(&status);
    return figure;
}

Test(broker_limits, a_submission_over_max_message_fails_as_too_big_and_is_counted)
{
    const char *args[] = {"--max-message", "4096", NULL};
    dpool_harness_t *small = NULL;
    const char *small_endpoint = NULL;
    zsock_t *peer = s_open_on_own_broker(args, &small, &small_endpoint);
    dpool_msg_t reply;
    send_msg(peer, (dpool_msg_t){.command = DPOOL_CMD_SUBMIT,
                                 .pool_ref = 1,
                                 .task_id = 5,
                                 .name = "f",
                                 .payload = payload_of_size(6000)});
    expect(peer, DPOOL_CMD_RESULT, &reply, 5000);
    cr_assert_eq(reply.task_id, 5);
    cr_assert_eq(reply.code, DPOOL_ERR_TOO_BIG);
    cr_assert(strstr(reply.text, "--max-message"), "message: %s", reply.text);
    dpool_msg_reset(&reply);
    cr_assert_eq(status_figure(peer, "oversized"), 1);
    // Far past the limit ZeroMQ drops the message (and the connection) unread; another
    // peer is served as before.
    send_msg(peer, (dpool_msg_t){.command = DPOOL_CMD_SUBMIT,
                                 .pool_ref = 1,
                                 .task_id = 6,
                                 .name = "f",
                                 .payload = payload_of_size(1 << 20)});
    zsock_t *other = connect_to(small_endpoint, NULL);
    cr_assert_eq(status_figure(other, "oversized"), 1);
    zsock_destroy(&other);
    zsock_destroy(&peer);
    dpool_harness_destroy(&small);
}

Test(broker_limits, a_batch_larger_than_max_message_whose_messages_are_not_is_served_whole)
{
    // ZeroMQ's size limit is per frame and a BATCH's messages share one: 40 SUBMITs of
    // 3 KiB each are a 120 KiB frame against --max-message 4096.
    const char *args[] = {"--max-message", "4096", "--grace", "1", NULL};
    dpool_harness_t *small = NULL;
    const char *small_endpoint = NULL;
    zsock_t *peer = s_open_on_own_broker(args, &small, &small_endpoint);
    dpool_msg_t reply;
    dpool_batch_t *batch = dpool_batch_new();
    for (uint64_t id = 1; id <= 40; id++) {
        dpool_msg_t submit = {.command = DPOOL_CMD_SUBMIT,
                              .pool_ref = 1,
                              .task_id = id,
                              .name = "f",
                              .payload = payload_of_size(3 * 1024)};
        cr_assert_eq(dpool_batch_add(batch, &submit), DPOOL_OK);
    }
    cr_assert_eq(dpool_batch_send(batch, peer, NULL), DPOOL_OK);
    dpool_batch_destroy(&batch);
    // No host offers "f": after the 1 s grace each task fails, every one of them.
    bool seen[41] = {false};
    for (int i = 0; i < 40; i++) {
        expect(peer, DPOOL_CMD_RESULT, &reply, 10000);
        cr_assert(reply.task_id >= 1 && reply.task_id <= 40 && !seen[reply.task_id],
                  "result of task %llu", (unsigned long long)reply.task_id);
        seen[reply.task_id] = true;
        cr_assert_neq(reply.code, DPOOL_ERR_TOO_BIG);
        dpool_msg_reset(&reply);
    }
    cr_assert_eq(status_figure(peer, "oversized"), 0);
    zsock_destroy(&peer);
    dpool_harness_destroy(&small);
}

// Whether frame holds the payload dpool_peer_payload_str makes of text.
static bool
payload_is(zframe_t *frame, const char *text)
{
    zframe_t *expected = dpool_peer_payload_str(text);
    bool same = frame && zframe_eq(frame, expected);
    zframe_destroy(&expected);
    return same;
}

// A BATCH's payloads are read where they lie in it: a SUBMIT's arguments reach the
// worker intact, and a WORKER_RESULT's payload reaches the client intact both when the
// client takes BATCHes and when it takes messages one by one.
Test(broker_limits, payloads_in_batches_cross_the_broker_intact)
{
    const char *functions[] = {"f"};
    register_worker(functions, 1, 4);
    open_pool(1, 4);
    zsock_t *plain = connect_to(endpoint, "Cplain");
    send_msg(plain, (dpool_msg_t){.command = DPOOL_CMD_POOL_OPEN, .pool_ref = 1, .count = 4});
    dpool_msg_t reply;
    expect(plain, DPOOL_CMD_POOL_OPENED, &reply, 5000);
    dpool_msg_reset(&reply);

    // The batching client's three SUBMITs in one BATCH, the plain one's alone.
    dpool_batch_t *batch = dpool_batch_new();
    cr_assert_not_null(batch);
    for (uint64_t id = 1; id <= 3; id++) {
        char text[16];
        snprintf(text, sizeof text, "arg-%llu", (unsigned long long)id);
        dpool_msg_t submit = {.command = DPOOL_CMD_SUBMIT,
                              .pool_ref = 1,
                              .task_id = id,
                              .name = "f",
                              .payload = dpool_peer_payload_str(text)};
        cr_assert_eq(dpool_batch_add(batch, &submit), DPOOL_OK);
    }
    cr_assert_eq(dpool_batch_send(batch, client, NULL), DPOOL_OK);
    send_msg(plain, (dpool_msg_t){.command = DPOOL_CMD_SUBMIT,
                                  .pool_ref = 1,
                                  .task_id = 4,
                                  .name = "f",
                                  .payload = dpool_peer_payload_str("arg-4")});

    // Each TASK carries its arguments; the worker answers all four in one BATCH.
    bool seen[5] = {false};
    for (int i = 0; i < 4; i++) {
        dpool_msg_t task;
        expect(worker, DPOOL_CMD_TASK, &task, 5000);
        int arg = 0;
        for (int k = 1; k <= 4 && !arg; k++) {
            char text[16];
            snprintf(text, sizeof text, "arg-%d", k);
            if (payload_is(task.payload, text))
                arg = k;
        }
        cr_assert(arg > 0 && !seen[arg], "TASK %d carries arguments never sent, or twice", i);
        seen[arg] = true;
        char text[16];
        snprintf(text, sizeof text, "res-%d", arg);
        dpool_msg_t result = {.command = DPOOL_CMD_WORKER_RESULT,
                              .task_id = task.task_id,
                              .count = 1,
                              .payload = dpool_peer_payload_str(text)};
        cr_assert_eq(dpool_batch_add(batch, &result), DPOOL_OK);
        dpool_msg_reset(&task);
    }
    cr_assert_eq(dpool_batch_send(batch, worker, NULL), DPOOL_OK);
    dpool_batch_destroy(&batch);

    for (int i = 0; i < 3; i++) {
        expect(client, DPOOL_CMD_RESULT, &reply, 5000);
        char text[16];
        snprintf(text, sizeof text, "res-%llu", (unsigned long long)reply.task_id);
        cr_assert_eq(reply.code, DPOOL_OK);
        cr_assert(payload_is(reply.payload, text), "result of task %llu",
                  (unsigned long long)reply.task_id);
        dpool_msg_reset(&reply);
    }
    expect(plain, DPOOL_CMD_RESULT, &reply, 5000);
    cr_assert_eq(reply.task_id, 4);
    cr_assert(payload_is(reply.payload, "res-4"), "result of the plain client's task");
    dpool_msg_reset(&reply);
    zsock_destroy(&plain);
}
