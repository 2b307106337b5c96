/*  dpool_pending: a pool's table of tasks submitted and still without a result, keyed
    by task id (O(1) per task). Shared by the user threads that submit and wait and the
    I/O thread that delivers results, so every call takes the table's own lock.

    A task's outcome goes either to a result handle or to a sink (a map's chunk). It is
    delivered outside the table lock, so a sink may take locks of its own, but the table
    counts the delivery as still pending until it is over: a waiter never sees an empty
    table before every outcome has landed. "Holds" let other work (a map's combined
    result, a callback not run yet) count for dpool_join too.

    Each entry also keeps the task's encoded SUBMIT until its result is in, so the I/O
    thread can send it again to a broker that restarted or forgot it (at-least-once
    execution, exactly-once delivery: the entry goes with the first outcome, and a
    later RESULT for its id finds nothing). */
#ifndef DPOOL_PENDING_H
#define DPOOL_PENDING_H

#include <czmq.h>
#include <dpool/dpool.h>

typedef struct _dpool_pending_t dpool_pending_t;

// Receives a task's outcome, once: code, message (borrowed, may be NULL) and the
// payload (*payload_p may be taken and NULLed; may be NULL). Runs on the thread that
// completes the task (usually the I/O thread) with no dpool lock held.
typedef void(dpool_sink_fn)(void *arg, int code, const char *message, zframe_t **payload_p);

typedef struct {
    dpool_sink_fn *fn;
    void *arg;
} dpool_sink_t;

// An empty table, or NULL when memory runs out.
dpool_pending_t *dpool_pending_new(void);

// Fails every task still in the table as DPOOL_ERR_TERMINATED, drops the table's
// references and frees it. NULL-safe; sets *self_p to NULL.
void dpool_pending_destroy(dpool_pending_t **self_p);

// A task as it enters the table: its outcome goes to result (the table takes a
// reference of its own) or, when result is NULL, to sink (copied); submit is its
// SUBMIT as dpool_batch_encode wrote it, kept until its outcome for
// dpool_pending_resend.
typedef struct {
    uint64_t task_id;
    dpool_result_t *result;
    dpool_sink_t sink;
    const uint8_t *submit;
    size_t submit_size;
} dpool_pending_task_t;

// Adds task, with a copy of its SUBMIT in the same allocation as its entry; or, when
// large_p is not NULL, with *large_p instead (a malloc'd block holding the SUBMIT,
// which moves in, always). Returns DPOOL_OK or DPOOL_ERR_NOMEM.
int dpool_pending_add(dpool_pending_t *self, const dpool_pending_task_t *task, uint8_t **large_p);

// Calls send(arg, submit, size) with every kept SUBMIT of a task still without a
// result (borrowed), in task id order, with the table locked (send must not call back
// into the table). Returns how many it passed on.
typedef void(dpool_pending_send_fn)(void *arg, const uint8_t *submit, size_t size);
size_t dpool_pending_resend(dpool_pending_t *self, dpool_pending_send_fn *send, void *arg);

// Gives task_id its outcome (see dpool_result_complete / dpool_sink_fn for what moves)
// and removes it. Returns false for a task id the table does not hold (already failed
// here, or not ours); *payload_p is freed in every case.
bool dpool_pending_complete(dpool_pending_t *self, uint64_t task_id, int code, const char *message,
                            zframe_t **payload_p);

// As dpool_pending_complete, with the payload's bytes borrowed (data may be NULL: none).
bool dpool_pending_complete_bytes(dpool_pending_t *self, uint64_t task_id, int code,
                                  const char *message, const void *data, size_t size);

// Gives every task in the table the outcome code / message and empties the table.
// Returns how many there were.
size_t dpool_pending_fail_all(dpool_pending_t *self, int code, const char *message);

// How many tasks wait for a result.
size_t dpool_pending_count(dpool_pending_t *self);

// Counts one more piece of unfinished work for dpool_pending_wait_empty(.., true).
void dpool_pending_hold(dpool_pending_t *self);

// Ends one hold taken with dpool_pending_hold.
void dpool_pending_release(dpool_pending_t *self);

// Waits up to timeout seconds (negative = no limit) until no task is pending, and
// with holds also until no hold is left. Returns DPOOL_OK or DPOOL_ERR_TIMEOUT.
int dpool_pending_wait_empty(dpool_pending_t *self, double timeout, bool holds);

#endif
