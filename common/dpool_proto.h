/*  dpool_proto: the wire protocol's frames, command ids and message struct.

    Every message is a ZeroMQ multipart message (docs/PROTOCOL.md has the full text):
        [routing id]   only on the broker's ROUTER side
        header         4 bytes: 'D' 'P' version command
        body           one msgpack array whose fields depend on the command
        [payload]      raw msgpack bytes (task arguments, a result, a status map),
                       carried opaque by the broker and never decoded there
    dpool_msg_t is the decoded form of one message: one struct for every command, with
    the fields that command does not use left zero. */
#ifndef DPOOL_PROTO_H
#define DPOOL_PROTO_H

#include <czmq.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DPOOL_PROTO_VERSION 1
#define DPOOL_PROTO_HEADER_SIZE 4

// Default endpoint of the broker, and the variable clients and workers read it from.
#define DPOOL_DEFAULT_ENDPOINT "tcp://127.0.0.1:5555"
#define DPOOL_ENDPOINT_ENV "DPOOL_BROKER"

// Names longer than this (functions, pools, hosts) are refused: they are identifiers,
// and a bound keeps a hostile peer from making the broker hold megabytes of key.
#define DPOOL_PROTO_NAME_MAX 255
// A worker daemon offering more functions than this is refused for the same reason.
#define DPOOL_PROTO_FUNCTIONS_MAX 1024

typedef enum {
    DPOOL_CMD_POOL_OPEN = 0x01,     // client -> broker
    DPOOL_CMD_POOL_OPENED = 0x02,   // broker -> client
    DPOOL_CMD_SUBMIT = 0x03,        // client -> broker
    DPOOL_CMD_RESULT = 0x04,        // broker -> client
    DPOOL_CMD_OUTPUT = 0x05,        // broker -> client
    DPOOL_CMD_TERMINATE = 0x06,     // client -> broker
    DPOOL_CMD_POOL_RELEASE = 0x07,  // client -> broker
    DPOOL_CMD_STATUS = 0x08,        // client -> broker
    DPOOL_CMD_STATUS_REPLY = 0x09,  // broker -> client
    DPOOL_CMD_ERROR = 0x0A,         // broker -> any peer
    DPOOL_CMD_WORKER_HELLO = 0x10,  // worker -> broker
    DPOOL_CMD_CREDIT = 0x11,        // worker -> broker
    DPOOL_CMD_TASK = 0x12,          // broker -> worker
    DPOOL_CMD_WORKER_RESULT = 0x13, // worker -> broker
    DPOOL_CMD_WORKER_OUTPUT = 0x14, // worker -> broker
    DPOOL_CMD_KILL = 0x15,          // broker -> worker
    DPOOL_CMD_HEARTBEAT = 0x20,     // any direction
    DPOOL_CMD_BYE = 0x21,           // worker or client -> broker
    // Framing, not a command: several messages in one (dpool_batch.h); never decoded
    // as a message, and so it has no schema and no name.
    DPOOL_CMD_BATCH = 0x30,
} dpool_cmd_t;

// SUBMIT / TASK flags. CHUNK: the payload is an array of argument arrays, run one
// after another in one process; the result is the array of their results.
#define DPOOL_FLAG_CHUNK 0x1u

// WORKER_HELLO flags. CHAINS: the daemon runs chained TASKs (TASK's `after`); the
// broker chains only to daemons that say so (an older one would ignore `after`).
#define DPOOL_HELLO_CHAINS 0x1u

// Output streams in OUTPUT / WORKER_OUTPUT.
#define DPOOL_STREAM_STDOUT 1
#define DPOOL_STREAM_STDERR 2

typedef struct {
    dpool_cmd_t command;
    uint64_t task_id;
    uint64_t after_id; // TASK: the task this one follows in the same process; 0 = any idle one
    uint32_t pool_ref;
    int32_t code;   // a dpool/errors.h code
    uint32_t count; // cap, credits, processes or stream, by command
    uint32_t pid;
    uint32_t flags;         // DPOOL_FLAG_* (SUBMIT, TASK)
    uint32_t time_limit_ms; // 0 = none (POOL_OPEN, TASK)
    uint32_t retries;       // re-runs after a lost worker (POOL_OPEN)
    char *name;             // owned, NUL-terminated: function, pool name or host; may be NULL
    char *text;             // owned, NUL-terminated: message or output bytes; may be NULL
    size_t text_size;       // bytes in text, not counting the terminator
    char **functions;       // owned array of owned strings (WORKER_HELLO)
    size_t function_count;
    zframe_t *payload; // owned raw msgpack, or NULL
    // Instead of payload, for a message decoded by an inbox that lends payloads
    // (dpool_batch_inbox_t.lend): its bytes inside the BATCH, valid until that inbox's
    // next read; NULL when payload is used or there is none.
    const uint8_t *payload_lent;
    size_t payload_lent_size;
} dpool_msg_t;

// Frees what msg owns and zeroes it, so it can be filled again. NULL-safe.
void dpool_msg_reset(dpool_msg_t *msg);

// The command's name ("SUBMIT"), or NULL for a byte that is no command.
const char *dpool_proto_command_name(int command);

// Builds the ZeroMQ message for msg, prefixed by a copy of routing_id when it is not
// NULL. Moves msg->payload into the message (msg->payload becomes NULL); everything
// else in msg stays the caller's. Returns an owned zmsg_t, or NULL when msg breaks
// the command's schema (a bug of ours) or memory runs out.
zmsg_t *dpool_proto_build(const dpool_msg_t *msg, zframe_t *routing_id);

// Whether msg's command is known and its payload present exactly when the command's
// schema asks for one (what dpool_proto_build checks before encoding).
bool dpool_proto_buildable(const dpool_msg_t *msg);

// As dpool_proto_buildable, for a payload that travels apart from msg: whether command
// is known and has_payload is what its schema asks for.
bool dpool_proto_buildable_as(dpool_cmd_t command, bool has_payload);

// Receives one ZeroMQ message from sock without waiting, as zmsg_recv would but
// cheaper; its first frame is a copy, without the metadata ZeroMQ attaches. NULL when
// none waits (zmq_errno() says EAGAIN), when memory runs out (the message is dropped
// whole; ENOMEM), or on the socket's or context's end (ETERM, ENOTSOCK, EINTR...).
zmsg_t *dpool_proto_recv(zsock_t *sock);

// Sends msg on sock, prefixed by routing_id when it is not NULL. msg->payload goes
// with it, or is dropped when the send fails (it becomes NULL either way) unless msg
// breaks its schema. Returns DPOOL_OK, DPOOL_ERR_INVALID for a message that breaks its
// schema, or DPOOL_ERR_IO.
int dpool_proto_send(zsock_t *sock, dpool_msg_t *msg, zframe_t *routing_id);

// Decodes *zmsg_p (consumed, always) into msg, which the caller has zeroed or reset.
// When with_routing_id is true, the first frame is the peer's routing id and is
// moved to *routing_id_p (owned by the caller; set even when decoding fails, so the
// peer can be answered). Returns DPOOL_OK or DPOOL_ERR_PROTO with *why set to a
// static text naming the fault; msg then holds nothing that needs freeing.
int dpool_proto_decode(zmsg_t **zmsg_p, bool with_routing_id, zframe_t **routing_id_p,
                       dpool_msg_t *msg, const char **why);

// Decodes a message given as its header and body bytes (borrowed), whose payload, when
// has_payload, the caller attaches to msg->payload itself. Checks what
// dpool_proto_decode checks. Returns DPOOL_OK or DPOOL_ERR_PROTO with *why set.
int dpool_proto_decode_parts(const uint8_t *header, size_t header_size, const uint8_t *body,
                             size_t body_size, bool has_payload, dpool_msg_t *msg,
                             const char **why);

#endif
