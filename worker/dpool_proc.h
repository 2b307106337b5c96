/*  dpool_proc: one forked worker process as the daemon sees it: its pid, the
    channel to it, and the read ends of its stdout and stderr pipes.

    The process starts in a clean state: it dies with the daemon (PR_SET_PDEATHSIG),
    has /dev/null as stdin, the pipes as stdout and stderr, the channel as fd 3, the
    pipes' read ends as fds 4 and 5 (to poll) and no other inherited descriptor (in
    particular none of ZeroMQ's), default signal handlers, and it never returns into
    the daemon's code: it ends with _exit. */
#ifndef DPOOL_PROC_H
#define DPOOL_PROC_H

#include "dpool_channel.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

// Room for RESULT frames a process keeps back (a result larger than what is left is sent).
#define DPOOL_PROC_KEPT_MAX (56 * 1024)

// Memory the daemon shares with one process (mapped before the fork), so that what a
// process checks after every task costs it no system call. Both sides use atomics.
typedef struct {
    // 1 + the epoch whose jobs written ahead the process must skip after its running
    // task (a job of it was KILLed); 0 = none.
    _Atomic uint64_t skip;
    // Tasks the process has started, and finished (its result sent, or kept back to go
    // with a later one): the daemon compares them with the results it has read, to tell
    // whose output the pipes hold and whether a task it would kill is over.
    _Atomic uint64_t started;
    _Atomic uint64_t finished;
    // Odd while the daemon reads one of the process's output pipes; with output_taken
    // (bytes read from both so far) and the bytes still in the pipes, a process tells
    // whether a task wrote (dpool_runner.c).
    _Atomic uint64_t output_reads;
    _Atomic uint64_t output_taken;
    // RESULT frames the process keeps back to send several in one write
    // (dpool_channel_keep_in): kept_size bytes of whole frames, each with its index;
    // kept_gen moves on when they have been sent and the area is reused. The daemon
    // copies them out when they wait too long, or when the process died with them:
    // those tasks ended, and are answered.
    _Atomic uint64_t kept_gen;
    _Atomic uint32_t kept_size;
    uint8_t kept[DPOOL_PROC_KEPT_MAX];
} dpool_proc_shared_t;

// The process holds the read ends of its own stdout and stderr pipes here (close on
// exec), to poll them, never to read: an empty pipe is told in one system call
// (dpool_runner.c). While the daemon lives it holds them too, and the process dies with
// it; but a child a task forks without exec inherits them, and once its worker process
// and the daemon are gone its writes to a full pipe block instead of failing (EPIPE).
#define DPOOL_PROC_STDOUT_PEEK_FD 4
#define DPOOL_PROC_STDERR_PEEK_FD 5

// Where a worker process keeps the descriptors it holds for itself (copies of its
// output pipes, its io_uring), out of the way of those its tasks open and close.
#define DPOOL_PROC_FD_LOW_MARK 512

// What the new process runs: main_fn(arg, channel_fd, shared). It must not return;
// if it does, the process exits with status 70.
typedef void dpool_proc_main_fn(void *arg, int channel_fd, dpool_proc_shared_t *shared);

typedef struct dpool_proc_t dpool_proc_t;

// Forks a process running main_fn(arg, ...). arg is borrowed: the child sees its
// copy of the daemon's memory. Returns an owned object, or NULL (logged) when
// pipes or fork fail.
dpool_proc_t *dpool_proc_spawn(dpool_proc_main_fn *main_fn, void *arg);

// Kills the process (SIGKILL) if it has not been reaped, reaps it, closes every
// fd. NULL-safe; sets *self_p to NULL.
void dpool_proc_destroy(dpool_proc_t **self_p);

pid_t dpool_proc_pid(const dpool_proc_t *self);

// The channel to the process (borrowed from self).
dpool_channel_t *dpool_proc_channel(dpool_proc_t *self);

// Tells the process to skip, after its running task, the jobs written to it ahead
// under epoch (dpool_channel.h, "Running ahead").
void dpool_proc_skip(dpool_proc_t *self, uint32_t epoch);

// Copies the RESULT frames the process keeps back into buffer (DPOOL_PROC_KEPT_MAX
// bytes, caller-owned), *size_p bytes of them. Returns false when the process sent
// them meanwhile (the copy may be torn: they are in the channel instead).
bool dpool_proc_copy_kept(const dpool_proc_t *self, uint8_t *buffer, size_t *size_p);

// How many tasks the process has started, and finished, their results read or not.
uint64_t dpool_proc_started(const dpool_proc_t *self);
uint64_t dpool_proc_finished(const dpool_proc_t *self);

// The read end of stream (DPOOL_STREAM_STDOUT or _STDERR), or -1 when there is none.
// It stays open after its end of file, until destroy: its owner may still be
// watching it.
int dpool_proc_output_fd(const dpool_proc_t *self, int stream);

// Reads what the process wrote to stream, without blocking, into buffer (size
// bytes, caller-owned). Returns the byte count, 0 when nothing is waiting, or -1
// at end of file (and at every later call).
ssize_t dpool_proc_read_output(dpool_proc_t *self, int stream, void *buffer, size_t size);

// Makes sure the process is dead (SIGKILL; harmless if it already died), reaps it
// and writes how it ended into why, e.g. "worker process 4242 on myhost killed by
// signal 11 (SIGSEGV)" or "... exited with status 3". host is borrowed. Returns
// DPOOL_OK, or DPOOL_ERR_IO if waitpid fails. Idempotent.
int dpool_proc_reap(dpool_proc_t *self, const char *host, char *why, size_t why_size);

#endif
