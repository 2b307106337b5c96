/*  dpool-bench: the numbers the issues ask for, in one line each that the comparison
    script parses.
      tput N   N no-op tasks submitted back to back by one client, then every result
               collected: tasks per second through broker and workers.
      lat N [W]  N no-op tasks one after another with the blocking apply: the round-trip
               latency of one task, as percentiles; W more run first, untimed (default
               200, as every anchor's latency run does).
      map N    dpool_map of noop over the integers 0..N-1 with the default chunksize
               (Python's: ceil(N / (4 x cap))), as Python's Pool.map(noop, range(N)):
               items per second, packing and unpacking included.
      queue N  broker memory per queued task and the drain rate (dpool_bench_cluster.c)
      backlog N [M]  the drain rate of N tasks queued behind processes already up; with
               M, the dispatch rate over M tasks while the queue stays at N
      wide K P N  dispatch rate with K worker daemons x P processes connected */
#include "dpool_bench_cluster.h"

#include <dpool/dpool.h>
#include <dpool_clock.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
s_usage(FILE *out)
{
    fprintf(out, "usage: dpool-bench [--broker EP] [--processes N] (tput|lat|map|queue|backlog) N\n"
                 "       dpool-bench [--broker EP] lat N W\n"
                 "       dpool-bench [--broker EP] backlog N M\n"
                 "       dpool-bench [--broker EP] wide K P N\n\n"
                 "  tput N   submit N no-op tasks pipelined, then collect them; prints\n"
                 "           RESULT system=dpool mode=tput n=N secs=S rate=R\n"
                 "  lat N [W]  run W (default 200) untimed, then N timed no-op tasks\n"
                 "           one by one; prints\n"
                 "           RESULT system=dpool mode=lat n=N p50_us=.. p99_us=.. "
                 "p999_us=..\n"
                 "  map N    map noop over N integers, default chunksize; prints\n"
                 "           RESULT system=dpool mode=map n=N secs=S rate=R\n"
                 "  queue N  with no worker connected (broker run with a long --grace),\n"
                 "           queue N no-op tasks: broker RSS growth per task; then start 2\n"
                 "           worker daemons x 2 processes: the drain rate (needs --broker-pid)\n"
                 "  backlog N  start 2 worker daemons x 2 processes, hold them with sleeps,\n"
                 "           queue N no-op tasks behind them: the drain rate once released\n"
                 "  backlog N M  the same, but each of the first M results submits one\n"
                 "           more task (the queue stays at N): the dispatch rate over them\n"
                 "  wide K P N  start K worker daemons of P processes, then N pipelined\n"
                 "           no-op tasks: RESULT system=dpool mode=wide ... rate=R\n\n"
                 "      --broker-pid PID the broker's pid, for its memory (queue)\n"
                 "  -b, --broker EP      broker endpoint (default $DPOOL_BROKER, else "
                 "tcp://127.0.0.1:5555)\n"
                 "  -n, --processes N    the pool's cap (default 0: every process)\n"
                 "  -h, --help           this text\n"
                 "  -V, --version        print the version\n");
}

static int
s_fail(const char *what, const dpool_error_t *err)
{
    fprintf(stderr, "dpool-bench: %s: %s%s%s\n", what, dpool_strerror(err->code),
            err->message[0] ? ": " : "", err->message);
    return 1;
}

static int
s_tput(dpool_t *pool, long count)
{
    dpool_result_t **results = calloc((size_t)count, sizeof *results);
    if (!results)
        return fprintf(stderr, "dpool-bench: out of memory\n"), 1;
    dpool_error_t err = {0};
    int code = 0;
    int64_t start = dpool_clock_us();
    for (long i = 0; i < count && code == 0; i++)
        if (!(results[i] = dpool_apply_async(pool, "noop", NULL, &err)))
            code = s_fail("submit", &err);
    for (long i = 0; i < count && code == 0; i++)
        if (dpool_result_get(results[i], -1, NULL, &err) != DPOOL_OK)
            code = s_fail("task", &err);
    double secs = (double)(dpool_clock_us() - start) / 1e6;
    for (long i = 0; i < count; i++)
        dpool_result_destroy(&results[i]);
    free(results);
    if (code == 0)
        printf("RESULT system=dpool mode=tput n=%ld secs=%.3f rate=%.1f\n", count, secs,
               (double)count / secs);
    return code;
}

static int
s_compare(const void *a, const void *b)
{
    int64_t left = *(const int64_t *)a, right = *(const int64_t *)b;
    return left < right ? -1 : left > right;
}

static int64_t
s_percentile(const int64_t *sorted, long count, double fraction)
{
    long index = (long)(fraction * (double)count);
    return sorted[index < count ? index : count - 1];
}

// The anchors' latency runs (gearmand, Pool, raw ZeroMQ) all time N round trips after
// 200 untimed ones; the first ones here also open the lease and warm the processes.
#define S_LAT_WARMUP_DEFAULT 200

static int
s_lat(dpool_t *pool, long count, long warmup)
{
    int64_t *micros = calloc((size_t)count, sizeof *micros);
    if (!micros)
        return fprintf(stderr, "dpool-bench: out of memory\n"), 1;
    dpool_error_t err = {0};
    for (long i = 0; i < warmup + count; i++) {
        int64_t start = dpool_clock_us();
        if (dpool_apply(pool, "noop", NULL, NULL, &err) != DPOOL_OK) {
            free(micros);
            return s_fail("task", &err);
        }
        if (i >= warmup)
            micros[i - warmup] = dpool_clock_us() - start;
    }
    qsort(micros, (size_t)count, sizeof *micros, s_compare);
    printf("RESULT system=dpool mode=lat n=%ld p50_us=%lld p99_us=%lld p999_us=%lld\n", count,
           (long long)s_percentile(micros, count, 0.5),
           (long long)s_percentile(micros, count, 0.99),
           (long long)s_percentile(micros, count, 0.999));
    free(micros);
    return 0;
}

static int
s_map(dpool_t *pool, long count)
{
    int64_t start = dpool_clock_us();
    // The items as the caller would have them: one msgpack array of the integers.
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init(&sbuf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sbuf, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, (size_t)count);
    for (long i = 0; i < count; i++)
        msgpack_pack_long(&pk, i);
    dpool_buf_t items = {.data = sbuf.data, .size = sbuf.size}, results = {0};
    dpool_error_t err = {0};
    int rc = dpool_map(pool, "noop", &items, 0, &results, &err);
    msgpack_sbuffer_destroy(&sbuf);
    size_t got = 0, offset = 0;
    if (rc == DPOOL_OK &&
        (dpool_array_open(&results, &got, &offset) != DPOOL_OK || got != (size_t)count))
        rc = DPOOL_ERR_PROTO;
    double secs = (double)(dpool_clock_us() - start) / 1e6;
    dpool_buf_free(&results);
    if (rc != DPOOL_OK)
        return s_fail("map", &err);
    printf("RESULT system=dpool mode=map n=%ld secs=%.3f rate=%.1f\n", count, secs,
           (double)count / secs);
    return 0;
}

static bool
s_parse_at_least(const char *text, long least, long *count)
{
    char *end = NULL;
    errno = 0;
    *count = strtol(text, &end, 10);
    return !errno && end != text && !*end && *count >= least;
}

static bool
s_parse_count(const char *text, long *count)
{
    return s_parse_at_least(text, 1, count);
}

int
main(int argc, char **argv)
{
    static const struct option options[] = {
        {"broker", required_argument, NULL, 'b'},     {"processes", required_argument, NULL, 'n'},
        {"broker-pid", required_argument, NULL, 'P'}, {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},          {NULL, 0, NULL, 0},
    };
    dpool_opts_t opts = {0};
    long processes = 0, broker_pid = 0;
    int option;
    while ((option = getopt_long(argc, argv, "b:n:P:hV", options, NULL)) != -1) {
        switch (option) {
        case 'b':
            opts.broker = optarg;
            break;
        case 'n':
            if (!s_parse_count(optarg, &processes) || processes > 1000000)
                return fprintf(stderr, "dpool-bench: bad --processes \"%s\"\n", optarg), 2;
            opts.processes = (int)processes;
            break;
        case 'P':
            if (!s_parse_count(optarg, &broker_pid))
                return fprintf(stderr, "dpool-bench: bad --broker-pid \"%s\"\n", optarg), 2;
            break;
        case 'h':
            return s_usage(stdout), 0;
        case 'V':
            return printf("dpool-bench %s\n", DPOOL_VERSION), 0;
        default:
            return s_usage(stderr), 2;
        }
    }
    const char *broker = opts.broker ? opts.broker : getenv("DPOOL_BROKER");
    dpool_bench_env_t env = {.broker = broker ? broker : "tcp://127.0.0.1:5555",
                             .self_exe = argv[0],
                             .broker_pid = (pid_t)broker_pid,
                             .cap = opts.processes};
    long count = 0, daemons = 0, per_daemon = 0;
    if (optind < argc && strcmp(argv[optind], "wide") == 0) {
        if (optind + 4 != argc || !s_parse_count(argv[optind + 1], &daemons) ||
            !s_parse_count(argv[optind + 2], &per_daemon) ||
            !s_parse_count(argv[optind + 3], &count))
            return s_usage(stderr), 2;
        return dpool_bench_wide(&env, daemons, per_daemon, count);
    }
    if (optind + 2 <= argc && strcmp(argv[optind], "backlog") == 0) {
        long held = 0;
        if (optind + 3 < argc || !s_parse_count(argv[optind + 1], &count) ||
            (optind + 3 == argc && !s_parse_count(argv[optind + 2], &held)) || count > 1000000000 ||
            held > 1000000000)
            return s_usage(stderr), 2;
        return dpool_bench_backlog(&env, count, held);
    }
    if (optind + 2 == argc && strcmp(argv[optind], "queue") == 0) {
        if (!s_parse_count(argv[optind + 1], &count))
            return s_usage(stderr), 2;
        return dpool_bench_queue(&env, count);
    }
    bool tput = optind < argc && strcmp(argv[optind], "tput") == 0;
    bool lat = optind < argc && strcmp(argv[optind], "lat") == 0;
    bool map = optind < argc && strcmp(argv[optind], "map") == 0;
    long warmup = S_LAT_WARMUP_DEFAULT;
    bool with_warmup = lat && optind + 3 == argc;
    if ((!tput && !lat && !map) || optind + 2 + with_warmup != argc ||
        !s_parse_count(argv[optind + 1], &count) ||
        (with_warmup &&
         (!s_parse_at_least(argv[optind + 2], 0, &warmup) || warmup > LONG_MAX - count)))
        return s_usage(stderr), 2;
    dpool_error_t err = {0};
    dpool_t *pool = dpool_new_opts(&opts, &err);
    if (!pool)
        return s_fail("cannot open the pool", &err);
    int code = tput ? s_tput(pool, count) : lat ? s_lat(pool, count, warmup) : s_map(pool, count);
    dpool_close(pool);
    dpool_join(pool);
    dpool_destroy(&pool);
    return code;
}
