/*  imap / imap_unordered: an iterator whose feeder thread pulls items (from a copied
    array or a user's source), packs them into chunks and submits each as one task,
    never more than `window` chunks ahead of the consumer, so memory stays bounded
    however many items there are. A chunk's outcome lands in its slot (the sink runs on
    the I/O thread and only files it); dpool_imap_next hands the results out of the
    slot's frame one by one, borrowed, with no allocation per item.

    Slots: `window` of them, each free (on the free stack), being filled by the feeder,
    out (submitted), or being read by the consumer. `order` lists slots in the order
    they are read: submission order for imap, completion order for imap_unordered.
    Locks: the iterator's lock is never held while calling the source or the pool. */
#include "dpool_chunk.h"
#include "dpool_pool.h"
#include "dpool_result.h"
#include "dpool_walk.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define S_WINDOW_MIN 16

typedef struct {
    dpool_imap_t *owner;
    size_t start, count; // the chunk's items
    bool done;
    zframe_t *frame; // its results (all, or those before the failing item)
    dpool_chunk_outcome_t outcome;
} s_slot_t;

struct _dpool_imap_t {
    pthread_mutex_t lock;
    pthread_cond_t ready; // for the consumer: a chunk is done, or feeding ended
    pthread_cond_t room;  // for the feeder: a slot is free, or it must stop
    int refs;             // the owner, the feeder, and one per chunk out
    dpool_t *pool;
    char *function;
    size_t chunksize, window;
    bool unordered, star;
    // items: a copied array read from `items_at`, or a source
    dpool_buf_t items;
    size_t items_left, items_at;
    dpool_source_fn *source;
    void *source_arg;
    // slots
    s_slot_t *slots;
    size_t *free_stack, free_count;
    size_t *order, order_head, order_len; // a ring of window slot numbers
    // the feeder
    pthread_t feeder;
    bool feeder_started, feeding_done, stop;
    dpool_error_t feed_error; // code != DPOOL_OK: feeding stopped at an item with this
    size_t feed_error_index;  // that item
    size_t fed;               // items submitted
    // the consumer
    s_slot_t *current; // being read
    size_t cur_at, cur_left, cur_index;
    bool failed; // sticky: every later next returns failure
    dpool_error_t failure;
    size_t last_index;
};

static void
s_free(dpool_imap_t *self)
{
    for (size_t i = 0; self->slots && i < self->window; i++)
        zframe_destroy(&self->slots[i].frame);
    free(self->slots);
    free(self->free_stack);
    free(self->order);
    free(self->function);
    dpool_buf_free(&self->items);
    pthread_cond_destroy(&self->room);
    pthread_cond_destroy(&self->ready);
    pthread_mutex_destroy(&self->lock);
    free(self);
}

static void
s_unref(dpool_imap_t *self)
{
    pthread_mutex_lock(&self->lock);
    int refs = --self->refs;
    pthread_mutex_unlock(&self->lock);
    if (refs == 0)
        s_free(self);
}

// Under lock: appends slot to the reading order.
static void
s_push_order_locked(dpool_imap_t *self, s_slot_t *slot)
{
    self->order[(self->order_head + self->order_len++) % self->window] =
        (size_t)(slot - self->slots);
}

// A chunk's outcome (dpool_sink_fn), filed in its slot.
static void
s_on_chunk(void *arg, int code, const char *message, zframe_t **payload_p)
{
    s_slot_t *slot = arg;
    dpool_imap_t *self = slot->owner;
    dpool_chunk_outcome_t outcome;
    dpool_chunk_split(payload_p ? *payload_p : NULL, code, message, slot->start, slot->count,
                      &outcome);
    pthread_mutex_lock(&self->lock);
    if (outcome.results > 0) {
        slot->frame = *payload_p;
        *payload_p = NULL;
    }
    slot->outcome = outcome;
    slot->done = true;
    if (self->unordered)
        s_push_order_locked(self, slot);
    pthread_cond_broadcast(&self->ready);
    pthread_mutex_unlock(&self->lock);
    s_unref(self);
}

// The next item for the feeder: 1 with *data / *size, 0 at the end, or a failure with
// err filled (at item `index`).
static int
s_pull(dpool_imap_t *self, size_t index, const char **data, size_t *size, dpool_error_t *err)
{
    if (!self->source) {
        if (self->items_left == 0)
            return 0;
        size_t start = self->items_at;
        dpool_walk_skip(self->items.data, self->items.size, &self->items_at); // checked
        self->items_left--;
        *data = self->items.data + start;
        *size = self->items_at - start;
        return 1;
    }
    int rc = self->source(self->source_arg, data, size);
    if (rc < 0) {
        dpool_error_set(err, rc, "item %zu: the source failed: %s", index, dpool_strerror(rc));
        return rc;
    }
    size_t at = 0;
    if (rc > 0 && (!*data || !dpool_walk_skip(*data, *size, &at) || at != *size)) {
        dpool_error_set(err, DPOOL_ERR_INVALID, "item %zu: not one msgpack value", index);
        return DPOOL_ERR_INVALID;
    }
    return rc > 0 ? 1 : 0;
}

// Fills chunk with up to chunksize items. Returns 1 (go on), 0 (the items ended) or a
// failure (err filled).
static int
s_fill(dpool_imap_t *self, dpool_chunk_t *chunk, dpool_error_t *err)
{
    while (chunk->count < self->chunksize) {
        size_t index = self->fed + chunk->count;
        const char *data = NULL;
        size_t size = 0;
        int rc = s_pull(self, index, &data, &size, err);
        if (rc <= 0)
            return rc;
        rc = dpool_chunk_add(chunk, data, size);
        if (rc != DPOOL_OK) {
            dpool_error_set(err, rc, "item %zu: %s", index,
                            rc == DPOOL_ERR_INVALID ? "starmap items are argument arrays"
                                                    : "out of memory");
            return rc;
        }
    }
    return 1;
}

// Submits the chunk in slot (the feeder's), or gives the slot back when it is empty.
static void
s_send(dpool_imap_t *self, s_slot_t *slot, dpool_chunk_t *chunk)
{
    size_t count = chunk->count;
    if (count == 0) {
        pthread_mutex_lock(&self->lock);
        self->free_stack[self->free_count++] = (size_t)(slot - self->slots);
        pthread_mutex_unlock(&self->lock);
        return;
    }
    zframe_t *payload = dpool_chunk_take(chunk);
    *slot = (s_slot_t){.owner = self, .start = self->fed, .count = count};
    self->fed += count;
    pthread_mutex_lock(&self->lock);
    self->refs++;
    if (!self->unordered)
        s_push_order_locked(self, slot);
    pthread_mutex_unlock(&self->lock);
    dpool_error_t err = {0};
    dpool_sink_t sink = {s_on_chunk, slot};
    int rc = payload ? dpool_pool_submit_chunk(self->pool, self->function, &payload, &sink, &err)
                     : DPOOL_ERR_NOMEM;
    if (rc != DPOOL_OK) // the chunk fails at its first item, like any outcome
        s_on_chunk(slot, rc, err.message[0] ? err.message : "out of memory", NULL);
}

// Waits for a free slot; NULL when the feeder must stop.
static s_slot_t *
s_take_slot(dpool_imap_t *self)
{
    pthread_mutex_lock(&self->lock);
    while (self->free_count == 0 && !self->stop && !self->failed)
        pthread_cond_wait(&self->room, &self->lock);
    s_slot_t *slot = NULL;
    if (!self->stop && !self->failed)
        slot = &self->slots[self->free_stack[--self->free_count]];
    pthread_mutex_unlock(&self->lock);
    return slot;
}

static void *
s_feeder(void *arg)
{
    dpool_imap_t *self = arg;
    dpool_chunk_t chunk;
    dpool_chunk_init(&chunk, self->star);
    dpool_error_t err = {0};
    int rc = 1;
    size_t error_index = 0;
    while (rc > 0) {
        s_slot_t *slot = s_take_slot(self);
        if (!slot)
            break;
        rc = s_fill(self, &chunk, &err);
        error_index = self->fed + chunk.count;
        s_send(self, slot, &chunk);
    }
    dpool_chunk_free(&chunk);
    pthread_mutex_lock(&self->lock);
    self->feeding_done = true;
    if (rc < 0) {
        self->feed_error = err;
        self->feed_error_index = error_index;
    }
    pthread_cond_broadcast(&self->ready);
    pthread_mutex_unlock(&self->lock);
    s_unref(self);
    return NULL;
}

// Under lock: makes the iterator fail for good with err at item index.
static void
s_fail_locked(dpool_imap_t *self, const dpool_error_t *err, size_t index)
{
    self->failed = true;
    self->failure = *err;
    self->last_index = index;
    pthread_cond_broadcast(&self->room); // the feeder stops
}

// Under lock: done with the slot being read; it goes back to the feeder.
static void
s_release_current_locked(dpool_imap_t *self)
{
    s_slot_t *slot = self->current;
    zframe_destroy(&slot->frame);
    slot->done = false;
    self->free_stack[self->free_count++] = (size_t)(slot - self->slots);
    self->current = NULL;
    pthread_cond_signal(&self->room);
}

// Under lock: takes the next slot to read, when it is done. False when none is.
static bool
s_pick_locked(dpool_imap_t *self)
{
    if (self->order_len == 0)
        return false;
    s_slot_t *slot = &self->slots[self->order[self->order_head]];
    if (!slot->done)
        return false;
    self->order_head = (self->order_head + 1) % self->window;
    self->order_len--;
    self->current = slot;
    self->cur_at = slot->outcome.offset;
    self->cur_left = slot->outcome.results;
    self->cur_index = slot->start;
    return true;
}

// Under lock: one step. Returns 1 (a value), 0 (the end), a failure, or 2 when the
// caller must wait for a chunk.
static int
s_step_locked(dpool_imap_t *self, const char **data, size_t *size)
{
    if (self->failed)
        return self->failure.code;
    if (self->current && self->cur_left > 0) {
        const char *bytes = (const char *)zframe_data(self->current->frame);
        size_t start = self->cur_at;
        // dpool_chunk_split walked every value already
        dpool_walk_skip(bytes, zframe_size(self->current->frame), &self->cur_at);
        *data = bytes + start;
        *size = self->cur_at - start;
        self->cur_left--;
        self->last_index = self->cur_index++;
        return 1;
    }
    if (self->current) {
        s_slot_t *slot = self->current;
        if (slot->outcome.error.code != DPOOL_OK) {
            s_fail_locked(self, &slot->outcome.error, slot->start + slot->outcome.results);
            return self->failure.code;
        }
        s_release_current_locked(self);
    }
    if (s_pick_locked(self))
        return s_step_locked(self, data, size);
    if (!self->feeding_done || self->free_count < self->window)
        return 2;
    if (self->feed_error.code != DPOOL_OK) {
        s_fail_locked(self, &self->feed_error, self->feed_error_index);
        return self->failure.code;
    }
    self->last_index = self->fed;
    return 0;
}

int
dpool_imap_next(dpool_imap_t *self, double timeout, const char **data, size_t *size,
                dpool_error_t *err)
{
    if (!self || !data || !size) {
        dpool_error_set(err, DPOOL_ERR_INVALID, "iterator, data and size must not be NULL");
        return DPOOL_ERR_INVALID;
    }
    struct timespec deadline;
    if (timeout > 0)
        dpool_deadline_in(timeout, &deadline);
    pthread_mutex_lock(&self->lock);
    int rc;
    bool timed_out = false;
    while ((rc = s_step_locked(self, data, size)) == 2 && !timed_out) {
        if (timeout < 0)
            pthread_cond_wait(&self->ready, &self->lock);
        else
            timed_out =
                timeout == 0 || pthread_cond_timedwait(&self->ready, &self->lock, &deadline) != 0;
    }
    if (rc == 2) {
        rc = DPOOL_ERR_TIMEOUT;
        dpool_error_set(err, rc, "no result within %.3f s", timeout);
    } else if (rc < 0)
        dpool_error_set(err, rc, "%s", self->failure.message);
    pthread_mutex_unlock(&self->lock);
    return rc;
}

size_t
dpool_imap_index(const dpool_imap_t *self)
{
    if (!self)
        return 0;
    pthread_mutex_lock((pthread_mutex_t *)&self->lock);
    size_t index = self->last_index;
    pthread_mutex_unlock((pthread_mutex_t *)&self->lock);
    return index;
}

void
dpool_imap_destroy(dpool_imap_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dpool_imap_t *self = *self_p;
    *self_p = NULL;
    pthread_mutex_lock(&self->lock);
    self->stop = true;
    pthread_cond_broadcast(&self->room);
    pthread_mutex_unlock(&self->lock);
    if (self->feeder_started)
        pthread_join(self->feeder, NULL);
    pthread_mutex_lock(&self->lock);
    if (self->current)
        zframe_destroy(&self->current->frame);
    self->current = NULL;
    pthread_mutex_unlock(&self->lock);
    s_unref(self);
}

// The iterator with its arrays and locks, not yet fed. NULL when memory runs out.
static dpool_imap_t *
s_new(size_t window)
{
    dpool_imap_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    if (pthread_mutex_init(&self->lock, NULL) != 0) {
        free(self);
        return NULL;
    }
    if (!dpool_cond_init_monotonic(&self->ready) || pthread_cond_init(&self->room, NULL) != 0) {
        pthread_mutex_destroy(&self->lock);
        free(self);
        return NULL;
    }
    self->window = window;
    self->slots = calloc(window, sizeof *self->slots);
    self->free_stack = calloc(window, sizeof *self->free_stack);
    self->order = calloc(window, sizeof *self->order);
    if (!self->slots || !self->free_stack || !self->order) {
        s_free(self);
        return NULL;
    }
    for (size_t i = 0; i < window; i++)
        self->free_stack[self->free_count++] = window - 1 - i;
    self->refs = 1;
    return self;
}

// Takes the items: a copy of the checked array, or the source.
static int
s_set_items(dpool_imap_t *self, const dpool_buf_t *items, const dpool_imap_opts_t *opts,
            dpool_error_t *err)
{
    if (!items) {
        self->source = opts->source;
        self->source_arg = opts->source_arg;
        return DPOOL_OK;
    }
    size_t first = 0;
    int rc = dpool_chunk_check_items(items, opts->star, &self->items_left, &first, err);
    if (rc != DPOOL_OK)
        return rc;
    self->items.data = malloc(items->size);
    if (!self->items.data) {
        dpool_error_set(err, DPOOL_ERR_NOMEM, "out of memory");
        return DPOOL_ERR_NOMEM;
    }
    memcpy(self->items.data, items->data, items->size);
    self->items.size = items->size;
    self->items_at = first;
    return DPOOL_OK;
}

static int
s_check_new(dpool_t *pool, const char *function, const dpool_buf_t *items,
            const dpool_imap_opts_t *opts, dpool_error_t *err)
{
    if (!pool) {
        dpool_error_set(err, DPOOL_ERR_INVALID, "pool is NULL");
        return DPOOL_ERR_INVALID;
    }
    if (!items == !opts->source) {
        dpool_error_set(err, DPOOL_ERR_INVALID, "give either items or a source");
        return DPOOL_ERR_INVALID;
    }
    return dpool_pool_check_function(function, err);
}

dpool_imap_t *
dpool_imap_new(dpool_t *pool, const char *function, const dpool_buf_t *items,
               const dpool_imap_opts_t *opts, dpool_error_t *err)
{
    dpool_imap_opts_t defaults = {0};
    opts = opts ? opts : &defaults;
    if (s_check_new(pool, function, items, opts, err) != DPOOL_OK)
        return NULL;
    int cap = dpool_cap(pool);
    size_t window = opts->window ? opts->window : 4 * (size_t)(cap > 0 ? cap : 1);
    dpool_imap_t *self = s_new(opts->window || window > S_WINDOW_MIN ? window : S_WINDOW_MIN);
    if (!self) {
        dpool_error_set(err, DPOOL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    self->pool = pool;
    self->chunksize = opts->chunksize ? opts->chunksize : 1;
    self->unordered = opts->unordered;
    self->star = opts->star;
    self->function = strdup(function);
    int rc = self->function ? s_set_items(self, items, opts, err) : DPOOL_ERR_NOMEM;
    if (rc == DPOOL_OK) {
        self->refs++; // the feeder's
        self->feeder_started = pthread_create(&self->feeder, NULL, s_feeder, self) == 0;
        if (!self->feeder_started) {
            self->refs--;
            rc = DPOOL_ERR_NOMEM;
        }
    }
    if (rc != DPOOL_OK) {
        if (rc == DPOOL_ERR_NOMEM)
            dpool_error_set(err, rc, "out of memory");
        s_free(self);
        return NULL;
    }
    return self;
}

dpool_imap_t *
dpool_imap(dpool_t *self, const char *function, const dpool_buf_t *items, size_t chunksize,
           dpool_error_t *err)
{
    dpool_imap_opts_t opts = {.chunksize = chunksize};
    return dpool_imap_new(self, function, items, &opts, err);
}

dpool_imap_t *
dpool_imap_unordered(dpool_t *self, const char *function, const dpool_buf_t *items,
                     size_t chunksize, dpool_error_t *err)
{
    dpool_imap_opts_t opts = {.chunksize = chunksize, .unordered = true};
    return dpool_imap_new(self, function, items, &opts, err);
}
