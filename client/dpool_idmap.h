/*  dpool_idmap: values keyed by 64-bit ids that are added in increasing order, as a
    pool's task ids are (one counter, under the pool lock). The ids held lie between
    the oldest and the newest: a ring of slots indexed by id holds them, and doubles
    when that span outgrows it, so adding, finding and taking an id is an index, with
    no hashing, no allocation per id and no chain to walk. An id held while very many
    newer ones come and go (one long task among millions of short ones) would stretch
    the span: once the ring is mostly empty, its oldest entries move aside into a hash
    table (czmq's zhashx), so memory follows what is held, not the spread of ids.
    Not thread-safe: the owner locks. */
#ifndef DPOOL_IDMAP_H
#define DPOOL_IDMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct dpool_idmap dpool_idmap_t;

// An empty map, or NULL when memory runs out.
dpool_idmap_t *dpool_idmap_new(void);

// Frees the map (not the values). NULL-safe; sets *self_p to NULL.
void dpool_idmap_destroy(dpool_idmap_t **self_p);

// Adds value (borrowed, not NULL) under id, which must be above every id added before.
// Returns DPOOL_OK, DPOOL_ERR_INVALID (an id not above the last, or a NULL value) or
// DPOOL_ERR_NOMEM.
int dpool_idmap_insert(dpool_idmap_t *self, uint64_t id, void *value);

// The value held under id, or NULL.
void *dpool_idmap_lookup(dpool_idmap_t *self, uint64_t id);

// Removes id and returns its value, or NULL when it is not held.
void *dpool_idmap_take(dpool_idmap_t *self, uint64_t id);

// Removes the lowest id held and returns its value, or NULL when none is held.
void *dpool_idmap_take_first(dpool_idmap_t *self);

// How many ids are held.
size_t dpool_idmap_size(const dpool_idmap_t *self);

// Calls fn(arg, id, value) for every id held, in increasing order; fn must not change
// the map. When take is true the map is emptied as it goes (fn then owns the values).
typedef void(dpool_idmap_fn)(void *arg, uint64_t id, void *value);
void dpool_idmap_each(dpool_idmap_t *self, bool take, dpool_idmap_fn *fn, void *arg);

#endif
