/*  Integration: the cap holds across worker hosts, measured from the workers' own
    start/finish timestamps (test.span), with more processes available than the cap. */
#include "dpool_harness.h"

#include <criterion/criterion.h>
#include <dpool/dpool.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

static dpool_harness_t *harness;
static const char *endpoint;

// Two worker daemons of 2 processes each: 4 processes in all.
static void
setup(void)
{
    harness = dpool_harness_new();
    cr_assert_not_null(harness);
    endpoint = dpool_harness_start_broker(harness, NULL);
    cr_assert_not_null(endpoint, "the broker did not start");
    const char *worker_args[] = {"--module", DPOOL_LIB_DIR "/dpool_test_module.so", NULL};
    for (int i = 0; i < 2; i++)
        cr_assert_gt(dpool_harness_start_worker(harness, 2, worker_args), 0);
    cr_assert(dpool_harness_wait_processes(harness, 4, 20), "the workers did not register");
}

static void
teardown(void)
{
    dpool_harness_destroy(&harness);
}

TestSuite(cap, .init = setup, .fini = teardown, .timeout = 90);

typedef struct {
    double start;
    double end;
    long pid;
} span_t;

static double
number_of(const msgpack_object *obj)
{
    if (obj->type == MSGPACK_OBJECT_FLOAT64 || obj->type == MSGPACK_OBJECT_FLOAT32)
        return obj->via.f64;
    if (obj->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        return (double)obj->via.u64;
    return -1;
}

static span_t
span_of(dpool_result_t *result)
{
    dpool_buf_t value = {0};
    dpool_error_t err = {0};
    cr_assert_eq(dpool_result_get(result, 60, &value, &err), DPOOL_OK, "%s", err.message);
    msgpack_unpacked unpacked;
    msgpack_unpacked_init(&unpacked);
    cr_assert_eq(msgpack_unpack_next(&unpacked, value.data, value.size, NULL),
                 MSGPACK_UNPACK_SUCCESS);
    span_t span = {-1, -1, -1};
    msgpack_object map = unpacked.data;
    cr_assert_eq(map.type, MSGPACK_OBJECT_MAP);
    for (uint32_t i = 0; i < map.via.map.size; i++) {
        msgpack_object key = map.via.map.ptr[i].key;
        double number = number_of(&map.via.map.ptr[i].val);
        if (key.via.str.size == 5 && memcmp(key.via.str.ptr, "start", 5) == 0)
            span.start = number;
        else if (key.via.str.size == 3 && memcmp(key.via.str.ptr, "end", 3) == 0)
            span.end = number;
        else if (key.via.str.size == 3 && memcmp(key.via.str.ptr, "pid", 3) == 0)
            span.pid = (long)number;
    }
    cr_assert(span.start > 0 && span.end >= span.start && span.pid > 0);
    msgpack_unpacked_destroy(&unpacked);
    dpool_buf_free(&value);
    return span;
}

// The most spans running at one instant: +1 at each start, -1 at each end, ends first
// on ties (a task that ends as another starts did not overlap it).
static int
max_overlap(const span_t *spans, size_t count)
{
    int best = 0;
    for (size_t i = 0; i < count; i++) {
        int running = 0;
        for (size_t j = 0; j < count; j++)
            if (spans[j].start <= spans[i].start && spans[j].end > spans[i].start)
                running++;
        if (running > best)
            best = running;
    }
    return best;
}

static dpool_t *
open_pool(int processes)
{
    dpool_opts_t opts;
    dpool_opts_init(&opts);
    opts.broker = endpoint;
    opts.processes = processes;
    dpool_error_t err = {0};
    dpool_t *pool = dpool_new_opts(&opts, &err);
    cr_assert_not_null(pool, "%s", err.message);
    return pool;
}

Test(cap, three_of_four_processes_run_a_cap_3_pool)
{
    enum { TASKS = 15 };
    dpool_t *pool = open_pool(3);
    cr_assert_eq(dpool_cap(pool), 3);
    dpool_result_t *results[TASKS];
    for (int i = 0; i < TASKS; i++)
        results[i] = dpool_apply_asyncf(pool, "test.span", "d", 0.3);
    span_t spans[TASKS];
    for (int i = 0; i < TASKS; i++) {
        spans[i] = span_of(results[i]);
        dpool_result_destroy(&results[i]);
    }
    int overlap = max_overlap(spans, TASKS);
    cr_assert_leq(overlap, 3, "%d tasks of a cap-3 pool ran at once", overlap);
    cr_assert_geq(overlap, 2, "the pool never ran tasks in parallel");
    dpool_destroy(&pool);
}

Test(cap, cap_0_means_every_process_of_the_cluster)
{
    dpool_t *pool = open_pool(0);
    cr_assert_eq(dpool_cap(pool), 4);
    enum { TASKS = 8 };
    dpool_result_t *results[TASKS];
    for (int i = 0; i < TASKS; i++)
        results[i] = dpool_apply_asyncf(pool, "test.span", "d", 0.3);
    span_t spans[TASKS];
    for (int i = 0; i < TASKS; i++) {
        spans[i] = span_of(results[i]);
        dpool_result_destroy(&results[i]);
    }
    cr_assert_leq(max_overlap(spans, TASKS), 4);
    dpool_destroy(&pool);
}

Test(cap, a_pool_that_submits_later_is_not_starved_by_a_long_queue)
{
    dpool_t *busy = open_pool(1);
    dpool_t *late = open_pool(1);
    enum { QUEUED = 8 };
    dpool_result_t *queued[QUEUED];
    for (int i = 0; i < QUEUED; i++)
        queued[i] = dpool_apply_asyncf(busy, "test.span", "d", 0.1);
    dpool_result_t *late_one = dpool_apply_asyncf(late, "test.span", "d", 0.1);
    span_t late_span = span_of(late_one);
    span_t last_busy = {0};
    for (int i = 0; i < QUEUED; i++) {
        last_busy = span_of(queued[i]);
        dpool_result_destroy(&queued[i]);
    }
    cr_assert_lt(late_span.start, last_busy.start,
                 "the later pool waited for the whole queue of the first");
    dpool_result_destroy(&late_one);
    dpool_destroy(&busy);
    dpool_destroy(&late);
}
