/*  The broker's records, shared by its modules (dpool_broker.c: socket, loop, outbox
    and timers; dpool_broker_inbound.c: admitting, decoding and routing what arrives;
    dpool_clients.c: client commands; dpool_hosts.c: worker-daemon commands;
    dpool_status.c: the status map). Not installed, not used outside broker/. */
#ifndef DPOOL_BROKER_INTERNAL_H
#define DPOOL_BROKER_INTERNAL_H

#include "dpool_auth.h"
#include "dpool_broker.h"
#include "dpool_journal.h"
#include "dpool_log.h"
#include "dpool_batch.h"
#include "dpool_proto.h"
#include "dpool_sched.h"

#include <czmq.h>

// Heartbeat interval, and how many silent intervals make a worker daemon lost: three,
// not one, because a daemon busy forking a replacement can be late once without being
// dead, and failing its tasks twice is worse than noticing a real loss 2 s later.
#define DPOOL_HEARTBEAT_MS 1000
#define DPOOL_HEARTBEAT_LIVENESS 3

// How many messages one loop turn reads before dispatching: large enough to batch a
// burst of submissions, small enough that results keep flowing under a flood.
#define DPOOL_BROKER_BATCH 1024

typedef struct dpool_pool dpool_pool_t;

// A pool as the broker knows it: private to one client, or named and shared.
struct dpool_pool {
    char *name;  // owned; NULL for a private pool
    char *label; // owned; shown in status
    dpool_sched_pool_t *sched_pool;
    uint32_t retries;       // re-runs of a task lost with its process or host
    uint32_t time_limit_ms; // a task running longer is killed by its worker daemon; 0 = none
    size_t holders;         // clients that opened it and have not released it
};

typedef struct {
    uint32_t ref;
    dpool_pool_t *pool;
} dpool_pool_ref_t;

typedef struct {
    zframe_t *routing_id;   // owned; also the key in broker->clients
    dpool_pool_ref_t *refs; // owned array
    size_t ref_count;
    size_t ref_capacity;
    size_t tasks; // tasks submitted and not yet answered
    // Client task id -> dpool_task_t, to run a re-sent task once. Made on the first
    // SUBMIT whose id is not above every id seen (only a re-send is), so the hot path of
    // a client that never reconnects pays no hashing and no memory for it.
    zhashx_t *task_ids;
    uint64_t last_task_id; // the highest task id this client has submitted
    // A client that has sent HEARTBEAT is held to liveness: silent for
    // DPOOL_HEARTBEAT_LIVENESS beats, it has vanished. Clients that never send one
    // (older or minimal ones) are not, so they are never dropped by mistake.
    bool heartbeats;
    int64_t expires_ms;
} dpool_client_t;

typedef struct {
    zframe_t *routing_id; // owned; also the key in broker->hosts
    char *host;           // owned
    uint32_t pid;
    uint32_t processes;
    char **functions; // owned (for status)
    size_t function_count;
    dpool_sched_host_t *sched_host;
    int64_t expires_ms; // lost when nothing arrives by then
} dpool_host_t;

// What the broker keeps per task while the scheduler holds it.
typedef struct {
    dpool_client_t *client;
    dpool_pool_t *pool;
    uint32_t pool_ref; // the client's ref for pool, as journalled
    uint64_t client_task_id;
    size_t args_size;
    char *function;  // owned copy, kept only when the pool retries (to re-queue)
    uint32_t flags;  // DPOOL_FLAG_* from the SUBMIT
    uint32_t losses; // times its process or host died while it ran
    char args[];     // the SUBMIT's arguments, kept inline: one allocation per task
} dpool_task_t;

struct dpool_broker {
    dpool_broker_config_t config;
    zsock_t *router;
    char *endpoint;
    dpool_sched_t *sched;
    zhashx_t *clients;     // routing id frame -> dpool_client_t
    zhashx_t *hosts;       // routing id frame -> dpool_host_t
    zhashx_t *outbox;      // routing id frame -> dpool_batch_t: sent at the end of a turn
    zhashx_t *named_pools; // name -> dpool_pool_t
    uint64_t malformed;    // malformed messages dropped
    uint64_t oversized;    // messages over --max-message refused
    dpool_auth_t *auth;    // NULL without CURVE: then nothing is checked
    uint64_t unauthorised; // messages refused for their key or its role
    // When a refusal was last logged: at most one line a second, whatever comes.
    int64_t unauthorised_logged_ms;
    dpool_journal_t *journal; // NULL without --journal
    bool replaying;           // rebuilding from the journal: nothing is journalled again
    uint64_t epoch;           // random per start: clients see a restart as a new epoch
    int64_t started_ms;
    int64_t next_heartbeat_ms;
    int64_t now_ms; // read once per loop turn
    int64_t now_us; // the same instant in microseconds (times tasks for chaining)
};

// Sends msg to the peer with this routing id, logging a failure. msg->payload moves.
// It leaves with everything else for that peer when the loop turn ends (a BATCH).
void dpool_broker_send(dpool_broker_t *self, zframe_t *routing_id, dpool_msg_t *msg);

// As dpool_broker_send, for a msg without a payload frame whose payload is payload_size
// bytes at payload (borrowed): copied once, into the peer's batch or a frame.
void dpool_broker_send_copy(dpool_broker_t *self, zframe_t *routing_id, dpool_msg_t *msg,
                            const void *payload, size_t payload_size);

// Sends what waits in the outbox, one message per peer.
void dpool_broker_flush(dpool_broker_t *self);

// The peer sent a BATCH, so it reads them: from now on what this broker has for it
// leaves at the end of each turn as one message. (A peer that never batches, a simple
// one written against the protocol, gets every message on its own.)
void dpool_broker_batches_to(dpool_broker_t *self, zframe_t *routing_id);

// One ZeroMQ message from the socket, consumed (dpool_broker_inbound.c): its sender's
// key is checked once, then each message of a BATCH is handled as if it had come alone.
void dpool_broker_handle(dpool_broker_t *self, zmsg_t **zmsg_p);

// Answers a peer's bad message with ERROR [code, text].
void dpool_broker_send_error(dpool_broker_t *self, zframe_t *routing_id, int code,
                             const char *text);

// Sends RESULT [client_task_id, code, text] to the task's client with result's payload
// (its frame moved, or its lent bytes copied; result may be NULL for none), updates the
// client's counters and frees the task record (and its client record when the client
// has nothing left).
void dpool_broker_finish_task(dpool_broker_t *self, dpool_task_t *task, int code, const char *text,
                              dpool_msg_t *result);

// Frees a task record and what it owns (no message is sent).
void dpool_broker_free_task(dpool_task_t *task);

// A task lost with its process or host: re-queued at the front of its pool when the
// pool allows another attempt (returns true), else left to the caller to fail.
bool dpool_broker_retry_task(dpool_broker_t *self, dpool_task_t *task);

// What a POOL_OPEN (or a journal record) asks for.
typedef struct {
    uint32_t pool_ref;
    const char *name; // NULL for a private pool
    uint32_t cap;
    uint32_t retries;
    uint32_t time_limit_ms;
} dpool_pool_spec_t;

// Pools and tasks (dpool_pools.c).
// The client's ref, opened now if it is not open yet (idempotent). NULL on out-of-memory.
dpool_pool_ref_t *dpool_pools_open(dpool_broker_t *self, dpool_client_t *client,
                                   const dpool_pool_spec_t *spec);
// The client's open ref with this number, or NULL.
dpool_pool_ref_t *dpool_pools_find(dpool_client_t *client, uint32_t ref);
// Queues submit's task with the args_size bytes of arguments at args (copied). Returns
// DPOOL_OK (also for a re-send of a task still held, which is dropped),
// DPOOL_ERR_QUEUE_FULL or DPOOL_ERR_NOMEM. Journals the task when the broker has a
// journal.
int dpool_pools_accept(dpool_broker_t *self, dpool_client_t *client, const dpool_pool_ref_t *ref,
                       const dpool_msg_t *submit, const uint8_t *args, size_t args_size);
// Fails every task of client in pool as terminated; running ones are killed.
void dpool_pools_terminate(dpool_broker_t *self, dpool_client_t *client, dpool_pool_t *pool);
// Frees a pool nobody holds once its last task is gone; keeps it otherwise.
void dpool_pools_release(dpool_broker_t *self, dpool_pool_t *pool);
// Frees every named pool left (shutdown, after the scheduler was drained).
void dpool_pools_destroy_all(dpool_broker_t *self);

// Client records (dpool_clients.c).
// Writes the client's routing id as text into name: printable ids (up to name_size - 1
// bytes) as they are, others as "(binary id of N bytes)". Returns true for the former.
bool dpool_clients_name(const dpool_client_t *client, char *name, size_t name_size);
// The client's table of task ids, built from its queued and running tasks the first
// time it is needed. NULL on out-of-memory.
zhashx_t *dpool_clients_task_ids(dpool_broker_t *self, dpool_client_t *client);
// The record for this routing id, made if new. NULL on out-of-memory.
dpool_client_t *dpool_clients_get(dpool_broker_t *self, zframe_t *routing_id);

// Client commands (dpool_clients.c). Each takes the decoded message, owned by the caller.
void dpool_clients_on_message(dpool_broker_t *self, zframe_t *routing_id, dpool_msg_t *msg);
// Frees a client record once it holds no pool and no task.
void dpool_clients_release_if_idle(dpool_broker_t *self, dpool_client_t *client);
// Sends heartbeats to clients that send them, and drops the ones that vanished: their
// private pools' tasks are cancelled (queued dropped, running killed); tasks in named
// pools belong to the pool and run on, their results going nowhere.
void dpool_clients_tick(dpool_broker_t *self);
// Frees every client record and private pool (shutdown).
void dpool_clients_destroy_all(dpool_broker_t *self);

// Worker-daemon commands (dpool_hosts.c).
void dpool_hosts_on_message(dpool_broker_t *self, zframe_t *routing_id, dpool_msg_t *msg);
// Sends heartbeats and forgets daemons whose liveness ran out.
void dpool_hosts_tick(dpool_broker_t *self);
// Forgets every host (shutdown), without failing tasks.
void dpool_hosts_destroy_all(dpool_broker_t *self);

// The status map (dpool_status.c): an owned frame of msgpack, or NULL on out-of-memory.
zframe_t *dpool_status_build(dpool_broker_t *self);

// Hash-table callbacks keyed by routing-id frames (bytes compared, not pointers).
size_t dpool_broker_frame_hash(const void *key);
int dpool_broker_frame_compare(const void *a, const void *b);

#endif
