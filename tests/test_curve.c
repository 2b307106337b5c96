/*  CURVE between the broker and its peers (docs/PROTOCOL.md, "Security (CURVE)"): the
    real dpool-broker with --curve-secret and --authorized, real dpool-worker daemons with
    their keys, and clients played by the test on raw DEALER sockets with zcert keys.
    Unknown keys and wrong roles are refused with ERROR -17 and nothing else; a peer
    without CURVE gets no answer at all; and a TCP relay between a client and the broker
    shows that no task payload crosses the wire in clear (while it does without CURVE). */
#include "dpool_harness.h"

#include <dpool/dpool.h>
#include "dpool_proto.h"

#include <criterion/criterion.h>
#include <dpool/errors.h>
#include <msgpack.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define MARKER "PLAINTEXT-MARKER-4242"

static dpool_harness_t *harness;
static zcert_t *broker_cert;   // the broker's key pair
static zcert_t *client_cert;   // authorised in clients/
static zcert_t *worker_cert;   // authorised in workers/
static zcert_t *stranger_cert; // in neither folder
static char dir[512];          // the harness's scratch folder
static char path_a[600], path_b[600];

static const char *
in_dir(char *buffer, const char *name)
{
    snprintf(buffer, 600, "%s/%s", dir, name);
    return buffer;
}

// Key pairs made fresh for each test, written as dpool keygen writes them.
static void
setup(void)
{
    harness = dpool_harness_new();
    cr_assert_not_null(harness);
    snprintf(dir, sizeof dir, "%s", dpool_harness_dir(harness));
    broker_cert = zcert_new();
    client_cert = zcert_new();
    worker_cert = zcert_new();
    stranger_cert = zcert_new();
    cr_assert(broker_cert && client_cert && worker_cert && stranger_cert);
    cr_assert_eq(zsys_dir_create("%s/authorized/clients", dir), 0);
    cr_assert_eq(zsys_dir_create("%s/authorized/workers", dir), 0);
    cr_assert_eq(zcert_save(broker_cert, in_dir(path_a, "broker.key")), 0);
    cr_assert_eq(zcert_save(client_cert, in_dir(path_a, "client.key")), 0);
    cr_assert_eq(zcert_save(worker_cert, in_dir(path_a, "worker.key")), 0);
    cr_assert_eq(zcert_save(stranger_cert, in_dir(path_a, "stranger.key")), 0);
    cr_assert_eq(zcert_save_public(client_cert, in_dir(path_a, "authorized/clients/alice.key")), 0);
    cr_assert_eq(zcert_save_public(worker_cert, in_dir(path_a, "authorized/workers/host1")), 0);
}

static void
teardown(void)
{
    dpool_harness_destroy(&harness);
    zcert_destroy(&broker_cert);
    zcert_destroy(&client_cert);
    zcert_destroy(&worker_cert);
    zcert_destroy(&stranger_cert);
}

TestSuite(curve, .init = setup, .fini = teardown, .timeout = 60);

static const char *
start_curve_broker(void)
{
    const char *args[] = {"--curve-secret",
                          in_dir(path_a, "broker.key_secret"),
                          "--authorized",
                          in_dir(path_b, "authorized"),
                          "--grace",
                          "5",
                          NULL};
    const char *endpoint = dpool_harness_start_broker(harness, args);
    cr_assert_not_null(endpoint, "the CURVE broker did not start");
    return endpoint;
}

// Starts a dpool-worker daemon with one process and the key pair in secret_name.
static pid_t
start_curve_worker(const char *secret_name)
{
    const char *args[] = {"--curve-secret", in_dir(path_a, secret_name), "--broker-key",
                          in_dir(path_b, "broker.key"), NULL};
    pid_t pid = dpool_harness_start_worker(harness, 1, args);
    cr_assert_gt(pid, 0);
    return pid;
}

// A DEALER to endpoint; with cert (may be NULL) a CURVE client of the test's broker.
static zsock_t *
peer(const char *endpoint, zcert_t *cert, const char *routing_id)
{
    zsock_t *sock = zsock_new(ZMQ_DEALER);
    cr_assert_not_null(sock);
    zsock_set_linger(sock, 0);
    zsock_set_identity(sock, routing_id);
    if (cert) {
        zcert_apply(cert, sock);
        zsock_set_curve_serverkey(sock, zcert_public_txt(broker_cert));
    }
    cr_assert_eq(zsock_connect(sock, "%s", endpoint), 0);
    return sock;
}

static void
send_msg(zsock_t *sock, dpool_msg_t msg)
{
    cr_assert_eq(dpool_proto_send(sock, &msg, NULL), DPOOL_OK);
}

// Receives one message within timeout_ms into *msg (caller resets it); false on none.
static bool
recv_msg(zsock_t *sock, dpool_msg_t *msg, int timeout_ms)
{
    zpoller_t *poller = zpoller_new(sock, NULL);
    bool got = zpoller_wait(poller, timeout_ms) == sock;
    zpoller_destroy(&poller);
    if (!got)
        return false;
    zmsg_t *zmsg = zmsg_recv(sock);
    const char *why = NULL;
    memset(msg, 0, sizeof *msg);
    cr_assert_eq(dpool_proto_decode(&zmsg, false, NULL, msg, &why), DPOOL_OK,
                 "the broker sent a malformed message: %s", why);
    return true;
}

// The next message that is not a HEARTBEAT, which must be command.
static void
expect(zsock_t *sock, dpool_cmd_t command, dpool_msg_t *msg, int timeout_ms)
{
    do {
        cr_assert(recv_msg(sock, msg, timeout_ms), "no %s within %d ms",
                  dpool_proto_command_name(command), timeout_ms);
        if (msg->command == DPOOL_CMD_HEARTBEAT)
            dpool_msg_reset(msg);
    } while (msg->command == 0);
    cr_assert_eq(msg->command, command, "expected %s, got %s (%d %s)",
                 dpool_proto_command_name(command), dpool_proto_command_name(msg->command),
                 msg->code, msg->text ? msg->text : "");
}

// Expects ERROR -17 whose text contains what.
static void
expect_refusal(zsock_t *sock, const char *what)
{
    dpool_msg_t error;
    expect(sock, DPOOL_CMD_ERROR, &error, 5000);
    cr_assert_eq(error.code, DPOOL_ERR_NOT_AUTHORISED);
    cr_assert(error.text && strstr(error.text, what), "ERROR text: %s",
              error.text ? error.text : "(nil)");
    dpool_msg_reset(&error);
}

// Asserts that nothing but HEARTBEATs and ERRORs arrives within ms; returns the ERRORs.
static int
expect_only_errors(zsock_t *sock, int ms)
{
    int errors = 0;
    int64_t deadline = zclock_mono() + ms;
    dpool_msg_t msg;
    while (zclock_mono() < deadline && recv_msg(sock, &msg, (int)(deadline - zclock_mono()))) {
        cr_assert(msg.command == DPOOL_CMD_HEARTBEAT || msg.command == DPOOL_CMD_ERROR,
                  "a refused peer got %s", dpool_proto_command_name(msg.command));
        errors += msg.command == DPOOL_CMD_ERROR;
        dpool_msg_reset(&msg);
    }
    return errors;
}

static zframe_t *
args_of(const char *text)
{
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init(&buffer);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &buffer, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_str(&pk, strlen(text));
    msgpack_pack_str_body(&pk, text, strlen(text));
    zframe_t *frame = zframe_new(buffer.data, buffer.size);
    msgpack_sbuffer_destroy(&buffer);
    return frame;
}

static bool
s_contains(const void *haystack, size_t size, const char *needle)
{
    size_t length = strlen(needle);
    for (size_t i = 0; size >= length && i <= size - length; i++)
        if (memcmp((const char *)haystack + i, needle, length) == 0)
            return true;
    return false;
}

// An unsigned figure of the status map (key), or -1.
static long
status_figure(zsock_t *sock, const char *key)
{
    send_msg(sock, (dpool_msg_t){.command = DPOOL_CMD_STATUS});
    dpool_msg_t reply;
    expect(sock, DPOOL_CMD_STATUS_REPLY, &reply, 5000);
    msgpack_unpacked unpacked;
    msgpack_unpacked_init(&unpacked);
    long value = -1;
    if (msgpack_unpack_next(&unpacked, (const char *)zframe_data(reply.payload),
                            zframe_size(reply.payload), NULL) == MSGPACK_UNPACK_SUCCESS &&
        unpacked.data.type == MSGPACK_OBJECT_MAP)
        for (uint32_t i = 0; i < unpacked.data.via.map.size; i++) {
            const msgpack_object_kv *kv = &unpacked.data.via.map.ptr[i];
            if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == strlen(key) &&
                memcmp(kv->key.via.str.ptr, key, strlen(key)) == 0 &&
                kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
                value = (long)kv->val.via.u64;
        }
    msgpack_unpacked_destroy(&unpacked);
    dpool_msg_reset(&reply);
    return value;
}

static void
wait_processes(zsock_t *sock, long processes)
{
    for (int i = 0; i < 200; i++) {
        if (status_figure(sock, "processes") == processes)
            return;
        zclock_sleep(50);
    }
    cr_assert_fail("the broker never counted %ld worker processes", processes);
}

// Opens pool 1 (cap 1), submits echo [text] as task 1 and returns its RESULT.
static void
echo_through(zsock_t *sock, const char *text, dpool_msg_t *result)
{
    send_msg(sock, (dpool_msg_t){.command = DPOOL_CMD_POOL_OPEN, .pool_ref = 1, .count = 1});
    dpool_msg_t opened;
    expect(sock, DPOOL_CMD_POOL_OPENED, &opened, 5000);
    cr_assert_eq(opened.code, DPOOL_OK);
    dpool_msg_reset(&opened);
    send_msg(sock, (dpool_msg_t){.command = DPOOL_CMD_SUBMIT,
                                 .pool_ref = 1,
                                 .task_id = 1,
                                 .name = "echo",
                                 .payload = args_of(text)});
    expect(sock, DPOOL_CMD_RESULT, result, 10000);
    cr_assert_eq(result->task_id, 1);
    cr_assert_eq(result->code, DPOOL_OK, "echo failed: %s", result->text ? result->text : "");
    cr_assert(result->payload &&
                  s_contains(zframe_data(result->payload), zframe_size(result->payload), text),
              "the result is not the echoed text");
}

// Waits (at most 10 s) until pid, started by the harness, has exited; then reaps it
// and returns its wait status.
static int
wait_exit(pid_t pid)
{
    for (int i = 0; i < 200; i++) {
        siginfo_t info = {0};
        if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid)
            return dpool_harness_stop(harness, pid);
        zclock_sleep(50);
    }
    cr_assert_fail("worker %d still runs after 10 s", (int)pid);
    return -1;
}

Test(curve, an_unknown_key_is_told_not_authorised_and_nothing_else)
{
    const char *endpoint = start_curve_broker();
    zsock_t *stranger = peer(endpoint, stranger_cert, "Cstranger");
    send_msg(stranger, (dpool_msg_t){.command = DPOOL_CMD_POOL_OPEN, .pool_ref = 1, .count = 1});
    expect_refusal(stranger, "not authorised: unknown key");
    send_msg(stranger, (dpool_msg_t){.command = DPOOL_CMD_STATUS});
    expect_refusal(stranger, "not authorised: unknown key");
    send_msg(stranger, (dpool_msg_t){.command = DPOOL_CMD_SUBMIT,
                                     .pool_ref = 1,
                                     .task_id = 1,
                                     .name = "echo",
                                     .payload = args_of("x")});
    expect_refusal(stranger, "not authorised");
    // Nothing else: no POOL_OPENED, no STATUS_REPLY, no RESULT.
    cr_assert_eq(expect_only_errors(stranger, 1000), 0);
    zsock_t *client = peer(endpoint, client_cert, "Calice");
    cr_assert_eq(status_figure(client, "unauthorised"), 3, "each refusal is counted");
    zsock_destroy(&client);
    zsock_destroy(&stranger);
}

Test(curve, an_authorised_client_gets_a_task_done_by_a_curve_worker)
{
    const char *endpoint = start_curve_broker();
    start_curve_worker("worker.key_secret");
    zsock_t *client = peer(endpoint, client_cert, "Calice");
    wait_processes(client, 1);
    dpool_msg_t result;
    echo_through(client, "hello over CURVE", &result);
    dpool_msg_reset(&result);
    cr_assert_eq(status_figure(client, "unauthorised"), 0);
    zsock_destroy(&client);
}

// libdpool as the CURVE client: its options name the key files.
static dpool_t *
open_library_pool(const char *endpoint, const char *secret_name, dpool_error_t *err)
{
    dpool_opts_t opts;
    dpool_opts_init(&opts);
    opts.broker = endpoint;
    opts.processes = 1;
    opts.connect_timeout = 3;
    opts.curve_secret = in_dir(path_a, secret_name);
    opts.broker_key = in_dir(path_b, "broker.key");
    return dpool_new_opts(&opts, err);
}

Test(curve, the_library_with_an_authorised_key_runs_tasks_and_a_stranger_is_refused)
{
    const char *endpoint = start_curve_broker();
    start_curve_worker("worker.key_secret");
    dpool_error_t err = {0};
    dpool_t *pool = open_library_pool(endpoint, "client.key_secret", &err);
    cr_assert_not_null(pool, "%s", err.message);
    dpool_buf_t args = {0}, value = {0};
    dpool_pack(&args, "ii", 20, 22);
    cr_assert_eq(dpool_apply(pool, "add", &args, &value, &err), DPOOL_OK, "%s", err.message);
    cr_assert(value.size == 1 && (unsigned char)value.data[0] == 42, "add gave the wrong bytes");
    dpool_buf_free(&args);
    dpool_buf_free(&value);
    dpool_destroy(&pool);
    dpool_t *refused = open_library_pool(endpoint, "stranger.key_secret", &err);
    cr_assert_null(refused, "a stranger's key opened a pool");
    cr_assert_eq(err.code, DPOOL_ERR_NOT_AUTHORISED, "code %d: %s", err.code, err.message);
    // A public certificate alone (no NAME.key_secret beside it) cannot be a client's key.
    zcert_t *lonely = zcert_new();
    cr_assert_eq(zcert_save_public(lonely, in_dir(path_a, "lonely.key")), 0);
    zcert_destroy(&lonely);
    dpool_t *public_only = open_library_pool(endpoint, "lonely.key", &err);
    cr_assert_null(public_only);
    cr_assert_eq(err.code, DPOOL_ERR_INVALID, "a public file taken as a secret key: %s",
                 err.message);
}

Test(curve, a_client_key_cannot_register_as_a_worker_nor_get_a_task)
{
    const char *endpoint = start_curve_broker();
    zsock_t *impostor = peer(endpoint, client_cert, "Wimpostor");
    const char *functions[] = {"echo"};
    send_msg(impostor, (dpool_msg_t){.command = DPOOL_CMD_WORKER_HELLO,
                                     .name = "impostor",
                                     .pid = 4242,
                                     .count = 1,
                                     .functions = (char **)functions,
                                     .function_count = 1});
    send_msg(impostor, (dpool_msg_t){.command = DPOOL_CMD_CREDIT, .count = 1});
    expect_refusal(impostor, "not authorised: a client key cannot act as a worker");
    // A real client's task for the function the impostor offered never reaches it.
    zsock_t *client = peer(endpoint, client_cert, "Calice");
    send_msg(client, (dpool_msg_t){.command = DPOOL_CMD_POOL_OPEN, .pool_ref = 1, .count = 1});
    dpool_msg_t opened;
    expect(client, DPOOL_CMD_POOL_OPENED, &opened, 5000);
    dpool_msg_reset(&opened);
    send_msg(client, (dpool_msg_t){.command = DPOOL_CMD_SUBMIT,
                                   .pool_ref = 1,
                                   .task_id = 1,
                                   .name = "echo",
                                   .payload = args_of("secret work")});
    expect_only_errors(impostor, 1500);
    cr_assert_eq(status_figure(client, "processes"), 0, "the impostor is not a host");
    // A real worker daemon holding a client key is refused too, and gives up at once.
    pid_t pid = start_curve_worker("client.key_secret");
    int status = wait_exit(pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) != 0, "status %d", status);
    zsock_destroy(&client);
    zsock_destroy(&impostor);
}

Test(curve, a_worker_key_cannot_open_a_pool_or_submit)
{
    const char *endpoint = start_curve_broker();
    zsock_t *intruder = peer(endpoint, worker_cert, "Cintruder");
    send_msg(intruder, (dpool_msg_t){.command = DPOOL_CMD_POOL_OPEN, .pool_ref = 1, .count = 1});
    expect_refusal(intruder, "not authorised: a worker key cannot submit");
    send_msg(intruder, (dpool_msg_t){.command = DPOOL_CMD_SUBMIT,
                                     .pool_ref = 1,
                                     .task_id = 1,
                                     .name = "echo",
                                     .payload = args_of("x")});
    expect_refusal(intruder, "not authorised: a worker key cannot submit");
    send_msg(intruder, (dpool_msg_t){.command = DPOOL_CMD_TERMINATE, .pool_ref = 1});
    expect_refusal(intruder, "a worker key cannot submit");
    cr_assert_eq(expect_only_errors(intruder, 1000), 0, "no POOL_OPENED, no RESULT");
    // STATUS is for either role.
    cr_assert_eq(status_figure(intruder, "unauthorised"), 3);
    zsock_destroy(&intruder);
}

Test(curve, sighup_reads_the_authorised_keys_again)
{
    const char *endpoint = start_curve_broker();
    zsock_t *newcomer = peer(endpoint, stranger_cert, "Cnewcomer");
    send_msg(newcomer, (dpool_msg_t){.command = DPOOL_CMD_STATUS});
    expect_refusal(newcomer, "unknown key");
    // Key rotation: authorise the new key, retire the old one, tell the broker.
    cr_assert_eq(
        zcert_save_public(stranger_cert, in_dir(path_a, "authorized/clients/newcomer.key")), 0);
    cr_assert_eq(unlink(in_dir(path_a, "authorized/clients/alice.key")), 0);
    cr_assert(dpool_harness_signal(harness, dpool_harness_broker_pid(harness), SIGHUP));
    bool served = false;
    for (int i = 0; i < 100 && !served; i++) {
        send_msg(newcomer, (dpool_msg_t){.command = DPOOL_CMD_STATUS});
        dpool_msg_t reply;
        cr_assert(recv_msg(newcomer, &reply, 5000), "no answer to STATUS");
        served = reply.command == DPOOL_CMD_STATUS_REPLY;
        cr_assert(served || reply.code == DPOOL_ERR_NOT_AUTHORISED);
        dpool_msg_reset(&reply);
        if (!served)
            zclock_sleep(50);
    }
    cr_assert(served, "the new key was not let in after SIGHUP");
    zsock_t *retired = peer(endpoint, client_cert, "Cretired");
    send_msg(retired, (dpool_msg_t){.command = DPOOL_CMD_POOL_OPEN, .pool_ref = 1, .count = 1});
    expect_refusal(retired, "unknown key");
    zsock_destroy(&retired);
    zsock_destroy(&newcomer);
}

Test(curve, a_worker_daemon_with_an_unknown_key_exits_non_zero)
{
    start_curve_broker();
    pid_t pid = start_curve_worker("stranger.key_secret");
    int status = wait_exit(pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 1, "status %d", status);
}

Test(curve, a_peer_without_curve_gets_no_answer)
{
    const char *endpoint = start_curve_broker();
    zsock_t *plain = peer(endpoint, NULL, "Cplain");
    send_msg(plain, (dpool_msg_t){.command = DPOOL_CMD_STATUS});
    send_msg(plain, (dpool_msg_t){.command = DPOOL_CMD_POOL_OPEN, .pool_ref = 1, .count = 1});
    dpool_msg_t msg;
    cr_assert_not(recv_msg(plain, &msg, 1500), "a peer without CURVE got %s",
                  dpool_proto_command_name(msg.command));
    // The broker serves on, and never saw those messages.
    zsock_t *client = peer(endpoint, client_cert, "Calice");
    cr_assert_eq(status_figure(client, "unauthorised"), 0);
    cr_assert_eq(status_figure(client, "malformed"), 0);
    zsock_destroy(&client);
    zsock_destroy(&plain);
}

Test(curve, flags_that_go_together)
{
    char *out = NULL, *err = NULL;
    const char *broker[] = {"dpool-broker", "--curve-secret", in_dir(path_a, "broker.key_secret"),
                            NULL};
    cr_assert_eq(dpool_harness_run(harness, broker, NULL, 10, &out, &err), 2);
    cr_assert(strstr(err, "--authorized"), "stderr: %s", err);
    free(out);
    free(err);
    const char *public_only[] = {"dpool-broker",
                                 "--curve-secret",
                                 in_dir(path_a, "authorized/clients/alice.key"),
                                 "--authorized",
                                 in_dir(path_b, "authorized"),
                                 NULL};
    cr_assert_eq(dpool_harness_run(harness, public_only, NULL, 10, &out, &err), 1);
    cr_assert(strstr(err, "--curve-secret"), "stderr: %s", err);
    free(out);
    free(err);
    const char *worker[] = {"dpool-worker", "--curve-secret", in_dir(path_a, "worker.key_secret"),
                            NULL};
    cr_assert_eq(dpool_harness_run(harness, worker, NULL, 10, &out, &err), 1);
    cr_assert(strstr(err, "--broker-key"), "stderr: %s", err);
    free(out);
    free(err);
}

// A TCP relay from 127.0.0.1:<port> to the broker's port that keeps a copy of every
// byte it passes, in either direction: what a capture of the broker's port would see.
#define RELAY_LINKS 8

typedef struct {
    int listener;
    int port;
    int target_port;
    atomic_bool stop;
    pthread_t thread;
    int fds[RELAY_LINKS][2]; // accepted side, broker side; -1 when free
    char *seen;              // every byte relayed; read after the thread ended
    size_t seen_size;
} relay_t;

static void
relay_close(relay_t *relay, int link)
{
    close(relay->fds[link][0]);
    close(relay->fds[link][1]);
    relay->fds[link][0] = relay->fds[link][1] = -1;
}

static void
relay_accept(relay_t *relay)
{
    int in = accept(relay->listener, NULL, NULL);
    if (in < 0)
        return;
    int link = 0;
    while (link < RELAY_LINKS && relay->fds[link][0] >= 0)
        link++;
    int out = link < RELAY_LINKS ? socket(AF_INET, SOCK_STREAM, 0) : -1;
    struct sockaddr_in to = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)relay->target_port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (out >= 0 && connect(out, (struct sockaddr *)&to, sizeof to) == 0) {
        relay->fds[link][0] = in;
        relay->fds[link][1] = out;
        return;
    }
    close(in);
    if (out >= 0)
        close(out);
}

// Copies what is readable on side of link to the other side; false at the end.
static bool
relay_pass(relay_t *relay, int link, int side)
{
    char buffer[16384];
    ssize_t got = read(relay->fds[link][side], buffer, sizeof buffer);
    if (got <= 0)
        return false;
    // No criterion assert here: this is not the test's thread.
    char *seen = realloc(relay->seen, relay->seen_size + (size_t)got);
    if (!seen)
        abort();
    relay->seen = seen;
    memcpy(relay->seen + relay->seen_size, buffer, (size_t)got);
    relay->seen_size += (size_t)got;
    for (ssize_t sent = 0; sent < got;) {
        ssize_t n = write(relay->fds[link][1 - side], buffer + sent, (size_t)(got - sent));
        if (n <= 0)
            return false;
        sent += n;
    }
    return true;
}

static void *
relay_run(void *arg)
{
    relay_t *relay = arg;
    while (!atomic_load(&relay->stop)) {
        struct pollfd fds[1 + 2 * RELAY_LINKS];
        int links[1 + 2 * RELAY_LINKS];
        nfds_t n = 0;
        fds[n++] = (struct pollfd){.fd = relay->listener, .events = POLLIN};
        for (int link = 0; link < RELAY_LINKS; link++)
            for (int side = 0; side < 2 && relay->fds[link][0] >= 0; side++) {
                links[n] = link * 2 + side;
                fds[n++] = (struct pollfd){.fd = relay->fds[link][side], .events = POLLIN};
            }
        if (poll(fds, n, 50) <= 0)
            continue;
        if (fds[0].revents & POLLIN)
            relay_accept(relay);
        for (nfds_t i = 1; i < n; i++) {
            int link = links[i] / 2, side = links[i] % 2;
            if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) && relay->fds[link][0] >= 0 &&
                !relay_pass(relay, link, side))
                relay_close(relay, link);
        }
    }
    return NULL;
}

static void
relay_start(relay_t *relay, const char *broker_endpoint)
{
    memset(relay, 0, sizeof *relay);
    for (int link = 0; link < RELAY_LINKS; link++)
        relay->fds[link][0] = relay->fds[link][1] = -1;
    const char *colon = strrchr(broker_endpoint, ':');
    cr_assert_not_null(colon);
    relay->target_port = atoi(colon + 1);
    relay->listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in at = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t size = sizeof at;
    cr_assert_eq(bind(relay->listener, (struct sockaddr *)&at, sizeof at), 0);
    cr_assert_eq(listen(relay->listener, 8), 0);
    cr_assert_eq(getsockname(relay->listener, (struct sockaddr *)&at, &size), 0);
    relay->port = ntohs(at.sin_port);
    atomic_init(&relay->stop, false);
    cr_assert_eq(pthread_create(&relay->thread, NULL, relay_run, relay), 0);
}

static void
relay_stop(relay_t *relay)
{
    atomic_store(&relay->stop, true);
    pthread_join(relay->thread, NULL);
    for (int link = 0; link < RELAY_LINKS; link++)
        if (relay->fds[link][0] >= 0)
            relay_close(relay, link);
    close(relay->listener);
}

// Runs echo [MARKER] from a client that reaches the broker through a relay; returns
// the relay (stopped) with what it saw. cert NULL: the client speaks without CURVE.
static void
echo_marker_through_relay(const char *endpoint, zcert_t *cert, relay_t *relay)
{
    zsock_t *direct = peer(endpoint, cert, "Cdirect");
    wait_processes(direct, 1);
    zsock_destroy(&direct);
    relay_start(relay, endpoint);
    char relayed[64];
    snprintf(relayed, sizeof relayed, "tcp://127.0.0.1:%d", relay->port);
    zsock_t *client = peer(relayed, cert, "Crelayed");
    dpool_msg_t result;
    echo_through(client, MARKER, &result);
    dpool_msg_reset(&result);
    zsock_destroy(&client);
    relay_stop(relay);
    cr_assert_gt(relay->seen_size, 0, "nothing went through the relay");
}

Test(curve, task_payloads_do_not_cross_the_wire_in_clear)
{
    const char *endpoint = start_curve_broker();
    start_curve_worker("worker.key_secret");
    relay_t relay;
    echo_marker_through_relay(endpoint, client_cert, &relay);
    cr_assert_not(s_contains(relay.seen, relay.seen_size, MARKER),
                  "the marker crossed the wire in clear with CURVE");
    free(relay.seen);
}

Test(curve, without_curve_the_same_relay_sees_the_payload)
{
    // The control: proves the relay would have caught the marker in clear.
    const char *endpoint = dpool_harness_start_broker(harness, NULL);
    cr_assert_not_null(endpoint);
    cr_assert_gt(dpool_harness_start_worker(harness, 1, NULL), 0);
    relay_t relay;
    echo_marker_through_relay(endpoint, NULL, &relay);
    cr_assert(s_contains(relay.seen, relay.seen_size, MARKER),
              "the relay did not see the marker in %zu bytes without CURVE", relay.seen_size);
    free(relay.seen);
}
