/*  CURVE between the broker and its peers (docs/PROTOCOL.md, "Security (CURVE)"): the
    real dpool-broker with --curve-secret and --authorized, real dpool-worker daemons with
    their keys, and clients played by the test on raw DEALER sockets with zcert keys.
    Unknown keys and wrong roles are refused with ERROR -17 and nothing else, and a peer
    without CURVE gets no answer at all. What crosses the wire: test_curve_wire.c. */
#include "curve_fixture.h"

#include <dpool/dpool.h>

#include <criterion/criterion.h>
#include <dpool/errors.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

TestSuite(curve, .init = setup, .fini = teardown, .timeout = 60);

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
                                     .payload = dpool_peer_payload_str("x")});
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
                                   .payload = dpool_peer_payload_str("secret work")});
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
                                     .payload = dpool_peer_payload_str("x")});
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
