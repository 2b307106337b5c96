/*  dpool-worker end to end: the test plays the broker on a ROUTER bound to a free
    loopback port, starts the real daemon with two processes and the example
    module, and holds the worker side of docs/PROTOCOL.md against it. Every wait
    is bounded; the daemon is stopped by its pid in .fini whatever happened.
    Chunks, time limits and the initializer are in test_worker_tasks.c. */
#include "test_worker_play.h"

TestSuite(worker_daemon, .fini = teardown, .timeout = 60);

Test(worker_daemon, hello_names_host_pid_processes_and_every_function)
{
    s_start_ready("2", NULL);
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    cr_assert_str_eq(s_hello.name, host);
    cr_assert_eq(s_hello.pid, (uint32_t)s_pid);
    cr_assert_eq(s_hello.count, 2);
    const char *expected[] = {"noop",
                              "echo",
                              "add",
                              "sleep",
                              "fail",
                              "crash",
                              "hostpid",
                              "demo.worker",
                              "example.upper",
                              "example.sum",
                              "example.print",
                              "example.init",
                              "example.initialized"};
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++)
        cr_assert(s_offers(expected[i]), "hello lacks %s", expected[i]);
    cr_assert_eq(s_hello.function_count, 13);
    cr_assert_eq(s_credits, 2, "one credit per idle process, no more");
    char *id = zframe_strdup(s_peer);
    cr_assert_eq(strlen(id), 17);
    cr_assert_eq(id[0], 'W');
    cr_assert_eq(strspn(id + 1, "0123456789abcdef"), 16);
    free(id);
}

Test(worker_daemon, echo_and_module_functions_return_their_values)
{
    s_start_ready("2", NULL);
    dpool_msg_t msg = {0};
    msgpack_unpacked result;
    msgpack_unpacked_init(&result);
    s_send_task(1, "echo", "round trip", -1);
    s_expect_result(1, &msg, &result, 5000);
    cr_assert_eq(msg.code, DPOOL_OK);
    cr_assert_eq(msg.count, 1, "the process is idle again: its credit comes back");
    cr_assert_eq(result.data.type, MSGPACK_OBJECT_STR);
    cr_assert_eq(result.data.via.str.size, 10);
    cr_assert_eq(memcmp(result.data.via.str.ptr, "round trip", 10), 0);
    s_send_task(2, "example.upper", "abc", -1);
    s_expect_result(2, &msg, &result, 5000);
    cr_assert_eq(msg.code, DPOOL_OK);
    cr_assert_eq(result.data.via.str.size, 3);
    cr_assert_eq(memcmp(result.data.via.str.ptr, "ABC", 3), 0);
    // Without --initializer, example.init never ran.
    s_send_task(3, "example.initialized", NULL, -1);
    s_expect_result(3, &msg, &result, 5000);
    cr_assert_eq(msg.code, DPOOL_OK, "%s", msg.text ? msg.text : "");
    cr_assert_eq(result.data.type, MSGPACK_OBJECT_ARRAY);
    cr_assert_eq(result.data.via.array.ptr[0].type, MSGPACK_OBJECT_BOOLEAN);
    cr_assert_not(result.data.via.array.ptr[0].via.boolean);
    msgpack_unpacked_destroy(&result);
    dpool_msg_reset(&msg);
}

Test(worker_daemon, printed_output_arrives_before_the_result)
{
    s_start_ready("2", NULL);
    s_send_task(5, "demo.worker", "hi", -1);
    dpool_msg_t msg = {0};
    char out[4096] = "";
    size_t used = 0;
    for (;;) {
        cr_assert(s_recv(&msg, 6000), "no output or result within 6 s");
        if (msg.command == DPOOL_CMD_WORKER_RESULT)
            break;
        if (msg.command != DPOOL_CMD_WORKER_OUTPUT)
            continue;
        cr_assert_eq(msg.task_id, 5);
        cr_assert_eq(msg.count, DPOOL_STREAM_STDOUT);
        cr_assert_lt(used + msg.text_size, sizeof out);
        memcpy(out + used, msg.text, msg.text_size);
        used += msg.text_size;
    }
    cr_assert_eq(msg.task_id, 5);
    cr_assert_eq(msg.code, DPOOL_OK);
    int pid = 0, n = 0;
    double seconds = -1;
    char *second_line = strchr(out, '\n');
    cr_assert_not_null(second_line, "output: %s", out);
    cr_assert_eq(sscanf(out, "hi开始执行,进程号为%d%n", &pid, &n), 1, "output: %s", out);
    cr_assert_eq(out + n, second_line, "output: %s", out);
    cr_assert_eq(sscanf(second_line + 1, "hi 执行完毕,耗时%lf%n", &seconds, &n), 1, "output: %s",
                 out);
    cr_assert_str_eq(second_line + 1 + n, "\n", "exactly two lines: %s", out);
    // demo.worker sleeps up to 2 s; a loaded machine may wake it late.
    cr_assert(seconds >= 0 && seconds < 10, "slept %f s", seconds);
    cr_assert_gt(pid, 0);
    cr_assert_neq(pid, s_pid, "the task ran in a worker process, not the daemon");
    dpool_msg_reset(&msg);
}

Test(worker_daemon, failing_task_returns_task_failed_with_its_message)
{
    s_start_ready("2", NULL);
    dpool_msg_t msg = {0};
    s_send_task(3, "fail", "broken on purpose", -1);
    s_expect_result(3, &msg, NULL, 5000);
    cr_assert_eq(msg.code, DPOOL_ERR_TASK_FAILED);
    cr_assert_str_eq(msg.text, "broken on purpose");
    cr_assert_eq(msg.count, 1);
    s_send_task(4, "no.such.function", NULL, -1);
    s_expect_result(4, &msg, NULL, 5000);
    cr_assert_eq(msg.code, DPOOL_ERR_NO_FUNCTION);
    cr_assert(strstr(msg.text, "no.such.function"), "message: %s", msg.text);
    cr_assert_eq(msg.count, 1, "an unknown function gives its credit back");
    dpool_msg_reset(&msg);
}

Test(worker_daemon, crash_reports_the_signal_and_the_process_is_replaced)
{
    s_start_ready("2", NULL);
    dpool_msg_t msg = {0};
    s_send_task(10, "crash", NULL, -1);
    s_expect_result(10, &msg, NULL, 5000);
    cr_assert_eq(msg.code, DPOOL_ERR_WORKER_LOST);
    cr_assert(strstr(msg.text, "signal 11") && strstr(msg.text, "SIGSEGV"), "message: %s",
              msg.text);
    cr_assert_eq(msg.count, 0, "a dead process returns no credit");
    int crashed = 0;
    cr_assert_eq(sscanf(msg.text, "worker process %d on ", &crashed), 1, "message: %s", msg.text);
    cr_assert_eq(s_credits, 1);
    s_expect(DPOOL_CMD_CREDIT, &msg, 5000);
    cr_assert_eq(msg.count, 1, "the replacement brings one credit");
    cr_assert_eq(s_credits, 2);
    uint64_t pids[2] = {s_hostpid(11), s_hostpid(12)};
    for (int i = 0; i < 2; i++)
        cr_assert_neq(pids[i], (uint64_t)crashed, "the crashed process cannot run tasks");
    cr_assert_eq(kill(crashed, 0), -1, "the crashed process was reaped");
    dpool_msg_reset(&msg);
}

Test(worker_daemon, kill_stops_a_running_task_without_a_result)
{
    s_start_ready("2", NULL);
    dpool_msg_t msg = {0};
    s_send_task(20, "sleep", NULL, 30);
    usleep(200000);
    msg = (dpool_msg_t){.command = DPOOL_CMD_KILL, .task_id = 20};
    cr_assert_eq(dpool_proto_send(s_router, &msg, s_peer), DPOOL_OK);
    // s_expect fails on any WORKER_RESULT, so a result for task 20 fails here.
    s_expect(DPOOL_CMD_CREDIT, &msg, 5000);
    cr_assert_eq(msg.count, 1);
    // A KILL for a task that is not running is ignored.
    dpool_msg_t stale = {.command = DPOOL_CMD_KILL, .task_id = 999};
    cr_assert_eq(dpool_proto_send(s_router, &stale, s_peer), DPOOL_OK);
    s_send_task(21, "echo", "still here", -1);
    s_expect_result(21, &msg, NULL, 5000);
    cr_assert_eq(msg.code, DPOOL_OK);
    cr_assert_eq(s_credits, 2);
    dpool_msg_reset(&msg);
}

// Sends frames as they are, after the daemon's routing id.
static void
s_send_frames(const void *header, size_t header_size, const void *body, size_t body_size,
              const void *payload, size_t payload_size)
{
    zmsg_t *zmsg = zmsg_new();
    zmsg_addmem(zmsg, zframe_data(s_peer), zframe_size(s_peer));
    if (header)
        zmsg_addmem(zmsg, header, header_size);
    if (body)
        zmsg_addmem(zmsg, body, body_size);
    if (payload)
        zmsg_addmem(zmsg, payload, payload_size);
    cr_assert_eq(zmsg_send(&zmsg, s_router), 0);
}

Test(worker_daemon, garbage_from_the_broker_is_dropped_not_fatal)
{
    s_start_ready("2", NULL);
    const uint8_t task_header[] = {'D', 'P', 1, DPOOL_CMD_TASK};
    const uint8_t empty_array[] = {0x90};
    const uint8_t good_args[] = {0x91, 0x01};
    s_send_frames("XXXX", 4, empty_array, 1, NULL, 0);           // bad header
    s_send_frames("DP", 2, empty_array, 1, NULL, 0);             // short header
    s_send_frames("DP\x02\x20", 4, empty_array, 1, NULL, 0);     // bad version
    s_send_frames("DP\x01\x7f", 4, empty_array, 1, NULL, 0);     // unknown command
    s_send_frames(task_header, 4, "\xc1\xc1", 2, good_args, 2);  // bad msgpack
    s_send_frames(task_header, 4, empty_array, 1, good_args, 2); // wrong field count
    s_send_frames(task_header, 4,
                  "\x92\x01\xa4"
                  "echo",
                  7, NULL, 0);                       // no payload
    s_send_frames(task_header, 4, NULL, 0, NULL, 0); // one frame
    const uint8_t result_header[] = {'D', 'P', 1, DPOOL_CMD_RESULT};
    s_send_frames(result_header, 4, "\x93\x01\x00\xc0", 4, NULL, 0); // not for workers
    // A well-formed TASK whose arguments are not an array fails as a task.
    s_send_raw_task(30, "echo", "\x05", 1);
    dpool_msg_t msg = {0};
    s_expect_result(30, &msg, NULL, 5000);
    cr_assert_eq(msg.code, DPOOL_ERR_TASK_FAILED);
    cr_assert(strstr(msg.text, "not a msgpack array"), "message: %s", msg.text);
    s_send_task(31, "echo", "alive", -1);
    s_expect_result(31, &msg, NULL, 5000);
    cr_assert_eq(msg.code, DPOOL_OK);
    int status;
    cr_assert_eq(waitpid(s_pid, &status, WNOHANG), 0, "the daemon is still running");
    dpool_msg_reset(&msg);
}

Test(worker_daemon, maxtasksperchild_replaces_the_process_after_n_tasks)
{
    s_start_ready("1", "2");
    cr_assert_eq(s_hello.count, 1);
    uint64_t first = s_hostpid(40);
    uint64_t second = s_hostpid(41); // its result carries no credit: the process retires
    cr_assert_eq(first, second, "the same process runs its first two tasks");
    cr_assert_eq(s_credits, 0);
    dpool_msg_t msg = {0};
    s_expect(DPOOL_CMD_CREDIT, &msg, 5000);
    cr_assert_eq(msg.count, 1);
    uint64_t third = s_hostpid(42);
    cr_assert_neq(third, first, "a new process runs the third task");
    dpool_msg_reset(&msg);
}

Test(worker_daemon, sigterm_says_bye_stops_processes_and_exits_zero)
{
    s_start_ready("2", NULL);
    uint64_t worker_pid = s_hostpid(50);
    cr_assert_eq(kill((pid_t)worker_pid, 0), 0);
    cr_assert_eq(kill(s_pid, SIGTERM), 0);
    dpool_msg_t msg = {0};
    while (!s_bye)
        cr_assert(s_recv(&msg, 5000), "no BYE within 5 s of SIGTERM");
    int status = 0;
    cr_assert(s_reap(5000, &status), "the daemon did not exit within 5 s");
    s_pid = -1;
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
    cr_assert_eq(kill((pid_t)worker_pid, 0), -1, "worker process %d outlived its daemon",
                 (int)worker_pid);
    dpool_msg_reset(&msg);
}

Test(worker_daemon, output_larger_than_a_pipe_arrives_whole_and_first)
{
    s_start_ready("2", NULL);
    // ["0123456789abcdef", 20000]: 320 000 bytes, five times a pipe's capacity.
    const char args[] = "\x92\xb0"
                        "0123456789abcdef"
                        "\xcd\x4e\x20";
    s_send_raw_task(60, "example.print", args, sizeof args - 1);
    dpool_msg_t msg = {0};
    size_t out_bytes = 0;
    char err[256] = "";
    bool pattern_ok = true;
    for (;;) {
        cr_assert(s_recv(&msg, 10000), "no output or result within 10 s");
        if (msg.command == DPOOL_CMD_WORKER_RESULT)
            break;
        if (msg.command != DPOOL_CMD_WORKER_OUTPUT)
            continue;
        cr_assert_eq(msg.task_id, 60);
        if (msg.count == DPOOL_STREAM_STDERR) {
            cr_assert_lt(strlen(err) + msg.text_size, sizeof err);
            strncat(err, msg.text, msg.text_size);
            continue;
        }
        for (size_t i = 0; i < msg.text_size; i++)
            pattern_ok = pattern_ok && msg.text[i] == "0123456789abcdef"[(out_bytes + i) % 16];
        out_bytes += msg.text_size;
    }
    cr_assert_eq(msg.code, DPOOL_OK, "%s", msg.text ? msg.text : "");
    cr_assert_eq(out_bytes, 320000, "every byte of stdout came before the result");
    cr_assert(pattern_ok, "stdout bytes arrived in order");
    cr_assert_str_eq(err, "example.print done\n");
    dpool_msg_reset(&msg);
}

Test(worker_daemon, bad_flags_and_modules_fail_with_one_line_on_stderr)
{
    char err[1024];
    const char *const bad_count[] = {WORKER_BIN, "--processes", "0", NULL};
    int status = s_run_cli(bad_count, err, sizeof err);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) != 0);
    cr_assert_str_eq(err, "dpool-worker: --processes needs a whole number from 1 to 1024\n");
    const char *const unknown[] = {WORKER_BIN, "--frobnicate", NULL};
    status = s_run_cli(unknown, err, sizeof err);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) != 0);
    cr_assert(strstr(err, "--frobnicate") && strchr(err, '\n') == err + strlen(err) - 1,
              "stderr: %s", err);
    const char *const missing[] = {WORKER_BIN, "--module", "/nonexistent/mod.so", NULL};
    status = s_run_cli(missing, err, sizeof err);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) != 0);
    cr_assert(strstr(err, "/nonexistent/mod.so") && strchr(err, '\n') == err + strlen(err) - 1,
              "stderr: %s", err);
    const char *const version[] = {WORKER_BIN, "--version", NULL};
    status = s_run_cli(version, err, sizeof err);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    cr_assert_str_eq(err, "");
}
