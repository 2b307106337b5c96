/*  dpool_pending: a pool's table of tasks submitted and still without a result, keyed
    by task id (O(1) per task). Shared by the user threads that submit and wait and the
    I/O thread that delivers results, so every call takes the table's own lock. */
#ifndef DPOOL_PENDING_H
#define DPOOL_PENDING_H

#include <czmq.h>
#include <dpool/dpool.h>

typedef struct _dpool_pending_t dpool_pending_t;

// An empty table, or NULL when memory runs out.
dpool_pending_t *dpool_pending_new(void);

// Fails every task still in the table as DPOOL_ERR_TERMINATED, drops the table's
// references and frees it. NULL-safe; sets *self_p to NULL.
void dpool_pending_destroy(dpool_pending_t **self_p);

// Adds result under its task id, taking a reference of its own. Returns DPOOL_OK or
// DPOOL_ERR_NOMEM.
int dpool_pending_add(dpool_pending_t *self, dpool_result_t *result);

// Gives task_id its outcome (see dpool_result_complete for what moves) and removes it.
// Returns false for a task id the table does not hold (already failed here, or not ours).
bool dpool_pending_complete(dpool_pending_t *self, uint64_t task_id, int code, const char *message,
                            zframe_t **payload_p);

// Gives every task in the table the outcome code / message and empties the table.
// Returns how many there were.
size_t dpool_pending_fail_all(dpool_pending_t *self, int code, const char *message);

// How many tasks wait for a result.
size_t dpool_pending_count(dpool_pending_t *self);

// Waits up to timeout seconds (negative = no limit) until the table is empty. Returns
// DPOOL_OK or DPOOL_ERR_TIMEOUT.
int dpool_pending_wait_empty(dpool_pending_t *self, double timeout);

#endif
