/*  Chunks: how map items travel. A chunk is one task for the broker; its payload is
    an array of argument arrays ([item] for map, item itself for starmap), so the
    builder writes each item once into a reused buffer and the header last, into room
    kept in front. The splitter trusts nothing from the network: it walks every result
    value before any of them is handed out. */
#include "dpool_chunk.h"
#include "dpool_result.h"
#include "dpool_walk.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
dpool_chunk_init(dpool_chunk_t *self, bool star)
{
    memset(self, 0, sizeof *self);
    self->star = star;
    self->size = DPOOL_WALK_ARRAY_HEADER_MAX;
}

static int
s_reserve(dpool_chunk_t *self, size_t more)
{
    if (self->capacity - self->size >= more && self->data)
        return DPOOL_OK;
    size_t capacity = self->capacity ? self->capacity : 4096;
    while (capacity - self->size < more)
        capacity *= 2;
    char *data = realloc(self->data, capacity);
    if (!data)
        return DPOOL_ERR_NOMEM;
    self->data = data;
    self->capacity = capacity;
    return DPOOL_OK;
}

int
dpool_chunk_add(dpool_chunk_t *self, const char *item, size_t size)
{
    if (self->star && !dpool_walk_is_array(item, size))
        return DPOOL_ERR_INVALID;
    if (s_reserve(self, size + 1) != DPOOL_OK)
        return DPOOL_ERR_NOMEM;
    if (!self->star)
        self->data[self->size++] = (char)0x91; // [item]: a one-element argument array
    memcpy(self->data + self->size, item, size);
    self->size += size;
    self->count++;
    return DPOOL_OK;
}

zframe_t *
dpool_chunk_take(dpool_chunk_t *self)
{
    if (s_reserve(self, 0) != DPOOL_OK)
        return NULL;
    char header[DPOOL_WALK_ARRAY_HEADER_MAX];
    size_t header_size = dpool_walk_put_array(self->count, header);
    char *start = self->data + DPOOL_WALK_ARRAY_HEADER_MAX - header_size;
    memcpy(start, header, header_size);
    zframe_t *frame = zframe_new(start, (size_t)(self->data + self->size - start));
    self->size = DPOOL_WALK_ARRAY_HEADER_MAX;
    self->count = 0;
    return frame;
}

void
dpool_chunk_free(dpool_chunk_t *self)
{
    if (!self)
        return;
    free(self->data);
    self->data = NULL;
    self->size = self->capacity = self->count = 0;
}

// Counts the whole values of the array in payload; false when it is not one array of
// whole values ending exactly at the payload's end.
static bool
s_walk_results(const zframe_t *payload, size_t *offset, size_t *results)
{
    const char *data = (const char *)zframe_data((zframe_t *)payload);
    size_t size = zframe_size((zframe_t *)payload), at = 0, count = 0;
    if (!dpool_walk_array(data, size, &at, &count) || count > size - at)
        return false;
    *offset = at;
    for (size_t i = 0; i < count; i++)
        if (!dpool_walk_skip(data, size, &at))
            return false;
    *results = count;
    return at == size;
}

// The worker's text without its own "item k: " prefix (k counts within the chunk).
static const char *
s_strip_item_prefix(const char *message)
{
    if (!message || strncmp(message, "item ", 5) != 0)
        return message ? message : "";
    const char *p = message + 5;
    while (*p >= '0' && *p <= '9')
        p++;
    return p > message + 5 && p[0] == ':' && p[1] == ' ' ? p + 2 : message;
}

void
dpool_chunk_split(const zframe_t *payload, int code, const char *message, size_t start,
                  size_t count, dpool_chunk_outcome_t *outcome)
{
    memset(outcome, 0, sizeof *outcome);
    bool parsed = payload && s_walk_results(payload, &outcome->offset, &outcome->results);
    if (code == DPOOL_OK && parsed && outcome->results == count)
        return;
    if (code == DPOOL_OK || (payload && (!parsed || outcome->results >= count))) {
        outcome->results = 0;
        snprintf(outcome->error.message, sizeof outcome->error.message,
                 "item %zu: the broker sent a chunk result that does not match its %zu items",
                 start, count);
        outcome->error.code = DPOOL_ERR_PROTO;
        return;
    }
    if (!parsed)
        outcome->results = 0;
    outcome->error.code = code;
    snprintf(outcome->error.message, sizeof outcome->error.message, "item %zu: %s",
             start + outcome->results, s_strip_item_prefix(message));
}

// Checks that items is one array of whole values (argument arrays for star). Sets
// *count and *first (offset of the first item).
int
dpool_chunk_check_items(const dpool_buf_t *items, bool star, size_t *count, size_t *first,
                        dpool_error_t *err)
{
    *first = 0;
    if (!items || !items->data || !dpool_walk_array(items->data, items->size, first, count)) {
        dpool_error_set(err, DPOOL_ERR_INVALID, "the items must be one msgpack array");
        return DPOOL_ERR_INVALID;
    }
    size_t at = *first;
    for (size_t i = 0; i < *count; i++) {
        size_t start = at;
        if (!dpool_walk_skip(items->data, items->size, &at)) {
            dpool_error_set(err, DPOOL_ERR_INVALID, "item %zu: not a whole msgpack value", i);
            return DPOOL_ERR_INVALID;
        }
        if (star && !dpool_walk_is_array(items->data + start, at - start)) {
            dpool_error_set(err, DPOOL_ERR_INVALID, "item %zu: starmap items are argument arrays",
                            i);
            return DPOOL_ERR_INVALID;
        }
    }
    if (at != items->size) {
        dpool_error_set(err, DPOOL_ERR_INVALID, "bytes follow the items' array");
        return DPOOL_ERR_INVALID;
    }
    return DPOOL_OK;
}
