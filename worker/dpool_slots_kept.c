/*  Results a worker process keeps back (dpool_runner.c): the results of short silent
    tasks, held in the memory it shares with the daemon to go several in one write.
    The daemon takes them itself, in order and each once (every RESULT carries its
    index), when the process has finished no task for a while (a long task runs after
    them), before it acts on a KILL, and when the process died with them. */
#include "dpool_worker_internal.h"

#include "dpool_clock.h"

#include <stdlib.h>

void
dpool_slots_arm_kept_check(dpool_worker_t *self, dpool_slot_t *slot)
{
    if (slot->state == DPOOL_SLOT_BUSY && zlist_size(slot->ahead) > 0 && !slot->kept_check_at) {
        slot->kept_check_at = dpool_clock_ms() + DPOOL_WORKER_KEPT_WAIT_MS;
        dpool_worker_timer_at(self, slot->kept_check_at);
    }
}

// Whether a frame is a whole RESULT that went on, with *index set: what a daemon takes
// from a process without its channel's usual turn (a kept result, one left in the
// channel of a dead process), since taking it starts no other job here.
static bool
s_went_on_result(uint8_t kind, const uint8_t *body, size_t size, uint64_t *index)
{
    int code;
    uint32_t flags = 0;
    char *message = NULL;
    const uint8_t *result;
    size_t result_size;
    bool went_on = kind == DPOOL_CHANNEL_RESULT &&
                   dpool_channel_parse_result(body, size, &code, &flags, index, &message, &result,
                                              &result_size) &&
                   (flags & DPOOL_CHANNEL_WENT_ON);
    free(message);
    return went_on;
}

// Answers, in order, the results the process in slot keeps back that the daemon has
// not read, from a copy of the memory they share: for a process that died with them,
// or whose next task runs long (they would wait for it). Returns false when the copy
// may be torn: the process sent them meanwhile, and they are in the channel.
static bool
s_take_kept(dpool_worker_t *self, dpool_slot_t *slot)
{
    size_t size = 0, at = 0;
    if (!dpool_proc_copy_kept(slot->proc, self->kept_copy, &size))
        return false;
    uint8_t kind;
    const uint8_t *body;
    size_t body_size;
    while (slot->proc && slot->state == DPOOL_SLOT_BUSY && zlist_size(slot->ahead) > 0 &&
           dpool_channel_frame_at(self->kept_copy, size, &at, &kind, &body, &body_size)) {
        // Only what a kept result can be: one that went on, whole.
        uint64_t index = 0;
        if (!s_went_on_result(kind, body, body_size, &index) || index > slot->results_read + 1)
            break; // not believed, or one before it is still in the channel
        if (index == slot->results_read + 1)
            dpool_slots_on_result(self, slot, body, body_size);
    }
    return true;
}

void
dpool_slots_collect_kept(dpool_worker_t *self, dpool_slot_t *slot)
{
    for (int tries = 0; tries < 3; tries++) {
        if (!slot->proc || slot->state != DPOOL_SLOT_BUSY ||
            dpool_proc_finished(slot->proc) <= slot->results_read)
            return;
        dpool_slots_on_channel(self, slot); // what was sent comes first
        if (slot->proc && slot->state == DPOOL_SLOT_BUSY && s_take_kept(self, slot))
            return;
    }
}

void
dpool_slots_on_kept_timer(dpool_worker_t *self, dpool_slot_t *slot)
{
    slot->kept_check_at = 0;
    // Results kept back while the process has finished no task since the last look:
    // it runs a long one, and they would wait for it. While it goes on finishing tasks,
    // it sends them itself.
    uint64_t finished = dpool_proc_finished(slot->proc);
    if (finished > slot->results_read && finished == slot->finished_seen)
        dpool_slots_collect_kept(self, slot);
    else
        slot->finished_seen = finished;
    if (slot->proc)
        dpool_slots_arm_kept_check(self, slot);
}

// After the process in slot died: the results it had sent and the daemon had not read
// yet (the death was noticed by a failed write) are answered, as far as they follow
// in order and went on (a result that did not go on would start another job here).
static void
s_take_channel_rest(dpool_worker_t *self, dpool_slot_t *slot)
{
    dpool_channel_t *channel = dpool_proc_channel(slot->proc);
    dpool_channel_fill(channel); // the stream is final: the process is reaped
    uint8_t kind;
    const uint8_t *body;
    size_t size;
    while (slot->proc && slot->state == DPOOL_SLOT_BUSY && zlist_size(slot->ahead) > 0 &&
           dpool_channel_next(channel, false, &kind, &body, &size) == 1) {
        uint64_t index = 0;
        if (!s_went_on_result(kind, body, size, &index) || index != slot->results_read + 1)
            return;
        dpool_slots_on_result(self, slot, body, size);
    }
}

void
dpool_slots_take_from_dead(dpool_worker_t *self, dpool_slot_t *slot)
{
    s_take_channel_rest(self, slot);
    s_take_kept(self, slot); // dead: the copy is whole
}
