/*  An example task module for dpool-worker:

        dpool-worker --module build/lib/libdpool_example.so

    adds two functions next to the built-ins:
        example.upper  [string]      -> the string in upper case (ASCII letters)
        example.sum    [numbers...]  -> their sum: an integer when every one is an
                                        integer, else a float
        example.print  [text, times] -> writes text `times` times to stdout and one
                                        line to stderr; returns times (for testing
                                        that output larger than a pipe arrives whole,
                                        and before the result)
        example.init   []            -> nil; marks this process as initialized. Meant
                                        for `dpool-worker --initializer example.init`,
                                        which runs it once in each new worker process
                                        (Python's Pool initializer)
        example.initialized [seconds?] -> [initialized, pid] after sleeping `seconds`
                                        (default 0): whether example.init ran in this
                                        process, and which process it is

    example.init keeps its flag in a file-scope variable: an initializer exists to set
    up per-process state (a connection, a cache), and each worker process has its own
    copy of the module's memory, so the flag is per process by construction.

    A module includes only <dpool/worker.h>, exports dpool_module_init, and is
    loaded into the daemon before it forks, so every worker process has it. */
#include <dpool/worker.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

// Set by example.init in the process it runs in (see the comment above).
static bool s_initialized = false;

static int
s_upper(dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    if (args->via.array.size != 1 || args->via.array.ptr[0].type != MSGPACK_OBJECT_STR)
        return dpool_task_fail(task, "%s takes one string", dpool_task_function(task));
    const msgpack_object_str *text = &args->via.array.ptr[0].via.str;
    char *upper = malloc(text->size ? text->size : 1);
    if (!upper)
        return dpool_task_fail(task, "%s: out of memory", dpool_task_function(task));
    for (uint32_t i = 0; i < text->size; i++) {
        char c = text->ptr[i];
        upper[i] = c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
    }
    msgpack_pack_str(result, text->size);
    msgpack_pack_str_body(result, upper, text->size);
    free(upper);
    return DPOOL_OK;
}

static int
s_sum(dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    int64_t total = 0;
    double float_total = 0;
    bool any_float = false;
    for (uint32_t i = 0; i < args->via.array.size; i++) {
        const msgpack_object *item = &args->via.array.ptr[i];
        if (item->type == MSGPACK_OBJECT_FLOAT32 || item->type == MSGPACK_OBJECT_FLOAT64) {
            any_float = true;
            float_total += item->via.f64;
        } else if (item->type == MSGPACK_OBJECT_POSITIVE_INTEGER && item->via.u64 <= INT64_MAX &&
                   !__builtin_add_overflow(total, (int64_t)item->via.u64, &total)) {
            float_total += (double)item->via.u64;
        } else if (item->type == MSGPACK_OBJECT_NEGATIVE_INTEGER &&
                   !__builtin_add_overflow(total, item->via.i64, &total)) {
            float_total += (double)item->via.i64;
        } else {
            return dpool_task_fail(task, "%s: argument %u is not a number or overflows",
                                   dpool_task_function(task), (unsigned)i + 1);
        }
    }
    if (any_float)
        msgpack_pack_double(result, float_total);
    else
        msgpack_pack_int64(result, total);
    return DPOOL_OK;
}

static int
s_print(dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    const msgpack_object *items = args->via.array.ptr;
    if (args->via.array.size != 2 || items[0].type != MSGPACK_OBJECT_STR ||
        items[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER || items[1].via.u64 > 100000000)
        return dpool_task_fail(task, "%s takes a string and a count", dpool_task_function(task));
    for (uint64_t i = 0; i < items[1].via.u64; i++)
        fwrite(items[0].via.str.ptr, 1, items[0].via.str.size, stdout);
    fprintf(stderr, "%s done\n", dpool_task_function(task));
    msgpack_pack_uint64(result, items[1].via.u64);
    return DPOOL_OK;
}

static int
s_init(dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    (void)task, (void)args, (void)result;
    s_initialized = true;
    return DPOOL_OK;
}

static int
s_initialized_fn(dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    double seconds = 0;
    if (args->via.array.size > 1 ||
        (args->via.array.size == 1 && args->via.array.ptr[0].type != MSGPACK_OBJECT_FLOAT64 &&
         args->via.array.ptr[0].type != MSGPACK_OBJECT_FLOAT32 &&
         args->via.array.ptr[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER))
        return dpool_task_fail(task, "%s takes an optional number of seconds",
                               dpool_task_function(task));
    if (args->via.array.size == 1)
        seconds = args->via.array.ptr[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER
                      ? (double)args->via.array.ptr[0].via.u64
                      : args->via.array.ptr[0].via.f64;
    if (!(seconds >= 0 && seconds <= 60))
        return dpool_task_fail(task, "%s: seconds must be from 0 to 60", dpool_task_function(task));
    struct timespec left = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    while (nanosleep(&left, &left) != 0 && errno == EINTR)
        ;
    msgpack_pack_array(result, 2);
    if (s_initialized)
        msgpack_pack_true(result);
    else
        msgpack_pack_false(result);
    msgpack_pack_int64(result, (int64_t)getpid());
    return DPOOL_OK;
}

int
dpool_module_init(dpool_functions_t *functions)
{
    int rc = dpool_functions_add(functions, "example.upper", s_upper);
    if (rc == DPOOL_OK)
        rc = dpool_functions_add(functions, "example.sum", s_sum);
    if (rc == DPOOL_OK)
        rc = dpool_functions_add(functions, "example.print", s_print);
    if (rc == DPOOL_OK)
        rc = dpool_functions_add(functions, "example.init", s_init);
    if (rc == DPOOL_OK)
        rc = dpool_functions_add(functions, "example.initialized", s_initialized_fn);
    return rc;
}
