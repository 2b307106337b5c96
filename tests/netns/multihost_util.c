/*  Helpers of tests/test_multihost.c (included from it, after dpool_netns.c): start
    the daemons on the hosts of a topology, ask the broker for its status from a client
    host, map worker-process pids to the host that ran them, and read test.span spans.

    The topology and what was started on it live in file-static fixtures: criterion
    runs each test in a process of its own. */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <dpool/dpool.h>
#include <jansson.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MH_MAX_WORKERS 4
#define MH_PORT "5555"
#define MH_MODULE DPOOL_LIB_DIR "/dpool_test_module.so"

static dpool_netns_t *net;    // the topology of the running test, or NULL
static char skip_reason[700]; // why there is none
static char endpoint[64];     // tcp://<broker address>:5555
static struct {               // worker daemons started, to tell hosts' processes apart
    char host[16];
    pid_t pid;
} workers[MH_MAX_WORKERS];
static size_t worker_count;
static dpool_t *pools[8]; // pools open now: a failed assertion leaves them to teardown

// Skips the calling test, loudly, when no topology could be made.
#define MH_REQUIRE_NET()                                                                           \
    do {                                                                                           \
        if (!net)                                                                                  \
            cr_skip_test("SKIPPED, network namespaces unavailable: %s", skip_reason);              \
    } while (0)

static double
mh_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
mh_add_hosts(const char *const *names)
{
    for (size_t i = 0; names[i]; i++)
        cr_assert_not_null(dpool_netns_add_host(net, names[i]), "cannot make host %s", names[i]);
}

// The broker on host, bound to that host's own address (non-loopback: --insecure).
static pid_t
mh_start_broker(const char *host)
{
    snprintf(endpoint, sizeof endpoint, "tcp://%s:" MH_PORT, dpool_netns_address(net, host));
    const char *argv[] = {"dpool-broker", "--bind", endpoint, "--insecure", NULL};
    pid_t pid = dpool_netns_spawn(net, host, argv, NULL, NULL, NULL);
    cr_assert_gt(pid, 0, "cannot start the broker on %s", host);
    return pid;
}

static void
mh_note_worker(const char *host, pid_t pid)
{
    cr_assert_lt(worker_count, MH_MAX_WORKERS);
    snprintf(workers[worker_count].host, sizeof workers[0].host, "%s", host);
    workers[worker_count++].pid = pid;
}

// dpool-worker on host against the broker, with the test module (test.span).
static pid_t
mh_start_worker(const char *host, int processes)
{
    char count[16];
    snprintf(count, sizeof count, "%d", processes);
    const char *argv[] = {"dpool-worker", "--broker", endpoint,  "--processes",
                          count,          "--module", MH_MODULE, NULL};
    pid_t pid = dpool_netns_spawn(net, host, argv, NULL, NULL, NULL);
    cr_assert_gt(pid, 0, "cannot start a worker on %s", host);
    mh_note_worker(host, pid);
    return pid;
}

// `dpool status --json` run on host: the parsed reply (owned) or NULL.
static json_t *
mh_status(const char *host)
{
    const char *argv[] = {"dpool", "status", "--json", "--broker", endpoint, NULL};
    char *out = NULL;
    int status = dpool_netns_run(net, host, argv, NULL, 10, &out, NULL);
    json_t *reply = status == 0 ? json_loads(out, 0, NULL) : NULL;
    free(out);
    return reply;
}

static long
mh_int(const json_t *object, const char *key)
{
    const json_t *value = json_object_get(object, key);
    return json_is_integer(value) ? (long)json_integer_value(value) : -1;
}

// The status entry of worker host name, or NULL (borrowed from status).
static json_t *
mh_status_host(const json_t *status, const char *name)
{
    size_t i;
    json_t *entry;
    json_array_foreach(json_object_get(status, "hosts"), i, entry)
    {
        const char *host = json_string_value(json_object_get(entry, "host"));
        if (host && strcmp(host, name) == 0)
            return entry;
    }
    return NULL;
}

// The status entry of pool name, or NULL (borrowed from status).
static json_t *
mh_status_pool(const json_t *status, const char *name)
{
    size_t i;
    json_t *entry;
    json_array_foreach(json_object_get(status, "pools"), i, entry)
    {
        const char *pool = json_string_value(json_object_get(entry, "name"));
        if (pool && strcmp(pool, name) == 0)
            return entry;
    }
    return NULL;
}

// Waits (at most timeout_s, asking every 100 ms from host) until the broker counts
// `processes` worker processes. Returns the seconds it took, or fails the test.
static double
mh_wait_processes(const char *host, long processes, double timeout_s)
{
    double start = mh_now();
    long seen = -1;
    for (int i = 0; i < 1000 && mh_now() - start < timeout_s; i++) {
        json_t *status = mh_status(host);
        seen = status ? mh_int(status, "processes") : -1;
        json_decref(status);
        if (seen == processes)
            return mh_now() - start;
        usleep(100000);
    }
    cr_assert_fail("the broker counts %ld worker processes after %.0f s, not %ld", seen, timeout_s,
                   processes);
    return -1;
}

// The host whose worker daemon is the parent of process pid, or NULL. Worker processes
// are children of their daemon; no pid namespace is used, so pids are global.
static const char *
mh_host_of_pid(long pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    char *text = dpool_netns_slurp(path);
    const char *ppid_line = text ? strstr(text, "\nPPid:") : NULL;
    long ppid = ppid_line ? strtol(ppid_line + 6, NULL, 10) : -1;
    free(text);
    for (size_t i = 0; i < worker_count; i++)
        if (workers[i].pid == ppid)
            return workers[i].host;
    return NULL;
}

// How many different worker hosts ran the processes pids[0..count).
static int
mh_distinct_hosts(const long *pids, size_t count)
{
    bool used[MH_MAX_WORKERS] = {false};
    int distinct = 0;
    for (size_t i = 0; i < count; i++) {
        const char *host = mh_host_of_pid(pids[i]);
        // Bounded by the array too: GCC's -O2 cannot see that worker_count is.
        for (size_t w = 0; host && w < worker_count && w < MH_MAX_WORKERS; w++)
            if (strcmp(workers[w].host, host) == 0 && !used[w]) {
                used[w] = true;
                distinct++;
            }
    }
    return distinct;
}

typedef struct {
    double start;
    double end;
    long pid;
} mh_span_t;

static double
mh_number(const msgpack_object *obj)
{
    if (obj->type == MSGPACK_OBJECT_FLOAT64 || obj->type == MSGPACK_OBJECT_FLOAT32)
        return obj->via.f64;
    if (obj->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        return (double)obj->via.u64;
    return -1;
}

static bool
mh_key_is(const msgpack_object *key, const char *name)
{
    return key->type == MSGPACK_OBJECT_STR && key->via.str.size == strlen(name) &&
           memcmp(key->via.str.ptr, name, key->via.str.size) == 0;
}

// A test.span result, {"start", "end", "pid"}, read from msgpack bytes.
static mh_span_t
mh_span_of_msgpack(const dpool_buf_t *value)
{
    mh_span_t span = {-1, -1, -1};
    msgpack_unpacked unpacked;
    msgpack_unpacked_init(&unpacked);
    if (msgpack_unpack_next(&unpacked, value->data, value->size, NULL) == MSGPACK_UNPACK_SUCCESS &&
        unpacked.data.type == MSGPACK_OBJECT_MAP) {
        const msgpack_object_map *map = &unpacked.data.via.map;
        for (uint32_t i = 0; i < map->size; i++) {
            double number = mh_number(&map->ptr[i].val);
            if (mh_key_is(&map->ptr[i].key, "start"))
                span.start = number;
            else if (mh_key_is(&map->ptr[i].key, "end"))
                span.end = number;
            else if (mh_key_is(&map->ptr[i].key, "pid"))
                span.pid = (long)number;
        }
    }
    msgpack_unpacked_destroy(&unpacked);
    return span;
}

// Waits for a test.span task and returns its span; fails the test on any error.
static mh_span_t
mh_span_of(dpool_result_t *result, double timeout_s)
{
    dpool_buf_t value = {0};
    dpool_error_t err = {0};
    int rc = dpool_result_get(result, timeout_s, &value, &err);
    cr_assert_eq(rc, DPOOL_OK, "test.span failed: %s (%s)", dpool_strerror(rc), err.message);
    mh_span_t span = mh_span_of_msgpack(&value);
    dpool_buf_free(&value);
    cr_assert(span.start > 0 && span.end >= span.start && span.pid > 0, "not a span");
    return span;
}

// A test.span result printed by `dpool apply` as JSON.
static mh_span_t
mh_span_of_json(const char *line)
{
    mh_span_t span = {-1, -1, -1};
    json_t *json = json_loads(line, JSON_DECODE_ANY, NULL);
    if (json) {
        span.start = json_number_value(json_object_get(json, "start"));
        span.end = json_number_value(json_object_get(json, "end"));
        span.pid = (long)json_integer_value(json_object_get(json, "pid"));
    }
    json_decref(json);
    return span;
}

// The most spans running at one instant (a span ending as another starts does not
// overlap it). Quadratic, which is nothing for a few hundred spans.
static int
mh_max_overlap(const mh_span_t *spans, size_t count)
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

// Opens a pool from the calling thread (which must be in a client host's namespace).
static dpool_t *
mh_open_pool(const char *name, int processes, unsigned retries)
{
    dpool_opts_t opts;
    dpool_opts_init(&opts);
    opts.broker = endpoint;
    opts.name = name;
    opts.processes = processes;
    opts.retries = retries;
    dpool_error_t err = {0};
    dpool_t *pool = dpool_new_opts(&opts, &err);
    cr_assert_not_null(pool, "cannot open pool %s: %s", name ? name : "(private)", err.message);
    for (size_t i = 0; i < sizeof pools / sizeof pools[0]; i++)
        if (!pools[i]) {
            pools[i] = pool;
            return pool;
        }
    cr_assert_fail("more than %zu pools open at once", sizeof pools / sizeof pools[0]);
    return NULL;
}

// Destroys a pool opened by mh_open_pool. NULL-safe; sets *pool_p to NULL.
static void
mh_close_pool(dpool_t **pool_p)
{
    dpool_t *pool = *pool_p; // pool_p may point into pools[]
    *pool_p = NULL;
    for (size_t i = 0; pool && i < sizeof pools / sizeof pools[0]; i++)
        if (pools[i] == pool)
            pools[i] = NULL;
    dpool_destroy(&pool);
}

// Destroys the pools a failed test left open, before their broker goes away (their
// I/O threads must not outlive the test's teardown: CZMQ asserts on them at exit).
static void
mh_close_all_pools(void)
{
    for (size_t i = 0; i < sizeof pools / sizeof pools[0]; i++)
        mh_close_pool(&pools[i]);
}

// The one worker host whose status shows a busy process, polled from host for at
// most timeout_s; fails the test when none does.
static void
mh_busy_host(const char *host, double timeout_s, char *name, size_t name_size)
{
    double start = mh_now();
    for (int i = 0; i < 200 && mh_now() - start < timeout_s; i++) {
        json_t *status = mh_status(host);
        size_t index;
        json_t *entry;
        json_array_foreach(json_object_get(status, "hosts"), index, entry)
        {
            if (mh_int(entry, "busy") > 0) {
                snprintf(name, name_size, "%s", json_string_value(json_object_get(entry, "host")));
                json_decref(status);
                return;
            }
        }
        json_decref(status);
        usleep(50000);
    }
    cr_assert_fail("no worker host was busy within %.0f s", timeout_s);
}
