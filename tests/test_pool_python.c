/*  The behaviours CPython's own test suite checks for multiprocessing.Pool, in C,
    against a real dpool-broker and dpool-worker (2 processes) on loopback: apply,
    map (large lists, chunksize), map_async and its callbacks, starmap, imap and
    imap_unordered, get timeouts, terminate, empty iterables, destroying a pool (the
    end of a `with Pool()` block), maxtasksperchild, and failures inside a map. */
#include "dpool_harness.h"

#include <criterion/criterion.h>
#include <czmq.h>
#include <dpool/dpool.h>
#include <dpool_clock.h>
#include <msgpack.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static dpool_harness_t *harness;
static dpool_t *pool;

static void
start(const char *const *worker_args)
{
    harness = dpool_harness_new();
    cr_assert_not_null(harness);
    cr_assert_not_null(dpool_harness_start_broker(harness, NULL), "the broker did not start");
    cr_assert_gt(dpool_harness_start_worker(harness, 2, worker_args), 0);
    cr_assert(dpool_harness_wait_processes(harness, 2, 20), "the worker did not register");
    dpool_opts_t opts = {.broker = dpool_harness_endpoint(harness), .processes = 2};
    dpool_error_t err = {0};
    pool = dpool_new_opts(&opts, &err);
    cr_assert_not_null(pool, "dpool_new_opts: %s", err.message);
}

static void
setup(void)
{
    const char *worker_args[] = {"--module", DPOOL_LIB_DIR "/dpool_test_module.so", NULL};
    start(worker_args);
}

static void
setup_maxtasks(void)
{
    const char *worker_args[] = {"--maxtasksperchild", "2", NULL};
    start(worker_args);
}

static void
teardown(void)
{
    dpool_destroy(&pool);
    dpool_harness_destroy(&harness);
}

TestSuite(pool_python, .init = setup, .fini = teardown, .timeout = 60);

// A msgpack array packed from numbers: ints when whole, else floats.
static dpool_buf_t
s_numbers(const double *values, size_t count)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init(&sbuf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sbuf, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, count);
    for (size_t i = 0; i < count; i++)
        if (values[i] == (double)(int64_t)values[i])
            msgpack_pack_int64(&pk, (int64_t)values[i]);
        else
            msgpack_pack_double(&pk, values[i]);
    size_t size = sbuf.size;
    return (dpool_buf_t){.data = msgpack_sbuffer_release(&sbuf), .size = size};
}

// range(count) as a msgpack array.
static dpool_buf_t
s_range(size_t count)
{
    double *values = calloc(count + 1, sizeof *values);
    for (size_t i = 0; i < count; i++)
        values[i] = (double)i;
    dpool_buf_t buf = s_numbers(values, count);
    free(values);
    return buf;
}

// [[i, i] for i in range(count)]: starmap's items for add, whose results are 2 i.
static dpool_buf_t
s_pairs(size_t count)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init(&sbuf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sbuf, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, count);
    for (size_t i = 0; i < count; i++) {
        msgpack_pack_array(&pk, 2);
        msgpack_pack_int64(&pk, (int64_t)i);
        msgpack_pack_int64(&pk, (int64_t)i);
    }
    size_t size = sbuf.size;
    return (dpool_buf_t){.data = msgpack_sbuffer_release(&sbuf), .size = size};
}

static int64_t
s_int_of(const char *data, size_t size)
{
    msgpack_unpacked value;
    msgpack_unpacked_init(&value);
    cr_assert_eq(msgpack_unpack_next(&value, data, size, NULL), MSGPACK_UNPACK_SUCCESS);
    msgpack_object obj = value.data;
    cr_assert(obj.type == MSGPACK_OBJECT_POSITIVE_INTEGER, "result type %d", obj.type);
    msgpack_unpacked_destroy(&value);
    return (int64_t)obj.via.u64;
}

// Checks a list of results is [scale * i for i in range(count)].
static void
s_expect_scaled(const dpool_buf_t *results, size_t count, int64_t scale)
{
    size_t n = 0, at = 0;
    cr_assert_eq(dpool_array_open(results, &n, &at), DPOOL_OK);
    cr_assert_eq(n, count, "%zu results for %zu items", n, count);
    for (size_t i = 0; i < n; i++) {
        const char *data;
        size_t size;
        cr_assert_eq(dpool_array_next(results, &at, &data, &size), DPOOL_OK);
        cr_assert_eq(s_int_of(data, size), scale * (int64_t)i, "result %zu", i);
    }
}

Test(pool_python, test_apply)
{
    dpool_buf_t args = {0}, value = {0};
    cr_assert_eq(dpool_pack(&args, "ii", 5, 6), DPOOL_OK);
    cr_assert_eq(dpool_apply(pool, "add", &args, &value, NULL), DPOOL_OK);
    cr_assert_eq(s_int_of(value.data, value.size), 11);
    dpool_buf_free(&value);
    dpool_result_t *result = dpool_apply_async(pool, "add", &args, NULL);
    cr_assert_eq(dpool_result_get(result, 10, &value, NULL), DPOOL_OK);
    cr_assert_eq(s_int_of(value.data, value.size), 11);
    dpool_result_destroy(&result);
    dpool_buf_free(&value);
    dpool_buf_free(&args);
}

Test(pool_python, test_map)
{
    dpool_buf_t items = s_range(10), results = {0};
    dpool_error_t err = {0};
    cr_assert_eq(dpool_map(pool, "echo", &items, 0, &results, &err), DPOOL_OK, "%s", err.message);
    s_expect_scaled(&results, 10, 1);
    dpool_buf_free(&results);
    dpool_buf_free(&items);
    // a large list, with the default chunksize and a small one
    items = s_range(20000);
    cr_assert_eq(dpool_map(pool, "echo", &items, 0, &results, &err), DPOOL_OK, "%s", err.message);
    s_expect_scaled(&results, 20000, 1);
    dpool_buf_free(&results);
    cr_assert_eq(dpool_map(pool, "echo", &items, 1000, &results, &err), DPOOL_OK);
    s_expect_scaled(&results, 20000, 1);
    dpool_buf_free(&results);
    dpool_buf_free(&items);
}

Test(pool_python, test_map_chunksize)
{
    dpool_buf_t items = s_range(100), results = {0};
    size_t sizes[] = {1, 7, 20, 100, 1000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        cr_assert_eq(dpool_map(pool, "echo", &items, sizes[i], &results, NULL), DPOOL_OK);
        s_expect_scaled(&results, 100, 1);
        dpool_buf_free(&results);
    }
    dpool_buf_free(&items);
    // an empty list with a chunksize does not hang (Python's test_map_chunksize)
    items = s_range(0);
    dpool_result_t *result = dpool_map_async(pool, "echo", &items, 1, NULL, NULL);
    cr_assert_eq(dpool_result_get(result, 5, &results, NULL), DPOOL_OK);
    s_expect_scaled(&results, 0, 1);
    dpool_result_destroy(&result);
    dpool_buf_free(&results);
    dpool_buf_free(&items);
}

typedef struct {
    pthread_mutex_t lock;
    int successes, failures, code;
    size_t count;
    char message[256];
} seen_t;

static void
s_on_value(void *arg, const char *data, size_t size)
{
    seen_t *seen = arg;
    dpool_buf_t list = {.data = (char *)data, .size = size};
    size_t at = 0;
    pthread_mutex_lock(&seen->lock);
    seen->successes++;
    if (dpool_array_open(&list, &seen->count, &at) != DPOOL_OK)
        seen->count = (size_t)-1;
    pthread_mutex_unlock(&seen->lock);
}

static void
s_on_error(void *arg, const dpool_error_t *err)
{
    seen_t *seen = arg;
    pthread_mutex_lock(&seen->lock);
    seen->failures++;
    seen->code = err->code;
    snprintf(seen->message, sizeof seen->message, "%s", err->message);
    pthread_mutex_unlock(&seen->lock);
}

Test(pool_python, test_map_async_and_its_callbacks)
{
    seen_t seen = {.lock = PTHREAD_MUTEX_INITIALIZER};
    dpool_callbacks_t callbacks = {s_on_value, s_on_error, &seen};
    dpool_buf_t items = s_range(10), results = {0};
    dpool_result_t *good = dpool_map_async(pool, "echo", &items, 0, &callbacks, NULL);
    cr_assert_eq(dpool_result_get(good, 10, &results, NULL), DPOOL_OK);
    s_expect_scaled(&results, 10, 1);
    dpool_result_t *bad = dpool_map_async(pool, "fail", &items, 0, &callbacks, NULL);
    dpool_error_t err = {0};
    cr_assert_eq(dpool_result_get(bad, 10, NULL, &err), DPOOL_ERR_TASK_FAILED);
    cr_assert_eq(dpool_close(pool), DPOOL_OK);
    cr_assert_eq(dpool_join(pool), DPOOL_OK);
    cr_assert_eq(seen.successes, 1, "callback gets the list once");
    cr_assert_eq(seen.count, 10);
    cr_assert_eq(seen.failures, 1, "error_callback gets the error once");
    cr_assert_eq(seen.code, DPOOL_ERR_TASK_FAILED);
    cr_assert_str_eq(seen.message, err.message);
    cr_assert(strncmp(seen.message, "item ", 5) == 0, "message: %s", seen.message);
    dpool_result_destroy(&good);
    dpool_result_destroy(&bad);
    dpool_buf_free(&results);
    dpool_buf_free(&items);
}

Test(pool_python, test_starmap_and_starmap_async)
{
    dpool_buf_t items = s_pairs(50), results = {0};
    cr_assert_eq(dpool_starmap(pool, "add", &items, 0, &results, NULL), DPOOL_OK);
    s_expect_scaled(&results, 50, 2);
    dpool_buf_free(&results);
    dpool_result_t *result = dpool_starmap_async(pool, "add", &items, 3, NULL, NULL);
    cr_assert_eq(dpool_result_get(result, 10, &results, NULL), DPOOL_OK);
    s_expect_scaled(&results, 50, 2);
    dpool_result_destroy(&result);
    dpool_buf_free(&results);
    dpool_buf_free(&items);
}

Test(pool_python, test_imap_keeps_order_with_any_chunksize)
{
    dpool_buf_t items = s_range(100);
    size_t sizes[] = {0, 1, 3, 100};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        dpool_imap_t *it = dpool_imap(pool, "echo", &items, sizes[s], NULL);
        cr_assert_not_null(it);
        const char *data;
        size_t size;
        for (int64_t i = 0; i < 100; i++) {
            cr_assert_eq(dpool_imap_next(it, 10, &data, &size, NULL), 1);
            cr_assert_eq(s_int_of(data, size), i);
        }
        cr_assert_eq(dpool_imap_next(it, 10, &data, &size, NULL), 0, "StopIteration");
        dpool_imap_destroy(&it);
    }
    dpool_buf_free(&items);
}

Test(pool_python, test_imap_unordered_yields_every_result)
{
    dpool_buf_t items = s_range(200);
    size_t sizes[] = {1, 7};
    for (size_t s = 0; s < 2; s++) {
        dpool_imap_t *it = dpool_imap_unordered(pool, "echo", &items, sizes[s], NULL);
        bool seen[200] = {0};
        const char *data;
        size_t size;
        for (int i = 0; i < 200; i++) {
            cr_assert_eq(dpool_imap_next(it, 10, &data, &size, NULL), 1);
            int64_t value = s_int_of(data, size);
            cr_assert(value >= 0 && value < 200 && !seen[value], "result %lld", (long long)value);
            seen[value] = true;
            cr_assert_eq(dpool_imap_index(it), (size_t)value, "the index names the item");
        }
        cr_assert_eq(dpool_imap_next(it, 10, &data, &size, NULL), 0);
        dpool_imap_destroy(&it);
    }
    dpool_buf_free(&items);
}

Test(pool_python, test_async_timeout)
{
    // Tasks far longer than the bound: a get that waited for them cannot pass it, and a
    // loaded machine has seconds of slack (the fixture's teardown ends them).
    double naps[] = {30.0, 30.0};
    dpool_buf_t items = s_numbers(naps, 2);
    dpool_result_t *result = dpool_map_async(pool, "sleep", &items, 1, NULL, NULL);
    int64_t start = dpool_clock_ms();
    dpool_error_t err = {0};
    cr_assert_eq(dpool_result_get(result, 0.05, NULL, &err), DPOOL_ERR_TIMEOUT);
    cr_assert_lt(dpool_clock_ms() - start, 10000, "get waited past its timeout");
    cr_assert_not(dpool_result_ready(result));
    cr_assert_eq(dpool_result_successful(result), DPOOL_ERR_NOT_READY);
    dpool_imap_t *it = dpool_imap(pool, "sleep", &items, 1, NULL);
    const char *data;
    size_t size;
    cr_assert_eq(dpool_imap_next(it, 0.05, &data, &size, &err), DPOOL_ERR_TIMEOUT);
    dpool_imap_destroy(&it);
    dpool_result_destroy(&result);
    dpool_buf_free(&items);
}

Test(pool_python, test_terminate)
{
    double naps[100];
    for (int i = 0; i < 100; i++)
        naps[i] = 30.0; // far longer than the bound below: terminate must not wait
    dpool_buf_t items = s_numbers(naps, 100);
    dpool_result_t *result = dpool_map_async(pool, "sleep", &items, 1, NULL, NULL);
    zclock_sleep(300); // two of them are running
    int64_t start = dpool_clock_ms();
    cr_assert_eq(dpool_terminate(pool), DPOOL_OK);
    cr_assert_lt(dpool_clock_ms() - start, 10000, "terminate waited for the tasks");
    dpool_error_t err = {0};
    cr_assert_eq(dpool_result_get(result, 1, NULL, &err), DPOOL_ERR_TERMINATED);
    cr_assert_eq(dpool_join(pool), DPOOL_OK);
    dpool_result_destroy(&result);
    dpool_buf_free(&items);
}

Test(pool_python, test_empty_iterable)
{
    dpool_buf_t items = s_range(0), results = {0};
    int64_t start = dpool_clock_ms();
    cr_assert_eq(dpool_map(pool, "echo", &items, 0, &results, NULL), DPOOL_OK);
    s_expect_scaled(&results, 0, 1);
    dpool_buf_free(&results);
    cr_assert_eq(dpool_starmap(pool, "add", &items, 0, &results, NULL), DPOOL_OK);
    s_expect_scaled(&results, 0, 1);
    dpool_buf_free(&results);
    dpool_imap_t *it = dpool_imap(pool, "echo", &items, 0, NULL);
    const char *data;
    size_t size;
    cr_assert_eq(dpool_imap_next(it, 5, &data, &size, NULL), 0);
    dpool_imap_destroy(&it);
    it = dpool_imap_unordered(pool, "echo", &items, 0, NULL);
    cr_assert_eq(dpool_imap_next(it, 5, &data, &size, NULL), 0);
    dpool_imap_destroy(&it);
    // Each imap_next above would wait its 5 s for an item that never comes.
    cr_assert_lt(dpool_clock_ms() - start, 4500);
    dpool_buf_free(&items);
}

Test(pool_python, test_context_destroy_terminates_the_pools_tasks)
{
    double naps[] = {30.0, 30.0, 30.0};
    dpool_buf_t items = s_numbers(naps, 3);
    dpool_result_t *result = dpool_map_async(pool, "sleep", &items, 1, NULL, NULL);
    zclock_sleep(300);
    int64_t start = dpool_clock_ms();
    dpool_destroy(&pool); // leaving `with Pool() as p:`
    cr_assert_lt(dpool_clock_ms() - start, 10000);
    dpool_error_t err = {0};
    cr_assert_eq(dpool_result_get(result, 0, NULL, &err), DPOOL_ERR_TERMINATED);
    dpool_result_destroy(&result);
    // the killed processes come back: the cluster serves a new pool at once
    dpool_opts_t opts = {.broker = dpool_harness_endpoint(harness), .processes = 2};
    pool = dpool_new_opts(&opts, NULL);
    cr_assert_not_null(pool);
    cr_assert_eq(dpool_apply(pool, "noop", NULL, NULL, &err), DPOOL_OK, "%s", err.message);
    dpool_buf_free(&items);
}

Test(pool_python, errors_inside_map_name_the_item_and_imap_yields_those_before)
{
    // test.span fails for a negative duration: item 3
    double spans[] = {0, 0, 0, -1, 0, 0};
    dpool_buf_t items = s_numbers(spans, 6);
    dpool_error_t err = {0};
    cr_assert_eq(dpool_map(pool, "test.span", &items, 2, NULL, &err), DPOOL_ERR_TASK_FAILED);
    cr_assert_str_eq(err.message, "item 3: test.span needs [seconds] from 0 to 60");
    dpool_imap_t *it = dpool_imap(pool, "test.span", &items, 2, NULL);
    const char *data;
    size_t size;
    for (int i = 0; i < 3; i++)
        cr_assert_eq(dpool_imap_next(it, 10, &data, &size, &err), 1, "result %d", i);
    cr_assert_eq(dpool_imap_next(it, 10, &data, &size, &err), DPOOL_ERR_TASK_FAILED);
    cr_assert_eq(dpool_imap_index(it), 3);
    cr_assert_str_eq(err.message, "item 3: test.span needs [seconds] from 0 to 60");
    dpool_imap_destroy(&it);
    dpool_buf_free(&items);
}

TestSuite(pool_python_maxtasks, .init = setup_maxtasks, .fini = teardown, .timeout = 60);

Test(pool_python_maxtasks, test_maxtasksperchild_replaces_processes)
{
    dpool_buf_t items = s_range(12), results = {0};
    dpool_error_t err = {0};
    // chunksize 1: twelve tasks over two processes that each retire after two
    cr_assert_eq(dpool_map(pool, "hostpid", &items, 1, &results, &err), DPOOL_OK, "%s",
                 err.message);
    size_t n = 0, at = 0;
    cr_assert_eq(dpool_array_open(&results, &n, &at), DPOOL_OK);
    cr_assert_eq(n, 12);
    uint64_t pids[12];
    size_t distinct = 0;
    for (size_t i = 0; i < n; i++) {
        const char *data;
        size_t size;
        cr_assert_eq(dpool_array_next(&results, &at, &data, &size), DPOOL_OK);
        msgpack_unpacked value;
        msgpack_unpacked_init(&value);
        cr_assert_eq(msgpack_unpack_next(&value, data, size, NULL), MSGPACK_UNPACK_SUCCESS);
        msgpack_object map = value.data;
        cr_assert_eq(map.type, MSGPACK_OBJECT_MAP);
        uint64_t pid = 0;
        for (uint32_t k = 0; k < map.via.map.size; k++)
            if (map.via.map.ptr[k].key.via.str.size == 3 &&
                memcmp(map.via.map.ptr[k].key.via.str.ptr, "pid", 3) == 0)
                pid = map.via.map.ptr[k].val.via.u64;
        msgpack_unpacked_destroy(&value);
        cr_assert_gt(pid, 0);
        bool known = false;
        for (size_t j = 0; j < distinct; j++)
            known = known || pids[j] == pid;
        if (!known)
            pids[distinct++] = pid;
    }
    cr_assert_geq(distinct, 6, "12 tasks, 2 per process: at least 6 processes, saw %zu", distinct);
    dpool_buf_free(&results);
    dpool_buf_free(&items);
}
