/*  Integration: the seed programs (examples/seed_pool.c, seed_apply.c) against a broker
    and two worker daemons of 2 processes each, judged by what they print: the lines
    the workers' demo.worker prints, forwarded to the client's stdout. */
#include "dpool_harness.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static dpool_harness_t *harness;

static void
setup(void)
{
    harness = dpool_harness_new();
    cr_assert_not_null(harness);
    cr_assert_not_null(dpool_harness_start_broker(harness, NULL));
    for (int i = 0; i < 2; i++)
        cr_assert_gt(dpool_harness_start_worker(harness, 2, NULL), 0);
    cr_assert(dpool_harness_wait_processes(harness, 4, 20), "the workers did not register");
}

static void
teardown(void)
{
    dpool_harness_destroy(&harness);
}

TestSuite(seed, .init = setup, .fini = teardown, .timeout = 120);

typedef struct {
    int started;      // start lines seen
    int finished;     // finish lines seen
    int most_running; // most tasks started and not finished at one point
    bool strictly_one_at_a_time;
    bool seen_start[10];
    bool seen_finish[10];
    int pids[10];
    char first[64];
    char last[64];
    int other; // lines that are none of the expected ones
} transcript_t;

static void
read_line(transcript_t *t, const char *line, int *running_task)
{
    int task, pid;
    double seconds;
    char tail[64];
    if (sscanf(line, "%d开始执行,进程号为%d%63s", &task, &pid, tail) == 2 && task >= 0 &&
        task < 10) {
        t->seen_start[task] = true;
        t->pids[task] = pid;
        t->started++;
        if (*running_task != -1)
            t->strictly_one_at_a_time = false;
        *running_task = task;
    } else if (sscanf(line, "%d 执行完毕,耗时%lf%63s", &task, &seconds, tail) == 2 && task >= 0 &&
               task < 10 && seconds >= 0 && seconds < 10) {
        t->seen_finish[task] = t->seen_start[task];
        t->finished++;
        if (*running_task != task)
            t->strictly_one_at_a_time = false;
        *running_task = -1;
    } else if (strcmp(line, "----start----") != 0 && strcmp(line, "-----end-----") != 0) {
        t->other++;
    }
    int running = t->started - t->finished;
    if (running > t->most_running)
        t->most_running = running;
}

static transcript_t
transcript_of(char *out)
{
    transcript_t t = {.strictly_one_at_a_time = true};
    int running_task = -1;
    char *save = NULL;
    bool first = true;
    for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (first)
            snprintf(t.first, sizeof t.first, "%s", line);
        first = false;
        snprintf(t.last, sizeof t.last, "%s", line);
        read_line(&t, line, &running_task);
    }
    return t;
}

static void
assert_every_task_ran_once(const transcript_t *t)
{
    cr_assert_eq(t->started, 10, "%d start lines", t->started);
    cr_assert_eq(t->finished, 10, "%d finish lines", t->finished);
    for (int i = 0; i < 10; i++) {
        cr_assert(t->seen_start[i] && t->seen_finish[i], "task %d missing or finished first", i);
        cr_assert_gt(t->pids[i], 0);
    }
    cr_assert_eq(t->other, 0, "%d unexpected lines", t->other);
}

Test(seed, seed_pool_prints_start_first_end_last_and_runs_at_most_three_at_once)
{
    char *out = NULL, *err = NULL;
    const char *argv[] = {"seed_pool", NULL};
    int status = dpool_harness_run(harness, argv, NULL, 90, &out, &err);
    cr_assert_eq(status, 0, "seed_pool exited %d: %s", status, err);
    transcript_t t = transcript_of(out);
    cr_assert_str_eq(t.first, "----start----");
    cr_assert_str_eq(t.last, "-----end-----");
    assert_every_task_ran_once(&t);
    cr_assert_leq(t.most_running, 3, "%d tasks ran at once in a Pool(3)", t.most_running);
    cr_assert_geq(t.most_running, 2, "the pool never ran two tasks at once");
    int distinct = 0;
    for (int i = 0; i < 10; i++) {
        bool again = false;
        for (int j = 0; j < i; j++)
            again = again || t.pids[j] == t.pids[i];
        distinct += !again;
    }
    cr_assert_geq(distinct, 2, "all ten tasks ran in one process");
    free(out);
    free(err);
}

Test(seed, seed_apply_runs_the_tasks_strictly_one_after_another)
{
    char *out = NULL, *err = NULL;
    const char *argv[] = {"seed_apply", NULL};
    int status = dpool_harness_run(harness, argv, NULL, 90, &out, &err);
    cr_assert_eq(status, 0, "seed_apply exited %d: %s", status, err);
    transcript_t t = transcript_of(out);
    assert_every_task_ran_once(&t);
    cr_assert(t.strictly_one_at_a_time, "a task started before the previous one finished");
    cr_assert_eq(t.most_running, 1);
    free(out);
    free(err);
}

Test(seed, seed_pool_without_a_broker_fails_with_one_line)
{
    dpool_harness_t *lonely = dpool_harness_new();
    char *out = NULL, *err = NULL;
    // No broker is started: the endpoint is a loopback port nobody listens on.
    char endpoint[64];
    int port = dpool_harness_free_port();
    cr_assert_gt(port, 0, "no free loopback port");
    snprintf(endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", port);
    setenv("DPOOL_BROKER", endpoint, 1);
    const char *argv[] = {"seed_pool", NULL};
    int status = dpool_harness_run(lonely, argv, NULL, 60, &out, &err);
    cr_assert_neq(status, 0, "seed_pool succeeded without a broker");
    cr_assert(strchr(err, '\n') == NULL || strchr(err, '\n') == err + strlen(err) - 1,
              "not one line: %s", err);
    cr_assert(strstr(err, "unreachable"), "stderr: %s", err);
    free(out);
    free(err);
    dpool_harness_destroy(&lonely);
}
