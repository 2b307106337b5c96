/*  A worker process's output, as the daemon reads and forwards it. Each chunk read from
    a pipe goes to the broker as WORKER_OUTPUT of the task the process started last
    (it counts tasks in the memory it shares with the daemon): a process that runs
    tasks ahead goes on only past tasks that wrote nothing, and after one that wrote it
    starts none of that epoch until the daemon has read that task's result and drained
    the pipes (dpool_slots.c, "Running ahead"). */
#include "dpool_worker_internal.h"

#include "dpool_log.h"

#include <poll.h>

// The task whose output the pipes hold now: the one the process started last, which
// is the running task or one written ahead (none of an epoch starts after a task that
// wrote, until its result has been read and the pipes drained); 0 for none.
static uint64_t
s_output_owner(const dpool_slot_t *slot)
{
    if (slot->state != DPOOL_SLOT_BUSY)
        return 0;
    uint64_t started = dpool_proc_started(slot->proc);
    uint64_t after_running =
        started > slot->results_read + 1 ? started - slot->results_read - 1 : 0;
    if (after_running == 0)
        return slot->task_id;
    const dpool_job_t *job = NULL;
    for (job = zlist_first(slot->ahead); job && --after_running > 0; job = zlist_next(slot->ahead))
        ;
    return job ? job->task_id : slot->task_id;
}

static void
s_forward_output(dpool_worker_t *self, dpool_slot_t *slot, int stream, size_t size)
{
    uint64_t task_id = s_output_owner(slot);
    if (!task_id) {
        DPOOL_LOG_DEBUG("dropped %zu bytes of output from idle worker process %d", size,
                        (int)dpool_proc_pid(slot->proc));
        return;
    }
    dpool_msg_t msg = {.command = DPOOL_CMD_WORKER_OUTPUT,
                       .task_id = task_id,
                       .count = (uint32_t)stream,
                       .text = self->buffer,
                       .text_size = size};
    dpool_uplink_send(self->uplink, &msg);
}

// Reads stream once into self->buffer; at the end of file the pipe leaves the poll
// set. Returns the byte count, 0 or -1 as dpool_proc_read_output.
static ssize_t
s_read_chunk(dpool_worker_t *self, dpool_slot_t *slot, int stream)
{
    ssize_t got =
        dpool_proc_read_output(slot->proc, stream, self->buffer, DPOOL_WORKER_OUTPUT_CHUNK);
    if (got < 0)
        dpool_worker_unwatch_output(self, slot, stream);
    return got;
}

void
dpool_slots_read_output(dpool_worker_t *self, dpool_slot_t *slot, int stream, bool drain)
{
    for (;;) {
        ssize_t got = s_read_chunk(self, slot, stream);
        if (got <= 0)
            return;
        s_forward_output(self, slot, stream, (size_t)got);
        if (!drain)
            return;
    }
}

void
dpool_slots_drain_output(dpool_worker_t *self, dpool_slot_t *slot)
{
    dpool_slots_read_output(self, slot, DPOOL_STREAM_STDOUT, true);
    dpool_slots_read_output(self, slot, DPOOL_STREAM_STDERR, true);
}

// The output of the task whose result just came, which did not go on: what the pipes
// still hold. A process writes its output before its result, so once the result is
// here the pipes hold all of it, and one poll of both pipes, taken now, says which to
// read (epoll's verdict is older than the result).
void
dpool_slots_drain_result_output(dpool_worker_t *self, dpool_slot_t *slot)
{
    const int streams[] = {DPOOL_STREAM_STDOUT, DPOOL_STREAM_STDERR};
    struct pollfd pipes[2];
    for (int k = 0; k < 2; k++)
        pipes[k] =
            (struct pollfd){.fd = dpool_proc_output_fd(slot->proc, streams[k]), .events = POLLIN};
    bool polled = poll(pipes, 2, 0) >= 0;
    for (int k = 0; k < 2; k++)
        if (!polled || pipes[k].revents)
            dpool_slots_read_output(self, slot, streams[k], true);
    slot->output_ready = 0; // drained
}

void
dpool_slots_on_output(dpool_worker_t *self, dpool_slot_t *slot, int stream)
{
    dpool_slots_read_output(self, slot, stream, false);
}
