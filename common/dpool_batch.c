/*  Batches of protocol messages: see dpool_batch.h. Frames are moved, never copied,
    on both sides: a task's arguments or result travel in the frame they came in. */
#include "dpool_batch.h"

#include <dpool/errors.h>
#include <stdlib.h>
#include <string.h>

struct dpool_batch {
    zmsg_t *frames; // header, body, payload-or-empty, per message
    size_t count;
};

dpool_batch_t *
dpool_batch_new(void)
{
    dpool_batch_t *self = calloc(1, sizeof *self);
    if (self && !(self->frames = zmsg_new())) {
        free(self);
        return NULL;
    }
    return self;
}

void
dpool_batch_destroy(dpool_batch_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zmsg_destroy(&(*self_p)->frames);
    free(*self_p);
    *self_p = NULL;
}

int
dpool_batch_add_built(dpool_batch_t *self, zmsg_t **zmsg_p)
{
    zmsg_t *zmsg = *zmsg_p;
    *zmsg_p = NULL;
    if (!zmsg)
        return DPOOL_ERR_INVALID;
    size_t frames = zmsg_size(zmsg);
    int rc = DPOOL_OK;
    if (frames < 2 || frames > 3)
        rc = DPOOL_ERR_INVALID;
    else {
        zframe_t *frame;
        while ((frame = zmsg_pop(zmsg)))
            zmsg_append(self->frames, &frame);
        if (frames == 2 && zmsg_addmem(self->frames, NULL, 0) != 0)
            rc = DPOOL_ERR_NOMEM;
        self->count++;
    }
    zmsg_destroy(&zmsg);
    return rc;
}

int
dpool_batch_add(dpool_batch_t *self, dpool_msg_t *msg)
{
    zmsg_t *zmsg = dpool_proto_build(msg, NULL);
    if (!zmsg)
        return DPOOL_ERR_INVALID;
    return dpool_batch_add_built(self, &zmsg);
}

size_t
dpool_batch_count(const dpool_batch_t *self)
{
    return self->count;
}

bool
dpool_batch_full(const dpool_batch_t *self)
{
    return self->count >= DPOOL_BATCH_MAX_MESSAGES ||
           zmsg_content_size(self->frames) >= DPOOL_BATCH_MAX_BYTES;
}

zmsg_t *
dpool_batch_take(dpool_batch_t *self, zframe_t *routing_id)
{
    if (self->count == 0)
        return NULL;
    zmsg_t *taken = self->frames;
    size_t count = self->count;
    self->frames = zmsg_new();
    self->count = 0;
    if (!self->frames) {
        zmsg_destroy(&taken);
        return NULL;
    }
    if (count == 1) {
        // The plain form: no empty payload frame.
        zframe_t *last = zmsg_last(taken);
        if (zframe_size(last) == 0) {
            zmsg_remove(taken, last);
            zframe_destroy(&last);
        }
    } else {
        const uint8_t header[DPOOL_PROTO_HEADER_SIZE] = {'D', 'P', DPOOL_PROTO_VERSION,
                                                         DPOOL_CMD_BATCH};
        if (zmsg_pushmem(taken, header, sizeof header) != 0) {
            zmsg_destroy(&taken);
            return NULL;
        }
    }
    if (routing_id && zmsg_pushmem(taken, zframe_data(routing_id), zframe_size(routing_id)) != 0)
        zmsg_destroy(&taken);
    return taken;
}

int
dpool_batch_send(dpool_batch_t *self, zsock_t *sock, zframe_t *routing_id)
{
    if (self->count == 0)
        return DPOOL_OK;
    zmsg_t *zmsg = dpool_batch_take(self, routing_id);
    if (!zmsg)
        return DPOOL_ERR_NOMEM;
    if (zmsg_send(&zmsg, sock) == 0)
        return DPOOL_OK;
    zmsg_destroy(&zmsg);
    return DPOOL_ERR_IO;
}

static bool
s_is_batch_header(zframe_t *frame)
{
    const uint8_t *bytes = frame ? zframe_data(frame) : NULL;
    return frame && zframe_size(frame) == DPOOL_PROTO_HEADER_SIZE && bytes[0] == 'D' &&
           bytes[1] == 'P' && bytes[2] == DPOOL_PROTO_VERSION && bytes[3] == DPOOL_CMD_BATCH;
}

int
dpool_batch_split(zmsg_t **zmsg_p, bool with_routing_id, zlist_t *out, const char **why)
{
    zmsg_t *zmsg = *zmsg_p;
    zframe_t *first = zmsg_first(zmsg);
    zframe_t *header = with_routing_id ? zmsg_next(zmsg) : first;
    if (!s_is_batch_header(header))
        return 0;
    *zmsg_p = NULL;
    zframe_t *routing_id = with_routing_id ? zmsg_pop(zmsg) : NULL;
    zframe_t *batch_header = zmsg_pop(zmsg);
    zframe_destroy(&batch_header);
    size_t frames = zmsg_size(zmsg);
    int rc = 1;
    if (frames == 0 || frames % 3 != 0) {
        *why = "BATCH does not hold whole messages of 3 frames each";
        rc = -1;
    }
    size_t appended = 0;
    while (rc == 1 && zmsg_size(zmsg) > 0) {
        zmsg_t *one = zmsg_new();
        if (!one || (routing_id &&
                     zmsg_addmem(one, zframe_data(routing_id), zframe_size(routing_id)) != 0)) {
            zmsg_destroy(&one);
            *why = "out of memory splitting a BATCH";
            rc = -1;
            break;
        }
        zframe_t *frame = zmsg_pop(zmsg);
        if (s_is_batch_header(frame)) {
            zframe_destroy(&frame);
            zmsg_destroy(&one);
            *why = "BATCH inside a BATCH";
            rc = -1;
            break;
        }
        zmsg_append(one, &frame);
        frame = zmsg_pop(zmsg);
        zmsg_append(one, &frame);
        frame = zmsg_pop(zmsg);
        if (zframe_size(frame) == 0)
            zframe_destroy(&frame);
        else
            zmsg_append(one, &frame);
        zlist_append(out, one);
        appended++;
    }
    if (rc != 1) {
        // All or nothing: a malformed batch is dropped whole.
        while (appended-- > 0) {
            zmsg_t *dropped = zlist_tail(out);
            zlist_remove(out, dropped);
            zmsg_destroy(&dropped);
        }
    }
    zframe_destroy(&routing_id);
    zmsg_destroy(&zmsg);
    return rc;
}
