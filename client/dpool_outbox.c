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

// Under self->lock: whether a message of command goes in now (a SUBMIT waits for the
// resync while the broker is lost).
static bool
s_admits_locked(const dpool_outbox_t *self, int command)
{
    return !(command == DPOOL_CMD_SUBMIT && self->lost);
}

// Under self->lock, after a message of command went in: notes a POOL_RELEASE, and
// says whether the I/O thread must be woken (the first post since its last take).
static bool
s_went_in_locked(dpool_outbox_t *self, int command)
{
    if (command == DPOOL_CMD_POOL_RELEASE)
        self->released = true;
    bool wake = !self->woken;
    self->woken = true;
    return wake;
}

int
dpool_outbox_post_encoded(dpool_outbox_t *self, const uint8_t *message, size_t size, bool *wake_p)
{
    int command = size > DPOOL_PROTO_HEADER_SIZE ? message[3] : 0;
    int rc = DPOOL_OK;
    *wake_p = false;
    pthread_mutex_lock(&self->lock);
    if (s_admits_locked(self, command) &&
        (rc = dpool_batch_add_encoded(self->posted, message, size)) == DPOOL_OK)
        *wake_p = s_went_in_locked(self, command);
    pthread_mutex_unlock(&self->lock);
    return rc;
}

int
dpool_outbox_post_alone(dpool_outbox_t *self, zmsg_t **zmsg_p, bool *wake_p)
{
    int command = dpool_batch_plain_command(*zmsg_p);
    int rc = DPOOL_OK;
    *wake_p = false;
    pthread_mutex_lock(&self->lock);
    if (s_admits_locked(self, command) &&
        (rc = dpool_batch_add_alone(self->posted, zmsg_p)) == DPOOL_OK)
        *wake_p = s_went_in_locked(self, command);
    pthread_mutex_unlock(&self->lock);
    zmsg_destroy(zmsg_p); // moved in, or refused
    return rc;
}

int
dpool_outbox_post(dpool_outbox_t *self, dpool_msg_t *msg, bool *wake_p)
{
    // Pool commands, a few per pool: encoded here, then posted as a SUBMIT is.
    msgpack_sbuffer encoded;
    msgpack_sbuffer_init(&encoded);
    const void *payload = msg->payload ? zframe_data(msg->payload) : NULL;
    size_t payload_size = msg->payload ? zframe_size(msg->payload) : 0;
    zframe_t *frame = msg->payload;
    msg->payload = NULL;
    int rc = dpool_batch_encode(msg, payload, payload_size, &encoded);
    msg->payload = frame;
    *wake_p = false;
    if (rc == DPOOL_OK)
        rc = dpool_outbox_post_encoded(self, (const uint8_t *)encoded.data, encoded.size, wake_p);
    msgpack_sbuffer_destroy(&encoded);
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

bool
dpool_outbox_empty(dpool_outbox_t *self)
{
    pthread_mutex_lock(&self->lock);
    bool empty = dpool_batch_count(self->posted) == 0;
    pthread_mutex_unlock(&self->lock);
    return empty;
}
