/*  The broker daemon against peers played by the test: raw DEALER sockets that speak
    the protocol of docs/PROTOCOL.md (or break it on purpose). This checks the broker's
    side of every conversation without a real worker daemon in the way. */
#include "dpool_batch.h"
#include "dpool_harness.h"
#include "dpool_proto.h"
#include "peer_assert.h"

#include <criterion/criterion.h>
#include <dpool/errors.h>
#include <msgpack.h>
#include <string.h>

static dpool_harness_t *harness;
static const char *endpoint;
static zsock_t *client;
static zsock_t *worker;

static zsock_t *
connect_peer(const char *routing_id)
{
    return connect_to(endpoint, routing_id);
}

static void
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

static void
teardown(void)
{
    zsock_destroy(&client);
    zsock_destroy(&worker);
    dpool_harness_destroy(&harness);
}

TestSuite(broker, .init = setup, .fini = teardown, .timeout = 30);

static void
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

static void
open_pool(uint32_t ref, uint32_t cap)
{
    send_msg(client, (dpool_msg_t){.command = DPOOL_CMD_POOL_OPEN, .pool_ref = ref, .count = cap});
    dpool_msg_t opened;
    expect(client, DPOOL_CMD_POOL_OPENED, &opened, 5000);
    cr_assert_eq(opened.pool_ref, ref);
    cr_assert_eq(opened.code, DPOOL_OK);
    dpool_msg_reset(&opened);
}

static void
submit(uint32_t ref, uint64_t task_id, const char *function)
{
    send_msg(client, (dpool_msg_t){.command = DPOOL_CMD_SUBMIT,
                                   .pool_ref = ref,
                                   .task_id = task_id,
                                   .name = (char *)function,
                                   .payload = dpool_peer_payload_str("argument")});
}

Test(broker, routes_a_task_to_the_worker_and_its_output_and_result_back)
{
    const char *functions[] = {"f"};
    register_worker(functions, 1, 1);
    open_pool(1, 1);
    submit(1, 77, "f");
    dpool_msg_t task;
    expect(worker, DPOOL_CMD_TASK, &task, 5000);
    cr_assert_str_eq(task.name, "f");
    zframe_t *expected = dpool_peer_payload_str("argument");
    cr_assert(zframe_eq(task.payload, expected), "arguments changed on the way");
    zframe_destroy(&expected);
    send_msg(worker, (dpool_msg_t){.command = DPOOL_CMD_WORKER_OUTPUT,
                                   .task_id = task.task_id,
                                   .count = DPOOL_STREAM_STDOUT,
                                   .text = "printed\n",
                                   .text_size = 8});
    send_msg(worker, (dpool_msg_t){.command = DPOOL_CMD_WORKER_RESULT,
                                   .task_id = task.task_id,
                                   .count = 1,
                                   .payload = dpool_peer_payload_str("result")});
    dpool_msg_t output, result;
    expect(client, DPOOL_CMD_OUTPUT, &output, 5000);
    cr_assert_eq(output.task_id, 77);
    cr_assert_eq(output.count, DPOOL_STREAM_STDOUT);
    cr_assert_eq(output.text_size, 8);
    cr_assert(memcmp(output.text, "printed\n", 8) == 0);
    cr_assert_str_eq(output.name, "testhost", "OUTPUT names the host the task ran on");
    expect(client, DPOOL_CMD_RESULT, &result, 5000);
    cr_assert_eq(result.task_id, 77);
    cr_assert_eq(result.code, DPOOL_OK);
    expected = dpool_peer_payload_str("result");
    cr_assert(zframe_eq(result.payload, expected), "result changed on the way");
    zframe_destroy(&expected);
    dpool_msg_reset(&task);
    dpool_msg_reset(&output);
    dpool_msg_reset(&result);
}

Test(broker, sends_no_task_beyond_the_cap_or_the_credits)
{
    const char *functions[] = {"f"};
    register_worker(functions, 1, 4);
    open_pool(1, 2);
    for (uint64_t id = 1; id <= 5; id++)
        submit(1, id, "f");
    dpool_msg_t first, second, extra;
    expect(worker, DPOOL_CMD_TASK, &first, 5000);
    expect(worker, DPOOL_CMD_TASK, &second, 5000);
    // Heartbeats may come; a third TASK must not (cap 2).
    bool third = false;
    for (int i = 0; i < 3 && !third; i++) {
        if (recv_msg(worker, &extra, 400)) {
            third = extra.command == DPOOL_CMD_TASK;
            dpool_msg_reset(&extra);
        }
    }
    cr_assert_not(third, "a third task of a cap-2 pool was dispatched");
    send_msg(worker, (dpool_msg_t){.command = DPOOL_CMD_WORKER_RESULT,
                                   .task_id = first.task_id,
                                   .count = 1,
                                   .payload = dpool_peer_payload_str("r")});
    expect(worker, DPOOL_CMD_TASK, &extra, 5000);
    dpool_msg_reset(&first);
    dpool_msg_reset(&second);
    dpool_msg_reset(&extra);
}

Test(broker, terminate_fails_queued_and_running_tasks_and_kills_the_running_one)
{
    const char *functions[] = {"f"};
    register_worker(functions, 1, 1);
    open_pool(3, 1);
    submit(3, 1, "f");
    submit(3, 2, "f");
    dpool_msg_t task, kill, result;
    expect(worker, DPOOL_CMD_TASK, &task, 5000);
    send_msg(client, (dpool_msg_t){.command = DPOOL_CMD_TERMINATE, .pool_ref = 3});
    bool answered[3] = {false};
    for (int i = 0; i < 2; i++) {
        expect(client, DPOOL_CMD_RESULT, &result, 5000);
        cr_assert_eq(result.code, DPOOL_ERR_TERMINATED);
        cr_assert(result.task_id == 1 || result.task_id == 2);
        answered[result.task_id] = true;
        dpool_msg_reset(&result);
    }
    cr_assert(answered[1] && answered[2]);
    expect(worker, DPOOL_CMD_KILL, &kill, 5000);
    cr_assert_eq(kill.task_id, task.task_id);
    dpool_msg_reset(&task);
    dpool_msg_reset(&kill);
}

Test(broker, a_silent_worker_is_lost_and_its_task_fails_naming_the_host)
{
    const char *functions[] = {"f"};
    register_worker(functions, 1, 1);
    open_pool(1, 1);
    submit(1, 9, "f");
    dpool_msg_t task, result;
    expect(worker, DPOOL_CMD_TASK, &task, 5000);
    // The worker now says nothing: liveness is 3 beats of 1 s.
    expect(client, DPOOL_CMD_RESULT, &result, 8000);
    cr_assert_eq(result.task_id, 9);
    cr_assert_eq(result.code, DPOOL_ERR_WORKER_LOST);
    cr_assert(strstr(result.text, "testhost") && strstr(result.text, "lost"), "message: %s",
              result.text);
    dpool_msg_reset(&task);
    dpool_msg_reset(&result);
}

Test(broker, a_worker_saying_bye_fails_its_running_task)
{
    const char *functions[] = {"f"};
    register_worker(functions, 1, 1);
    open_pool(1, 1);
    submit(1, 5, "f");
    dpool_msg_t task, result;
    expect(worker, DPOOL_CMD_TASK, &task, 5000);
    send_msg(worker, (dpool_msg_t){.command = DPOOL_CMD_BYE});
    expect(client, DPOOL_CMD_RESULT, &result, 5000);
    cr_assert_eq(result.code, DPOOL_ERR_WORKER_LOST);
    cr_assert(strstr(result.text, "left"), "message: %s", result.text);
    dpool_msg_reset(&task);
    dpool_msg_reset(&result);
}

Test(broker, submit_to_a_pool_never_opened_is_refused)
{
    submit(12, 1, "f");
    dpool_msg_t result;
    expect(client, DPOOL_CMD_RESULT, &result, 5000);
    cr_assert_eq(result.code, DPOOL_ERR_INVALID);
    cr_assert(strstr(result.text, "12"), "message: %s", result.text);
    dpool_msg_reset(&result);
}

Test(broker, worker_commands_before_hello_are_refused)
{
    send_msg(worker, (dpool_msg_t){.command = DPOOL_CMD_CREDIT, .count = 1});
    dpool_msg_t error;
    expect(worker, DPOOL_CMD_ERROR, &error, 5000);
    cr_assert_eq(error.code, DPOOL_ERR_PROTO);
    cr_assert(strstr(error.text, "WORKER_HELLO"));
    dpool_msg_reset(&error);
}

// Sends frames as they are: the test's way to break the protocol.
static void
send_raw(zsock_t *sock, const void *header, size_t header_size, const void *body, size_t body_size)
{
    zmsg_t *zmsg = zmsg_new();
    zmsg_addmem(zmsg, header, header_size);
    if (body)
        zmsg_addmem(zmsg, body, body_size);
    cr_assert_eq(zmsg_send(&zmsg, sock), 0);
}

Test(broker, malformed_messages_are_answered_counted_and_change_nothing)
{
    const uint8_t bad_magic[] = {'X', 'P', 1, DPOOL_CMD_STATUS};
    const uint8_t bad_version[] = {'D', 'P', 9, DPOOL_CMD_STATUS};
    const uint8_t bad_command[] = {'D', 'P', 1, 0x7f};
    const uint8_t submit_header[] = {'D', 'P', 1, DPOOL_CMD_SUBMIT};
    const uint8_t empty_array[] = {0x90};
    const uint8_t truncated[] = {0x93, 0x01, 0xcf, 0x00};
    const uint8_t deep[] = {0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x90};
    const uint8_t batch_header[] = {'D', 'P', 1, DPOOL_CMD_BATCH};
    send_raw(client, bad_magic, 4, empty_array, 1);
    send_raw(client, bad_version, 4, empty_array, 1);
    send_raw(client, bad_command, 4, empty_array, 1);
    send_raw(client, submit_header, 4, truncated, sizeof truncated);
    send_raw(client, submit_header, 4, deep, sizeof deep);
    send_raw(client, submit_header, 3, empty_array, 1);
    send_raw(client, batch_header, 4, empty_array, 1); // a BATCH of no whole message
    for (int i = 0; i < 7; i++) {
        dpool_msg_t error;
        expect(client, DPOOL_CMD_ERROR, &error, 5000);
        cr_assert_eq(error.code, DPOOL_ERR_PROTO);
        cr_assert_not_null(error.text);
        dpool_msg_reset(&error);
    }
    // Still serving, and it counted them.
    send_msg(client, (dpool_msg_t){.command = DPOOL_CMD_STATUS});
    dpool_msg_t status;
    expect(client, DPOOL_CMD_STATUS_REPLY, &status, 5000);
    msgpack_unpacked unpacked;
    msgpack_unpacked_init(&unpacked);
    cr_assert_eq(msgpack_unpack_next(&unpacked, (const char *)zframe_data(status.payload),
                                     zframe_size(status.payload), NULL),
                 MSGPACK_UNPACK_SUCCESS);
    long malformed = -1;
    for (uint32_t i = 0; i < unpacked.data.via.map.size; i++) {
        msgpack_object_kv kv = unpacked.data.via.map.ptr[i];
        if (kv.key.via.str.size == 9 && memcmp(kv.key.via.str.ptr, "malformed", 9) == 0)
            malformed = (long)kv.val.via.u64;
    }
    cr_assert_eq(malformed, 7);
    msgpack_unpacked_destroy(&unpacked);
    dpool_msg_reset(&status);
}

Test(broker, unknown_function_fails_after_the_grace_period_naming_it)
{
    open_pool(1, 1);
    submit(1, 3, "nobody.offers.this");
    dpool_msg_t result;
    expect(client, DPOOL_CMD_RESULT, &result, 6000);
    cr_assert_eq(result.code, DPOOL_ERR_NO_FUNCTION);
    cr_assert(strstr(result.text, "nobody.offers.this"), "message: %s", result.text);
    dpool_msg_reset(&result);
}

Test(broker, a_task_waiting_for_its_function_runs_when_a_worker_offering_it_joins)
{
    open_pool(1, 1);
    submit(1, 4, "late.function");
    const char *functions[] = {"late.function"};
    register_worker(functions, 1, 1);
    dpool_msg_t task;
    expect(worker, DPOOL_CMD_TASK, &task, 5000);
    cr_assert_str_eq(task.name, "late.function");
    dpool_msg_reset(&task);
}

Test(broker, flags_help_version_and_refusals)
{
    char *out = NULL, *err = NULL;
    const char *help[] = {"dpool-broker", "--help", NULL};
    cr_assert_eq(dpool_harness_run(harness, help, NULL, 10, &out, &err), 0);
    cr_assert(strstr(out, "--bind"));
    free(out);
    free(err);
    const char *version[] = {"dpool-broker", "--version", NULL};
    cr_assert_eq(dpool_harness_run(harness, version, NULL, 10, &out, &err), 0);
    cr_assert(strstr(out, "dpool-broker 0."));
    free(out);
    free(err);
    const char *bad[] = {"dpool-broker", "--no-such-flag", NULL};
    cr_assert_eq(dpool_harness_run(harness, bad, NULL, 10, &out, &err), 2);
    cr_assert(strstr(err, "dpool-broker:") && strchr(err, '\n') == err + strlen(err) - 1,
              "not one line: %s", err);
    free(out);
    free(err);
    const char *open_bind[] = {"dpool-broker", "--bind", "tcp://0.0.0.0:1", NULL};
    cr_assert_eq(dpool_harness_run(harness, open_bind, NULL, 10, &out, &err), 1);
    cr_assert(strstr(err, "--insecure"), "stderr: %s", err);
    free(out);
    free(err);
}

static void
open_pool_with(uint32_t ref, uint32_t cap, uint32_t retries, uint32_t time_limit_ms)
{
    send_msg(client, (dpool_msg_t){.command = DPOOL_CMD_POOL_OPEN,
                                   .pool_ref = ref,
                                   .count = cap,
                                   .retries = retries,
                                   .time_limit_ms = time_limit_ms});
    dpool_msg_t opened;
    expect(client, DPOOL_CMD_POOL_OPENED, &opened, 5000);
    cr_assert_eq(opened.code, DPOOL_OK);
    dpool_msg_reset(&opened);
}

Test(broker, a_task_lost_with_its_process_runs_again_when_the_pool_allows_a_retry)
{
    const char *functions[] = {"f"};
    register_worker(functions, 1, 1);
    open_pool_with(1, 1, 1, 2500);
    submit(1, 21, "f");
    dpool_msg_t first, second, result;
    expect(worker, DPOOL_CMD_TASK, &first, 5000);
    cr_assert_eq(first.time_limit_ms, 2500, "the pool's time limit travels with the task");
    // The process died: the daemon reports it lost and later grants the new process.
    send_msg(worker, (dpool_msg_t){.command = DPOOL_CMD_WORKER_RESULT,
                                   .task_id = first.task_id,
                                   .code = DPOOL_ERR_WORKER_LOST,
                                   .text = "worker process 1 on testhost killed by signal 9"});
    send_msg(worker, (dpool_msg_t){.command = DPOOL_CMD_CREDIT, .count = 1});
    expect(worker, DPOOL_CMD_TASK, &second, 5000);
    zframe_t *expected = dpool_peer_payload_str("argument");
    cr_assert(zframe_eq(second.payload, expected), "the retry lost its arguments");
    zframe_destroy(&expected);
    // The second loss exhausts the one retry: the client hears of it.
    send_msg(worker, (dpool_msg_t){.command = DPOOL_CMD_WORKER_RESULT,
                                   .task_id = second.task_id,
                                   .code = DPOOL_ERR_WORKER_LOST,
                                   .text = "worker process 2 on testhost killed by signal 9"});
    expect(client, DPOOL_CMD_RESULT, &result, 5000);
    cr_assert_eq(result.task_id, 21);
    cr_assert_eq(result.code, DPOOL_ERR_WORKER_LOST);
    cr_assert(strstr(result.text, "process 2"), "message: %s", result.text);
    dpool_msg_reset(&first);
    dpool_msg_reset(&second);
    dpool_msg_reset(&result);
}

Test(broker, a_retry_goes_before_the_tasks_queued_behind_it)
{
    const char *functions[] = {"f"};
    register_worker(functions, 1, 1);
    open_pool_with(1, 1, 2, 0);
    submit(1, 1, "f");
    submit(1, 2, "f");
    dpool_msg_t first, again;
    expect(worker, DPOOL_CMD_TASK, &first, 5000);
    send_msg(worker, (dpool_msg_t){.command = DPOOL_CMD_BYE});
    register_worker(functions, 1, 1);
    expect(worker, DPOOL_CMD_TASK, &again, 5000);
    send_msg(worker, (dpool_msg_t){.command = DPOOL_CMD_WORKER_RESULT,
                                   .task_id = again.task_id,
                                   .count = 0,
                                   .payload = dpool_peer_payload_str("done")});
    dpool_msg_t result;
    expect(client, DPOOL_CMD_RESULT, &result, 5000);
    cr_assert_eq(result.task_id, 1, "task 2 overtook the retried task 1");
    cr_assert_eq(result.code, DPOOL_OK);
    dpool_msg_reset(&first);
    dpool_msg_reset(&again);
    dpool_msg_reset(&result);
}

Test(broker, chunk_flag_reaches_the_worker_and_partial_results_reach_the_client)
{
    const char *functions[] = {"f"};
    register_worker(functions, 1, 1);
    open_pool(1, 1);
    send_msg(client, (dpool_msg_t){.command = DPOOL_CMD_SUBMIT,
                                   .pool_ref = 1,
                                   .task_id = 8,
                                   .name = "f",
                                   .flags = DPOOL_FLAG_CHUNK,
                                   .payload = dpool_peer_payload_str("items")});
    dpool_msg_t task, result;
    expect(worker, DPOOL_CMD_TASK, &task, 5000);
    cr_assert_eq(task.flags, DPOOL_FLAG_CHUNK);
    send_msg(worker, (dpool_msg_t){.command = DPOOL_CMD_WORKER_RESULT,
                                   .task_id = task.task_id,
                                   .code = DPOOL_ERR_TASK_FAILED,
                                   .text = "item 1: no",
                                   .count = 1,
                                   .payload = dpool_peer_payload_str("first result")});
    expect(client, DPOOL_CMD_RESULT, &result, 5000);
    cr_assert_eq(result.code, DPOOL_ERR_TASK_FAILED);
    cr_assert_not_null(result.payload, "the results before the failing item were dropped");
    dpool_msg_reset(&task);
    dpool_msg_reset(&result);
}

Test(broker, a_client_that_heartbeats_then_vanishes_loses_its_private_tasks_only)
{
    const char *functions[] = {"f"};
    register_worker(functions, 1, 2);
    open_pool(1, 1);
    send_msg(client, (dpool_msg_t){.command = DPOOL_CMD_HEARTBEAT});
    send_msg(
        client,
        (dpool_msg_t){.command = DPOOL_CMD_POOL_OPEN, .pool_ref = 2, .name = "shared", .count = 1});
    dpool_msg_t opened, private_task, named_task, kill;
    expect(client, DPOOL_CMD_POOL_OPENED, &opened, 5000);
    submit(1, 1, "f");
    submit(2, 2, "f");
    expect(worker, DPOOL_CMD_TASK, &private_task, 5000);
    expect(worker, DPOOL_CMD_TASK, &named_task, 5000);
    // The client now falls silent; the worker keeps beating so only the client is lost.
    bool killed = false;
    for (int i = 0; i < 16 && !killed; i++) {
        send_msg(worker, (dpool_msg_t){.command = DPOOL_CMD_HEARTBEAT});
        if (recv_msg(worker, &kill, 500)) {
            killed = kill.command == DPOOL_CMD_KILL;
            if (!killed)
                dpool_msg_reset(&kill);
        }
    }
    cr_assert(killed, "the vanished client's running task was not killed");
    uint64_t private_id = private_task.task_id == kill.task_id ? private_task.task_id : 0;
    cr_assert_neq(private_id, 0, "the named pool's task was killed instead of the private one");
    dpool_msg_reset(&opened);
    dpool_msg_reset(&private_task);
    dpool_msg_reset(&named_task);
    dpool_msg_reset(&kill);
}

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

Test(broker, submissions_past_max_queued_fail_as_queue_full_and_lose_nothing)
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

Test(broker, a_resent_submission_of_a_task_still_held_runs_once)
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

Test(broker, a_submission_over_max_message_fails_as_too_big_and_is_counted)
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

Test(broker, a_batch_larger_than_max_message_whose_messages_are_not_is_served_whole)
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
Test(broker, payloads_in_batches_cross_the_broker_intact)
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
