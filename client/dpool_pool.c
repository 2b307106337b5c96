/*  The pool: Python's multiprocessing.Pool over a broker. A pool owns a pending-task
    table and an I/O thread (dpool_io) that owns its socket. Submitting takes the pool
    lock, gives the task the next id, records its handle in the table, encodes its
    SUBMIT once, keeps a copy in the table and posts it to the I/O thread's outbox, all
    under the lock so ids reach the broker in order and close / terminate cannot slip
    between a check and a send. The I/O thread never takes this lock. A task's outcome
    goes to its result handle, or for a map's chunk to the map's sink; callbacks run on
    the pool's callback thread (dpool_cbq). */
#include "dpool_io.h"
#include "dpool_batch.h"
#include "dpool_output.h"
#include "dpool_pending.h"
#include "dpool_pool.h"
#include "dpool_result.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Connect timeouts beyond this are "forever" and would overflow poll timeouts.
#define S_CONNECT_TIMEOUT_MAX 86400.0
// Time limits travel as 32-bit milliseconds.
#define S_TIME_LIMIT_MAX (4294967295.0 / 1000.0)

struct _dpool_t {
    pthread_mutex_t lock;   // guards the fields below and serialises sends to the I/O thread
    bool closed;            // dpool_close or dpool_terminate was called
    bool terminated;        // dpool_terminate was called
    uint64_t last_task_id;  // ids count from 1
    uint32_t cap;           // fixed at open
    double connect_timeout; // seconds
    dpool_pending_t *pending;
    dpool_cbq_t *cbq;
    dpool_io_t *io;
    msgpack_sbuffer encoded; // the SUBMIT being sent (reused: one allocation per pool)
};

void
dpool_opts_init(dpool_opts_t *opts)
{
    if (opts)
        memset(opts, 0, sizeof *opts);
}

static const char *
s_endpoint(const dpool_opts_t *opts)
{
    if (opts->broker && *opts->broker)
        return opts->broker;
    const char *env = getenv(DPOOL_ENDPOINT_ENV);
    return env && *env ? env : DPOOL_DEFAULT_ENDPOINT;
}

static int
s_check_opts(const dpool_opts_t *opts, dpool_error_t *err)
{
    if (opts->processes < 0) {
        dpool_error_set(err, DPOOL_ERR_INVALID, "processes must be 0 or more, not %d",
                        opts->processes);
        return DPOOL_ERR_INVALID;
    }
    if (!(opts->time_limit <= S_TIME_LIMIT_MAX)) {
        dpool_error_set(err, DPOOL_ERR_INVALID, "time_limit must be at most %.0f s",
                        S_TIME_LIMIT_MAX);
        return DPOOL_ERR_INVALID;
    }
    if (opts->output_prefix < DPOOL_OUTPUT_PREFIX_DEFAULT ||
        opts->output_prefix > DPOOL_OUTPUT_PREFIX_HOST) {
        dpool_error_set(err, DPOOL_ERR_INVALID, "output_prefix must be a DPOOL_OUTPUT_PREFIX_*");
        return DPOOL_ERR_INVALID;
    }
    size_t name_size = opts->name ? strlen(opts->name) : 1;
    if (name_size == 0 || name_size > DPOOL_PROTO_NAME_MAX) {
        dpool_error_set(err, DPOOL_ERR_INVALID, "a pool name has 1 to %d bytes",
                        DPOOL_PROTO_NAME_MAX);
        return DPOOL_ERR_INVALID;
    }
    return DPOOL_OK;
}

// Seconds to whole milliseconds, rounded up so that a tiny limit is still a limit.
static uint32_t
s_time_limit_ms(double time_limit)
{
    if (!(time_limit > 0))
        return 0;
    double ms = time_limit * 1000.0;
    uint32_t whole = (uint32_t)ms;
    return (double)whole < ms ? whole + 1 : whole;
}

// Seconds, capped (beyond the cap is for ever, and would overflow poll timeouts).
static double
s_connect_timeout(const dpool_opts_t *opts)
{
    double timeout =
        opts->connect_timeout > 0 ? opts->connect_timeout : DPOOL_DEFAULT_CONNECT_TIMEOUT;
    return timeout < S_CONNECT_TIMEOUT_MAX ? timeout : S_CONNECT_TIMEOUT_MAX;
}

// Seconds; -1 = for ever.
static double
s_reconnect_timeout(const dpool_opts_t *opts)
{
    double timeout = opts->reconnect_timeout;
    if (timeout < 0 || timeout >= S_CONNECT_TIMEOUT_MAX)
        return -1;
    return timeout > 0 ? timeout : DPOOL_DEFAULT_RECONNECT_TIMEOUT;
}

static bool
s_prefix_host(const dpool_opts_t *opts)
{
    if (opts->output_prefix == DPOOL_OUTPUT_PREFIX_DEFAULT)
        return dpool_output_prefix_from_env();
    return opts->output_prefix == DPOOL_OUTPUT_PREFIX_HOST;
}

dpool_t *
dpool_new_opts(const dpool_opts_t *opts, dpool_error_t *err)
{
    dpool_opts_t defaults = {0};
    opts = opts ? opts : &defaults;
    if (s_check_opts(opts, err) != DPOOL_OK)
        return NULL;
    // CZMQ would otherwise catch SIGINT/SIGTERM for the whole program on first use.
    zsys_handler_set(NULL);
    dpool_t *self = calloc(1, sizeof *self);
    if (!self || pthread_mutex_init(&self->lock, NULL) != 0) {
        free(self);
        dpool_error_set(err, DPOOL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    self->connect_timeout = s_connect_timeout(opts);
    self->pending = dpool_pending_new();
    self->cbq = self->pending ? dpool_cbq_new(self->pending) : NULL;
    if (!self->cbq) {
        dpool_error_set(err, DPOOL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    dpool_io_config_t config = {
        .endpoint = s_endpoint(opts),
        .pool_name = opts->name,
        .cap = (uint32_t)opts->processes,
        .retries = opts->retries,
        .time_limit_ms = s_time_limit_ms(opts->time_limit),
        .connect_timeout = self->connect_timeout,
        .reconnect_timeout = s_reconnect_timeout(opts),
        .output = opts->output,
        .output_arg = opts->output_arg,
        .output_prefix_host = s_prefix_host(opts),
        .pending = self->pending,
        .curve_secret = opts->curve_secret,
        .broker_key = opts->broker_key,
    };
    self->io = dpool_io_new(&config, &self->cap, err);
    if (!self->io)
        goto fail;
    return self;
fail:
    dpool_cbq_destroy(&self->cbq);
    dpool_pending_destroy(&self->pending);
    msgpack_sbuffer_destroy(&self->encoded);
    pthread_mutex_destroy(&self->lock);
    free(self);
    return NULL;
}

dpool_t *
dpool_new(const char *broker, int processes)
{
    dpool_opts_t opts = {.broker = broker, .processes = processes};
    return dpool_new_opts(&opts, NULL);
}

int
dpool_cap(const dpool_t *self)
{
    return self ? (int)self->cap : DPOOL_ERR_INVALID;
}

// A msgpack array starts with a fixarray byte (0x90-0x9f), array 16 or array 32.
static bool
s_is_array(const dpool_buf_t *args)
{
    if (!args->data || args->size == 0)
        return false;
    unsigned char first = (unsigned char)args->data[0];
    return (first & 0xf0) == 0x90 || first == 0xdc || first == 0xdd;
}

int
dpool_pool_check_function(const char *function, dpool_error_t *err)
{
    size_t size = function ? strlen(function) : 0;
    if (size == 0 || size > DPOOL_PROTO_NAME_MAX) {
        dpool_error_set(err, DPOOL_ERR_INVALID, "a function name has 1 to %d bytes",
                        DPOOL_PROTO_NAME_MAX);
        return DPOOL_ERR_INVALID;
    }
    return DPOOL_OK;
}

static int
s_check_call(const char *function, const dpool_buf_t *args, dpool_error_t *err)
{
    if (dpool_pool_check_function(function, err) != DPOOL_OK)
        return DPOOL_ERR_INVALID;
    if (args && !s_is_array(args)) {
        dpool_error_set(err, DPOOL_ERR_INVALID, "arguments must be one msgpack array");
        return DPOOL_ERR_INVALID;
    }
    return DPOOL_OK;
}

// Under self->lock: refuses work once the pool is closed.
static int
s_check_open_locked(dpool_t *self, const char *function, dpool_error_t *err)
{
    if (!self->closed)
        return DPOOL_OK;
    dpool_error_set(err, DPOOL_ERR_CLOSED, "cannot submit \"%s\": the pool was %s", function,
                    self->terminated ? "terminated" : "closed");
    return DPOOL_ERR_CLOSED;
}

// Under self->lock: records task in the pending table with its SUBMIT (payload_size
// bytes of payload, borrowed), then sends it: recorded first, so a resync that comes at
// any time after has it to send again. A large SUBMIT goes on in its plain form and the
// table keeps the encoding itself, so its arguments are copied twice, as a small one's
// are. Returns DPOOL_OK, or an error with *recorded telling whether the task is in the
// table (the caller fails it there) or not (memory ran out, or it could not be encoded).
static int
s_send_locked(dpool_t *self, dpool_pending_task_t *task, const char *function, uint32_t flags,
              const void *payload, size_t payload_size, bool *recorded)
{
    *recorded = false;
    dpool_msg_t msg = {.command = DPOOL_CMD_SUBMIT,
                       .pool_ref = DPOOL_IO_POOL_REF,
                       .task_id = task->task_id,
                       .name = (char *)function,
                       .flags = flags};
    self->encoded.size = 0;
    int rc = dpool_batch_encode(&msg, payload, payload_size, &self->encoded);
    if (rc != DPOOL_OK)
        return rc;
    task->submit = (const uint8_t *)self->encoded.data;
    task->submit_size = self->encoded.size;
    zmsg_t *alone = NULL;
    uint8_t *large = NULL;
    if (dpool_batch_goes_alone(task->submit)) {
        if (!(alone = dpool_batch_plain(task->submit)))
            return DPOOL_ERR_NOMEM;
        large = (uint8_t *)msgpack_sbuffer_release(&self->encoded);
    }
    rc = dpool_pending_add(self->pending, task, large ? &large : NULL);
    if (rc != DPOOL_OK) {
        zmsg_destroy(&alone);
        return rc;
    }
    *recorded = true;
    if (alone)
        return dpool_io_send_alone(self->io, &alone);
    // A task alone in flight (a synchronous apply) goes out from this thread at once;
    // many in flight go through the outbox, which sends them in BATCHes.
    if (dpool_pending_count(self->pending) == 1)
        return dpool_io_send_direct(self->io, task->submit, task->submit_size);
    return dpool_io_send_encoded(self->io, task->submit, task->submit_size);
}

// Under self->lock: numbers, records and sends one task. Returns an owned handle.
static dpool_result_t *
s_submit_locked(dpool_t *self, const char *function, const void *payload, size_t payload_size,
                const dpool_callbacks_t *callbacks, dpool_error_t *err)
{
    if (s_check_open_locked(self, function, err) != DPOOL_OK)
        return NULL;
    uint64_t task_id = ++self->last_task_id;
    dpool_result_t *result = dpool_result_new(task_id);
    int rc = result ? DPOOL_OK : DPOOL_ERR_NOMEM;
    if (rc == DPOOL_OK && callbacks)
        rc = dpool_cbq_watch(self->cbq, result, callbacks);
    bool recorded = false;
    if (rc == DPOOL_OK) {
        dpool_pending_task_t task = {.task_id = task_id, .result = result};
        rc = s_send_locked(self, &task, function, 0, payload, payload_size, &recorded);
    }
    if (rc == DPOOL_ERR_NOMEM && !recorded) {
        // a watched handle must still complete, so its job and hold are let go
        if (result)
            dpool_result_complete(result, DPOOL_ERR_NOMEM, "out of memory", NULL);
        dpool_result_destroy(&result);
        dpool_error_set(err, DPOOL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (rc != DPOOL_OK) {
        if (recorded)
            dpool_pending_complete(self->pending, task_id, rc, "cannot pass the task on", NULL);
        else
            dpool_result_complete(result, rc, "cannot pass the task on", NULL);
        dpool_error_set(err, rc, "cannot pass task %llu to the I/O thread",
                        (unsigned long long)task_id);
    }
    return result;
}

int
dpool_pool_submit_chunk(dpool_t *self, const char *function, zframe_t **payload_p,
                        const dpool_sink_t *sink, dpool_error_t *err)
{
    pthread_mutex_lock(&self->lock);
    int rc = s_check_open_locked(self, function, err);
    if (rc == DPOOL_OK) {
        dpool_pending_task_t task = {.task_id = ++self->last_task_id, .sink = *sink};
        bool recorded = false;
        int sent = s_send_locked(self, &task, function, DPOOL_FLAG_CHUNK, zframe_data(*payload_p),
                                 zframe_size(*payload_p), &recorded);
        if (sent == DPOOL_ERR_NOMEM && !recorded) {
            rc = sent;
            dpool_error_set(err, rc, "out of memory");
        } else if (sent != DPOOL_OK && recorded) {
            // the sink is in the table: it gets the failure like any outcome
            dpool_pending_complete(self->pending, task.task_id, DPOOL_ERR_IO,
                                   "cannot pass the task on", NULL);
        } else if (sent != DPOOL_OK) {
            sink->fn(sink->arg, DPOOL_ERR_IO, "cannot pass the task on", NULL);
        }
    }
    pthread_mutex_unlock(&self->lock);
    zframe_destroy(payload_p);
    return rc;
}

dpool_pending_t *
dpool_pool_pending(dpool_t *self)
{
    return self->pending;
}

dpool_cbq_t *
dpool_pool_cbq(dpool_t *self)
{
    return self->cbq;
}

dpool_result_t *
dpool_apply_async_cb(dpool_t *self, const char *function, const dpool_buf_t *args,
                     const dpool_callbacks_t *callbacks, dpool_error_t *err)
{
    if (!self) {
        dpool_error_set(err, DPOOL_ERR_INVALID, "pool is NULL");
        return NULL;
    }
    if (s_check_call(function, args, err) != DPOOL_OK)
        return NULL;
    static const char no_args = (char)0x90; // the empty array
    pthread_mutex_lock(&self->lock);
    dpool_result_t *result = s_submit_locked(self, function, args ? args->data : &no_args,
                                             args ? args->size : 1, callbacks, err);
    pthread_mutex_unlock(&self->lock);
    return result;
}

dpool_result_t *
dpool_apply_async(dpool_t *self, const char *function, const dpool_buf_t *args, dpool_error_t *err)
{
    return dpool_apply_async_cb(self, function, args, NULL, err);
}

dpool_result_t *
dpool_apply_asyncf(dpool_t *self, const char *function, const char *fmt, ...)
{
    dpool_buf_t args = {0};
    dpool_error_t err = {0};
    va_list ap;
    va_start(ap, fmt);
    int rc = dpool_vpack(&args, fmt, ap);
    va_end(ap);
    dpool_result_t *result = NULL;
    if (rc == DPOOL_OK)
        result = dpool_apply_async(self, function, &args, &err);
    else
        dpool_error_set(&err, rc, "cannot pack the arguments of \"%s\" from format \"%s\"",
                        function ? function : "(null)", fmt ? fmt : "(null)");
    dpool_buf_free(&args);
    if (result)
        return result;
    // A failed future: the one-liner has nowhere else to report the error.
    result = dpool_result_new(0);
    if (result)
        dpool_result_complete(result, err.code, err.message, NULL);
    return result;
}

int
dpool_apply(dpool_t *self, const char *function, const dpool_buf_t *args, dpool_buf_t *value,
            dpool_error_t *err)
{
    if (value) {
        value->data = NULL;
        value->size = 0;
    }
    dpool_error_t local = {0};
    err = err ? err : &local;
    dpool_result_t *result = dpool_apply_async(self, function, args, err);
    if (!result)
        return err->code;
    if (dpool_pending_count(self->pending) == 1)
        dpool_io_await(self->io, result);
    int rc = dpool_result_get(result, -1, value, err);
    dpool_result_destroy(&result);
    return rc;
}

int
dpool_close(dpool_t *self)
{
    if (!self)
        return DPOOL_ERR_INVALID;
    pthread_mutex_lock(&self->lock);
    self->closed = true;
    pthread_mutex_unlock(&self->lock);
    return DPOOL_OK;
}

int
dpool_join(dpool_t *self)
{
    if (!self)
        return DPOOL_ERR_INVALID;
    pthread_mutex_lock(&self->lock);
    bool closed = self->closed;
    pthread_mutex_unlock(&self->lock);
    if (!closed)
        return DPOOL_ERR_STATE;
    return dpool_pending_wait_empty(self->pending, -1, true);
}

// Under self->lock: sends a command that names only the pool (TERMINATE, POOL_RELEASE).
static int
s_send_pool_command_locked(dpool_t *self, dpool_cmd_t command)
{
    dpool_msg_t msg = {.command = command, .pool_ref = DPOOL_IO_POOL_REF};
    return dpool_io_send(self->io, &msg);
}

int
dpool_terminate(dpool_t *self)
{
    if (!self)
        return DPOOL_ERR_INVALID;
    pthread_mutex_lock(&self->lock);
    self->closed = true;
    self->terminated = true;
    int rc = s_send_pool_command_locked(self, DPOOL_CMD_TERMINATE);
    pthread_mutex_unlock(&self->lock);
    // The broker answers RESULT -13 for each task; wait for them so that every handle
    // is final when terminate returns, but not for ever on a broker that is gone.
    if (rc == DPOOL_OK)
        rc = dpool_pending_wait_empty(self->pending, self->connect_timeout, false);
    if (rc != DPOOL_OK) {
        char why[128];
        snprintf(why, sizeof why, "terminated (the broker did not confirm within %.1f s)",
                 self->connect_timeout);
        dpool_pending_fail_all(self->pending, DPOOL_ERR_TERMINATED, why);
        rc = DPOOL_ERR_TIMEOUT;
    }
    return rc;
}

void
dpool_destroy(dpool_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dpool_t *self = *self_p;
    *self_p = NULL;
    if (dpool_pending_count(self->pending) > 0)
        dpool_terminate(self);
    pthread_mutex_lock(&self->lock);
    s_send_pool_command_locked(self, DPOOL_CMD_POOL_RELEASE);
    pthread_mutex_unlock(&self->lock);
    dpool_io_destroy(&self->io);
    // Every handle gets its outcome before the callback thread drains and stops, so each
    // watched handle's callback runs once; only then may the table go.
    dpool_pending_fail_all(self->pending, DPOOL_ERR_TERMINATED,
                           "terminated: the pool was destroyed");
    dpool_cbq_destroy(&self->cbq);
    dpool_pending_destroy(&self->pending);
    msgpack_sbuffer_destroy(&self->encoded);
    pthread_mutex_destroy(&self->lock);
    free(self);
}
