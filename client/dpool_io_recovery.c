/*  What a reconnect or a silence means for the pool's I/O thread (dpool_io.c): the
    broker is counted lost, SUBMITs are held back meanwhile, the pool is resynced when
    the broker is back or has forgotten us, and pending tasks fail when it stays lost
    too long. Apart from the thread's loop, which only moves messages and keeps time.
    Runs on the I/O thread, or on a user thread standing in for it under socket_lock
    (dpool_io_lend.c), never on both at once.

    Recovery ("Restarts, re-sends and the journal"): the broker's epoch comes with
    every POOL_OPENED and HEARTBEAT. When it changes (a restarted broker), when a lost
    broker speaks again, or when the broker says it does not know us (ERROR "peer not
    registered", RESULT "pool 1 is not open"), the thread RESYNCS once: POOL_OPEN
    again with the same settings, then every SUBMIT still without a RESULT, as kept in
    the pending table, same task id. Until that POOL_OPEN is answered, "not known"
    answers are older than it and are ignored: the re-sends already cover them. A task
    answered twice (it ran again after a restart) is delivered once: its entry leaves
    the table with the first RESULT. Pending tasks fail as unreachable only when the
    broker stays lost past the reconnect timeout. */
#include "dpool_io_internal.h"

#include <dpool_clock.h>
#include <stdio.h>
#include <string.h>

// The outbox holds SUBMITs back while the broker is lost: the resync re-sends them.
static void
s_set_lost(dpool_io_state_t *self, bool lost)
{
    self->lost = lost;
    dpool_outbox_set_lost(self->outbox, lost);
}

void
dpool_io_mark_lost(dpool_io_state_t *self)
{
    if (self->lost)
        return;
    s_set_lost(self, true);
    self->lost_since = dpool_clock_ms();
}

static void
s_resend_one(void *arg, const uint8_t *submit, size_t size)
{
    dpool_io_state_t *self = arg;
    if (dpool_batch_add_encoded(self->outgoing, submit, size) == DPOOL_OK &&
        dpool_batch_full(self->outgoing))
        dpool_batch_send(self->outgoing, self->dealer, NULL); // lost like any failed send
}

// Opens the pool again and re-sends every unanswered SUBMIT, in that order on the one
// connection, so the broker has the pool before the first re-sent task arrives.
static void
s_resync(dpool_io_state_t *self)
{
    s_set_lost(self, false);
    self->reopening = true;
    self->epoch = 0; // whatever epoch comes next is the broker these re-sends went to
    if (dpool_io_send_open(self) != DPOOL_OK)
        return;
    dpool_pending_resend(self->pending, s_resend_one, self);
    dpool_batch_send(self->outgoing, self->dealer, NULL);
}

// True for an answer that says the broker does not know our pool: it restarted without
// a journal, or dropped us as vanished.
static bool
s_forgot_us(const dpool_msg_t *msg)
{
    if (msg->command == DPOOL_CMD_ERROR)
        return msg->text && strstr(msg->text, "not registered");
    return msg->command == DPOOL_CMD_RESULT && msg->code == DPOOL_ERR_INVALID && msg->text &&
           strstr(msg->text, "is not open");
}

// Handles what concerns the connection rather than a task. Returns true when msg has
// been dealt with (a RESULT that only says the broker forgot the task is not an outcome).
bool
dpool_io_on_state(dpool_io_state_t *self, const dpool_msg_t *msg)
{
    bool resync = self->lost && !self->released;
    bool epoch_carrier =
        msg->command == DPOOL_CMD_HEARTBEAT || msg->command == DPOOL_CMD_POOL_OPENED;
    uint64_t epoch = epoch_carrier ? msg->task_id : 0;
    if (epoch && self->epoch && epoch != self->epoch && !self->released)
        resync = true;
    bool forgot = s_forgot_us(msg);
    if (forgot && !self->reopening && !self->released)
        resync = true;
    if (self->lost)
        s_set_lost(self, false);
    self->last_heard = dpool_clock_ms();
    if (resync)
        s_resync(self);
    if (epoch && !self->epoch)
        self->epoch = epoch;
    if (msg->command == DPOOL_CMD_POOL_OPENED && msg->pool_ref == DPOOL_IO_POOL_REF) {
        self->reopening = false;
        // The broker refused the pool it had granted before: nothing pending can run.
        if (msg->code < 0)
            dpool_pending_fail_all(self->pending, msg->code, msg->text);
    }
    // Our key was withdrawn (SIGHUP at the broker): nothing we send will be taken.
    if (msg->command == DPOOL_CMD_ERROR && msg->code == DPOOL_ERR_NOT_AUTHORISED)
        dpool_pending_fail_all(self->pending, msg->code, msg->text);
    return forgot || msg->command != DPOOL_CMD_RESULT;
}

// Sends what was taken from the outbox but its SUBMITs: they were posted before the
// broker was counted lost, and the resync sends the pending table's copies of them,
// after its POOL_OPEN (a SUBMIT sent now could reach a restarted broker before that,
// or run twice on one that was only silent for a while).
void
dpool_io_send_without_submits(dpool_io_state_t *self)
{
    dpool_batch_t *kept = dpool_batch_new();
    zmsg_t *zmsg;
    while ((zmsg = dpool_batch_take(self->outgoing, NULL))) {
        zframe_t *run = NULL;
        const char *why = NULL;
        int count = dpool_batch_open(zmsg, false, &run, &why);
        size_t at = 0;
        for (int i = 0; kept && i < count; i++) {
            dpool_batch_part_t part;
            dpool_batch_part(run, &at, &part);
            if (part.header[3] != DPOOL_CMD_SUBMIT)
                dpool_batch_add_encoded(kept, part.header, dpool_batch_part_size(&part));
        }
        if (kept && count == 0 && dpool_batch_plain_command(zmsg) != DPOOL_CMD_SUBMIT)
            dpool_batch_add_alone(kept, &zmsg);
        zmsg_destroy(&zmsg);
    }
    if (kept)
        dpool_batch_send(kept, self->dealer, NULL); // lost like a failed send
    dpool_batch_destroy(&kept);
}

void
dpool_io_check_lost(dpool_io_state_t *self)
{
    if (!self->lost || self->reconnect_ms < 0)
        return;
    if (dpool_clock_ms() - self->lost_since < self->reconnect_ms)
        return;
    if (dpool_pending_count(self->pending) == 0)
        return;
    char why[200];
    snprintf(why, sizeof why, "lost the connection to the broker at %s for more than %.1f s",
             self->endpoint, (double)self->reconnect_ms / 1000.0);
    dpool_pending_fail_all(self->pending, DPOOL_ERR_UNREACHABLE, why);
}
