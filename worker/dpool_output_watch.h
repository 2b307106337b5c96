/*  dpool_output_watch: whether a worker process's output pipes were written to since
    it last looked, told without a system call.

    A process that runs tasks ahead must know after each task whether the task wrote
    (dpool_runner.c); asked of the kernel, that is one poll per task, about a tenth of
    a no-op task's cost on a virtual machine where a system call takes a microsecond.
    Here the kernel says it instead: an io_uring instance holds a multishot poll of each
    pipe's read end, and every write to a pipe (by the task, a library, a thread, a
    child) sets a flag in the memory the process shares with the ring, in the writer's
    own system call, so it is there once the write has returned. A look reads that flag
    and the ring's counters; only one that finds a write enters the kernel.

    Where io_uring lacks what this needs or is forbidden (kernels before 6.1, Docker's
    default seccomp profile, kernel.io_uring_disabled) or DPOOL_NO_IO_URING is set,
    there is no watch and the process polls. */
#ifndef DPOOL_OUTPUT_WATCH_H
#define DPOOL_OUTPUT_WATCH_H

// Set (to anything) in the worker's environment: its processes poll their pipes.
#define DPOOL_OUTPUT_WATCH_OFF_ENV "DPOOL_NO_IO_URING"

typedef struct dpool_output_watch_t dpool_output_watch_t;

// Watches the pipes whose read ends are fds[0] and fds[1] (borrowed: open while the
// watch lives). Returns NULL when it cannot (see above; errno tells), and the caller
// polls. A pipe that holds bytes already counts as written to at the first look.
dpool_output_watch_t *dpool_output_watch_new(const int fds[2]);

// Whether either pipe was written to, or its write end closed, since the last call:
// 0 for no, 1 for yes or cannot tell. Negative when the watch no longer works (the
// kernel ended a poll and it could not be asked again, or a task closed the ring's
// descriptor): the caller destroys it and polls from then on.
int dpool_output_watch_fired(dpool_output_watch_t *self);

// NULL-safe; sets *self_p to NULL.
void dpool_output_watch_destroy(dpool_output_watch_t **self_p);

#endif
