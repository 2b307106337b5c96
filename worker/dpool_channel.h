/*  dpool_channel: length-prefixed frames over the stream socketpair between the
    worker daemon and one of its worker processes.

    A frame is a 4-byte length (host order: both ends are the same machine), one
    kind byte and that many bytes of body. The daemon reads without blocking and
    parses what has arrived; a worker process reads blocking, one frame at a time.
    Writes block until the whole frame is written: the peer is always reading when
    it is written to (an idle process waits for a task; the daemon polls). A CHUNK
    of many MB therefore costs one write and one read of its bytes, no copy. */
#ifndef DPOOL_CHANNEL_H
#define DPOOL_CHANNEL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// Frame kinds.
// READY   process -> daemon: started (initializer done), waiting for a task; body =
//         one byte of DPOOL_CHANNEL_RUNS_AHEAD flags (none from an older runner)
// TASK    daemon -> process: uint32 epoch, function name, NUL, argument bytes (one
//         argument array)
// CHUNK   daemon -> process: as TASK, but the bytes are an array of argument arrays
// RESULT  process -> daemon: int32 code, uint32 flags (DPOOL_CHANNEL_WENT_ON),
//         uint64 index (the count of tasks the process has finished, this one
//         included), uint32 n, n bytes of message, then the result bytes (none for a
//         failed task, the results so far for a failed chunk)
// INIT_FAILED  process -> daemon: the initializer failed; body = its message. The
//         process exits right after.
//
// Running ahead. The daemon may write a process several TASKs at once; the process
// runs them in order without waiting for the daemon, as long as each task it runs
// wrote nothing to its stdout and stderr pipes (dpool_runner.c): then there is no
// output whose task could be mistaken, and its RESULT says WENT_ON. After a task that
// wrote (or when the process cannot tell), the process skips every TASK of that
// task's epoch still to come: the daemon, which drains the pipes and forwards the
// output before the result, sends those tasks again under the next epoch. When a job
// written ahead is KILLed, the daemon marks its epoch in the memory it shares with
// the process (dpool_proc_skip); the process looks there before it answers each task
// and, if its epoch is marked, stops as after a task that wrote.
#define DPOOL_CHANNEL_READY 'R'
#define DPOOL_CHANNEL_TASK 'T'
#define DPOOL_CHANNEL_CHUNK 'C'
#define DPOOL_CHANNEL_RESULT 'D'
#define DPOOL_CHANNEL_INIT_FAILED 'I'

// READY flag: the process can tell a task that wrote nothing, so it runs ahead.
#define DPOOL_CHANNEL_RUNS_AHEAD 0x1
// RESULT flag: the task wrote nothing and the process went on to the next TASK.
#define DPOOL_CHANNEL_WENT_ON 0x1

// Frames larger than this are refused by a reader: the length prefix comes from
// another process, and a corrupt one must not become a 4 GB allocation. It is far
// above the protocol's largest message (64 MiB by default), so any TASK or CHUNK the
// broker lets through, and its result, fits in one frame.
#define DPOOL_CHANNEL_FRAME_MAX (1024u * 1024u * 1024u)

typedef struct dpool_channel_t dpool_channel_t;

// Wraps fd, which the channel then owns (closed on destroy). Returns an owned
// object, or NULL when memory runs out (fd is closed then too).
dpool_channel_t *dpool_channel_new(int fd);

// Closes the fd and frees the buffer. NULL-safe; sets *self_p to NULL.
void dpool_channel_destroy(dpool_channel_t **self_p);

// The fd, for poll (borrowed).
int dpool_channel_fd(const dpool_channel_t *self);

// Writes one frame whose body is head followed by tail (both borrowed, either may
// be empty). Blocks until written. Returns DPOOL_OK, DPOOL_ERR_INVALID for a body
// over the limit, or DPOOL_ERR_IO when the peer is gone.
int dpool_channel_send(dpool_channel_t *self, uint8_t kind, const void *head, size_t head_size,
                       const void *tail, size_t tail_size);

// Reads what is available without blocking, up to a bounded amount per call (so
// one process sending a large result cannot hold the daemon's loop). Returns
// DPOOL_OK, or DPOOL_ERR_IO at end of file or on an error (the peer has gone or
// closed its end).
int dpool_channel_fill(dpool_channel_t *self);

// Takes the next complete frame read so far, blocking until there is one when
// block is true. *body (borrowed) stays valid until the next call on self. Returns
// 1 with a frame, 0 when none is complete yet (non-blocking only), DPOOL_ERR_IO at
// end of file or on an error, DPOOL_ERR_PROTO for an oversized length.
int dpool_channel_next(dpool_channel_t *self, bool block, uint8_t *kind, const uint8_t **body,
                       size_t *size);

// One TASK (or CHUNK, when chunk is true) for dpool_channel_send_tasks; all borrowed.
typedef struct {
    bool chunk;
    const char *function; // NUL-terminated
    const void *args;
    size_t args_size;
} dpool_channel_task_t;

// Sends count TASK or CHUNK frames under epoch with one write: what a process runs
// ahead arrives in one read. Returns what dpool_channel_send returns, or
// DPOOL_ERR_NOMEM.
int dpool_channel_send_tasks(dpool_channel_t *self, uint32_t epoch,
                             const dpool_channel_task_t *tasks, size_t count);

// Splits a TASK or CHUNK frame's body into the epoch, the function name and the argument
// bytes (both borrowed from body). Returns false when the body holds no epoch and
// NUL-terminated name.
bool dpool_channel_parse_task(const uint8_t *body, size_t size, uint32_t *epoch,
                              const char **function, const uint8_t **args, size_t *args_size);

// A RESULT frame's fields; all borrowed.
typedef struct {
    int code;
    uint32_t flags;      // DPOOL_CHANNEL_WENT_ON
    uint64_t index;      // the count of tasks the process has finished, this one included
    const char *message; // may be NULL
    const void *data;    // the result bytes (none for a failed task, the results so far
    size_t size;         // for a failed chunk)
} dpool_channel_result_t;

// Sends a RESULT frame after the RESULT frames kept back, in one write. Returns what
// dpool_channel_send returns.
int dpool_channel_send_result(dpool_channel_t *self, const dpool_channel_result_t *result);

// Gives the channel an area of capacity bytes (borrowed; in memory the daemon shares)
// for RESULT frames kept back; *size (borrowed) publishes how many bytes of whole frames
// it holds, and *gen (borrowed) moves on each time they are sent and the area is to be
// reused, so the daemon can copy them out while the process runs, or after it died.
void dpool_channel_keep_in(dpool_channel_t *self, uint8_t *area, size_t capacity,
                           _Atomic uint32_t *size, _Atomic uint64_t *gen);

// Keeps a RESULT frame back in the area (its bytes copied), to go with the next one
// sent. Returns DPOOL_OK, or 1 when it does not fit there (or there is no area): the
// caller sends it instead.
int dpool_channel_keep_result(dpool_channel_t *self, const dpool_channel_result_t *result);

// How many RESULT frames are kept back.
size_t dpool_channel_kept(const dpool_channel_t *self);

// Sends the RESULT frames kept back, in one write. Returns what dpool_channel_send
// returns (DPOOL_OK when none were kept).
int dpool_channel_send_kept(dpool_channel_t *self);

// Reads the frame at *at of size bytes of frames (data, borrowed) and moves *at past
// it; false when no whole frame is left there.
bool dpool_channel_frame_at(const uint8_t *data, size_t size, size_t *at, uint8_t *kind,
                            const uint8_t **body, size_t *body_size);

// Whether a complete frame has been read and not taken yet: dpool_channel_next would
// hand it out without waiting.
bool dpool_channel_has_frame(const dpool_channel_t *self);

// Splits a RESULT frame's body. *message_p receives an owned copy of the message, or
// NULL when it was empty; *result points into body (borrowed). Returns false for a
// body too short for what its lengths claim.
bool dpool_channel_parse_result(const uint8_t *body, size_t size, int *code, uint32_t *flags,
                                uint64_t *index, char **message_p, const uint8_t **result,
                                size_t *result_size);

#endif
