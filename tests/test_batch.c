/*  Tests for dpool_batch: several protocol messages in one ZeroMQ message, taken
    apart again on the other side, payloads kept where they belong; a lone message
    travels in its plain form; a malformed BATCH is refused whole. */
#include "dpool_batch.h"

#include <criterion/criterion.h>
#include <dpool/errors.h>
#include <string.h>

static zframe_t *
s_payload(uint8_t value)
{
    return zframe_new(&value, 1); // one msgpack positive fixint
}

// Decodes every message of out into msgs (at most max); returns how many.
static size_t
s_decode_all(zlist_t *out, bool with_routing_id, dpool_msg_t *msgs, size_t max)
{
    size_t count = 0;
    zmsg_t *zmsg;
    while ((zmsg = zlist_pop(out))) {
        cr_assert_lt(count, max);
        zframe_t *routing_id = NULL;
        const char *why = NULL;
        cr_assert_eq(dpool_proto_decode(&zmsg, with_routing_id, &routing_id, &msgs[count], &why),
                     DPOOL_OK, "message %zu: %s", count, why ? why : "");
        if (with_routing_id) {
            cr_assert(zframe_streq(routing_id, "peer-7"), "each message keeps the routing id");
            zframe_destroy(&routing_id);
        }
        count++;
    }
    return count;
}

Test(batch, messages_with_and_without_payloads_come_apart_in_order)
{
    for (int with_routing_id = 0; with_routing_id < 2; with_routing_id++) {
        dpool_batch_t *batch = dpool_batch_new();
        cr_assert_not_null(batch);
        dpool_msg_t result = {
            .command = DPOOL_CMD_WORKER_RESULT, .task_id = 11, .payload = s_payload(5)};
        dpool_msg_t output = {.command = DPOOL_CMD_WORKER_OUTPUT,
                              .task_id = 12,
                              .count = 1,
                              .text = "hi",
                              .text_size = 2};
        dpool_msg_t failed = {.command = DPOOL_CMD_WORKER_RESULT,
                              .task_id = 13,
                              .code = -12,
                              .text = "lost",
                              .text_size = 4};
        cr_assert_eq(dpool_batch_add(batch, &result), DPOOL_OK);
        cr_assert_null(result.payload, "the payload moved into the batch");
        cr_assert_eq(dpool_batch_add(batch, &output), DPOOL_OK);
        cr_assert_eq(dpool_batch_add(batch, &failed), DPOOL_OK);
        cr_assert_eq(dpool_batch_count(batch), 3);

        zframe_t *routing_id = with_routing_id ? zframe_from("peer-7") : NULL;
        zmsg_t *zmsg = dpool_batch_take(batch, routing_id);
        cr_assert_not_null(zmsg);
        cr_assert_eq(dpool_batch_count(batch), 0, "taking empties the batch");
        cr_assert_eq(zmsg_size(zmsg), (size_t)(with_routing_id + 2), "header and one frame");

        zlist_t *out = zlist_new();
        const char *why = NULL;
        cr_assert_eq(dpool_batch_split(&zmsg, with_routing_id, out, &why), 1);
        cr_assert_null(zmsg, "a split BATCH is consumed");
        dpool_msg_t msgs[3] = {0};
        cr_assert_eq(s_decode_all(out, with_routing_id, msgs, 3), 3);
        cr_assert_eq(msgs[0].task_id, 11);
        cr_assert_not_null(msgs[0].payload);
        cr_assert_eq(zframe_data(msgs[0].payload)[0], 5);
        cr_assert_eq(msgs[1].command, DPOOL_CMD_WORKER_OUTPUT);
        cr_assert_str_eq(msgs[1].text, "hi");
        cr_assert_eq(msgs[2].code, -12);
        cr_assert_null(msgs[2].payload, "an empty payload frame means none");
        for (int i = 0; i < 3; i++)
            dpool_msg_reset(&msgs[i]);
        zlist_destroy(&out);
        zframe_destroy(&routing_id);
        dpool_batch_destroy(&batch);
        cr_assert_null(batch);
    }
}

Test(batch, a_lone_message_goes_in_its_plain_form)
{
    dpool_batch_t *batch = dpool_batch_new();
    dpool_msg_t credit = {.command = DPOOL_CMD_CREDIT, .count = 2};
    cr_assert_eq(dpool_batch_add(batch, &credit), DPOOL_OK);
    zmsg_t *zmsg = dpool_batch_take(batch, NULL);
    cr_assert_eq(zmsg_size(zmsg), 2, "header and body, no empty payload frame");
    zlist_t *out = zlist_new();
    const char *why = NULL;
    cr_assert_eq(dpool_batch_split(&zmsg, false, out, &why), 0, "no BATCH");
    cr_assert_not_null(zmsg, "left to the caller");
    dpool_msg_t msg = {0};
    cr_assert_eq(dpool_proto_decode(&zmsg, false, NULL, &msg, &why), DPOOL_OK);
    cr_assert_eq(msg.count, 2);
    cr_assert_null(dpool_batch_take(batch, NULL), "nothing waits");
    zlist_destroy(&out);
    dpool_batch_destroy(&batch);
}

Test(batch, a_batch_is_full_at_its_message_limit)
{
    dpool_batch_t *batch = dpool_batch_new();
    for (int i = 0; i < DPOOL_BATCH_MAX_MESSAGES; i++) {
        cr_assert_not(dpool_batch_full(batch), "full after %d", i);
        dpool_msg_t beat = {.command = DPOOL_CMD_HEARTBEAT};
        cr_assert_eq(dpool_batch_add(batch, &beat), DPOOL_OK);
    }
    cr_assert(dpool_batch_full(batch));
    dpool_batch_destroy(&batch);
}

// A BATCH header then the given frames (size bytes each, from sizes).
static zmsg_t *
s_raw_batch(const char *const *frames, const size_t *sizes, size_t count)
{
    zmsg_t *zmsg = zmsg_new();
    const uint8_t header[4] = {'D', 'P', DPOOL_PROTO_VERSION, DPOOL_CMD_BATCH};
    zmsg_addmem(zmsg, header, sizeof header);
    for (size_t i = 0; i < count; i++)
        zmsg_addmem(zmsg, frames[i], sizes[i]);
    return zmsg;
}

Test(batch, a_malformed_batch_is_refused_whole)
{
    zlist_t *out = zlist_new();
    const char *why = NULL;
    const char *two[] = {"a", "b"};
    const size_t two_sizes[] = {1, 1};
    zmsg_t *zmsg = s_raw_batch(two, two_sizes, 2);
    cr_assert_eq(dpool_batch_split(&zmsg, false, out, &why), -1, "two frames of messages");
    cr_assert_null(zmsg);
    cr_assert_not_null(why);
    cr_assert_eq(zlist_size(out), 0);

    zmsg = s_raw_batch(NULL, NULL, 0);
    cr_assert_eq(dpool_batch_split(&zmsg, false, out, &why), -1, "an empty BATCH");

    // A whole HEARTBEAT (header, body [], no payload), then a BATCH header inside.
    const char nested[] = {
        'D', 'P', DPOOL_PROTO_VERSION, DPOOL_CMD_HEARTBEAT, 0, 0, 0, 1, (char)0x90, 0, 0, 0, 0,
        'D', 'P', DPOOL_PROTO_VERSION, DPOOL_CMD_BATCH,     0, 0, 0, 0, 0,          0, 0, 0};
    const char *run[] = {nested};
    size_t run_size[] = {sizeof nested};
    zmsg = s_raw_batch(run, run_size, 1);
    cr_assert_eq(dpool_batch_split(&zmsg, false, out, &why), -1, "a BATCH in a BATCH");
    cr_assert_eq(zlist_size(out), 0, "nothing of it is kept");

    // The HEARTBEAT alone is fine; cut anywhere inside, it is not.
    run_size[0] = 13;
    zmsg = s_raw_batch(run, run_size, 1);
    cr_assert_eq(dpool_batch_split(&zmsg, false, out, &why), 1, "one whole message");
    cr_assert_eq(zlist_size(out), 1);
    zmsg_t *one = zlist_pop(out);
    zmsg_destroy(&one);
    for (size_t cut = 1; cut < 13; cut++) {
        run_size[0] = cut;
        zmsg = s_raw_batch(run, run_size, 1);
        cr_assert_eq(dpool_batch_split(&zmsg, false, out, &why), -1, "cut at %zu", cut);
        cr_assert_eq(zlist_size(out), 0);
    }
    zlist_destroy(&out);
}

Test(batch, a_message_with_a_large_payload_goes_alone_in_its_turn)
{
    dpool_batch_t *batch = dpool_batch_new();
    static uint8_t big[20000];
    big[0] = 0xc5; // msgpack bin 16: length 19997
    big[1] = (uint8_t)(19997 >> 8);
    big[2] = (uint8_t)(19997 & 0xff);
    dpool_msg_t first = {.command = DPOOL_CMD_CREDIT, .count = 1};
    dpool_msg_t large = {
        .command = DPOOL_CMD_WORKER_RESULT, .task_id = 2, .payload = zframe_new(big, sizeof big)};
    dpool_msg_t last = {.command = DPOOL_CMD_CREDIT, .count = 3};
    cr_assert_eq(dpool_batch_add(batch, &first), DPOOL_OK);
    cr_assert_eq(dpool_batch_add(batch, &large), DPOOL_OK);
    cr_assert_null(large.payload, "the payload moved into the batch");
    cr_assert_eq(dpool_batch_add(batch, &last), DPOOL_OK);
    cr_assert_eq(dpool_batch_count(batch), 3);
    // Three ZeroMQ messages in order, each in its plain form; the large payload is the
    // frame it came in.
    const char *why = NULL;
    dpool_msg_t msg = {0};
    zmsg_t *zmsg = dpool_batch_take(batch, NULL);
    cr_assert_eq(zmsg_size(zmsg), 2);
    cr_assert_eq(dpool_proto_decode(&zmsg, false, NULL, &msg, &why), DPOOL_OK);
    cr_assert_eq(msg.count, 1);
    dpool_msg_reset(&msg);
    zmsg = dpool_batch_take(batch, NULL);
    cr_assert_eq(zmsg_size(zmsg), 3);
    cr_assert_eq(zframe_size(zmsg_last(zmsg)), sizeof big);
    cr_assert_eq(dpool_proto_decode(&zmsg, false, NULL, &msg, &why), DPOOL_OK);
    cr_assert_eq(msg.task_id, 2);
    dpool_msg_reset(&msg);
    zmsg = dpool_batch_take(batch, NULL);
    cr_assert_eq(dpool_proto_decode(&zmsg, false, NULL, &msg, &why), DPOOL_OK);
    cr_assert_eq(msg.count, 3);
    dpool_msg_reset(&msg);
    cr_assert_null(dpool_batch_take(batch, NULL), "nothing waits");
    cr_assert_eq(dpool_batch_count(batch), 0);
    dpool_batch_destroy(&batch);
}

Test(batch, no_frame_of_messages_grows_past_the_limit_and_none_is_lost)
{
    // 100 outputs of 3 KiB, then one of 20 KiB (alone): about 320 KiB in all.
    dpool_batch_t *batch = dpool_batch_new();
    static char text[20 * 1024];
    memset(text, 'x', sizeof text);
    for (uint64_t id = 1; id <= 101; id++) {
        dpool_msg_t output = {.command = DPOOL_CMD_WORKER_OUTPUT,
                              .task_id = id,
                              .count = 1,
                              .text = text,
                              .text_size = id == 101 ? sizeof text : 3 * 1024};
        cr_assert_eq(dpool_batch_add(batch, &output), DPOOL_OK);
    }
    zlist_t *out = zlist_new();
    uint64_t next = 1;
    zmsg_t *zmsg;
    size_t messages = 0;
    while ((zmsg = dpool_batch_take(batch, NULL))) {
        messages++;
        cr_assert_leq(zmsg_content_size(zmsg), DPOOL_BATCH_FRAME_MAX + 4);
        const char *why = NULL;
        if (dpool_batch_split(&zmsg, false, out, &why) == 0)
            zlist_append(out, zmsg);
        zmsg_t *one;
        while ((one = zlist_pop(out))) {
            dpool_msg_t msg = {0};
            cr_assert_eq(dpool_proto_decode(&one, false, NULL, &msg, &why), DPOOL_OK);
            cr_assert_eq(msg.task_id, next, "in order");
            cr_assert_eq(msg.text_size, next == 101 ? sizeof text : 3 * 1024);
            next++;
            dpool_msg_reset(&msg);
        }
    }
    cr_assert_eq(next, 102, "all 101 came out");
    cr_assert_geq(messages, 3, "at least two BATCHes and the large one alone");
    zlist_destroy(&out);
    dpool_batch_destroy(&batch);
}

Test(batch, an_inbox_hands_out_a_batch_one_message_at_a_time_and_skips_a_bad_one)
{
    // CREDIT [1], a SUBMIT whose body is no msgpack array, CREDIT [3].
    dpool_batch_t *batch = dpool_batch_new();
    dpool_msg_t first = {.command = DPOOL_CMD_CREDIT, .count = 1};
    cr_assert_eq(dpool_batch_add(batch, &first), DPOOL_OK);
    // header, body of 1 byte that msgpack never uses, payload of 1 byte
    const uint8_t bad[] = {
        'D', 'P', DPOOL_PROTO_VERSION, DPOOL_CMD_SUBMIT, 0, 0, 0, 1, 0xc1, 0, 0, 0, 1, 0x01};
    cr_assert_eq(dpool_batch_add_encoded(batch, bad, sizeof bad), DPOOL_OK);
    dpool_msg_t last = {.command = DPOOL_CMD_CREDIT, .count = 3};
    cr_assert_eq(dpool_batch_add(batch, &last), DPOOL_OK);
    zmsg_t *zmsg = dpool_batch_take(batch, NULL);
    cr_assert_not_null(zmsg);
    dpool_batch_inbox_t inbox = {0};
    dpool_msg_t msg = {0};
    const char *why = NULL;
    cr_assert_eq(dpool_batch_inbox_put(&inbox, &zmsg, &msg, &why), DPOOL_OK);
    cr_assert_null(zmsg);
    cr_assert_eq(msg.command, DPOOL_CMD_CREDIT);
    cr_assert_eq(msg.count, 1);
    dpool_msg_reset(&msg);
    cr_assert(dpool_batch_inbox_waiting(&inbox));
    cr_assert_eq(dpool_batch_inbox_next(&inbox, &msg, &why), DPOOL_ERR_PROTO);
    cr_assert_null(msg.payload, "a failed decode owns nothing");
    cr_assert(dpool_batch_inbox_waiting(&inbox), "the next message still waits");
    cr_assert_eq(dpool_batch_inbox_next(&inbox, &msg, &why), DPOOL_OK);
    cr_assert_eq(msg.count, 3);
    dpool_msg_reset(&msg);
    cr_assert_not(dpool_batch_inbox_waiting(&inbox));
    // A plain message passes straight through; a malformed BATCH is dropped whole.
    dpool_msg_t alone = {.command = DPOOL_CMD_CREDIT, .count = 5};
    cr_assert_eq(dpool_batch_add(batch, &alone), DPOOL_OK);
    zmsg = dpool_batch_take(batch, NULL);
    cr_assert_eq(dpool_batch_inbox_put(&inbox, &zmsg, &msg, &why), DPOOL_OK);
    cr_assert_eq(msg.count, 5);
    dpool_msg_reset(&msg);
    zmsg = zmsg_new();
    const uint8_t header[4] = {'D', 'P', DPOOL_PROTO_VERSION, DPOOL_CMD_BATCH};
    zmsg_addmem(zmsg, header, sizeof header);
    zmsg_addmem(zmsg, "\x00\x01", 2);
    cr_assert_eq(dpool_batch_inbox_put(&inbox, &zmsg, &msg, &why), DPOOL_ERR_PROTO);
    cr_assert_null(zmsg);
    cr_assert_not(dpool_batch_inbox_waiting(&inbox));
    dpool_batch_inbox_clear(&inbox);
    dpool_batch_destroy(&batch);
}

Test(batch, an_inbox_that_lends_payloads_keeps_its_batch_until_the_next_read)
{
    // WORKER_RESULTs [1] + 0x05, [2] with no payload, [3] + 40 bytes (a bin of 38).
    dpool_batch_t *batch = dpool_batch_new();
    uint8_t large[40] = {0xc4, 38};
    memset(large + 2, 'x', sizeof large - 2);
    dpool_msg_t one = {.command = DPOOL_CMD_WORKER_RESULT, .task_id = 1, .payload = s_payload(5)};
    dpool_msg_t two = {.command = DPOOL_CMD_WORKER_RESULT, .task_id = 2};
    dpool_msg_t three = {.command = DPOOL_CMD_WORKER_RESULT,
                         .task_id = 3,
                         .payload = zframe_new(large, sizeof large)};
    cr_assert_eq(dpool_batch_add(batch, &one), DPOOL_OK);
    cr_assert_eq(dpool_batch_add(batch, &two), DPOOL_OK);
    cr_assert_eq(dpool_batch_add(batch, &three), DPOOL_OK);
    zmsg_t *zmsg = dpool_batch_take(batch, NULL);
    dpool_batch_inbox_t inbox = {.lend = true};
    dpool_msg_t msg = {0};
    const char *why = NULL;
    cr_assert_eq(dpool_batch_inbox_put(&inbox, &zmsg, &msg, &why), DPOOL_OK);
    cr_assert_eq(msg.task_id, 1);
    cr_assert_null(msg.payload, "lent, not copied into a frame");
    cr_assert_eq(msg.payload_lent_size, 1);
    cr_assert_eq(msg.payload_lent[0], 5);
    dpool_msg_reset(&msg);
    cr_assert_eq(dpool_batch_inbox_next(&inbox, &msg, &why), DPOOL_OK);
    cr_assert_eq(msg.task_id, 2);
    cr_assert_null(msg.payload_lent, "no payload, nothing lent");
    dpool_msg_reset(&msg);
    cr_assert_eq(dpool_batch_inbox_next(&inbox, &msg, &why), DPOOL_OK);
    cr_assert_eq(msg.task_id, 3);
    cr_assert_not(dpool_batch_inbox_waiting(&inbox));
    // The last message read: its payload still lies in the kept BATCH (ASan would
    // report a read of freed memory here if the BATCH had gone).
    cr_assert_eq(msg.payload_lent_size, sizeof large);
    cr_assert_eq(memcmp(msg.payload_lent, large, sizeof large), 0);
    dpool_msg_reset(&msg);
    // The next read frees it; a plain message's payload comes as its own frame.
    dpool_msg_t alone = {.command = DPOOL_CMD_WORKER_RESULT, .task_id = 4, .payload = s_payload(7)};
    cr_assert_eq(dpool_batch_add(batch, &alone), DPOOL_OK);
    zmsg = dpool_batch_take(batch, NULL);
    cr_assert_eq(dpool_batch_inbox_put(&inbox, &zmsg, &msg, &why), DPOOL_OK);
    cr_assert_eq(msg.task_id, 4);
    cr_assert_null(msg.payload_lent);
    cr_assert_not_null(msg.payload);
    cr_assert_eq(zframe_data(msg.payload)[0], 7);
    dpool_msg_reset(&msg);
    dpool_batch_inbox_clear(&inbox);
    dpool_batch_destroy(&batch);
}

// What dpool_batch_send put on a socket, read at a ROUTER: each ZeroMQ message split
// and decoded into msgs (at most max); returns how many messages, and how many ZeroMQ
// messages carried them in *zmq_messages.
static size_t
s_receive_sent(zsock_t *router, dpool_msg_t *msgs, size_t max, size_t *zmq_messages)
{
    size_t count = 0;
    *zmq_messages = 0;
    zmsg_t *zmsg;
    zsock_set_rcvtimeo(router, 200);
    while ((zmsg = zmsg_recv(router))) {
        (*zmq_messages)++;
        zlist_t *out = zlist_new();
        const char *why = NULL;
        int split = dpool_batch_split(&zmsg, true, out, &why);
        cr_assert_geq(split, 0, "%s", why ? why : "");
        if (split == 0)
            zlist_append(out, zmsg); // a plain message
        count += s_decode_all(out, true, msgs + count, max - count);
        zlist_destroy(&out);
    }
    return count;
}

// A ROUTER bound at endpoint and a DEALER connected to it as "peer-7".
static void
s_socket_pair(const char *endpoint, zsock_t **router, zsock_t **dealer)
{
    *router = zsock_new_router(endpoint);
    *dealer = zsock_new(ZMQ_DEALER);
    cr_assert(*router && *dealer);
    zsock_set_identity(*dealer, "peer-7");
    cr_assert_eq(zsock_connect(*dealer, endpoint), 0);
}

// dpool_batch_send writes a batch's frames itself: a lone message in its plain form, a
// large payload alone in its turn, the rest as one BATCH, in order, prefixed by the
// routing id, and nothing left behind.
Test(batch, send_puts_every_message_on_the_socket_in_order)
{
    zsock_t *router, *dealer;
    s_socket_pair("inproc://batch-send", &router, &dealer);
    dpool_batch_t *batch = dpool_batch_new();
    cr_assert_not_null(batch);
    static uint8_t big[20000];
    big[0] = 0xc5; // msgpack bin 16: length 19997
    big[1] = (uint8_t)(19997 >> 8);
    big[2] = (uint8_t)(19997 & 0xff);
    dpool_msg_t msgs[8] = {0};
    size_t zmq_messages = 0;

    dpool_msg_t lone = {.command = DPOOL_CMD_WORKER_RESULT, .task_id = 1, .payload = s_payload(9)};
    cr_assert_eq(dpool_batch_add(batch, &lone), DPOOL_OK);
    cr_assert_eq(dpool_batch_send(batch, dealer, NULL), DPOOL_OK);
    cr_assert_eq(dpool_batch_count(batch), 0);
    cr_assert_eq(s_receive_sent(router, msgs, 8, &zmq_messages), 1);
    cr_assert_eq(zmq_messages, 1);
    cr_assert_eq(msgs[0].task_id, 1);
    cr_assert_eq(zframe_data(msgs[0].payload)[0], 9);
    dpool_msg_reset(&msgs[0]);

    dpool_msg_t sent[4] = {
        {.command = DPOOL_CMD_CREDIT, .count = 1},
        {.command = DPOOL_CMD_WORKER_RESULT, .task_id = 2, .payload = zframe_new(big, sizeof big)},
        {.command = DPOOL_CMD_CREDIT, .count = 3},
        {.command = DPOOL_CMD_WORKER_RESULT, .task_id = 4, .payload = s_payload(4)},
    };
    for (size_t i = 0; i < 4; i++)
        cr_assert_eq(dpool_batch_add(batch, &sent[i]), DPOOL_OK);
    cr_assert_eq(dpool_batch_send(batch, dealer, NULL), DPOOL_OK);
    cr_assert_eq(dpool_batch_count(batch), 0);
    cr_assert_eq(s_receive_sent(router, msgs, 8, &zmq_messages), 4);
    cr_assert_eq(zmq_messages, 3, "the first, the large one alone, a BATCH of the last two");
    cr_assert_eq(msgs[0].count, 1);
    cr_assert_eq(msgs[1].task_id, 2);
    cr_assert_eq(zframe_size(msgs[1].payload), sizeof big);
    cr_assert_eq(msgs[2].count, 3);
    cr_assert_eq(msgs[3].task_id, 4);
    cr_assert_eq(zframe_data(msgs[3].payload)[0], 4);
    for (size_t i = 0; i < 4; i++)
        dpool_msg_reset(&msgs[i]);

    // An encoded message sent alone, as a client's stand-in sends a SUBMIT.
    msgpack_sbuffer encoded;
    msgpack_sbuffer_init(&encoded);
    dpool_msg_t submit = {.command = DPOOL_CMD_SUBMIT, .pool_ref = 1, .task_id = 5, .name = "f"};
    cr_assert_eq(dpool_batch_encode(&submit, big, sizeof big, &encoded), DPOOL_OK);
    cr_assert_eq(dpool_batch_send_plain(dealer, (const uint8_t *)encoded.data), DPOOL_OK);
    msgpack_sbuffer_destroy(&encoded);
    cr_assert_eq(s_receive_sent(router, msgs, 8, &zmq_messages), 1);
    cr_assert_eq(msgs[0].task_id, 5);
    cr_assert_str_eq(msgs[0].name, "f");
    cr_assert_eq(zframe_size(msgs[0].payload), sizeof big);
    cr_assert_arr_eq(zframe_data(msgs[0].payload), big, sizeof big);
    dpool_msg_reset(&msgs[0]);
    dpool_batch_destroy(&batch);
    zsock_destroy(&dealer);
    zsock_destroy(&router);
}

// From a ROUTER, each ZeroMQ message is prefixed by the peer's routing id: a lone
// message and a BATCH reach that peer whole.
Test(batch, send_from_a_router_reaches_the_peer_named_by_the_routing_id)
{
    zsock_t *router, *dealer;
    s_socket_pair("inproc://batch-send-back", &router, &dealer);
    // The router knows the peer once it has heard from it.
    cr_assert_eq(zstr_send(dealer, "hello"), 0);
    zmsg_t *hello = zmsg_recv(router);
    cr_assert_not_null(hello);
    zmsg_destroy(&hello);
    zframe_t *routing_id = zframe_from("peer-7");
    dpool_batch_t *batch = dpool_batch_new();
    cr_assert_not_null(batch);
    zsock_set_rcvtimeo(dealer, 2000);
    for (int count = 1; count <= 3; count += 2) {
        for (int i = 0; i < count; i++) {
            dpool_msg_t task = {.command = DPOOL_CMD_RESULT,
                                .task_id = (uint64_t)(10 * count + i),
                                .payload = s_payload((uint8_t)i)};
            cr_assert_eq(dpool_batch_add(batch, &task), DPOOL_OK);
        }
        cr_assert_eq(dpool_batch_send(batch, router, routing_id), DPOOL_OK);
        zmsg_t *zmsg = zmsg_recv(dealer);
        cr_assert_not_null(zmsg, "nothing reached the peer");
        zlist_t *out = zlist_new();
        const char *why = NULL;
        int split = dpool_batch_split(&zmsg, false, out, &why);
        cr_assert_eq(split, count > 1, "%d messages: %s", count, why ? why : "");
        if (split == 0)
            zlist_append(out, zmsg);
        dpool_msg_t msgs[3] = {0};
        size_t got = 0;
        for (zmsg_t *one; (one = zlist_pop(out)); got++)
            cr_assert_eq(dpool_proto_decode(&one, false, NULL, &msgs[got], &why), DPOOL_OK);
        cr_assert_eq(got, (size_t)count);
        for (int i = 0; i < count; i++) {
            cr_assert_eq(msgs[i].task_id, (uint64_t)(10 * count + i));
            cr_assert_eq(zframe_data(msgs[i].payload)[0], (uint8_t)i);
            dpool_msg_reset(&msgs[i]);
        }
        zlist_destroy(&out);
    }
    zframe_destroy(&routing_id);
    dpool_batch_destroy(&batch);
    zsock_destroy(&dealer);
    zsock_destroy(&router);
}

// A send that fails (no peer to take it, no time to wait) loses the batch's messages
// whole and leaves it empty; the next message still arrives whole once a peer is there.
Test(batch, a_failed_send_empties_the_batch_and_the_next_arrives_whole)
{
    zsock_t *dealer = zsock_new(ZMQ_DEALER);
    cr_assert_not_null(dealer);
    zsock_set_sndtimeo(dealer, 0);
    dpool_batch_t *batch = dpool_batch_new();
    cr_assert_not_null(batch);
    for (int count = 1; count <= 2; count++) {
        for (int i = 0; i < count; i++) {
            dpool_msg_t result = {
                .command = DPOOL_CMD_WORKER_RESULT, .task_id = 1, .payload = s_payload(1)};
            cr_assert_eq(dpool_batch_add(batch, &result), DPOOL_OK);
        }
        cr_assert_eq(dpool_batch_send(batch, dealer, NULL), DPOOL_ERR_IO);
        cr_assert_eq(dpool_batch_count(batch), 0);
        cr_assert_not(dpool_batch_full(batch));
    }
    zsock_t *router = zsock_new_router("inproc://batch-send-fail");
    cr_assert_not_null(router);
    cr_assert_eq(zsock_connect(dealer, "inproc://batch-send-fail"), 0);
    dpool_msg_t last = {.command = DPOOL_CMD_WORKER_RESULT, .task_id = 2, .payload = s_payload(2)};
    cr_assert_eq(dpool_batch_add(batch, &last), DPOOL_OK);
    cr_assert_eq(dpool_batch_send(batch, dealer, NULL), DPOOL_OK);
    zsock_set_rcvtimeo(router, 2000);
    zmsg_t *zmsg = zmsg_recv(router);
    cr_assert_not_null(zmsg);
    cr_assert_eq(zmsg_size(zmsg), 4, "routing id, header, body, payload: nothing glued on");
    dpool_msg_t msg = {0};
    const char *why = NULL;
    cr_assert_eq(dpool_proto_decode(&zmsg, true, NULL, &msg, &why), DPOOL_OK);
    cr_assert_eq(msg.task_id, 2);
    dpool_msg_reset(&msg);
    dpool_batch_destroy(&batch);
    zsock_destroy(&router);
    zsock_destroy(&dealer);
}

// A payload given as bytes joins the batch as a payload frame would: small ones in the
// run, a large one alone in its turn; the bytes stay the caller's.
Test(batch, add_copy_takes_a_payload_given_as_bytes)
{
    dpool_batch_t *batch = dpool_batch_new();
    cr_assert_not_null(batch);
    static uint8_t big[20000];
    big[0] = 0xc5; // msgpack bin 16: length 19997
    big[1] = (uint8_t)(19997 >> 8);
    big[2] = (uint8_t)(19997 & 0xff);
    const uint8_t small[] = {0x91, 0x07}; // [7]
    dpool_msg_t task = {.command = DPOOL_CMD_TASK, .task_id = 1, .name = "f"};
    cr_assert_eq(dpool_batch_add_copy(batch, &task, small, sizeof small), DPOOL_OK);
    task.task_id = 2;
    cr_assert_eq(dpool_batch_add_copy(batch, &task, big, sizeof big), DPOOL_OK);
    cr_assert_null(task.payload, "the frame made for the large one moved into the batch");
    task.task_id = 3;
    cr_assert_eq(dpool_batch_add_copy(batch, &task, small, sizeof small), DPOOL_OK);
    cr_assert_eq(dpool_batch_count(batch), 3);
    dpool_msg_t credit = {.command = DPOOL_CMD_CREDIT, .count = 1};
    cr_assert_eq(dpool_batch_add_copy(batch, &credit, small, sizeof small), DPOOL_ERR_INVALID,
                 "a payload on a command that takes none");
    task.payload = s_payload(1);
    cr_assert_eq(dpool_batch_add_copy(batch, &task, small, sizeof small), DPOOL_ERR_INVALID,
                 "a payload frame and bytes both");
    zframe_destroy(&task.payload);
    cr_assert_eq(dpool_batch_count(batch), 3);

    const size_t sizes[] = {sizeof small, sizeof big, sizeof small};
    const uint8_t *bytes[] = {small, big, small};
    for (uint64_t id = 1; id <= 3; id++) {
        zmsg_t *zmsg = dpool_batch_take(batch, NULL);
        cr_assert_not_null(zmsg, "message %llu", (unsigned long long)id);
        dpool_msg_t msg = {0};
        const char *why = NULL;
        cr_assert_eq(dpool_proto_decode(&zmsg, false, NULL, &msg, &why), DPOOL_OK, "%s",
                     why ? why : "");
        cr_assert_eq(msg.task_id, id);
        cr_assert_eq(zframe_size(msg.payload), sizes[id - 1]);
        cr_assert_arr_eq(zframe_data(msg.payload), bytes[id - 1], sizes[id - 1]);
        dpool_msg_reset(&msg);
    }
    cr_assert_null(dpool_batch_take(batch, NULL), "nothing waits");
    dpool_batch_destroy(&batch);
}
