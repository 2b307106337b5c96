/*  Tests for dpool_proto and dpool_codec: every command of docs/PROTOCOL.md survives
    dpool_proto_build + dpool_proto_decode field for field, and every kind of
    malformed message is refused with DPOOL_ERR_PROTO and a reason, leaving nothing
    allocated (the ASan build checks that no refusal leaks). Malformed messages are
    made by hand, frame by frame, with msgpack-c's packer. */
#include "dpool_codec.h"
#include "dpool_proto.h"

#include <criterion/criterion.h>
#include <dpool/errors.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>

#define ROUTING_ID "C0123456789abcdef"

// --- helpers -------------------------------------------------------------------

static zmsg_t *
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

static void
s_header(uint8_t header[4], int command)
{
    header[0] = 'D';
    header[1] = 'P';
    header[2] = DPOOL_PROTO_VERSION;
    header[3] = (uint8_t)command;
}

// A body packed by the test through pk. Bodies come from a file-static pool that the
// suite's fini frees, so a failing assertion leaks nothing of the test's own.
typedef struct {
    msgpack_sbuffer buffer;
    msgpack_packer pk;
} body_t;

#define MAX_BODIES 16
static body_t body_pool[MAX_BODIES];
static size_t bodies_used;

static body_t *
s_body_new(void)
{
    cr_assert_lt(bodies_used, MAX_BODIES, "body pool exhausted");
    body_t *body = &body_pool[bodies_used++];
    msgpack_sbuffer_init(&body->buffer);
    msgpack_packer_init(&body->pk, &body->buffer, msgpack_sbuffer_write);
    return body;
}

static void
s_bodies_free(void)
{
    for (size_t i = 0; i < bodies_used; i++)
        bodies_used = 0;
}

TestSuite(proto, .fini = s_bodies_free, .timeout = 10);

#ifdef __SANITIZE_ADDRESS__
// A decoder that tries a huge allocation should fail a test with a message, not abort
// the process: let ASan's malloc return NULL as the C library's would.
const char *__asan_default_options(void);
const char *
__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}
#endif

static void
s_pack_str(msgpack_packer *pk, const char *text, size_t size)
{
    msgpack_pack_str(pk, size);
    msgpack_pack_str_body(pk, text, size);
}

// Decodes a message that must be refused: checks the code, the reason and that msg
// holds nothing (no reset is called, so anything left would also show as a leak).
static void
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

// Sends header(command) + body (+ payload when given) to s_expect_refused.
static void
s_expect_body_refused(int command, const body_t *body, bool with_payload, const char *what)
{
    uint8_t header[4];
    s_header(header, command);
    static const uint8_t payload[] = {0x90}; // []
    zmsg_t *zmsg = with_payload
                       ? s_frames(3, header, sizeof header, body->buffer.data, body->buffer.size,
                                  payload, sizeof payload)
                       : s_frames(2, header, sizeof header, body->buffer.data, body->buffer.size);
    s_expect_refused(zmsg, false, what);
}

static zframe_t *
s_payload(const void *data, size_t size)
{
    zframe_t *frame = zframe_new(data, size);
    cr_assert_not_null(frame);
    return frame;
}

// Builds msg (its payload moves into the message), checks the frames, and decodes
// them into out (zeroed first). The caller resets out.
static void
s_round_trip(dpool_msg_t *msg, bool with_routing_id, dpool_msg_t *out)
{
    const char *name = dpool_proto_command_name(msg->command);
    bool had_payload = msg->payload != NULL;
    zframe_t *routing_id = with_routing_id ? zframe_new(ROUTING_ID, strlen(ROUTING_ID)) : NULL;
    zmsg_t *zmsg = dpool_proto_build(msg, routing_id);
    cr_assert_not_null(zmsg, "%s: build failed", name);
    cr_assert_null(msg->payload, "%s: build must take the payload", name);
    cr_assert_eq(zmsg_size(zmsg), (with_routing_id ? 1u : 0u) + 2 + (had_payload ? 1u : 0u),
                 "%s: wrong frame count", name);
    zframe_t *header = zmsg_first(zmsg);
    if (with_routing_id) {
        cr_assert(zframe_streq(header, ROUTING_ID), "%s: routing id frame", name);
        header = zmsg_next(zmsg);
    }
    const uint8_t expected[4] = {'D', 'P', 1, (uint8_t)msg->command};
    cr_assert_eq(zframe_size(header), 4, "%s: header size", name);
    cr_assert_arr_eq(zframe_data(header), expected, 4, "%s: header bytes", name);

    memset(out, 0, sizeof *out);
    const char *why = NULL;
    zframe_t *received_id = NULL;
    int rc = dpool_proto_decode(&zmsg, with_routing_id, &received_id, out, &why);
    cr_assert_eq(rc, DPOOL_OK, "%s: decode failed: %s", name, why ? why : "(no reason)");
    cr_assert_null(zmsg);
    if (with_routing_id) {
        cr_assert_not_null(received_id);
        cr_assert(zframe_eq(received_id, routing_id), "%s: routing id changed", name);
    }
    zframe_destroy(&received_id);
    zframe_destroy(&routing_id);
}

// --- round trips ---------------------------------------------------------------

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

static size_t
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

static void
s_assert_same(const sample_t *sample, const dpool_msg_t *got)
{
    const dpool_msg_t *sent = &sample->msg;
    const char *name = dpool_proto_command_name(sent->command);
    cr_assert_eq(got->command, sent->command, "%s: command", name);
    cr_assert_eq(got->task_id, sent->task_id, "%s: task_id", name);
    cr_assert_eq(got->pool_ref, sent->pool_ref, "%s: pool_ref", name);
    cr_assert_eq(got->code, sent->code, "%s: code", name);
    cr_assert_eq(got->count, sent->count, "%s: count", name);
    cr_assert_eq(got->pid, sent->pid, "%s: pid", name);
    if (sent->name)
        cr_assert(got->name && strcmp(got->name, sent->name) == 0, "%s: name", name);
    else
        cr_assert_null(got->name, "%s: nil name must stay NULL", name);
    if (sent->text) {
        cr_assert_not_null(got->text, "%s: text", name);
        cr_assert_eq(got->text_size, sent->text_size, "%s: text size", name);
        cr_assert_arr_eq(got->text, sent->text, sent->text_size, "%s: text bytes", name);
        cr_assert_eq(got->text[got->text_size], '\0', "%s: text is NUL-terminated", name);
    } else {
        cr_assert_null(got->text, "%s: nil message must stay NULL", name);
    }
    cr_assert_eq(got->function_count, sent->function_count, "%s: function count", name);
    for (size_t i = 0; i < sent->function_count; i++)
        cr_assert_str_eq(got->functions[i], sent->functions[i], "%s: function %zu", name, i);
    if (sample->payload) {
        cr_assert_not_null(got->payload, "%s: payload lost", name);
        cr_assert_eq(zframe_size(got->payload), sample->payload_size, "%s: payload size", name);
        cr_assert_arr_eq(zframe_data(got->payload), sample->payload, sample->payload_size,
                         "%s: payload bytes", name);
    } else {
        cr_assert_null(got->payload, "%s: payload appeared", name);
    }
}

static void
s_round_trip_all(bool with_routing_id)
{
    sample_t samples[MAX_SAMPLES];
    size_t count = s_samples(samples);
    bool seen[256] = {false};
    for (size_t i = 0; i < count; i++) {
        dpool_msg_t msg = samples[i].msg;
        if (samples[i].payload)
            msg.payload = s_payload(samples[i].payload, samples[i].payload_size);
        dpool_msg_t got;
        s_round_trip(&msg, with_routing_id, &got);
        s_assert_same(&samples[i], &got);
        dpool_msg_reset(&got);
        seen[msg.command] = true;
    }
    for (int command = 0; command < 256; command++)
        if (dpool_proto_command_name(command))
            cr_assert(seen[command], "no sample for %s", dpool_proto_command_name(command));
}

Test(proto, every_command_round_trips_without_routing_id)
{
    s_round_trip_all(false);
}

Test(proto, every_command_round_trips_with_routing_id)
{
    s_round_trip_all(true);
}

Test(proto, decode_drops_the_routing_id_when_the_caller_does_not_want_it)
{
    dpool_msg_t msg = {.command = DPOOL_CMD_CREDIT, .count = 3};
    zframe_t *routing_id = zframe_new(ROUTING_ID, strlen(ROUTING_ID));
    zmsg_t *zmsg = dpool_proto_build(&msg, routing_id);
    zframe_destroy(&routing_id);
    cr_assert_not_null(zmsg);
    dpool_msg_t got;
    memset(&got, 0, sizeof got);
    const char *why = NULL;
    cr_assert_eq(dpool_proto_decode(&zmsg, true, NULL, &got, &why), DPOOL_OK);
    cr_assert_eq(got.command, DPOOL_CMD_CREDIT);
    cr_assert_eq(got.count, 3);
}

Test(proto, decode_accepts_output_bytes_sent_as_a_string)
{
    uint8_t header[4];
    s_header(header, DPOOL_CMD_OUTPUT);
    body_t *body = s_body_new();
    msgpack_pack_array(&body->pk, 3);
    msgpack_pack_uint64(&body->pk, 9);
    msgpack_pack_uint32(&body->pk, DPOOL_STREAM_STDOUT);
    s_pack_str(&body->pk, "hi\0there", 8);
    zmsg_t *zmsg = s_frames(2, header, sizeof header, body->buffer.data, body->buffer.size);
    dpool_msg_t got;
    memset(&got, 0, sizeof got);
    const char *why = NULL;
    cr_assert_eq(dpool_proto_decode(&zmsg, false, NULL, &got, &why), DPOOL_OK);
    cr_assert_eq(got.text_size, 8);
    cr_assert_arr_eq(got.text, "hi\0there", 8);
    dpool_msg_reset(&got);
    cr_assert_null(got.text, "reset zeroes the message");
}

Test(proto, decode_accepts_exactly_1024_functions)
{
    uint8_t header[4];
    s_header(header, DPOOL_CMD_WORKER_HELLO);
    body_t *body = s_body_new();
    msgpack_pack_array(&body->pk, 4);
    s_pack_str(&body->pk, "host", 4);
    msgpack_pack_uint32(&body->pk, 1);
    msgpack_pack_uint32(&body->pk, 1);
    msgpack_pack_array(&body->pk, DPOOL_PROTO_FUNCTIONS_MAX);
    for (int i = 0; i < DPOOL_PROTO_FUNCTIONS_MAX; i++)
        s_pack_str(&body->pk, "f", 1);
    zmsg_t *zmsg = s_frames(2, header, sizeof header, body->buffer.data, body->buffer.size);
    dpool_msg_t got;
    memset(&got, 0, sizeof got);
    const char *why = NULL;
    cr_assert_eq(dpool_proto_decode(&zmsg, false, NULL, &got, &why), DPOOL_OK, "%s", why);
    cr_assert_eq(got.function_count, DPOOL_PROTO_FUNCTIONS_MAX);
    dpool_msg_reset(&got);
}

// --- malformed frames ------------------------------------------------------------

Test(proto, refuses_wrong_frame_counts)
{
    uint8_t header[4];
    s_header(header, DPOOL_CMD_RESULT);
    static const uint8_t body[] = {0x93, 0x01, 0x00, 0xc0}; // [1, 0, nil]
    static const uint8_t payload[] = {0xc0};
    s_expect_refused(zmsg_new(), false, "no frame");
    s_expect_refused(s_frames(1, header, sizeof header), false, "1 frame");
    s_expect_refused(s_frames(4, header, sizeof header, body, sizeof body, payload, sizeof payload,
                              payload, sizeof payload),
                     false, "4 frames");
    s_expect_refused(s_frames(5, header, sizeof header, body, sizeof body, payload, sizeof payload,
                              payload, sizeof payload, payload, sizeof payload),
                     false, "5 frames");
    s_expect_refused(s_frames(2, ROUTING_ID, strlen(ROUTING_ID), header, sizeof header), true,
                     "routing id + 1 frame");
    // The same frames are fine with the right count: the refusals above were for it.
    zmsg_t *good = s_frames(2, header, sizeof header, body, sizeof body);
    dpool_msg_t msg;
    memset(&msg, 0, sizeof msg);
    const char *why = NULL;
    cr_assert_eq(dpool_proto_decode(&good, false, NULL, &msg, &why), DPOOL_OK, "%s", why);
    dpool_msg_reset(&msg);
}

Test(proto, refused_message_still_hands_back_the_routing_id)
{
    static const uint8_t header[] = {'D', 'P', 2, DPOOL_CMD_STATUS};
    static const uint8_t body[] = {0x90};
    zmsg_t *zmsg =
        s_frames(3, ROUTING_ID, strlen(ROUTING_ID), header, sizeof header, body, sizeof body);
    dpool_msg_t msg;
    memset(&msg, 0, sizeof msg);
    const char *why = NULL;
    zframe_t *routing_id = NULL;
    cr_assert_eq(dpool_proto_decode(&zmsg, true, &routing_id, &msg, &why), DPOOL_ERR_PROTO);
    cr_assert_not_null(why);
    cr_assert_not_null(routing_id, "the peer must still be answerable");
    cr_assert(zframe_streq(routing_id, ROUTING_ID));
    zframe_destroy(&routing_id);
}

Test(proto, refuses_bad_headers)
{
    static const uint8_t body[] = {0x90}; // [] fits STATUS
    static const struct {
        uint8_t bytes[5];
        size_t size;
        const char *what;
    } headers[] = {
        {{'D', 'P', 1}, 3, "3-byte header"},
        {{'D', 'P', 1, DPOOL_CMD_STATUS, 0}, 5, "5-byte header"},
        {{0}, 0, "empty header"},
        {{'D', 'Q', 1, DPOOL_CMD_STATUS}, 4, "bad magic DQ"},
        {{'d', 'p', 1, DPOOL_CMD_STATUS}, 4, "bad magic dp"},
        {{'D', 'P', 2, DPOOL_CMD_STATUS}, 4, "version 2"},
        {{'D', 'P', 0, DPOOL_CMD_STATUS}, 4, "version 0"},
        {{'D', 'P', 1, 0x7F}, 4, "command 0x7F"},
        {{'D', 'P', 1, 0x00}, 4, "command 0x00"},
        {{'D', 'P', 1, 0x0B}, 4, "command 0x0B"},
        {{'D', 'P', 1, 0xFF}, 4, "command 0xFF"},
    };
    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++)
        s_expect_refused(s_frames(2, headers[i].bytes, headers[i].size, body, sizeof body), false,
                         headers[i].what);
}

Test(proto, refuses_a_payload_the_command_does_not_take)
{
    static const int commands[] = {DPOOL_CMD_TERMINATE, DPOOL_CMD_HEARTBEAT, DPOOL_CMD_CREDIT,
                                   DPOOL_CMD_OUTPUT};
    static const uint8_t payload[] = {0x90};
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        dpool_msg_t msg = {.command = commands[i], .text = "", .pool_ref = 1};
        zmsg_t *zmsg = dpool_proto_build(&msg, NULL);
        cr_assert_not_null(zmsg);
        cr_assert_eq(zmsg_addmem(zmsg, payload, sizeof payload), 0);
        s_expect_refused(zmsg, false, dpool_proto_command_name(commands[i]));
    }
}

Test(proto, refuses_a_missing_payload_the_command_needs)
{
    static const int commands[] = {DPOOL_CMD_SUBMIT, DPOOL_CMD_TASK, DPOOL_CMD_STATUS_REPLY};
    static const uint8_t payload[] = {0x90};
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        dpool_msg_t msg = {
            .command = commands[i], .name = "f", .payload = s_payload(payload, sizeof payload)};
        zmsg_t *zmsg = dpool_proto_build(&msg, NULL);
        cr_assert_not_null(zmsg);
        zframe_t *dropped = zmsg_last(zmsg);
        zmsg_remove(zmsg, dropped);
        zframe_destroy(&dropped);
        s_expect_refused(zmsg, false, dpool_proto_command_name(commands[i]));
    }
}

// --- malformed bodies ------------------------------------------------------------

Test(proto, refuses_a_body_that_is_not_msgpack)
{
    static const uint8_t never_used[] = {0xc1};
    body_t *empty = s_body_new();
    s_expect_body_refused(DPOOL_CMD_STATUS, empty, false, "empty body");
    body_t *body = s_body_new();
    msgpack_sbuffer_write(&body->buffer, (const char *)never_used, sizeof never_used);
    s_expect_body_refused(DPOOL_CMD_STATUS, body, false, "0xc1 body");
}

Test(proto, refuses_every_truncation_of_a_valid_body)
{
    body_t *body = s_body_new();
    msgpack_pack_array(&body->pk, 3);
    msgpack_pack_uint32(&body->pk, 70000);
    msgpack_pack_uint64(&body->pk, UINT64_MAX);
    s_pack_str(&body->pk, "square", 6);
    body_t *cut = s_body_new();
    for (size_t size = 0; size < body->buffer.size; size++) {
        msgpack_sbuffer_clear(&cut->buffer);
        if (size > 0)
            msgpack_sbuffer_write(&cut->buffer, body->buffer.data, size);
        char what[48];
        snprintf(what, sizeof what, "cut at %zu bytes", size);
        s_expect_body_refused(DPOOL_CMD_SUBMIT, cut, true, what);
    }
}

Test(proto, refuses_bytes_after_the_body_value)
{
    body_t *body = s_body_new();
    msgpack_pack_array(&body->pk, 1);
    msgpack_pack_uint32(&body->pk, 1);
    msgpack_pack_nil(&body->pk);
    s_expect_body_refused(DPOOL_CMD_TERMINATE, body, false, "trailing nil");
    msgpack_pack_array(&body->pk, 1);
    msgpack_pack_uint32(&body->pk, 1);
    s_expect_body_refused(DPOOL_CMD_TERMINATE, body, false, "two arrays");
}

Test(proto, refuses_a_body_that_is_not_an_array)
{
    body_t *bodies[4];
    for (int i = 0; i < 4; i++)
        bodies[i] = s_body_new();
    msgpack_pack_map(&bodies[0]->pk, 0);
    msgpack_pack_uint32(&bodies[1]->pk, 1);
    msgpack_pack_nil(&bodies[2]->pk);
    s_pack_str(&bodies[3]->pk, "[]", 2);
    for (int i = 0; i < 4; i++) {
        s_expect_body_refused(DPOOL_CMD_STATUS, bodies[i], false, "not an array");
        s_expect_body_refused(DPOOL_CMD_TERMINATE, bodies[i], false, "not an array");
    }
}

Test(proto, refuses_too_few_fields_and_skips_fields_it_does_not_know)
{
    body_t *none = s_body_new();
    body_t *two = s_body_new();
    body_t *one = s_body_new();
    msgpack_pack_array(&none->pk, 0);
    msgpack_pack_array(&two->pk, 2);
    msgpack_pack_uint32(&two->pk, 1);
    msgpack_pack_uint32(&two->pk, 2);
    msgpack_pack_array(&one->pk, 1);
    msgpack_pack_nil(&one->pk);
    s_expect_body_refused(DPOOL_CMD_TERMINATE, none, false, "TERMINATE []");
    s_expect_body_refused(DPOOL_CMD_HEARTBEAT, one, false, "HEARTBEAT [nil]");
    s_expect_body_refused(DPOOL_CMD_WORKER_RESULT, two, false, "WORKER_RESULT [1, 2]");
    // A newer peer's extra field is skipped: TERMINATE [1, 2] is TERMINATE [1].
    dpool_msg_t msg = {.command = DPOOL_CMD_TERMINATE};
    const char *why = NULL;
    cr_assert_eq(dpool_codec_decode(two->buffer.data, two->buffer.size, &msg, &why), DPOOL_OK, "%s",
                 why ? why : "");
    cr_assert_eq(msg.pool_ref, 1);
    dpool_msg_reset(&msg);
}

// One-field bodies for commands whose single field is an integer.
typedef enum { V_STR, V_NEG, V_U64, V_FLOAT, V_NIL, V_BOOL } value_kind_t;

static void
s_pack_value(msgpack_packer *pk, value_kind_t kind, uint64_t number)
{
    switch (kind) {
    case V_STR:
        s_pack_str(pk, "7", 1);
        break;
    case V_NEG:
        msgpack_pack_int64(pk, -(int64_t)number);
        break;
    case V_U64:
        msgpack_pack_uint64(pk, number);
        break;
    case V_FLOAT:
        msgpack_pack_double(pk, (double)number);
        break;
    case V_NIL:
        msgpack_pack_nil(pk);
        break;
    case V_BOOL:
        msgpack_pack_true(pk);
        break;
    }
}

Test(proto, refuses_integers_of_the_wrong_type_or_range)
{
    static const struct {
        int command;
        value_kind_t kind;
        uint64_t number;
        const char *what;
    } cases[] = {
        {DPOOL_CMD_TERMINATE, V_STR, 0, "string pool_ref"},
        {DPOOL_CMD_TERMINATE, V_NEG, 1, "negative pool_ref"},
        {DPOOL_CMD_TERMINATE, V_U64, (uint64_t)UINT32_MAX + 1, "pool_ref of 2^32"},
        {DPOOL_CMD_CREDIT, V_U64, (uint64_t)UINT32_MAX + 1, "credits of 2^32"},
        {DPOOL_CMD_CREDIT, V_U64, UINT64_MAX, "credits of 2^64-1"},
        {DPOOL_CMD_CREDIT, V_FLOAT, 1, "float credits"},
        {DPOOL_CMD_CREDIT, V_BOOL, 1, "bool credits"},
        {DPOOL_CMD_KILL, V_NEG, 1, "task id -1"},
        {DPOOL_CMD_KILL, V_STR, 0, "string task id"},
        {DPOOL_CMD_KILL, V_NIL, 0, "nil task id"},
        {DPOOL_CMD_KILL, V_FLOAT, 3, "float task id"},
    };
    body_t *body = s_body_new();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        msgpack_sbuffer_clear(&body->buffer);
        msgpack_pack_array(&body->pk, 1);
        s_pack_value(&body->pk, cases[i].kind, cases[i].number);
        s_expect_body_refused(cases[i].command, body, false, cases[i].what);
    }
}

Test(proto, refuses_codes_outside_int32)
{
    static const struct {
        value_kind_t kind;
        uint64_t number;
        const char *what;
    } cases[] = {
        {V_U64, (uint64_t)INT32_MAX + 1, "code 2^31"},
        {V_NEG, (uint64_t)INT32_MAX + 2, "code -2^31-1"},
        {V_U64, UINT64_MAX, "code 2^64-1"},
        {V_STR, 0, "string code"},
        {V_NIL, 0, "nil code"},
    };
    body_t *body = s_body_new();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        msgpack_sbuffer_clear(&body->buffer);
        msgpack_pack_array(&body->pk, 2);
        s_pack_value(&body->pk, cases[i].kind, cases[i].number);
        msgpack_pack_nil(&body->pk);
        s_expect_body_refused(DPOOL_CMD_ERROR, body, false, cases[i].what);
    }
}

Test(proto, refuses_messages_and_output_of_the_wrong_type)
{
    body_t *message = s_body_new();
    body_t *output_int = s_body_new();
    body_t *output_nil = s_body_new();
    msgpack_pack_array(&message->pk, 2);
    msgpack_pack_int32(&message->pk, -3);
    msgpack_pack_int32(&message->pk, 5);
    msgpack_pack_array(&output_int->pk, 3);
    msgpack_pack_uint64(&output_int->pk, 1);
    msgpack_pack_uint32(&output_int->pk, 1);
    msgpack_pack_uint32(&output_int->pk, 7);
    msgpack_pack_array(&output_nil->pk, 3);
    msgpack_pack_uint64(&output_nil->pk, 1);
    msgpack_pack_uint32(&output_nil->pk, 1);
    msgpack_pack_nil(&output_nil->pk);
    s_expect_body_refused(DPOOL_CMD_ERROR, message, false, "integer message");
    s_expect_body_refused(DPOOL_CMD_OUTPUT, output_int, false, "integer output");
    s_expect_body_refused(DPOOL_CMD_WORKER_OUTPUT, output_nil, false, "nil output");
}

// SUBMIT [1, 1, <function>] with a payload: only the name is wrong.
static void
s_expect_submit_name_refused(const char *name, size_t size, bool as_bin, const char *what)
{
    body_t *body = s_body_new();
    msgpack_pack_array(&body->pk, 3);
    msgpack_pack_uint32(&body->pk, 1);
    msgpack_pack_uint64(&body->pk, 1);
    if (!name)
        msgpack_pack_nil(&body->pk);
    else if (as_bin) {
        msgpack_pack_bin(&body->pk, size);
        msgpack_pack_bin_body(&body->pk, name, size);
    } else
        s_pack_str(&body->pk, name, size);
    s_expect_body_refused(DPOOL_CMD_SUBMIT, body, true, what);
}

Test(proto, refuses_names_that_are_empty_too_long_or_hold_a_nul)
{
    char name[DPOOL_PROTO_NAME_MAX + 1];
    memset(name, 'n', sizeof name);
    s_expect_submit_name_refused("", 0, false, "empty name");
    s_expect_submit_name_refused(name, DPOOL_PROTO_NAME_MAX + 1, false, "256-byte name");
    s_expect_submit_name_refused("f\0g", 3, false, "name with a NUL");
    s_expect_submit_name_refused("\0", 1, false, "name that is one NUL");
    s_expect_submit_name_refused(NULL, 0, false, "nil name where one is required");
    s_expect_submit_name_refused("f", 1, true, "name as bin");

    // POOL_OPEN's name may be nil, but not empty.
    body_t *body = s_body_new();
    msgpack_pack_array(&body->pk, 3);
    msgpack_pack_uint32(&body->pk, 1);
    s_pack_str(&body->pk, "", 0);
    msgpack_pack_uint32(&body->pk, 0);
    s_expect_body_refused(DPOOL_CMD_POOL_OPEN, body, false, "empty pool name");
}

typedef enum { F_NOT_ARRAY, F_HAS_INT, F_HAS_NIL, F_HAS_EMPTY, F_TOO_MANY } functions_fault_t;

// WORKER_HELLO with a valid host (so a copy of it exists when the functions fail).
static void
s_expect_functions_refused(functions_fault_t fault, const char *what)
{
    body_t *body = s_body_new();
    msgpack_pack_array(&body->pk, 4);
    s_pack_str(&body->pk, "host-a", 6);
    msgpack_pack_uint32(&body->pk, 42);
    msgpack_pack_uint32(&body->pk, 4);
    switch (fault) {
    case F_NOT_ARRAY:
        s_pack_str(&body->pk, "square", 6);
        break;
    case F_HAS_INT:
    case F_HAS_NIL:
    case F_HAS_EMPTY:
        // Two good names first: their copies must be freed with the refusal.
        msgpack_pack_array(&body->pk, 3);
        s_pack_str(&body->pk, "square", 6);
        s_pack_str(&body->pk, "sleep", 5);
        if (fault == F_HAS_INT)
            msgpack_pack_int32(&body->pk, 3);
        else if (fault == F_HAS_NIL)
            msgpack_pack_nil(&body->pk);
        else
            s_pack_str(&body->pk, "", 0);
        break;
    case F_TOO_MANY:
        msgpack_pack_array(&body->pk, DPOOL_PROTO_FUNCTIONS_MAX + 1);
        for (int i = 0; i < DPOOL_PROTO_FUNCTIONS_MAX + 1; i++)
            s_pack_str(&body->pk, "f", 1);
        break;
    }
    s_expect_body_refused(DPOOL_CMD_WORKER_HELLO, body, false, what);
}

Test(proto, refuses_bad_function_lists)
{
    s_expect_functions_refused(F_NOT_ARRAY, "functions not an array");
    s_expect_functions_refused(F_HAS_INT, "an integer function");
    s_expect_functions_refused(F_HAS_NIL, "a nil function");
    s_expect_functions_refused(F_HAS_EMPTY, "an empty function name");
    s_expect_functions_refused(F_TOO_MANY, "1025 functions");
}

// msgpack-c allocates room for a container's declared items before it reads them,
// so a few bytes claiming 2^32-1 items must be refused, not honoured with a huge
// allocation (DPOOL_ERR_NOMEM, or an abort under ASan).
Test(proto, refuses_a_body_declaring_more_items_than_it_holds)
{
    static const uint8_t huge_array[] = {0xdd, 0xff, 0xff, 0xff, 0xff};
    static const uint8_t huge_map[] = {0xdf, 0xff, 0xff, 0xff, 0xff};
    // WORKER_HELLO whose functions field claims 2^32-1 names.
    static const uint8_t huge_functions[] = {0x94, 0xa1, 'h',  0x01, 0x01,
                                             0xdd, 0xff, 0xff, 0xff, 0xff};
    body_t *body = s_body_new();
    msgpack_sbuffer_write(&body->buffer, (const char *)huge_array, sizeof huge_array);
    s_expect_body_refused(DPOOL_CMD_STATUS, body, false, "array32 of 2^32-1 items");
    msgpack_sbuffer_clear(&body->buffer);
    msgpack_sbuffer_write(&body->buffer, (const char *)huge_map, sizeof huge_map);
    s_expect_body_refused(DPOOL_CMD_STATUS, body, false, "map32 of 2^32-1 pairs");
    msgpack_sbuffer_clear(&body->buffer);
    msgpack_sbuffer_write(&body->buffer, (const char *)huge_functions, sizeof huge_functions);
    s_expect_body_refused(DPOOL_CMD_WORKER_HELLO, body, false, "2^32-1 functions");
}

Test(proto, refuses_deeply_nested_bodies)
{
    enum { DEPTH = 10000 };
    body_t *status = s_body_new();
    body_t *submit = s_body_new();
    for (int i = 0; i < DEPTH; i++)
        msgpack_pack_array(&status->pk, 1);
    msgpack_pack_nil(&status->pk);
    s_expect_body_refused(DPOOL_CMD_STATUS, status, false, "10000 nested arrays");
    // The same depth inside an otherwise valid SUBMIT body.
    msgpack_pack_array(&submit->pk, 3);
    msgpack_pack_uint32(&submit->pk, 1);
    msgpack_pack_uint64(&submit->pk, 1);
    for (int i = 0; i < DEPTH; i++)
        msgpack_pack_map(&submit->pk, 1);
    msgpack_pack_nil(&submit->pk);
    s_expect_body_refused(DPOOL_CMD_SUBMIT, submit, true, "10000 nested maps as a name");
}

static uint64_t
s_random(uint64_t *state)
{
    // xorshift64: deterministic, so a failure replays identically.
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

// Decodes header(command) + body (+ payload): whatever the bytes, the answer is OK
// or PROTO with a reason, and an accepted message is freed by reset.
static int
s_decode_any(int command, const void *body, size_t size, bool with_payload)
{
    uint8_t header[4];
    s_header(header, command);
    static const uint8_t payload[] = {0x90};
    zmsg_t *zmsg = with_payload
                       ? s_frames(3, header, sizeof header, body, size, payload, sizeof payload)
                       : s_frames(2, header, sizeof header, body, size);
    dpool_msg_t msg;
    memset(&msg, 0, sizeof msg);
    const char *why = NULL;
    int rc = dpool_proto_decode(&zmsg, false, NULL, &msg, &why);
    cr_assert(rc == DPOOL_OK || rc == DPOOL_ERR_PROTO, "unexpected code %d", rc);
    if (rc == DPOOL_ERR_PROTO)
        cr_assert_not_null(why);
    dpool_msg_reset(&msg);
    return rc;
}

static const int known_commands[] = {
    DPOOL_CMD_POOL_OPEN,    DPOOL_CMD_POOL_OPENED,   DPOOL_CMD_SUBMIT,        DPOOL_CMD_RESULT,
    DPOOL_CMD_OUTPUT,       DPOOL_CMD_TERMINATE,     DPOOL_CMD_POOL_RELEASE,  DPOOL_CMD_STATUS,
    DPOOL_CMD_STATUS_REPLY, DPOOL_CMD_ERROR,         DPOOL_CMD_WORKER_HELLO,  DPOOL_CMD_CREDIT,
    DPOOL_CMD_TASK,         DPOOL_CMD_WORKER_RESULT, DPOOL_CMD_WORKER_OUTPUT, DPOOL_CMD_KILL,
    DPOOL_CMD_HEARTBEAT,    DPOOL_CMD_BYE,
};
#define KNOWN_COUNT (sizeof known_commands / sizeof known_commands[0])

Test(proto, random_bodies_never_crash_the_decoder)
{
    uint64_t seed = 0x2545F4914F6CDD1Du;
    uint8_t body[64];
    size_t refused = 0;
    for (int i = 0; i < 4000; i++) {
        int command = known_commands[s_random(&seed) % KNOWN_COUNT];
        size_t size = s_random(&seed) % sizeof body;
        for (size_t j = 0; j < size; j++)
            body[j] = (uint8_t)s_random(&seed);
        // Half of them start like an array, to get past the first check more often.
        if (size > 0 && (s_random(&seed) & 1))
            body[0] = (uint8_t)(0x90 | (s_random(&seed) % 5));
        dpool_payload_rule_t rule;
        cr_assert(dpool_codec_known(command, &rule));
        if (s_decode_any(command, body, size, rule != DPOOL_PAYLOAD_NONE) == DPOOL_ERR_PROTO)
            refused++;
    }
    cr_assert_gt(refused, 0, "random bytes must be refused at least sometimes");
}

Test(proto, mutated_valid_bodies_never_crash_the_decoder)
{
    sample_t samples[MAX_SAMPLES];
    size_t count = s_samples(samples);
    uint64_t seed = 0xD1B54A32D192ED03u;
    size_t accepted = 0;
    body_t *body = s_body_new();
    for (int i = 0; i < 4000; i++) {
        const sample_t *sample = &samples[s_random(&seed) % count];
        msgpack_sbuffer_clear(&body->buffer);
        cr_assert_eq(dpool_codec_encode(&sample->msg, &body->buffer), DPOOL_OK);
        size_t size = body->buffer.size;
        int flips = 1 + (int)(s_random(&seed) % 3);
        for (int f = 0; f < flips; f++)
            body->buffer.data[s_random(&seed) % size] = (char)s_random(&seed);
        if (s_random(&seed) % 4 == 0)
            size = s_random(&seed) % size;
        if (s_decode_any(sample->msg.command, body->buffer.data, size, sample->payload != NULL) ==
            DPOOL_OK)
            accepted++;
    }
    cr_assert_gt(accepted, 0, "some mutations (e.g. of a number) keep the body valid");
}

// --- building ------------------------------------------------------------------

Test(proto, build_refuses_a_message_missing_its_payload_or_name)
{
    static const uint8_t payload[] = {0x90};
    dpool_msg_t submit = {.command = DPOOL_CMD_SUBMIT, .pool_ref = 1, .task_id = 1, .name = "f"};
    cr_assert_null(dpool_proto_build(&submit, NULL), "SUBMIT without payload");

    const int named[] = {DPOOL_CMD_SUBMIT, DPOOL_CMD_TASK, DPOOL_CMD_WORKER_HELLO};
    for (size_t i = 0; i < sizeof named / sizeof named[0]; i++) {
        dpool_msg_t msg = {.command = named[i], .task_id = 1};
        if (named[i] != DPOOL_CMD_WORKER_HELLO)
            msg.payload = s_payload(payload, sizeof payload);
        cr_assert_null(dpool_proto_build(&msg, NULL), "%s with a NULL name",
                       dpool_proto_command_name(named[i]));
        dpool_msg_reset(&msg);
    }
}

Test(proto, build_refuses_a_payload_the_command_does_not_take)
{
    static const uint8_t payload[] = {0x90};
    dpool_msg_t msg = {.command = DPOOL_CMD_TERMINATE,
                       .pool_ref = 1,
                       .payload = s_payload(payload, sizeof payload)};
    cr_assert_null(dpool_proto_build(&msg, NULL));
    dpool_msg_reset(&msg);
}

Test(proto, build_refuses_an_unknown_command)
{
    dpool_msg_t msg = {.command = (dpool_cmd_t)0x7F};
    cr_assert_null(dpool_proto_build(&msg, NULL));
    msg.command = (dpool_cmd_t)0;
    cr_assert_null(dpool_proto_build(&msg, NULL));
}

// "Returns NULL when msg breaks the command's schema": a name the decoder would refuse
// must not be sent, or the peer answers ERROR [-3] for our own mistake.
Test(proto, build_refuses_names_the_decoder_would_refuse)
{
    static const uint8_t payload[] = {0x90};
    char long_one[DPOOL_PROTO_NAME_MAX + 2];
    memset(long_one, 'n', DPOOL_PROTO_NAME_MAX + 1);
    long_one[DPOOL_PROTO_NAME_MAX + 1] = '\0';
    const char *names[] = {"", long_one};
    for (size_t i = 0; i < 2; i++) {
        dpool_msg_t msg = {.command = DPOOL_CMD_SUBMIT,
                           .pool_ref = 1,
                           .task_id = 1,
                           .name = (char *)names[i],
                           .payload = s_payload(payload, sizeof payload)};
        zmsg_t *zmsg = dpool_proto_build(&msg, NULL);
        bool built = zmsg != NULL;
        zmsg_destroy(&zmsg);
        zframe_destroy(&msg.payload); // the name is not ours to free: no reset
        cr_assert_not(built, "SUBMIT with a %zu-byte name was built", strlen(names[i]));
    }
}

Test(proto, build_refuses_a_null_function_name)
{
    char *functions[] = {"square", NULL};
    dpool_msg_t msg = {.command = DPOOL_CMD_WORKER_HELLO,
                       .name = "host-a",
                       .pid = 1,
                       .count = 1,
                       .functions = functions,
                       .function_count = 2};
    cr_assert_null(dpool_proto_build(&msg, NULL));
}

// --- names and texts -------------------------------------------------------------

Test(proto, strerror_gives_distinct_text_for_each_code)
{
    static const int codes[] = {
        DPOOL_OK,
        DPOOL_ERR_NOMEM,
        DPOOL_ERR_INVALID,
        DPOOL_ERR_PROTO,
        DPOOL_ERR_TIMEOUT,
        DPOOL_ERR_IO,
        DPOOL_ERR_TASK_FAILED,
        DPOOL_ERR_NO_FUNCTION,
        DPOOL_ERR_WORKER_LOST,
        DPOOL_ERR_TERMINATED,
        DPOOL_ERR_TASK_TIMEOUT,
        DPOOL_ERR_TOO_BIG,
        DPOOL_ERR_UNREACHABLE,
        DPOOL_ERR_NOT_AUTHORISED,
        DPOOL_ERR_CLOSED,
        DPOOL_ERR_STATE,
        DPOOL_ERR_NOT_READY,
        DPOOL_ERR_QUEUE_FULL,
    };
    const size_t count = sizeof codes / sizeof codes[0];
    for (size_t i = 0; i < count; i++) {
        const char *text = dpool_strerror(codes[i]);
        cr_assert_not_null(text, "code %d", codes[i]);
        cr_assert_gt(strlen(text), 0, "code %d", codes[i]);
        cr_assert_str_neq(text, "unknown error", "code %d has no text of its own", codes[i]);
        for (size_t j = 0; j < i; j++)
            cr_assert_str_neq(text, dpool_strerror(codes[j]), "codes %d and %d share a text",
                              codes[i], codes[j]);
    }
    static const int unknown[] = {1, -6, -9, -22, 100, INT_MIN, INT_MAX};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++)
        cr_assert_str_eq(dpool_strerror(unknown[i]), "unknown error", "code %d", unknown[i]);
}

Test(proto, command_name_knows_every_command_and_only_those)
{
    static const struct {
        int command;
        const char *name;
    } names[] = {
        {0x01, "POOL_OPEN"},    {0x02, "POOL_OPENED"},   {0x03, "SUBMIT"},        {0x04, "RESULT"},
        {0x05, "OUTPUT"},       {0x06, "TERMINATE"},     {0x07, "POOL_RELEASE"},  {0x08, "STATUS"},
        {0x09, "STATUS_REPLY"}, {0x0A, "ERROR"},         {0x10, "WORKER_HELLO"},  {0x11, "CREDIT"},
        {0x12, "TASK"},         {0x13, "WORKER_RESULT"}, {0x14, "WORKER_OUTPUT"}, {0x15, "KILL"},
        {0x20, "HEARTBEAT"},    {0x21, "BYE"},
    };
    const size_t count = sizeof names / sizeof names[0];
    for (size_t i = 0; i < count; i++) {
        const char *name = dpool_proto_command_name(names[i].command);
        cr_assert_not_null(name, "command 0x%02X", names[i].command);
        cr_assert_str_eq(name, names[i].name);
        cr_assert(dpool_codec_known(names[i].command, NULL), "%s has no schema", name);
    }
    size_t named = 0;
    for (int command = 0; command < 256; command++)
        if (dpool_proto_command_name(command))
            named++;
    cr_assert_eq(named, count, "a byte that is no command has a name");
    cr_assert_null(dpool_proto_command_name(0x7F));
    cr_assert_null(dpool_proto_command_name(-1));
    cr_assert_null(dpool_proto_command_name(0x101));
}
