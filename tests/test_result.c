/*  Tests for result handles completed from borrowed bytes (dpool_result_complete_bytes):
    a few bytes are kept in the handle, more in a frame of their own, none read as nil,
    and only the first outcome counts, whichever way it came; a failure keeps a copy
    of its message, cut to what a dpool_error_t holds. Then the locks handles share:
    a completion wakes its own waiter, and a child of fork can wait on its handles. */
#include "dpool_result.h"

#include <criterion/criterion.h>
#include <dpool/errors.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

// Completes a new handle with size bytes of data (an array of one bin, or NULL) and
// checks every reader sees exactly those bytes once the lender has overwritten them.
static void
s_check_value_of(size_t size)
{
    uint8_t lent[64] = {0x91, 0xc4, (uint8_t)(size - 3)};
    memset(lent + 3, 'v', sizeof lent - 3);
    uint8_t expected[64];
    memcpy(expected, lent, size);
    dpool_result_t *result = dpool_result_new(9);
    cr_assert_not_null(result);
    dpool_result_complete_bytes(result, DPOOL_OK, NULL, lent, size);
    memset(lent, 0, sizeof lent); // the BATCH it came from is gone
    int code = -1;
    const char *data = NULL, *message = NULL;
    size_t got = 0;
    cr_assert(dpool_result_peek(result, &code, &data, &got, &message));
    cr_assert_eq(code, DPOOL_OK);
    cr_assert_eq(got, size, "%zu bytes kept as %zu", size, got);
    cr_assert_eq(memcmp(data, expected, size), 0, "%zu bytes changed", size);
    dpool_buf_t value = {0};
    dpool_error_t err = {0};
    cr_assert_eq(dpool_result_get(result, 0, &value, &err), DPOOL_OK, "%s", err.message);
    cr_assert_eq(value.size, size);
    cr_assert_eq(memcmp(value.data, expected, size), 0);
    dpool_buf_free(&value);
    size_t count = 0;
    cr_assert_eq(dpool_result_count(result, &count), DPOOL_OK);
    cr_assert_eq(count, 1, "an array of one item");
    cr_assert_eq(dpool_result_item(result, 0, &data, &got), DPOOL_OK);
    cr_assert_eq(got, size - 1);
    cr_assert_eq(memcmp(data, expected + 1, size - 1), 0);
    dpool_result_destroy(&result);
}

Test(result, a_value_lent_by_the_io_thread_is_copied_inline_or_into_a_frame)
{
    s_check_value_of(3);  // an empty bin
    s_check_value_of(32); // the most the handle holds itself
    s_check_value_of(33); // one more: a frame of its own
    s_check_value_of(64);
}

Test(result, no_payload_reads_nil_and_only_the_first_outcome_counts)
{
    dpool_result_t *result = dpool_result_new(10);
    dpool_result_complete_bytes(result, DPOOL_OK, NULL, NULL, 0);
    const uint8_t later[] = {0x01};
    dpool_result_complete_bytes(result, DPOOL_ERR_WORKER_LOST, "too late", later, sizeof later);
    int code = -1;
    const char *data = NULL, *message = NULL;
    size_t size = 0;
    cr_assert(dpool_result_peek(result, &code, &data, &size, &message));
    cr_assert_eq(code, DPOOL_OK);
    cr_assert_eq(size, 1);
    cr_assert_eq((uint8_t)data[0], 0xc0, "no payload is nil");
    cr_assert_str_empty(message);
    dpool_result_destroy(&result);

    result = dpool_result_new(11);
    dpool_result_complete_bytes(result, DPOOL_ERR_WORKER_LOST, "lost on host h", later,
                                sizeof later);
    dpool_buf_t value = {0};
    dpool_error_t err = {0};
    cr_assert_eq(dpool_result_get(result, 0, &value, &err), DPOOL_ERR_WORKER_LOST);
    cr_assert_str_eq(err.message, "lost on host h");
    cr_assert_null(value.data, "a failure has no value");
    dpool_result_destroy(&result);
}

Test(result, a_failure_keeps_its_message_up_to_what_an_error_holds)
{
    char long_message[600];
    memset(long_message, 'm', sizeof long_message - 1);
    long_message[sizeof long_message - 1] = '\0';
    dpool_result_t *result = dpool_result_new(12);
    cr_assert_not_null(result);
    dpool_result_complete_bytes(result, DPOOL_ERR_TASK_FAILED, long_message, NULL, 0);
    long_message[0] = 'x'; // the message came from a BATCH that is gone
    dpool_error_t err = {0};
    cr_assert_eq(dpool_result_get(result, 0, NULL, &err), DPOOL_ERR_TASK_FAILED);
    cr_assert_eq(strlen(err.message), sizeof err.message - 1, "cut to what an error holds");
    cr_assert_eq(strspn(err.message, "m"), sizeof err.message - 1, "its own copy");
    int code = 0;
    const char *data = NULL, *message = NULL;
    size_t size = 0;
    cr_assert(dpool_result_peek(result, &code, &data, &size, &message));
    cr_assert_eq(code, DPOOL_ERR_TASK_FAILED);
    cr_assert_str_eq(message, err.message);
    dpool_result_destroy(&result);

    // A failure without a message reads as an empty one.
    result = dpool_result_new(13);
    cr_assert_not_null(result);
    dpool_result_complete_bytes(result, DPOOL_ERR_TASK_FAILED, NULL, NULL, 0);
    cr_assert_eq(dpool_result_get(result, 0, NULL, &err), DPOOL_ERR_TASK_FAILED);
    cr_assert_str_empty(err.message);
    dpool_result_destroy(&result);
}

/* ---- the process-wide stripes of locks the handles share ---------------------------- */

typedef struct {
    dpool_result_t *result;
    int rc;
} s_waiter_t;

static void *
s_wait_for(void *arg)
{
    s_waiter_t *waiter = arg;
    waiter->rc = dpool_result_wait(waiter->result, 10);
    return NULL;
}

// Handles 1 and 65 share a stripe (64 of them, picked by task id): a completion must
// wake its own waiter, not only some waiter of the stripe.
Test(result, two_waiters_on_one_stripe_are_each_woken_by_their_own_completion, .timeout = 60)
{
    s_waiter_t first = {dpool_result_new(1), -1}, second = {dpool_result_new(65), -1};
    cr_assert(first.result && second.result);
    pthread_t threads[2];
    cr_assert_eq(pthread_create(&threads[0], NULL, s_wait_for, &first), 0);
    cr_assert_eq(pthread_create(&threads[1], NULL, s_wait_for, &second), 0);
    usleep(200 * 1000); // both asleep in their waits by now
    dpool_result_complete_bytes(second.result, DPOOL_OK, NULL, NULL, 0);
    cr_assert_eq(pthread_join(threads[1], NULL), 0);
    cr_assert_eq(second.rc, DPOOL_OK, "the second waiter was not woken by its completion");
    cr_assert_not(dpool_result_ready(first.result));
    dpool_result_complete_bytes(first.result, DPOOL_OK, NULL, NULL, 0);
    cr_assert_eq(pthread_join(threads[0], NULL), 0);
    cr_assert_eq(first.rc, DPOOL_OK);
    dpool_result_destroy(&first.result);
    dpool_result_destroy(&second.result);
}

// In the child: waits on handles of the stripe a thread of the parent was waiting on
// at the fork, each completed by this thread. Returns the exit status.
static int
s_child_waits(void)
{
    alarm(20); // a stripe left broken by the fork hangs the wait: the parent sees a signal
    for (uint64_t i = 0; i < 4; i++) {
        s_waiter_t waiter = {dpool_result_new(65 + 64 * i), -1};
        pthread_t thread;
        if (!waiter.result || pthread_create(&thread, NULL, s_wait_for, &waiter) != 0)
            return 2;
        usleep(20 * 1000);
        dpool_result_complete_bytes(waiter.result, DPOOL_OK, NULL, NULL, 0);
        pthread_join(thread, NULL);
        dpool_result_destroy(&waiter.result);
        if (waiter.rc != DPOOL_OK)
            return 3;
    }
    return 0;
}

Test(result, a_child_of_fork_waits_on_its_own_handles, .timeout = 60)
{
    s_waiter_t parent = {dpool_result_new(1), -1};
    cr_assert_not_null(parent.result);
    pthread_t thread;
    cr_assert_eq(pthread_create(&thread, NULL, s_wait_for, &parent), 0);
    usleep(200 * 1000); // asleep on the stripe's condition when the process forks
    pid_t child = fork();
    cr_assert_geq(child, 0);
    if (child == 0)
        _exit(s_child_waits());
    int status = 0;
    pid_t reaped = 0;
    for (int i = 0; i < 300 && reaped == 0; i++) { // 30 s at most
        reaped = waitpid(child, &status, WNOHANG);
        if (reaped == 0)
            usleep(100 * 1000);
    }
    if (reaped == 0) {
        kill(child, SIGKILL);
        waitpid(child, &status, 0);
    }
    dpool_result_complete_bytes(parent.result, DPOOL_OK, NULL, NULL, 0);
    cr_assert_eq(pthread_join(thread, NULL), 0);
    cr_assert_eq(reaped, child, "the child hung");
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child ended with status %d",
              status);
    cr_assert_eq(parent.rc, DPOOL_OK);
    dpool_result_destroy(&parent.result);
}
