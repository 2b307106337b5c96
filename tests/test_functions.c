/*  The function registry, the module loader and every built-in except crash and
    demo.worker, called in-process through dpool_functions_call() and
    dpool_functions_call_chunk(): the same paths a worker process takes for a task
    and for a CHUNK. */
#include "dpool_builtins.h"
#include "dpool_functions.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#define EXAMPLE_MODULE DPOOL_LIB_DIR "/libdpool_example.so"

static dpool_functions_t *functions;

// One call's outcome: the code, the message and the decoded result.
typedef struct {
    int rc;
    char *message;
    msgpack_sbuffer bytes;
    msgpack_unpacked result;
} call_t;

static call_t call;

static void
setup(void)
{
    functions = dpool_functions_new();
    cr_assert_not_null(functions);
    cr_assert_eq(dpool_builtins_register(functions), DPOOL_OK);
    msgpack_sbuffer_init(&call.bytes);
    msgpack_unpacked_init(&call.result);
}

static void
teardown(void)
{
    free(call.message);
    msgpack_sbuffer_destroy(&call.bytes);
    msgpack_unpacked_destroy(&call.result);
    dpool_functions_destroy(&functions);
}

TestSuite(functions, .init = setup, .fini = teardown, .timeout = 20);

// Calls name with the raw argument bytes and decodes the result into call.
static void
s_call_raw(const char *name, const void *args, size_t size)
{
    free(call.message);
    call.message = NULL;
    msgpack_sbuffer_clear(&call.bytes);
    call.rc = dpool_functions_call(functions, name, args, size, &call.bytes, &call.message);
    if (call.rc == DPOOL_OK) {
        cr_assert_null(call.message);
        size_t offset = 0;
        cr_assert_eq(msgpack_unpack_next(&call.result, call.bytes.data, call.bytes.size, &offset),
                     MSGPACK_UNPACK_SUCCESS);
        cr_assert_eq(offset, call.bytes.size, "the result is exactly one value");
    } else {
        cr_assert_eq(call.bytes.size, 0, "a failed call leaves no result bytes");
        cr_assert_not_null(call.message, "every failure carries a message");
    }
}

// Packs the arguments with the packer the caller fills, then calls.
#define CALL(name, packing)                                                                        \
    do {                                                                                           \
        msgpack_sbuffer args_;                                                                     \
        msgpack_sbuffer_init(&args_);                                                              \
        msgpack_packer pk;                                                                         \
        msgpack_packer_init(&pk, &args_, msgpack_sbuffer_write);                                   \
        packing;                                                                                   \
        s_call_raw(name, args_.data, args_.size);                                                  \
        msgpack_sbuffer_destroy(&args_);                                                           \
    } while (0)

static void
s_pack_str(msgpack_packer *pk, const char *text)
{
    msgpack_pack_str(pk, strlen(text));
    msgpack_pack_str_body(pk, text, strlen(text));
}

static bool
s_str_is(const msgpack_object *obj, const char *text)
{
    return obj->type == MSGPACK_OBJECT_STR && obj->via.str.size == strlen(text) &&
           memcmp(obj->via.str.ptr, text, obj->via.str.size) == 0;
}

Test(functions, registry_lists_builtins_in_order_and_refuses_duplicates)
{
    const char *expected[] = {"noop", "echo",  "add",     "sleep",
                              "fail", "crash", "hostpid", "demo.worker"};
    cr_assert_eq(dpool_functions_size(functions), 8);
    for (size_t i = 0; i < 8; i++)
        cr_assert_str_eq(dpool_functions_name(functions, i), expected[i]);
    cr_assert_null(dpool_functions_name(functions, 8));
    cr_assert_not_null(dpool_functions_lookup(functions, "echo"));
    cr_assert_null(dpool_functions_lookup(functions, "no.such.function"));
    dpool_task_fn_t *echo = dpool_functions_lookup(functions, "echo");
    cr_assert_eq(dpool_functions_add(functions, "echo", echo), DPOOL_ERR_INVALID);
    cr_assert_eq(dpool_functions_add(functions, "", echo), DPOOL_ERR_INVALID);
    cr_assert_eq(dpool_functions_add(functions, "x", NULL), DPOOL_ERR_INVALID);
    char long_name[300];
    memset(long_name, 'a', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    cr_assert_eq(dpool_functions_add(functions, long_name, echo), DPOOL_ERR_INVALID);
    cr_assert_eq(dpool_functions_add(functions, "echo2", echo), DPOOL_OK);
    cr_assert_eq(dpool_functions_size(functions), 9);
}

Test(functions, unknown_name_gives_no_function_with_the_name)
{
    CALL("no.such.function", msgpack_pack_array(&pk, 0));
    cr_assert_eq(call.rc, DPOOL_ERR_NO_FUNCTION);
    cr_assert(strstr(call.message, "no.such.function"), "message: %s", call.message);
}

Test(functions, noop_returns_nil_for_any_arguments)
{
    CALL("noop", msgpack_pack_array(&pk, 2); msgpack_pack_int(&pk, 1); s_pack_str(&pk, "x"));
    cr_assert_eq(call.rc, DPOOL_OK);
    cr_assert_eq(call.result.data.type, MSGPACK_OBJECT_NIL);
}

Test(functions, echo_returns_its_argument_byte_for_byte)
{
    msgpack_sbuffer value;
    msgpack_sbuffer_init(&value);
    msgpack_packer vp;
    msgpack_packer_init(&vp, &value, msgpack_sbuffer_write);
    msgpack_pack_map(&vp, 2);
    s_pack_str(&vp, "list");
    msgpack_pack_array(&vp, 3);
    msgpack_pack_int(&vp, -7);
    msgpack_pack_double(&vp, 2.5);
    msgpack_pack_nil(&vp);
    s_pack_str(&vp, "text");
    s_pack_str(&vp, "héllo");
    CALL("echo", msgpack_pack_array(&pk, 1); msgpack_sbuffer_write(&args_, value.data, value.size));
    cr_assert_eq(call.rc, DPOOL_OK);
    cr_assert_eq(call.bytes.size, value.size);
    cr_assert_eq(memcmp(call.bytes.data, value.data, value.size), 0);
    msgpack_sbuffer_destroy(&value);
}

Test(functions, echo_fails_unless_given_exactly_one_argument)
{
    CALL("echo", msgpack_pack_array(&pk, 0));
    cr_assert_eq(call.rc, DPOOL_ERR_TASK_FAILED);
    cr_assert(strstr(call.message, "exactly one"), "message: %s", call.message);
    CALL("echo", msgpack_pack_array(&pk, 2); msgpack_pack_int(&pk, 1); msgpack_pack_int(&pk, 2));
    cr_assert_eq(call.rc, DPOOL_ERR_TASK_FAILED);
}

Test(functions, add_keeps_integers_integers)
{
    CALL("add", msgpack_pack_array(&pk, 2); msgpack_pack_int(&pk, 2); msgpack_pack_int(&pk, 40));
    cr_assert_eq(call.rc, DPOOL_OK);
    cr_assert_eq(call.result.data.type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    cr_assert_eq(call.result.data.via.u64, 42);
    CALL("add", msgpack_pack_array(&pk, 2); msgpack_pack_int(&pk, -50); msgpack_pack_int(&pk, 8));
    cr_assert_eq(call.rc, DPOOL_OK);
    cr_assert_eq(call.result.data.type, MSGPACK_OBJECT_NEGATIVE_INTEGER);
    cr_assert_eq(call.result.data.via.i64, -42);
    // A uint64 above INT64_MAX still adds exactly when the sum fits.
    CALL("add", msgpack_pack_array(&pk, 2); msgpack_pack_uint64(&pk, (uint64_t)INT64_MAX + 10);
         msgpack_pack_int(&pk, -11));
    cr_assert_eq(call.rc, DPOOL_OK);
    cr_assert_eq(call.result.data.via.i64, INT64_MAX - 1);
}

Test(functions, add_with_a_float_gives_a_float)
{
    CALL("add", msgpack_pack_array(&pk, 2); msgpack_pack_int(&pk, 1);
         msgpack_pack_double(&pk, 0.5));
    cr_assert_eq(call.rc, DPOOL_OK);
    cr_assert_eq(call.result.data.type, MSGPACK_OBJECT_FLOAT64);
    cr_assert_float_eq(call.result.data.via.f64, 1.5, 1e-12);
    CALL("add", msgpack_pack_array(&pk, 2); msgpack_pack_float(&pk, 0.25f);
         msgpack_pack_double(&pk, 0.25));
    cr_assert_eq(call.rc, DPOOL_OK);
    cr_assert_float_eq(call.result.data.via.f64, 0.5, 1e-12);
}

Test(functions, add_fails_on_overflow)
{
    CALL("add", msgpack_pack_array(&pk, 2); msgpack_pack_int64(&pk, INT64_MAX);
         msgpack_pack_int(&pk, 1));
    cr_assert_eq(call.rc, DPOOL_ERR_TASK_FAILED);
    cr_assert(strstr(call.message, "overflow"), "message: %s", call.message);
    CALL("add", msgpack_pack_array(&pk, 2); msgpack_pack_int64(&pk, INT64_MIN);
         msgpack_pack_int(&pk, -1));
    cr_assert_eq(call.rc, DPOOL_ERR_TASK_FAILED);
}

Test(functions, add_fails_on_bad_types_and_counts)
{
    CALL("add", msgpack_pack_array(&pk, 2); s_pack_str(&pk, "1"); msgpack_pack_int(&pk, 1));
    cr_assert_eq(call.rc, DPOOL_ERR_TASK_FAILED);
    cr_assert(strstr(call.message, "number"), "message: %s", call.message);
    CALL("add", msgpack_pack_array(&pk, 2); msgpack_pack_true(&pk); msgpack_pack_int(&pk, 1));
    cr_assert_eq(call.rc, DPOOL_ERR_TASK_FAILED);
    CALL("add", msgpack_pack_array(&pk, 1); msgpack_pack_int(&pk, 1));
    cr_assert_eq(call.rc, DPOOL_ERR_TASK_FAILED);
}

Test(functions, fail_reports_its_message)
{
    CALL("fail", msgpack_pack_array(&pk, 1); s_pack_str(&pk, "it went wrong"));
    cr_assert_eq(call.rc, DPOOL_ERR_TASK_FAILED);
    cr_assert_str_eq(call.message, "it went wrong");
    CALL("fail", msgpack_pack_array(&pk, 1); msgpack_pack_int(&pk, 42));
    cr_assert_eq(call.rc, DPOOL_ERR_TASK_FAILED);
    cr_assert_str_eq(call.message, "42", "a non-string message is rendered like str()");
}

Test(functions, sleep_sleeps_about_as_long_as_asked_and_says_how_long)
{
    struct timeval before, after;
    gettimeofday(&before, NULL);
    CALL("sleep", msgpack_pack_array(&pk, 1); msgpack_pack_double(&pk, 0.2));
    gettimeofday(&after, NULL);
    double elapsed =
        (double)(after.tv_sec - before.tv_sec) + (after.tv_usec - before.tv_usec) / 1e6;
    cr_assert_eq(call.rc, DPOOL_OK);
    cr_assert_eq(call.result.data.type, MSGPACK_OBJECT_FLOAT64);
    double reported = call.result.data.via.f64;
    cr_assert(reported >= 0.199 && reported < 2.0, "reported %f", reported);
    cr_assert(elapsed >= 0.199 && reported <= elapsed + 0.01, "elapsed %f, reported %f", elapsed,
              reported);
    CALL("sleep", msgpack_pack_array(&pk, 1); msgpack_pack_int(&pk, 0));
    cr_assert_eq(call.rc, DPOOL_OK);
    cr_assert(call.result.data.via.f64 < 0.5);
    CALL("sleep", msgpack_pack_array(&pk, 1); msgpack_pack_double(&pk, -1));
    cr_assert_eq(call.rc, DPOOL_ERR_TASK_FAILED);
    CALL("sleep", msgpack_pack_array(&pk, 1); s_pack_str(&pk, "1"));
    cr_assert_eq(call.rc, DPOOL_ERR_TASK_FAILED);
}

Test(functions, hostpid_names_this_host_and_process)
{
    CALL("hostpid", msgpack_pack_array(&pk, 0));
    cr_assert_eq(call.rc, DPOOL_OK);
    const msgpack_object *map = &call.result.data;
    cr_assert_eq(map->type, MSGPACK_OBJECT_MAP);
    cr_assert_eq(map->via.map.size, 2);
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    cr_assert(s_str_is(&map->via.map.ptr[0].key, "host"));
    cr_assert(s_str_is(&map->via.map.ptr[0].val, host));
    cr_assert(s_str_is(&map->via.map.ptr[1].key, "pid"));
    cr_assert_eq(map->via.map.ptr[1].val.type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    cr_assert_eq(map->via.map.ptr[1].val.via.u64, (uint64_t)getpid());
}

Test(functions, malformed_arguments_fail_with_a_clear_message)
{
    CALL("echo", msgpack_pack_int(&pk, 5));
    cr_assert_eq(call.rc, DPOOL_ERR_TASK_FAILED);
    cr_assert(strstr(call.message, "not a msgpack array"), "message: %s", call.message);
    const uint8_t garbage[] = {0xc1, 0x00};
    s_call_raw("echo", garbage, sizeof garbage);
    cr_assert_eq(call.rc, DPOOL_ERR_TASK_FAILED);
    cr_assert(strstr(call.message, "not one complete msgpack value"), "message: %s", call.message);
    const uint8_t truncated[] = {0x92, 0x01}; // an array of 2 holding 1 element
    s_call_raw("echo", truncated, sizeof truncated);
    cr_assert_eq(call.rc, DPOOL_ERR_TASK_FAILED);
}

static int
s_packs_two(dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    (void)task, (void)args;
    msgpack_pack_int(result, 1);
    msgpack_pack_int(result, 2);
    return DPOOL_OK;
}

static int
s_fails_silently(dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    (void)task, (void)args;
    msgpack_pack_int(result, 1);
    return DPOOL_ERR_NOMEM;
}

Test(functions, results_that_break_the_contract_become_failures)
{
    cr_assert_eq(dpool_functions_add(functions, "t.two", s_packs_two), DPOOL_OK);
    cr_assert_eq(dpool_functions_add(functions, "t.silent", s_fails_silently), DPOOL_OK);
    CALL("t.two", msgpack_pack_array(&pk, 0));
    cr_assert_eq(call.rc, DPOOL_ERR_TASK_FAILED);
    cr_assert(strstr(call.message, "exactly one value"), "message: %s", call.message);
    CALL("t.silent", msgpack_pack_array(&pk, 0));
    cr_assert_eq(call.rc, DPOOL_ERR_TASK_FAILED);
    cr_assert(strstr(call.message, "t.silent"), "message: %s", call.message);
}

Test(functions, example_module_loads_and_its_functions_run)
{
    char error[512] = "";
    cr_assert_eq(dpool_functions_load(functions, EXAMPLE_MODULE, error, sizeof error), DPOOL_OK,
                 "%s", error);
    cr_assert_eq(dpool_functions_size(functions), 13);
    cr_assert_str_eq(dpool_functions_name(functions, 8), "example.upper");
    cr_assert_str_eq(dpool_functions_name(functions, 9), "example.sum");
    cr_assert_str_eq(dpool_functions_name(functions, 10), "example.print");
    cr_assert_str_eq(dpool_functions_name(functions, 11), "example.init");
    cr_assert_str_eq(dpool_functions_name(functions, 12), "example.initialized");
    CALL("example.upper", msgpack_pack_array(&pk, 1); s_pack_str(&pk, "Hello, dpool 1"));
    cr_assert_eq(call.rc, DPOOL_OK);
    cr_assert(s_str_is(&call.result.data, "HELLO, DPOOL 1"));
    CALL("example.sum", msgpack_pack_array(&pk, 3); msgpack_pack_int(&pk, 1);
         msgpack_pack_int(&pk, 2); msgpack_pack_int(&pk, -10));
    cr_assert_eq(call.rc, DPOOL_OK);
    cr_assert_eq(call.result.data.type, MSGPACK_OBJECT_NEGATIVE_INTEGER);
    cr_assert_eq(call.result.data.via.i64, -7);
    CALL("example.sum", msgpack_pack_array(&pk, 2); msgpack_pack_int(&pk, 1);
         msgpack_pack_double(&pk, 0.5));
    cr_assert_eq(call.rc, DPOOL_OK);
    cr_assert_float_eq(call.result.data.via.f64, 1.5, 1e-12);
    CALL("example.upper", msgpack_pack_array(&pk, 1); msgpack_pack_int(&pk, 1));
    cr_assert_eq(call.rc, DPOOL_ERR_TASK_FAILED);
    cr_assert(strstr(call.message, "example.upper"), "message: %s", call.message);
}

Test(functions, module_that_cannot_load_is_named_in_the_error)
{
    char error[512] = "";
    cr_assert_neq(dpool_functions_load(functions, "/nonexistent/dir/mod.so", error, sizeof error),
                  DPOOL_OK);
    cr_assert(strstr(error, "/nonexistent/dir/mod.so"), "error: %s", error);
    // Loading the same module twice registers its names twice, which init refuses;
    // the names the failed load added are withdrawn.
    cr_assert_eq(dpool_functions_load(functions, EXAMPLE_MODULE, error, sizeof error), DPOOL_OK);
    error[0] = '\0';
    cr_assert_neq(dpool_functions_load(functions, EXAMPLE_MODULE, error, sizeof error), DPOOL_OK);
    cr_assert(strstr(error, "libdpool_example.so"), "error: %s", error);
    cr_assert_eq(dpool_functions_size(functions), 13);
}

Test(functions, example_initialized_reports_whether_example_init_ran_here)
{
    char error[512] = "";
    cr_assert_eq(dpool_functions_load(functions, EXAMPLE_MODULE, error, sizeof error), DPOOL_OK,
                 "%s", error);
    CALL("example.initialized", msgpack_pack_array(&pk, 0));
    cr_assert_eq(call.rc, DPOOL_OK, "%s", call.message);
    cr_assert_eq(call.result.data.type, MSGPACK_OBJECT_ARRAY);
    cr_assert_eq(call.result.data.via.array.size, 2);
    cr_assert_eq(call.result.data.via.array.ptr[0].type, MSGPACK_OBJECT_BOOLEAN);
    cr_assert_not(call.result.data.via.array.ptr[0].via.boolean);
    cr_assert_eq(call.result.data.via.array.ptr[1].via.u64, (uint64_t)getpid());
    CALL("example.init", msgpack_pack_array(&pk, 0));
    cr_assert_eq(call.rc, DPOOL_OK, "%s", call.message);
    CALL("example.initialized", msgpack_pack_array(&pk, 1); msgpack_pack_double(&pk, 0.01));
    cr_assert_eq(call.rc, DPOOL_OK, "%s", call.message);
    cr_assert(call.result.data.via.array.ptr[0].via.boolean);
    CALL("example.initialized", msgpack_pack_array(&pk, 1); s_pack_str(&pk, "x"));
    cr_assert_eq(call.rc, DPOOL_ERR_TASK_FAILED);
}

// Runs a chunk and decodes its result array into call (also when an item failed).
static void
s_call_chunk_raw(const char *name, const void *args, size_t size)
{
    free(call.message);
    call.message = NULL;
    msgpack_sbuffer_clear(&call.bytes);
    call.rc = dpool_functions_call_chunk(functions, name, args, size, &call.bytes, &call.message);
    if (call.rc == DPOOL_OK)
        cr_assert_null(call.message);
    else
        cr_assert_not_null(call.message, "every failure carries a message");
    if (call.bytes.size == 0)
        return;
    size_t offset = 0;
    cr_assert_eq(msgpack_unpack_next(&call.result, call.bytes.data, call.bytes.size, &offset),
                 MSGPACK_UNPACK_SUCCESS);
    cr_assert_eq(offset, call.bytes.size, "the result is exactly one value");
    cr_assert_eq(call.result.data.type, MSGPACK_OBJECT_ARRAY);
}

#define CALL_CHUNK(name, packing)                                                                  \
    do {                                                                                           \
        msgpack_sbuffer args_;                                                                     \
        msgpack_sbuffer_init(&args_);                                                              \
        msgpack_packer pk;                                                                         \
        msgpack_packer_init(&pk, &args_, msgpack_sbuffer_write);                                   \
        packing;                                                                                   \
        s_call_chunk_raw(name, args_.data, args_.size);                                            \
        msgpack_sbuffer_destroy(&args_);                                                           \
    } while (0)

static void
s_pack_add_items(msgpack_packer *pk, uint32_t count)
{
    msgpack_pack_array(pk, count);
    for (uint32_t i = 0; i < count; i++) {
        msgpack_pack_array(pk, 2);
        msgpack_pack_uint32(pk, i);
        msgpack_pack_uint32(pk, 1000);
    }
}

static void
s_assert_sums(uint32_t count)
{
    cr_assert_eq(call.result.data.via.array.size, count);
    for (uint32_t i = 0; i < count; i++)
        cr_assert_eq(call.result.data.via.array.ptr[i].via.u64, (uint64_t)i + 1000, "item %u",
                     (unsigned)i);
}

Test(functions, chunk_returns_every_items_result_in_order)
{
    // 3, 20 and 70000 items: the three msgpack array header sizes of the result.
    const uint32_t counts[] = {3, 20, 70000};
    for (size_t c = 0; c < 3; c++) {
        CALL_CHUNK("add", s_pack_add_items(&pk, counts[c]));
        cr_assert_eq(call.rc, DPOOL_OK, "%s", call.message);
        s_assert_sums(counts[c]);
    }
    CALL_CHUNK("add", msgpack_pack_array(&pk, 0));
    cr_assert_eq(call.rc, DPOOL_OK);
    cr_assert_eq(call.result.data.via.array.size, 0, "an empty chunk gives an empty array");
}

Test(functions, chunk_stops_at_the_first_failing_item_with_the_results_before_it)
{
    CALL_CHUNK("add", msgpack_pack_array(&pk, 4); msgpack_pack_array(&pk, 2);
               msgpack_pack_int(&pk, 1); msgpack_pack_int(&pk, 2); msgpack_pack_array(&pk, 2);
               msgpack_pack_int(&pk, 3); msgpack_pack_int(&pk, 4); msgpack_pack_array(&pk, 2);
               msgpack_pack_int(&pk, 5); s_pack_str(&pk, "x"); msgpack_pack_array(&pk, 0));
    cr_assert_eq(call.rc, DPOOL_ERR_TASK_FAILED);
    cr_assert_str_eq(call.message, "item 2: add: unsupported operand types (numbers expected)");
    cr_assert_eq(call.result.data.via.array.size, 2, "exactly the results before item 2");
    cr_assert_eq(call.result.data.via.array.ptr[0].via.u64, 3);
    cr_assert_eq(call.result.data.via.array.ptr[1].via.u64, 7);
    // The first item failing gives an empty array; an item that is not an array fails.
    CALL_CHUNK("echo", msgpack_pack_array(&pk, 2); msgpack_pack_int(&pk, 5);
               msgpack_pack_array(&pk, 1); msgpack_pack_int(&pk, 6));
    cr_assert_eq(call.rc, DPOOL_ERR_TASK_FAILED);
    cr_assert(strncmp(call.message, "item 0: ", 8) == 0 &&
                  strstr(call.message, "not a msgpack array"),
              "message: %s", call.message);
    cr_assert_eq(call.result.data.via.array.size, 0);
}

Test(functions, chunk_that_is_not_an_array_fails_as_a_whole)
{
    CALL_CHUNK("noop", msgpack_pack_int(&pk, 5));
    cr_assert_eq(call.rc, DPOOL_ERR_TASK_FAILED);
    cr_assert(strstr(call.message, "not a msgpack array of argument arrays"), "message: %s",
              call.message);
    cr_assert_eq(call.bytes.size, 0);
    const uint8_t lying[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x90}; // 4 billion items in 6 bytes
    s_call_chunk_raw("noop", lying, sizeof lying);
    cr_assert_eq(call.rc, DPOOL_ERR_TASK_FAILED);
    cr_assert_eq(call.bytes.size, 0);
    CALL_CHUNK("no.such.function", msgpack_pack_array(&pk, 0));
    cr_assert_eq(call.rc, DPOOL_ERR_NO_FUNCTION);
}

// The items of a chunk decode one after another into memory that is reused: nested
// arrays and maps, a large item between small ones, each echoed byte for byte.
static void
s_pack_echo_values(msgpack_packer *pk, bool as_items)
{
    msgpack_pack_array(pk, 4);
    if (as_items)
        msgpack_pack_array(pk, 1);
    msgpack_pack_map(pk, 1);
    s_pack_str(pk, "k");
    msgpack_pack_array(pk, 3);
    for (int i = 1; i <= 3; i++)
        msgpack_pack_int(pk, i);
    if (as_items)
        msgpack_pack_array(pk, 1);
    msgpack_pack_array(pk, 3000); // far past one 8 KiB block of decoded objects
    for (int i = 0; i < 3000; i++) {
        msgpack_pack_array(pk, 2);
        msgpack_pack_int(pk, i);
        s_pack_str(pk, "item");
    }
    if (as_items)
        msgpack_pack_array(pk, 1);
    msgpack_pack_map(pk, 1);
    s_pack_str(pk, "a");
    s_pack_str(pk, "b");
    if (as_items)
        msgpack_pack_array(pk, 1);
    msgpack_pack_array(pk, 1);
    msgpack_pack_array(pk, 0);
}

Test(functions, chunk_items_decode_into_reused_memory_and_echo_intact)
{
    msgpack_sbuffer expected;
    msgpack_sbuffer_init(&expected);
    msgpack_packer expected_pk;
    msgpack_packer_init(&expected_pk, &expected, msgpack_sbuffer_write);
    s_pack_echo_values(&expected_pk, false);
    for (int round = 0; round < 2; round++) {
        CALL_CHUNK("echo", s_pack_echo_values(&pk, true));
        cr_assert_eq(call.rc, DPOOL_OK, "%s", call.message);
        cr_assert_eq(call.bytes.size, expected.size, "round %d", round);
        cr_assert(memcmp(call.bytes.data, expected.data, expected.size) == 0, "round %d", round);
    }
    msgpack_sbuffer_destroy(&expected);
}
