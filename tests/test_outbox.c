/*  Tests for dpool_outbox: what user threads post reaches the I/O thread in order, one
    wake-up per take, SUBMITs held back while the broker is lost, POOL_RELEASE noticed,
    a large SUBMIT intact, and nothing lost or reordered with a poster and a taker
    running at once. */
#include "dpool_outbox.h"

#include <criterion/criterion.h>
#include <dpool/errors.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

// Encodes a SUBMIT of task_id with payload_size bytes of payload (a msgpack bin, so
// any size is one value) into out, which is emptied first.
static void
s_encode_submit(msgpack_sbuffer *out, uint64_t task_id, size_t payload_size)
{
    static uint8_t payload[64 * 1024];
    cr_assert_leq(payload_size, sizeof payload);
    memset(payload, 0x5a, sizeof payload);
    payload[0] = 0xc6; // bin 32: the length follows
    uint32_t length = (uint32_t)(payload_size - 5);
    for (int i = 0; i < 4; i++)
        payload[1 + i] = (uint8_t)(length >> (24 - 8 * i));
    dpool_msg_t msg = {
        .command = DPOOL_CMD_SUBMIT, .pool_ref = 1, .task_id = task_id, .name = "noop"};
    out->size = 0;
    cr_assert_eq(dpool_batch_encode(&msg, payload, payload_size, out), DPOOL_OK);
}

static bool
s_post_submit(dpool_outbox_t *outbox, uint64_t task_id, size_t payload_size)
{
    msgpack_sbuffer encoded;
    msgpack_sbuffer_init(&encoded);
    s_encode_submit(&encoded, task_id, payload_size);
    bool wake = false;
    cr_assert_eq(
        dpool_outbox_post_encoded(outbox, (const uint8_t *)encoded.data, encoded.size, &wake),
        DPOOL_OK);
    msgpack_sbuffer_destroy(&encoded);
    return wake;
}

// Takes what was posted and decodes it into msgs (at most max); returns how many.
static size_t
s_take_all(dpool_outbox_t *outbox, dpool_msg_t *msgs, size_t max, bool *released_p, size_t *zmsgs_p)
{
    dpool_batch_t *batch = dpool_batch_new();
    dpool_outbox_take(outbox, &batch, released_p);
    size_t count = 0, zmsgs = 0;
    zmsg_t *zmsg;
    dpool_batch_inbox_t inbox = {0};
    while ((zmsg = dpool_batch_take(batch, NULL))) {
        zmsgs++;
        const char *why = NULL;
        cr_assert_lt(count, max);
        cr_assert_eq(dpool_batch_inbox_put(&inbox, &zmsg, &msgs[count], &why), DPOOL_OK, "%s",
                     why ? why : "");
        count++;
        while (dpool_batch_inbox_waiting(&inbox)) {
            cr_assert_lt(count, max);
            cr_assert_eq(dpool_batch_inbox_next(&inbox, &msgs[count], &why), DPOOL_OK);
            count++;
        }
    }
    dpool_batch_destroy(&batch);
    if (zmsgs_p)
        *zmsgs_p = zmsgs;
    return count;
}

static void
s_reset_all(dpool_msg_t *msgs, size_t count)
{
    for (size_t i = 0; i < count; i++)
        dpool_msg_reset(&msgs[i]);
}

Test(outbox, posts_come_out_in_order_and_only_the_first_since_a_take_wakes)
{
    dpool_outbox_t *outbox = dpool_outbox_new();
    cr_assert_not_null(outbox);
    cr_assert(s_post_submit(outbox, 1, 8), "the first post wakes the I/O thread");
    cr_assert_not(s_post_submit(outbox, 2, 8), "a wake-up is already on its way");
    dpool_msg_t terminate = {.command = DPOOL_CMD_TERMINATE, .pool_ref = 1};
    bool wake = true;
    cr_assert_eq(dpool_outbox_post(outbox, &terminate, &wake), DPOOL_OK);
    cr_assert_not(wake);
    dpool_msg_t msgs[8] = {0};
    bool released = true;
    size_t count = s_take_all(outbox, msgs, 8, &released, NULL);
    cr_assert_eq(count, 3);
    cr_assert_not(released);
    cr_assert_eq(msgs[0].command, DPOOL_CMD_SUBMIT);
    cr_assert_eq(msgs[0].task_id, 1);
    cr_assert_eq(zframe_size(msgs[0].payload), 8, "the payload travels with its SUBMIT");
    cr_assert_eq(msgs[1].task_id, 2);
    cr_assert_eq(msgs[2].command, DPOOL_CMD_TERMINATE);
    s_reset_all(msgs, count);
    cr_assert(s_post_submit(outbox, 3, 8), "after a take the next post wakes again");
    cr_assert_eq(s_take_all(outbox, msgs, 8, &released, NULL), 1);
    s_reset_all(msgs, 1);
    dpool_outbox_destroy(&outbox);
    cr_assert_null(outbox);
}

Test(outbox, submits_wait_while_the_broker_is_lost_and_a_release_is_noticed)
{
    dpool_outbox_t *outbox = dpool_outbox_new();
    dpool_outbox_set_lost(outbox, true);
    cr_assert_not(s_post_submit(outbox, 1, 8), "a SUBMIT is not posted while lost");
    dpool_msg_t release = {.command = DPOOL_CMD_POOL_RELEASE, .pool_ref = 1};
    bool wake = false;
    cr_assert_eq(dpool_outbox_post(outbox, &release, &wake), DPOOL_OK);
    cr_assert(wake, "pool commands still go out");
    dpool_msg_t msgs[4] = {0};
    bool released = false;
    cr_assert_eq(s_take_all(outbox, msgs, 4, &released, NULL), 1);
    cr_assert_eq(msgs[0].command, DPOOL_CMD_POOL_RELEASE);
    cr_assert(released);
    s_reset_all(msgs, 1);
    dpool_outbox_set_lost(outbox, false);
    cr_assert(s_post_submit(outbox, 2, 8));
    cr_assert_eq(s_take_all(outbox, msgs, 4, &released, NULL), 1);
    cr_assert_eq(msgs[0].task_id, 2);
    cr_assert_not(released, "a take reports a release once");
    s_reset_all(msgs, 1);
    dpool_outbox_destroy(&outbox);
}

Test(outbox, a_large_submit_goes_alone_in_its_turn_and_whole)
{
    dpool_outbox_t *outbox = dpool_outbox_new();
    s_post_submit(outbox, 1, 8);
    s_post_submit(outbox, 2, 40 * 1024);
    s_post_submit(outbox, 3, 8);
    dpool_msg_t msgs[4] = {0};
    bool released = false;
    size_t zmsgs = 0;
    cr_assert_eq(s_take_all(outbox, msgs, 4, &released, &zmsgs), 3);
    cr_assert_eq(zmsgs, 3, "small, large alone, small");
    for (uint64_t i = 0; i < 3; i++)
        cr_assert_eq(msgs[i].task_id, i + 1);
    cr_assert_eq(zframe_size(msgs[1].payload), 40 * 1024);
    cr_assert_eq(zframe_data(msgs[1].payload)[40 * 1024 - 1], 0x5a);
    s_reset_all(msgs, 3);
    dpool_outbox_destroy(&outbox);
}

Test(outbox, a_batch_holds_at_most_its_limit_of_messages)
{
    dpool_outbox_t *outbox = dpool_outbox_new();
    enum { S_POSTS = DPOOL_BATCH_MAX_MESSAGES + 100 };
    for (uint64_t id = 1; id <= S_POSTS; id++)
        s_post_submit(outbox, id, 8);
    dpool_batch_t *batch = dpool_batch_new();
    bool released = false;
    dpool_outbox_take(outbox, &batch, &released);
    int total = 0, zmsgs = 0;
    zmsg_t *zmsg;
    while ((zmsg = dpool_batch_take(batch, NULL))) {
        zframe_t *run = NULL;
        const char *why = NULL;
        int count = dpool_batch_open(zmsg, false, &run, &why);
        cr_assert_gt(count, 0, "a BATCH");
        cr_assert_leq(count, DPOOL_BATCH_MAX_MESSAGES);
        total += count;
        zmsgs++;
        zmsg_destroy(&zmsg);
    }
    cr_assert_eq(total, S_POSTS);
    cr_assert_eq(zmsgs, 2);
    dpool_batch_destroy(&batch);
    dpool_outbox_destroy(&outbox);
}

#define S_STREAM 20000

typedef struct {
    dpool_outbox_t *outbox;
    int wake_fd; // a pipe's write end: one byte per wake-up a post asked for
    int failures;
} s_poster_t;

static void *
s_poster(void *arg)
{
    s_poster_t *poster = arg;
    msgpack_sbuffer encoded;
    msgpack_sbuffer_init(&encoded);
    for (uint64_t id = 1; id <= S_STREAM; id++) {
        dpool_msg_t msg = {
            .command = DPOOL_CMD_SUBMIT, .pool_ref = 1, .task_id = id, .name = "noop"};
        encoded.size = 0;
        bool wake = false;
        if (dpool_batch_encode(&msg, "\xc0", 1, &encoded) != DPOOL_OK ||
            dpool_outbox_post_encoded(poster->outbox, (const uint8_t *)encoded.data, encoded.size,
                                      &wake) != DPOOL_OK ||
            (wake && write(poster->wake_fd, "w", 1) != 1))
            poster->failures++;
    }
    msgpack_sbuffer_destroy(&encoded);
    return NULL;
}

Test(outbox, a_poster_and_a_taker_woken_only_when_told_lose_and_reorder_nothing)
{
    // The taker sleeps until a post says to wake it, as the I/O thread does: a post
    // that should have woken it and did not leaves it asleep, and the test times out.
    int wake[2];
    cr_assert_eq(pipe(wake), 0);
    s_poster_t poster = {.outbox = dpool_outbox_new(), .wake_fd = wake[1]};
    pthread_t thread;
    cr_assert_eq(pthread_create(&thread, NULL, s_poster, &poster), 0);
    static dpool_msg_t msgs[S_STREAM];
    uint64_t next = 1;
    while (next <= S_STREAM) {
        struct pollfd readable = {.fd = wake[0], .events = POLLIN};
        cr_assert_eq(poll(&readable, 1, 10000), 1, "no wake-up with task %llu still to come",
                     (unsigned long long)next);
        char byte;
        cr_assert_eq(read(wake[0], &byte, 1), 1);
        bool released = false;
        size_t count = s_take_all(poster.outbox, msgs, S_STREAM, &released, NULL);
        for (size_t i = 0; i < count; i++)
            cr_assert_eq(msgs[i].task_id, next++, "in the order posted");
        s_reset_all(msgs, count);
    }
    pthread_join(thread, NULL);
    cr_assert_eq(poster.failures, 0);
    cr_assert_eq(next, S_STREAM + 1, "every post came out");
    dpool_outbox_destroy(&poster.outbox);
    close(wake[0]);
    close(wake[1]);
}
