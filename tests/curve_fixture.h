/*  Shared by the CURVE tests (test_curve.c: keys and roles; test_curve_wire.c: what
    crosses the wire): a harness with the real dpool-broker and dpool-worker, key pairs
    made fresh for each test as dpool keygen writes them, and clients played on raw
    DEALER sockets with zcert keys. Criterion runs each test in its own process, so this
    file's static state is per test. Helpers are static inline so a file may use any
    subset; setup() and teardown() are each file's suite .init and .fini. */
#ifndef CURVE_FIXTURE_H
#define CURVE_FIXTURE_H

#include "dpool_harness.h"
#include "dpool_proto.h"
#include "peer_assert.h"

#include <criterion/criterion.h>
#include <dpool/errors.h>
#include <msgpack.h>
#include <stdio.h>
#include <string.h>

static dpool_harness_t *harness;
static zcert_t *broker_cert;   // the broker's key pair
static zcert_t *client_cert;   // authorised in clients/
static zcert_t *worker_cert;   // authorised in workers/
static zcert_t *stranger_cert; // in neither folder
static char dir[512];          // the harness's scratch folder
static char path_a[600], path_b[600];

static inline const char *
in_dir(char *buffer, const char *name)
{
    snprintf(buffer, 600, "%s/%s", dir, name);
    return buffer;
}

// Key pairs made fresh for each test, written as dpool keygen writes them.
static inline void
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

static inline void
teardown(void)
{
    dpool_harness_destroy(&harness);
    zcert_destroy(&broker_cert);
    zcert_destroy(&client_cert);
    zcert_destroy(&worker_cert);
    zcert_destroy(&stranger_cert);
}

static inline const char *
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
static inline pid_t
start_curve_worker(const char *secret_name)
{
    const char *args[] = {"--curve-secret", in_dir(path_a, secret_name), "--broker-key",
                          in_dir(path_b, "broker.key"), NULL};
    pid_t pid = dpool_harness_start_worker(harness, 1, args);
    cr_assert_gt(pid, 0);
    return pid;
}

// A DEALER to endpoint; with cert (may be NULL) a CURVE client of the test's broker.
static inline zsock_t *
peer(const char *endpoint, zcert_t *cert, const char *routing_id)
{
    zsock_t *sock =
        dpool_peer_connect_curve(endpoint, routing_id, cert, zcert_public_txt(broker_cert));
    cr_assert_not_null(sock, "cannot connect a DEALER to %s", endpoint);
    return sock;
}

static inline bool
s_contains(const void *haystack, size_t size, const char *needle)
{
    size_t length = strlen(needle);
    for (size_t i = 0; size >= length && i <= size - length; i++)
        if (memcmp((const char *)haystack + i, needle, length) == 0)
            return true;
    return false;
}

// An unsigned figure of the status map (key), or -1.
static inline long
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

static inline void
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
static inline void
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
                                 .payload = dpool_peer_payload_str(text)});
    expect(sock, DPOOL_CMD_RESULT, result, 10000);
    cr_assert_eq(result->task_id, 1);
    cr_assert_eq(result->code, DPOOL_OK, "echo failed: %s", result->text ? result->text : "");
    cr_assert(result->payload &&
                  s_contains(zframe_data(result->payload), zframe_size(result->payload), text),
              "the result is not the echoed text");
}

#endif
