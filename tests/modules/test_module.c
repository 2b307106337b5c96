/*  A task module for the integration tests: functions that report what happened on
    the worker side, so tests measure caps and ordering from the workers' own clocks
    rather than from the client's view. */
#include <dpool/worker.h>

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int dpool_module_init(dpool_functions_t *functions);

static double
s_wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double
s_number(const msgpack_object *obj)
{
    if (obj->type == MSGPACK_OBJECT_FLOAT64 || obj->type == MSGPACK_OBJECT_FLOAT32)
        return obj->via.f64;
    if (obj->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        return (double)obj->via.u64;
    return -1;
}

static void
s_pack_key(msgpack_packer *pk, const char *key)
{
    msgpack_pack_str(pk, strlen(key));
    msgpack_pack_str_body(pk, key, strlen(key));
}

// test.span [seconds] -> {"start": wall, "end": wall, "pid": pid}: sleeps, timestamped.
static int
s_span(dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    double seconds = args->via.array.size == 1 ? s_number(&args->via.array.ptr[0]) : -1;
    if (seconds < 0 || seconds > 60)
        return dpool_task_fail(task, "test.span needs [seconds] from 0 to 60");
    double start = s_wall_now();
    struct timespec pause = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    while (nanosleep(&pause, &pause) != 0)
        ;
    double end = s_wall_now();
    msgpack_pack_map(result, 3);
    s_pack_key(result, "start");
    msgpack_pack_double(result, start);
    s_pack_key(result, "end");
    msgpack_pack_double(result, end);
    s_pack_key(result, "pid");
    msgpack_pack_int64(result, (int64_t)getpid());
    return DPOOL_OK;
}

// test.print [lines] -> lines: writes numbered lines to stdout and stderr alternately,
// so a test can check that all of them arrive, in order, before the result.
static int
s_print(dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    if (args->via.array.size != 1 ||
        args->via.array.ptr[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        args->via.array.ptr[0].via.u64 > 100000)
        return dpool_task_fail(task, "test.print needs [lines] from 0 to 100000");
    uint64_t lines = args->via.array.ptr[0].via.u64;
    for (uint64_t i = 0; i < lines; i++) {
        printf("out %llu\n", (unsigned long long)i);
        fprintf(stderr, "err %llu\n", (unsigned long long)i);
    }
    msgpack_pack_uint64(result, lines);
    return DPOOL_OK;
}

int
dpool_module_init(dpool_functions_t *functions)
{
    int rc = dpool_functions_add(functions, "test.span", s_span);
    if (rc == DPOOL_OK)
        rc = dpool_functions_add(functions, "test.print", s_print);
    return rc;
}
