/*  The broker daemon against peers played by the test: raw DEALER sockets that speak
    the protocol of docs/PROTOCOL.md (or break it on purpose). This checks the broker's
    side of every conversation without a real worker daemon in the way. Its limits
    (queue, message size, batches) are in test_broker_limits.c. */
#include "broker_fixture.h"

#include <criterion/criterion.h>
#include <dpool/errors.h>
#include <msgpack.h>
#include <string.h>

TestSuite(broker, .init = setup, .fini = teardown, .timeout = 30);

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
