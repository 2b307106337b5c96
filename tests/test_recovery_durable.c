/*  Integration: issue 5's durability test. 1,000 tasks in flight on 2 worker daemons x 2
    processes; the broker (with --journal) is killed with SIGKILL twice during the run
    and restarted on its journal, and one worker daemon is killed once and started
    again. Every one of the 1,000 results must reach the client, each exactly once, all
    successful: the journal and the client's re-sends bring back what the broker lost,
    the pool's retries re-run what the dead worker was running. Execution is at least
    once (a task running when the broker died runs again); delivery is exactly once. */
#define _GNU_SOURCE // usleep
#include "dpool_harness.h"

#include <criterion/criterion.h>
#include <dpool/dpool.h>
#include <dpool_clock.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TASKS 1000

static dpool_harness_t *harness;
static char endpoint[64];
static char journal[300];

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

TestSuite(recovery_durable, .init = setup, .fini = teardown, .timeout = 90);

// The broker on the fixed endpoint with its journal (the last --bind counts).
static void
s_start_broker(void)
{
    const char *extra[] = {"--bind", endpoint, "--journal", journal, NULL};
    const char *started = NULL;
    for (int i = 0; i < 20 && !started; i++)
        if (!(started = dpool_harness_start_broker(harness, extra)))
            usleep(100000);
    cr_assert_not_null(started, "the broker did not start on %s", endpoint);
    cr_assert_str_eq(started, endpoint);
}

static void
s_kill(pid_t pid)
{
    cr_assert(dpool_harness_signal(harness, pid, SIGKILL));
    dpool_harness_stop(harness, pid); // reaps it
}

static pid_t
s_start_worker(void)
{
    const char *args[] = {"--module", DPOOL_LIB_DIR "/dpool_test_module.so", NULL};
    pid_t pid = dpool_harness_start_worker(harness, 2, args);
    cr_assert_gt(pid, 0);
    return pid;
}

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int delivered[TASKS]; // outcomes delivered per task, by the callbacks
    int successes, failures;
    char first_failure[320];
} tally_t;

typedef struct {
    tally_t *tally;
    int index;
} slot_t;

static void
s_on_value(void *arg, const char *data, size_t size)
{
    (void)data;
    (void)size;
    slot_t *slot = arg;
    pthread_mutex_lock(&slot->tally->lock);
    slot->tally->delivered[slot->index]++;
    slot->tally->successes++;
    pthread_cond_broadcast(&slot->tally->changed);
    pthread_mutex_unlock(&slot->tally->lock);
}

static void
s_on_error(void *arg, const dpool_error_t *err)
{
    slot_t *slot = arg;
    tally_t *tally = slot->tally;
    pthread_mutex_lock(&tally->lock);
    tally->delivered[slot->index]++;
    if (tally->failures++ == 0)
        snprintf(tally->first_failure, sizeof tally->first_failure, "task %d: %s (%d)", slot->index,
                 err->message, err->code);
    pthread_cond_broadcast(&tally->changed);
    pthread_mutex_unlock(&tally->lock);
}

// Waits until at least `count` outcomes are in, for at most timeout_s. Returns how many.
static int
s_wait_outcomes(tally_t *tally, int count, double timeout_s)
{
    int64_t deadline = dpool_clock_ms() + (int64_t)(timeout_s * 1000);
    pthread_mutex_lock(&tally->lock);
    while (tally->successes + tally->failures < count && dpool_clock_ms() < deadline) {
        pthread_mutex_unlock(&tally->lock);
        usleep(20000);
        pthread_mutex_lock(&tally->lock);
    }
    int done = tally->successes + tally->failures;
    pthread_mutex_unlock(&tally->lock);
    return done;
}

static void
s_log_step(int64_t start, const char *what, int done)
{
    fprintf(stderr, "recovery_durable: %6.2f s  %-32s (%d outcomes in)\n",
            (double)(dpool_clock_ms() - start) / 1000.0, what, done);
}

Test(recovery_durable, thousand_tasks_survive_two_broker_kills_and_a_worker_kill)
{
    int port = dpool_harness_free_port();
    cr_assert_gt(port, 0, "no free loopback port");
    snprintf(endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", port);
    snprintf(journal, sizeof journal, "%s/journal", dpool_harness_dir(harness));
    cr_assert_eq(mkdir(journal, 0700), 0);
    s_start_broker();
    pid_t victim = s_start_worker();
    s_start_worker();
    cr_assert(dpool_harness_wait_processes(harness, 4, 20), "the workers did not register");

    dpool_opts_t opts = {.broker = endpoint, .processes = 4, .retries = 3};
    dpool_error_t err = {0};
    dpool_t *pool = dpool_new_opts(&opts, &err);
    cr_assert_not_null(pool, "%s", err.message);
    static tally_t tally;
    memset(&tally, 0, sizeof tally);
    pthread_mutex_init(&tally.lock, NULL);
    pthread_cond_init(&tally.changed, NULL);
    static slot_t slots[TASKS];
    static dpool_result_t *results[TASKS];
    int64_t start = dpool_clock_ms();
    for (int i = 0; i < TASKS; i++) {
        slots[i] = (slot_t){&tally, i};
        dpool_callbacks_t callbacks = {s_on_value, s_on_error, &slots[i]};
        dpool_buf_t args = {0};
        cr_assert_eq(dpool_pack(&args, "d", 0.01 + 0.01 * (i % 5)), DPOOL_OK);
        results[i] = dpool_apply_async_cb(pool, "test.span", &args, &callbacks, &err);
        dpool_buf_free(&args);
        cr_assert_not_null(results[i], "submit %d: %s", i, err.message);
    }
    s_log_step(start, "1,000 tasks submitted", s_wait_outcomes(&tally, 0, 0));

    // Each fault strikes while the run is well under way and far from over.
    s_log_step(start, "broker killed (1)", s_wait_outcomes(&tally, 150, 20));
    s_kill(dpool_harness_broker_pid(harness));
    s_start_broker();
    s_log_step(start, "worker daemon killed", s_wait_outcomes(&tally, 400, 20));
    s_kill(victim);
    s_start_worker();
    s_log_step(start, "broker killed (2)", s_wait_outcomes(&tally, 650, 20));
    s_kill(dpool_harness_broker_pid(harness));
    s_start_broker();
    int done = s_wait_outcomes(&tally, TASKS, 40);
    s_log_step(start, "all outcomes in", done);

    pthread_mutex_lock(&tally.lock);
    cr_assert_eq(tally.failures, 0, "%d failures, first: %s", tally.failures, tally.first_failure);
    cr_assert_eq(tally.successes, TASKS, "%d of %d results arrived", tally.successes, TASKS);
    for (int i = 0; i < TASKS; i++)
        cr_assert_eq(tally.delivered[i], 1, "task %d delivered %d times", i, tally.delivered[i]);
    pthread_mutex_unlock(&tally.lock);
    for (int i = 0; i < TASKS; i++) {
        cr_assert_eq(dpool_result_successful(results[i]), 1, "task %d", i);
        dpool_result_destroy(&results[i]);
    }
    // Nothing more arrives for them later: a second RESULT after a re-run is dropped.
    usleep(500000);
    pthread_mutex_lock(&tally.lock);
    cr_assert_eq(tally.successes + tally.failures, TASKS);
    pthread_mutex_unlock(&tally.lock);
    dpool_destroy(&pool);
}
