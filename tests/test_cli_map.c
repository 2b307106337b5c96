/*  `dpool map` end to end (order, --unordered, the failing line and exit status,
    lines that are not JSON, a long stream) and the pool options that need real
    workers: a per-task time limit, and retries after a worker daemon is killed while
    it runs a task. A real dpool-broker and real dpool-worker daemons on loopback. */
#include "dpool_harness.h"

#include <criterion/criterion.h>
#include <czmq.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <dpool/dpool.h>
#include <jansson.h>
#include <msgpack.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static dpool_harness_t *harness;

static void
start_cluster(int workers, int processes)
{
    harness = dpool_harness_new();
    cr_assert_not_null(harness);
    cr_assert_not_null(dpool_harness_start_broker(harness, NULL));
    const char *args[] = {"--module", DPOOL_LIB_DIR "/dpool_test_module.so", NULL};
    for (int i = 0; i < workers; i++)
        cr_assert_gt(dpool_harness_start_worker(harness, processes, args), 0);
    cr_assert(dpool_harness_wait_processes(harness, workers * processes, 20));
}

static void
setup(void)
{
    start_cluster(1, 2);
}

static void
setup_two_workers(void)
{
    start_cluster(2, 1);
}

static void
teardown(void)
{
    dpool_harness_destroy(&harness);
}

TestSuite(cli_map, .init = setup, .fini = teardown, .timeout = 60);

// Runs `dpool map --no-progress EXTRA... FUNC` on input; returns the exit status.
static int
s_map(const char *function, const char *const *extra, const char *input, char **out, char **err)
{
    const char *argv[16] = {"dpool", "map", "--no-progress", "--broker",
                            dpool_harness_endpoint(harness)};
    int argc = 5;
    for (int i = 0; extra && extra[i]; i++)
        argv[argc++] = extra[i];
    argv[argc++] = function;
    argv[argc] = NULL;
    return dpool_harness_run(harness, argv, input, 50, out, err);
}

Test(cli_map, prints_one_result_per_line_in_input_order)
{
    char *input = calloc(1, 8 * 300), *want = calloc(1, 8 * 300);
    for (int i = 1; i <= 300; i++)
        sprintf(input + strlen(input), "%d\n", i);
    strcpy(want, input);
    const char *chunked[] = {"--chunksize", "7", NULL};
    const char *const *options[] = {NULL, chunked};
    for (int i = 0; i < 2; i++) {
        char *out = NULL, *err = NULL;
        cr_assert_eq(s_map("echo", options[i], input, &out, &err), 0, "stderr: %s", err);
        cr_assert_str_eq(out, want);
        cr_assert_str_eq(err, "");
        free(out);
        free(err);
    }
    free(input);
    free(want);
}

Test(cli_map, lines_that_are_not_json_are_strings)
{
    char *out = NULL;
    const char *input = "hello\n[1, 2]\n{\"a\": 1}\n\"quoted\"\n\n2.5\nnull\n1x\n";
    cr_assert_eq(s_map("echo", NULL, input, &out, NULL), 0);
    cr_assert_str_eq(out, "\"hello\"\n[1,2]\n{\"a\":1}\n\"quoted\"\n\"\"\n2.5\nnull\n\"1x\"\n");
    free(out);
    // the last line needs no newline
    cr_assert_eq(s_map("echo", NULL, "1\n2", &out, NULL), 0);
    cr_assert_str_eq(out, "1\n2\n");
    free(out);
}

Test(cli_map, a_failing_line_stops_with_its_number_after_the_results_before_it)
{
    char *out = NULL, *err = NULL;
    const char *input = "0\n0\n-1\n0\n0\n";
    cr_assert_eq(s_map("test.span", NULL, input, &out, &err), 1);
    int lines = 0;
    for (const char *p = out; *p; p++)
        lines += *p == '\n';
    cr_assert_eq(lines, 2, "the two results before line 3: %s", out);
    cr_assert_str_eq(err, "dpool: map: line 3: task failed: test.span needs [seconds] from 0 "
                          "to 60\n");
    free(out);
    free(err);
}

Test(cli_map, unordered_prints_in_completion_order)
{
    char *out = NULL, *err = NULL;
    const char *unordered[] = {"--unordered", NULL};
    cr_assert_eq(s_map("test.span", unordered, "0.6\n0\n", &out, &err), 0, "%s", err);
    json_error_t error;
    char *newline = strchr(out, '\n');
    cr_assert_not_null(newline);
    json_t *first = json_loadb(out, (size_t)(newline - out), 0, &error);
    cr_assert_not_null(first);
    double took = json_number_value(json_object_get(first, "end")) -
                  json_number_value(json_object_get(first, "start"));
    cr_assert_lt(took, 0.3, "the quick item (line 2) comes first, not the %.2f s one", took);
    json_decref(first);
    cr_assert_not_null(strchr(newline + 1, '\n'), "both results: %s", out);
    free(out);
    free(err);
}

// Runs `dpool map --chunksize 500 echo` with stdin and stdout on files (not through
// pipes, which the harness fills whole before reading: a stream that reads its input as
// it goes would wait for its output to be read). Returns the exit status, -1 if killed.
static int
s_map_files(const char *in_path, const char *out_path)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int in = open(in_path, O_RDONLY), out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (in < 0 || out < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0)
            _exit(127);
        execl(DPOOL_BIN_DIR "/dpool", "dpool", "map", "--no-progress", "--chunksize", "500",
              "--broker", dpool_harness_endpoint(harness), "echo", (char *)NULL);
        _exit(127);
    }
    int64_t deadline = zclock_mono() + 40000;
    int status = 0;
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (zclock_mono() > deadline) {
            kill(pid, SIGKILL); // by PID: the one child this test started
            waitpid(pid, &status, 0);
            return -1;
        }
        zclock_sleep(20);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

Test(cli_map, streams_a_hundred_thousand_lines)
{
    size_t count = 100000, at = 0;
    char *input = malloc(count * 8), in_path[512], out_path[512];
    for (size_t i = 0; i < count; i++)
        at += (size_t)sprintf(input + at, "%zu\n", i);
    snprintf(in_path, sizeof in_path, "%s/lines.in", dpool_harness_dir(harness));
    snprintf(out_path, sizeof out_path, "%s/lines.out", dpool_harness_dir(harness));
    FILE *file = fopen(in_path, "w");
    cr_assert_not_null(file);
    cr_assert_eq(fwrite(input, 1, at, file), at);
    fclose(file);
    cr_assert_eq(s_map_files(in_path, out_path), 0);
    char *out = malloc(at + 2);
    file = fopen(out_path, "r");
    cr_assert_not_null(file);
    size_t got = fread(out, 1, at + 1, file);
    fclose(file);
    cr_assert_eq(got, at, "%zu bytes of results for %zu of input", got, at);
    cr_assert(memcmp(out, input, at) == 0, "100000 results, in order");
    free(out);
    free(input);
}

Test(cli_map, usage_errors_exit_2_and_help_tells_the_string_rule)
{
    char *out = NULL, *err = NULL;
    cr_assert_eq(s_map("echo", (const char *[]){"--chunksize", "0", NULL}, "", NULL, &err), 2);
    cr_assert(strstr(err, "--chunksize"), "%s", err);
    free(err);
    const char *argv[] = {"dpool", "map", "--help", NULL};
    cr_assert_eq(dpool_harness_run(harness, argv, NULL, 10, &out, NULL), 0);
    cr_assert(strstr(out, "else as a string"), "--help: %s", out);
    free(out);
    const char *none[] = {"dpool", "map", NULL};
    cr_assert_eq(dpool_harness_run(harness, none, NULL, 10, NULL, NULL), 2);
}

Test(cli_map, timeout_kills_a_task_past_its_time_limit)
{
    char *out = NULL, *err = NULL;
    const char *limited[] = {"--timeout", "0.3", NULL};
    int64_t start = zclock_mono();
    cr_assert_eq(s_map("sleep", limited, "0\n5\n", &out, &err), 1);
    cr_assert_lt(zclock_mono() - start, 4000);
    cr_assert(strchr(out, '\n') && !strchr(strchr(out, '\n') + 1, '\n'), "one result: %s", out);
    cr_assert(strstr(err, "line 2: ") && strstr(err, "time limit"), "%s", err);
    free(out);
    free(err);
}

Test(cli_map, time_limit_fails_a_task_as_timed_out)
{
    dpool_opts_t opts = {.broker = dpool_harness_endpoint(harness), .time_limit = 0.3};
    dpool_t *pool = dpool_new_opts(&opts, NULL);
    cr_assert_not_null(pool);
    dpool_error_t err = {0};
    dpool_buf_t args = {0};
    cr_assert_eq(dpool_pack(&args, "d", 5.0), DPOOL_OK);
    int64_t start = zclock_mono();
    cr_assert_eq(dpool_apply(pool, "sleep", &args, NULL, &err), DPOOL_ERR_TASK_TIMEOUT);
    cr_assert_lt(zclock_mono() - start, 3000);
    cr_assert(strstr(err.message, "time limit"), "%s", err.message);
    dpool_buf_free(&args);
    cr_assert_eq(dpool_pack(&args, "d", 0.01), DPOOL_OK);
    cr_assert_eq(dpool_apply(pool, "sleep", &args, NULL, &err), DPOOL_OK, "a quick task is fine");
    dpool_buf_free(&args);
    dpool_destroy(&pool);
}

TestSuite(retries, .init = setup_two_workers, .fini = teardown, .timeout = 60);

// The pid of the worker daemon running a task now, from the broker's status; 0 if none.
static pid_t
s_busy_daemon(void)
{
    const char *argv[] = {"dpool", "status", "--json", "--broker", dpool_harness_endpoint(harness),
                          NULL};
    char *out = NULL;
    cr_assert_eq(dpool_harness_run(harness, argv, NULL, 10, &out, NULL), 0);
    json_t *status = json_loads(out, 0, NULL);
    free(out);
    cr_assert_not_null(status);
    pid_t busy = 0;
    size_t i;
    json_t *host;
    json_array_foreach(json_object_get(status, "hosts"), i,
                       host) if (json_integer_value(json_object_get(host, "busy")) > 0) busy =
        (pid_t)json_integer_value(json_object_get(host, "pid"));
    json_decref(status);
    return busy;
}

// Starts a 4 s test.span in a pool with `retries`, SIGKILLs the daemon running it,
// and returns the task's outcome (*value: its result). The span outlasts finding the
// busy daemon through `dpool status` runs, slow under sanitizers on a loaded machine.
static int
s_span_through_a_killed_daemon(unsigned retries, dpool_buf_t *value, dpool_error_t *err)
{
    dpool_opts_t opts = {
        .broker = dpool_harness_endpoint(harness), .processes = 1, .retries = retries};
    dpool_t *pool = dpool_new_opts(&opts, NULL);
    cr_assert_not_null(pool);
    dpool_result_t *result = dpool_apply_asyncf(pool, "test.span", "d", 4.0);
    pid_t busy = 0;
    for (int i = 0; i < 50 && !busy; i++) {
        zclock_sleep(50);
        busy = s_busy_daemon();
    }
    cr_assert_gt(busy, 0, "no daemon took the task");
    cr_assert(dpool_harness_signal(harness, busy, SIGKILL));
    // the broker hears nothing from it for 3 s, then fails or re-runs the task
    int rc = dpool_result_get(result, 20, value, err);
    dpool_result_destroy(&result);
    dpool_destroy(&pool);
    return rc;
}

Test(retries, a_task_whose_daemon_dies_runs_again_elsewhere)
{
    dpool_buf_t value = {0};
    dpool_error_t err = {0};
    cr_assert_eq(s_span_through_a_killed_daemon(1, &value, &err), DPOOL_OK, "%s", err.message);
    msgpack_unpacked span;
    msgpack_unpacked_init(&span);
    cr_assert_eq(msgpack_unpack_next(&span, value.data, value.size, NULL), MSGPACK_UNPACK_SUCCESS);
    cr_assert_eq(span.data.type, MSGPACK_OBJECT_MAP, "a span from the surviving worker");
    msgpack_unpacked_destroy(&span);
    dpool_buf_free(&value);
}

Test(retries, without_retries_the_task_fails_naming_the_host)
{
    dpool_error_t err = {0};
    cr_assert_eq(s_span_through_a_killed_daemon(0, NULL, &err), DPOOL_ERR_WORKER_LOST);
    cr_assert(strstr(err.message, "host"), "%s", err.message);
}
