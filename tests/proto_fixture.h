/*  Shared by the message tests (test_proto.c: frames, headers, whole messages built
    and decoded; test_codec.c: bodies, field types and schemas): messages made by hand,
    frame by frame, a refusal check, and a sample of every command of docs/PROTOCOL.md
    with its fields. Helpers are static inline so a file may use any subset. */
#ifndef PROTO_FIXTURE_H
#define PROTO_FIXTURE_H

#include "dpool_proto.h"

#include <criterion/criterion.h>
#include <dpool/errors.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>

// --- messages by hand ------------------------------------------------------------

static inline zmsg_t *
s_frames(size_t count, ...)
{
    zmsg_t *zmsg = zmsg_new();
    cr_assert_not_null(zmsg);
    va_list args;
    va_start(args, count);
    for (size_t i = 0; i < count; i++) {
        const void *data = va_arg(args, const void *);
        size_t size = va_arg(args, size_t);
        cr_assert_eq(zmsg_addmem(zmsg, data, size), 0);
    }
    va_end(args);
    return zmsg;
}

static inline void
s_header(uint8_t header[4], int command)
{
    header[0] = 'D';
    header[1] = 'P';
    header[2] = DPOOL_PROTO_VERSION;
    header[3] = (uint8_t)command;
}

// Decodes a message that must be refused: checks the code, the reason and that msg
// holds nothing (no reset is called, so anything left would also show as a leak).
static inline void
s_expect_refused(zmsg_t *zmsg, bool with_routing_id, const char *what)
{
    dpool_msg_t msg;
    memset(&msg, 0, sizeof msg);
    const char *why = NULL;
    zframe_t *routing_id = NULL;
    int rc = dpool_proto_decode(&zmsg, with_routing_id, &routing_id, &msg, &why);
    cr_assert_null(zmsg, "%s: decode must consume the message", what);
    cr_assert_eq(rc, DPOOL_ERR_PROTO, "%s: expected DPOOL_ERR_PROTO, got %d", what, rc);
    cr_assert_not_null(why, "%s: a refusal needs a reason", what);
    cr_assert_gt(strlen(why), 0, "%s", what);
    cr_assert(msg.name == NULL && msg.text == NULL && msg.functions == NULL &&
                  msg.payload == NULL && msg.function_count == 0,
              "%s: a refused message must hold nothing", what);
    zframe_destroy(&routing_id);
}

// --- a sample of every command -------------------------------------------------

typedef struct {
    dpool_msg_t msg;     // what is sent, without payload
    const void *payload; // bytes of the payload frame, or NULL for none
    size_t payload_size;
} sample_t;

#define MAX_SAMPLES 32

static char long_name[DPOOL_PROTO_NAME_MAX + 1];
static char *hello_functions[] = {"square", "sleep", long_name};
// Task output may hold any byte, NUL included.
static char output_bytes[] = {'a', '\0', 'b', '\0', '\0', (char)0xff, '\n'};
// Payloads: an arguments array with a bin holding NULs, a result, a status map.
static const uint8_t arguments[] = {0x93, 0x01, 0xc4, 0x03, 0x00, 0x00, 0x07, 0xa1, 'x'};
static const uint8_t result_value[] = {0xcb, 0x40, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18};
static const uint8_t status_map[] = {0x81, 0xa7, 'v', 'e', 'r', 's', 'i', 'o',
                                     'n',  0xa5, '0', '.', '1', '.', '0'};

#define SAMPLE(...) ((sample_t){.msg = {__VA_ARGS__}})
#define WITH_PAYLOAD(bytes, ...)                                                                   \
    ((sample_t){.msg = {__VA_ARGS__}, .payload = (bytes), .payload_size = sizeof(bytes)})
#define TEXT(literal) .text = (literal), .text_size = sizeof(literal) - 1

static inline size_t
s_samples(sample_t *samples)
{
    memset(long_name, 'n', DPOOL_PROTO_NAME_MAX);
    long_name[DPOOL_PROTO_NAME_MAX] = '\0';
    size_t n = 0;
    samples[n++] = SAMPLE(.command = DPOOL_CMD_POOL_OPEN, .pool_ref = UINT32_MAX, .count = 0);
    samples[n++] =
        SAMPLE(.command = DPOOL_CMD_POOL_OPEN, .pool_ref = 1, .name = long_name, .count = 8);
    samples[n++] = SAMPLE(.command = DPOOL_CMD_POOL_OPENED, .pool_ref = 7, .code = 0, .count = 12);
    samples[n++] = SAMPLE(.command = DPOOL_CMD_POOL_OPENED, .pool_ref = 7,
                          .code = DPOOL_ERR_INVALID, TEXT("cap refused"));
    samples[n++] = WITH_PAYLOAD(arguments, .command = DPOOL_CMD_SUBMIT, .pool_ref = 3,
                                .task_id = UINT64_MAX, .name = "square");
    samples[n++] = WITH_PAYLOAD(result_value, .command = DPOOL_CMD_RESULT, .task_id = UINT64_MAX);
    samples[n++] = SAMPLE(.command = DPOOL_CMD_RESULT, .task_id = 1, .code = DPOOL_ERR_WORKER_LOST,
                          TEXT("worker process 4242 on host-a killed by signal 11 (SIGSEGV)"));
    samples[n++] =
        SAMPLE(.command = DPOOL_CMD_RESULT, .task_id = 2, .code = DPOOL_ERR_TASK_FAILED, TEXT(""));
    samples[n++] =
        SAMPLE(.command = DPOOL_CMD_OUTPUT, .task_id = UINT64_MAX, .count = DPOOL_STREAM_STDERR,
               .text = output_bytes, .text_size = sizeof output_bytes);
    samples[n++] =
        SAMPLE(.command = DPOOL_CMD_OUTPUT, .task_id = 5, .count = DPOOL_STREAM_STDOUT, TEXT(""));
    samples[n++] = SAMPLE(.command = DPOOL_CMD_TERMINATE, .pool_ref = UINT32_MAX);
    samples[n++] = SAMPLE(.command = DPOOL_CMD_POOL_RELEASE, .pool_ref = 9);
    samples[n++] = SAMPLE(.command = DPOOL_CMD_STATUS);
    samples[n++] = WITH_PAYLOAD(status_map, .command = DPOOL_CMD_STATUS_REPLY);
    samples[n++] = SAMPLE(.command = DPOOL_CMD_ERROR, .code = INT32_MIN,
                          TEXT("worker not registered: send WORKER_HELLO first"));
    samples[n++] = SAMPLE(.command = DPOOL_CMD_ERROR, .code = INT32_MAX);
    samples[n++] = SAMPLE(.command = DPOOL_CMD_WORKER_HELLO, .name = long_name, .pid = UINT32_MAX,
                          .count = 8, .functions = hello_functions, .function_count = 3);
    samples[n++] = SAMPLE(.command = DPOOL_CMD_WORKER_HELLO, .name = "h", .pid = 1, .count = 0);
    samples[n++] = SAMPLE(.command = DPOOL_CMD_CREDIT, .count = UINT32_MAX);
    samples[n++] =
        WITH_PAYLOAD(arguments, .command = DPOOL_CMD_TASK, .task_id = UINT64_MAX, .name = "sleep");
    samples[n++] = WITH_PAYLOAD(result_value, .command = DPOOL_CMD_WORKER_RESULT,
                                .task_id = 1ull << 32, .count = 1);
    samples[n++] = SAMPLE(.command = DPOOL_CMD_WORKER_RESULT, .task_id = 4,
                          .code = DPOOL_ERR_WORKER_LOST, TEXT("killed by signal 9"), .count = 0);
    samples[n++] =
        SAMPLE(.command = DPOOL_CMD_WORKER_OUTPUT, .task_id = 0, .count = DPOOL_STREAM_STDOUT,
               .text = output_bytes, .text_size = sizeof output_bytes);
    samples[n++] = SAMPLE(.command = DPOOL_CMD_KILL, .task_id = UINT64_MAX);
    samples[n++] = SAMPLE(.command = DPOOL_CMD_HEARTBEAT);
    samples[n++] = SAMPLE(.command = DPOOL_CMD_BYE);
    cr_assert_leq(n, MAX_SAMPLES);
    return n;
}

#endif
