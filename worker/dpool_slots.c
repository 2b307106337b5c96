/*  The worker processes as the daemon runs them: one slot per process place, its
    life (spawn, READY, tasks, death, replacement with back-off) and what its channel
    and output pipes bring.

    Output before results. A worker process flushes stdout and stderr before it
    writes its result, so when the result frame arrives the daemon drains both pipes
    and forwards what they hold, and only then sends WORKER_RESULT. A process killed
    for its time limit is killed first and drained after, so everything it wrote
    goes out before the -14 result and nothing can be written after it.

    Initializer failures. A process whose initializer fails says so on its channel
    (or dies before READY) and is replaced with the usual back-off; after
    DPOOL_WORKER_INIT_FAILURES_MAX in a row, the daemon stops with self->error.

    Chains. A chained job is bound to the slot whose newest task it follows, and
    waits in that slot's queue: it may run only where its predecessor ran, after it,
    because the broker spent no credit on it and counts it in its predecessor's place.
    So a free process serves its own queue before `pending` (whose jobs hold credits
    any process may serve), and is idle only when both are empty. A process that dies
    takes only its running task with it: the queue stays with the slot and runs on the
    replacement, which then brings no CREDIT, since the queue's last result returns
    the credit the chain's head took. Its result goes out before its successor starts,
    so the broker always hears a task end before it hears of the next one.

    Running ahead (dpool_channel.h). A busy process that said it can is written the
    next jobs of its queue too (`ahead`), within DPOOL_WORKER_AHEAD_MAX and _BYTES,
    jobs without a time limit behind a running task without one. A RESULT that says
    WENT_ON makes the first of them the running task; any other result sends them all
    back to the queue's front under the next epoch (the process skips the old one).
    Only tasks that wrote nothing are run past, and results of those may be kept back
    by the process to go several in one write, so the daemon may count as running a
    task the process finished a while ago. Output found in the pipes belongs to the
    task the process started last (it counts them in the memory it shares with the
    daemon): after a task that wrote, it starts none of that epoch, and the daemon
    drains the pipes when that task's result comes, before it sends the skipped jobs
    again. So each byte goes out as its own task's, and all of a task's output before
    its result; a task's output may come before the results of tasks before it that
    were kept back. A KILL of a job written ahead kills the process when that job
    comes to run, as for any running task. */
#include "dpool_worker_internal.h"

#include "dpool_clock.h"
#include "dpool_log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// After every change of slot's running task or queue: a TASK chained after a task
// that has ended must not find it (its result may be on the wire to the broker).
static void
s_refresh_tail(dpool_slot_t *slot)
{
    // KILLed jobs written ahead never run (dpool_channel.h, "Running ahead"): no task
    // follows them.
    const dpool_job_t *last = zlist_tail(slot->queue);
    for (dpool_job_t *job = last ? NULL : zlist_first(slot->ahead); job;
         job = zlist_next(slot->ahead))
        if (!job->killed)
            last = job;
    if (last)
        slot->tail_id = last->task_id;
    else
        slot->tail_id = slot->state == DPOOL_SLOT_BUSY && !slot->head_killed ? slot->task_id : 0;
}

// What a job's TASK frame takes in the channel socket's buffer, about.
static size_t
s_frame_bytes(const dpool_job_t *job)
{
    return 64 + strlen(job->function) + zframe_size(job->args);
}

// Puts the jobs written ahead back at the front of the queue, in order, for the next
// process or epoch; jobs KILLed meanwhile are dropped.
static void
s_take_back_ahead(dpool_slot_t *slot)
{
    dpool_job_t *job;
    while ((job = zlist_tail(slot->ahead))) {
        zlist_remove(slot->ahead, job);
        if (job->killed || zlist_push(slot->queue, job) != 0)
            dpool_tasks_job_destroy(&job);
    }
    slot->ahead_bytes = 0;
    slot->epoch++;
}

static void s_on_death(dpool_worker_t *self, dpool_slot_t *slot);

// Tells the process in slot to stop after its running task and skip the jobs written
// to it ahead (some were KILLed): the daemon takes them back with the result.
static void
s_skip_ahead(dpool_slot_t *slot)
{
    if (slot->proc)
        dpool_proc_skip(slot->proc, slot->epoch);
}

// Writes the busy process in slot, in one write, first (the job it is to start now, or
// NULL when it runs one already) and the next jobs of its queue ahead, within the
// bounds of running ahead, once half of what it was handed has run: a few jobs per
// write, not one per result. Returns what the write returned (DPOOL_OK also when there
// was nothing to write); jobs not written stay queued.
static int
s_write_jobs(dpool_worker_t *self, dpool_slot_t *slot, const dpool_job_t *first)
{
    dpool_channel_task_t tasks[1 + DPOOL_WORKER_AHEAD_MAX];
    size_t count = 0, added = 0;
    if (first)
        tasks[count++] =
            (dpool_channel_task_t){(first->flags & DPOOL_FLAG_CHUNK) != 0, first->function,
                                   zframe_data(first->args), zframe_size(first->args)};
    unsigned max = self->runner.max_tasks;
    size_t ahead = zlist_size(slot->ahead), bytes = slot->ahead_bytes;
    bool fill = slot->runs_ahead && slot->state == DPOOL_SLOT_BUSY && !slot->time_limit_ms &&
                ahead <= DPOOL_WORKER_AHEAD_MAX / 2;
    for (dpool_job_t *job = fill ? zlist_first(slot->queue) : NULL; job;
         job = zlist_next(slot->queue)) {
        size_t size = s_frame_bytes(job);
        // The running task, those ahead and this one must all fit in the process's life.
        if (ahead + added >= DPOOL_WORKER_AHEAD_MAX || bytes + size > DPOOL_WORKER_AHEAD_BYTES ||
            job->time_limit_ms || (max && slot->tasks_done + ahead + added + 2 > max))
            break;
        // In both lists until written: appending after the write could fail, and leave
        // a job running that the daemon could not match with its result.
        if (zlist_append(slot->ahead, job) != 0)
            break;
        tasks[count++] = (dpool_channel_task_t){(job->flags & DPOOL_FLAG_CHUNK) != 0, job->function,
                                                zframe_data(job->args), zframe_size(job->args)};
        added++;
        bytes += size;
    }
    if (count == 0)
        return DPOOL_OK;
    int rc = dpool_channel_send_tasks(dpool_proc_channel(slot->proc), slot->epoch, tasks, count);
    if (rc != DPOOL_OK) {
        // They stay queued, for this process (nothing was written) or its replacement.
        for (dpool_job_t *job = zlist_first(slot->queue); job && added > 0; added--) {
            zlist_remove(slot->ahead, job);
            job = zlist_next(slot->queue);
        }
        return rc;
    }
    for (size_t i = 0; i < added; i++)
        zlist_pop(slot->queue);
    slot->ahead_bytes = bytes;
    s_refresh_tail(slot);
    dpool_slots_arm_kept_check(self, slot);
    return DPOOL_OK;
}

static void
s_fill_ahead(dpool_worker_t *self, dpool_slot_t *slot)
{
    // A write that failed may have delivered part of the frames: the channel is out of
    // step, and the process is not trusted (as when a running task's write fails).
    if (s_write_jobs(self, slot, NULL) == DPOOL_ERR_IO)
        s_on_death(self, slot);
}

void
dpool_slots_fill_ahead(dpool_worker_t *self)
{
    for (size_t i = 0; i < self->fill_due_count; i++) {
        self->fill_due[i]->fill_due = false;
        s_fill_ahead(self, self->fill_due[i]);
    }
    self->fill_due_count = 0;
}

void
dpool_slots_spawn(dpool_worker_t *self, dpool_slot_t *slot)
{
    int64_t now = dpool_clock_ms();
    slot->proc = dpool_proc_spawn(dpool_runner_main, &self->runner);
    if (slot->proc && !dpool_worker_watch(self, slot))
        dpool_proc_destroy(&slot->proc);
    if (!slot->proc) {
        slot->spawn_at = now + DPOOL_WORKER_RESTART_DELAY_MAX_MS;
        dpool_worker_timer_at(self, slot->spawn_at);
        return;
    }
    slot->state = DPOOL_SLOT_STARTING;
    slot->tasks_done = 0;
    slot->results_read = 0;
    slot->finished_seen = 0;
    slot->kept_check_at = 0;
    slot->spawned_at = now;
}

// Empties slot after its process ended (crash, exit, KILL, time limit) and schedules
// the replacement. restart_now skips the back-off: a kill is no sign of a sick module.
static void
s_bury(dpool_worker_t *self, dpool_slot_t *slot, bool restart_now)
{
    int64_t now = dpool_clock_ms();
    if (slot->state == DPOOL_SLOT_IDLE)
        self->idle--;
    if (restart_now || now - slot->spawned_at >= DPOOL_WORKER_SHORT_LIFE_MS)
        slot->restart_delay = 0;
    else if (slot->restart_delay < DPOOL_WORKER_RESTART_DELAY_MIN_MS)
        slot->restart_delay = DPOOL_WORKER_RESTART_DELAY_MIN_MS;
    else if (slot->restart_delay < DPOOL_WORKER_RESTART_DELAY_MAX_MS)
        slot->restart_delay *= 2;
    slot->spawn_at = now + slot->restart_delay;
    dpool_worker_timer_at(self, slot->spawn_at);
    dpool_worker_unwatch(self, slot);
    dpool_proc_destroy(&slot->proc);
    slot->state = DPOOL_SLOT_EMPTY;
    slot->deadline = 0;
    slot->head_killed = false;
    s_take_back_ahead(slot); // they never started: the replacement runs them
    s_refresh_tail(slot);
}

// One more new process whose initializer failed, for why (borrowed): logged, and
// after too many in a row the daemon's loop is told to stop.
static void
s_count_init_failure(dpool_worker_t *self, pid_t pid, const char *why)
{
    DPOOL_LOG_WARN("initializer %s failed in worker process %d: %s", self->initializer, (int)pid,
                   why);
    if (++self->init_failures < DPOOL_WORKER_INIT_FAILURES_MAX || self->error)
        return;
    self->error = zsys_sprintf("initializer %s failed in %u new processes in a row: %s",
                               self->initializer, self->init_failures, why);
}

// The process in slot died or broke its channel: the results it had finished are
// answered, its running task, if any, is lost, and the result says how.
static void
s_on_death(dpool_worker_t *self, dpool_slot_t *slot)
{
    char why[512];
    dpool_slots_drain_output(self, slot);
    dpool_proc_reap(slot->proc, self->host, why, sizeof why);
    dpool_slots_take_from_dead(self, slot);
    if (slot->state == DPOOL_SLOT_BUSY && slot->head_killed) {
        DPOOL_LOG_DEBUG("killed task %" PRIu64 " ended with its process: %s", slot->task_id, why);
    } else if (slot->state == DPOOL_SLOT_BUSY) {
        DPOOL_LOG_WARN("task %" PRIu64 " lost: %s", slot->task_id, why);
        dpool_tasks_send_result(self, slot->task_id, DPOOL_ERR_WORKER_LOST, why, NULL, 0);
    } else if (slot->state == DPOOL_SLOT_STARTING && self->initializer) {
        s_count_init_failure(self, dpool_proc_pid(slot->proc), why);
    } else if (slot->state != DPOOL_SLOT_RETIRING) {
        DPOOL_LOG_WARN("%s while idle", why);
    }
    s_bury(self, slot, slot->state == DPOOL_SLOT_RETIRING);
}

// INIT_FAILED from a STARTING process: body (size bytes, borrowed) is the message.
static void
s_on_init_failed(dpool_worker_t *self, dpool_slot_t *slot, const uint8_t *body, size_t size)
{
    char *message = strndup((const char *)body, size);
    s_count_init_failure(self, dpool_proc_pid(slot->proc), message ? message : "out of memory");
    free(message);
    char why[512];
    dpool_proc_reap(slot->proc, self->host, why, sizeof why);
    s_bury(self, slot, false);
}

// The next job for the free process in slot, owned by the caller, or NULL. Its own
// queue first: those jobs may run nowhere else.
static dpool_job_t *
s_next_job(dpool_worker_t *self, dpool_slot_t *slot)
{
    dpool_job_t *job = zlist_pop(slot->queue);
    return job ? job : zlist_pop(self->pending);
}

static void
s_become_idle(dpool_worker_t *self, dpool_slot_t *slot)
{
    slot->state = DPOOL_SLOT_IDLE;
    self->idle++;
    s_refresh_tail(slot);
}

// The process in slot is free: it takes its next job, or counts as idle.
static void
s_on_idle(dpool_worker_t *self, dpool_slot_t *slot)
{
    dpool_job_t *job = s_next_job(self, slot);
    if (!job) {
        s_become_idle(self, slot);
        return;
    }
    dpool_slots_start(self, slot, job);
    dpool_tasks_job_destroy(&job);
}

// Hands a job to the idle process in slot. The frame is the function name, a NUL,
// and the argument bytes exactly as they came from the broker: a chunk of many MB
// is written once, from the broker's frame, without a copy.
void
dpool_slots_start(dpool_worker_t *self, dpool_slot_t *slot, const dpool_job_t *job)
{
    slot->state = DPOOL_SLOT_BUSY;
    slot->task_id = job->task_id;
    slot->head_killed = false;
    slot->time_limit_ms = job->time_limit_ms;
    // The limit counts from here, not from the TASK's arrival: a task that waited in
    // pending for a process has not run yet.
    slot->deadline = job->time_limit_ms ? dpool_clock_ms() + job->time_limit_ms : 0;
    if (slot->deadline)
        dpool_worker_timer_at(self, slot->deadline);
    s_refresh_tail(slot);
    // With the next jobs of its queue, when it runs ahead: one write.
    int rc = s_write_jobs(self, slot, job);
    if (rc == DPOOL_OK) {
        return;
    } else if (rc == DPOOL_ERR_INVALID) {
        slot->state = DPOOL_SLOT_IDLE;
        slot->deadline = 0;
        dpool_tasks_send_result(self, job->task_id, DPOOL_ERR_TOO_BIG, "task arguments are too big",
                                NULL, 0);
        s_on_idle(self, slot);
    } else if (rc != DPOOL_OK) {
        s_on_death(self, slot);
    }
}

// The process went on to the first job written ahead: it is the running task now.
static void
s_run_first_ahead(dpool_slot_t *slot)
{
    dpool_job_t *job = zlist_pop(slot->ahead);
    slot->ahead_bytes -= s_frame_bytes(job);
    slot->task_id = job->task_id;
    slot->time_limit_ms = 0; // a job with a limit is never written ahead
    slot->head_killed = job->killed;
    dpool_tasks_job_destroy(&job);
}

void
dpool_slots_on_result(dpool_worker_t *self, dpool_slot_t *slot, const uint8_t *body, size_t size)
{
    int code;
    uint32_t flags;
    uint64_t index;
    char *message = NULL;
    const uint8_t *result;
    size_t result_size;
    bool parsed = slot->state == DPOOL_SLOT_BUSY &&
                  dpool_channel_parse_result(body, size, &code, &flags, &index, &message, &result,
                                             &result_size);
    if (parsed && index <= slot->results_read) {
        free(message); // answered already, from the copy of what the process kept back
        return;
    }
    if (!parsed || index != slot->results_read + 1) {
        free(message);
        s_on_death(self, slot); // a process that breaks the channel's rules is not trusted
        return;
    }
    // A failed chunk brings the results of the items before the failing one.
    // A function that wrote no value returned nil (a payload is never empty).
    static const uint8_t nil = 0xc0;
    if (code == DPOOL_OK && result_size == 0) {
        result = &nil;
        result_size = 1;
    }
    slot->results_read = index;
    zframe_t *payload = result_size > 0 ? zframe_new(result, result_size) : NULL;
    bool went_on = (flags & DPOOL_CHANNEL_WENT_ON) && zlist_size(slot->ahead) > 0;
    if (!(flags & DPOOL_CHANNEL_WENT_ON)) {
        dpool_slots_drain_result_output(self, slot);
        s_take_back_ahead(slot); // the process skips them: they go again, next epoch
    }
    uint64_t task_id = slot->task_id;
    slot->deadline = 0;
    unsigned max = self->runner.max_tasks;
    dpool_job_t *next = NULL;
    if (max && ++slot->tasks_done >= max) {
        // It exits by itself; its replacement brings the credit or runs the queue.
        s_take_back_ahead(slot); // none, unless the process miscounts: never lost
        slot->state = DPOOL_SLOT_RETIRING;
        s_refresh_tail(slot);
    } else if (went_on) {
        s_run_first_ahead(slot);
    } else if (!(next = s_next_job(self, slot))) {
        s_become_idle(self, slot);
    }
    // A process that goes on to another job earns no credit.
    unsigned credits = slot->state == DPOOL_SLOT_IDLE ? dpool_tasks_take_credits(self) : 0;
    dpool_tasks_send_result(self, task_id, code, message, &payload, credits);
    free(message);
    if (next) // after the result: a job refused at once (-13) must not overtake it
        dpool_slots_start(self, slot, next);
    dpool_tasks_job_destroy(&next);
}

// Handles one frame; false when the slot was emptied.
static bool
s_on_frame(dpool_worker_t *self, dpool_slot_t *slot, uint8_t kind, const uint8_t *body, size_t size)
{
    if (kind == DPOOL_CHANNEL_READY && slot->state == DPOOL_SLOT_STARTING) {
        self->init_failures = 0;
        slot->runs_ahead = size >= 1 && (body[0] & DPOOL_CHANNEL_RUNS_AHEAD);
        s_on_idle(self, slot);
    } else if (kind == DPOOL_CHANNEL_RESULT) {
        dpool_slots_on_result(self, slot, body, size);
    } else if (kind == DPOOL_CHANNEL_INIT_FAILED && slot->state == DPOOL_SLOT_STARTING &&
               self->initializer) {
        s_on_init_failed(self, slot, body, size);
    } else {
        s_on_death(self, slot);
    }
    return slot->proc && slot->state != DPOOL_SLOT_EMPTY;
}

void
dpool_slots_on_channel(dpool_worker_t *self, dpool_slot_t *slot)
{
    dpool_channel_t *channel = dpool_proc_channel(slot->proc);
    int fill = dpool_channel_fill(channel);
    // Frames that arrived before an end of file still count: a process that retires
    // after its last task writes the result and exits at once.
    for (;;) {
        uint8_t kind;
        const uint8_t *body;
        size_t size;
        int rc = dpool_channel_next(channel, false, &kind, &body, &size);
        if (rc == 0)
            break;
        if (rc != 1) {
            s_on_death(self, slot);
            return;
        }
        if (!s_on_frame(self, slot, kind, body, size))
            return;
    }
    if (fill != DPOOL_OK) {
        s_on_death(self, slot);
        return;
    }
    // Only now: a KILLed job that came to run may have answered in the frames above,
    // or ended with its result kept back (the process counts it finished).
    bool kept =
        slot->state == DPOOL_SLOT_BUSY && dpool_proc_finished(slot->proc) > slot->results_read;
    if (slot->state == DPOOL_SLOT_BUSY && slot->head_killed && !kept) {
        dpool_slots_kill(self, slot);
        return;
    }
    s_fill_ahead(self, slot); // what ran ahead is replaced, in one write
}

void
dpool_slots_kill(dpool_worker_t *self, dpool_slot_t *slot)
{
    char why[512];
    dpool_proc_reap(slot->proc, self->host, why, sizeof why);
    // Its replacement's CREDIT stands for it, or, when a chain waits, the chain's last result.
    s_bury(self, slot, true);
}

// "0.3", "1", "2.25": seconds with up to 3 decimals, no trailing zeros.
static void
s_format_seconds(uint32_t ms, char *text, size_t size)
{
    int length = snprintf(text, size, "%" PRIu32 ".%03" PRIu32, ms / 1000, ms % 1000);
    while (length > 0 && text[length - 1] == '0')
        text[--length] = '\0';
    if (length > 0 && text[length - 1] == '.')
        text[--length] = '\0';
}

void
dpool_slots_time_out(dpool_worker_t *self, dpool_slot_t *slot)
{
    char why[512], seconds[32];
    pid_t pid = dpool_proc_pid(slot->proc);
    // Kill first, then drain: a process that keeps printing could otherwise hold the
    // drain forever, and no byte it wrote may arrive after the result.
    dpool_proc_reap(slot->proc, self->host, why, sizeof why);
    dpool_slots_drain_output(self, slot);
    s_format_seconds(slot->time_limit_ms, seconds, sizeof seconds);
    char *message =
        zsys_sprintf("task ran past its time limit of %s s: process %d on host %s killed", seconds,
                     (int)pid, self->host);
    DPOOL_LOG_WARN("task %" PRIu64 ": %s", slot->task_id, message ? message : "time limit");
    dpool_tasks_send_result(self, slot->task_id, DPOOL_ERR_TASK_TIMEOUT,
                            message ? message : "task ran past its time limit", NULL, 0);
    zstr_free(&message);
    // Its replacement's CREDIT stands for it, or, when a chain waits, the chain's last result.
    s_bury(self, slot, true);
}

dpool_slot_t *
dpool_slots_find_task(dpool_worker_t *self, uint64_t task_id)
{
    for (unsigned i = 0; i < self->processes; i++)
        if (self->slots[i].state == DPOOL_SLOT_BUSY && self->slots[i].task_id == task_id)
            return &self->slots[i];
    return NULL;
}

dpool_slot_t *
dpool_slots_find_idle(dpool_worker_t *self)
{
    for (unsigned i = 0; i < self->processes; i++)
        if (self->slots[i].state == DPOOL_SLOT_IDLE)
            return &self->slots[i];
    return NULL;
}

dpool_slot_t *
dpool_slots_find_tail(dpool_worker_t *self, uint64_t task_id)
{
    for (unsigned i = 0; i < self->processes; i++)
        if (task_id && self->slots[i].tail_id == task_id)
            return &self->slots[i];
    return NULL;
}

int
dpool_slots_chain(dpool_slot_t *slot, dpool_job_t **job_p)
{
    int rc = DPOOL_OK;
    if (zlist_size(slot->queue) + zlist_size(slot->ahead) >= DPOOL_WORKER_QUEUE_MAX)
        rc = DPOOL_ERR_QUEUE_FULL;
    else if (zlist_append(slot->queue, *job_p) != 0)
        rc = DPOOL_ERR_NOMEM;
    if (rc != DPOOL_OK) {
        dpool_tasks_job_destroy(job_p);
        return rc;
    }
    *job_p = NULL;
    s_refresh_tail(slot);
    return DPOOL_OK; // written ahead with the rest of the broker's burst (dpool_slots_fill_ahead)
}

bool
dpool_slots_drop_queued(dpool_worker_t *self, uint64_t task_id)
{
    for (unsigned i = 0; i < self->processes; i++) {
        dpool_slot_t *slot = &self->slots[i];
        if (dpool_tasks_jobs_drop(slot->queue, task_id)) {
            s_refresh_tail(slot); // a chain may go on after the job before it
            return true;
        }
        for (dpool_job_t *job = zlist_first(slot->ahead); job; job = zlist_next(slot->ahead))
            if (job->task_id == task_id) {
                // The process stops after its running task and skips the rest; a job
                // it started meanwhile is killed with it when its turn shows.
                job->killed = true;
                s_skip_ahead(slot);
                s_refresh_tail(slot);
                // Should the process be running it already (the results before it kept
                // back), it is killed now, not after it.
                dpool_slots_collect_kept(self, slot);
                if (slot->state == DPOOL_SLOT_BUSY && slot->head_killed &&
                    dpool_proc_finished(slot->proc) <= slot->results_read)
                    dpool_slots_kill(self, slot);
                return true;
            }
    }
    return false;
}

bool
dpool_slots_kill_running(dpool_worker_t *self, dpool_slot_t *slot, uint64_t task_id)
{
    // A process that runs ahead may have finished the task and gone on: its result,
    // read now, says so, or its count of finished tasks does when it kept the result
    // back; another task runs there then, and the KILL came too late. Skip first, then
    // the count (the process counts, then looks for a skip): either it stops after the
    // task, or the count shows the task done; the next one is never killed part-way
    // and run again in full.
    if (zlist_size(slot->ahead) > 0) {
        s_skip_ahead(slot);
        dpool_slots_on_channel(self, slot);
        if (slot->state == DPOOL_SLOT_BUSY && slot->task_id == task_id)
            dpool_slots_collect_kept(self, slot);
        if (slot->state != DPOOL_SLOT_BUSY || slot->task_id != task_id)
            return false;
        if (dpool_proc_finished(slot->proc) > slot->results_read)
            return false; // it ended just now: its result is on the way
    }
    dpool_slots_kill(self, slot);
    return true;
}

void
dpool_slots_clear_queue(dpool_slot_t *slot)
{
    dpool_tasks_jobs_clear(slot->queue);
    size_t ahead = slot->ahead ? zlist_size(slot->ahead) : 0;
    for (dpool_job_t *job = ahead ? zlist_first(slot->ahead) : NULL; job;
         job = zlist_next(slot->ahead))
        job->killed = true; // written to the process already: skipped there, or killed
    if (ahead)
        s_skip_ahead(slot);
    slot->tail_id = 0;
}
