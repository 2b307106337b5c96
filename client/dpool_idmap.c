/*  Values by increasing id: a ring indexed by id, with the stragglers aside (see
    dpool_idmap.h). The ring holds ids from low to high; every id held below low is
    in `aside`. */
#include "dpool_idmap.h"

#include <czmq.h>
#include <dpool/errors.h>
#include <stdlib.h>

// The ring starts at this many slots, and never moves entries aside below this size.
#define S_MIN_CAPACITY 1024

struct dpool_idmap {
    void **slots; // capacity of them (a power of two), or NULL
    size_t capacity;
    uint64_t low;    // the ring's oldest id: none held below it is in the ring
    uint64_t high;   // the newest id added; 0 = none yet
    size_t in_ring;  // values in the ring
    zhashx_t *aside; // id -> value for ids held below low; NULL until needed
};

static size_t
s_hash_id(const void *key)
{
    // splitmix64's finaliser: ids count up, which a plain modulo would bunch
    uint64_t x = *(const uint64_t *)key;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return (size_t)(x ^ (x >> 31));
}

static int
s_compare_id(const void *a, const void *b)
{
    uint64_t left = *(const uint64_t *)a, right = *(const uint64_t *)b;
    return left < right ? -1 : left > right;
}

static void *
s_duplicate_id(const void *key)
{
    uint64_t *copy = malloc(sizeof *copy);
    if (copy)
        *copy = *(const uint64_t *)key;
    return copy;
}

static void
s_free_id(void **key_p)
{
    free(*key_p);
    *key_p = NULL;
}

dpool_idmap_t *
dpool_idmap_new(void)
{
    return calloc(1, sizeof(dpool_idmap_t));
}

void
dpool_idmap_destroy(dpool_idmap_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dpool_idmap_t *self = *self_p;
    free(self->slots);
    zhashx_destroy(&self->aside);
    free(self);
    *self_p = NULL;
}

static void **
s_slot(dpool_idmap_t *self, uint64_t id)
{
    return &self->slots[id & (self->capacity - 1)];
}

// Moves low past the ids no longer held, so the ring spans only what it holds.
static void
s_advance_low(dpool_idmap_t *self)
{
    if (self->in_ring == 0) {
        self->low = self->high + 1;
        return;
    }
    while (!*s_slot(self, self->low))
        self->low++;
}

// Moves the ring's oldest entry aside; false when memory runs out.
static bool
s_move_oldest_aside(dpool_idmap_t *self)
{
    if (!self->aside) {
        self->aside = zhashx_new();
        if (!self->aside)
            return false;
        zhashx_set_key_hasher(self->aside, s_hash_id);
        zhashx_set_key_comparator(self->aside, s_compare_id);
        zhashx_set_key_duplicator(self->aside, s_duplicate_id);
        zhashx_set_key_destructor(self->aside, s_free_id);
    }
    void **slot = s_slot(self, self->low);
    if (zhashx_insert(self->aside, &self->low, *slot) != 0)
        return false;
    *slot = NULL;
    self->in_ring--;
    self->low++;
    s_advance_low(self);
    return true;
}

// Doubles the ring (or makes the first one); false when memory runs out.
static bool
s_grow(dpool_idmap_t *self)
{
    size_t capacity = self->capacity ? 2 * self->capacity : S_MIN_CAPACITY;
    void **slots = calloc(capacity, sizeof *slots);
    if (!slots)
        return false;
    for (uint64_t id = self->low; self->in_ring && id <= self->high; id++) {
        void *value = *s_slot(self, id);
        if (value)
            slots[id & (capacity - 1)] = value;
    }
    free(self->slots);
    self->slots = slots;
    self->capacity = capacity;
    return true;
}

int
dpool_idmap_insert(dpool_idmap_t *self, uint64_t id, void *value)
{
    if (!value || id == 0 || (self->high && id <= self->high))
        return DPOOL_ERR_INVALID;
    if (self->in_ring == 0)
        self->low = id;
    // Room for id in the ring: twice the ring while it is at least half full, else the
    // oldest entries aside.
    while (id - self->low >= self->capacity) {
        bool dense = self->in_ring * 2 >= self->capacity || self->capacity < S_MIN_CAPACITY;
        if (!(dense ? s_grow(self) : s_move_oldest_aside(self)))
            return DPOOL_ERR_NOMEM;
        if (self->in_ring == 0)
            self->low = id;
    }
    *s_slot(self, id) = value;
    self->high = id;
    self->in_ring++;
    return DPOOL_OK;
}

void *
dpool_idmap_lookup(dpool_idmap_t *self, uint64_t id)
{
    if (self->in_ring && id >= self->low && id <= self->high)
        return *s_slot(self, id);
    return self->aside && id < self->low ? zhashx_lookup(self->aside, &id) : NULL;
}

void *
dpool_idmap_take(dpool_idmap_t *self, uint64_t id)
{
    if (self->in_ring && id >= self->low && id <= self->high) {
        void **slot = s_slot(self, id);
        void *value = *slot;
        if (value) {
            *slot = NULL;
            self->in_ring--;
            if (id == self->low)
                s_advance_low(self);
        }
        return value;
    }
    void *value = self->aside && id < self->low ? zhashx_lookup(self->aside, &id) : NULL;
    if (value)
        zhashx_delete(self->aside, &id);
    return value;
}

void *
dpool_idmap_take_first(dpool_idmap_t *self)
{
    const uint64_t *lowest = NULL;
    for (void *value = self->aside ? zhashx_first(self->aside) : NULL; value;
         value = zhashx_next(self->aside)) {
        const uint64_t *id = zhashx_cursor(self->aside);
        if (!lowest || *id < *lowest)
            lowest = id;
    }
    uint64_t id = lowest ? *lowest : self->low;
    return lowest || self->in_ring ? dpool_idmap_take(self, id) : NULL;
}

size_t
dpool_idmap_size(const dpool_idmap_t *self)
{
    return self->in_ring + (self->aside ? zhashx_size(self->aside) : 0);
}

static int
s_compare_keys(const void *a, const void *b)
{
    uint64_t left = **(uint64_t *const *)a, right = **(uint64_t *const *)b;
    return left < right ? -1 : left > right;
}

// The ids aside, in increasing order (pointers to the table's keys), *count_p of them;
// NULL when there are none or memory ran out (*count_p is 0 then).
static const uint64_t **
s_aside_ids(dpool_idmap_t *self, size_t *count_p)
{
    *count_p = 0;
    size_t size = self->aside ? zhashx_size(self->aside) : 0;
    const uint64_t **ids = size ? malloc(size * sizeof *ids) : NULL;
    if (!ids)
        return NULL;
    for (void *value = zhashx_first(self->aside); value; value = zhashx_next(self->aside))
        ids[(*count_p)++] = zhashx_cursor(self->aside);
    qsort(ids, *count_p, sizeof *ids, s_compare_keys);
    return ids;
}

void
dpool_idmap_each(dpool_idmap_t *self, bool take, dpool_idmap_fn *fn, void *arg)
{
    size_t count;
    const uint64_t **ids = s_aside_ids(self, &count);
    for (size_t i = 0; i < count; i++)
        fn(arg, *ids[i], zhashx_lookup(self->aside, ids[i]));
    // Out of memory for the order: every one still, unordered.
    for (void *value = !ids && self->aside ? zhashx_first(self->aside) : NULL; value;
         value = zhashx_next(self->aside))
        fn(arg, *(const uint64_t *)zhashx_cursor(self->aside), value);
    free(ids);
    if (take && self->aside)
        zhashx_purge(self->aside);
    for (uint64_t id = self->low; self->in_ring && id <= self->high; id++) {
        void **slot = s_slot(self, id);
        void *value = *slot;
        if (!value)
            continue;
        if (take) {
            *slot = NULL;
            self->in_ring--;
        }
        fn(arg, id, value);
    }
    if (take)
        s_advance_low(self);
}
