/*  dpool_pool: what the map family needs from a pool beyond the public API (the pool
    itself is public: dpool/dpool.h). */
#ifndef DPOOL_POOL_H
#define DPOOL_POOL_H

#include "dpool_cbq.h"
#include "dpool_pending.h"

#include <czmq.h>
#include <dpool/dpool.h>

// Submits one chunk (*payload_p, an array of argument arrays, always consumed) of
// function with DPOOL_FLAG_CHUNK; its outcome goes to sink (copied) unless the call
// fails. Returns DPOOL_OK, or DPOOL_ERR_CLOSED / DPOOL_ERR_NOMEM / DPOOL_ERR_IO with
// *err filled, and the sink is then never called.
int dpool_pool_submit_chunk(dpool_t *self, const char *function, zframe_t **payload_p,
                            const dpool_sink_t *sink, dpool_error_t *err);

// Checks a function name as every submission does; fills *err when it is bad.
int dpool_pool_check_function(const char *function, dpool_error_t *err);

// The pool's pending table and callback queue (borrowed, live as long as the pool).
dpool_pending_t *dpool_pool_pending(dpool_t *self);
dpool_cbq_t *dpool_pool_cbq(dpool_t *self);

#endif
