/*  The pending-task table. An outcome is delivered with the table lock released (a
    sink takes its map's lock, and a map submits under the pool lock, which takes this
    one: holding ours across the delivery would invert that order), while the
    `delivering` count keeps the table from looking idle until the delivery is over.
    Lock order: pool, then table, then result; nothing here is called with a result or
    map lock held. */
#include "dpool_pending.h"
#include "dpool_idmap.h"
#include "dpool_result.h"

#include <pthread.h>
#include <stdlib.h>

struct _dpool_pending_t {
    pthread_mutex_t lock;
    pthread_cond_t idle;  // broadcast when tasks, deliveries or holds drop
    dpool_idmap_t *tasks; // task id -> s_entry_t (owned; the table frees entries itself)
    size_t delivering;    // entries taken out whose outcome is being handed over
    size_t holds;         // dpool_pending_hold minus dpool_pending_release
};

typedef struct {
    uint64_t task_id;
    dpool_result_t *result; // a reference of the table's own, or NULL for a sink
    dpool_sink_t sink;
    // The task's SUBMIT, kept for a re-send, as dpool_batch_encode wrote it: in the
    // entry's own tail, or a block of its own for a large one.
    uint8_t *submit;
    size_t submit_size;
    uint8_t submit_inline[];
} s_entry_t;

dpool_pending_t *
dpool_pending_new(void)
{
    dpool_pending_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->tasks = dpool_idmap_new();
    if (!self->tasks)
        goto fail_free;
    if (!dpool_cond_init_monotonic(&self->idle))
        goto fail_hash;
    if (pthread_mutex_init(&self->lock, NULL) != 0)
        goto fail_cond;
    return self;
fail_cond:
    pthread_cond_destroy(&self->idle);
fail_hash:
    dpool_idmap_destroy(&self->tasks);
fail_free:
    free(self);
    return NULL;
}

void
dpool_pending_destroy(dpool_pending_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dpool_pending_t *self = *self_p;
    *self_p = NULL;
    dpool_pending_fail_all(self, DPOOL_ERR_TERMINATED, "terminated: the pool was destroyed");
    dpool_idmap_destroy(&self->tasks);
    pthread_cond_destroy(&self->idle);
    pthread_mutex_destroy(&self->lock);
    free(self);
}

static int
s_insert(dpool_pending_t *self, s_entry_t *entry)
{
    pthread_mutex_lock(&self->lock);
    int rc = dpool_idmap_insert(self->tasks, entry->task_id, entry);
    pthread_mutex_unlock(&self->lock);
    // ids come from one counter, under the pool lock: only memory can run out
    return rc;
}

int
dpool_pending_add(dpool_pending_t *self, const dpool_pending_task_t *task, uint8_t **large_p)
{
    uint8_t *large = large_p ? *large_p : NULL;
    if (large_p)
        *large_p = NULL;
    // One allocation per task for the entry and its SUBMIT: a client with many tasks
    // in flight spends less on malloc and on new pages.
    s_entry_t *entry = malloc(sizeof *entry + (large ? 0 : task->submit_size));
    if (!entry) {
        free(large);
        return DPOOL_ERR_NOMEM;
    }
    *entry = (s_entry_t){.task_id = task->task_id,
                         .result = task->result ? dpool_result_ref(task->result) : NULL,
                         .sink = task->sink,
                         .submit = large ? large : entry->submit_inline,
                         .submit_size = task->submit_size};
    if (!large)
        memcpy(entry->submit_inline, task->submit, task->submit_size);
    int rc = s_insert(self, entry);
    if (rc != DPOOL_OK) {
        dpool_result_destroy(&entry->result);
        free(large);
        free(entry);
    }
    return rc;
}

// Hands the outcome over (no lock held) and frees the entry: the payload is
// *payload_p, or the borrowed bytes data / size when payload_p is NULL.
static void
s_deliver(s_entry_t *entry, int code, const char *message, zframe_t **payload_p, const void *data,
          size_t size)
{
    if (entry->submit != entry->submit_inline)
        free(entry->submit);
    zframe_t *frame = NULL;
    if (entry->result && !payload_p)
        dpool_result_complete_bytes(entry->result, code, message, data, size);
    else if (entry->result)
        dpool_result_complete(entry->result, code, message, payload_p);
    else {
        if (!payload_p && data)
            frame = zframe_new(data, size); // NULL when out of memory: the sink reads nil
        entry->sink.fn(entry->sink.arg, code, message,
                       payload_p ? payload_p
                       : frame   ? &frame
                                 : NULL);
        zframe_destroy(&frame);
    }
    dpool_result_destroy(&entry->result);
    free(entry);
}

typedef struct {
    dpool_pending_send_fn *send;
    void *arg;
    size_t count;
} s_resend_t;

static void
s_resend_one(void *arg, uint64_t task_id, void *value)
{
    (void)task_id;
    s_resend_t *resend = arg;
    s_entry_t *entry = value;
    resend->send(resend->arg, entry->submit, entry->submit_size);
    resend->count++;
}

size_t
dpool_pending_resend(dpool_pending_t *self, dpool_pending_send_fn *send, void *arg)
{
    // In id order, so the broker queues them again in the order they were submitted.
    s_resend_t resend = {.send = send, .arg = arg};
    pthread_mutex_lock(&self->lock);
    dpool_idmap_each(self->tasks, false, s_resend_one, &resend);
    pthread_mutex_unlock(&self->lock);
    return resend.count;
}

// Under self->lock: wakes waiters when something they wait for may have ended.
static void
s_signal_locked(dpool_pending_t *self)
{
    if (dpool_idmap_size(self->tasks) == 0 && self->delivering == 0)
        pthread_cond_broadcast(&self->idle);
}

// Takes task_id's entry out and delivers its outcome; see s_deliver for the payload.
static bool
s_complete(dpool_pending_t *self, uint64_t task_id, int code, const char *message,
           zframe_t **payload_p, const void *data, size_t size)
{
    pthread_mutex_lock(&self->lock);
    s_entry_t *entry = dpool_idmap_take(self->tasks, task_id);
    if (entry)
        self->delivering++;
    pthread_mutex_unlock(&self->lock);
    if (entry) {
        s_deliver(entry, code, message, payload_p, data, size);
        pthread_mutex_lock(&self->lock);
        self->delivering--;
        s_signal_locked(self);
        pthread_mutex_unlock(&self->lock);
    }
    if (payload_p)
        zframe_destroy(payload_p);
    return entry != NULL;
}

bool
dpool_pending_complete(dpool_pending_t *self, uint64_t task_id, int code, const char *message,
                       zframe_t **payload_p)
{
    zframe_t *none = NULL; // s_deliver then sees a frame that is absent
    return s_complete(self, task_id, code, message, payload_p ? payload_p : &none, NULL, 0);
}

bool
dpool_pending_complete_bytes(dpool_pending_t *self, uint64_t task_id, int code, const char *message,
                             const void *data, size_t size)
{
    return s_complete(self, task_id, code, message, NULL, data, size);
}

typedef struct {
    s_entry_t **entries;
    size_t count;
} s_taken_t;

static void
s_take_one(void *arg, uint64_t task_id, void *value)
{
    (void)task_id;
    s_taken_t *taken = arg;
    taken->entries[taken->count++] = value;
}

size_t
dpool_pending_fail_all(dpool_pending_t *self, int code, const char *message)
{
    size_t count = 0;
    pthread_mutex_lock(&self->lock);
    // Every entry taken out at once, then delivered unlocked; again while tasks were
    // added meanwhile.
    size_t size;
    while ((size = dpool_idmap_size(self->tasks)) > 0) {
        s_taken_t taken = {.entries = malloc(size * sizeof *taken.entries)};
        if (!taken.entries) {
            // No memory for the list: one at a time, the oldest first.
            s_entry_t *entry = dpool_idmap_take_first(self->tasks);
            self->delivering++;
            pthread_mutex_unlock(&self->lock);
            s_deliver(entry, code, message, NULL, NULL, 0);
            pthread_mutex_lock(&self->lock);
            self->delivering--;
            count++;
            continue;
        }
        dpool_idmap_each(self->tasks, true, s_take_one, &taken);
        self->delivering += taken.count;
        pthread_mutex_unlock(&self->lock);
        for (size_t i = 0; i < taken.count; i++)
            s_deliver(taken.entries[i], code, message, NULL, NULL, 0);
        pthread_mutex_lock(&self->lock);
        self->delivering -= taken.count;
        count += taken.count;
        free(taken.entries);
    }
    s_signal_locked(self);
    pthread_mutex_unlock(&self->lock);
    return count;
}

size_t
dpool_pending_count(dpool_pending_t *self)
{
    pthread_mutex_lock(&self->lock);
    size_t count = dpool_idmap_size(self->tasks) + self->delivering;
    pthread_mutex_unlock(&self->lock);
    return count;
}

void
dpool_pending_hold(dpool_pending_t *self)
{
    pthread_mutex_lock(&self->lock);
    self->holds++;
    pthread_mutex_unlock(&self->lock);
}

void
dpool_pending_release(dpool_pending_t *self)
{
    pthread_mutex_lock(&self->lock);
    self->holds--;
    pthread_cond_broadcast(&self->idle);
    pthread_mutex_unlock(&self->lock);
}

// Under self->lock: true while there is something the waiter waits for.
static bool
s_busy_locked(dpool_pending_t *self, bool holds)
{
    return dpool_idmap_size(self->tasks) > 0 || self->delivering > 0 || (holds && self->holds > 0);
}

int
dpool_pending_wait_empty(dpool_pending_t *self, double timeout, bool holds)
{
    struct timespec deadline;
    if (timeout >= 0)
        dpool_deadline_in(timeout, &deadline);
    pthread_mutex_lock(&self->lock);
    int rc = 0;
    while (s_busy_locked(self, holds) && rc == 0)
        rc = timeout < 0 ? pthread_cond_wait(&self->idle, &self->lock)
                         : pthread_cond_timedwait(&self->idle, &self->lock, &deadline);
    bool idle = !s_busy_locked(self, holds);
    pthread_mutex_unlock(&self->lock);
    return idle ? DPOOL_OK : DPOOL_ERR_TIMEOUT;
}
