/*  The built-in task functions. They are the functions the test suites, the demo and
    the benchmark use, so each follows DESIGN.md's table to the letter and fails with
    a message a Python user would recognise rather than guessing at bad input.
    random() and getpid() are per process on purpose: each worker process seeds its
    own generator when it starts (dpool_runner), so demo.worker's sleeps differ. */
#define _GNU_SOURCE // random(), open_memstream's friends and gethostname with C11 on
#include "dpool_builtins.h"

#include "dpool_clock.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int
s_noop(dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    (void)task, (void)args, (void)result;
    return DPOOL_OK;
}

static int
s_echo(dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    if (args->via.array.size != 1)
        return dpool_task_fail(task, "echo takes exactly one argument (%u given)",
                               (unsigned)args->via.array.size);
    msgpack_pack_object(result, args->via.array.ptr[0]);
    return DPOOL_OK;
}

static bool
s_is_int(const msgpack_object *obj)
{
    return obj->type == MSGPACK_OBJECT_POSITIVE_INTEGER ||
           obj->type == MSGPACK_OBJECT_NEGATIVE_INTEGER;
}

static bool
s_is_number(const msgpack_object *obj)
{
    return s_is_int(obj) || obj->type == MSGPACK_OBJECT_FLOAT32 ||
           obj->type == MSGPACK_OBJECT_FLOAT64;
}

static double
s_as_double(const msgpack_object *obj)
{
    if (obj->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        return (double)obj->via.u64;
    if (obj->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        return (double)obj->via.i64;
    return obj->via.f64;
}

// Adds two msgpack integers exactly: a uint64 above INT64_MAX plus a negative
// number can still land in int64, so the sum is taken in 128 bits and only then
// range-checked.
static int
s_add_ints(dpool_task_t *task, const msgpack_object *a, const msgpack_object *b,
           msgpack_packer *result)
{
    __int128 x = a->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (__int128)a->via.u64 : a->via.i64;
    __int128 y = b->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (__int128)b->via.u64 : b->via.i64;
    __int128 sum = x + y;
    if (sum > INT64_MAX || sum < INT64_MIN)
        return dpool_task_fail(task, "add: integer overflow (the sum does not fit in 64 bits)");
    msgpack_pack_int64(result, (int64_t)sum);
    return DPOOL_OK;
}

static int
s_add(dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    if (args->via.array.size != 2)
        return dpool_task_fail(task, "add takes exactly two arguments (%u given)",
                               (unsigned)args->via.array.size);
    const msgpack_object *a = &args->via.array.ptr[0];
    const msgpack_object *b = &args->via.array.ptr[1];
    if (!s_is_number(a) || !s_is_number(b))
        return dpool_task_fail(task, "add: unsupported operand types (numbers expected)");
    if (s_is_int(a) && s_is_int(b))
        return s_add_ints(task, a, b, result);
    msgpack_pack_double(result, s_as_double(a) + s_as_double(b));
    return DPOOL_OK;
}

static int
s_sleep(dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    if (args->via.array.size != 1 || !s_is_number(&args->via.array.ptr[0]))
        return dpool_task_fail(task, "sleep takes one number of seconds");
    double seconds = s_as_double(&args->via.array.ptr[0]);
    if (!(seconds >= 0) || seconds > 1e9)
        return dpool_task_fail(task, "sleep length must be non-negative and finite");
    int64_t start = dpool_clock_us();
    struct timespec left = {(time_t)seconds, (long)((seconds - floor(seconds)) * 1e9)};
    while (nanosleep(&left, &left) != 0 && errno == EINTR)
        ;
    msgpack_pack_double(result, (double)(dpool_clock_us() - start) / 1e6);
    return DPOOL_OK;
}

// Writes a float the way Python's repr() does: the shortest text that reads back
// as the same double, with ".0" when it would otherwise look like an integer.
static void
s_render_double(FILE *out, double value)
{
    char text[40];
    if (isnan(value) || isinf(value)) {
        fputs(isnan(value) ? "nan" : value > 0 ? "inf" : "-inf", out);
        return;
    }
    for (int digits = 1; digits <= 17; digits++) {
        snprintf(text, sizeof text, "%.*g", digits, value);
        if (strtod(text, NULL) == value)
            break;
    }
    fputs(text, out);
    if (!strpbrk(text, ".e"))
        fputs(".0", out);
}

static void s_render(FILE *out, const msgpack_object *obj, bool quoted);

static void
s_render_container(FILE *out, const msgpack_object *obj)
{
    bool map = obj->type == MSGPACK_OBJECT_MAP;
    uint32_t size = map ? obj->via.map.size : obj->via.array.size;
    fputc(map ? '{' : '[', out);
    for (uint32_t i = 0; i < size; i++) {
        fputs(i ? ", " : "", out);
        if (!map) {
            s_render(out, &obj->via.array.ptr[i], true);
            continue;
        }
        s_render(out, &obj->via.map.ptr[i].key, true);
        fputs(": ", out);
        s_render(out, &obj->via.map.ptr[i].val, true);
    }
    fputc(map ? '}' : ']', out);
}

// Python's str() of the value (repr() inside containers, where strings get quotes).
static void
s_render(FILE *out, const msgpack_object *obj, bool quoted)
{
    switch (obj->type) {
    case MSGPACK_OBJECT_NIL:
        fputs("None", out);
        break;
    case MSGPACK_OBJECT_BOOLEAN:
        fputs(obj->via.boolean ? "True" : "False", out);
        break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        fprintf(out, "%llu", (unsigned long long)obj->via.u64);
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        fprintf(out, "%lld", (long long)obj->via.i64);
        break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        s_render_double(out, obj->via.f64);
        break;
    case MSGPACK_OBJECT_STR:
        fprintf(out, quoted ? "'%.*s'" : "%.*s", (int)obj->via.str.size, obj->via.str.ptr);
        break;
    case MSGPACK_OBJECT_BIN:
        fprintf(out, "b'<%u bytes>'", (unsigned)obj->via.bin.size);
        break;
    case MSGPACK_OBJECT_ARRAY:
    case MSGPACK_OBJECT_MAP:
        s_render_container(out, obj);
        break;
    default:
        fputs("<ext>", out);
        break;
    }
}

// An owned string with str(obj), or NULL when memory runs out.
static char *
s_str(const msgpack_object *obj)
{
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    if (!out)
        return NULL;
    s_render(out, obj, false);
    if (fclose(out) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

static int
s_fail(dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    (void)result;
    if (args->via.array.size != 1)
        return dpool_task_fail(task, "fail takes exactly one argument (%u given)",
                               (unsigned)args->via.array.size);
    char *message = s_str(&args->via.array.ptr[0]);
    if (!message)
        return dpool_task_fail(task, "fail: out of memory");
    dpool_task_fail(task, "%s", message);
    free(message);
    return DPOOL_ERR_TASK_FAILED;
}

static int
s_crash(dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    (void)task, (void)args, (void)result;
    fflush(stdout);
    fflush(stderr);
    // The default action, not whatever handler is installed: under AddressSanitizer
    // a caught SIGSEGV becomes exit(1), and the point is dying by the signal.
    struct sigaction action = {.sa_handler = SIG_DFL};
    sigaction(SIGSEGV, &action, NULL);
    raise(SIGSEGV);
    return dpool_task_fail(task, "crash: raise(SIGSEGV) returned");
}

static void
s_pack_string(msgpack_packer *pk, const char *text)
{
    size_t length = strlen(text);
    msgpack_pack_str(pk, length);
    msgpack_pack_str_body(pk, text, length);
}

static int
s_hostpid(dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    (void)args;
    char host[256] = "";
    if (gethostname(host, sizeof host - 1) != 0)
        return dpool_task_fail(task, "hostpid: gethostname failed: %s", strerror(errno));
    msgpack_pack_map(result, 2);
    s_pack_string(result, "host");
    s_pack_string(result, host);
    s_pack_string(result, "pid");
    msgpack_pack_int64(result, (int64_t)getpid());
    return DPOOL_OK;
}

// The seed program's worker(msg): two lines around a random sleep of up to 2 s.
static int
s_demo_worker(dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    (void)result;
    if (args->via.array.size != 1)
        return dpool_task_fail(task, "demo.worker takes exactly one argument (%u given)",
                               (unsigned)args->via.array.size);
    char *msg = s_str(&args->via.array.ptr[0]);
    if (!msg)
        return dpool_task_fail(task, "demo.worker: out of memory");
    int64_t start = dpool_clock_us();
    printf("%s开始执行,进程号为%d\n", msg, (int)getpid());
    fflush(stdout);
    double seconds = (double)random() / 2147483648.0 * 2.0;
    struct timespec left = {(time_t)seconds, (long)((seconds - floor(seconds)) * 1e9)};
    while (nanosleep(&left, &left) != 0 && errno == EINTR)
        ;
    printf("%s 执行完毕,耗时%0.2f\n", msg, (double)(dpool_clock_us() - start) / 1e6);
    fflush(stdout);
    free(msg);
    return DPOOL_OK;
}

int
dpool_builtins_register(dpool_functions_t *functions)
{
    static const struct {
        const char *name;
        dpool_task_fn_t *fn;
    } builtins[] = {
        {"noop", s_noop},       {"echo", s_echo},
        {"add", s_add},         {"sleep", s_sleep},
        {"fail", s_fail},       {"crash", s_crash},
        {"hostpid", s_hostpid}, {"demo.worker", s_demo_worker},
    };
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++) {
        int rc = dpool_functions_add(functions, builtins[i].name, builtins[i].fn);
        if (rc != DPOOL_OK)
            return rc;
    }
    return DPOOL_OK;
}
