/*  The io_uring behind dpool_output_watch. The ring is set up by hand (io_uring_setup,
    mmap of its three areas, io_uring_enter): liburing is not among our dependencies,
    and two requests and a flag read are all this needs.

    When a pipe is written to, the poll's wake-up runs in the writer's system call and
    queues work for the ring's owner (this process's thread); the completion entry is
    made only when that work runs. Left to the kernel, it runs when the owner next
    enters the kernel or is interrupted to: a write by another thread or process that
    a task learned of through memory alone could then still be missing from the ring
    when the task returned, and the interruption would fail the task's own blocking
    calls with EINTR. So the work is deferred until asked for
    (IORING_SETUP_DEFER_TASKRUN) and the kernel flags it in the ring as it queues it
    (IORING_SETUP_TASKRUN_FLAG), in the writer's system call: a look reads that flag,
    and only a look that finds it set enters the kernel, to make the entries and take
    them (a task that wrote, which does not run ahead anyway). Kernels before 6.1 lack
    those flags and their processes poll. */
#define _GNU_SOURCE // F_DUPFD_CLOEXEC, syscall
#include "dpool_output_watch.h"

#include "dpool_proc.h"

#include <dpool/errors.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

// One poll request per pipe; a second submission only when the kernel ends one.
#define S_SQ_ENTRIES 2
// Completions a look may find: a task that writes more often between two looks
// overflows the ring, which the kernel keeps (IORING_FEAT_NODROP) until asked, at
// the cost of one system call then.
#define S_CQ_ENTRIES 64
// Rounds of deferred work and overflowed completions one look takes at most; any left
// say "written" at the next look.
#define S_FLUSH_ROUNDS 4
// Deferred work, flagged in the ring; one submitter, this process's thread.
#define S_SETUP_FLAGS                                                                              \
    (IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP | IORING_SETUP_SINGLE_ISSUER |                       \
     IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG)

struct dpool_output_watch_t {
    int ring_fd;
    int fds[2];
    uint8_t *sq_ring; // mapped; holds the completion ring too with IORING_FEAT_SINGLE_MMAP
    size_t sq_ring_size;
    uint8_t *cq_ring; // == sq_ring when single
    size_t cq_ring_size;
    struct io_uring_sqe *sqes;
    size_t sqes_size;
    uint32_t *sq_tail, *sq_array, *sq_flags, sq_mask;
    uint32_t *cq_head, *cq_tail, cq_mask;
    struct io_uring_cqe *cqes;
};

static int
s_enter(int ring_fd, unsigned to_submit, unsigned flags)
{
    return (int)syscall(__NR_io_uring_enter, ring_fd, to_submit, 0, flags, NULL, 0);
}

// Queues a multishot poll of pipe `which` for input (a write, or the write end's last
// close); the caller submits it.
static void
s_queue_poll(dpool_output_watch_t *self, unsigned which)
{
    uint32_t tail = __atomic_load_n(self->sq_tail, __ATOMIC_RELAXED); // ours alone to write
    uint32_t index = tail & self->sq_mask;
    struct io_uring_sqe *sqe = &self->sqes[index];
    memset(sqe, 0, sizeof *sqe);
    sqe->opcode = IORING_OP_POLL_ADD;
    sqe->fd = self->fds[which];
    uint32_t events = POLLIN;
#if __BYTE_ORDER == __BIG_ENDIAN
    events = (events << 16) | (events >> 16); // the kernel reads it as two half-words
#endif
    sqe->poll32_events = events;
    sqe->len = IORING_POLL_ADD_MULTI;
    sqe->user_data = which;
    self->sq_array[index] = index;
    __atomic_store_n(self->sq_tail, tail + 1, __ATOMIC_RELEASE);
}

static int
s_submit(dpool_output_watch_t *self, unsigned count)
{
    int submitted;
    do
        submitted = s_enter(self->ring_fd, count, 0);
    while (submitted < 0 && errno == EINTR);
    return submitted == (int)count ? DPOOL_OK : DPOOL_ERR_IO;
}

static int
s_map(dpool_output_watch_t *self, const struct io_uring_params *params)
{
    self->sq_ring_size = params->sq_off.array + params->sq_entries * sizeof(uint32_t);
    self->cq_ring_size = params->cq_off.cqes + params->cq_entries * sizeof(struct io_uring_cqe);
    bool single = params->features & IORING_FEAT_SINGLE_MMAP;
    if (single && self->cq_ring_size > self->sq_ring_size)
        self->sq_ring_size = self->cq_ring_size;
    void *sq = mmap(NULL, self->sq_ring_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                    self->ring_fd, IORING_OFF_SQ_RING);
    if (sq == MAP_FAILED)
        return DPOOL_ERR_IO;
    self->sq_ring = sq;
    void *cq = sq;
    if (!single) {
        cq = mmap(NULL, self->cq_ring_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                  self->ring_fd, IORING_OFF_CQ_RING);
        if (cq == MAP_FAILED)
            return DPOOL_ERR_IO;
    }
    self->cq_ring = cq;
    self->sqes_size = params->sq_entries * sizeof(struct io_uring_sqe);
    void *sqes = mmap(NULL, self->sqes_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                      self->ring_fd, IORING_OFF_SQES);
    if (sqes == MAP_FAILED)
        return DPOOL_ERR_IO;
    self->sqes = sqes;
    self->sq_tail = (uint32_t *)(self->sq_ring + params->sq_off.tail);
    self->sq_array = (uint32_t *)(self->sq_ring + params->sq_off.array);
    self->sq_flags = (uint32_t *)(self->sq_ring + params->sq_off.flags);
    self->sq_mask = *(uint32_t *)(self->sq_ring + params->sq_off.ring_mask);
    self->cq_head = (uint32_t *)(self->cq_ring + params->cq_off.head);
    self->cq_tail = (uint32_t *)(self->cq_ring + params->cq_off.tail);
    self->cq_mask = *(uint32_t *)(self->cq_ring + params->cq_off.ring_mask);
    self->cqes = (struct io_uring_cqe *)(self->cq_ring + params->cq_off.cqes);
    return DPOOL_OK;
}

// Whether a completion now in the ring is a refusal of a request (a kernel without
// multishot poll refuses the flag with EINVAL). Takes nothing out of the ring.
static bool
s_refused(const dpool_output_watch_t *self, int *error)
{
    uint32_t tail = __atomic_load_n(self->cq_tail, __ATOMIC_ACQUIRE);
    uint32_t head = __atomic_load_n(self->cq_head, __ATOMIC_RELAXED);
    for (; head != tail; head++) {
        const struct io_uring_cqe *cqe = &self->cqes[head & self->cq_mask];
        if (cqe->res < 0) {
            *error = -cqe->res;
            return true;
        }
    }
    return false;
}

dpool_output_watch_t *
dpool_output_watch_new(const int fds[2])
{
    if (getenv(DPOOL_OUTPUT_WATCH_OFF_ENV)) {
        errno = ENOTSUP;
        return NULL;
    }
    if (fds[0] < 0 || fds[1] < 0) {
        errno = EBADF;
        return NULL;
    }
    dpool_output_watch_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->fds[0] = fds[0];
    self->fds[1] = fds[1];
    struct io_uring_params params;
    memset(&params, 0, sizeof params);
    params.flags = S_SETUP_FLAGS;
    params.cq_entries = S_CQ_ENTRIES;
    self->ring_fd = (int)syscall(__NR_io_uring_setup, S_SQ_ENTRIES, &params);
    int error = errno; // EINVAL: a kernel before 6.1; EPERM: forbidden
    bool usable = self->ring_fd >= 0;
    if (usable) {
        int high = fcntl(self->ring_fd, F_DUPFD_CLOEXEC, DPOOL_PROC_FD_LOW_MARK);
        if (high >= 0) {
            close(self->ring_fd);
            self->ring_fd = high;
        }
        usable = params.features & IORING_FEAT_NODROP;
        error = ENOTSUP;
    }
    if (usable && s_map(self, &params) != DPOOL_OK) {
        usable = false;
        error = errno;
    }
    if (usable) {
        s_queue_poll(self, 0);
        s_queue_poll(self, 1);
        usable = s_submit(self, 2) == DPOOL_OK;
        error = usable ? error : errno;
        usable = usable && !s_refused(self, &error);
    }
    if (!usable) {
        dpool_output_watch_destroy(&self);
        errno = error;
    }
    return self;
}

// Takes the completions in the ring: *fired when there was any, ended[which] for a
// poll the kernel ended; false when one ended in a way that asking again would not mend.
static bool
s_take_completions(dpool_output_watch_t *self, int *fired, bool ended[2])
{
    bool mendable = true;
    uint32_t head = __atomic_load_n(self->cq_head, __ATOMIC_RELAXED); // ours alone to write
    uint32_t tail = __atomic_load_n(self->cq_tail, __ATOMIC_ACQUIRE);
    for (; head != tail; head++) {
        const struct io_uring_cqe *cqe = &self->cqes[head & self->cq_mask];
        *fired = 1;
        // A poll the kernel ended for want of room in the ring is asked again; one it
        // ended with any other error would only end again.
        if (!(cqe->flags & IORING_CQE_F_MORE) && cqe->user_data < 2) {
            ended[cqe->user_data] = true;
            mendable = mendable && (cqe->res >= 0 || cqe->res == -ECANCELED);
        }
    }
    __atomic_store_n(self->cq_head, head, __ATOMIC_RELEASE);
    return mendable;
}

int
dpool_output_watch_fired(dpool_output_watch_t *self)
{
    int fired = 0;
    bool ended[2] = {false, false};
    bool mendable = s_take_completions(self, &fired, ended);
    for (int round = 0; round < S_FLUSH_ROUNDS; round++) {
        uint32_t flags = __atomic_load_n(self->sq_flags, __ATOMIC_ACQUIRE);
        if (!(flags & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW)))
            break;
        // A write, at least: its work waits to be run, or its completion in the kernel.
        fired = 1;
        if (s_enter(self->ring_fd, 0, IORING_ENTER_GETEVENTS) < 0 && errno != EINTR &&
            errno != EBUSY) {
            // The descriptor is gone (a task closed it) or is another file now: not
            // ours to close.
            self->ring_fd = -1;
            return DPOOL_ERR_IO;
        }
        mendable = s_take_completions(self, &fired, ended) && mendable;
    }
    if (!mendable)
        return DPOOL_ERR_IO;
    unsigned again = 0;
    for (unsigned which = 0; which < 2; which++)
        if (ended[which]) {
            s_queue_poll(self, which);
            again++;
        }
    if (again && s_submit(self, again) != DPOOL_OK)
        return DPOOL_ERR_IO;
    return fired;
}

void
dpool_output_watch_destroy(dpool_output_watch_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dpool_output_watch_t *self = *self_p;
    if (self->sqes)
        munmap(self->sqes, self->sqes_size);
    if (self->cq_ring && self->cq_ring != self->sq_ring)
        munmap(self->cq_ring, self->cq_ring_size);
    if (self->sq_ring)
        munmap(self->sq_ring, self->sq_ring_size);
    if (self->ring_fd >= 0)
        close(self->ring_fd);
    free(self);
    *self_p = NULL;
}
