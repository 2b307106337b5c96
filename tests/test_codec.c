/*  Tests for dpool_codec, the message bodies: fields of every type are decoded as
    docs/PROTOCOL.md says, and every kind of malformed body (not msgpack, truncated,
    wrong types and ranges, bad names and function lists, hostile sizes and depths,
    random and mutated bytes) is refused with DPOOL_ERR_PROTO and a reason, leaving
    nothing allocated (the ASan build checks that no refusal leaks). Bodies are made by
    hand with msgpack-c's packer and sent through dpool_proto_decode as a peer's would
    be. Frames and whole messages: test_proto.c; what both share: proto_fixture.h. */
#include "dpool_codec.h"
#include "dpool_proto.h"
#include "proto_fixture.h"

#include <criterion/criterion.h>
#include <dpool/errors.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

// --- helpers -------------------------------------------------------------------

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
        msgpack_sbuffer_destroy(&body_pool[i].buffer);
    bodies_used = 0;
}

TestSuite(codec, .fini = s_bodies_free, .timeout = 10);

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

// --- accepted bodies -----------------------------------------------------------

Test(codec, decode_accepts_output_bytes_sent_as_a_string)
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

Test(codec, decode_accepts_exactly_1024_functions)
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

// --- malformed bodies ------------------------------------------------------------

Test(codec, refuses_a_body_that_is_not_msgpack)
{
    static const uint8_t never_used[] = {0xc1};
    body_t *empty = s_body_new();
    s_expect_body_refused(DPOOL_CMD_STATUS, empty, false, "empty body");
    body_t *body = s_body_new();
    msgpack_sbuffer_write(&body->buffer, (const char *)never_used, sizeof never_used);
    s_expect_body_refused(DPOOL_CMD_STATUS, body, false, "0xc1 body");
}

Test(codec, refuses_every_truncation_of_a_valid_body)
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

Test(codec, refuses_bytes_after_the_body_value)
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

Test(codec, refuses_a_body_that_is_not_an_array)
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

Test(codec, refuses_too_few_fields_and_skips_fields_it_does_not_know)
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

Test(codec, refuses_integers_of_the_wrong_type_or_range)
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

Test(codec, refuses_codes_outside_int32)
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

Test(codec, refuses_messages_and_output_of_the_wrong_type)
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

Test(codec, refuses_names_that_are_empty_too_long_or_hold_a_nul)
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

Test(codec, refuses_bad_function_lists)
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
Test(codec, refuses_a_body_declaring_more_items_than_it_holds)
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

Test(codec, refuses_deeply_nested_bodies)
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

Test(codec, random_bodies_never_crash_the_decoder)
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

Test(codec, mutated_valid_bodies_never_crash_the_decoder)
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
