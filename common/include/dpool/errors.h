/*  dpool/errors.h: the one list of outcome codes shared by every part of dpool.

    Codes travel on the wire (docs/PROTOCOL.md), so their numbers never change once
    released. 0 is success; every failure is negative. dpool_strerror() gives a short
    text for each; the message that comes with a failure (dpool_error_t in dpool.h)
    names the host, pid or signal where one is known. */
#ifndef DPOOL_ERRORS_H
#define DPOOL_ERRORS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    DPOOL_OK = 0,
    DPOOL_ERR_NOMEM = -1,         // out of memory
    DPOOL_ERR_INVALID = -2,       // the caller broke a precondition (bad argument, NULL, bad flag)
    DPOOL_ERR_PROTO = -3,         // a peer sent something malformed or out of order
    DPOOL_ERR_TIMEOUT = -4,       // the caller's own wait ran out; the task may still finish
    DPOOL_ERR_IO = -5,            // a socket, pipe or file operation failed
    DPOOL_ERR_TASK_FAILED = -10,  // the task ran and reported failure
    DPOOL_ERR_NO_FUNCTION = -11,  // no worker offered the function within the grace period
    DPOOL_ERR_WORKER_LOST = -12,  // the process or host running the task died
    DPOOL_ERR_TERMINATED = -13,   // the pool was terminated before the task finished
    DPOOL_ERR_TASK_TIMEOUT = -14, // the task ran past its time limit and was killed
    DPOOL_ERR_TOO_BIG = -15,      // a payload exceeded the size limit
    DPOOL_ERR_UNREACHABLE = -16,  // the broker did not answer
    DPOOL_ERR_NOT_AUTHORISED = -17, // the broker refused this peer's key or role
    DPOOL_ERR_CLOSED = -18,         // the pool is closed (or terminated): no new tasks
    DPOOL_ERR_STATE = -19,      // the call is not allowed in the pool's state (join before close)
    DPOOL_ERR_NOT_READY = -20,  // the result is not ready yet
    DPOOL_ERR_QUEUE_FULL = -21, // the broker's queue is full: retry later
    // Between broker and worker daemon only: a chained TASK arrived after the task it
    // was to follow had ended there; it did not run and the broker queues it again.
    DPOOL_ERR_UNCHAINED = -22,
} dpool_err_t;

// Returns a static, never-NULL text for rc ("unknown error" for codes not listed).
const char *dpool_strerror(int rc);

#ifdef __cplusplus
}
#endif
#endif
