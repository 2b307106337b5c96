/*  Result handles: one outcome per task, waited for with a condition variable on the
    monotonic clock (a wall-clock jump must not stretch or cut a get's timeout). The
    outcome is written once by the pool's I/O thread (or by terminate / destroy when
    the broker is gone) and read by any number of user threads.

    The mutexes and condition variables are the process's, S_STRIPES of them, and a
    handle uses the pair its task id picks: a pair of its own was 88 of a handle's 200
    bytes, and a pipelined client holds a handle per task (the memory of 100,000 of
    them is most of its page faults, which cost as much as its work on a virtual
    machine). A completion wakes the other waiters of its stripe too; they look at
    their own handle and wait again. */
#include "dpool_result.h"
#include "dpool_walk.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct _dpool_result_t {
    int refs;   // under lock
    bool ready; // under lock; once true, code, message and value never change
    int code;
    char *message;              // NULL when the outcome had none ("" to readers)
    zframe_t *value;            // the result's msgpack bytes when code == DPOOL_OK, or
    uint8_t small[32];          // these when they were few (value is NULL then)
    uint8_t small_size;         // 0 = none: no payload came, the value is nil
    uint64_t task_id;           // fixed at birth
    dpool_result_hook_fn *hook; // set before the handle can complete
    void *hook_arg;
    size_t *offsets; // under lock: where each item of an array value starts, made on demand
    size_t item_count;
};

#define S_STRIPES 64

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t done; // on the monotonic clock
} s_stripe_t;

static s_stripe_t s_stripes[S_STRIPES];
static pthread_once_t s_stripes_once = PTHREAD_ONCE_INIT;
static bool s_stripes_ready;

// Never torn down: they live as long as the process.
static bool
s_stripes_make(void)
{
    for (size_t i = 0; i < S_STRIPES; i++)
        if (pthread_mutex_init(&s_stripes[i].lock, NULL) != 0 ||
            !dpool_cond_init_monotonic(&s_stripes[i].done))
            return false;
    return true;
}

// A child of fork has the stripes as they were, held by threads it does not have or
// waited on by them: it gets new ones (only its own handles use them from then on).
static void
s_stripes_after_fork(void)
{
    s_stripes_ready = s_stripes_make();
}

static void
s_stripes_init(void)
{
    s_stripes_ready = s_stripes_make() && pthread_atfork(NULL, NULL, s_stripes_after_fork) == 0;
}

// The lock that guards self's refs and outcome, and the condition its waiters wait on.
static pthread_mutex_t *
s_lock(const dpool_result_t *self)
{
    return &s_stripes[self->task_id % S_STRIPES].lock;
}

static pthread_cond_t *
s_done(const dpool_result_t *self)
{
    return &s_stripes[self->task_id % S_STRIPES].done;
}

// The message of a failed task whose own text could not be copied (memory ran out).
static const char s_message_lost[] = "the task's message was lost: out of memory";

void
dpool_error_set(dpool_error_t *err, int code, const char *fmt, ...)
{
    if (!err)
        return;
    err->code = code;
    err->message[0] = '\0';
    if (!fmt)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
}

void
dpool_deadline_in(double timeout, struct timespec *deadline)
{
    // Clamped so the nanosecond arithmetic cannot overflow: 30 years is "forever" too.
    int64_t nanos = (int64_t)((timeout < 1e9 ? timeout : 1e9) * 1e9);
    clock_gettime(CLOCK_MONOTONIC, deadline);
    nanos += deadline->tv_nsec;
    deadline->tv_sec += (time_t)(nanos / 1000000000);
    deadline->tv_nsec = (long)(nanos % 1000000000);
}

bool
dpool_cond_init_monotonic(pthread_cond_t *cond)
{
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0)
        return false;
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(cond, &attr);
    pthread_condattr_destroy(&attr);
    return rc == 0;
}

dpool_result_t *
dpool_result_new(uint64_t task_id)
{
    pthread_once(&s_stripes_once, s_stripes_init);
    dpool_result_t *self = s_stripes_ready ? calloc(1, sizeof *self) : NULL;
    if (!self)
        return NULL;
    self->refs = 1;
    self->task_id = task_id;
    return self;
}

dpool_result_t *
dpool_result_ref(dpool_result_t *self)
{
    pthread_mutex_lock(s_lock(self));
    self->refs++;
    pthread_mutex_unlock(s_lock(self));
    return self;
}

void
dpool_result_destroy(dpool_result_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dpool_result_t *self = *self_p;
    *self_p = NULL;
    pthread_mutex_lock(s_lock(self));
    int refs = --self->refs;
    pthread_mutex_unlock(s_lock(self));
    if (refs > 0)
        return;
    zframe_destroy(&self->value);
    if (self->message != s_message_lost)
        free(self->message);
    free(self->offsets);
    free(self);
}

void
dpool_result_set_hook(dpool_result_t *self, dpool_result_hook_fn *hook, void *arg)
{
    self->hook = hook;
    self->hook_arg = arg;
}

// The value's bytes once ready and successful: nil when no payload came.
static void
s_value(const dpool_result_t *self, const char **data, size_t *size)
{
    static const char nil = (char)0xc0;
    if (self->value) {
        *data = (const char *)zframe_data(self->value);
        *size = zframe_size(self->value);
    } else if (self->small_size) {
        *data = (const char *)self->small;
        *size = self->small_size;
    } else {
        *data = &nil;
        *size = 1;
    }
}

// The outcome's message once ready: "" when it came with none.
static const char *
s_message(const dpool_result_t *self)
{
    return self->message ? self->message : "";
}

static size_t
s_value_size(const dpool_result_t *self)
{
    const char *data;
    size_t size;
    s_value(self, &data, &size);
    return size;
}

// Under s_lock(self): the outcome, the first time. Returns whether it was the first.
static bool
s_set_outcome_locked(dpool_result_t *self, int code, const char *message)
{
    if (self->ready)
        return false;
    self->ready = true;
    self->code = code;
    // Most outcomes have no message, and a handle carries none of its own: a buffer
    // the size of dpool_error_t's in every handle was most of a pending task's memory.
    if (message && *message) {
        self->message = strndup(message, sizeof(((dpool_error_t *)0)->message) - 1);
        if (!self->message)
            self->message = (char *)s_message_lost;
    }
    return true;
}

// After the outcome was set: wakes waiters and runs the hook.
static void
s_announce(dpool_result_t *self)
{
    // Woken after the unlock: a waiter woken under the lock would only block again on
    // it, one more context switch per result. The caller's reference keeps self alive.
    pthread_cond_broadcast(s_done(self));
    if (self->hook)
        self->hook(self->hook_arg, self);
}

void
dpool_result_complete_bytes(dpool_result_t *self, int code, const char *message, const void *data,
                            size_t size)
{
    // A small value lives in the handle: no allocation for it (most results are a few
    // bytes), and it came from a BATCH that the caller keeps only until its next read.
    zframe_t *frame = NULL;
    if (code == DPOOL_OK && data && size > sizeof self->small)
        frame = zframe_new(data, size); // NULL when out of memory: the value reads nil
    pthread_mutex_lock(s_lock(self));
    bool first = s_set_outcome_locked(self, code, message);
    if (first && code == DPOOL_OK && data && size <= sizeof self->small) {
        memcpy(self->small, data, size);
        self->small_size = (uint8_t)size;
    } else if (first && frame) {
        self->value = frame;
        frame = NULL;
    }
    pthread_mutex_unlock(s_lock(self));
    zframe_destroy(&frame);
    if (first)
        s_announce(self);
}

void
dpool_result_complete(dpool_result_t *self, int code, const char *message, zframe_t **payload_p)
{
    pthread_mutex_lock(s_lock(self));
    bool first = s_set_outcome_locked(self, code, message);
    if (first && code == DPOOL_OK && payload_p) {
        self->value = *payload_p;
        *payload_p = NULL;
    }
    pthread_mutex_unlock(s_lock(self));
    if (payload_p)
        zframe_destroy(payload_p);
    if (first)
        s_announce(self);
}

void *
dpool_result_hook_arg(const dpool_result_t *self)
{
    return self->hook_arg;
}

bool
dpool_result_peek(dpool_result_t *self, int *code, const char **data, size_t *size,
                  const char **message)
{
    pthread_mutex_lock(s_lock(self));
    bool ready = self->ready;
    pthread_mutex_unlock(s_lock(self));
    if (!ready)
        return false;
    // Once ready the outcome never changes, so it is read without the lock.
    *code = self->code;
    s_value(self, data, size);
    *message = s_message(self);
    return true;
}

// Waits with s_lock(self) held until ready or the timeout runs out; returns ready.
static bool
s_wait_locked(dpool_result_t *self, double timeout)
{
    if (self->ready || timeout == 0)
        return self->ready;
    if (timeout < 0) {
        while (!self->ready)
            pthread_cond_wait(s_done(self), s_lock(self));
        return true;
    }
    struct timespec deadline;
    dpool_deadline_in(timeout, &deadline);
    while (!self->ready)
        if (pthread_cond_timedwait(s_done(self), s_lock(self), &deadline) == ETIMEDOUT)
            break;
    return self->ready;
}

int
dpool_result_wait(dpool_result_t *self, double timeout)
{
    if (!self)
        return DPOOL_ERR_INVALID;
    pthread_mutex_lock(s_lock(self));
    bool ready = s_wait_locked(self, timeout);
    pthread_mutex_unlock(s_lock(self));
    return ready ? DPOOL_OK : DPOOL_ERR_TIMEOUT;
}

// Copies the successful value into *value; nil when the broker sent no payload.
static int
s_copy_value(const dpool_result_t *self, dpool_buf_t *value)
{
    const char *bytes;
    size_t size;
    s_value(self, &bytes, &size);
    value->data = malloc(size ? size : 1);
    if (!value->data)
        return DPOOL_ERR_NOMEM;
    memcpy(value->data, bytes, size);
    value->size = size;
    return DPOOL_OK;
}

int
dpool_result_get(dpool_result_t *self, double timeout, dpool_buf_t *value, dpool_error_t *err)
{
    if (value) {
        value->data = NULL;
        value->size = 0;
    }
    if (!self) {
        dpool_error_set(err, DPOOL_ERR_INVALID, "result handle is NULL");
        return DPOOL_ERR_INVALID;
    }
    pthread_mutex_lock(s_lock(self));
    int rc = DPOOL_ERR_TIMEOUT;
    if (!s_wait_locked(self, timeout))
        dpool_error_set(err, rc, "task %llu has no result after %.3f s",
                        (unsigned long long)self->task_id, timeout);
    else if (self->code != DPOOL_OK)
        dpool_error_set(err, rc = self->code, "%s", s_message(self));
    else if ((rc = value ? s_copy_value(self, value) : DPOOL_OK) != DPOOL_OK)
        dpool_error_set(err, rc, "cannot copy a result of %zu bytes", s_value_size(self));
    pthread_mutex_unlock(s_lock(self));
    return rc;
}

bool
dpool_result_ready(dpool_result_t *self)
{
    if (!self)
        return false;
    pthread_mutex_lock(s_lock(self));
    bool ready = self->ready;
    pthread_mutex_unlock(s_lock(self));
    return ready;
}

int
dpool_result_successful(dpool_result_t *self)
{
    if (!self)
        return DPOOL_ERR_INVALID;
    pthread_mutex_lock(s_lock(self));
    int rc = !self->ready ? DPOOL_ERR_NOT_READY : self->code == DPOOL_OK ? 1 : 0;
    pthread_mutex_unlock(s_lock(self));
    return rc;
}

uint64_t
dpool_result_task_id(const dpool_result_t *self)
{
    return self ? self->task_id : 0;
}

// Under s_lock(self), ready and successful: finds where each item of the array value
// starts (once). Returns DPOOL_OK or DPOOL_ERR_INVALID when the value is no array.
static int
s_index_locked(dpool_result_t *self)
{
    if (self->offsets)
        return DPOOL_OK;
    const char *data;
    size_t size, at = 0, count = 0;
    s_value(self, &data, &size);
    if (!dpool_walk_array(data, size, &at, &count) || count > size - at)
        return DPOOL_ERR_INVALID;
    size_t *offsets = malloc((count + 1) * sizeof *offsets);
    if (!offsets)
        return DPOOL_ERR_NOMEM;
    for (size_t i = 0; i < count; i++) {
        offsets[i] = at;
        if (!dpool_walk_skip(data, size, &at)) {
            free(offsets);
            return DPOOL_ERR_INVALID;
        }
    }
    offsets[count] = at;
    self->offsets = offsets;
    self->item_count = count;
    return DPOOL_OK;
}

// Takes the lock and checks the handle holds a successful array value.
static int
s_items_locked(dpool_result_t *self)
{
    if (!self->ready)
        return DPOOL_ERR_NOT_READY;
    if (self->code != DPOOL_OK)
        return self->code;
    return s_index_locked(self);
}

int
dpool_result_count(dpool_result_t *self, size_t *count)
{
    if (!self || !count)
        return DPOOL_ERR_INVALID;
    pthread_mutex_lock(s_lock(self));
    int rc = s_items_locked(self);
    *count = rc == DPOOL_OK ? self->item_count : 0;
    pthread_mutex_unlock(s_lock(self));
    return rc;
}

int
dpool_result_item(dpool_result_t *self, size_t index, const char **data, size_t *size)
{
    if (!self || !data || !size)
        return DPOOL_ERR_INVALID;
    pthread_mutex_lock(s_lock(self));
    int rc = s_items_locked(self);
    if (rc == DPOOL_OK && index >= self->item_count)
        rc = DPOOL_ERR_INVALID;
    if (rc == DPOOL_OK) {
        const char *bytes;
        size_t all;
        s_value(self, &bytes, &all);
        *data = bytes + self->offsets[index];
        *size = self->offsets[index + 1] - self->offsets[index];
    }
    pthread_mutex_unlock(s_lock(self));
    return rc;
}
