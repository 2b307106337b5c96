/*  Fuzz target: dpool_codec_decode, for every command id.

    Input layout: byte 0 is the command id (any byte, so unknown ids are tried too), the
    rest is the body. A body that decodes is encoded again with dpool_codec_encode and
    decoded once more: both decodings must agree. */
#include "dpool_fuzz.h"

#include "dpool_codec.h"

#include <dpool/errors.h>

static void
s_round_trip(const dpool_msg_t *msg)
{
    msgpack_sbuffer body;
    msgpack_sbuffer_init(&body);
    int rc = dpool_codec_encode(msg, &body);
    DPOOL_FUZZ_CHECK(rc == DPOOL_OK, "a decoded %s does not encode again: %d",
                     dpool_proto_command_name(msg->command), rc);
    dpool_msg_t again = {.command = msg->command};
    const char *why = NULL;
    rc = dpool_codec_decode(body.data, body.size, &again, &why);
    DPOOL_FUZZ_CHECK(rc == DPOOL_OK, "a re-encoded %s does not decode: %s",
                     dpool_proto_command_name(msg->command), why);
    dpool_fuzz_check_same_msg(msg, &again);
    dpool_msg_reset(&again);
    msgpack_sbuffer_destroy(&body);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    dpool_msg_t msg = {.command = (dpool_cmd_t)data[0]};
    const char *why = NULL;
    int rc = dpool_codec_decode(data + 1, size - 1, &msg, &why);
    DPOOL_FUZZ_CHECK(rc == DPOOL_OK || rc == DPOOL_ERR_PROTO, "decode returned %d", rc);
    DPOOL_FUZZ_CHECK(rc != DPOOL_OK || dpool_codec_known(data[0], NULL),
                     "decoded a body for the unknown command %d", data[0]);
    if (rc == DPOOL_OK) {
        dpool_fuzz_check_msg_invariants(&msg);
        s_round_trip(&msg);
    } else {
        DPOOL_FUZZ_CHECK(why && *why, "a failure without a reason");
        DPOOL_FUZZ_CHECK(!msg.name && !msg.text && !msg.functions,
                         "a failed decode left something owned in msg");
        DPOOL_FUZZ_CHECK(msg.command == data[0], "a failed decode changed the command");
    }
    dpool_msg_reset(&msg);
    return 0;
}
