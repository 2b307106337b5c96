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
        cr_assert_eq(zmsg_size(zmsg), (size_t)(1 + with_routing_id + 3 * 3));

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

// A BATCH header then the given frames.
static zmsg_t *
s_raw_batch(const char *const *frames, size_t count)
{
    zmsg_t *zmsg = zmsg_new();
    const uint8_t header[4] = {'D', 'P', DPOOL_PROTO_VERSION, DPOOL_CMD_BATCH};
    zmsg_addmem(zmsg, header, sizeof header);
    for (size_t i = 0; i < count; i++)
        zmsg_addmem(zmsg, frames[i], strlen(frames[i]));
    return zmsg;
}

Test(batch, a_malformed_batch_is_refused_whole)
{
    zlist_t *out = zlist_new();
    const char *why = NULL;
    const char *two[] = {"a", "b"};
    zmsg_t *zmsg = s_raw_batch(two, 2);
    cr_assert_eq(dpool_batch_split(&zmsg, false, out, &why), -1);
    cr_assert_null(zmsg);
    cr_assert_not_null(why);
    cr_assert_eq(zlist_size(out), 0);

    zmsg = s_raw_batch(NULL, 0);
    cr_assert_eq(dpool_batch_split(&zmsg, false, out, &why), -1, "an empty BATCH");

    const char nested[] = {'D', 'P', DPOOL_PROTO_VERSION, DPOOL_CMD_BATCH, 0};
    const char *inner[] = {"x", "y", "", nested, "b", ""};
    zmsg = s_raw_batch(inner, 6);
    cr_assert_eq(dpool_batch_split(&zmsg, false, out, &why), -1, "a BATCH in a BATCH");
    cr_assert_eq(zlist_size(out), 0, "nothing of it is kept");
    zlist_destroy(&out);
}
