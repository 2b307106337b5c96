/*  dpool-worker end to end, the Pool features a TASK carries or the command line
    sets: CHUNK tasks (one call per item, partial results on failure, large chunks),
    time limits (-14, then a replacement and its CREDIT), --initializer and
    --maxtasksperchild counting a chunk once. The test plays the broker
    (test_worker_play.h); the daemon is stopped by its pid in .fini. */
#include "test_worker_play.h"

#include <stdint.h>
#include <stdlib.h>

TestSuite(worker_tasks, .fini = teardown, .timeout = 120);

// Receives until the WORKER_RESULT of task_id into msg, appending the stdout bytes
// of its WORKER_OUTPUTs to out (out_size bytes, NUL-terminated). A result for
// another task fails the test.
static void
s_collect(uint64_t task_id, dpool_msg_t *msg, char *out, size_t out_size, int timeout_ms)
{
    size_t used = 0;
    out[0] = '\0';
    int64_t deadline = zclock_mono() + timeout_ms;
    for (;;) {
        int64_t left = deadline - zclock_mono();
        cr_assert(left > 0 && s_recv(msg, (int)left), "no result for task %llu within %d ms",
                  (unsigned long long)task_id, timeout_ms);
        cr_assert(msg->command != DPOOL_CMD_WORKER_RESULT || msg->task_id == task_id,
                  "a result for task %llu", (unsigned long long)msg->task_id);
        if (msg->command == DPOOL_CMD_WORKER_RESULT)
            return;
        if (msg->command != DPOOL_CMD_WORKER_OUTPUT || msg->count != DPOOL_STREAM_STDOUT)
            continue;
        cr_assert_eq(msg->task_id, task_id);
        cr_assert_lt(used + msg->text_size, out_size, "more output than expected");
        memcpy(out + used, msg->text, msg->text_size);
        used += msg->text_size;
        out[used] = '\0';
    }
}

// Decodes the payload of msg (a WORKER_RESULT that must have one) into result and
// checks it is an array.
static void
s_decode_array(const dpool_msg_t *msg, msgpack_unpacked *result)
{
    cr_assert_not_null(msg->payload, "code %d, %s: no payload", msg->code,
                       msg->text ? msg->text : "");
    size_t offset = 0;
    cr_assert_eq(msgpack_unpack_next(result, (const char *)zframe_data(msg->payload),
                                     zframe_size(msg->payload), &offset),
                 MSGPACK_UNPACK_SUCCESS);
    cr_assert_eq(offset, zframe_size(msg->payload));
    cr_assert_eq(result->data.type, MSGPACK_OBJECT_ARRAY);
}

// Sends a CHUNK of count `add` items [i, 1000], or [5, "x"] at item fail_at.
static void
s_send_add_chunk(uint64_t task_id, uint32_t count, uint32_t fail_at)
{
    msgpack_sbuffer args;
    msgpack_sbuffer_init(&args);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &args, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, count);
    for (uint32_t i = 0; i < count; i++) {
        msgpack_pack_array(&pk, 2);
        msgpack_pack_uint32(&pk, i == fail_at ? 5 : i);
        if (i == fail_at) {
            msgpack_pack_str(&pk, 1);
            msgpack_pack_str_body(&pk, "x", 1);
        } else {
            msgpack_pack_uint32(&pk, 1000);
        }
    }
    s_send_task_full(task_id, "add", args.data, args.size, DPOOL_FLAG_CHUNK, 0);
    msgpack_sbuffer_destroy(&args);
}

Test(worker_tasks, chunk_of_add_items_returns_the_sums_in_order)
{
    s_start_ready("2", NULL);
    s_send_add_chunk(1, 1000, UINT32_MAX);
    dpool_msg_t msg = {0};
    msgpack_unpacked result;
    msgpack_unpacked_init(&result);
    s_expect(DPOOL_CMD_WORKER_RESULT, &msg, 10000);
    cr_assert_eq(msg.task_id, 1);
    cr_assert_eq(msg.code, DPOOL_OK, "%s", msg.text ? msg.text : "");
    cr_assert_eq(msg.count, 1, "the process is idle again: its credit comes back");
    s_decode_array(&msg, &result);
    cr_assert_eq(result.data.via.array.size, 1000);
    for (uint32_t i = 0; i < 1000; i++)
        cr_assert_eq(result.data.via.array.ptr[i].via.u64, (uint64_t)i + 1000, "item %u",
                     (unsigned)i);
    msgpack_unpacked_destroy(&result);
    dpool_msg_reset(&msg);
}

Test(worker_tasks, chunk_with_a_failing_item_returns_its_index_and_the_results_before_it)
{
    s_start_ready("2", NULL);
    s_send_add_chunk(2, 10, 7);
    dpool_msg_t msg = {0};
    msgpack_unpacked result;
    msgpack_unpacked_init(&result);
    s_expect(DPOOL_CMD_WORKER_RESULT, &msg, 10000);
    cr_assert_eq(msg.task_id, 2);
    cr_assert_eq(msg.code, DPOOL_ERR_TASK_FAILED);
    cr_assert_str_eq(msg.text, "item 7: add: unsupported operand types (numbers expected)");
    cr_assert_eq(msg.count, 1, "a failed item leaves the process idle");
    s_decode_array(&msg, &result);
    cr_assert_eq(result.data.via.array.size, 7, "exactly the 7 results before item 7");
    for (uint32_t i = 0; i < 7; i++)
        cr_assert_eq(result.data.via.array.ptr[i].via.u64, (uint64_t)i + 1000);
    // Item 0 failing gives an empty array, not a missing payload.
    s_send_add_chunk(3, 3, 0);
    s_expect(DPOOL_CMD_WORKER_RESULT, &msg, 10000);
    cr_assert_eq(msg.code, DPOOL_ERR_TASK_FAILED);
    cr_assert(strncmp(msg.text, "item 0: ", 8) == 0, "message: %s", msg.text);
    s_decode_array(&msg, &result);
    cr_assert_eq(result.data.via.array.size, 0);
    msgpack_unpacked_destroy(&result);
    dpool_msg_reset(&msg);
}

Test(worker_tasks, chunk_output_of_every_item_comes_before_the_result)
{
    s_start_ready("2", NULL);
    // [["ab", 3], ["cd", 2]] for example.print
    const char args[] = "\x92\x92\xa2"
                        "ab\x03\x92\xa2"
                        "cd\x02";
    s_send_task_full(4, "example.print", args, sizeof args - 1, DPOOL_FLAG_CHUNK, 0);
    dpool_msg_t msg = {0};
    char out[256];
    s_collect(4, &msg, out, sizeof out, 10000);
    cr_assert_eq(msg.code, DPOOL_OK, "%s", msg.text ? msg.text : "");
    cr_assert_str_eq(out, "abababcdcd");
    msgpack_unpacked result;
    msgpack_unpacked_init(&result);
    s_decode_array(&msg, &result);
    cr_assert_eq(result.data.via.array.size, 2);
    cr_assert_eq(result.data.via.array.ptr[0].via.u64, 3);
    cr_assert_eq(result.data.via.array.ptr[1].via.u64, 2);
    msgpack_unpacked_destroy(&result);
    dpool_msg_reset(&msg);
}

Test(worker_tasks, chunk_of_100000_noops_returns_100000_nils)
{
    s_start_ready("2", NULL);
    const uint32_t count = 100000;
    uint8_t *args = malloc(5 + count);
    cr_assert_not_null(args);
    args[0] = 0xdd; // array 32, then `count` empty argument arrays
    for (int i = 0; i < 4; i++)
        args[1 + i] = (uint8_t)(count >> (24 - 8 * i));
    memset(args + 5, 0x90, count);
    int64_t start = zclock_mono();
    s_send_task_full(5, "noop", args, 5 + count, DPOOL_FLAG_CHUNK, 0);
    free(args);
    dpool_msg_t msg = {0};
    s_expect(DPOOL_CMD_WORKER_RESULT, &msg, 30000);
    int64_t elapsed = zclock_mono() - start;
    cr_assert_eq(msg.code, DPOOL_OK, "%s", msg.text ? msg.text : "");
    cr_assert_eq(zframe_size(msg.payload), 5 + count, "an array 32 header and one nil per item");
    const uint8_t *bytes = zframe_data(msg.payload);
    cr_assert_eq(bytes[0], 0xdd);
    size_t nils = 0;
    for (size_t i = 5; i < zframe_size(msg.payload); i++)
        nils += bytes[i] == 0xc0;
    cr_assert_eq(nils, count);
    cr_assert_lt(elapsed, 20000, "100000 noops took %lld ms", (long long)elapsed);
    dpool_msg_reset(&msg);
}

Test(worker_tasks, chunk_of_several_megabytes_travels_both_ways_whole)
{
    s_start_ready("2", NULL);
    // 250000 echo items of a 24-byte string: about 6.5 MB each way.
    const uint32_t count = 250000;
    msgpack_sbuffer args;
    msgpack_sbuffer_init(&args);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &args, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, count);
    for (uint32_t i = 0; i < count; i++) {
        char text[32];
        snprintf(text, sizeof text, "item-%018u", (unsigned)i);
        msgpack_pack_array(&pk, 1);
        msgpack_pack_str(&pk, 23);
        msgpack_pack_str_body(&pk, text, 23);
    }
    s_send_task_full(6, "echo", args.data, args.size, DPOOL_FLAG_CHUNK, 0);
    msgpack_sbuffer_destroy(&args);
    dpool_msg_t msg = {0};
    s_expect(DPOOL_CMD_WORKER_RESULT, &msg, 60000);
    cr_assert_eq(msg.code, DPOOL_OK, "%s", msg.text ? msg.text : "");
    msgpack_unpacked result;
    msgpack_unpacked_init(&result);
    s_decode_array(&msg, &result);
    cr_assert_eq(result.data.via.array.size, count);
    for (uint32_t i = 0; i < count; i += 997) {
        char text[32];
        snprintf(text, sizeof text, "item-%018u", (unsigned)i);
        const msgpack_object *item = &result.data.via.array.ptr[i];
        cr_assert(item->type == MSGPACK_OBJECT_STR && item->via.str.size == 23 &&
                      memcmp(item->via.str.ptr, text, 23) == 0,
                  "item %u", (unsigned)i);
    }
    msgpack_unpacked_destroy(&result);
    dpool_msg_reset(&msg);
}

// The "P" and "H" of a time-limit message, checked against its fixed text.
static void
s_check_timeout_message(const char *text, const char *seconds, int *pid)
{
    char expected[128], host[256] = "", rest[512] = "";
    gethostname(host, sizeof host - 1);
    snprintf(expected, sizeof expected,
             "task ran past its time limit of %s s: process %%d on host %%255s", seconds);
    cr_assert_not_null(text);
    cr_assert_eq(sscanf(text, expected, pid, rest), 2, "message: %s", text);
    char tail[300];
    snprintf(tail, sizeof tail, "on host %s killed", host);
    cr_assert(strstr(text, tail) && strlen(strstr(text, tail)) == strlen(tail), "message: %s",
              text);
    cr_assert_gt(*pid, 0);
    cr_assert_neq(*pid, s_pid, "the task's process, not the daemon");
}

Test(worker_tasks, time_limited_sleep_is_killed_with_task_timeout_then_replaced)
{
    s_start_ready("2", NULL);
    const char args[] = "\x91\x1e"; // [30]
    int64_t start = zclock_mono();
    s_send_task_full(7, "sleep", args, 2, 0, 300);
    dpool_msg_t msg = {0};
    s_expect(DPOOL_CMD_WORKER_RESULT, &msg, 5000);
    int64_t elapsed = zclock_mono() - start;
    cr_assert_eq(msg.task_id, 7);
    cr_assert_eq(msg.code, DPOOL_ERR_TASK_TIMEOUT, "code %d: %s", msg.code,
                 msg.text ? msg.text : "");
    cr_assert_null(msg.payload);
    cr_assert_eq(msg.count, 0, "a killed process returns no credit");
    cr_assert(elapsed >= 290 && elapsed < 3000, "answered after %lld ms", (long long)elapsed);
    int pid = 0;
    s_check_timeout_message(msg.text, "0.3", &pid);
    cr_assert_eq(s_credits, 1);
    s_expect(DPOOL_CMD_CREDIT, &msg, 5000);
    cr_assert_eq(msg.count, 1, "the replacement brings one credit");
    cr_assert_eq(kill(pid, 0), -1, "the timed-out process was killed and reaped");
    // The next tasks run, one of them in the replacement; a limit that is not
    // reached changes nothing.
    const char sleep_short[] = "\x91\xcb\x3f\xb9\x99\x99\x99\x99\x99\x9a"; // [0.1]
    s_send_task_full(8, "sleep", sleep_short, sizeof sleep_short - 1, 0, 5000);
    s_expect_result(8, &msg, NULL, 5000);
    cr_assert_eq(msg.code, DPOOL_OK, "%s", msg.text ? msg.text : "");
    uint64_t pids[2] = {s_hostpid(9), s_hostpid(10)};
    cr_assert(pids[0] != (uint64_t)pid && pids[1] != (uint64_t)pid);
    dpool_msg_reset(&msg);
}

Test(worker_tasks, time_limit_message_gives_seconds_with_up_to_three_decimals)
{
    s_start_ready("1", NULL);
    const char args[] = "\x91\x1e"; // [30]
    dpool_msg_t msg = {0};
    const struct {
        uint32_t ms;
        const char *seconds;
    } cases[] = {{1000, "1"}, {1250, "1.25"}, {1001, "1.001"}};
    for (size_t i = 0; i < 3; i++) {
        s_send_task_full(20 + i, "sleep", args, 2, 0, cases[i].ms);
        s_expect(DPOOL_CMD_WORKER_RESULT, &msg, 5000);
        cr_assert_eq(msg.code, DPOOL_ERR_TASK_TIMEOUT);
        int pid = 0;
        s_check_timeout_message(msg.text, cases[i].seconds, &pid);
        s_expect(DPOOL_CMD_CREDIT, &msg, 5000);
    }
    dpool_msg_reset(&msg);
}

Test(worker_tasks, output_written_before_the_time_limit_arrives_before_the_result)
{
    s_start_ready("2", NULL);
    // A chunk of 20 demo.worker items (about 20 s) under a 700 ms limit: item 0
    // prints its first line at once, then sleeps.
    msgpack_sbuffer args;
    msgpack_sbuffer_init(&args);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &args, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 20);
    for (int i = 0; i < 20; i++) {
        char text[8];
        snprintf(text, sizeof text, "m%02d", i);
        msgpack_pack_array(&pk, 1);
        msgpack_pack_str(&pk, 3);
        msgpack_pack_str_body(&pk, text, 3);
    }
    s_send_task_full(11, "demo.worker", args.data, args.size, DPOOL_FLAG_CHUNK, 700);
    msgpack_sbuffer_destroy(&args);
    dpool_msg_t msg = {0};
    char out[4096];
    s_collect(11, &msg, out, sizeof out, 10000);
    cr_assert_eq(msg.code, DPOOL_ERR_TASK_TIMEOUT, "code %d", msg.code);
    char first[64];
    snprintf(first, sizeof first, "m00开始执行,进程号为");
    cr_assert_eq(strncmp(out, first, strlen(first)), 0, "output before the result: %s", out);
    // Nothing of the task arrives after its result.
    while (s_recv(&msg, 500))
        cr_assert(msg.command == DPOOL_CMD_CREDIT, "%s after the -14 result",
                  dpool_proto_command_name(msg.command));
    dpool_msg_reset(&msg);
}

// Runs example.initialized [seconds] as tasks first_id and first_id + 1 at once,
// and checks both ran initialized, in two different processes; returns their pids.
static void
s_check_initialized_pair(uint64_t first_id, uint64_t pids[2])
{
    const char args[] = "\x91\xcb\x3f\xd3\x33\x33\x33\x33\x33\x33"; // [0.3]
    s_send_raw_task(first_id, "example.initialized", args, sizeof args - 1);
    s_send_raw_task(first_id + 1, "example.initialized", args, sizeof args - 1);
    dpool_msg_t msg = {0};
    msgpack_unpacked result;
    msgpack_unpacked_init(&result);
    for (int i = 0; i < 2; i++) {
        s_expect(DPOOL_CMD_WORKER_RESULT, &msg, 5000);
        cr_assert_eq(msg.code, DPOOL_OK, "%s", msg.text ? msg.text : "");
        s_decode_array(&msg, &result);
        cr_assert_eq(result.data.via.array.size, 2);
        cr_assert_eq(result.data.via.array.ptr[0].type, MSGPACK_OBJECT_BOOLEAN);
        cr_assert(result.data.via.array.ptr[0].via.boolean, "example.init did not run in %llu",
                  (unsigned long long)result.data.via.array.ptr[1].via.u64);
        pids[i] = result.data.via.array.ptr[1].via.u64;
    }
    cr_assert_neq(pids[0], pids[1], "the two tasks ran in the two processes");
    msgpack_unpacked_destroy(&result);
    dpool_msg_reset(&msg);
}

Test(worker_tasks, initializer_runs_in_every_new_process_before_its_first_task)
{
    // Each process retires after one task, so the second pair runs in replacements.
    s_start_ready_with("2", "1", "example.init");
    uint64_t first[2], second[2];
    s_check_initialized_pair(1, first);
    dpool_msg_t msg = {0};
    while (s_credits < 2)
        s_expect(DPOOL_CMD_CREDIT, &msg, 5000);
    s_check_initialized_pair(3, second);
    for (int i = 0; i < 2; i++)
        cr_assert(second[i] != first[0] && second[i] != first[1], "a replacement ran pair two");
    dpool_msg_reset(&msg);
}

Test(worker_tasks, initializer_naming_no_function_is_refused_at_startup)
{
    char err[1024];
    const char *const argv[] = {WORKER_BIN,      "--module",     EXAMPLE_MODULE,
                                "--initializer", "no.such.init", NULL};
    int status = s_run_cli(argv, err, sizeof err);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) != 0, "status %d", status);
    cr_assert(strncmp(err, "dpool-worker: ", 14) == 0 && strstr(err, "no.such.init") &&
                  strchr(err, '\n') == err + strlen(err) - 1,
              "stderr: %s", err);
    // The module's function is accepted (the daemon then runs; --help proves parsing).
    const char *const help[] = {WORKER_BIN, "--help", NULL};
    status = s_run_cli(help, err, sizeof err);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

Test(worker_tasks, failing_initializer_stops_the_daemon_with_one_line_after_backing_off)
{
    // `fail` called with [] fails: "fail takes exactly one argument (0 given)".
    char err[2048];
    const char *const argv[] = {
        WORKER_BIN,    "--broker", "tcp://127.0.0.1:9", "--processes", "1",
        "--log-level", "error",    "--initializer",     "fail",        NULL};
    int64_t start = zclock_mono();
    int status = s_run_cli(argv, err, sizeof err);
    int64_t elapsed = zclock_mono() - start;
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) != 0, "status %d", status);
    cr_assert(strncmp(err, "dpool-worker: initializer fail failed in 5 new processes in a row: ",
                      67) == 0,
              "stderr: %s", err);
    cr_assert(strstr(err, "fail takes exactly one argument (0 given)"), "stderr: %s", err);
    cr_assert_eq(strchr(err, '\n'), err + strlen(err) - 1, "one line: %s", err);
    // Back-off between respawns (0.1 + 0.2 + 0.4 + 0.8 s), not a fork storm.
    cr_assert_geq(elapsed, 1000, "gave up after %lld ms", (long long)elapsed);
}

Test(worker_tasks, maxtasksperchild_counts_a_chunk_as_one_task)
{
    s_start_ready("1", "2");
    // A chunk of three hostpid items: one task, in one process.
    const char args[] = "\x93\x90\x90\x90";
    s_send_task_full(1, "hostpid", args, sizeof args - 1, DPOOL_FLAG_CHUNK, 0);
    dpool_msg_t msg = {0};
    msgpack_unpacked result;
    msgpack_unpacked_init(&result);
    s_expect(DPOOL_CMD_WORKER_RESULT, &msg, 5000);
    cr_assert_eq(msg.code, DPOOL_OK, "%s", msg.text ? msg.text : "");
    cr_assert_eq(msg.count, 1, "after one task of two the process is idle again");
    s_decode_array(&msg, &result);
    cr_assert_eq(result.data.via.array.size, 3);
    uint64_t chunk_pid = result.data.via.array.ptr[0].via.map.ptr[1].val.via.u64;
    for (int i = 1; i < 3; i++)
        cr_assert_eq(result.data.via.array.ptr[i].via.map.ptr[1].val.via.u64, chunk_pid);
    uint64_t second = s_hostpid(2); // the second task: the process retires
    cr_assert_eq(second, chunk_pid, "the chunk counted once, so the same process runs task 2");
    cr_assert_eq(s_credits, 0);
    s_expect(DPOOL_CMD_CREDIT, &msg, 5000);
    cr_assert_eq(msg.count, 1);
    cr_assert_neq(s_hostpid(3), chunk_pid, "a new process runs the third task");
    msgpack_unpacked_destroy(&result);
    dpool_msg_reset(&msg);
}
