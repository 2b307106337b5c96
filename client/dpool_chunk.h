/*  dpool_chunk: the two ends of a map chunk. The builder packs items into one SUBMIT
    payload with DPOOL_FLAG_CHUNK (an array of argument arrays); the splitter checks a
    chunk's RESULT and says which results it holds and which item failed. */
#ifndef DPOOL_CHUNK_H
#define DPOOL_CHUNK_H

#include <czmq.h>
#include <dpool/dpool.h>

typedef struct {
    char *data; // header room (DPOOL_WALK_ARRAY_HEADER_MAX bytes), then the packed items
    size_t size, capacity;
    size_t count; // items added
    bool star;    // items are argument arrays already
} dpool_chunk_t;

// Checks that items is one msgpack array of whole values (each an argument array when
// star). Sets *count and *first (the offset of the first item). Returns DPOOL_OK or
// DPOOL_ERR_INVALID with *err naming the first bad item.
int dpool_chunk_check_items(const dpool_buf_t *items, bool star, size_t *count, size_t *first,
                            dpool_error_t *err);

// An empty builder; star: items are argument arrays (starmap), else each item is the
// single argument (map).
void dpool_chunk_init(dpool_chunk_t *self, bool star);

// Appends one item, which the caller has checked is exactly one msgpack value (borrowed,
// copied). Returns DPOOL_OK, DPOOL_ERR_INVALID (star and the item is not an array),
// DPOOL_ERR_NOMEM.
int dpool_chunk_add(dpool_chunk_t *self, const char *item, size_t size);

// The items added so far as one payload (owned by the caller), or NULL when memory ran
// out; the builder is empty again (it keeps its buffer for the next chunk).
zframe_t *dpool_chunk_take(dpool_chunk_t *self);

// Frees the builder's buffer. NULL-safe.
void dpool_chunk_free(dpool_chunk_t *self);

// What a chunk's outcome holds: `results` results starting at byte `offset` of the
// payload, and for a failure the error with the failing item's index.
typedef struct {
    size_t offset;
    size_t results;
    dpool_error_t error; // code DPOOL_OK when the whole chunk succeeded
} dpool_chunk_outcome_t;

// Reads a chunk's RESULT for items [start, start + count): on success the payload must
// be an array of exactly count values; on failure it may be an array of the k < count
// results before the failing item (message "item k: <text>" from the worker, or any
// text). The failure's message becomes "item <start + k>: <text>". A payload that
// breaks these rules makes the chunk fail with DPOOL_ERR_PROTO at item start.
void dpool_chunk_split(const zframe_t *payload, int code, const char *message, size_t start,
                       size_t count, dpool_chunk_outcome_t *outcome);

#endif
