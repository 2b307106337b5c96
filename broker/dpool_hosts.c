/*  Worker-daemon commands: WORKER_HELLO, CREDIT, WORKER_RESULT, WORKER_OUTPUT,
    HEARTBEAT, BYE, and the heartbeat timer. A daemon is one host with N slots; the
    scheduler holds its credits. Any message from a registered daemon renews its
    liveness; one that stays silent for DPOOL_HEARTBEAT_LIVENESS intervals is lost and
    its running tasks fail with a message naming the host. */
#include "dpool_broker_internal.h"
#include "dpool_log.h"

#include <dpool/errors.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
s_host_free(dpool_host_t *host)
{
    zframe_destroy(&host->routing_id);
    free(host->host);
    for (size_t i = 0; i < host->function_count; i++)
        free(host->functions[i]);
    free(host->functions);
    free(host);
}

static void
s_collect_lost_task(void *ctx, uint64_t task_id, void *data)
{
    (void)task_id;
    zlist_append(ctx, data);
}

// A task whose process or host died runs again if its pool allows, else fails.
static void
s_retry_or_fail(dpool_broker_t *self, dpool_task_t *task, const char *text)
{
    if (!dpool_broker_retry_task(self, task))
        dpool_broker_finish_task(self, task, DPOOL_ERR_WORKER_LOST, text, NULL);
}

// Forgets a host; its running tasks fail with "host <name> <how>".
static void
s_host_remove(dpool_broker_t *self, dpool_host_t *host, const char *how)
{
    char text[DPOOL_PROTO_NAME_MAX + 64];
    snprintf(text, sizeof text, "host %s %s", host->host, how);
    DPOOL_LOG_INFO("worker daemon on %s (pid %u) %s", host->host, host->pid, how);
    // Collected first: the scheduler cannot be called back into while it removes the host.
    zlist_t *lost = zlist_new();
    zhashx_delete(self->hosts, host->routing_id);
    dpool_sched_host_remove(self->sched, &host->sched_host, s_collect_lost_task, lost);
    s_host_free(host);
    for (dpool_task_t *task = zlist_first(lost); task; task = zlist_next(lost))
        s_retry_or_fail(self, task, text);
    zlist_destroy(&lost);
}

static void
s_on_hello(dpool_broker_t *self, zframe_t *routing_id, dpool_msg_t *msg)
{
    dpool_host_t *previous = zhashx_lookup(self->hosts, routing_id);
    if (previous)
        s_host_remove(self, previous, "registered again");
    if (msg->count == 0 || msg->count > 65536) {
        dpool_broker_send_error(self, routing_id, DPOOL_ERR_PROTO,
                                "WORKER_HELLO needs 1 to 65536 processes");
        return;
    }
    dpool_host_t *host = calloc(1, sizeof *host);
    if (!host)
        goto nomem;
    host->routing_id = zframe_dup(routing_id);
    host->host = msg->name;
    msg->name = NULL;
    host->functions = msg->functions;
    host->function_count = msg->function_count;
    msg->functions = NULL;
    msg->function_count = 0;
    host->pid = msg->pid;
    host->processes = msg->count;
    host->expires_ms = self->now_ms + DPOOL_HEARTBEAT_MS * DPOOL_HEARTBEAT_LIVENESS;
    host->sched_host =
        dpool_sched_host_add(self->sched, host, host->processes,
                             (const char *const *)host->functions, host->function_count);
    if (!host->routing_id || !host->sched_host) {
        dpool_sched_host_remove(self->sched, &host->sched_host, NULL, NULL);
        s_host_free(host);
        goto nomem;
    }
    dpool_sched_host_set_chaining(host->sched_host, msg->flags & DPOOL_HELLO_CHAINS);
    zhashx_insert(self->hosts, host->routing_id, host);
    DPOOL_LOG_INFO("worker daemon on %s (pid %u) joined with %u processes, %zu functions",
                   host->host, host->pid, host->processes, host->function_count);
    return;
nomem:
    DPOOL_LOG_ERROR("out of memory registering a worker daemon");
    dpool_broker_send_error(self, routing_id, DPOOL_ERR_NOMEM, "broker out of memory");
}

static void
s_on_result(dpool_broker_t *self, dpool_host_t *host, dpool_msg_t *msg)
{
    if (msg->code == DPOOL_ERR_UNCHAINED) {
        // It did not run: it goes back to the front of its pool (a stale id is ignored).
        dpool_sched_unchained(self->sched, msg->task_id, host->sched_host);
        dpool_sched_credit(self->sched, host->sched_host, msg->count);
        return;
    }
    dpool_task_t *task = dpool_sched_complete(self->sched, msg->task_id, host->sched_host,
                                              msg->code == DPOOL_OK, self->now_us);
    dpool_sched_credit(self->sched, host->sched_host, msg->count);
    if (!task)
        return; // terminated meanwhile: the client has its answer already
    if (msg->code == DPOOL_ERR_WORKER_LOST)
        s_retry_or_fail(self, task, msg->text);
    else
        dpool_broker_finish_task(self, task, msg->code, msg->text, msg);
}

static void
s_on_output(dpool_broker_t *self, dpool_host_t *host, dpool_msg_t *msg)
{
    dpool_task_t *task = dpool_sched_task_data(self->sched, msg->task_id, host->sched_host);
    if (!task)
        return;
    dpool_msg_t forward = {.command = DPOOL_CMD_OUTPUT,
                           .task_id = task->client_task_id,
                           .count = msg->count,
                           .text = msg->text,
                           .text_size = msg->text_size,
                           .name = host->host};
    dpool_broker_send(self, task->client->routing_id, &forward);
}

void
dpool_hosts_on_message(dpool_broker_t *self, zframe_t *routing_id, dpool_msg_t *msg)
{
    if (msg->command == DPOOL_CMD_WORKER_HELLO) {
        s_on_hello(self, routing_id, msg);
        return;
    }
    dpool_host_t *host = zhashx_lookup(self->hosts, routing_id);
    if (!host) {
        // Also a HEARTBEAT: a daemon forgotten while its link was down learns it this way
        // and registers again (a client's heartbeats reach here only before its POOL_OPEN).
        if (msg->command != DPOOL_CMD_BYE)
            dpool_broker_send_error(self, routing_id, DPOOL_ERR_PROTO,
                                    "peer not registered: send WORKER_HELLO (or POOL_OPEN) first");
        return;
    }
    host->expires_ms = self->now_ms + DPOOL_HEARTBEAT_MS * DPOOL_HEARTBEAT_LIVENESS;
    switch (msg->command) {
    case DPOOL_CMD_CREDIT:
        dpool_sched_credit(self->sched, host->sched_host, msg->count);
        break;
    case DPOOL_CMD_WORKER_RESULT:
        s_on_result(self, host, msg);
        break;
    case DPOOL_CMD_WORKER_OUTPUT:
        s_on_output(self, host, msg);
        break;
    case DPOOL_CMD_HEARTBEAT:
        break;
    case DPOOL_CMD_BYE:
        s_host_remove(self, host, "left");
        break;
    default:
        self->malformed++;
        DPOOL_LOG_WARN("dropped %s from a worker daemon: not a worker command",
                       dpool_proto_command_name(msg->command));
        dpool_broker_send_error(self, routing_id, DPOOL_ERR_PROTO, "not a worker command");
        break;
    }
}

void
dpool_hosts_tick(dpool_broker_t *self)
{
    // Collect first: removing from a zhashx while walking it is not allowed.
    zlist_t *lost = zlist_new();
    for (dpool_host_t *host = zhashx_first(self->hosts); host; host = zhashx_next(self->hosts)) {
        if (host->expires_ms <= self->now_ms) {
            if (lost)
                zlist_append(lost, host);
            continue;
        }
        dpool_msg_t beat = {.command = DPOOL_CMD_HEARTBEAT, .task_id = self->epoch};
        dpool_broker_send(self, host->routing_id, &beat);
    }
    for (dpool_host_t *host = lost ? zlist_first(lost) : NULL; host; host = zlist_next(lost))
        s_host_remove(self, host, "lost");
    zlist_destroy(&lost);
}

void
dpool_hosts_destroy_all(dpool_broker_t *self)
{
    dpool_host_t *host;
    while ((host = zhashx_first(self->hosts))) {
        zhashx_delete(self->hosts, host->routing_id);
        dpool_sched_host_remove(self->sched, &host->sched_host, NULL, NULL);
        s_host_free(host);
    }
}
