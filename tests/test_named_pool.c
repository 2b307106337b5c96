/*  Named pools across client processes, and processes = 0 following the cluster, on a
    real broker and real workers on loopback. Concurrency is measured from the workers'
    own clocks: test.span returns when each task started and ended, and the largest
    number of spans open at one instant is what ran at once. The clients are `dpool map`
    processes (fork + exec, killed with the test by PR_SET_PDEATHSIG, waited for and, on
    a timeout, killed by PID). */
#include "dpool_harness.h"

#include <criterion/criterion.h>
#include <czmq.h>
#include <dpool/dpool.h>
#include <fcntl.h>
#include <jansson.h>
#include <msgpack.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_SPANS 64

typedef struct {
    double start, end;
} span_t;

typedef struct {
    span_t spans[MAX_SPANS];
    size_t count;
} spans_t;

static dpool_harness_t *harness;

static void
setup(void)
{
    harness = dpool_harness_new();
    cr_assert_not_null(harness);
    cr_assert_not_null(dpool_harness_start_broker(harness, NULL));
}

static void
teardown(void)
{
    dpool_harness_destroy(&harness);
}

TestSuite(named_pool, .init = setup, .fini = teardown, .timeout = 60);

static pid_t
s_start_worker(int processes)
{
    const char *args[] = {"--module", DPOOL_LIB_DIR "/dpool_test_module.so", NULL};
    pid_t pid = dpool_harness_start_worker(harness, processes, args);
    cr_assert_gt(pid, 0);
    return pid;
}

// Starts `dpool map --pool NAME --processes CAP test.span` reading input (written to a
// file first) with its stdout going to a file. Returns its pid.
static pid_t
s_start_client(const char *name, int cap, const char *input, char *out_path, size_t out_size)
{
    char in_path[512], cap_text[16];
    static int serial;
    serial++;
    snprintf(in_path, sizeof in_path, "%s/in-%d", dpool_harness_dir(harness), serial);
    snprintf(out_path, out_size, "%s/out-%d", dpool_harness_dir(harness), serial);
    snprintf(cap_text, sizeof cap_text, "%d", cap);
    FILE *file = fopen(in_path, "w");
    cr_assert_not_null(file);
    fputs(input, file);
    fclose(file);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int in = open(in_path, O_RDONLY), out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (in < 0 || out < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0)
            _exit(127);
        execl(DPOOL_BIN_DIR "/dpool", "dpool", "map", "--broker", dpool_harness_endpoint(harness),
              "--pool", name, "--processes", cap_text, "--no-progress", "test.span", (char *)NULL);
        _exit(127);
    }
    return pid;
}

// Waits up to timeout_s for pid; kills it (by PID) when it runs over. Returns its exit
// status, -1 when it was killed.
static int
s_wait(pid_t pid, double timeout_s)
{
    int64_t deadline = zclock_mono() + (int64_t)(timeout_s * 1000);
    int status = 0;
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (zclock_mono() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        zclock_sleep(20);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Adds the spans printed by a client (one {"start", "end", "pid"} per line).
static void
s_read_spans(const char *path, spans_t *spans)
{
    FILE *file = fopen(path, "r");
    cr_assert_not_null(file);
    char line[256];
    while (fgets(line, sizeof line, file)) {
        json_t *span = json_loads(line, 0, NULL);
        cr_assert_not_null(span, "not JSON: %s", line);
        cr_assert_lt(spans->count, MAX_SPANS);
        spans->spans[spans->count++] = (span_t){json_number_value(json_object_get(span, "start")),
                                                json_number_value(json_object_get(span, "end"))};
        json_decref(span);
    }
    fclose(file);
}

// The most spans open at one instant among those that start before `until`.
static int
s_max_overlap(const spans_t *spans, double from, double until)
{
    int most = 0;
    for (size_t i = 0; i < spans->count; i++) {
        double t = spans->spans[i].start; // the count only rises at a start
        if (t < from || t >= until)
            continue;
        int open = 0;
        for (size_t j = 0; j < spans->count; j++)
            open += spans->spans[j].start <= t && t < spans->spans[j].end;
        most = open > most ? open : most;
    }
    return most;
}

static char *
s_lines(const char *line, int count)
{
    char *text = calloc((size_t)count, strlen(line) + 2);
    for (int i = 0; i < count; i++)
        strcat(strcat(text, line), "\n");
    return text;
}

Test(named_pool, cap_2_holds_across_three_client_processes_and_spares_another_pool)
{
    s_start_worker(5);
    cr_assert(dpool_harness_wait_processes(harness, 5, 20));
    char *input = s_lines("0.3", 4), *other_input = s_lines("0.3", 4);
    char paths[4][512];
    pid_t clients[4];
    for (int i = 0; i < 3; i++)
        clients[i] = s_start_client("shared", 2, input, paths[i], sizeof paths[i]);
    clients[3] = s_start_client("other", 1, other_input, paths[3], sizeof paths[3]);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(s_wait(clients[i], 30), 0, "client %d failed", i);
    spans_t shared = {0}, other = {0};
    for (int i = 0; i < 3; i++)
        s_read_spans(paths[i], &shared);
    s_read_spans(paths[3], &other);
    cr_assert_eq(shared.count, 12);
    cr_assert_eq(other.count, 4);
    cr_assert_eq(s_max_overlap(&shared, 0, 1e300), 2,
                 "the shared pool's cap of 2 across 3 "
                 "clients (5 processes were free)");
    cr_assert_eq(s_max_overlap(&other, 0, 1e300), 1);
    // not starved: the other pool ran while the shared one still had work
    double shared_end = 0, other_start = 1e300;
    for (size_t i = 0; i < shared.count; i++)
        shared_end = shared.spans[i].end > shared_end ? shared.spans[i].end : shared_end;
    for (size_t i = 0; i < other.count; i++)
        other_start = other.spans[i].start < other_start ? other.spans[i].start : other_start;
    cr_assert_lt(other_start, shared_end - 0.5, "the other pool waited for the shared one");
    free(input);
    free(other_input);
}

// test.span over `count` spans of `seconds` through libdpool; returns the handle.
static dpool_result_t *
s_map_spans(dpool_t *pool, int count, double seconds)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init(&sbuf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sbuf, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, (size_t)count);
    for (int i = 0; i < count; i++)
        msgpack_pack_double(&pk, seconds);
    dpool_buf_t items = {.data = sbuf.data, .size = sbuf.size};
    dpool_error_t err = {0};
    dpool_result_t *result = dpool_map_async(pool, "test.span", &items, 1, NULL, &err);
    cr_assert_not_null(result, "%s", err.message);
    msgpack_sbuffer_destroy(&sbuf);
    return result;
}

static void
s_spans_of(dpool_result_t *result, spans_t *spans)
{
    dpool_error_t err = {0};
    cr_assert_eq(dpool_result_wait(result, 30), DPOOL_OK);
    cr_assert_eq(dpool_result_get(result, 0, NULL, &err), DPOOL_OK, "%s", err.message);
    size_t count = 0;
    cr_assert_eq(dpool_result_count(result, &count), DPOOL_OK);
    for (size_t i = 0; i < count; i++) {
        const char *data;
        size_t size;
        cr_assert_eq(dpool_result_item(result, i, &data, &size), DPOOL_OK);
        msgpack_unpacked value;
        msgpack_unpacked_init(&value);
        cr_assert_eq(msgpack_unpack_next(&value, data, size, NULL), MSGPACK_UNPACK_SUCCESS);
        span_t span = {0};
        for (uint32_t k = 0; k < value.data.via.map.size; k++) {
            msgpack_object_kv *kv = &value.data.via.map.ptr[k];
            if (kv->key.via.str.size == 5 && memcmp(kv->key.via.str.ptr, "start", 5) == 0)
                span.start = kv->val.via.f64;
            if (kv->key.via.str.size == 3 && memcmp(kv->key.via.str.ptr, "end", 3) == 0)
                span.end = kv->val.via.f64;
        }
        msgpack_unpacked_destroy(&value);
        cr_assert_lt(spans->count, MAX_SPANS);
        spans->spans[spans->count++] = span;
    }
}

// The named pool's cap in the broker's status, or -1.
static int
s_status_cap(const char *name)
{
    const char *argv[] = {"dpool", "status", "--json", "--broker", dpool_harness_endpoint(harness),
                          NULL};
    char *out = NULL;
    cr_assert_eq(dpool_harness_run(harness, argv, NULL, 10, &out, NULL), 0);
    json_t *status = json_loads(out, 0, NULL);
    free(out);
    cr_assert_not_null(status);
    int cap = -1;
    size_t i;
    json_t *pool;
    json_array_foreach(json_object_get(status, "pools"), i,
                       pool) if (strcmp(json_string_value(json_object_get(pool, "name")), name) ==
                                 0) cap = (int)json_integer_value(json_object_get(pool, "cap"));
    json_decref(status);
    return cap;
}

Test(named_pool, processes_0_follows_workers_joining_and_leaving)
{
    s_start_worker(1);
    cr_assert(dpool_harness_wait_processes(harness, 1, 20));
    dpool_opts_t opts = {.broker = dpool_harness_endpoint(harness), .name = "follow"};
    dpool_t *pool = dpool_new_opts(&opts, NULL);
    cr_assert_not_null(pool);
    cr_assert_eq(dpool_cap(pool), 1);
    // 6 s at cap 1: enough spans left to run 3 at once after a join slow under load.
    dpool_result_t *result = s_map_spans(pool, 10, 0.6);
    zclock_sleep(100);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    double joined = (double)now.tv_sec + (double)now.tv_nsec / 1e9;
    pid_t second = s_start_worker(2); // mid-run: the cluster grows to 3 processes
    cr_assert(dpool_harness_wait_processes(harness, 3, 20));
    spans_t spans = {0};
    s_spans_of(result, &spans);
    dpool_result_destroy(&result);
    cr_assert_eq(s_max_overlap(&spans, 0, joined), 1, "one process, cap 1, before the join");
    cr_assert_eq(s_max_overlap(&spans, joined, 1e300), 3, "the cap rose to 3 with the join");
    cr_assert_eq(s_status_cap("follow"), 3);
    // one leaves: the cap falls back to the one process left
    dpool_harness_stop(harness, second);
    cr_assert(dpool_harness_wait_processes(harness, 1, 20));
    cr_assert_eq(s_status_cap("follow"), 1);
    result = s_map_spans(pool, 3, 0.1);
    spans.count = 0;
    s_spans_of(result, &spans);
    cr_assert_eq(s_max_overlap(&spans, 0, 1e300), 1);
    dpool_result_destroy(&result);
    dpool_destroy(&pool);
}
