/*  The map family, callbacks and pool options of libdpool against a fake broker that
    runs chunks itself (a zactor thread on a ROUTER), so the client side (chunking,
    ordering, splitting results back, failures with their item index, windows,
    callback threads) is checked without workers, quickly and exactly. The fake broker,
    and what each function name makes it do, is in fake_chunk_broker.h. */
#include "fake_chunk_broker.h"

TestSuite(map, .init = setup, .fini = teardown, .timeout = 20);

static dpool_t *
s_open(int processes)
{
    dpool_opts_t opts = {.broker = fake->endpoint, .processes = processes, .connect_timeout = 2};
    dpool_error_t err = {0};
    dpool_t *pool = dpool_new_opts(&opts, &err);
    cr_assert_not_null(pool, "dpool_new_opts: %d %s", err.code, err.message);
    return pool;
}

// A msgpack array of the integers from, from + 1, ... (count of them).
static dpool_buf_t
s_ints(int64_t from, size_t count)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init(&sbuf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sbuf, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, count);
    for (size_t i = 0; i < count; i++)
        msgpack_pack_int64(&pk, from + (int64_t)i);
    size_t size = sbuf.size; // release empties sbuf
    dpool_buf_t buf = {.data = msgpack_sbuffer_release(&sbuf), .size = size};
    return buf;
}

// The integer in one msgpack value.
static int64_t
s_int_of(const char *data, size_t size)
{
    msgpack_unpacked value;
    msgpack_unpacked_init(&value);
    cr_assert_eq(msgpack_unpack_next(&value, data, size, NULL), MSGPACK_UNPACK_SUCCESS);
    int64_t number = s_int(&value.data);
    msgpack_unpacked_destroy(&value);
    return number;
}

// Checks results is an array of from, from + 1, ... (count of them).
static void
s_expect_ints(const dpool_buf_t *results, int64_t from, size_t count)
{
    size_t n = 0, at = 0;
    cr_assert_eq(dpool_array_open(results, &n, &at), DPOOL_OK, "the results are not an array");
    cr_assert_eq(n, count, "%zu results for %zu items", n, count);
    for (size_t i = 0; i < n; i++) {
        const char *data;
        size_t size;
        cr_assert_eq(dpool_array_next(results, &at, &data, &size), DPOOL_OK);
        cr_assert_eq(s_int_of(data, size), from + (int64_t)i, "result %zu out of place", i);
    }
    cr_assert_eq(at, results->size, "bytes after the last result");
}

static int
s_submits(void)
{
    pthread_mutex_lock(&fake->lock);
    int submits = fake->submits;
    pthread_mutex_unlock(&fake->lock);
    return submits;
}

Test(map, map_keeps_input_order_with_pythons_default_chunksize)
{
    dpool_t *pool = s_open(2);
    dpool_buf_t items = s_ints(0, 100), results = {0};
    dpool_error_t err = {0};
    cr_assert_eq(dpool_map(pool, "echo", &items, 0, &results, &err), DPOOL_OK, "%s", err.message);
    s_expect_ints(&results, 0, 100);
    // ceil(100 / (4 x 2)) = 13: seven chunks of 13 and one of 9, each one CHUNK submit
    cr_assert_eq(s_submits(), 8);
    for (int i = 0; i < 7; i++)
        cr_assert_eq(fake->chunk_counts[i], 13, "chunk %d has %d items", i, fake->chunk_counts[i]);
    cr_assert_eq(fake->chunk_counts[7], 9);
    cr_assert_eq(fake->last_flags, DPOOL_FLAG_CHUNK);
    dpool_buf_free(&items);
    dpool_buf_free(&results);
    dpool_destroy(&pool);
}

Test(map, map_sends_the_chunksize_asked_for)
{
    dpool_t *pool = s_open(2);
    dpool_buf_t items = s_ints(5, 10), results = {0};
    cr_assert_eq(dpool_map(pool, "echo", &items, 4, &results, NULL), DPOOL_OK);
    s_expect_ints(&results, 5, 10);
    cr_assert_eq(s_submits(), 3);
    cr_assert_eq(fake->chunk_counts[0], 4);
    cr_assert_eq(fake->chunk_counts[2], 2);
    dpool_buf_free(&items);
    dpool_buf_free(&results);
    dpool_destroy(&pool);
}

Test(map, map_of_nothing_is_an_empty_list_without_a_submit)
{
    dpool_t *pool = s_open(2);
    dpool_buf_t items = s_ints(0, 0), results = {0};
    cr_assert_eq(dpool_map(pool, "echo", &items, 0, &results, NULL), DPOOL_OK);
    s_expect_ints(&results, 0, 0);
    dpool_buf_free(&results);
    cr_assert_eq(dpool_starmap(pool, "add", &items, 0, &results, NULL), DPOOL_OK);
    s_expect_ints(&results, 0, 0);
    cr_assert_eq(s_submits(), 0);
    dpool_buf_free(&items);
    dpool_buf_free(&results);
    dpool_destroy(&pool);
}

Test(map, map_failure_names_the_global_item_index)
{
    dpool_t *pool = s_open(2);
    dpool_buf_t items = s_ints(10, 10), results = {0}; // 17 is item 7, third of chunk 1
    dpool_error_t err = {0};
    cr_assert_eq(dpool_map(pool, "fail17", &items, 5, &results, &err), DPOOL_ERR_TASK_FAILED);
    cr_assert_eq(err.code, DPOOL_ERR_TASK_FAILED);
    cr_assert_str_eq(err.message, "item 7: boom 17");
    cr_assert_null(results.data);
    dpool_buf_free(&items);
    dpool_destroy(&pool);
}

Test(map, starmap_passes_each_item_as_the_arguments)
{
    dpool_t *pool = s_open(2);
    dpool_buf_t items = {0}, results = {0};
    // [[1, 2], [3, 4], [5, 6, 7]]
    const char packed[] = "\x93\x92\x01\x02\x92\x03\x04\x93\x05\x06\x07";
    items.data = malloc(sizeof packed - 1);
    memcpy(items.data, packed, sizeof packed - 1);
    items.size = sizeof packed - 1;
    cr_assert_eq(dpool_starmap(pool, "add", &items, 2, &results, NULL), DPOOL_OK);
    size_t n = 0, at = 0;
    cr_assert_eq(dpool_array_open(&results, &n, &at), DPOOL_OK);
    cr_assert_eq(n, 3);
    int64_t want[] = {3, 7, 18};
    for (size_t i = 0; i < n; i++) {
        const char *data;
        size_t size;
        cr_assert_eq(dpool_array_next(&results, &at, &data, &size), DPOOL_OK);
        cr_assert_eq(s_int_of(data, size), want[i]);
    }
    dpool_buf_free(&items);
    dpool_buf_free(&results);
    dpool_destroy(&pool);
}

Test(map, starmap_refuses_an_item_that_is_not_an_argument_array)
{
    dpool_t *pool = s_open(2);
    dpool_buf_t items = s_ints(0, 3);
    dpool_error_t err = {0};
    cr_assert_null(dpool_starmap_async(pool, "add", &items, 0, NULL, &err));
    cr_assert_eq(err.code, DPOOL_ERR_INVALID);
    cr_assert_str_eq(err.message, "item 0: starmap items are argument arrays");
    dpool_buf_t bad = {.data = strdup("\x01"), .size = 1};
    cr_assert_null(dpool_map_async(pool, "echo", &bad, 0, NULL, &err), "1 is not an array");
    cr_assert_eq(err.code, DPOOL_ERR_INVALID);
    cr_assert_eq(s_submits(), 0);
    dpool_buf_free(&bad);
    dpool_buf_free(&items);
    dpool_destroy(&pool);
}

// Reads every result of it until the end or a failure; returns what next returned last.
static int
s_drain(dpool_imap_t *it, int64_t *got, size_t max, size_t *count, dpool_error_t *err)
{
    *count = 0;
    while (true) {
        const char *data;
        size_t size;
        int rc = dpool_imap_next(it, 10, &data, &size, err);
        if (rc != 1)
            return rc;
        cr_assert_lt(*count, max);
        got[(*count)++] = s_int_of(data, size);
    }
}

Test(map, imap_yields_in_order_then_the_failure_at_its_index)
{
    dpool_t *pool = s_open(2);
    dpool_buf_t items = s_ints(10, 20);
    dpool_error_t err = {0};
    dpool_imap_t *it = dpool_imap(pool, "fail17", &items, 3, &err);
    cr_assert_not_null(it, "%s", err.message);
    int64_t got[32];
    size_t count = 0;
    cr_assert_eq(s_drain(it, got, 32, &count, &err), DPOOL_ERR_TASK_FAILED);
    cr_assert_eq(count, 7, "the 7 results before item 7 come first, got %zu", count);
    for (size_t i = 0; i < count; i++)
        cr_assert_eq(got[i], 10 + (int64_t)i);
    cr_assert_str_eq(err.message, "item 7: boom 17");
    cr_assert_eq(dpool_imap_index(it), 7);
    const char *data;
    size_t size;
    cr_assert_eq(dpool_imap_next(it, 0, &data, &size, &err), DPOOL_ERR_TASK_FAILED,
                 "a failed iterator stays failed");
    dpool_imap_destroy(&it);
    cr_assert_null(it);
    dpool_buf_free(&items);
    dpool_destroy(&pool);
}

Test(map, imap_unordered_yields_in_completion_order)
{
    dpool_t *pool = s_open(2);
    dpool_buf_t items = s_ints(0, 6); // "delay": item v answers after 1000 - 150 v ms
    dpool_error_t err = {0};
    dpool_imap_t *it = dpool_imap_unordered(pool, "delay", &items, 1, &err);
    cr_assert_not_null(it);
    int64_t got[8];
    size_t count = 0;
    cr_assert_eq(s_drain(it, got, 8, &count, &err), 0, "%s", err.message);
    cr_assert_eq(count, 6);
    for (size_t i = 0; i < count; i++)
        cr_assert_eq(got[i], 5 - (int64_t)i, "result %zu is %lld", i, (long long)got[i]);
    dpool_imap_destroy(&it);
    // the ordered iterator gives input order over the same timings
    it = dpool_imap(pool, "delay", &items, 1, &err);
    cr_assert_eq(s_drain(it, got, 8, &count, &err), 0);
    for (size_t i = 0; i < count; i++)
        cr_assert_eq(got[i], (int64_t)i);
    dpool_imap_destroy(&it);
    dpool_buf_free(&items);
    dpool_destroy(&pool);
}

Test(map, imap_of_nothing_ends_at_once)
{
    dpool_t *pool = s_open(2);
    dpool_buf_t items = s_ints(0, 0);
    dpool_imap_t *it = dpool_imap(pool, "echo", &items, 0, NULL);
    const char *data;
    size_t size;
    cr_assert_eq(dpool_imap_next(it, 5, &data, &size, NULL), 0);
    cr_assert_eq(dpool_imap_next(it, 5, &data, &size, NULL), 0, "the end stays the end");
    dpool_imap_destroy(&it);
    cr_assert_eq(s_submits(), 0);
    dpool_buf_free(&items);
    dpool_destroy(&pool);
}

typedef struct {
    pthread_mutex_t lock;
    size_t pulled;
    char value[16];
} counter_t;

// An endless source of the integers 0, 1, 2, ...
static int
s_endless(void *arg, const char **data, size_t *size)
{
    counter_t *counter = arg;
    pthread_mutex_lock(&counter->lock);
    size_t n = counter->pulled++;
    pthread_mutex_unlock(&counter->lock);
    counter->value[0] = (char)0xce; // uint 32
    for (int i = 0; i < 4; i++)
        counter->value[1 + i] = (char)(n >> (24 - 8 * i));
    *data = counter->value;
    *size = 5;
    return 1;
}

Test(map, imap_from_a_source_pulls_no_more_than_its_window)
{
    dpool_t *pool = s_open(2);
    counter_t counter = {.lock = PTHREAD_MUTEX_INITIALIZER};
    dpool_imap_opts_t opts = {
        .chunksize = 3, .window = 4, .source = s_endless, .source_arg = &counter};
    dpool_error_t err = {0};
    dpool_imap_t *it = dpool_imap_new(pool, "never", NULL, &opts, &err);
    cr_assert_not_null(it, "%s", err.message);
    const char *data;
    size_t size;
    cr_assert_eq(dpool_imap_next(it, 0.3, &data, &size, &err), DPOOL_ERR_TIMEOUT);
    pthread_mutex_lock(&counter.lock);
    size_t pulled = counter.pulled;
    pthread_mutex_unlock(&counter.lock);
    cr_assert_eq(pulled, 12, "an endless source stops at 4 chunks of 3, not %zu", pulled);
    cr_assert_eq(s_submits(), 4);
    dpool_imap_destroy(&it);
    dpool_destroy(&pool);
}

Test(map, imap_streams_an_endless_source_through_a_small_window)
{
    dpool_t *pool = s_open(2);
    counter_t counter = {.lock = PTHREAD_MUTEX_INITIALIZER};
    dpool_imap_opts_t opts = {
        .chunksize = 7, .window = 2, .source = s_endless, .source_arg = &counter};
    dpool_imap_t *it = dpool_imap_new(pool, "echo", NULL, &opts, NULL);
    for (int64_t i = 0; i < 5000; i++) {
        const char *data;
        size_t size;
        cr_assert_eq(dpool_imap_next(it, 10, &data, &size, NULL), 1);
        cr_assert_eq(s_int_of(data, size), i);
        cr_assert_eq(dpool_imap_index(it), (size_t)i);
    }
    dpool_imap_destroy(&it);
    cr_assert_leq(counter.pulled, 5000 + 3 * 7, "read %zu items ahead", counter.pulled - 5000);
    dpool_destroy(&pool);
}

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t called;
    int successes, failures;
    size_t count;
    int code;
    char message[256];
    pthread_t thread;
} seen_t;

static void
s_on_list(void *arg, const char *data, size_t size)
{
    seen_t *seen = arg;
    dpool_buf_t list = {.data = (char *)data, .size = size};
    size_t at = 0;
    pthread_mutex_lock(&seen->lock);
    dpool_array_open(&list, &seen->count, &at);
    seen->successes++;
    seen->thread = pthread_self();
    pthread_cond_broadcast(&seen->called);
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
    seen->thread = pthread_self();
    pthread_cond_broadcast(&seen->called);
    pthread_mutex_unlock(&seen->lock);
}

Test(map, map_async_callback_gets_the_list_on_another_thread)
{
    dpool_t *pool = s_open(2);
    seen_t seen = {.lock = PTHREAD_MUTEX_INITIALIZER, .called = PTHREAD_COND_INITIALIZER};
    dpool_callbacks_t callbacks = {s_on_list, s_on_error, &seen};
    dpool_buf_t items = s_ints(0, 50);
    dpool_result_t *result = dpool_map_async(pool, "echo", &items, 0, &callbacks, NULL);
    cr_assert_not_null(result);
    dpool_close(pool);
    cr_assert_eq(dpool_join(pool), DPOOL_OK);
    // join returns once the callback has run
    cr_assert_eq(seen.successes, 1);
    cr_assert_eq(seen.failures, 0);
    cr_assert_eq(seen.count, 50);
    cr_assert_not(pthread_equal(seen.thread, pthread_self()), "the callback ran on the caller");
    size_t count = 0;
    cr_assert_eq(dpool_result_count(result, &count), DPOOL_OK);
    cr_assert_eq(count, 50);
    const char *data;
    size_t size;
    cr_assert_eq(dpool_result_item(result, 49, &data, &size), DPOOL_OK);
    cr_assert_eq(s_int_of(data, size), 49);
    cr_assert_eq(dpool_result_item(result, 50, &data, &size), DPOOL_ERR_INVALID);
    cr_assert_eq(dpool_result_task_id(result), 0);
    dpool_result_destroy(&result);
    dpool_buf_free(&items);
    dpool_destroy(&pool);
}

Test(map, map_async_error_callback_gets_the_failure_once)
{
    dpool_t *pool = s_open(2);
    seen_t seen = {.lock = PTHREAD_MUTEX_INITIALIZER, .called = PTHREAD_COND_INITIALIZER};
    dpool_callbacks_t callbacks = {s_on_list, s_on_error, &seen};
    dpool_buf_t items = s_ints(0, 40); // 17 fails; with chunks of 2 the others go on
    dpool_result_t *result = dpool_starmap_async(pool, "fail17", NULL, 2, &callbacks, NULL);
    cr_assert_null(result, "NULL items are refused");
    result = dpool_map_async(pool, "fail17", &items, 2, &callbacks, NULL);
    cr_assert_eq(dpool_result_wait(result, 10), DPOOL_OK);
    cr_assert_eq(dpool_result_successful(result), 0);
    dpool_close(pool);
    cr_assert_eq(dpool_join(pool), DPOOL_OK);
    cr_assert_eq(seen.failures, 1);
    cr_assert_eq(seen.successes, 0);
    cr_assert_eq(seen.code, DPOOL_ERR_TASK_FAILED);
    cr_assert_str_eq(seen.message, "item 17: boom 17");
    size_t count = 0;
    cr_assert_eq(dpool_result_count(result, &count), DPOOL_ERR_TASK_FAILED);
    dpool_result_destroy(&result);
    dpool_buf_free(&items);
    dpool_destroy(&pool);
}

Test(map, map_on_a_closed_pool_fails_without_callbacks)
{
    dpool_t *pool = s_open(2);
    seen_t seen = {.lock = PTHREAD_MUTEX_INITIALIZER, .called = PTHREAD_COND_INITIALIZER};
    dpool_callbacks_t callbacks = {s_on_list, s_on_error, &seen};
    dpool_buf_t items = s_ints(0, 4);
    dpool_close(pool);
    dpool_error_t err = {0};
    cr_assert_null(dpool_map_async(pool, "echo", &items, 0, &callbacks, &err));
    cr_assert_eq(err.code, DPOOL_ERR_CLOSED);
    dpool_imap_t *it = dpool_imap(pool, "echo", &items, 0, &err);
    const char *data;
    size_t size;
    cr_assert_eq(dpool_imap_next(it, 5, &data, &size, &err), DPOOL_ERR_CLOSED);
    cr_assert(strncmp(err.message, "item 0: ", 8) == 0, "%s", err.message);
    dpool_imap_destroy(&it);
    cr_assert_eq(dpool_join(pool), DPOOL_OK, "nothing may stay held");
    cr_assert_eq(seen.successes + seen.failures, 0);
    dpool_buf_free(&items);
    dpool_destroy(&pool);
}

Test(map, pool_open_carries_retries_and_time_limit)
{
    dpool_opts_t opts = {.broker = fake->endpoint, .processes = 1, .retries = 3, .time_limit = 1.5};
    dpool_t *pool = dpool_new_opts(&opts, NULL);
    cr_assert_not_null(pool);
    cr_assert_eq(fake->open_retries, 3);
    cr_assert_eq(fake->open_time_limit_ms, 1500);
    dpool_destroy(&pool);
    opts.time_limit = 0.0001; // rounds up: a limit stays a limit
    pool = dpool_new_opts(&opts, NULL);
    cr_assert_eq(fake->open_time_limit_ms, 1);
    dpool_destroy(&pool);
    opts.time_limit = 1e10;
    dpool_error_t err = {0};
    cr_assert_null(dpool_new_opts(&opts, &err));
    cr_assert_eq(err.code, DPOOL_ERR_INVALID);
}
