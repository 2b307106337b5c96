/*  map / map_async / starmap / starmap_async: the items, one msgpack array, are cut
    into chunks, each one SUBMIT with DPOOL_FLAG_CHUNK whose outcome goes to this
    module's sink rather than to a handle of its own. When the last chunk is in, the
    results are joined, in input order, into one array that becomes the value of the
    map's one handle; the first failure to arrive fails the handle at once (Python's
    MapResult does the same), and chunks still out run on with their results dropped.

    The hot path allocates per chunk, never per item: one walk checks every item up
    front, the builder copies items into one reused buffer, and the join is one
    allocation and one copy per chunk. */
#include "dpool_chunk.h"
#include "dpool_pool.h"
#include "dpool_result.h"
#include "dpool_walk.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct s_map s_map_t;

typedef struct {
    s_map_t *map;
    size_t start, count; // the chunk's items
    zframe_t *frame;     // its results once in (an array of count values)
    size_t offset;       // where the first result starts in frame
} s_part_t;

struct s_map {
    pthread_mutex_t lock;
    int refs;          // the submitter, plus one per chunk submitted and not answered
    bool submitting;   // the submitter has not yet said how many chunks went out
    bool finished;     // the handle has its outcome (or is about to get it)
    size_t parts_sent; // chunks submitted
    size_t parts_done; // chunks answered
    size_t items;
    s_part_t *parts;
    dpool_result_t *result;   // the map's handle: a reference of the map's own
    dpool_pending_t *pending; // holds while the handle waits for its outcome
};

static void
s_unref(s_map_t *self)
{
    pthread_mutex_lock(&self->lock);
    int refs = --self->refs;
    pthread_mutex_unlock(&self->lock);
    if (refs > 0)
        return;
    for (size_t i = 0; i < self->parts_sent; i++)
        zframe_destroy(&self->parts[i].frame);
    free(self->parts);
    dpool_result_destroy(&self->result);
    pthread_mutex_destroy(&self->lock);
    free(self);
}

// Every chunk succeeded: one array of every result, in input order. NULL when memory
// runs out.
static zframe_t *
s_join(s_map_t *self)
{
    char header[DPOOL_WALK_ARRAY_HEADER_MAX];
    size_t at = dpool_walk_put_array(self->items, header), total = at;
    for (size_t i = 0; i < self->parts_sent; i++)
        total += zframe_size(self->parts[i].frame) - self->parts[i].offset;
    zframe_t *joined = zframe_new(NULL, total);
    if (!joined)
        return NULL;
    char *out = (char *)zframe_data(joined);
    memcpy(out, header, at);
    for (size_t i = 0; i < self->parts_sent; i++) {
        s_part_t *part = &self->parts[i];
        size_t size = zframe_size(part->frame) - part->offset;
        memcpy(out + at, zframe_data(part->frame) + part->offset, size);
        at += size;
        zframe_destroy(&part->frame);
    }
    return joined;
}

// Gives the handle its outcome: err (a failure), or the joined results.
static void
s_finish(s_map_t *self, const dpool_error_t *err)
{
    if (err) {
        dpool_result_complete(self->result, err->code, err->message, NULL);
    } else {
        zframe_t *joined = s_join(self);
        if (joined)
            dpool_result_complete(self->result, DPOOL_OK, NULL, &joined);
        else
            dpool_result_complete(self->result, DPOOL_ERR_NOMEM, "cannot join the results", NULL);
    }
    dpool_pending_release(self->pending);
}

// Under self->lock: true when this call is the one that must finish the map.
static bool
s_claim_finish_locked(s_map_t *self, bool failed)
{
    if (self->finished)
        return false;
    if (!failed && (self->submitting || self->parts_done < self->parts_sent))
        return false;
    self->finished = true;
    return true;
}

// A chunk's outcome (dpool_sink_fn), on the thread that completed it.
static void
s_on_part(void *arg, int code, const char *message, zframe_t **payload_p)
{
    s_part_t *part = arg;
    s_map_t *self = part->map;
    dpool_chunk_outcome_t outcome;
    dpool_chunk_split(payload_p ? *payload_p : NULL, code, message, part->start, part->count,
                      &outcome);
    bool failed = outcome.error.code != DPOOL_OK;
    pthread_mutex_lock(&self->lock);
    if (!failed && payload_p) {
        part->frame = *payload_p;
        *payload_p = NULL;
        part->offset = outcome.offset;
    }
    self->parts_done++;
    bool finish = s_claim_finish_locked(self, failed);
    pthread_mutex_unlock(&self->lock);
    if (finish)
        s_finish(self, failed ? &outcome.error : NULL);
    s_unref(self);
}

// Python's default: chunksize, extra = divmod(len(iterable), len(pool) * 4); if extra: +1.
static size_t
s_default_chunksize(dpool_t *pool, size_t count)
{
    int cap = dpool_cap(pool);
    size_t slots = (size_t)(cap > 0 ? cap : 1) * 4;
    return count / slots + (count % slots ? 1 : 0);
}

static s_map_t *
s_map_new(dpool_pending_t *pending, dpool_result_t *result, size_t items, size_t parts)
{
    s_map_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->parts = calloc(parts, sizeof *self->parts);
    if (!self->parts || pthread_mutex_init(&self->lock, NULL) != 0) {
        free(self->parts);
        free(self);
        return NULL;
    }
    self->refs = 1;
    self->submitting = true;
    self->items = items;
    self->pending = pending;
    self->result = dpool_result_ref(result);
    return self;
}

// Builds and submits the chunks (items checked already). Returns DPOOL_OK, or the first
// failure to submit (*err filled; the map then fails with it).
static int
s_submit_all(s_map_t *self, dpool_t *pool, const char *function, const dpool_buf_t *items,
             size_t chunksize, size_t at, bool star, dpool_error_t *err)
{
    dpool_chunk_t chunk;
    dpool_chunk_init(&chunk, star);
    int rc = DPOOL_OK;
    for (size_t start = 0; start < self->items && rc == DPOOL_OK; start += chunksize) {
        size_t count = self->items - start < chunksize ? self->items - start : chunksize;
        for (size_t i = 0; i < count && rc == DPOOL_OK; i++) {
            size_t item = at;
            dpool_walk_skip(items->data, items->size, &at); // checked by dpool_chunk_check_items
            rc = dpool_chunk_add(&chunk, items->data + item, at - item);
        }
        zframe_t *payload = rc == DPOOL_OK ? dpool_chunk_take(&chunk) : NULL;
        if (!payload) {
            dpool_error_set(err, DPOOL_ERR_NOMEM, "out of memory");
            rc = DPOOL_ERR_NOMEM;
            break;
        }
        s_part_t *part = &self->parts[self->parts_sent];
        *part = (s_part_t){.map = self, .start = start, .count = count};
        pthread_mutex_lock(&self->lock);
        self->refs++;
        self->parts_sent++;
        pthread_mutex_unlock(&self->lock);
        dpool_sink_t sink = {s_on_part, part};
        rc = dpool_pool_submit_chunk(pool, function, &payload, &sink, err);
        if (rc != DPOOL_OK) {
            pthread_mutex_lock(&self->lock);
            self->refs--;
            self->parts_sent--;
            pthread_mutex_unlock(&self->lock);
        }
    }
    dpool_chunk_free(&chunk);
    return rc;
}

// map_async / starmap_async.
static dpool_result_t *
s_map_async(dpool_t *pool, const char *function, const dpool_buf_t *items, size_t chunksize,
            const dpool_callbacks_t *callbacks, bool star, dpool_error_t *err)
{
    size_t count = 0, first = 0;
    if (!pool) {
        dpool_error_set(err, DPOOL_ERR_INVALID, "pool is NULL");
        return NULL;
    }
    if (dpool_pool_check_function(function, err) != DPOOL_OK ||
        dpool_chunk_check_items(items, star, &count, &first, err) != DPOOL_OK)
        return NULL;
    chunksize = chunksize ? chunksize : s_default_chunksize(pool, count);
    dpool_result_t *result = dpool_result_new(0);
    if (!result || (callbacks && dpool_cbq_watch(dpool_pool_cbq(pool), result, callbacks) != 0)) {
        dpool_result_destroy(&result);
        dpool_error_set(err, DPOOL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (count == 0) {
        zframe_t *empty = zframe_new("\x90", 1);
        dpool_result_complete(result, empty ? DPOOL_OK : DPOOL_ERR_NOMEM, NULL, &empty);
        return result;
    }
    dpool_pending_t *pending = dpool_pool_pending(pool);
    s_map_t *self = s_map_new(pending, result, count, (count + chunksize - 1) / chunksize);
    if (!self) {
        dpool_result_complete(result, DPOOL_ERR_NOMEM, "out of memory", NULL);
        return result;
    }
    dpool_pending_hold(pending); // released by s_finish
    dpool_error_t submit_err = {0};
    int rc = s_submit_all(self, pool, function, items, chunksize, first, star, &submit_err);
    if (rc != DPOOL_OK && self->parts_sent == 0) {
        // Nothing went out (a closed pool): a failed call, as apply_async reports it, so
        // no callback may run.
        if (callbacks)
            dpool_cbq_unwatch(dpool_pool_cbq(pool), result);
        dpool_result_complete(result, submit_err.code, submit_err.message, NULL);
        dpool_pending_release(pending);
        dpool_error_set(err, submit_err.code, "%s", submit_err.message);
        s_unref(self);
        dpool_result_destroy(&result);
        return NULL;
    }
    pthread_mutex_lock(&self->lock);
    self->submitting = false;
    bool finish = s_claim_finish_locked(self, rc != DPOOL_OK);
    pthread_mutex_unlock(&self->lock);
    if (finish)
        s_finish(self, rc != DPOOL_OK ? &submit_err : NULL);
    s_unref(self);
    return result;
}

dpool_result_t *
dpool_map_async(dpool_t *self, const char *function, const dpool_buf_t *items, size_t chunksize,
                const dpool_callbacks_t *callbacks, dpool_error_t *err)
{
    return s_map_async(self, function, items, chunksize, callbacks, false, err);
}

dpool_result_t *
dpool_starmap_async(dpool_t *self, const char *function, const dpool_buf_t *items, size_t chunksize,
                    const dpool_callbacks_t *callbacks, dpool_error_t *err)
{
    return s_map_async(self, function, items, chunksize, callbacks, true, err);
}

static int
s_map_wait(dpool_result_t *result, dpool_buf_t *results, dpool_error_t *err)
{
    if (!result)
        return err->code;
    int rc = dpool_result_get(result, -1, results, err);
    dpool_result_destroy(&result);
    return rc;
}

int
dpool_map(dpool_t *self, const char *function, const dpool_buf_t *items, size_t chunksize,
          dpool_buf_t *results, dpool_error_t *err)
{
    dpool_error_t local = {0};
    err = err ? err : &local;
    if (results)
        *results = (dpool_buf_t){0};
    return s_map_wait(s_map_async(self, function, items, chunksize, NULL, false, err), results,
                      err);
}

int
dpool_starmap(dpool_t *self, const char *function, const dpool_buf_t *items, size_t chunksize,
              dpool_buf_t *results, dpool_error_t *err)
{
    dpool_error_t local = {0};
    err = err ? err : &local;
    if (results)
        *results = (dpool_buf_t){0};
    return s_map_wait(s_map_async(self, function, items, chunksize, NULL, true, err), results, err);
}
