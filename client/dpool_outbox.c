/*  The outbox between user threads and the pool's I/O thread (see dpool_outbox.h):
    a batch that posts append to and the I/O thread swaps out whole, one lock, and
    the flags that say whether a wake-up is on its way, whether a POOL_RELEASE went
    in, and whether the broker is lost. */
#include "dpool_outbox.h"

#include <dpool/errors.h>
#include <pthread.h>
#include <stdlib.h>

struct dpool_outbox {
    pthread_mutex_t lock; // guards everything below
    dpool_batch_t *posted;
    bool woken;    // a wake-up went out and the I/O thread has not taken the batch since
    bool released; // a POOL_RELEASE is in posted
    bool lost;     // the broker is lost: SUBMITs are not posted
};

dpool_outbox_t *
dpool_outbox_new(void)
{
    dpool_outbox_t *self = calloc(1, sizeof *self);
    if (self && !(self->posted = dpool_batch_new())) {
        free(self);
        return NULL;
    }
    if (self && pthread_mutex_init(&self->lock, NULL) != 0) {
        dpool_batch_destroy(&self->posted);
        free(self);
        return NULL;
    }
    return self;
}

void
dpool_outbox_destroy(dpool_outbox_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dpool_outbox_t *self = *self_p;
    dpool_batch_destroy(&self->posted);
    pthread_mutex_destroy(&self->lock);
    free(self);
    *self_p = NULL;
}

// Under self->lock: whether this post must wake the I/O thread.
static bool
s_wake_locked(dpool_outbox_t *self)
{
    bool wake = !self->woken;
    self->woken = true;
    return wake;
}

int
dpool_outbox_post_encoded(dpool_outbox_t *self, const uint8_t *message, size_t size, bool *wake_p)
{
    int rc = DPOOL_OK;
    *wake_p = false;
    pthread_mutex_lock(&self->lock);
    bool submit = size > DPOOL_PROTO_HEADER_SIZE && message[3] == DPOOL_CMD_SUBMIT;
    if (!(submit && self->lost)) {
        rc = dpool_batch_add_encoded(self->posted, message, size);
        *wake_p = rc == DPOOL_OK && s_wake_locked(self);
    }
    pthread_mutex_unlock(&self->lock);
    return rc;
}

int
dpool_outbox_post_alone(dpool_outbox_t *self, zmsg_t **zmsg_p, bool *wake_p)
{
    int rc = DPOOL_OK;
    *wake_p = false;
    zframe_t *header = zmsg_first(*zmsg_p);
    bool submit = zframe_size(header) == DPOOL_PROTO_HEADER_SIZE &&
                  zframe_data(header)[3] == DPOOL_CMD_SUBMIT;
    pthread_mutex_lock(&self->lock);
    if (!(submit && self->lost)) {
        rc = dpool_batch_add_alone(self->posted, zmsg_p);
        *wake_p = rc == DPOOL_OK && s_wake_locked(self);
    }
    pthread_mutex_unlock(&self->lock);
    zmsg_destroy(zmsg_p); // moved in, or refused
    return rc;
}

int
dpool_outbox_post(dpool_outbox_t *self, dpool_msg_t *msg, bool *wake_p)
{
    int rc = DPOOL_OK;
    *wake_p = false;
    pthread_mutex_lock(&self->lock);
    if (!(msg->command == DPOOL_CMD_SUBMIT && self->lost)) {
        rc = dpool_batch_add(self->posted, msg);
        if (rc == DPOOL_OK && msg->command == DPOOL_CMD_POOL_RELEASE)
            self->released = true;
        *wake_p = rc == DPOOL_OK && s_wake_locked(self);
    }
    pthread_mutex_unlock(&self->lock);
    zframe_destroy(&msg->payload); // copied in, or refused
    return rc;
}

void
dpool_outbox_take(dpool_outbox_t *self, dpool_batch_t **batch_p, bool *released_p)
{
    pthread_mutex_lock(&self->lock);
    dpool_batch_t *posted = self->posted;
    self->posted = *batch_p;
    *batch_p = posted;
    *released_p = self->released;
    self->released = false;
    self->woken = false;
    pthread_mutex_unlock(&self->lock);
}

void
dpool_outbox_unwake(dpool_outbox_t *self)
{
    pthread_mutex_lock(&self->lock);
    self->woken = false;
    pthread_mutex_unlock(&self->lock);
}

void
dpool_outbox_set_lost(dpool_outbox_t *self, bool lost)
{
    pthread_mutex_lock(&self->lock);
    self->lost = lost;
    pthread_mutex_unlock(&self->lock);
}
