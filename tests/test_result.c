/*  Tests for result handles completed from borrowed bytes (dpool_result_complete_bytes):
    a few bytes are kept in the handle, more in a frame of their own, none read as nil,
    and only the first outcome counts, whichever way it came; a failure keeps a copy
    of its message, cut to what a dpool_error_t holds. */
#include "dpool_result.h"

#include <criterion/criterion.h>
#include <dpool/errors.h>
#include <string.h>

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
