/*  Fuzz target: dpool_batch_split and dpool_proto_decode, on a multipart message cut
    from the input: a BATCH is taken apart and each of its messages decoded, anything
    else decoded as it is.

    Input layout (defined here; make_corpus.c writes it):
      byte 0   bits 0-1 and bit 3 (as the high bit): the number of frames - 1 (1 to 8);
               bit 2: the first frame is a routing id (the broker's ROUTER side)
      then, for each frame but the last, a 2-byte big-endian length and that many bytes
      (fewer when the input runs out); the last frame takes the rest.
    A message that decodes is built again with dpool_proto_build and decoded once more:
    both decodings must agree, so whatever the decoder accepts the encoder can write. */
#include "dpool_fuzz.h"

#include "dpool_batch.h"

#include <dpool/errors.h>

#define S_FRAMES_MAX 8

static zmsg_t *
s_message(const uint8_t *data, size_t size, bool *with_routing_id)
{
    zmsg_t *zmsg = zmsg_new();
    size_t frames = ((data[0] & 0x3) | (data[0] & 0x8) >> 1) + 1;
    *with_routing_id = data[0] & 0x4;
    size_t at = 1;
    for (size_t i = 0; i < frames; i++) {
        size_t length = size - at;
        if (i + 1 < frames) {
            length = at + 2 <= size ? (size_t)data[at] << 8 | data[at + 1] : 0;
            at = at + 2 <= size ? at + 2 : size;
            length = length < size - at ? length : size - at;
        }
        zmsg_addmem(zmsg, data + at, length);
        at += length;
    }
    return zmsg;
}

static void
s_round_trip(dpool_msg_t *msg, zframe_t *routing_id, bool with_routing_id)
{
    zframe_t *payload = msg->payload ? zframe_dup(msg->payload) : NULL;
    zmsg_t *built = dpool_proto_build(msg, routing_id);
    DPOOL_FUZZ_CHECK(built, "a decoded %s does not build again",
                     dpool_proto_command_name(msg->command));
    msg->payload = payload; // the build moved the original away
    dpool_msg_t again = {0};
    zframe_t *routing_again = NULL;
    const char *why = NULL;
    int rc = dpool_proto_decode(&built, with_routing_id, &routing_again, &again, &why);
    DPOOL_FUZZ_CHECK(rc == DPOOL_OK, "a rebuilt %s does not decode: %s",
                     dpool_proto_command_name(msg->command), why);
    DPOOL_FUZZ_CHECK(!built, "decode left the message with the caller");
    if (with_routing_id)
        DPOOL_FUZZ_CHECK(routing_id && routing_again && zframe_eq(routing_id, routing_again),
                         "routing id changed");
    dpool_fuzz_check_same_msg(msg, &again);
    dpool_msg_reset(&again);
    zframe_destroy(&routing_again);
}

static void
s_decode_one(zmsg_t *zmsg, bool with_routing_id)
{
    dpool_msg_t msg = {0};
    zframe_t *routing_id = NULL;
    const char *why = NULL;
    int rc = dpool_proto_decode(&zmsg, with_routing_id, &routing_id, &msg, &why);
    DPOOL_FUZZ_CHECK(!zmsg, "decode left the message with the caller");
    DPOOL_FUZZ_CHECK(rc == DPOOL_OK || rc == DPOOL_ERR_PROTO, "decode returned %d", rc);
    DPOOL_FUZZ_CHECK(!with_routing_id || routing_id, "the routing id was not handed back");
    if (rc == DPOOL_OK) {
        DPOOL_FUZZ_CHECK(dpool_proto_command_name(msg.command), "decoded an unknown command");
        dpool_fuzz_check_msg_invariants(&msg);
        s_round_trip(&msg, routing_id, with_routing_id);
    } else {
        DPOOL_FUZZ_CHECK(why && *why, "a failure without a reason");
        DPOOL_FUZZ_CHECK(!msg.name && !msg.text && !msg.functions && !msg.payload,
                         "a failed decode left something owned in msg");
    }
    dpool_msg_reset(&msg);
    zframe_destroy(&routing_id);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    bool with_routing_id;
    zmsg_t *zmsg = s_message(data, size, &with_routing_id);
    // The path the client and the worker daemon take (no routing id): an inbox that
    // decodes a BATCH's messages in place, one at a time.
    if (!with_routing_id) {
        zmsg_t *copy = zmsg_dup(zmsg);
        dpool_batch_inbox_t inbox = {0};
        dpool_msg_t msg = {0};
        const char *inbox_why = NULL;
        int rc = dpool_batch_inbox_put(&inbox, &copy, &msg, &inbox_why);
        DPOOL_FUZZ_CHECK(copy == NULL, "the inbox did not take the message");
        for (int guard = 0;; guard++) {
            DPOOL_FUZZ_CHECK(guard <= 1 << 20, "the inbox never emptied");
            if (rc == DPOOL_OK)
                dpool_msg_reset(&msg);
            else
                DPOOL_FUZZ_CHECK(!msg.payload && !msg.name && !msg.text && !msg.functions,
                                 "a failed decode left something owned in msg");
            if (!dpool_batch_inbox_waiting(&inbox))
                break;
            memset(&msg, 0, sizeof msg);
            rc = dpool_batch_inbox_next(&inbox, &msg, &inbox_why);
        }
        dpool_batch_inbox_clear(&inbox);
    }
    zlist_t *parts = zlist_new();
    const char *why = NULL;
    int split = dpool_batch_split(&zmsg, with_routing_id, parts, &why);
    DPOOL_FUZZ_CHECK(split >= -1 && split <= 1, "split returned %d", split);
    DPOOL_FUZZ_CHECK((split == 0) == (zmsg != NULL), "split kept or lost the message");
    if (split == 0)
        s_decode_one(zmsg, with_routing_id);
    else if (split < 0)
        DPOOL_FUZZ_CHECK(why && *why && zlist_size(parts) == 0, "a failed split kept something");
    else
        DPOOL_FUZZ_CHECK(zlist_size(parts) > 0, "a BATCH split into nothing");
    zmsg_t *part;
    while ((part = zlist_pop(parts)))
        s_decode_one(part, with_routing_id);
    zlist_destroy(&parts);
    return 0;
}
