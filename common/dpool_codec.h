/*  dpool_codec: the msgpack body of each command, to and from dpool_msg_t.

    Each command has a schema (docs/PROTOCOL.md, "Bodies"): the fields of its body
    array, in order. msgpack data never leaves this module: decoded strings are
    copied into owned, NUL-terminated buffers before the unpacked zone is freed. */
#ifndef DPOOL_CODEC_H
#define DPOOL_CODEC_H

#include "dpool_proto.h"

#include <msgpack.h>

// Payload rule of a command: whether a payload frame must, may or must not follow.
typedef enum {
    DPOOL_PAYLOAD_NONE = 0,
    DPOOL_PAYLOAD_OPTIONAL = 1,
    DPOOL_PAYLOAD_REQUIRED = 2,
} dpool_payload_rule_t;

// True when command is one this version knows; *rule then says its payload rule.
bool dpool_codec_known(int command, dpool_payload_rule_t *rule);

// Packs msg's body for msg->command into buffer (appended; the caller owns buffer).
// Returns DPOOL_OK, or DPOOL_ERR_INVALID when a field the schema needs is missing
// (a NULL name where a string is required) or the command is unknown.
int dpool_codec_encode(const dpool_msg_t *msg, msgpack_sbuffer *buffer);

// Decodes body bytes for msg->command (set by the caller) into msg's fields. Returns
// DPOOL_OK, or DPOOL_ERR_PROTO with *why a static text; on failure msg owns nothing
// new. DPOOL_ERR_NOMEM when a copy cannot be made.
int dpool_codec_decode(const void *body, size_t size, dpool_msg_t *msg, const char **why);

#endif
