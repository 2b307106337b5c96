/*  The cluster-shaped benchmark modes. They read the broker's STATUS (over a DEALER of
    their own, with the common protocol code) to know when the broker holds every task
    or sees every process, so timings start and stop on the broker's state, not on a
    guess. */
#include "dpool_bench_cluster.h"
#include "dpool_clock.h"
#include "dpool_proto.h"

#include <libgen.h>
#include <limits.h>
#include <msgpack.h>
#include <signal.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define S_MAX_DAEMONS 512

typedef struct {
    long processes; // "processes" of the status map
    long idle;      // "idle" summed over its hosts: processes started and waiting
    long queued;    // sum of the pools' "queued"
} s_status_t;

static long
s_map_uint(const msgpack_object *map, const char *key)
{
    for (uint32_t i = 0; map->type == MSGPACK_OBJECT_MAP && i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(key) &&
            memcmp(k->via.str.ptr, key, k->via.str.size) == 0 &&
            map->via.map.ptr[i].val.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            return (long)map->via.map.ptr[i].val.via.u64;
    }
    return -1;
}

static const msgpack_object *
s_map_get(const msgpack_object *map, const char *key)
{
    for (uint32_t i = 0; map->type == MSGPACK_OBJECT_MAP && i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(key) &&
            memcmp(k->via.str.ptr, key, k->via.str.size) == 0)
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

// Asks the broker for its status. Returns false when it does not answer within 5 s.
static bool
s_status(const char *broker, s_status_t *status)
{
    zsock_t *dealer = zsock_new_dealer(broker);
    if (!dealer)
        return false;
    zsock_set_linger(dealer, 0);
    dpool_msg_t request = {.command = DPOOL_CMD_STATUS};
    zpoller_t *poller = zpoller_new(dealer, NULL);
    bool answered = false;
    if (dpool_proto_send(dealer, &request, NULL) == 0 && zpoller_wait(poller, 5000) == dealer) {
        zmsg_t *zmsg = zmsg_recv(dealer);
        dpool_msg_t reply = {0};
        const char *why = NULL;
        msgpack_unpacked unpacked;
        msgpack_unpacked_init(&unpacked);
        if (zmsg && dpool_proto_decode(&zmsg, false, NULL, &reply, &why) == 0 && reply.payload &&
            msgpack_unpack_next(&unpacked, (const char *)zframe_data(reply.payload),
                                zframe_size(reply.payload), NULL) == MSGPACK_UNPACK_SUCCESS) {
            status->processes = s_map_uint(&unpacked.data, "processes");
            status->queued = 0;
            status->idle = 0;
            const msgpack_object *hosts = s_map_get(&unpacked.data, "hosts");
            for (uint32_t i = 0;
                 hosts && hosts->type == MSGPACK_OBJECT_ARRAY && i < hosts->via.array.size; i++)
                status->idle += s_map_uint(&hosts->via.array.ptr[i], "idle");
            const msgpack_object *pools = s_map_get(&unpacked.data, "pools");
            for (uint32_t i = 0;
                 pools && pools->type == MSGPACK_OBJECT_ARRAY && i < pools->via.array.size; i++)
                status->queued += s_map_uint(&pools->via.array.ptr[i], "queued");
            answered = true;
        }
        msgpack_unpacked_destroy(&unpacked);
        dpool_msg_reset(&reply);
        zmsg_destroy(&zmsg);
    }
    zpoller_destroy(&poller);
    zsock_destroy(&dealer);
    return answered;
}

// Waits (at most timeout_s) until test(status) holds.
static bool
s_wait_status(const char *broker, bool (*test)(const s_status_t *, long), long want,
              double timeout_s)
{
    int64_t deadline = dpool_clock_ms() + (int64_t)(timeout_s * 1000);
    s_status_t status;
    while (dpool_clock_ms() < deadline) {
        if (s_status(broker, &status) && test(&status, want))
            return true;
        nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
    }
    return false;
}

// Every process has started and is idle: a run timed before that would time the
// daemons forking, not the broker dispatching.
static bool
s_all_idle(const s_status_t *status, long want)
{
    return status->processes == want && status->idle == want;
}

static bool
s_queued_at_least(const s_status_t *status, long want)
{
    return status->queued >= want;
}

// Every one of want processes is running a task.
static bool
s_all_busy(const s_status_t *status, long want)
{
    return status->processes == want && status->idle == 0;
}

static long
s_rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *file = fopen(path, "r");
    long rss = -1;
    while (file && fgets(line, sizeof line, file))
        if (strncmp(line, "VmRSS:", 6) == 0)
            rss = strtol(line + 6, NULL, 10);
    if (file)
        fclose(file);
    return rss;
}

// Starts a worker daemon of `processes` processes; it dies with dpool-bench.
static pid_t
s_start_worker(const dpool_bench_env_t *env, long processes)
{
    char exe[PATH_MAX], worker[PATH_MAX + 32], count[32];
    snprintf(exe, sizeof exe, "%s", env->self_exe);
    snprintf(worker, sizeof worker, "%s/dpool-worker", dirname(exe));
    snprintf(count, sizeof count, "%ld", processes);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        execl(worker, "dpool-worker", "--broker", env->broker, "--processes", count, "--log-level",
              "error", (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void
s_stop_workers(pid_t *pids, long count)
{
    for (long i = 0; i < count; i++)
        if (pids[i] > 0)
            kill(pids[i], SIGTERM);
    for (long i = 0; i < count; i++)
        if (pids[i] > 0)
            waitpid(pids[i], NULL, 0);
}

static dpool_t *
s_open(const dpool_bench_env_t *env, int processes)
{
    dpool_opts_t opts;
    dpool_opts_init(&opts);
    opts.broker = env->broker;
    opts.processes = processes;
    dpool_error_t err = {0};
    dpool_t *pool = dpool_new_opts(&opts, &err);
    if (!pool)
        fprintf(stderr, "dpool-bench: cannot open the pool: %s %s\n", dpool_strerror(err.code),
                err.message);
    return pool;
}

// Submits count no-op tasks; returns the handles (owned) or NULL.
static dpool_result_t **
s_submit(dpool_t *pool, long count)
{
    dpool_result_t **results = calloc((size_t)count, sizeof *results);
    for (long i = 0; results && i < count; i++)
        if (!(results[i] = dpool_apply_async(pool, "noop", NULL, NULL))) {
            fprintf(stderr, "dpool-bench: submit failed at task %ld\n", i);
            return results; // the caller collects what there is
        }
    return results;
}

static bool
s_collect(dpool_result_t **results, long count)
{
    bool all = true;
    for (long i = 0; results && i < count; i++) {
        all = all && results[i] && dpool_result_get(results[i], 120, NULL, NULL) == DPOOL_OK;
        dpool_result_destroy(&results[i]);
    }
    free(results);
    return all;
}

int
dpool_bench_queue(const dpool_bench_env_t *env, long count)
{
    if (env->broker_pid <= 0 || s_rss_kb(env->broker_pid) < 0) {
        fprintf(stderr, "dpool-bench: queue needs --broker-pid of a broker on this host\n");
        return 2;
    }
    dpool_t *pool = s_open(env, 4);
    if (!pool)
        return 1;
    long before = s_rss_kb(env->broker_pid);
    dpool_result_t **results = s_submit(pool, count);
    if (!s_wait_status(env->broker, s_queued_at_least, count, 120)) {
        fprintf(stderr, "dpool-bench: the broker never held all %ld tasks (is --grace long?)\n",
                count);
        dpool_destroy(&pool); // terminates them
        for (long i = 0; results && i < count; i++)
            dpool_result_destroy(&results[i]);
        free(results);
        return 1;
    }
    long after = s_rss_kb(env->broker_pid);
    printf("RESULT system=dpool mode=queue n=%ld rss_before_kb=%ld rss_after_kb=%ld "
           "bytes_per_task=%.1f\n",
           count, before, after, (double)(after - before) * 1024.0 / (double)count);
    pid_t workers[2] = {0, 0};
    int64_t start = dpool_clock_us();
    for (int i = 0; i < 2; i++)
        workers[i] = s_start_worker(env, 2);
    // Also timed from the first result: the start of two daemons (exec, fork, connect)
    // is a fixed cost that a drain of 1,000 tasks would otherwise mostly measure.
    bool ok =
        count > 0 && results && results[0] && dpool_result_get(results[0], 120, NULL, NULL) == 0;
    int64_t first = dpool_clock_us();
    ok = s_collect(results, count) && ok;
    int64_t end = dpool_clock_us();
    double secs = (double)(end - start) / 1e6, after_first = (double)(end - first) / 1e6;
    if (ok)
        printf("RESULT system=dpool mode=drain n=%ld secs=%.3f rate=%.1f "
               "rate_after_first=%.1f\n",
               count, secs, (double)count / secs,
               after_first > 0 ? (double)(count - 1) / after_first : 0.0);
    s_stop_workers(workers, 2);
    dpool_destroy(&pool);
    return ok ? 0 : 1;
}

// Submits one sleep of seconds in pool; an owned handle, or NULL.
static dpool_result_t *
s_submit_sleep(dpool_t *pool, double seconds)
{
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init(&buffer);
    msgpack_packer packer;
    msgpack_packer_init(&packer, &buffer, msgpack_sbuffer_write);
    msgpack_pack_array(&packer, 1);
    msgpack_pack_double(&packer, seconds);
    dpool_buf_t args = {buffer.data, buffer.size};
    dpool_result_t *result = dpool_apply_async(pool, "sleep", &args, NULL);
    msgpack_sbuffer_destroy(&buffer);
    return result;
}

// For each of the first `held` results of results (count + held handles, the first
// count submitted), submits one more no-op task into the pool, so that about count
// stay queued while they come; collects everything and sets *secs_p to the time the
// last four fifths of those held results took (the first fifth covers the start of
// chaining). False when a task failed or could not be submitted.
static bool
s_collect_held(dpool_t *pool, dpool_result_t **results, long count, long held, double *secs_p)
{
    long total = count + held, submitted = count, timed_from = held / 5;
    int64_t start = dpool_clock_us(), end = start;
    bool all = true;
    for (long i = 0; i < submitted; i++) { // submitted stops growing after a failure
        if (i == timed_from)
            start = dpool_clock_us();
        all = all && results[i] && dpool_result_get(results[i], 120, NULL, NULL) == DPOOL_OK;
        dpool_result_destroy(&results[i]);
        if (i + 1 == held)
            end = dpool_clock_us();
        if (all && submitted < total &&
            !(results[submitted++] = dpool_apply_async(pool, "noop", NULL, NULL))) {
            fprintf(stderr, "dpool-bench: submit failed at task %ld\n", submitted - 1);
            all = false;
        }
    }
    free(results);
    *secs_p = (double)(end - start) / 1e6;
    return all;
}

int
dpool_bench_backlog(const dpool_bench_env_t *env, long count, long held)
{
    pid_t workers[2] = {0, 0};
    for (int i = 0; i < 2; i++)
        workers[i] = s_start_worker(env, 2);
    dpool_t *blocker = NULL, *pool = NULL;
    dpool_result_t *sleeps[4] = {NULL};
    dpool_result_t **results = NULL;
    int code = 1;
    if (!s_wait_status(env->broker, s_all_idle, 4, 30)) {
        fprintf(stderr, "dpool-bench: the 4 worker processes did not come up\n");
        goto done;
    }
    // The sleeps outlast the submission (about 200,000 tasks/s from one client).
    double hold_s = 1.0 + (double)count / 100000.0;
    if (!(blocker = s_open(env, 4)))
        goto done;
    for (int i = 0; i < 4; i++)
        if (!(sleeps[i] = s_submit_sleep(blocker, hold_s)))
            goto done;
    if (!s_wait_status(env->broker, s_all_busy, 4, 30) || !(pool = s_open(env, 4)))
        goto done;
    results = s_submit(pool, count);
    if (!results)
        goto done;
    if (held > 0) {
        // Room for the tasks that keep the queue at count while held results come.
        size_t total = (size_t)count + (size_t)held;
        dpool_result_t **grown =
            total <= SIZE_MAX / sizeof *results ? realloc(results, total * sizeof *results) : NULL;
        if (!grown)
            goto done;
        results = grown;
    }
    if (!s_wait_status(env->broker, s_queued_at_least, count, hold_s) ||
        dpool_result_ready(sleeps[0])) {
        fprintf(stderr, "dpool-bench: the backlog was not queued whole while the processes "
                        "were held\n");
        goto done;
    }
    bool ok = true;
    for (int i = 0; i < 4; i++)
        ok = dpool_result_get(sleeps[i], 2 * hold_s + 30, NULL, NULL) == DPOOL_OK && ok;
    if (held > 0) {
        double secs = 0.0;
        ok = s_collect_held(pool, results, count, held, &secs) && ok;
        results = NULL;
        long timed = held - held / 5;
        if (ok && secs > 0.0) {
            printf("RESULT system=dpool mode=backlog_held n=%ld held=%ld timed=%ld secs=%.3f "
                   "rate=%.1f\n",
                   count, held, timed, secs, (double)timed / secs);
            code = 0;
        }
        goto done;
    }
    int64_t released = dpool_clock_us();
    ok = count > 0 && results && results[0] &&
         dpool_result_get(results[0], 120, NULL, NULL) == DPOOL_OK && ok;
    int64_t first = dpool_clock_us();
    ok = s_collect(results, count) && ok;
    results = NULL;
    int64_t end = dpool_clock_us();
    double secs = (double)(end - released) / 1e6, after_first = (double)(end - first) / 1e6;
    if (ok) {
        printf("RESULT system=dpool mode=backlog n=%ld secs=%.3f rate=%.1f "
               "rate_after_first=%.1f\n",
               count, secs, (double)count / secs,
               after_first > 0 ? (double)(count - 1) / after_first : 0.0);
        code = 0;
    }
done:
    if (results)
        s_collect(results, count); // the pool's end below fails what is left
    for (int i = 0; i < 4; i++)
        dpool_result_destroy(&sleeps[i]);
    if (pool)
        dpool_destroy(&pool);
    if (blocker)
        dpool_destroy(&blocker);
    s_stop_workers(workers, 2);
    return code;
}

int
dpool_bench_wide(const dpool_bench_env_t *env, long daemons, long processes, long count)
{
    if (daemons > S_MAX_DAEMONS) {
        fprintf(stderr, "dpool-bench: wide takes at most %d daemons\n", S_MAX_DAEMONS);
        return 2;
    }
    pid_t *workers = calloc((size_t)daemons, sizeof *workers);
    if (!workers)
        return 1;
    for (long i = 0; i < daemons; i++)
        workers[i] = s_start_worker(env, processes);
    int code = 1;
    dpool_t *pool = NULL;
    if (!s_wait_status(env->broker, s_all_idle, daemons * processes, 120))
        fprintf(stderr, "dpool-bench: %ld processes never all started\n", daemons * processes);
    else if ((pool = s_open(env, env->cap))) {
        int64_t start = dpool_clock_us();
        bool ok = s_collect(s_submit(pool, count), count);
        double secs = (double)(dpool_clock_us() - start) / 1e6;
        if (ok)
            printf("RESULT system=dpool mode=wide daemons=%ld processes=%ld cap=%d n=%ld "
                   "secs=%.3f rate=%.1f\n",
                   daemons, daemons * processes, env->cap, count, secs, (double)count / secs);
        code = ok ? 0 : 1;
        dpool_destroy(&pool);
    }
    s_stop_workers(workers, daemons);
    free(workers);
    return code;
}
