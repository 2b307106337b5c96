/*  fake_chunk_broker.h: the fake broker of tests/test_map.c, kept apart so the tests
    read on their own. It plays the broker in-process on a ROUTER served by a zactor
    thread (dpool_new blocks until POOL_OPENED) and runs chunks itself, by function
    name, per item of a chunk (args = the item's arguments):
      echo    the first argument              add     the sum of the integer arguments
      fail17  fails at the item whose first argument is 17: "item k: boom 17", the k
              results before it as the payload (as workers do)
      delay   answers the chunk after 1000 - 150 x (first argument of its first item) ms
      never   no answer (until TERMINATE: -13 for each)
    A plain (non-chunk) SUBMIT of echo answers its arguments. */
#ifndef DPOOL_FAKE_CHUNK_BROKER_H
#define DPOOL_FAKE_CHUNK_BROKER_H

#include <criterion/criterion.h>
#include <czmq.h>
#include <dpool/dpool.h>
#include <dpool_clock.h>
#include <dpool_proto.h>
#include <dpool_peer.h>
#include <msgpack.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#define MAX_HELD 512
#define MAX_CHUNKS 512

typedef struct {
    pthread_mutex_t lock;
    char endpoint[64];
    uint32_t open_retries, open_time_limit_ms;
    int submits, chunk_counts[MAX_CHUNKS];
    uint32_t last_flags;
    zactor_t *actor;
} fake_t;

typedef struct {
    uint64_t task_id;
    int64_t due_ms; // 0 = only on TERMINATE
    zframe_t *peer, *payload;
    int code;
    char text[64];
} held_t;

typedef struct {
    fake_t *fake;
    zsock_t *router;
    held_t held[MAX_HELD];
    size_t held_count;
} server_t;

static fake_t *fake;

static void
s_result(server_t *self, zframe_t *peer, uint64_t task_id, int code, const char *text,
         zframe_t *payload)
{
    dpool_msg_t msg = {.command = DPOOL_CMD_RESULT,
                       .task_id = task_id,
                       .code = code,
                       .text = (char *)text,
                       .payload = payload};
    cr_assert_eq(dpool_proto_send(self->router, &msg, peer), DPOOL_OK);
}

static int64_t
s_int(const msgpack_object *obj)
{
    return obj->type == MSGPACK_OBJECT_POSITIVE_INTEGER   ? (int64_t)obj->via.u64
           : obj->type == MSGPACK_OBJECT_NEGATIVE_INTEGER ? obj->via.i64
                                                          : -1000;
}

// Runs one chunk: packs the results into sbuf; returns the failing item's index or -1.
static int
s_run_chunk(const char *function, msgpack_object items, msgpack_sbuffer *sbuf)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sbuf, msgpack_sbuffer_write);
    int failed = -1;
    uint32_t count = items.via.array.size;
    for (uint32_t i = 0; i < count && failed < 0; i++) {
        msgpack_object args = items.via.array.ptr[i];
        cr_assert_eq(args.type, MSGPACK_OBJECT_ARRAY, "a chunk item is not an argument array");
        if (streq(function, "fail17") && args.via.array.size > 0 &&
            s_int(&args.via.array.ptr[0]) == 17)
            failed = (int)i;
    }
    uint32_t results = failed >= 0 ? (uint32_t)failed : count;
    msgpack_pack_array(&pk, results);
    for (uint32_t i = 0; i < results; i++) {
        msgpack_object args = items.via.array.ptr[i];
        if (streq(function, "add")) {
            int64_t sum = 0;
            for (uint32_t j = 0; j < args.via.array.size; j++)
                sum += s_int(&args.via.array.ptr[j]);
            msgpack_pack_int64(&pk, sum);
        } else if (args.via.array.size > 0)
            msgpack_pack_object(&pk, args.via.array.ptr[0]);
        else
            msgpack_pack_nil(&pk);
    }
    return failed;
}

static void
s_hold(server_t *self, zframe_t *peer, uint64_t task_id, int64_t due_ms, zframe_t *payload)
{
    cr_assert_lt(self->held_count, MAX_HELD);
    self->held[self->held_count++] = (held_t){
        .task_id = task_id, .due_ms = due_ms, .peer = zframe_dup(peer), .payload = payload};
}

static void
s_on_chunk(server_t *self, zframe_t *peer, dpool_msg_t *msg)
{
    msgpack_unpacked items;
    msgpack_unpacked_init(&items);
    cr_assert_eq(msgpack_unpack_next(&items, (const char *)zframe_data(msg->payload),
                                     zframe_size(msg->payload), NULL),
                 MSGPACK_UNPACK_SUCCESS);
    cr_assert_eq(items.data.type, MSGPACK_OBJECT_ARRAY, "a chunk is not an array");
    pthread_mutex_lock(&self->fake->lock);
    if (self->fake->submits <= MAX_CHUNKS)
        self->fake->chunk_counts[self->fake->submits - 1] = (int)items.data.via.array.size;
    pthread_mutex_unlock(&self->fake->lock);
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init(&sbuf);
    int failed = s_run_chunk(msg->name, items.data, &sbuf);
    zframe_t *results = zframe_new(sbuf.data, sbuf.size);
    int64_t first = items.data.via.array.size && items.data.via.array.ptr[0].via.array.size
                        ? s_int(&items.data.via.array.ptr[0].via.array.ptr[0])
                        : 0;
    msgpack_unpacked_destroy(&items);
    msgpack_sbuffer_destroy(&sbuf);
    if (streq(msg->name, "never") || streq(msg->name, "delay")) {
        int64_t due = streq(msg->name, "never") ? 0 : dpool_clock_ms() + 1000 - 150 * first;
        s_hold(self, peer, msg->task_id, due, results);
        return;
    }
    char text[64];
    snprintf(text, sizeof text, "item %d: boom 17", failed);
    s_result(self, peer, msg->task_id, failed >= 0 ? DPOOL_ERR_TASK_FAILED : DPOOL_OK,
             failed >= 0 ? text : NULL, results);
}

static void
s_release_one(server_t *self, held_t *held, bool terminate)
{
    if (terminate) {
        zframe_destroy(&held->payload);
        s_result(self, held->peer, held->task_id, DPOOL_ERR_TERMINATED, "terminated", NULL);
    } else
        s_result(self, held->peer, held->task_id, DPOOL_OK, NULL, held->payload);
    zframe_destroy(&held->peer);
    *held = self->held[--self->held_count];
}

// Answers the held tasks that are due, earliest due first (a turn that comes late, on a
// loaded machine, finds several due at once: they go in the order of their due times,
// not of their arrival), or all of them on TERMINATE.
static void
s_release_held(server_t *self, bool terminate)
{
    for (;;) {
        held_t *next = NULL;
        for (size_t i = 0; i < self->held_count; i++) {
            held_t *held = &self->held[i];
            bool due = terminate || (held->due_ms && held->due_ms <= dpool_clock_ms());
            if (due && (!next || held->due_ms < next->due_ms))
                next = held;
        }
        if (!next)
            return;
        s_release_one(self, next, terminate);
    }
}

static void
s_on_message(server_t *self, zframe_t *peer, dpool_msg_t *msg)
{
    pthread_mutex_lock(&self->fake->lock);
    if (msg->command == DPOOL_CMD_POOL_OPEN) {
        self->fake->open_retries = msg->retries;
        self->fake->open_time_limit_ms = msg->time_limit_ms;
    }
    if (msg->command == DPOOL_CMD_SUBMIT) {
        self->fake->submits++;
        self->fake->last_flags = msg->flags;
    }
    pthread_mutex_unlock(&self->fake->lock);
    if (msg->command == DPOOL_CMD_POOL_OPEN) {
        dpool_msg_t reply = {.command = DPOOL_CMD_POOL_OPENED,
                             .pool_ref = msg->pool_ref,
                             .count = msg->count ? msg->count : 2};
        cr_assert_eq(dpool_proto_send(self->router, &reply, peer), DPOOL_OK);
    } else if (msg->command == DPOOL_CMD_SUBMIT && (msg->flags & DPOOL_FLAG_CHUNK))
        s_on_chunk(self, peer, msg);
    else if (msg->command == DPOOL_CMD_SUBMIT && streq(msg->name, "never"))
        s_hold(self, peer, msg->task_id, 0, NULL);
    else if (msg->command == DPOOL_CMD_SUBMIT)
        s_result(self, peer, msg->task_id, DPOOL_OK, NULL, zframe_dup(msg->payload));
    else if (msg->command == DPOOL_CMD_TERMINATE)
        s_release_held(self, true);
    else if (msg->command == DPOOL_CMD_HEARTBEAT) {
        // a live broker answers: the library counts a silent one as lost after 3 s
        dpool_msg_t beat = {.command = DPOOL_CMD_HEARTBEAT, .task_id = 1};
        cr_assert_eq(dpool_proto_send(self->router, &beat, peer), DPOOL_OK);
    }
}

static void
s_on_routed(void *self, zframe_t *peer, dpool_msg_t *msg)
{
    s_on_message(self, peer, msg);
}

static void
s_server(zsock_t *pipe, void *args)
{
    server_t self = {.fake = args};
    self.router = zsock_new(ZMQ_ROUTER);
    int port = zsock_bind(self.router, "tcp://127.0.0.1:*");
    snprintf(self.fake->endpoint, sizeof self.fake->endpoint, "tcp://127.0.0.1:%d", port);
    zsock_signal(pipe, 0);
    zpoller_t *poller = zpoller_new(pipe, self.router, NULL);
    while (zpoller_wait(poller, 10) != pipe) {
        while (zsock_events(self.router) & ZMQ_POLLIN) {
            const char *why = NULL;
            cr_assert_eq(dpool_peer_route_one(self.router, s_on_routed, &self, &why), DPOOL_OK,
                         "the library sent a malformed message: %s", why);
        }
        s_release_held(&self, false);
    }
    for (size_t i = 0; i < self.held_count; i++) {
        zframe_destroy(&self.held[i].peer);
        zframe_destroy(&self.held[i].payload);
    }
    zpoller_destroy(&poller);
    zsock_destroy(&self.router);
}

static void
setup(void)
{
    fake = calloc(1, sizeof *fake);
    pthread_mutex_init(&fake->lock, NULL);
    fake->actor = zactor_new(s_server, fake);
    cr_assert_not_null(fake->actor);
}

static void
teardown(void)
{
    zactor_destroy(&fake->actor);
    pthread_mutex_destroy(&fake->lock);
    free(fake);
}

#endif
