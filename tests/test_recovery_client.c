/*  libdpool's recovery rules against a fake broker the test steers (a ROUTER served by
    a zactor thread): a new epoch, an ERROR "peer not registered" or a broker that fell
    silent and speaks again each make the client open its pool again and re-send every
    unanswered SUBMIT (same ids, in order) once; a second RESULT for a task is dropped;
    the default output handler prefixes lines with the worker host only when asked.
    The fake holds every SUBMIT of "hold" unanswered until the test releases them. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <czmq.h>
#include <dpool/dpool.h>
#include <dpool_clock.h>
#include <dpool_peer.h>
#include <dpool_proto.h>
#include <pthread.h>
#include <string.h>

#define MAX_SUBMITS 64

typedef struct {
    pthread_mutex_t lock;
    uint64_t epoch;                // carried by POOL_OPENED and HEARTBEAT
    bool mute;                     // answer nothing (a broker that hangs)
    bool send_not_registered;      // next turn: ERROR "peer not registered" to the client
    int answer_times;              // next turn: RESULT each held task this many times
    int opens;                     // POOL_OPENs received
    uint64_t submits[MAX_SUBMITS]; // task ids of every SUBMIT, in arrival order
    size_t payload_sizes[MAX_SUBMITS];
    uint64_t payload_sums[MAX_SUBMITS]; // FNV-1a of each SUBMIT's payload
    int submit_count;
    char endpoint[64];
    zactor_t *actor;
} fake_t;

static fake_t *fake;

static void
s_send(zsock_t *router, zframe_t *peer, dpool_msg_t *msg)
{
    cr_assert_eq(dpool_proto_send(router, msg, peer), DPOOL_OK);
}

// Under fake->lock: answers one message from the client.
static void
s_on_message(zsock_t *router, zframe_t *peer, dpool_msg_t *msg)
{
    if (msg->command == DPOOL_CMD_POOL_OPEN)
        fake->opens++;
    if (msg->command == DPOOL_CMD_SUBMIT && fake->submit_count < MAX_SUBMITS) {
        const uint8_t *bytes = msg->payload ? zframe_data(msg->payload) : NULL;
        size_t size = msg->payload ? zframe_size(msg->payload) : 0;
        uint64_t sum = 14695981039346656037ull;
        for (size_t i = 0; i < size; i++)
            sum = (sum ^ bytes[i]) * 1099511628211ull;
        fake->payload_sizes[fake->submit_count] = size;
        fake->payload_sums[fake->submit_count] = sum;
        fake->submits[fake->submit_count++] = msg->task_id;
    }
    if (fake->mute)
        return;
    if (msg->command == DPOOL_CMD_POOL_OPEN) {
        dpool_msg_t reply = {.command = DPOOL_CMD_POOL_OPENED,
                             .pool_ref = msg->pool_ref,
                             .count = 2,
                             .task_id = fake->epoch};
        s_send(router, peer, &reply);
    } else if (msg->command == DPOOL_CMD_HEARTBEAT) {
        dpool_msg_t beat = {.command = DPOOL_CMD_HEARTBEAT, .task_id = fake->epoch};
        s_send(router, peer, &beat);
    } else if (msg->command == DPOOL_CMD_SUBMIT && streq(msg->name, "print")) {
        dpool_msg_t out = {.command = DPOOL_CMD_OUTPUT,
                           .task_id = msg->task_id,
                           .count = DPOOL_STREAM_STDOUT,
                           .name = "host-a"};
        const char *pieces[] = {"hel", "lo\nbye\n"};
        for (int i = 0; i < 2; i++) {
            out.text = (char *)pieces[i];
            out.text_size = strlen(pieces[i]);
            s_send(router, peer, &out);
        }
        dpool_msg_t result = {.command = DPOOL_CMD_RESULT, .task_id = msg->task_id};
        s_send(router, peer, &result);
    }
}

typedef struct {
    zsock_t *router;
    zframe_t **peer; // the client's routing id, kept from its last message
} routed_t;

static void
s_on_routed(void *ctx, zframe_t *peer, dpool_msg_t *msg)
{
    routed_t *routed = ctx;
    zframe_destroy(routed->peer);
    *routed->peer = zframe_dup(peer);
    s_on_message(routed->router, peer, msg);
}

// Under fake->lock: what the test asked for since the last turn.
static void
s_on_orders(zsock_t *router, zframe_t *peer)
{
    if (fake->send_not_registered) {
        fake->send_not_registered = false;
        dpool_msg_t error = {.command = DPOOL_CMD_ERROR,
                             .code = DPOOL_ERR_PROTO,
                             .text = "peer not registered: send WORKER_HELLO (or POOL_OPEN) first"};
        s_send(router, peer, &error);
    }
    for (; fake->answer_times > 0; fake->answer_times--)
        for (int i = 0; i < fake->submit_count; i++) {
            dpool_msg_t result = {.command = DPOOL_CMD_RESULT, .task_id = fake->submits[i]};
            s_send(router, peer, &result);
        }
}

static void
s_server(zsock_t *pipe, void *args)
{
    (void)args;
    zsock_t *router = zsock_new(ZMQ_ROUTER);
    int port = zsock_bind(router, "tcp://127.0.0.1:*");
    snprintf(fake->endpoint, sizeof fake->endpoint, "tcp://127.0.0.1:%d", port);
    zsock_signal(pipe, 0);
    zpoller_t *poller = zpoller_new(pipe, router, NULL);
    zframe_t *peer = NULL; // the one client's routing id, once it spoke
    while (zpoller_wait(poller, 10) != pipe) {
        pthread_mutex_lock(&fake->lock);
        while (zsock_events(router) & ZMQ_POLLIN) {
            routed_t routed = {router, &peer};
            const char *why = NULL;
            cr_assert_eq(dpool_peer_route_one(router, s_on_routed, &routed, &why), DPOOL_OK, "%s",
                         why);
        }
        if (peer && !fake->mute)
            s_on_orders(router, peer);
        pthread_mutex_unlock(&fake->lock);
    }
    zframe_destroy(&peer);
    zpoller_destroy(&poller);
    zsock_destroy(&router);
}

static void
setup(void)
{
    fake = calloc(1, sizeof *fake);
    pthread_mutex_init(&fake->lock, NULL);
    fake->epoch = 1;
    fake->actor = zactor_new(s_server, NULL);
    cr_assert_not_null(fake->actor);
}

static void
teardown(void)
{
    zactor_destroy(&fake->actor);
    pthread_mutex_destroy(&fake->lock);
    free(fake);
}

TestSuite(recovery_client, .init = setup, .fini = teardown, .timeout = 30);

static dpool_t *
s_open(int output_prefix)
{
    dpool_opts_t opts = {.broker = fake->endpoint,
                         .processes = 2,
                         .connect_timeout = 2,
                         .output_prefix = output_prefix};
    dpool_error_t err = {0};
    dpool_t *pool = dpool_new_opts(&opts, &err);
    cr_assert_not_null(pool, "%s", err.message);
    return pool;
}

// Waits up to 6 s until the fake has seen `opens` POOL_OPENs and `submits` SUBMITs.
static void
s_wait_seen(int opens, int submits)
{
    int64_t deadline = dpool_clock_ms() + 6000;
    bool seen = false;
    while (!seen && dpool_clock_ms() < deadline) {
        pthread_mutex_lock(&fake->lock);
        seen = fake->opens >= opens && fake->submit_count >= submits;
        pthread_mutex_unlock(&fake->lock);
        zclock_sleep(10);
    }
    zclock_sleep(300); // and nothing more than that comes
    pthread_mutex_lock(&fake->lock);
    cr_assert_eq(fake->opens, opens, "%d POOL_OPENs, not %d", fake->opens, opens);
    cr_assert_eq(fake->submit_count, submits, "%d SUBMITs, not %d", fake->submit_count, submits);
    pthread_mutex_unlock(&fake->lock);
}

// Submits three held tasks and returns their handles.
static void
s_submit_held(dpool_t *pool, dpool_result_t *results[3])
{
    for (int i = 0; i < 3; i++)
        results[i] = dpool_apply_asyncf(pool, "hold", "i", i);
    s_wait_seen(1, 3);
}

// The fake answers every task it saw `times` times; each handle must succeed.
static void
s_answer_and_check(dpool_result_t *results[3], int times)
{
    pthread_mutex_lock(&fake->lock);
    fake->answer_times = times;
    pthread_mutex_unlock(&fake->lock);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(dpool_result_get(results[i], 5, NULL, NULL), DPOOL_OK);
        dpool_result_destroy(&results[i]);
    }
}

Test(recovery_client, a_new_epoch_reopens_and_resends_unanswered_tasks_once_in_order)
{
    dpool_t *pool = s_open(0);
    dpool_result_t *results[3];
    s_submit_held(pool, results);
    pthread_mutex_lock(&fake->lock);
    fake->epoch = 2; // "restarted": the next HEARTBEAT says so
    pthread_mutex_unlock(&fake->lock);
    s_wait_seen(2, 6);
    pthread_mutex_lock(&fake->lock);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(fake->submits[3 + i], (uint64_t)(i + 1), "same ids, same order");
    pthread_mutex_unlock(&fake->lock);
    // Each task ran twice, so each RESULT comes twice: one outcome each, no error.
    s_answer_and_check(results, 2);
    dpool_destroy(&pool);
}

Test(recovery_client, resent_submissions_carry_the_same_arguments_small_or_large)
{
    // A SUBMIT larger than a BATCH takes inline goes alone, and the table keeps it
    // apart; the small ones are kept in their table entries. All go again whole.
    dpool_t *pool = s_open(0);
    size_t large_size = 100 * 1024;
    char *large = malloc(large_size + 1);
    cr_assert_not_null(large);
    for (size_t i = 0; i < large_size; i++)
        large[i] = (char)('a' + i % 26);
    large[large_size] = '\0';
    dpool_result_t *results[3] = {dpool_apply_asyncf(pool, "hold", "i", 7),
                                  dpool_apply_asyncf(pool, "hold", "s", large),
                                  dpool_apply_asyncf(pool, "hold", "s", "twelve bytes")};
    free(large);
    s_wait_seen(1, 3);
    pthread_mutex_lock(&fake->lock);
    fake->epoch = 2;
    pthread_mutex_unlock(&fake->lock);
    s_wait_seen(2, 6);
    // Read under the lock, checked after it (a failed check must not hold it).
    uint64_t ids[6], sums[6];
    size_t sizes[6];
    pthread_mutex_lock(&fake->lock);
    memcpy(ids, fake->submits, sizeof ids);
    memcpy(sizes, fake->payload_sizes, sizeof sizes);
    memcpy(sums, fake->payload_sums, sizeof sums);
    pthread_mutex_unlock(&fake->lock);
    cr_assert_gt(sizes[1], large_size, "the large one arrived whole");
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(ids[3 + i], ids[i]);
        cr_assert_eq(sizes[3 + i], sizes[i], "task %d's size", i);
        cr_assert_eq(sums[3 + i], sums[i], "task %d's bytes", i);
    }
    s_answer_and_check(results, 2);
    dpool_destroy(&pool);
}

Test(recovery_client, peer_not_registered_reopens_and_resends)
{
    dpool_t *pool = s_open(0);
    dpool_result_t *results[3];
    s_submit_held(pool, results);
    pthread_mutex_lock(&fake->lock);
    fake->send_not_registered = true;
    pthread_mutex_unlock(&fake->lock);
    s_wait_seen(2, 6);
    s_answer_and_check(results, 1);
    dpool_destroy(&pool);
}

Test(recovery_client, a_silent_broker_is_lost_after_3_s_and_resynced_when_it_speaks)
{
    dpool_t *pool = s_open(0);
    dpool_result_t *results[3];
    s_submit_held(pool, results);
    pthread_mutex_lock(&fake->lock);
    fake->mute = true;
    pthread_mutex_unlock(&fake->lock);
    zclock_sleep(5000); // 2 s past the 3 s, for an I/O thread that wakes late under load
    // Lost, but far from the reconnect timeout: nothing has failed.
    for (int i = 0; i < 3; i++)
        cr_assert_not(dpool_result_ready(results[i]));
    pthread_mutex_lock(&fake->lock);
    fake->mute = false;
    pthread_mutex_unlock(&fake->lock);
    s_wait_seen(2, 6);
    s_answer_and_check(results, 1);
    dpool_destroy(&pool);
}

Test(recovery_client, output_gets_a_host_prefix_per_line_only_when_asked)
{
    cr_redirect_stdout();
    dpool_t *pool = s_open(DPOOL_OUTPUT_PREFIX_HOST);
    dpool_result_t *result = dpool_apply_asyncf(pool, "print", "");
    cr_assert_eq(dpool_result_get(result, 5, NULL, NULL), DPOOL_OK);
    dpool_result_destroy(&result);
    dpool_destroy(&pool);
    setenv("DPOOL_OUTPUT_PREFIX", "none", 1);
    pool = s_open(0); // the default follows the environment: verbatim
    result = dpool_apply_asyncf(pool, "print", "");
    cr_assert_eq(dpool_result_get(result, 5, NULL, NULL), DPOOL_OK);
    dpool_result_destroy(&result);
    dpool_destroy(&pool);
    setenv("DPOOL_OUTPUT_PREFIX", "host", 1);
    pool = s_open(0);
    result = dpool_apply_asyncf(pool, "print", "");
    cr_assert_eq(dpool_result_get(result, 5, NULL, NULL), DPOOL_OK);
    dpool_result_destroy(&result);
    dpool_destroy(&pool);
    fflush(stdout);
    cr_assert_stdout_eq_str("[host-a] hello\n[host-a] bye\n"
                            "hello\nbye\n"
                            "[host-a] hello\n[host-a] bye\n");
}
