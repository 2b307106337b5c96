/*  The pool's I/O thread lends its socket to a user thread for a task alone in flight:
    the one exception to "the DEALER is the I/O thread's" (STYLE 5). While the thread
    sleeps, the submitting thread takes socket_lock, sends the SUBMIT itself and, in
    dpool_apply, reads the broker's messages until its result is there
    (s_stand_in_locked). Each hand-off would otherwise cost a thread wake-up on the way
    out and another on the way back, about 45 us of a 300 us synchronous apply on a
    2-core machine. libzmq allows a socket to move between threads with a full memory
    barrier between uses; the lock gives that, and only one thread uses the socket at a
    time. The thread holds the lock whenever it is not asleep in epoll_wait, so a
    borrower never overlaps it. */
#include "dpool_io_internal.h"
#include "dpool_result.h"

#include <sys/epoll.h>

// Under socket_lock: sends message on the DEALER now, when nothing sent before it
// still waits in the outbox and the pool is open to a broker that is there. Returns
// DPOOL_OK, or 1 when it must go through the outbox.
static int
s_send_direct_locked(dpool_io_state_t *state, const uint8_t *message)
{
    if (!atomic_load(&state->running) || !state->connected || state->lost || state->released ||
        !dpool_outbox_empty(state->outbox))
        return 1;
    dpool_batch_send_plain(state->dealer, message); // a failed send is lost like any other
    // The send may have taken the descriptor's signal for a message that waits, and
    // the thread sleeps on that descriptor.
    if (zsock_events(state->dealer) & ZMQ_POLLIN)
        dpool_io_wake_thread(state);
    return DPOOL_OK;
}

int
dpool_io_send_direct(dpool_io_t *self, const uint8_t *message, size_t size)
{
    dpool_io_state_t *state = &self->state;
    int rc = 1;
    if (atomic_load(&state->running) && pthread_mutex_trylock(&state->socket_lock) == 0) {
        rc = s_send_direct_locked(state, message);
        pthread_mutex_unlock(&state->socket_lock);
    }
    return rc == 1 ? dpool_io_send_encoded(self, message, size) : rc;
}

// Under socket_lock, on a user thread while the I/O thread sleeps: reads what the
// broker sends, as the thread would, until result is ready or anything else needs the
// thread (a post, the owner, the monitor, a timer). Then the thread has it all again:
// what its own wake-up found is read by it at its next turn, and messages left unread
// get it woken, since reading them here may have taken their signal.
static void
s_stand_in_locked(dpool_io_state_t *state, dpool_result_t *result)
{
    while (true) {
        bool more = dpool_io_on_broker(state);
        if (dpool_result_ready(result)) {
            if (more)
                dpool_io_wake_thread(state);
            return;
        }
        if (more)
            continue; // read on: nothing has signalled what still waits
        int timeout = dpool_io_poll_timeout(state);
        struct epoll_event events[DPOOL_IO_FDS];
        int n = timeout > 0 ? epoll_wait(state->stand_in_fd, events, DPOOL_IO_FDS, timeout) : 0;
        if (n <= 0)
            return;
        for (int i = 0; i < n; i++)
            if (events[i].data.u32 != DPOOL_IO_FD_DEALER)
                return;
    }
}

void
dpool_io_await(dpool_io_t *self, dpool_result_t *result)
{
    dpool_io_state_t *state = &self->state;
    if (atomic_load(&state->running) && pthread_mutex_trylock(&state->socket_lock) == 0) {
        if (atomic_load(&state->running) && !state->lost) {
            dpool_io_watch_dealer(state, false);
            s_stand_in_locked(state, result);
            dpool_io_watch_dealer(state, true); // what waits now wakes the thread
            if (state->dealer_unwatched)
                dpool_io_wake_thread(state); // to put it back
        }
        pthread_mutex_unlock(&state->socket_lock);
    }
}
