/*  Fuzz target: a worker's argument decoding and the built-in functions that read
    arguments, through dpool_functions_call, in this process (no fork).

    Input layout: byte 0 picks the function (below; sleep, crash and demo.worker are left
    out because they sleep or die on purpose), the rest is the msgpack argument bytes.
    Whatever comes back must keep dpool_functions.h's contract: DPOOL_OK with exactly one
    msgpack value (for echo, its argument), or a failure code with a message. */
#include "dpool_fuzz.h"

#include "dpool_builtins.h"
#include "dpool_functions.h"

#include <dpool/errors.h>
#include <stdlib.h>
#include <string.h>

static const char *const s_names[] = {"echo", "add", "noop", "fail", "hostpid", "no.such.function"};

// Built once: libFuzzer calls the target in one process, and registering is not under test.
static dpool_functions_t *functions;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    functions = dpool_functions_new();
    if (!functions || dpool_builtins_register(functions) != DPOOL_OK)
        abort();
    return 0;
}

static void
s_check_one_value(const msgpack_sbuffer *result)
{
    msgpack_unpacked unpacked;
    msgpack_unpacked_init(&unpacked);
    size_t offset = 0;
    msgpack_unpack_return rc = msgpack_unpack_next(&unpacked, result->data, result->size, &offset);
    DPOOL_FUZZ_CHECK(rc == MSGPACK_UNPACK_SUCCESS && offset == result->size,
                     "the result is not exactly one msgpack value");
    msgpack_unpacked_destroy(&unpacked);
}

// echo's result is its one argument, packed again as msgpack-c packs it.
static void
s_check_echo(const uint8_t *args, size_t size, const msgpack_sbuffer *result)
{
    msgpack_unpacked unpacked;
    msgpack_unpacked_init(&unpacked);
    size_t offset = 0;
    msgpack_unpack_return rc = msgpack_unpack_next(&unpacked, (const char *)args, size, &offset);
    DPOOL_FUZZ_CHECK(rc == MSGPACK_UNPACK_SUCCESS && unpacked.data.type == MSGPACK_OBJECT_ARRAY &&
                         unpacked.data.via.array.size == 1,
                     "echo succeeded on arguments that are not one array of one value");
    msgpack_sbuffer expected;
    msgpack_sbuffer_init(&expected);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &expected, msgpack_sbuffer_write);
    msgpack_pack_object(&pk, unpacked.data.via.array.ptr[0]);
    DPOOL_FUZZ_CHECK(expected.size == result->size &&
                         memcmp(expected.data, result->data, result->size) == 0,
                     "echo did not return its argument");
    msgpack_sbuffer_destroy(&expected);
    msgpack_unpacked_destroy(&unpacked);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const char *name = s_names[data[0] % (sizeof s_names / sizeof s_names[0])];
    msgpack_sbuffer result;
    msgpack_sbuffer_init(&result);
    char *message = NULL;
    int rc = dpool_functions_call(functions, name, data + 1, size - 1, &result, &message);
    if (rc == DPOOL_OK) {
        DPOOL_FUZZ_CHECK(!message, "a message with a success");
        s_check_one_value(&result);
        if (strcmp(name, "echo") == 0)
            s_check_echo(data + 1, size - 1, &result);
    } else {
        DPOOL_FUZZ_CHECK(rc == DPOOL_ERR_TASK_FAILED || rc == DPOOL_ERR_NO_FUNCTION ||
                             rc == DPOOL_ERR_NOMEM,
                         "%s returned %d", name, rc);
        // fail's message is str() of its argument, which may be empty; others explain.
        DPOOL_FUZZ_CHECK(message && (*message || strcmp(name, "fail") == 0),
                         "%s failed without a message", name);
        DPOOL_FUZZ_CHECK(result.size == 0, "%s failed but left a result", name);
    }
    free(message);
    msgpack_sbuffer_destroy(&result);
    return 0;
}
