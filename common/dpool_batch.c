/*  Batches of protocol messages: see dpool_batch.h. The messages of a BATCH are
    written one after another into one buffer, which becomes one frame: a frame costs
    an allocation or two on each side and a pass through each side's ZeroMQ I/O thread,
    and a task's messages are a few dozen bytes. A message whose payload is large
    travels alone in its plain form instead, its payload frame moved, not copied. */
#include "dpool_batch.h"

#include "dpool_codec.h"

#include <dpool/errors.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct dpool_batch {
    zlist_t *ready;      // of zmsg_t *: whole ZeroMQ messages to send first, in order
    msgpack_sbuffer run; // the messages after them, written as a BATCH's second frame
    size_t run_count;    // messages in run
    size_t count;        // messages waiting in all
    size_t bytes;        // their bytes, about
};

dpool_batch_t *
dpool_batch_new(void)
{
    dpool_batch_t *self = calloc(1, sizeof *self);
    if (self && !(self->ready = zlist_new())) {
        free(self);
        return NULL;
    }
    if (self)
        msgpack_sbuffer_init(&self->run);
    return self;
}

void
dpool_batch_destroy(dpool_batch_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dpool_batch_t *self = *self_p;
    zmsg_t *zmsg;
    while ((zmsg = zlist_pop(self->ready)))
        zmsg_destroy(&zmsg);
    zlist_destroy(&self->ready);
    msgpack_sbuffer_destroy(&self->run);
    free(self);
    *self_p = NULL;
}

static void
s_put_u32(uint8_t *at, uint32_t value)
{
    at[0] = (uint8_t)(value >> 24);
    at[1] = (uint8_t)(value >> 16);
    at[2] = (uint8_t)(value >> 8);
    at[3] = (uint8_t)value;
}

static uint32_t
s_get_u32(const uint8_t *at)
{
    return (uint32_t)at[0] << 24 | (uint32_t)at[1] << 16 | (uint32_t)at[2] << 8 | at[3];
}

// Where the message at *at of a run starts its parts; moves *at to the next. The run
// was written here or checked whole by s_check_run.
static void
s_part_at(const uint8_t *data, size_t *at, dpool_batch_part_t *part)
{
    const uint8_t *header = data + *at;
    uint32_t body = s_get_u32(header + DPOOL_PROTO_HEADER_SIZE);
    const uint8_t *after_body = header + DPOOL_PROTO_HEADER_SIZE + 4 + body;
    uint32_t payload = s_get_u32(after_body);
    *part = (dpool_batch_part_t){.header = header,
                                 .body = header + DPOOL_PROTO_HEADER_SIZE + 4,
                                 .body_size = body,
                                 .payload = payload ? after_body + 4 : NULL,
                                 .payload_size = payload};
    *at += (size_t)DPOOL_PROTO_HEADER_SIZE + 8 + (size_t)body + (size_t)payload;
}

// Appends part's frames to zmsg in the plain form: header, body, and the payload when
// there is one. Returns false when memory runs out.
static bool
s_add_plain_frames(zmsg_t *zmsg, const dpool_batch_part_t *part)
{
    return zmsg_addmem(zmsg, part->header, DPOOL_PROTO_HEADER_SIZE) == 0 &&
           zmsg_addmem(zmsg, part->body, part->body_size) == 0 &&
           (!part->payload || zmsg_addmem(zmsg, part->payload, part->payload_size) == 0);
}

// Writes a message's header and the place of its body's length at the end of out;
// returns where the message starts, or SIZE_MAX when memory runs out.
static size_t
s_write_begin(msgpack_sbuffer *out, const uint8_t *header)
{
    size_t start = out->size;
    const char no_length[4] = {0};
    if (msgpack_sbuffer_write(out, (const char *)header, DPOOL_PROTO_HEADER_SIZE) != 0 ||
        msgpack_sbuffer_write(out, no_length, sizeof no_length) != 0) {
        out->size = start;
        return SIZE_MAX;
    }
    return start;
}

// Ends the message begun at start, whose body out holds after its header: writes the
// body's length, then the payload's length and bytes. On failure the message leaves out.
static bool
s_write_end(msgpack_sbuffer *out, size_t start, const void *payload, size_t payload_size)
{
    size_t body = out->size - start - DPOOL_PROTO_HEADER_SIZE - 4;
    s_put_u32((uint8_t *)out->data + start + DPOOL_PROTO_HEADER_SIZE, (uint32_t)body);
    uint8_t length[4];
    s_put_u32(length, (uint32_t)payload_size);
    if (msgpack_sbuffer_write(out, (const char *)length, sizeof length) != 0 ||
        (payload_size && msgpack_sbuffer_write(out, payload, payload_size) != 0)) {
        out->size = start;
        return false;
    }
    return true;
}

// Counts the message that now ends the run, from start.
static void
s_count_in_run(dpool_batch_t *self, size_t start)
{
    self->bytes += self->run.size - start;
    self->run_count++;
    self->count++;
}

// s_write_end on the run, counting the message.
static int
s_end(dpool_batch_t *self, size_t start, const void *payload, size_t payload_size)
{
    if (!s_write_end(&self->run, start, payload, payload_size))
        return DPOOL_ERR_NOMEM;
    s_count_in_run(self, start);
    return DPOOL_OK;
}

// Closes the run: what it holds becomes one ZeroMQ message at the end of ready (the
// plain form for a single message, a BATCH for more). Returns false when memory ran
// out (the run's messages are then lost, as a failed send loses them).
static bool
s_close_run(dpool_batch_t *self)
{
    if (self->run_count == 0)
        return true;
    size_t count = self->run_count;
    self->run_count = 0;
    zmsg_t *zmsg = zmsg_new();
    bool ok = zmsg != NULL;
    if (ok && count == 1) {
        dpool_batch_part_t part;
        size_t at = 0;
        s_part_at((const uint8_t *)self->run.data, &at, &part);
        ok = s_add_plain_frames(zmsg, &part);
    } else if (ok) {
        const uint8_t header[DPOOL_PROTO_HEADER_SIZE] = {'D', 'P', DPOOL_PROTO_VERSION,
                                                         DPOOL_CMD_BATCH};
        ok = zmsg_addmem(zmsg, header, sizeof header) == 0 &&
             zmsg_addmem(zmsg, self->run.data, self->run.size) == 0;
    }
    self->run.size = 0;
    if (!ok || zlist_append(self->ready, zmsg) != 0) {
        zmsg_destroy(&zmsg);
        self->count -= count;
        return false;
    }
    return true;
}

// Closes the run first if a message of about size bytes would take it past the bytes
// or the messages a BATCH may hold; false when memory runs out.
static bool
s_room_in_run(dpool_batch_t *self, size_t size)
{
    if (self->run.size + size + 256 <= DPOOL_BATCH_MAX_BYTES &&
        self->run_count < DPOOL_BATCH_MAX_MESSAGES)
        return true;
    return s_close_run(self);
}

int
dpool_batch_plain_command(zmsg_t *zmsg)
{
    zframe_t *header = zmsg_first(zmsg);
    if (!header || zframe_size(header) != DPOOL_PROTO_HEADER_SIZE)
        return 0;
    return zframe_data(header)[3];
}

int
dpool_batch_add_alone(dpool_batch_t *self, zmsg_t **zmsg_p)
{
    if (!s_close_run(self) || zlist_append(self->ready, *zmsg_p) != 0) {
        zmsg_destroy(zmsg_p);
        return DPOOL_ERR_NOMEM;
    }
    self->bytes += zmsg_content_size(*zmsg_p);
    self->count++;
    *zmsg_p = NULL;
    return DPOOL_OK;
}

bool
dpool_batch_goes_alone(const uint8_t *message)
{
    dpool_batch_part_t part;
    size_t at = 0;
    s_part_at(message, &at, &part);
    return part.body_size + part.payload_size > DPOOL_BATCH_INLINE_MAX;
}

zmsg_t *
dpool_batch_plain(const uint8_t *message)
{
    dpool_batch_part_t part;
    size_t at = 0;
    s_part_at(message, &at, &part);
    zmsg_t *zmsg = zmsg_new();
    if (zmsg && !s_add_plain_frames(zmsg, &part))
        zmsg_destroy(&zmsg);
    return zmsg;
}

int
dpool_batch_add_encoded(dpool_batch_t *self, const uint8_t *message, size_t size)
{
    if (dpool_batch_goes_alone(message)) {
        zmsg_t *zmsg = dpool_batch_plain(message);
        return zmsg ? dpool_batch_add_alone(self, &zmsg) : DPOOL_ERR_NOMEM;
    }
    if (!s_room_in_run(self, size))
        return DPOOL_ERR_NOMEM;
    size_t start = self->run.size;
    if (msgpack_sbuffer_write(&self->run, (const char *)message, size) != 0)
        return DPOOL_ERR_NOMEM;
    s_count_in_run(self, start);
    return DPOOL_OK;
}

int
dpool_batch_encode(const dpool_msg_t *msg, const void *payload, size_t payload_size,
                   msgpack_sbuffer *out)
{
    // Lengths travel as 32 bits: a larger payload would arrive cut short.
    if (msg->payload || !dpool_proto_buildable_as(msg->command, payload_size > 0) ||
        payload_size > UINT32_MAX)
        return DPOOL_ERR_INVALID;
    const uint8_t header[DPOOL_PROTO_HEADER_SIZE] = {'D', 'P', DPOOL_PROTO_VERSION,
                                                     (uint8_t)msg->command};
    size_t start = s_write_begin(out, header);
    if (start == SIZE_MAX)
        return DPOOL_ERR_NOMEM;
    if (dpool_codec_encode(msg, out) != DPOOL_OK) {
        out->size = start;
        return DPOOL_ERR_INVALID;
    }
    return s_write_end(out, start, payload, payload_size) ? DPOOL_OK : DPOOL_ERR_NOMEM;
}

// Appends msg built as a plain message, for one too large to share a run; a payload
// given as bytes becomes its frame first.
static int
s_add_alone(dpool_batch_t *self, dpool_msg_t *msg, const void *payload, size_t payload_size)
{
    if (!msg->payload && payload && !(msg->payload = zframe_new(payload, payload_size)))
        return DPOOL_ERR_NOMEM;
    zmsg_t *zmsg = dpool_proto_build(msg, NULL);
    return zmsg ? dpool_batch_add_alone(self, &zmsg) : DPOOL_ERR_NOMEM;
}

// dpool_batch_add, the payload being payload_size bytes at payload (msg->payload's, or
// the caller's when msg has none).
static int
s_add(dpool_batch_t *self, dpool_msg_t *msg, const void *payload, size_t payload_size)
{
    if (payload_size + msg->text_size > DPOOL_BATCH_INLINE_MAX) {
        // Large (the body is mostly its text): alone, built as a plain message.
        return s_add_alone(self, msg, payload, payload_size);
    }
    if (!s_room_in_run(self, payload_size + msg->text_size))
        return DPOOL_ERR_NOMEM;
    // Header and body straight into the run: the body's length is written once known.
    const uint8_t header[DPOOL_PROTO_HEADER_SIZE] = {'D', 'P', DPOOL_PROTO_VERSION,
                                                     (uint8_t)msg->command};
    size_t start = s_write_begin(&self->run, header);
    if (start == SIZE_MAX)
        return DPOOL_ERR_NOMEM;
    if (dpool_codec_encode(msg, &self->run) != DPOOL_OK) {
        self->run.size = start;
        return DPOOL_ERR_INVALID;
    }
    size_t body = self->run.size - start - DPOOL_PROTO_HEADER_SIZE - 4;
    if (body + payload_size > DPOOL_BATCH_INLINE_MAX) {
        // Larger than its text said (a long list of functions): alone after all.
        self->run.size = start;
        return s_add_alone(self, msg, payload, payload_size);
    }
    int rc = s_end(self, start, payload, payload_size);
    if (rc == DPOOL_OK)
        zframe_destroy(&msg->payload); // copied into the run
    return rc;
}

int
dpool_batch_add(dpool_batch_t *self, dpool_msg_t *msg)
{
    if (!dpool_proto_buildable(msg))
        return DPOOL_ERR_INVALID;
    return msg->payload ? s_add(self, msg, zframe_data(msg->payload), zframe_size(msg->payload))
                        : s_add(self, msg, NULL, 0);
}

int
dpool_batch_add_copy(dpool_batch_t *self, dpool_msg_t *msg, const void *payload,
                     size_t payload_size)
{
    if (msg->payload || !dpool_proto_buildable_as(msg->command, payload != NULL))
        return DPOOL_ERR_INVALID;
    return s_add(self, msg, payload, payload_size);
}

size_t
dpool_batch_count(const dpool_batch_t *self)
{
    return self->count;
}

bool
dpool_batch_full(const dpool_batch_t *self)
{
    return self->count >= DPOOL_BATCH_MAX_MESSAGES || self->bytes >= DPOOL_BATCH_MAX_BYTES;
}

zmsg_t *
dpool_batch_take(dpool_batch_t *self, zframe_t *routing_id)
{
    if (zlist_size(self->ready) == 0)
        s_close_run(self);
    zmsg_t *taken = zlist_pop(self->ready);
    if (!taken) {
        self->count = 0;
        self->bytes = 0;
        return NULL;
    }
    // What a ZeroMQ message held leaves the counts with it; a BATCH counts its messages
    // in its second frame, so the counts are settled when the batch empties.
    if (zlist_size(self->ready) == 0 && self->run_count == 0) {
        self->count = 0;
        self->bytes = 0;
    }
    if (routing_id && zmsg_pushmem(taken, zframe_data(routing_id), zframe_size(routing_id)) != 0)
        zmsg_destroy(&taken);
    return taken;
}

// Sends the message that starts at message (as a run holds it) in its plain form on
// handle, after whatever frames of it were sent before (a routing id).
static bool
s_send_plain(void *handle, const uint8_t *message)
{
    dpool_batch_part_t part;
    size_t at = 0;
    s_part_at(message, &at, &part);
    // Once the first frame is queued the others follow: ZeroMQ counts its high-water
    // mark in whole messages.
    return zmq_send(handle, part.header, DPOOL_PROTO_HEADER_SIZE, ZMQ_SNDMORE) >= 0 &&
           zmq_send(handle, part.body, part.body_size, part.payload ? ZMQ_SNDMORE : 0) >= 0 &&
           (!part.payload || zmq_send(handle, part.payload, part.payload_size, 0) >= 0);
}

int
dpool_batch_send_plain(zsock_t *sock, const uint8_t *message)
{
    return s_send_plain(zsock_resolve(sock), message) ? DPOOL_OK : DPOOL_ERR_IO;
}

// Empties the batch when only its run was left in it.
static void
s_forget_run(dpool_batch_t *self)
{
    self->run.size = 0;
    self->run_count = 0;
    self->count = 0;
    self->bytes = 0;
}

// Sends the run, which is all that waits, straight from its buffer (the plain form for
// one message, a BATCH for more), prefixed by routing_id when not NULL, and empties the
// batch. Building a zmsg_t for it would allocate a list and a frame object per frame.
static int
s_send_run(dpool_batch_t *self, zsock_t *sock, zframe_t *routing_id)
{
    void *handle = zsock_resolve(sock);
    bool sent = !routing_id || zmq_send(handle, zframe_data(routing_id), zframe_size(routing_id),
                                        ZMQ_SNDMORE) >= 0;
    if (sent && self->run_count == 1)
        sent = s_send_plain(handle, (const uint8_t *)self->run.data);
    else if (sent) {
        const uint8_t header[DPOOL_PROTO_HEADER_SIZE] = {'D', 'P', DPOOL_PROTO_VERSION,
                                                         DPOOL_CMD_BATCH};
        sent = zmq_send(handle, header, sizeof header, ZMQ_SNDMORE) >= 0 &&
               zmq_send(handle, self->run.data, self->run.size, 0) >= 0;
    }
    s_forget_run(self);
    return sent ? DPOOL_OK : DPOOL_ERR_IO;
}

int
dpool_batch_send(dpool_batch_t *self, zsock_t *sock, zframe_t *routing_id)
{
    int rc = DPOOL_OK;
    while (self->count > 0) {
        if (zlist_size(self->ready) == 0 && self->run_count > 0) {
            if (rc == DPOOL_OK)
                return s_send_run(self, sock, routing_id);
            s_forget_run(self);
            break;
        }
        zmsg_t *zmsg = dpool_batch_take(self, routing_id);
        if (rc == DPOOL_OK && !zmsg)
            rc = DPOOL_ERR_NOMEM;
        // After a failure the rest is dropped too: nothing overtakes a lost message.
        if (zmsg && rc == DPOOL_OK && zmsg_send(&zmsg, sock) != 0)
            rc = DPOOL_ERR_IO;
        zmsg_destroy(&zmsg);
    }
    return rc;
}

static bool
s_is_batch_header(zframe_t *frame)
{
    const uint8_t *bytes = frame ? zframe_data(frame) : NULL;
    return frame && zframe_size(frame) == DPOOL_PROTO_HEADER_SIZE && bytes[0] == 'D' &&
           bytes[1] == 'P' && bytes[2] == DPOOL_PROTO_VERSION && bytes[3] == DPOOL_CMD_BATCH;
}

// Checks a BATCH's frame of messages whole: how many it holds, or -1 with *why.
static int
s_check_run(const uint8_t *data, size_t size, const char **why)
{
    size_t at = 0;
    int count = 0;
    if (size == 0) {
        *why = "BATCH holds no message";
        return -1;
    }
    while (at < size) {
        const uint8_t *header = data + at;
        size_t left = size - at;
        uint32_t body = 0, payload = 0;
        bool whole = left >= DPOOL_PROTO_HEADER_SIZE + 4;
        if (whole) {
            body = s_get_u32(header + DPOOL_PROTO_HEADER_SIZE);
            left -= DPOOL_PROTO_HEADER_SIZE + 4;
            whole = body <= left && left - body >= 4;
        }
        if (whole) {
            payload = s_get_u32(header + DPOOL_PROTO_HEADER_SIZE + 4 + body);
            left -= (size_t)body + 4;
            whole = payload <= left;
        }
        if (!whole) {
            *why = "BATCH ends inside a message";
            return -1;
        }
        if (header[3] == DPOOL_CMD_BATCH) {
            *why = "BATCH inside a BATCH";
            return -1;
        }
        if (count == INT32_MAX) {
            *why = "BATCH holds too many messages";
            return -1;
        }
        count++;
        at += (size_t)DPOOL_PROTO_HEADER_SIZE + 8 + (size_t)body + (size_t)payload;
    }
    return count;
}

int
dpool_batch_open(zmsg_t *zmsg, bool with_routing_id, zframe_t **run_p, const char **why)
{
    zframe_t *first = zmsg_first(zmsg);
    zframe_t *header = with_routing_id ? zmsg_next(zmsg) : first;
    if (!s_is_batch_header(header))
        return 0;
    *run_p = zmsg_next(zmsg);
    if (!*run_p || zmsg_size(zmsg) != (with_routing_id ? 3u : 2u)) {
        *why = "BATCH is not one frame of messages after its header";
        return -1;
    }
    return s_check_run(zframe_data(*run_p), zframe_size(*run_p), why);
}

void
dpool_batch_part(zframe_t *run, size_t *at, dpool_batch_part_t *part)
{
    s_part_at(zframe_data(run), at, part);
}

int
dpool_batch_split(zmsg_t **zmsg_p, bool with_routing_id, zlist_t *out, const char **why)
{
    zframe_t *run = NULL;
    int count = dpool_batch_open(*zmsg_p, with_routing_id, &run, why);
    if (count == 0)
        return 0;
    zmsg_t *zmsg = *zmsg_p;
    *zmsg_p = NULL;
    zframe_t *routing_id = with_routing_id ? zmsg_first(zmsg) : NULL;
    size_t at = 0, appended = 0;
    for (int i = 0; i < count; i++) {
        dpool_batch_part_t part;
        dpool_batch_part(run, &at, &part);
        zmsg_t *one = zmsg_new();
        bool ok = one &&
                  (!routing_id ||
                   zmsg_addmem(one, zframe_data(routing_id), zframe_size(routing_id)) == 0) &&
                  s_add_plain_frames(one, &part) && zlist_append(out, one) == 0;
        if (!ok) {
            zmsg_destroy(&one);
            *why = "out of memory splitting a BATCH";
            count = -1;
            break;
        }
        appended++;
    }
    if (count < 0) {
        // All or nothing: a malformed batch is dropped whole.
        while (appended-- > 0) {
            zmsg_t *dropped = zlist_tail(out);
            zlist_remove(out, dropped);
            zmsg_destroy(&dropped);
        }
    }
    zmsg_destroy(&zmsg);
    return count < 0 ? -1 : 1;
}

size_t
dpool_batch_part_size(const dpool_batch_part_t *part)
{
    return (size_t)DPOOL_PROTO_HEADER_SIZE + 8 + part->body_size + part->payload_size;
}

int
dpool_batch_decode_part(const dpool_batch_part_t *part, dpool_msg_t *msg, const char **why)
{
    int rc = dpool_proto_decode_parts(part->header, DPOOL_PROTO_HEADER_SIZE, part->body,
                                      part->body_size, part->payload != NULL, msg, why);
    if (rc == DPOOL_OK && part->payload &&
        !(msg->payload = zframe_new(part->payload, part->payload_size))) {
        dpool_msg_reset(msg);
        *why = "out of memory";
        rc = DPOOL_ERR_NOMEM;
    }
    return rc;
}

int
dpool_batch_decode_part_lent(const dpool_batch_part_t *part, dpool_msg_t *msg, const char **why)
{
    int rc = dpool_proto_decode_parts(part->header, DPOOL_PROTO_HEADER_SIZE, part->body,
                                      part->body_size, part->payload != NULL, msg, why);
    if (rc == DPOOL_OK && part->payload) {
        msg->payload_lent = part->payload;
        msg->payload_lent_size = part->payload_size;
    }
    return rc;
}

bool
dpool_batch_inbox_waiting(const dpool_batch_inbox_t *inbox)
{
    return inbox->left > 0;
}

int
dpool_batch_inbox_next(dpool_batch_inbox_t *inbox, dpool_msg_t *msg, const char **why)
{
    if (inbox->left <= 0) {
        *why = "no message waits";
        return DPOOL_ERR_PROTO;
    }
    dpool_batch_part_t part;
    dpool_batch_part(inbox->run, &inbox->at, &part);
    int rc = inbox->lend ? dpool_batch_decode_part_lent(&part, msg, why)
                         : dpool_batch_decode_part(&part, msg, why);
    // A lent payload lies in the BATCH: it stays until the next read (or a clear).
    if (--inbox->left == 0 && !inbox->lend)
        dpool_batch_inbox_clear(inbox);
    return rc;
}

int
dpool_batch_inbox_put(dpool_batch_inbox_t *inbox, zmsg_t **zmsg_p, dpool_msg_t *msg,
                      const char **why)
{
    zframe_t *run = NULL;
    int count = dpool_batch_open(*zmsg_p, false, &run, why);
    if (count == 0)
        return dpool_proto_decode(zmsg_p, false, NULL, msg, why);
    if (count < 0) {
        zmsg_destroy(zmsg_p);
        return DPOOL_ERR_PROTO;
    }
    dpool_batch_inbox_clear(inbox); // nothing waits when a new message is read
    inbox->batch = *zmsg_p;
    *zmsg_p = NULL;
    inbox->run = run;
    inbox->at = 0;
    inbox->left = count;
    return dpool_batch_inbox_next(inbox, msg, why);
}

int
dpool_batch_inbox_recv(dpool_batch_inbox_t *inbox, zsock_t *sock, dpool_msg_t *msg,
                       const char **why)
{
    if (dpool_batch_inbox_waiting(inbox))
        return dpool_batch_inbox_next(inbox, msg, why);
    if (!(zsock_events(sock) & ZMQ_POLLIN))
        return 1;
    zmsg_t *zmsg = dpool_proto_recv(sock);
    if (!zmsg && zmq_errno() == ENOMEM) {
        // Dropped, and not the last: the caller reads on rather than sleeping on a
        // descriptor whose signal this read took.
        *why = "out of memory: a message was dropped";
        return DPOOL_ERR_NOMEM;
    }
    return zmsg ? dpool_batch_inbox_put(inbox, &zmsg, msg, why) : 1;
}

void
dpool_batch_inbox_clear(dpool_batch_inbox_t *inbox)
{
    zmsg_destroy(&inbox->batch);
    inbox->run = NULL;
    inbox->at = 0;
    inbox->left = 0;
}
