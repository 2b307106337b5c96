/*  The worker daemon's side of the broker conversation (docs/PROTOCOL.md, "The
    worker daemon's conversation"): the hello, credits, results, and the handlers of
    the commands a broker sends a worker (TASK, KILL, HEARTBEAT, ERROR), chosen from
    a table. Everything here arrives over the network: a command that makes no sense
    is logged and dropped, never trusted. */
#include "dpool_worker_internal.h"

#include "dpool_clock.h"
#include "dpool_log.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

unsigned
dpool_tasks_take_credits(dpool_worker_t *self)
{
    if (self->idle <= self->granted)
        return 0;
    unsigned credits = self->idle - self->granted;
    self->granted = self->idle;
    return credits;
}

void
dpool_tasks_send_hello(dpool_worker_t *self)
{
    size_t count = dpool_functions_size(self->functions);
    const char **names = calloc(count ? count : 1, sizeof *names);
    if (!names)
        return;
    for (size_t i = 0; i < count; i++)
        names[i] = dpool_functions_name(self->functions, i);
    dpool_msg_t msg = {.command = DPOOL_CMD_WORKER_HELLO,
                       .name = self->host,
                       .pid = (uint32_t)getpid(),
                       .count = self->processes,
                       .functions = (char **)names,
                       .function_count = count,
                       .flags = DPOOL_HELLO_CHAINS};
    dpool_uplink_send(self->uplink, &msg);
    free(names);
    self->hello_at = dpool_clock_ms();
    // A new registration holds no credits: every idle process earns one again. Tasks
    // waiting here belong to the registration that ended, whose tasks the broker has
    // already failed or queued again: run now, they would run twice.
    self->granted = 0;
    for (unsigned i = 0; i < self->processes; i++)
        dpool_slots_clear_queue(&self->slots[i]);
    dpool_tasks_jobs_clear(self->pending);
}

void
dpool_tasks_send_result(dpool_worker_t *self, uint64_t task_id, int code, const char *message,
                        zframe_t **payload_p, unsigned credits)
{
    dpool_msg_t msg = {.command = DPOOL_CMD_WORKER_RESULT,
                       .task_id = task_id,
                       .code = code,
                       .text = (char *)message,
                       .text_size = message ? strlen(message) : 0,
                       .count = credits,
                       .payload = payload_p ? *payload_p : NULL};
    if (payload_p)
        *payload_p = NULL;
    dpool_uplink_send(self->uplink, &msg);
}

void
dpool_tasks_job_destroy(dpool_job_t **job_p)
{
    if (!job_p || !*job_p)
        return;
    free((*job_p)->function);
    zframe_destroy(&(*job_p)->args);
    free(*job_p);
    *job_p = NULL;
}

// The job of msg, whose function name and arguments move into it; NULL when memory
// runs out (msg keeps them then).
static dpool_job_t *
s_take_job(dpool_msg_t *msg)
{
    dpool_job_t *job = malloc(sizeof *job);
    if (!job)
        return NULL;
    *job =
        (dpool_job_t){msg->task_id, msg->name, msg->payload, msg->flags, msg->time_limit_ms, false};
    msg->name = NULL;
    msg->payload = NULL;
    return job;
}

// Starts msg's task in slot, an idle process.
static void
s_start_in(dpool_worker_t *self, dpool_slot_t *slot, const dpool_msg_t *msg)
{
    dpool_job_t job = {msg->task_id, msg->name,          msg->payload,
                       msg->flags,   msg->time_limit_ms, false};
    self->idle--;
    dpool_slots_start(self, slot, &job);
}

// A TASK with `after`: queued behind that task in its slot. When that task is no
// slot's newest any more (it ended, or its process died, before this TASK arrived:
// they crossed on the wire), it runs in an idle process if there is one, taking no
// credit: the broker's lease goes on with it, and the credit the ended task's process
// brought back stands for that process until the lease ends (the broker uses a credit
// only for a process no lease holds), as the daemon's count of what it granted does.
// With no idle process it is refused with -22 (run elsewhere it would take the pool
// past its cap). It took no credit, so none is owed back beyond what the daemon owes.
static void
s_chain(dpool_worker_t *self, dpool_msg_t *msg)
{
    dpool_slot_t *slot = dpool_slots_find_tail(self, msg->after_id);
    dpool_slot_t *idle = slot ? NULL : dpool_slots_find_idle(self);
    if (idle) {
        s_start_in(self, idle, msg);
        return;
    }
    if (!slot) {
        char *why = zsys_sprintf("task %" PRIu64 " had ended on this host", msg->after_id);
        DPOOL_LOG_DEBUG("task %" PRIu64 " not chained: %s", msg->task_id, why ? why : "");
        dpool_tasks_send_result(self, msg->task_id, DPOOL_ERR_UNCHAINED,
                                why ? why : "the task it follows had ended on this host", NULL,
                                dpool_tasks_take_credits(self));
        zstr_free(&why);
        return;
    }
    dpool_job_t *job = s_take_job(msg);
    int rc = job ? dpool_slots_chain(slot, &job) : DPOOL_ERR_NOMEM;
    if (rc == DPOOL_OK && !slot->fill_due) {
        slot->fill_due = true; // written ahead at the end of the burst
        self->fill_due[self->fill_due_count++] = slot;
    }
    if (rc != DPOOL_OK)
        dpool_tasks_send_result(self, msg->task_id, DPOOL_ERR_QUEUE_FULL,
                                "worker daemon holds too many tasks chained to one process", NULL,
                                dpool_tasks_take_credits(self));
}

// A TASK on a credit: an idle process runs it, or it waits for one.
static void
s_run_plain(dpool_worker_t *self, dpool_msg_t *msg)
{
    dpool_slot_t *slot = dpool_slots_find_idle(self);
    if (slot) {
        s_start_in(self, slot, msg);
        return;
    }
    dpool_job_t *kept = zlist_size(self->pending) < DPOOL_WORKER_QUEUE_MAX ? s_take_job(msg) : NULL;
    if (!kept || zlist_append(self->pending, kept)) {
        dpool_tasks_job_destroy(&kept);
        dpool_tasks_send_result(self, msg->task_id, DPOOL_ERR_QUEUE_FULL,
                                "worker daemon has no idle process for this task", NULL, 0);
    }
}

static void
s_on_task(dpool_worker_t *self, dpool_msg_t *msg)
{
    // A chained TASK rides on its predecessor's process, not on a credit.
    if (msg->after_id == 0 && self->granted == 0)
        DPOOL_LOG_WARN("task %" PRIu64 " arrived without a credit", msg->task_id);
    else if (msg->after_id == 0)
        self->granted--;
    if (!dpool_functions_lookup(self->functions, msg->name)) {
        char *why = zsys_sprintf("no function \"%s\" on worker host %s", msg->name, self->host);
        dpool_tasks_send_result(self, msg->task_id, DPOOL_ERR_NO_FUNCTION, why, NULL,
                                dpool_tasks_take_credits(self));
        zstr_free(&why);
        return;
    }
    if (msg->after_id) {
        s_chain(self, msg);
        return;
    }
    s_run_plain(self, msg);
}

bool
dpool_tasks_jobs_drop(zlist_t *jobs, uint64_t task_id)
{
    for (dpool_job_t *job = zlist_first(jobs); job; job = zlist_next(jobs)) {
        if (job->task_id == task_id) {
            zlist_remove(jobs, job);
            dpool_tasks_job_destroy(&job);
            return true;
        }
    }
    return false;
}

void
dpool_tasks_jobs_clear(zlist_t *jobs)
{
    for (dpool_job_t *job = jobs ? zlist_pop(jobs) : NULL; job; job = zlist_pop(jobs))
        dpool_tasks_job_destroy(&job);
}

static void
s_on_kill(dpool_worker_t *self, dpool_msg_t *msg)
{
    dpool_slot_t *slot = dpool_slots_find_task(self, msg->task_id);
    if (slot && dpool_slots_kill_running(self, slot, msg->task_id))
        return;
    if (dpool_tasks_jobs_drop(self->pending, msg->task_id))
        return;
    // A queued successor is dropped without a result: its slot's queue goes on.
    if (dpool_slots_drop_queued(self, msg->task_id))
        return;
    DPOOL_LOG_DEBUG("KILL for task %" PRIu64 ", which runs here no more", msg->task_id);
}

static void
s_on_error(dpool_worker_t *self, dpool_msg_t *msg)
{
    DPOOL_LOG_WARN("broker reports error %d: %s", msg->code, msg->text ? msg->text : "");
    // A broker that restarted does not know this daemon and says so; hello again,
    // but not more than once a second in case our hello is what it refuses.
    if (msg->text && strstr(msg->text, "WORKER_HELLO") &&
        dpool_clock_ms() - self->hello_at >= DPOOL_WORKER_HEARTBEAT_MS)
        dpool_tasks_send_hello(self);
}

typedef void(s_handler_fn)(dpool_worker_t *self, dpool_msg_t *msg);

void
dpool_tasks_on_broker(dpool_worker_t *self)
{
    static const struct {
        dpool_cmd_t command;
        s_handler_fn *handler;
    } handlers[] = {
        {DPOOL_CMD_TASK, s_on_task},
        {DPOOL_CMD_KILL, s_on_kill},
        {DPOOL_CMD_HEARTBEAT, NULL}, // a sign of life; nothing to answer
        {DPOOL_CMD_ERROR, s_on_error},
    };
    const size_t count = sizeof handlers / sizeof handlers[0];
    dpool_msg_t msg = {0};
    // Everything readable, before any dispatching: a burst of TASKs is one turn.
    while (dpool_uplink_recv(self->uplink, &msg)) {
        size_t i = 0;
        while (i < count && handlers[i].command != msg.command)
            i++;
        if (i < count && handlers[i].handler)
            handlers[i].handler(self, &msg);
        else if (i == count)
            DPOOL_LOG_WARN("dropped %s from the broker: not a command for workers",
                           dpool_proto_command_name(msg.command));
        dpool_msg_reset(&msg);
    }
    dpool_slots_fill_ahead(self);
}
