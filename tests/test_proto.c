/*  Tests for dpool_proto: every command of docs/PROTOCOL.md survives dpool_proto_build +
    dpool_proto_decode field for field, and every malformed frame, header or payload is
    refused with DPOOL_ERR_PROTO and a reason, leaving nothing allocated (the ASan build
    checks that no refusal leaks). Bodies, field types and schemas (dpool_codec):
    test_codec.c; what both share: proto_fixture.h. */
#include "dpool_codec.h"
#include "dpool_proto.h"
#include "proto_fixture.h"

#include <criterion/criterion.h>
#include <dpool/errors.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#define ROUTING_ID "C0123456789abcdef"

TestSuite(proto, .timeout = 10);

// --- helpers -------------------------------------------------------------------

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

// The next message on sock, read by dpool_proto_recv once sock says one is there.
static zmsg_t *
s_recv_ready(zsock_t *sock)
{
    zmq_pollitem_t item = {.socket = zsock_resolve(sock), .events = ZMQ_POLLIN};
    cr_assert_eq(zmq_poll(&item, 1, 5000), 1, "nothing arrived within 5 s");
    zmsg_t *zmsg = dpool_proto_recv(sock);
    cr_assert_not_null(zmsg);
    return zmsg;
}

// dpool_proto_send and dpool_proto_recv handle the frames themselves: every command
// crosses a real DEALER -> ROUTER -> DEALER pair and decodes to what was sent, its
// payload moved.
Test(proto, every_command_sent_on_sockets_round_trips)
{
    zsock_t *router = zsock_new_router("inproc://proto-send");
    zsock_t *dealer = zsock_new(ZMQ_DEALER);
    cr_assert(router && dealer);
    zsock_set_identity(dealer, ROUTING_ID);
    cr_assert_eq(zsock_connect(dealer, "inproc://proto-send"), 0);
    sample_t samples[MAX_SAMPLES];
    size_t count = s_samples(samples);
    for (size_t i = 0; i < count; i++) {
        const char *name = dpool_proto_command_name(samples[i].msg.command);
        dpool_msg_t msg = samples[i].msg;
        if (samples[i].payload)
            msg.payload = s_payload(samples[i].payload, samples[i].payload_size);
        cr_assert_eq(dpool_proto_send(dealer, &msg, NULL), DPOOL_OK, "%s: send", name);
        cr_assert_null(msg.payload, "%s: the payload must move", name);
        zmsg_t *zmsg = s_recv_ready(router);
        dpool_msg_t got = {0};
        zframe_t *routing_id = NULL;
        const char *why = "";
        cr_assert_eq(dpool_proto_decode(&zmsg, true, &routing_id, &got, &why), DPOOL_OK,
                     "%s: decode at the router: %s", name, why);
        cr_assert(zframe_streq(routing_id, ROUTING_ID), "%s: routing id", name);
        s_assert_same(&samples[i], &got);

        // Back, addressed by the routing id.
        cr_assert_eq(dpool_proto_send(router, &got, routing_id), DPOOL_OK, "%s: reply", name);
        cr_assert_null(got.payload);
        zframe_destroy(&routing_id);
        dpool_msg_reset(&got);
        zmsg = s_recv_ready(dealer);
        cr_assert_eq(dpool_proto_decode(&zmsg, false, NULL, &got, &why), DPOOL_OK,
                     "%s: decode at the dealer: %s", name, why);
        s_assert_same(&samples[i], &got);
        dpool_msg_reset(&got);
    }
    zsock_destroy(&dealer);
    zsock_destroy(&router);
}

// dpool_proto_recv never waits, and keeps every frame of a message, a large one too,
// and each message apart from the next.
Test(proto, recv_takes_whole_messages_without_waiting)
{
    zsock_t *pull = zsock_new_pull("inproc://proto-recv");
    zsock_t *push = zsock_new_push("inproc://proto-recv");
    cr_assert(pull && push);
    cr_assert_null(dpool_proto_recv(pull));
    cr_assert_eq(zmq_errno(), EAGAIN);
    size_t big_size = 3 * 1024 * 1024;
    uint8_t *big = malloc(big_size);
    cr_assert_not_null(big);
    for (size_t i = 0; i < big_size; i++)
        big[i] = (uint8_t)(i * 7 + 1);
    zmsg_t *sent = s_frames(4, "id", (size_t)2, "", (size_t)0, big, big_size, "tail", (size_t)4);
    cr_assert_eq(zmsg_send(&sent, push), 0);
    sent = s_frames(1, "next", (size_t)4);
    cr_assert_eq(zmsg_send(&sent, push), 0);

    zmsg_t *got = s_recv_ready(pull);
    cr_assert_eq(zmsg_size(got), 4);
    cr_assert(zframe_streq(zmsg_first(got), "id"));
    cr_assert_eq(zframe_size(zmsg_next(got)), 0);
    zframe_t *frame = zmsg_next(got);
    cr_assert_eq(zframe_size(frame), big_size);
    cr_assert_arr_eq(zframe_data(frame), big, big_size);
    cr_assert(zframe_streq(zmsg_next(got), "tail"));
    zmsg_destroy(&got);
    got = s_recv_ready(pull);
    cr_assert_eq(zmsg_size(got), 1);
    cr_assert(zframe_streq(zmsg_first(got), "next"));
    zmsg_destroy(&got);
    cr_assert_null(dpool_proto_recv(pull));
    free(big);
    zsock_destroy(&push);
    zsock_destroy(&pull);
}

// A send that fails loses the message whole, payload too; the next arrives whole.
Test(proto, a_failed_send_drops_the_payload_and_the_next_arrives_whole)
{
    zsock_t *dealer = zsock_new(ZMQ_DEALER);
    cr_assert_not_null(dealer);
    zsock_set_sndtimeo(dealer, 0);
    static const uint8_t payload[] = {0x90};
    dpool_msg_t msg = {.command = DPOOL_CMD_SUBMIT,
                       .pool_ref = 1,
                       .task_id = 1,
                       .name = "f",
                       .payload = s_payload(payload, sizeof payload)};
    cr_assert_eq(dpool_proto_send(dealer, &msg, NULL), DPOOL_ERR_IO);
    cr_assert_null(msg.payload);
    zsock_t *router = zsock_new_router("inproc://proto-send-fail");
    cr_assert_not_null(router);
    cr_assert_eq(zsock_connect(dealer, "inproc://proto-send-fail"), 0);
    msg.task_id = 2;
    msg.payload = s_payload(payload, sizeof payload);
    cr_assert_eq(dpool_proto_send(dealer, &msg, NULL), DPOOL_OK);
    zmsg_t *zmsg = s_recv_ready(router);
    cr_assert_eq(zmsg_size(zmsg), 4, "routing id, header, body, payload: nothing glued on");
    dpool_msg_t got = {0};
    const char *why = NULL;
    cr_assert_eq(dpool_proto_decode(&zmsg, true, NULL, &got, &why), DPOOL_OK);
    cr_assert_eq(got.task_id, 2);
    dpool_msg_reset(&got);
    zsock_destroy(&router);
    zsock_destroy(&dealer);
}

// A message that breaks its schema is not sent, and its payload stays with the caller.
Test(proto, send_refuses_a_message_that_breaks_its_schema)
{
    zsock_t *dealer = zsock_new(ZMQ_DEALER);
    cr_assert_not_null(dealer);
    static const uint8_t payload[] = {0x90};
    dpool_msg_t msg = {.command = DPOOL_CMD_TERMINATE,
                       .pool_ref = 1,
                       .payload = s_payload(payload, sizeof payload)};
    cr_assert_eq(dpool_proto_send(dealer, &msg, NULL), DPOOL_ERR_INVALID);
    cr_assert_not_null(msg.payload);
    dpool_msg_reset(&msg);
    zsock_destroy(&dealer);
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

Test(proto, refuses_an_empty_payload_frame)
{
    // One msgpack value is never empty: an empty frame is no payload (and a BATCH uses
    // one to say "no payload"), so a SUBMIT or a RESULT cannot carry it.
    static const int commands[] = {DPOOL_CMD_SUBMIT, DPOOL_CMD_RESULT, DPOOL_CMD_WORKER_RESULT};
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        dpool_msg_t msg = {.command = commands[i], .name = "f", .payload = s_payload("", 0)};
        zmsg_t *zmsg = dpool_proto_build(&msg, NULL);
        cr_assert_not_null(zmsg);
        cr_assert_eq(zmsg_size(zmsg), 3);
        s_expect_refused(zmsg, false, dpool_proto_command_name(commands[i]));
    }
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
        DPOOL_ERR_UNCHAINED,
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
    static const int unknown[] = {1, -6, -9, -23, 100, INT_MIN, INT_MAX};
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
