/*  dpool_result: the library's side of a result handle (the public calls are in
    dpool/dpool.h). A handle is reference counted: the caller holds one reference and
    the pool's table of pending tasks another until the outcome is in, so either side
    may let go first and a handle outlives its pool. */
#ifndef DPOOL_RESULT_H
#define DPOOL_RESULT_H

#include <czmq.h>
#include <dpool/dpool.h>
#include <pthread.h>
#include <time.h>

// A new, pending handle for task_id with one reference (the caller's). NULL when
// memory runs out.
dpool_result_t *dpool_result_new(uint64_t task_id);

// Adds a reference and returns self; drop it with dpool_result_destroy.
dpool_result_t *dpool_result_ref(dpool_result_t *self);

// Called once, right after the outcome is recorded, on the thread that recorded it
// (usually the I/O thread), with no lock held.
typedef void(dpool_result_hook_fn)(void *arg, dpool_result_t *result);

// Sets the hook; call it before the handle can complete (before it is submitted).
void dpool_result_set_hook(dpool_result_t *self, dpool_result_hook_fn *hook, void *arg);

// The hook's argument (NULL when no hook is set).
void *dpool_result_hook_arg(const dpool_result_t *self);

// Borrows a ready handle's outcome: *code, and the value's bytes (*data / *size, nil
// when there were none) or the message. Valid while the caller holds a reference.
// Returns false when the handle is not ready.
bool dpool_result_peek(dpool_result_t *self, int *code, const char **data, size_t *size,
                       const char **message);

// Records the outcome and wakes every waiter. code is DPOOL_OK or an outcome code;
// message (borrowed, may be NULL) is copied; *payload_p (may be NULL) is taken and
// NULLed. Only the first outcome counts: later calls just free their payload.
void dpool_result_complete(dpool_result_t *self, int code, const char *message,
                           zframe_t **payload_p);

// As dpool_result_complete, with the value's bytes borrowed (data may be NULL: no
// payload): they are copied, into the handle itself when they are few.
void dpool_result_complete_bytes(dpool_result_t *self, int code, const char *message,
                                 const void *data, size_t size);

// Sets err->code and formats err->message (truncated to fit). NULL-safe for err; fmt
// NULL leaves the message empty.
void dpool_error_set(dpool_error_t *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

// Initialises cond to time its waits on CLOCK_MONOTONIC (a wall-clock jump must not
// stretch or cut a timeout). Returns false when pthreads refuse.
bool dpool_cond_init_monotonic(pthread_cond_t *cond);

// Sets *deadline to timeout seconds (>= 0) from now on CLOCK_MONOTONIC, for
// pthread_cond_timedwait on a condition made by dpool_cond_init_monotonic.
void dpool_deadline_in(double timeout, struct timespec *deadline);

#endif
