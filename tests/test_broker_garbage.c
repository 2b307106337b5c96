/*  The broker under a storm of bad input (issue 5, "Bad input"): raw DEALER sockets send
    a few thousand random messages and valid ones mutated or given hostile bodies (huge
    declared sizes, deep nesting), from a seeded generator, bounded in count and time.
    Afterwards the broker must still answer STATUS with a well-formed map, must have
    counted at least every message its own decoder refuses as malformed, and must run a
    real task end to end: libdpool -> broker -> a real dpool-worker -> back.

    DPOOL_GARBAGE_SEED=N replays another storm; the seed in use is logged. */
#include "dpool_clock.h"
#include "dpool_codec.h"
#include "dpool_harness.h"
#include "dpool_proto.h"
#include "peer_assert.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <dpool/dpool.h>
#include <dpool/errors.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#define SOCKETS 4
#define MESSAGES 3000
#define STORM_MS 20000
#define DEFAULT_SEED 0x5eedf00dULL

// A string literal as bytes and a size, without its terminating NUL.
#define BYTES(literal) literal, sizeof literal - 1

static dpool_harness_t *harness;
static const char *endpoint;

static void
setup(void)
{
    harness = dpool_harness_new();
    cr_assert_not_null(harness);
    const char *args[] = {"--grace", "1", NULL};
    endpoint = dpool_harness_start_broker(harness, args);
    cr_assert_not_null(endpoint);
}

static void
teardown(void)
{
    dpool_harness_destroy(&harness);
}

TestSuite(broker_garbage, .init = setup, .fini = teardown, .timeout = 120);

/* ---- a seeded generator (xorshift64*): the same seed gives the same storm ---------- */

typedef struct {
    uint64_t state;
} rng_t;

static uint64_t
rng_next(rng_t *rng)
{
    rng->state ^= rng->state >> 12;
    rng->state ^= rng->state << 25;
    rng->state ^= rng->state >> 27;
    return rng->state * 0x2545F4914F6CDD1DULL;
}

// A number in [0, n).
static size_t
rng_below(rng_t *rng, size_t n)
{
    return (size_t)(rng_next(rng) % n);
}

static void
rng_fill(rng_t *rng, uint8_t *bytes, size_t size)
{
    for (size_t i = 0; i < size; i++)
        bytes[i] = (uint8_t)rng_next(rng);
}

/* ---- messages: valid ones, then broken ---------------------------------------------- */

static const dpool_cmd_t commands[] = {
    DPOOL_CMD_POOL_OPEN,    DPOOL_CMD_POOL_OPENED,   DPOOL_CMD_SUBMIT,        DPOOL_CMD_RESULT,
    DPOOL_CMD_OUTPUT,       DPOOL_CMD_TERMINATE,     DPOOL_CMD_POOL_RELEASE,  DPOOL_CMD_STATUS,
    DPOOL_CMD_STATUS_REPLY, DPOOL_CMD_ERROR,         DPOOL_CMD_WORKER_HELLO,  DPOOL_CMD_CREDIT,
    DPOOL_CMD_TASK,         DPOOL_CMD_WORKER_RESULT, DPOOL_CMD_WORKER_OUTPUT, DPOOL_CMD_KILL,
    DPOOL_CMD_HEARTBEAT,    DPOOL_CMD_BYE,
};
#define COMMAND_COUNT (sizeof commands / sizeof commands[0])

// A payload that is one msgpack array: [1, "x"].
static zframe_t *
small_payload(void)
{
    static const uint8_t bytes[] = {0x92, 0x01, 0xa1, 'x'};
    return zframe_new(bytes, sizeof bytes);
}

// A valid message of a random command, as dpool_proto_build writes it.
static zmsg_t *
valid_message(rng_t *rng)
{
    static char *names[] = {"echo", "noop", "garbage.fn"};
    dpool_cmd_t command = commands[rng_below(rng, COMMAND_COUNT)];
    dpool_msg_t msg = {.command = command,
                       .task_id = rng_below(rng, 16),
                       .pool_ref = (uint32_t)rng_below(rng, 4),
                       .code = -(int32_t)rng_below(rng, 22),
                       .count = (uint32_t)rng_below(rng, 5),
                       .pid = 4242,
                       .flags = (uint32_t)rng_below(rng, 2),
                       .name = names[rng_below(rng, 3)],
                       .text = "x",
                       .text_size = 1,
                       .functions = names,
                       .function_count = 3};
    dpool_payload_rule_t rule = DPOOL_PAYLOAD_NONE;
    cr_assert(dpool_codec_known(command, &rule));
    if (rule == DPOOL_PAYLOAD_REQUIRED || (rule == DPOOL_PAYLOAD_OPTIONAL && rng_below(rng, 2)))
        msg.payload = small_payload();
    zmsg_t *zmsg = dpool_proto_build(&msg, NULL);
    zframe_destroy(&msg.payload);
    cr_assert_not_null(zmsg, "cannot build a valid %s", dpool_proto_command_name(command));
    return zmsg;
}

static zframe_t *
frame_at(zmsg_t *zmsg, size_t index)
{
    zframe_t *frame = zmsg_first(zmsg);
    for (size_t i = 0; frame && i < index; i++)
        frame = zmsg_next(zmsg);
    return frame;
}

// Replaces frame's bytes with its first `keep` bytes and `extra` random ones.
static void
resize_frame(rng_t *rng, zframe_t *frame, size_t keep, size_t extra)
{
    uint8_t *bytes = malloc(keep + extra + 1);
    cr_assert_not_null(bytes);
    memcpy(bytes, zframe_data(frame), keep);
    rng_fill(rng, bytes + keep, extra);
    zframe_reset(frame, bytes, keep + extra);
    free(bytes);
}

// One random change: a flipped bit, a byte, a cut, a tail, a frame dropped, repeated or
// added, or another version or command in the header.
static void
mutate_once(rng_t *rng, zmsg_t *zmsg)
{
    zframe_t *frame = frame_at(zmsg, rng_below(rng, zmsg_size(zmsg)));
    size_t size = zframe_size(frame);
    uint8_t *bytes = zframe_data(frame);
    switch (rng_below(rng, 9)) {
    case 0:
        if (size)
            bytes[rng_below(rng, size)] ^= (uint8_t)(1u << rng_below(rng, 8));
        break;
    case 1:
        if (size)
            bytes[rng_below(rng, size)] = (uint8_t)rng_next(rng);
        break;
    case 2:
        resize_frame(rng, frame, size ? rng_below(rng, size) : 0, 0);
        break;
    case 3:
        resize_frame(rng, frame, size, 1 + rng_below(rng, 16));
        break;
    case 4:
        if (zmsg_size(zmsg) > 1) {
            zmsg_remove(zmsg, frame);
            zframe_destroy(&frame);
        }
        break;
    case 5: {
        zframe_t *copy = zframe_dup(frame);
        zmsg_append(zmsg, &copy);
        break;
    }
    case 6: {
        uint8_t random[8];
        rng_fill(rng, random, sizeof random);
        zmsg_addmem(zmsg, random, rng_below(rng, sizeof random + 1));
        break;
    }
    default: {
        zframe_t *header = zmsg_first(zmsg);
        if (zframe_size(header) == DPOOL_PROTO_HEADER_SIZE)
            zframe_data(header)[rng_below(rng, 2) ? 3 : 2] = (uint8_t)rng_next(rng);
        break;
    }
    }
}

// A right header for a random command, then a body from a list of hostile ones.
static zmsg_t *
hostile_message(rng_t *rng)
{
    static const struct {
        const char *bytes;
        size_t size;
    } bodies[] = {
        {BYTES("\xdd\xff\xff\xff\xff\x01")},              // an array "of 4 billion items"
        {BYTES("\x93\x01\x07\xdb\xff\xff\xff\xff")},      // a name "of 4 GiB"
        {BYTES("\x94\xa1h\x01\x01\xdd\x00\x01\x00\x00")}, // 65536 functions declared
        {BYTES("\x93\x01\xcf\x00")},                      // truncated
        {BYTES("\x91\xc1")},                              // a byte msgpack leaves unused
        {BYTES("\x93\xa1x\xa1y\xa1z")},                   // right count, wrong types
        {BYTES("\x92\x01\x02\x03")},                      // bytes after the value
        {BYTES("\xc7\xff\x01")},                          // an ext longer than the body
    };
    dpool_cmd_t command = commands[rng_below(rng, COMMAND_COUNT)];
    const uint8_t header[DPOOL_PROTO_HEADER_SIZE] = {'D', 'P', DPOOL_PROTO_VERSION,
                                                     (uint8_t)command};
    zmsg_t *zmsg = zmsg_new();
    zmsg_addmem(zmsg, header, sizeof header);
    if (rng_below(rng, 3) == 0) {
        // Nested deeper than any decoder should follow.
        size_t depth = 20 + rng_below(rng, 500);
        uint8_t *deep = malloc(depth + 1);
        cr_assert_not_null(deep);
        memset(deep, 0x91, depth);
        deep[depth] = 0x90;
        zmsg_addmem(zmsg, deep, depth + 1);
        free(deep);
    } else {
        size_t pick = rng_below(rng, sizeof bodies / sizeof bodies[0]);
        zmsg_addmem(zmsg, bodies[pick].bytes, bodies[pick].size);
    }
    if (rng_below(rng, 2))
        zmsg_addmem(zmsg, "\xdc\xff\xff", 3); // a payload: carried opaque, never decoded
    return zmsg;
}

// 1 to 5 frames of random bytes; the first is sometimes a header with the right magic.
static zmsg_t *
random_message(rng_t *rng)
{
    zmsg_t *zmsg = zmsg_new();
    size_t frames = 1 + rng_below(rng, 5);
    for (size_t i = 0; i < frames; i++) {
        uint8_t bytes[48];
        size_t size = rng_below(rng, sizeof bytes + 1);
        rng_fill(rng, bytes, size);
        if (i == 0 && size >= 3 && rng_below(rng, 2)) {
            memcpy(bytes, "DP", 2);
            bytes[2] = DPOOL_PROTO_VERSION;
        }
        zmsg_addmem(zmsg, bytes, size);
    }
    return zmsg;
}

static zmsg_t *
storm_message(rng_t *rng)
{
    size_t kind = rng_below(rng, 100);
    if (kind < 25)
        return random_message(rng);
    if (kind < 40)
        return hostile_message(rng);
    zmsg_t *zmsg = valid_message(rng);
    if (kind < 80) // the rest stay valid: messages in the wrong place or order
        for (size_t i = 1 + rng_below(rng, 3); i > 0; i--)
            mutate_once(rng, zmsg);
    if (kind == 99) {
        // Now and then a big frame, still far under the broker's --max-message.
        uint8_t *big = malloc(256 * 1024);
        cr_assert_not_null(big);
        rng_fill(rng, big, 256 * 1024);
        zmsg_addmem(zmsg, big, 256 * 1024);
        free(big);
    }
    return zmsg;
}

// True when dpool_proto_decode, which the broker runs on every message, refuses zmsg;
// otherwise *command is the command the broker will handle.
static bool
refused_by_decoder(zmsg_t *zmsg, dpool_cmd_t *command)
{
    zmsg_t *copy = zmsg_dup(zmsg);
    dpool_msg_t msg = {0};
    const char *why = NULL;
    bool refused = dpool_proto_decode(&copy, false, NULL, &msg, &why) != DPOOL_OK;
    *command = msg.command;
    dpool_msg_reset(&msg);
    return refused;
}

/* ---- talking to the broker ----------------------------------------------------------- */

static zsock_t *
connect_peer(const char *routing_id)
{
    return connect_to(endpoint, routing_id);
}

// Reads every reply already waiting; returns how many there were and adds the
// STATUS_REPLYs among them to *status_replies.
static size_t
drain(zsock_t *sock, size_t *status_replies)
{
    size_t count = 0;
    dpool_msg_t msg;
    while (recv_msg(sock, &msg, 0)) {
        *status_replies += msg.command == DPOOL_CMD_STATUS_REPLY;
        dpool_msg_reset(&msg);
        count++;
    }
    return count;
}

// A STATUS_REPLY's map, unpacked from its payload (which the map points into).
typedef struct {
    dpool_msg_t reply;
    msgpack_unpacked map;
} status_t;

// Sends STATUS on sock and unpacks the reply into *status (status_done frees it),
// skipping whatever else was still on its way to sock, including the replies to the
// earlier STATUS requests still unanswered on sock: the reply to this one comes only
// after the broker has handled everything sent on sock before it.
static void
ask_status(zsock_t *sock, size_t earlier, status_t *status)
{
    send_msg(sock, (dpool_msg_t){.command = DPOOL_CMD_STATUS});
    int64_t deadline = dpool_clock_ms() + 30000;
    dpool_msg_t *reply = &status->reply;
    memset(reply, 0, sizeof *reply);
    for (size_t due = earlier + 1; due > 0;) {
        dpool_msg_reset(reply);
        int left = (int)(deadline - dpool_clock_ms());
        cr_assert(left > 0 && recv_msg(sock, reply, left), "no STATUS_REPLY within 30 s");
        due -= reply->command == DPOOL_CMD_STATUS_REPLY;
    }
    cr_assert_not_null(reply->payload);
    msgpack_unpacked_init(&status->map);
    cr_assert_eq(msgpack_unpack_next(&status->map, (const char *)zframe_data(reply->payload),
                                     zframe_size(reply->payload), NULL),
                 MSGPACK_UNPACK_SUCCESS);
    cr_assert_eq(status->map.data.type, MSGPACK_OBJECT_MAP, "the status is not a map");
}

static void
status_done(status_t *status)
{
    msgpack_unpacked_destroy(&status->map);
    dpool_msg_reset(&status->reply);
}

static const msgpack_object *
status_field(const status_t *status, const char *key)
{
    const msgpack_object_map *fields = &status->map.data.via.map;
    for (uint32_t i = 0; i < fields->size; i++) {
        const msgpack_object *name = &fields->ptr[i].key;
        if (name->type == MSGPACK_OBJECT_STR && name->via.str.size == strlen(key) &&
            memcmp(name->via.str.ptr, key, name->via.str.size) == 0)
            return &fields->ptr[i].val;
    }
    cr_assert_fail("the status has no \"%s\"", key);
    return NULL;
}

// The status's malformed count, after checking that the map has every documented field.
static uint64_t
status_malformed(zsock_t *sock, size_t earlier, uint32_t *hosts)
{
    status_t status;
    ask_status(sock, earlier, &status);
    cr_assert_eq(status_field(&status, "version")->type, MSGPACK_OBJECT_STR);
    cr_assert_eq(status_field(&status, "pools")->type, MSGPACK_OBJECT_ARRAY);
    cr_assert_eq(status_field(&status, "functions")->type, MSGPACK_OBJECT_ARRAY);
    const msgpack_object *host_list = status_field(&status, "hosts");
    cr_assert_eq(host_list->type, MSGPACK_OBJECT_ARRAY);
    *hosts = host_list->via.array.size;
    const msgpack_object *malformed = status_field(&status, "malformed");
    cr_assert_eq(malformed->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    uint64_t count = malformed->via.u64;
    status_done(&status);
    return count;
}

/* ---- the storm ----------------------------------------------------------------------- */

typedef struct {
    size_t sent;
    size_t refused; // of those sent, how many dpool_proto_decode refuses
    size_t replies;
    size_t statuses_unanswered[SOCKETS]; // STATUS sent on each socket, less replies read
} storm_t;

static void
run_storm(zsock_t **socks, uint64_t seed, storm_t *storm)
{
    rng_t rng = {seed ? seed : 1};
    int64_t deadline = dpool_clock_ms() + STORM_MS;
    for (size_t i = 0; i < MESSAGES && dpool_clock_ms() < deadline; i++) {
        zmsg_t *zmsg = storm_message(&rng);
        dpool_cmd_t command = 0;
        if (refused_by_decoder(zmsg, &command))
            storm->refused++;
        else if (command == DPOOL_CMD_STATUS)
            storm->statuses_unanswered[i % SOCKETS]++;
        cr_assert_eq(zmsg_send(&zmsg, socks[i % SOCKETS]), 0);
        storm->sent++;
        if (i % 64 == 63)
            for (size_t s = 0; s < SOCKETS; s++) {
                size_t status_replies = 0;
                storm->replies += drain(socks[s], &status_replies);
                cr_assert_leq(status_replies, storm->statuses_unanswered[s]);
                storm->statuses_unanswered[s] -= status_replies;
            }
    }
    // Each peer leaves (so no fake worker stays registered) and asks for a status: its
    // answer comes after every message that peer sent before was handled. The storm's
    // own STATUS requests are answered too, so the answer to this one is the last.
    for (size_t s = 0; s < SOCKETS; s++)
        send_msg(socks[s], (dpool_msg_t){.command = DPOOL_CMD_BYE});
    for (size_t s = 0; s < SOCKETS; s++) {
        uint32_t hosts;
        status_malformed(socks[s], storm->statuses_unanswered[s], &hosts);
    }
}

// Waits until no host is registered: a peer of the storm that registered as a worker
// after it opened a pool may be forgotten only when its heartbeats stop (3 s).
static uint64_t
wait_no_hosts(zsock_t *probe)
{
    int64_t deadline = dpool_clock_ms() + 15000;
    for (;;) {
        uint32_t hosts;
        uint64_t malformed = status_malformed(probe, 0, &hosts);
        if (hosts == 0)
            return malformed;
        cr_assert(dpool_clock_ms() < deadline, "%u hosts of the storm still registered", hosts);
        zclock_sleep(200);
    }
}

static void
run_echo_through_libdpool(void)
{
    cr_assert_gt(dpool_harness_start_worker(harness, 1, NULL), 0);
    cr_assert(dpool_harness_wait_processes(harness, 1, 20), "the worker never registered");
    dpool_opts_t opts;
    dpool_opts_init(&opts);
    opts.broker = endpoint;
    opts.processes = 1;
    dpool_error_t err = {0};
    dpool_t *pool = dpool_new_opts(&opts, &err);
    cr_assert_not_null(pool, "dpool_new_opts: %d %s", err.code, err.message);
    dpool_buf_t args = {0}, value = {0};
    cr_assert_eq(dpool_pack(&args, "s", "still serving"), DPOOL_OK);
    cr_assert_eq(dpool_apply(pool, "echo", &args, &value, &err), DPOOL_OK, "echo: %d %s", err.code,
                 err.message);
    // The result is the argument: the str "still serving" without the array around it.
    cr_assert_eq(value.size, args.size - 1);
    cr_assert_arr_eq(value.data, args.data + 1, value.size);
    dpool_buf_free(&args);
    dpool_buf_free(&value);
    dpool_destroy(&pool);
}

Test(broker_garbage, survives_thousands_of_bad_messages_and_still_serves)
{
    const char *seed_text = getenv("DPOOL_GARBAGE_SEED");
    uint64_t seed = seed_text ? strtoull(seed_text, NULL, 0) : DEFAULT_SEED;
    cr_log_info("broker_garbage: seed 0x%llx", (unsigned long long)seed);
    zsock_t *probe = connect_peer("Cgarbage-probe");
    uint32_t hosts;
    uint64_t malformed_before = status_malformed(probe, 0, &hosts);

    zsock_t *socks[SOCKETS];
    for (size_t s = 0; s < SOCKETS; s++) {
        char id[32];
        snprintf(id, sizeof id, "%cgarbage-%zu", s % 2 ? 'W' : 'C', s);
        socks[s] = connect_peer(id);
    }
    storm_t storm = {0};
    run_storm(socks, seed, &storm);
    for (size_t s = 0; s < SOCKETS; s++)
        zsock_destroy(&socks[s]);
    cr_log_info("broker_garbage: sent %zu messages, %zu refused by the decoder, %zu replies",
                storm.sent, storm.refused, storm.replies);
    cr_assert_geq(storm.sent, MESSAGES / 2, "only %zu messages sent in %d ms", storm.sent,
                  STORM_MS);

    uint64_t malformed = wait_no_hosts(probe) - malformed_before;
    cr_log_info("broker_garbage: the broker counted %llu malformed", (unsigned long long)malformed);
    cr_assert_geq(malformed, storm.refused, "malformed grew by %llu, the decoder refuses %zu",
                  (unsigned long long)malformed, storm.refused);
    cr_assert_gt(storm.refused, storm.sent / 4, "the storm was mostly well formed");
    zsock_destroy(&probe);
    run_echo_through_libdpool();
}
