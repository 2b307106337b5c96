/*  dpool_cbq: a pool's callback thread. It runs Python's callback / error_callback
    for result handles, off the I/O thread, so a callback that blocks never holds up
    result delivery. The thread starts with the first watched handle. */
#ifndef DPOOL_CBQ_H
#define DPOOL_CBQ_H

#include "dpool_pending.h"

#include <dpool/dpool.h>

typedef struct _dpool_cbq_t dpool_cbq_t;

// A queue whose unfinished callbacks count as holds on pending (borrowed: it must
// outlive the queue). NULL when memory runs out.
dpool_cbq_t *dpool_cbq_new(dpool_pending_t *pending);

// Arranges for one of callbacks (copied) to run on the callback thread once result
// (a reference is taken) has its outcome, and holds pending until it ran. Call before
// result can complete. Returns DPOOL_OK, or DPOOL_ERR_NOMEM (no thread, no memory:
// nothing was arranged).
int dpool_cbq_watch(dpool_cbq_t *self, dpool_result_t *result, const dpool_callbacks_t *callbacks);

// Forgets the callbacks of a watched handle that has no outcome and can get none from
// anyone else (its task was never submitted), and ends its hold.
void dpool_cbq_unwatch(dpool_cbq_t *self, dpool_result_t *result);

// Runs every callback already due, stops the thread and frees the queue. Every watched
// handle must have its outcome by now (the pool fails its pending tasks first).
// NULL-safe; sets *self_p to NULL.
void dpool_cbq_destroy(dpool_cbq_t **self_p);

#endif
