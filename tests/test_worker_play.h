/*  Shared by the dpool-worker end-to-end tests (test_worker_daemon.c,
    test_worker_tasks.c): the test plays the broker on a ROUTER bound to a free
    loopback port and starts the real daemon against it. Every wait is bounded; the
    daemon is stopped by its pid in teardown() (each file's suite .fini) whatever
    happened. Criterion runs each test in its own process, so this file's static
    state is per test. Helpers are static inline so a file may use any subset. */
#ifndef TEST_WORKER_PLAY_H
#define TEST_WORKER_PLAY_H

#define _GNU_SOURCE // prctl with C11 on
#include "dpool_peer.h"
#include "dpool_proto.h"

#include <criterion/criterion.h>
#include <dpool/errors.h>
#include <errno.h>
#include <msgpack.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define WORKER_BIN DPOOL_BIN_DIR "/dpool-worker"
#define EXAMPLE_MODULE DPOOL_LIB_DIR "/libdpool_example.so"

static pid_t s_pid = -1;                 // the daemon under test
static zsock_t *s_router = NULL;         // the test's broker socket
static zframe_t *s_peer = NULL;          // the daemon's routing id, from its first message
static unsigned s_credits = 0;           // credits received (CREDIT and WORKER_RESULT)
static dpool_msg_t s_hello;              // the daemon's WORKER_HELLO
static bool s_bye = false;               // a BYE arrived
static zlist_t *s_held = NULL;           // the rest of a BATCH the daemon sent
static unsigned s_batch_results = 0;     // WORKER_RESULTs read so far from the last BATCH
static unsigned s_batch_results_max = 0; // the most any one BATCH carried

// Waits up to timeout_ms for the daemon to exit; returns true when it did.
static inline bool
s_reap(int timeout_ms, int *status)
{
    for (int waited = 0; waited <= timeout_ms; waited += 10) {
        pid_t done = waitpid(s_pid, status, WNOHANG);
        if (done == s_pid || (done < 0 && errno == ECHILD))
            return true;
        usleep(10000);
    }
    return false;
}

static inline void
s_stop_daemon(void)
{
    int status;
    if (s_pid > 0) {
        kill(s_pid, SIGTERM);
        if (!s_reap(5000, &status)) {
            kill(s_pid, SIGKILL);
            waitpid(s_pid, &status, 0);
        }
    }
    s_pid = -1;
}

static inline void
teardown(void)
{
    s_stop_daemon();
    zframe_destroy(&s_peer);
    for (zmsg_t *left; s_held && (left = zlist_pop(s_held));)
        zmsg_destroy(&left);
    zlist_destroy(&s_held);
    dpool_msg_reset(&s_hello);
    zsock_destroy(&s_router);
}

// Binds the broker socket and starts dpool-worker against it with extra flags
// (max_tasks and initializer may be NULL).
static inline void
s_start_with(const char *processes, const char *max_tasks, const char *initializer)
{
    s_router = zsock_new(ZMQ_ROUTER);
    cr_assert_not_null(s_router);
    cr_assert_gt(zsock_bind(s_router, "tcp://127.0.0.1:*"), 0);
    char endpoint[256];
    snprintf(endpoint, sizeof endpoint, "%s", zsock_endpoint(s_router));
    const char *argv[16] = {WORKER_BIN, "--broker",     endpoint,      "--processes", processes,
                            "--module", EXAMPLE_MODULE, "--log-level", "warn"};
    int argc = 9;
    if (max_tasks) {
        argv[argc++] = "--maxtasksperchild";
        argv[argc++] = max_tasks;
    }
    if (initializer) {
        argv[argc++] = "--initializer";
        argv[argc++] = initializer;
    }
    s_pid = fork();
    cr_assert_geq(s_pid, 0);
    if (s_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); // the daemon must not outlive a crashed test
        execv(WORKER_BIN, (char *const *)argv);
        _exit(127);
    }
}

// Receives one message within timeout_ms into msg (reset first). HEARTBEATs are
// swallowed, CREDITs and result credits counted, a BYE noted. Returns false on
// timeout.
static inline bool
s_recv(dpool_msg_t *msg, int timeout_ms)
{
    zpoller_t *poller = zpoller_new(s_router, NULL);
    int64_t deadline = zclock_mono() + timeout_ms;
    bool got = false;
    while (!got) {
        zmsg_t *zmsg = s_held ? zlist_pop(s_held) : NULL;
        if (!zmsg) {
            int64_t left = deadline - zclock_mono();
            if (left <= 0 || !zpoller_wait(poller, (int)left))
                break;
            zmsg_t *received = zmsg_recv(s_router);
            zlist_destroy(&s_held);
            s_held = dpool_peer_split(&received, true);
            cr_assert_not_null(s_held, "the daemon sent a malformed BATCH");
            s_batch_results = 0;
            zmsg = zlist_pop(s_held);
        }
        zframe_t *peer = NULL;
        const char *why = "";
        dpool_msg_reset(msg);
        int rc = dpool_proto_decode(&zmsg, true, &peer, msg, &why);
        cr_assert_eq(rc, DPOOL_OK, "the daemon sent a malformed message: %s", why);
        if (!s_peer)
            s_peer = zframe_dup(peer);
        zframe_destroy(&peer);
        if (msg->command == DPOOL_CMD_CREDIT || msg->command == DPOOL_CMD_WORKER_RESULT)
            s_credits += msg->count;
        if (msg->command == DPOOL_CMD_WORKER_RESULT && ++s_batch_results > s_batch_results_max)
            s_batch_results_max = s_batch_results;
        if (msg->command == DPOOL_CMD_BYE)
            s_bye = true;
        got = msg->command != DPOOL_CMD_HEARTBEAT;
    }
    zpoller_destroy(&poller);
    return got;
}

// Receives until a message with command arrives; every other kind but CREDIT,
// HELLO and BYE fails the test (a stray result would be a bug).
static inline void
s_expect(dpool_cmd_t command, dpool_msg_t *msg, int timeout_ms)
{
    int64_t deadline = zclock_mono() + timeout_ms;
    for (;;) {
        int64_t left = deadline - zclock_mono();
        cr_assert(left > 0 && s_recv(msg, (int)left), "no %s within %d ms",
                  dpool_proto_command_name(command), timeout_ms);
        if (msg->command == command)
            return;
        cr_assert(msg->command == DPOOL_CMD_CREDIT || msg->command == DPOOL_CMD_BYE,
                  "expected %s, got %s", dpool_proto_command_name(command),
                  dpool_proto_command_name(msg->command));
    }
}

// Starts the daemon and waits for its hello and as many credits as processes.
static inline void
s_start_ready_with(const char *processes, const char *max_tasks, const char *initializer)
{
    s_start_with(processes, max_tasks, initializer);
    s_expect(DPOOL_CMD_WORKER_HELLO, &s_hello, 10000);
    dpool_msg_t msg = {0};
    while (s_credits < s_hello.count)
        s_expect(DPOOL_CMD_CREDIT, &msg, 10000);
    dpool_msg_reset(&msg);
}

static inline void
s_start_ready(const char *processes, const char *max_tasks)
{
    s_start_ready_with(processes, max_tasks, NULL);
}

// Sends TASK [task_id, function, flags, time_limit_ms] with args_size bytes of args
// as the payload.
static inline void
s_send_task_full(uint64_t task_id, const char *function, const void *args, size_t args_size,
                 uint32_t flags, uint32_t time_limit_ms)
{
    cr_assert_gt(s_credits, 0, "the test broker must hold a credit to send a task");
    s_credits--;
    dpool_msg_t msg = {.command = DPOOL_CMD_TASK,
                       .task_id = task_id,
                       .name = (char *)function,
                       .flags = flags,
                       .time_limit_ms = time_limit_ms,
                       .payload = zframe_new(args, args_size)};
    cr_assert_eq(dpool_proto_send(s_router, &msg, s_peer), DPOOL_OK);
}

// Sends TASK [task_id, function] with args_size bytes of args as the payload.
static inline void
s_send_raw_task(uint64_t task_id, const char *function, const void *args, size_t args_size)
{
    s_send_task_full(task_id, function, args, args_size, 0, 0);
}

// Sends a task whose arguments are [] or [one string] or [one number].
static inline void
s_send_task(uint64_t task_id, const char *function, const char *text, double number)
{
    msgpack_sbuffer args;
    msgpack_sbuffer_init(&args);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &args, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, text || number >= 0 ? 1 : 0);
    if (text) {
        msgpack_pack_str(&pk, strlen(text));
        msgpack_pack_str_body(&pk, text, strlen(text));
    } else if (number >= 0) {
        msgpack_pack_double(&pk, number);
    }
    s_send_raw_task(task_id, function, args.data, args.size);
    msgpack_sbuffer_destroy(&args);
}

// Waits for the result of task_id into msg and decodes its payload into result.
static inline void
s_expect_result(uint64_t task_id, dpool_msg_t *msg, msgpack_unpacked *result, int timeout_ms)
{
    s_expect(DPOOL_CMD_WORKER_RESULT, msg, timeout_ms);
    cr_assert_eq(msg->task_id, task_id, "result of task %llu (code %d: %s), not of %llu",
                 (unsigned long long)msg->task_id, msg->code, msg->text ? msg->text : "",
                 (unsigned long long)task_id);
    if (msg->code != DPOOL_OK) {
        cr_assert_null(msg->payload, "a failed task has no result payload");
        return;
    }
    cr_assert_not_null(msg->payload);
    if (!result)
        return;
    size_t offset = 0;
    cr_assert_eq(msgpack_unpack_next(result, (const char *)zframe_data(msg->payload),
                                     zframe_size(msg->payload), &offset),
                 MSGPACK_UNPACK_SUCCESS);
}

// The pid from a hostpid result.
static inline uint64_t
s_hostpid(uint64_t task_id)
{
    dpool_msg_t msg = {0};
    msgpack_unpacked result;
    msgpack_unpacked_init(&result);
    s_send_task(task_id, "hostpid", NULL, -1);
    s_expect_result(task_id, &msg, &result, 5000);
    cr_assert_eq(msg.code, DPOOL_OK, "%s", msg.text ? msg.text : "");
    cr_assert_eq(result.data.type, MSGPACK_OBJECT_MAP);
    cr_assert_eq(result.data.via.map.size, 2);
    uint64_t pid = result.data.via.map.ptr[1].val.via.u64;
    cr_assert_gt(pid, 0);
    msgpack_unpacked_destroy(&result);
    dpool_msg_reset(&msg);
    return pid;
}

static inline bool
s_offers(const char *function)
{
    for (size_t i = 0; i < s_hello.function_count; i++)
        if (strcmp(s_hello.functions[i], function) == 0)
            return true;
    return false;
}

// Runs dpool-worker with argv, returns its exit status and its stderr in err.
static inline int
s_run_cli(const char *const *argv, char *err, size_t err_size)
{
    int pipe_fds[2];
    cr_assert_eq(pipe(pipe_fds), 0);
    s_pid = fork();
    cr_assert_geq(s_pid, 0);
    if (s_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(pipe_fds[1], STDERR_FILENO);
        execv(WORKER_BIN, (char *const *)argv);
        _exit(127);
    }
    close(pipe_fds[1]);
    size_t used = 0;
    ssize_t got;
    while (used + 1 < err_size && (got = read(pipe_fds[0], err + used, err_size - 1 - used)) > 0)
        used += (size_t)got;
    err[used] = '\0';
    close(pipe_fds[0]);
    int status = 0;
    cr_assert(s_reap(5000, &status), "dpool-worker did not exit");
    s_pid = -1;
    return status;
}

#endif
