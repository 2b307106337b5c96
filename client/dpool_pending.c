/*  The pending-task table. A result is completed while the table lock is held, so a
    waiter in dpool_pending_wait_empty (join, terminate) never sees an empty table
    before every handle is ready. Lock order: table, then result; the result module
    never takes the table lock. */
#include "dpool_pending.h"
#include "dpool_result.h"

#include <pthread.h>
#include <stdlib.h>

struct _dpool_pending_t {
    pthread_mutex_t lock;
    pthread_cond_t empty; // broadcast when the table becomes empty
    zhashx_t *tasks;      // task id -> s_entry_t
};

typedef struct {
    uint64_t task_id; // the key points here, so keys need no allocation of their own
    dpool_result_t *result;
} s_entry_t;

static size_t
s_hash_id(const void *key)
{
    // splitmix64's finaliser: ids count up from 1, which a plain modulo would bunch
    uint64_t x = *(const uint64_t *)key;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return (size_t)(x ^ (x >> 31));
}

static int
s_compare_id(const void *a, const void *b)
{
    uint64_t left = *(const uint64_t *)a, right = *(const uint64_t *)b;
    return left < right ? -1 : left > right;
}

static void
s_entry_destroy(void **item_p)
{
    s_entry_t *entry = *item_p;
    if (!entry)
        return;
    dpool_result_destroy(&entry->result);
    free(entry);
    *item_p = NULL;
}

dpool_pending_t *
dpool_pending_new(void)
{
    dpool_pending_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->tasks = zhashx_new();
    if (!self->tasks)
        goto fail_free;
    zhashx_set_key_hasher(self->tasks, s_hash_id);
    zhashx_set_key_comparator(self->tasks, s_compare_id);
    zhashx_set_key_duplicator(self->tasks, NULL);
    zhashx_set_key_destructor(self->tasks, NULL);
    zhashx_set_destructor(self->tasks, s_entry_destroy);
    if (!dpool_cond_init_monotonic(&self->empty))
        goto fail_hash;
    if (pthread_mutex_init(&self->lock, NULL) != 0)
        goto fail_cond;
    return self;
fail_cond:
    pthread_cond_destroy(&self->empty);
fail_hash:
    zhashx_destroy(&self->tasks);
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
    zhashx_destroy(&self->tasks);
    pthread_cond_destroy(&self->empty);
    pthread_mutex_destroy(&self->lock);
    free(self);
}

int
dpool_pending_add(dpool_pending_t *self, dpool_result_t *result)
{
    s_entry_t *entry = malloc(sizeof *entry);
    if (!entry)
        return DPOOL_ERR_NOMEM;
    entry->task_id = dpool_result_task_id(result);
    entry->result = dpool_result_ref(result);
    pthread_mutex_lock(&self->lock);
    int rc = zhashx_insert(self->tasks, &entry->task_id, entry);
    pthread_mutex_unlock(&self->lock);
    if (rc == 0)
        return DPOOL_OK;
    // only a duplicate id fails an insert, and ids come from one counter: a bug of ours
    dpool_result_destroy(&entry->result);
    free(entry);
    return DPOOL_ERR_INVALID;
}

bool
dpool_pending_complete(dpool_pending_t *self, uint64_t task_id, int code, const char *message,
                       zframe_t **payload_p)
{
    pthread_mutex_lock(&self->lock);
    s_entry_t *entry = zhashx_lookup(self->tasks, &task_id);
    if (entry) {
        dpool_result_complete(entry->result, code, message, payload_p);
        zhashx_delete(self->tasks, &task_id);
        if (zhashx_size(self->tasks) == 0)
            pthread_cond_broadcast(&self->empty);
    }
    pthread_mutex_unlock(&self->lock);
    if (payload_p)
        zframe_destroy(payload_p);
    return entry != NULL;
}

size_t
dpool_pending_fail_all(dpool_pending_t *self, int code, const char *message)
{
    pthread_mutex_lock(&self->lock);
    size_t count = zhashx_size(self->tasks);
    for (s_entry_t *entry = zhashx_first(self->tasks); entry; entry = zhashx_next(self->tasks))
        dpool_result_complete(entry->result, code, message, NULL);
    zhashx_purge(self->tasks);
    pthread_cond_broadcast(&self->empty);
    pthread_mutex_unlock(&self->lock);
    return count;
}

size_t
dpool_pending_count(dpool_pending_t *self)
{
    pthread_mutex_lock(&self->lock);
    size_t count = zhashx_size(self->tasks);
    pthread_mutex_unlock(&self->lock);
    return count;
}

int
dpool_pending_wait_empty(dpool_pending_t *self, double timeout)
{
    struct timespec deadline;
    if (timeout >= 0)
        dpool_deadline_in(timeout, &deadline);
    pthread_mutex_lock(&self->lock);
    int rc = 0;
    while (zhashx_size(self->tasks) > 0 && rc == 0)
        rc = timeout < 0 ? pthread_cond_wait(&self->empty, &self->lock)
                         : pthread_cond_timedwait(&self->empty, &self->lock, &deadline);
    bool empty = zhashx_size(self->tasks) == 0;
    pthread_mutex_unlock(&self->lock);
    return empty ? DPOOL_OK : DPOOL_ERR_TIMEOUT;
}
