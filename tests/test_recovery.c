/*  Integration: the client's side of failure detection and recovery (docs/PROTOCOL.md,
    "Heartbeats" and "Restarts, re-sends and the journal"), against the real daemons.
    A pool that is idle keeps its place at the broker; a client that vanishes loses its
    private tasks (queued dropped, running killed) but not the task it gave a named pool;
    a client whose broker is killed and restarted without a journal gets every result
    through its re-sends. Restart tests bind the broker to a fixed free port, so the
    restarted broker is where the client's socket reconnects to. Every process is
    stopped by PID. */
#define _GNU_SOURCE // usleep
#include "dpool_harness.h"

#include <criterion/criterion.h>
#include <dpool/dpool.h>
#include <dpool_clock.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static dpool_harness_t *harness;
static char fixed_endpoint[64];

static void
setup(void)
{
    harness = dpool_harness_new();
    cr_assert_not_null(harness);
}

static void
teardown(void)
{
    dpool_harness_destroy(&harness);
}

TestSuite(recovery, .init = setup, .fini = teardown, .timeout = 60);

// Starts the broker on fixed_endpoint (the harness passes its own --bind first; the
// last --bind counts). Retries a little: a port just freed may still be held briefly.
static void
s_start_fixed_broker(void)
{
    const char *extra[] = {"--bind", fixed_endpoint, NULL};
    const char *endpoint = NULL;
    for (int i = 0; i < 20 && !endpoint; i++)
        if (!(endpoint = dpool_harness_start_broker(harness, extra)))
            usleep(100000);
    cr_assert_not_null(endpoint, "the broker did not start on %s", fixed_endpoint);
    cr_assert_str_eq(endpoint, fixed_endpoint, "the extra --bind must win");
}

static void
s_kill_broker(void)
{
    pid_t pid = dpool_harness_broker_pid(harness);
    cr_assert(dpool_harness_signal(harness, pid, SIGKILL));
    dpool_harness_stop(harness, pid); // reaps it
}

// Runs `dpool status --json` and returns the parsed map (owned), or NULL.
static json_t *
s_status(void)
{
    const char *argv[] = {"dpool", "status", "--json", NULL};
    char *out = NULL;
    int rc = dpool_harness_run(harness, argv, NULL, 10, &out, NULL);
    json_t *status = rc == 0 ? json_loads(out, 0, NULL) : NULL;
    free(out);
    return status;
}

// Busy processes across hosts, or -1 when the status could not be read.
static long
s_busy(json_t *status)
{
    if (!status)
        return -1;
    long busy = 0;
    size_t i;
    json_t *host;
    json_array_foreach(json_object_get(status, "hosts"), i, host) busy +=
        (long)json_integer_value(json_object_get(host, "busy"));
    return busy;
}

// The first pool whose name starts with prefix (borrowed from status), or NULL.
static json_t *
s_pool(json_t *status, const char *prefix)
{
    size_t i;
    json_t *pool;
    json_array_foreach(json_object_get(status, "pools"), i, pool)
    {
        const char *name = json_string_value(json_object_get(pool, "name"));
        if (name && strncmp(name, prefix, strlen(prefix)) == 0)
            return pool;
    }
    return NULL;
}

// Starts the dpool CLI with argv (NULL-terminated, argv[0] = "dpool") reading input
// from stdin, its output to the harness folder. Dies with the test. Returns its pid.
static pid_t
s_spawn_cli(const char *const *argv, const char *input)
{
    char in_path[300], log_path[300];
    snprintf(in_path, sizeof in_path, "%s/cli-input-%s", dpool_harness_dir(harness), argv[1]);
    snprintf(log_path, sizeof log_path, "%s/cli.log", dpool_harness_dir(harness));
    FILE *in = fopen(in_path, "w");
    cr_assert_not_null(in);
    fputs(input, in);
    fclose(in);
    pid_t parent = getpid();
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int in_fd = open(in_path, O_RDONLY),
            log = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(in_fd, STDIN_FILENO);
        dup2(log, STDOUT_FILENO);
        dup2(log, STDERR_FILENO);
        setenv("DPOOL_BROKER", dpool_harness_endpoint(harness), 1);
        execv(DPOOL_BIN_DIR "/dpool", (char *const *)argv);
        _exit(127);
    }
    return pid;
}

static void
s_kill_cli(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

static dpool_t *
s_open(const char *endpoint, int processes, unsigned retries)
{
    dpool_opts_t opts = {.broker = endpoint, .processes = processes, .retries = retries};
    dpool_error_t err = {0};
    dpool_t *pool = dpool_new_opts(&opts, &err);
    cr_assert_not_null(pool, "dpool_new_opts: %s", err.message);
    return pool;
}

Test(recovery, an_idle_pool_keeps_its_place_across_5_s_without_traffic)
{
    const char *endpoint = dpool_harness_start_broker(harness, NULL);
    cr_assert_not_null(endpoint);
    cr_assert_gt(dpool_harness_start_worker(harness, 1, NULL), 0);
    cr_assert(dpool_harness_wait_processes(harness, 1, 20));
    dpool_t *pool = s_open(endpoint, 1, 0);
    // The caller says nothing for 5 s while its one task runs: only the heartbeats
    // speak for the client. A dropped private pool would have its task terminated.
    dpool_error_t err = {0};
    dpool_result_t *result = dpool_apply_asyncf(pool, "sleep", "d", 5.5);
    cr_assert_eq(dpool_result_get(result, 20, NULL, &err), DPOOL_OK, "%d %s", err.code,
                 err.message);
    dpool_result_destroy(&result);
    json_t *status = s_status();
    json_t *mine = s_pool(status, "private:");
    cr_assert_not_null(mine, "the idle pool is still open at the broker");
    json_decref(status);
    result = dpool_apply_asyncf(pool, "echo", "i", 7);
    cr_assert_eq(dpool_result_get(result, 10, NULL, &err), DPOOL_OK, "%s", err.message);
    dpool_result_destroy(&result);
    dpool_destroy(&pool);
}

// Waits up to timeout_s for a status where the vanished client's private pool is gone
// and only the named pool's task runs; returns the status (owned) or fails.
static json_t *
s_wait_private_gone(double timeout_s)
{
    int64_t deadline = dpool_clock_ms() + (int64_t)(timeout_s * 1000);
    while (dpool_clock_ms() < deadline) {
        json_t *status = s_status();
        if (status && !s_pool(status, "private:") && s_busy(status) == 1)
            return status;
        json_decref(status);
        usleep(100000);
    }
    cr_assert_fail("the vanished client's private tasks still run after %.0f s", timeout_s);
    return NULL;
}

Test(recovery, a_vanished_client_loses_its_private_tasks_but_not_its_named_pool_task)
{
    cr_assert_not_null(dpool_harness_start_broker(harness, NULL));
    cr_assert_gt(dpool_harness_start_worker(harness, 3, NULL), 0);
    cr_assert(dpool_harness_wait_processes(harness, 3, 20));
    // Private pool of cap 2: two 30 s tasks run, two wait. Named pool: one 8 s task.
    const char *map_argv[] = {"dpool", "map", "-n", "2", "--no-progress", "sleep", NULL};
    pid_t private_client = s_spawn_cli(map_argv, "30\n30\n30\n30\n");
    const char *apply_argv[] = {"dpool", "apply", "-p", "survivor", "sleep", "8", NULL};
    pid_t named_client = s_spawn_cli(apply_argv, "");
    int64_t deadline = dpool_clock_ms() + 15000;
    long busy = 0;
    while (busy != 3 && dpool_clock_ms() < deadline) {
        json_t *status = s_status();
        busy = s_busy(status);
        json_decref(status);
        usleep(50000);
    }
    cr_assert_eq(busy, 3, "both clients' tasks should be running");
    int64_t killed = dpool_clock_ms();
    s_kill_cli(private_client);
    s_kill_cli(named_client);
    json_t *status = s_wait_private_gone(12);
    int64_t elapsed = dpool_clock_ms() - killed;
    json_t *survivor = s_pool(status, "survivor");
    cr_assert_not_null(survivor, "the named pool lives on with its task");
    cr_assert_eq(json_integer_value(json_object_get(survivor, "running")), 1);
    json_decref(status);
    // 3 s of liveness, a tick, the KILL and a replacement's credit, with slack for load.
    cr_assert_lt(elapsed, 10000, "dropped after the 3 s liveness (+ a heartbeat), not %lld ms",
                 (long long)elapsed);
    // The freed processes serve another client at once: nothing of the vanished private
    // pool (queued or running) is left to compete.
    dpool_t *pool = s_open(dpool_harness_endpoint(harness), 2, 0);
    int64_t start = dpool_clock_ms();
    dpool_result_t *a = dpool_apply_asyncf(pool, "sleep", "d", 0.1);
    dpool_result_t *b = dpool_apply_asyncf(pool, "sleep", "d", 0.1);
    cr_assert_eq(dpool_result_get(a, 10, NULL, NULL), DPOOL_OK);
    cr_assert_eq(dpool_result_get(b, 10, NULL, NULL), DPOOL_OK);
    cr_assert_lt(dpool_clock_ms() - start, 3000);
    dpool_result_destroy(&a);
    dpool_result_destroy(&b);
    dpool_destroy(&pool);
    // The named pool's task runs to its end (8 s after it started), then the pool goes.
    deadline = dpool_clock_ms() + 10000;
    bool finished = false;
    while (!finished && dpool_clock_ms() < deadline) {
        status = s_status();
        finished = status && !s_pool(status, "survivor") && s_busy(status) == 0;
        json_decref(status);
        usleep(100000);
    }
    cr_assert(finished, "the named pool's task should finish and the pool go");
}

Test(recovery, a_broker_restarted_without_journal_still_gives_every_result)
{
    int port = dpool_harness_free_port();
    cr_assert_gt(port, 0, "no free loopback port");
    snprintf(fixed_endpoint, sizeof fixed_endpoint, "tcp://127.0.0.1:%d", port);
    s_start_fixed_broker();
    cr_assert_gt(dpool_harness_start_worker(harness, 2, NULL), 0);
    cr_assert(dpool_harness_wait_processes(harness, 2, 20));
    dpool_t *pool = s_open(fixed_endpoint, 2, 2);
    enum { TASKS = 20 };
    dpool_result_t *results[TASKS];
    for (int i = 0; i < TASKS; i++)
        results[i] = dpool_apply_asyncf(pool, "sleep", "d", 0.2);
    usleep(500000);
    // The broker forgets everything: only the client's re-sends bring the tasks back.
    s_kill_broker();
    usleep(300000);
    s_start_fixed_broker();
    for (int i = 0; i < TASKS; i++) {
        dpool_error_t err = {0};
        cr_assert_eq(dpool_result_get(results[i], 30, NULL, &err), DPOOL_OK, "task %d: %d %s", i,
                     err.code, err.message);
        dpool_result_destroy(&results[i]);
    }
    dpool_destroy(&pool);
}
