/*  Integration: the Pool calls end to end against a real dpool-broker and a real
    dpool-worker (2 processes) on loopback, started and stopped by the harness. */
#include "dpool_harness.h"

#include <criterion/criterion.h>
#include <glob.h>
#include <dpool/dpool.h>
#include <msgpack.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static dpool_harness_t *harness;
static const char *endpoint;
static dpool_t *pool;
static pid_t worker_pid;

static void
start_cluster(void)
{
    harness = dpool_harness_new();
    cr_assert_not_null(harness);
    // A 1 s grace keeps the unknown-function test short; the default is 10 s.
    const char *broker_args[] = {"--grace", "1", NULL};
    endpoint = dpool_harness_start_broker(harness, broker_args);
    cr_assert_not_null(endpoint, "the broker did not start");
    const char *worker_args[] = {"--module", DPOOL_LIB_DIR "/dpool_test_module.so", NULL};
    worker_pid = dpool_harness_start_worker(harness, 2, worker_args);
    cr_assert_gt(worker_pid, 0);
    cr_assert(dpool_harness_wait_processes(harness, 2, 20), "the worker did not register");
}

static dpool_t *
open_pool(int processes, dpool_output_fn *output, void *output_arg)
{
    dpool_opts_t opts;
    dpool_opts_init(&opts);
    opts.broker = endpoint;
    opts.processes = processes;
    opts.output = output;
    opts.output_arg = output_arg;
    dpool_error_t err = {0};
    dpool_t *opened = dpool_new_opts(&opts, &err);
    cr_assert_not_null(opened, "dpool_new_opts: %s", err.message);
    return opened;
}

static void
setup(void)
{
    start_cluster();
    pool = open_pool(2, NULL, NULL);
}

static void
teardown(void)
{
    dpool_destroy(&pool);
    dpool_harness_destroy(&harness);
}

TestSuite(pool, .init = setup, .fini = teardown, .timeout = 60);

// Unpacks buf into *unpacked (caller destroys it) and returns the value.
static msgpack_object
unpack(const dpool_buf_t *buf, msgpack_unpacked *unpacked)
{
    msgpack_unpacked_init(unpacked);
    cr_assert_eq(msgpack_unpack_next(unpacked, buf->data, buf->size, NULL), MSGPACK_UNPACK_SUCCESS,
                 "the result is not one msgpack value");
    return unpacked->data;
}

static double
number_of(msgpack_object obj)
{
    if (obj.type == MSGPACK_OBJECT_FLOAT64 || obj.type == MSGPACK_OBJECT_FLOAT32)
        return obj.via.f64;
    if (obj.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        return (double)obj.via.u64;
    cr_assert_fail("not a number (type %d)", obj.type);
    return 0;
}

// A field of a msgpack map with string keys, or a nil object.
static msgpack_object
field_of(msgpack_object map, const char *key)
{
    msgpack_object nil = {.type = MSGPACK_OBJECT_NIL};
    if (map.type != MSGPACK_OBJECT_MAP)
        return nil;
    for (uint32_t i = 0; i < map.via.map.size; i++) {
        msgpack_object k = map.via.map.ptr[i].key;
        if (k.type == MSGPACK_OBJECT_STR && k.via.str.size == strlen(key) &&
            memcmp(k.via.str.ptr, key, k.via.str.size) == 0)
            return map.via.map.ptr[i].val;
    }
    return nil;
}

Test(pool, apply_returns_the_echoed_value)
{
    dpool_buf_t args = {0}, value = {0};
    cr_assert_eq(dpool_pack(&args, "s", "hello, 世界"), DPOOL_OK);
    dpool_error_t err = {0};
    cr_assert_eq(dpool_apply(pool, "echo", &args, &value, &err), DPOOL_OK, "%s", err.message);
    msgpack_unpacked unpacked;
    msgpack_object obj = unpack(&value, &unpacked);
    cr_assert_eq(obj.type, MSGPACK_OBJECT_STR);
    cr_assert_eq(obj.via.str.size, strlen("hello, 世界"));
    cr_assert(memcmp(obj.via.str.ptr, "hello, 世界", obj.via.str.size) == 0);
    msgpack_unpacked_destroy(&unpacked);
    dpool_buf_free(&args);
    dpool_buf_free(&value);
}

Test(pool, apply_with_a_megabyte_argument_echoes_it_back_whole)
{
    // Over the batch limit: the SUBMIT goes alone, in its plain form, and the table
    // keeps its encoding for a re-send.
    enum { S_SIZE = 1024 * 1024 };
    char *text = malloc(S_SIZE + 1);
    for (size_t i = 0; i < S_SIZE; i++)
        text[i] = (char)('a' + i % 26);
    text[S_SIZE] = '\0';
    dpool_buf_t args = {0}, value = {0};
    cr_assert_eq(dpool_pack(&args, "s", text), DPOOL_OK);
    dpool_error_t err = {0};
    cr_assert_eq(dpool_apply(pool, "echo", &args, &value, &err), DPOOL_OK, "%s", err.message);
    msgpack_unpacked unpacked;
    msgpack_object obj = unpack(&value, &unpacked);
    cr_assert_eq(obj.type, MSGPACK_OBJECT_STR);
    cr_assert_eq(obj.via.str.size, S_SIZE);
    cr_assert(memcmp(obj.via.str.ptr, text, S_SIZE) == 0);
    msgpack_unpacked_destroy(&unpacked);
    dpool_buf_free(&args);
    dpool_buf_free(&value);
    free(text);
}

Test(pool, apply_adds_numbers_on_a_worker)
{
    dpool_buf_t args = {0}, value = {0};
    cr_assert_eq(dpool_pack(&args, "ii", 40, 2), DPOOL_OK);
    cr_assert_eq(dpool_apply(pool, "add", &args, &value, NULL), DPOOL_OK);
    msgpack_unpacked unpacked;
    msgpack_object obj = unpack(&value, &unpacked);
    cr_assert_eq(obj.type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    cr_assert_eq(obj.via.u64, 42);
    msgpack_unpacked_destroy(&unpacked);
    dpool_buf_free(&args);
    dpool_buf_free(&value);
}

Test(pool, apply_async_handle_reports_ready_and_successful)
{
    dpool_result_t *result = dpool_apply_asyncf(pool, "sleep", "d", 0.5);
    cr_assert_not_null(result);
    cr_assert_not(dpool_result_ready(result), "a 0.5 s task cannot be ready at once");
    cr_assert_eq(dpool_result_successful(result), DPOOL_ERR_NOT_READY);
    cr_assert_eq(dpool_result_wait(result, 30), DPOOL_OK);
    cr_assert(dpool_result_ready(result));
    cr_assert_eq(dpool_result_successful(result), 1);
    dpool_buf_t value = {0};
    cr_assert_eq(dpool_result_get(result, 0, &value, NULL), DPOOL_OK);
    msgpack_unpacked unpacked;
    double slept = number_of(unpack(&value, &unpacked));
    cr_assert(slept >= 0.5 && slept < 10, "slept %f s", slept);
    msgpack_unpacked_destroy(&unpacked);
    dpool_buf_free(&value);
    dpool_result_destroy(&result);
    cr_assert_null(result);
}

Test(pool, get_with_timeout_on_a_long_task_times_out_and_the_task_goes_on)
{
    dpool_result_t *result = dpool_apply_asyncf(pool, "sleep", "d", 1.5);
    dpool_error_t err = {0};
    cr_assert_eq(dpool_result_get(result, 0.2, NULL, &err), DPOOL_ERR_TIMEOUT);
    cr_assert_not(dpool_result_ready(result));
    cr_assert_eq(dpool_result_get(result, 30, NULL, &err), DPOOL_OK, "%s", err.message);
    dpool_result_destroy(&result);
}

Test(pool, submitting_after_close_fails_clearly)
{
    cr_assert_eq(dpool_close(pool), DPOOL_OK);
    dpool_error_t err = {0};
    dpool_result_t *result = dpool_apply_async(pool, "noop", NULL, &err);
    cr_assert_null(result);
    cr_assert_eq(err.code, DPOOL_ERR_CLOSED);
    cr_assert_eq(dpool_apply(pool, "noop", NULL, NULL, &err), DPOOL_ERR_CLOSED);
    cr_assert_eq(dpool_join(pool), DPOOL_OK);
}

Test(pool, join_before_close_is_an_error)
{
    cr_assert_eq(dpool_join(pool), DPOOL_ERR_STATE);
}

Test(pool, join_waits_for_every_task)
{
    dpool_result_t *results[6];
    for (int i = 0; i < 6; i++)
        results[i] = dpool_apply_asyncf(pool, "sleep", "d", 0.2);
    cr_assert_eq(dpool_close(pool), DPOOL_OK);
    cr_assert_eq(dpool_join(pool), DPOOL_OK);
    for (int i = 0; i < 6; i++) {
        cr_assert(dpool_result_ready(results[i]), "task %d not ready after join", i);
        cr_assert_eq(dpool_result_successful(results[i]), 1);
        dpool_result_destroy(&results[i]);
    }
}

Test(pool, task_failure_carries_its_message)
{
    dpool_buf_t args = {0};
    dpool_pack(&args, "s", "the disk is on fire");
    dpool_error_t err = {0};
    cr_assert_eq(dpool_apply(pool, "fail", &args, NULL, &err), DPOOL_ERR_TASK_FAILED);
    cr_assert_eq(err.code, DPOOL_ERR_TASK_FAILED);
    cr_assert(strstr(err.message, "the disk is on fire"), "message: %s", err.message);
    dpool_buf_free(&args);
}

Test(pool, unknown_function_fails_after_the_grace_period)
{
    dpool_error_t err = {0};
    cr_assert_eq(dpool_apply(pool, "no.such.function", NULL, NULL, &err), DPOOL_ERR_NO_FUNCTION);
    cr_assert(strstr(err.message, "no.such.function"), "message: %s", err.message);
}

// The pid named in a "worker process <pid> on <host> ..." message, or -1.
static long
pid_in_message(const char *message)
{
    const char *at = strstr(message, "process ");
    return at ? strtol(at + strlen("process "), NULL, 10) : -1;
}

// The daemon's log (the one worker-*.log in dpool_harness_dir), NUL-terminated; free it.
static char *
worker_log(void)
{
    char pattern[512];
    snprintf(pattern, sizeof pattern, "%s/worker-*.log", dpool_harness_dir(harness));
    glob_t found;
    cr_assert_eq(glob(pattern, 0, NULL, &found), 0, "no log matches %s", pattern);
    cr_assert_eq(found.gl_pathc, 1);
    FILE *file = fopen(found.gl_pathv[0], "r");
    globfree(&found);
    cr_assert_not_null(file);
    char *text = calloc(1, 65536);
    cr_assert_not_null(text);
    size_t got = fread(text, 1, 65535, file);
    text[got] = '\0';
    fclose(file);
    return text;
}

// The harness starts the daemon with only descriptors 0-2 open, as a shell does, so
// the pipes of its first processes take low numbers, next to those a process sets up
// (0-5: dpool_proc.h): a process that set them up in the wrong order would exit at
// once and be replaced, a loss the other tests would not see.
Test(pool, the_first_processes_start_and_run_without_being_replaced)
{
    dpool_error_t err = {0};
    for (int i = 0; i < 4; i++)
        cr_assert_eq(dpool_apply(pool, "noop", NULL, NULL, &err), DPOOL_OK, "%s", err.message);
    cr_assert_eq(dpool_harness_stop(harness, worker_pid), 0);
    char *log = worker_log();
    cr_assert_null(strstr(log, "worker process"), "a process was lost:\n%s", log);
    free(log);
}

Test(pool, crashed_process_fails_its_task_with_the_signal_and_is_replaced)
{
    dpool_error_t err = {0};
    cr_assert_eq(dpool_apply(pool, "crash", NULL, NULL, &err), DPOOL_ERR_WORKER_LOST);
    cr_assert(strstr(err.message, "SIGSEGV") || strstr(err.message, "signal 11"), "message: %s",
              err.message);
    long crashed = pid_in_message(err.message);
    cr_assert_gt(crashed, 0, "message names no pid: %s", err.message);
    // Two overlapping tasks prove both processes are there again, the dead one replaced
    // (long enough that a replacement slow to start on a loaded machine still takes one).
    dpool_result_t *spans[2];
    for (int i = 0; i < 2; i++)
        spans[i] = dpool_apply_asyncf(pool, "test.span", "d", 2.0);
    long pids[2];
    for (int i = 0; i < 2; i++) {
        dpool_buf_t value = {0};
        cr_assert_eq(dpool_result_get(spans[i], 30, &value, &err), DPOOL_OK, "%s", err.message);
        msgpack_unpacked unpacked;
        pids[i] = (long)number_of(field_of(unpack(&value, &unpacked), "pid"));
        msgpack_unpacked_destroy(&unpacked);
        dpool_buf_free(&value);
        dpool_result_destroy(&spans[i]);
    }
    cr_assert_neq(pids[0], pids[1], "both tasks ran in one process");
    cr_assert_neq(pids[0], crashed);
    cr_assert_neq(pids[1], crashed);
}

Test(pool, terminate_kills_running_tasks_and_fails_queued_ones)
{
    dpool_result_t *results[5];
    for (int i = 0; i < 5; i++)
        results[i] = dpool_apply_asyncf(pool, "test.span", "d", 30.0);
    struct timespec settle = {0, 500 * 1000 * 1000};
    nanosleep(&settle, NULL); // two start, three stay queued (cap 2)
    cr_assert_eq(dpool_terminate(pool), DPOOL_OK);
    for (int i = 0; i < 5; i++) {
        dpool_error_t err = {0};
        cr_assert_eq(dpool_result_get(results[i], 0, NULL, &err), DPOOL_ERR_TERMINATED,
                     "task %d: %s", i, err.message);
        dpool_result_destroy(&results[i]);
    }
    cr_assert_null(dpool_apply_async(pool, "noop", NULL, NULL), "a terminated pool takes no task");
    // The killed processes were replaced: a new pool gets both processes well before
    // the 30 s tasks could have ended by themselves.
    dpool_t *again = open_pool(2, NULL, NULL);
    dpool_result_t *spans[2];
    for (int i = 0; i < 2; i++)
        spans[i] = dpool_apply_asyncf(again, "test.span", "d", 0.2);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(dpool_result_get(spans[i], 15, NULL, NULL), DPOOL_OK);
        dpool_result_destroy(&spans[i]);
    }
    dpool_destroy(&again);
}

typedef struct {
    pthread_mutex_t lock;
    char out[8192];
    size_t out_size;
    char err[8192];
    size_t err_size;
} captured_t;

static void
capture_output(void *arg, uint64_t task_id, int stream, const char *data, size_t size)
{
    (void)task_id;
    captured_t *captured = arg;
    pthread_mutex_lock(&captured->lock);
    char *into = stream == 1 ? captured->out : captured->err;
    size_t *used = stream == 1 ? &captured->out_size : &captured->err_size;
    size_t room = sizeof captured->out - 1 - *used;
    size_t take = size < room ? size : room;
    memcpy(into + *used, data, take);
    *used += take;
    into[*used] = '\0';
    pthread_mutex_unlock(&captured->lock);
}

// Output per task of a run of many short tasks, and whether any came after its result.
typedef struct {
    pthread_mutex_t lock;
    uint64_t first_id;
    size_t count;
    dpool_result_t **handles; // by task id - first_id; filled before any task prints
    char (*out)[16];
    bool late; // output of a task whose result had already come
} per_task_t;

static void
capture_per_task(void *arg, uint64_t task_id, int stream, const char *data, size_t size)
{
    per_task_t *seen = arg;
    pthread_mutex_lock(&seen->lock);
    size_t index = (size_t)(task_id - seen->first_id);
    if (stream == 1 && seen->handles && index < seen->count && seen->handles[index]) {
        seen->late = seen->late || dpool_result_ready(seen->handles[index]);
        size_t used = strlen(seen->out[index]);
        snprintf(seen->out[index] + used, sizeof seen->out[index] - used, "%.*s", (int)size, data);
    }
    pthread_mutex_unlock(&seen->lock);
}

Test(pool, many_short_tasks_printing_or_not_keep_output_with_its_task_and_before_its_result)
{
    // Enough short tasks for the broker to chain them and the daemon to hand them ahead:
    // the process goes on past the silent ones and stops after each printing one.
    enum { S_TASKS = 400 };
    static per_task_t seen = {.lock = PTHREAD_MUTEX_INITIALIZER};
    static dpool_result_t *handles[S_TASKS];
    static char out[S_TASKS][16];
    dpool_t *printing = open_pool(1, capture_per_task, &seen);
    dpool_buf_t one = {0};
    dpool_pack(&one, "i", 1);
    pthread_mutex_lock(&seen.lock); // no output is looked at before every handle is known
    for (int i = 0; i < S_TASKS; i++) {
        bool prints = i % 5 == 0 || i % 7 == 0;
        handles[i] =
            dpool_apply_async(printing, prints ? "test.print" : "noop", prints ? &one : NULL, NULL);
        cr_assert_not_null(handles[i]);
    }
    seen.first_id = dpool_result_task_id(handles[0]);
    seen.out = out;
    seen.count = S_TASKS;
    seen.handles = handles;
    pthread_mutex_unlock(&seen.lock);
    for (int i = 0; i < S_TASKS; i++)
        cr_assert_eq(dpool_result_wait(handles[i], 60), DPOOL_OK, "task %d", i);
    for (int i = 0; i < S_TASKS; i++)
        cr_assert_eq(dpool_result_task_id(handles[i]), seen.first_id + (uint64_t)i,
                     "task ids are consecutive");
    pthread_mutex_lock(&seen.lock);
    bool late = seen.late;
    seen.handles = NULL; // from here the callback records nothing: asserts run unlocked
    pthread_mutex_unlock(&seen.lock);
    cr_assert_not(late, "output arrived after its task's result");
    for (int i = 0; i < S_TASKS; i++)
        cr_assert_str_eq(out[i], i % 5 == 0 || i % 7 == 0 ? "out 0\n" : "", "task %d", i);
    for (int i = 0; i < S_TASKS; i++)
        dpool_result_destroy(&handles[i]);
    dpool_buf_free(&one);
    dpool_destroy(&printing);
}

Test(pool, task_output_reaches_the_client_in_order_before_the_result)
{
    static captured_t captured = {.lock = PTHREAD_MUTEX_INITIALIZER};
    dpool_t *printing = open_pool(1, capture_output, &captured);
    dpool_buf_t args = {0};
    dpool_pack(&args, "i", 200);
    cr_assert_eq(dpool_apply(printing, "test.print", &args, NULL, NULL), DPOOL_OK);
    // Everything must be here when apply returns: output precedes the result.
    pthread_mutex_lock(&captured.lock);
    char expected_out[8192] = "", expected_err[8192] = "";
    for (int i = 0; i < 200; i++) {
        snprintf(expected_out + strlen(expected_out), sizeof expected_out - strlen(expected_out),
                 "out %d\n", i);
        snprintf(expected_err + strlen(expected_err), sizeof expected_err - strlen(expected_err),
                 "err %d\n", i);
    }
    cr_assert_str_eq(captured.out, expected_out);
    cr_assert_str_eq(captured.err, expected_err);
    pthread_mutex_unlock(&captured.lock);
    dpool_buf_free(&args);
    dpool_destroy(&printing);
}

// One thread's share of concurrent_applies...: `count` calls of echo [id * 10000 + i],
// synchronous or in bursts of async ones; wrong counts the values that came back wrong
// or not at all.
typedef struct {
    int id;
    int count;
    bool bursts;
    int wrong;
} s_caller_t;

static bool
s_echoed(dpool_buf_t *value, int64_t expected)
{
    msgpack_unpacked unpacked;
    msgpack_unpacked_init(&unpacked);
    bool ok =
        msgpack_unpack_next(&unpacked, value->data, value->size, NULL) == MSGPACK_UNPACK_SUCCESS &&
        unpacked.data.type == MSGPACK_OBJECT_POSITIVE_INTEGER && unpacked.data.via.i64 == expected;
    msgpack_unpacked_destroy(&unpacked);
    dpool_buf_free(value);
    return ok;
}

static void *
s_call(void *arg)
{
    s_caller_t *caller = arg;
    dpool_result_t *results[25];
    for (int i = 0; i < caller->count;) {
        int n = caller->bursts ? 25 : 1;
        for (int k = 0; k < n; k++) {
            dpool_buf_t args = {0};
            dpool_pack(&args, "i", (int64_t)caller->id * 10000 + i + k);
            results[k] = caller->bursts ? dpool_apply_async(pool, "echo", &args, NULL) : NULL;
            dpool_buf_t value = {0};
            if (!caller->bursts && (dpool_apply(pool, "echo", &args, &value, NULL) != DPOOL_OK ||
                                    !s_echoed(&value, (int64_t)caller->id * 10000 + i + k)))
                caller->wrong++;
            dpool_buf_free(&args);
        }
        for (int k = 0; caller->bursts && k < n; k++) {
            dpool_buf_t value = {0};
            if (!results[k] || dpool_result_get(results[k], 30, &value, NULL) != DPOOL_OK ||
                !s_echoed(&value, (int64_t)caller->id * 10000 + i + k))
                caller->wrong++;
            dpool_result_destroy(&results[k]);
        }
        i += n;
    }
    return NULL;
}

Test(pool, concurrent_applies_and_bursts_from_several_threads_each_get_their_own_values)
{
    // A lone apply is sent, and its result read, by its own thread while the I/O
    // thread sleeps; with others in flight it goes through the I/O thread. Mixed here,
    // every hand-over of the socket between them is exercised.
    s_caller_t callers[5] = {{1, 300, false, 0},
                             {2, 300, false, 0},
                             {3, 300, false, 0},
                             {4, 300, true, 0},
                             {5, 300, true, 0}};
    pthread_t threads[5];
    for (int i = 0; i < 5; i++)
        cr_assert_eq(pthread_create(&threads[i], NULL, s_call, &callers[i]), 0);
    for (int i = 0; i < 5; i++)
        pthread_join(threads[i], NULL);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(callers[i].wrong, 0, "thread %d: %d of %d calls went wrong", callers[i].id,
                     callers[i].wrong, callers[i].count);
}
