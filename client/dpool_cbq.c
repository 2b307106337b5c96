/*  The callback thread. A watched handle's completion hook (on whatever thread
    completed it, usually the I/O thread) only links a job into the queue; the thread
    takes jobs in order and calls the user's function with no lock held. Each job holds
    a reference to its handle and a hold on the pending table, released after the
    callback returned, so dpool_join returns only once callbacks have run. */
#include "dpool_cbq.h"
#include "dpool_result.h"

#include <pthread.h>
#include <stdlib.h>

typedef struct s_job {
    struct s_job *next;
    dpool_cbq_t *queue;
    dpool_result_t *result; // a reference of the job's own
    dpool_callbacks_t callbacks;
} s_job_t;

struct _dpool_cbq_t {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    s_job_t *head, *tail; // due jobs, in completion order
    bool started, stopping;
    pthread_t thread;
    dpool_pending_t *pending;
};

dpool_cbq_t *
dpool_cbq_new(dpool_pending_t *pending)
{
    dpool_cbq_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    if (pthread_mutex_init(&self->lock, NULL) != 0)
        goto fail_free;
    if (pthread_cond_init(&self->wake, NULL) != 0)
        goto fail_lock;
    self->pending = pending;
    return self;
fail_lock:
    pthread_mutex_destroy(&self->lock);
fail_free:
    free(self);
    return NULL;
}

static void
s_run_job(s_job_t *job)
{
    int code = DPOOL_OK;
    const char *data = NULL, *message = NULL;
    size_t size = 0;
    // A job is queued only once its handle is ready, so the peek always succeeds.
    dpool_result_peek(job->result, &code, &data, &size, &message);
    if (code == DPOOL_OK && job->callbacks.callback)
        job->callbacks.callback(job->callbacks.arg, data, size);
    else if (code != DPOOL_OK && job->callbacks.error_callback) {
        dpool_error_t err = {0};
        dpool_error_set(&err, code, "%s", message);
        job->callbacks.error_callback(job->callbacks.arg, &err);
    }
    dpool_result_destroy(&job->result);
    dpool_pending_release(job->queue->pending);
    free(job);
}

static void *
s_thread(void *arg)
{
    dpool_cbq_t *self = arg;
    pthread_mutex_lock(&self->lock);
    while (true) {
        while (!self->head && !self->stopping)
            pthread_cond_wait(&self->wake, &self->lock);
        s_job_t *job = self->head;
        if (!job)
            break; // stopping, and nothing left to run
        self->head = job->next;
        if (!self->head)
            self->tail = NULL;
        pthread_mutex_unlock(&self->lock);
        s_run_job(job);
        pthread_mutex_lock(&self->lock);
    }
    pthread_mutex_unlock(&self->lock);
    return NULL;
}

static void
s_on_done(void *arg, dpool_result_t *result)
{
    (void)result;
    s_job_t *job = arg;
    dpool_cbq_t *self = job->queue;
    pthread_mutex_lock(&self->lock);
    if (self->tail)
        self->tail->next = job;
    else
        self->head = job;
    self->tail = job;
    pthread_cond_signal(&self->wake);
    pthread_mutex_unlock(&self->lock);
}

int
dpool_cbq_watch(dpool_cbq_t *self, dpool_result_t *result, const dpool_callbacks_t *callbacks)
{
    s_job_t *job = calloc(1, sizeof *job);
    if (!job)
        return DPOOL_ERR_NOMEM;
    pthread_mutex_lock(&self->lock);
    if (!self->started && pthread_create(&self->thread, NULL, s_thread, self) == 0)
        self->started = true;
    bool started = self->started;
    pthread_mutex_unlock(&self->lock);
    if (!started) {
        free(job);
        return DPOOL_ERR_NOMEM;
    }
    job->queue = self;
    job->result = dpool_result_ref(result);
    job->callbacks = *callbacks;
    dpool_pending_hold(self->pending);
    dpool_result_set_hook(result, s_on_done, job);
    return DPOOL_OK;
}

void
dpool_cbq_unwatch(dpool_cbq_t *self, dpool_result_t *result)
{
    s_job_t *job = dpool_result_hook_arg(result);
    dpool_result_set_hook(result, NULL, NULL);
    if (!job)
        return;
    dpool_result_destroy(&job->result);
    dpool_pending_release(self->pending);
    free(job);
}

void
dpool_cbq_destroy(dpool_cbq_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dpool_cbq_t *self = *self_p;
    *self_p = NULL;
    pthread_mutex_lock(&self->lock);
    self->stopping = true;
    pthread_cond_signal(&self->wake);
    bool started = self->started;
    pthread_mutex_unlock(&self->lock);
    if (started)
        pthread_join(self->thread, NULL);
    pthread_cond_destroy(&self->wake);
    pthread_mutex_destroy(&self->lock);
    free(self);
}
