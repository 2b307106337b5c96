/*  Fuzz target: the command line's argument rule (dpool_json_parse_arg) and JSON ->
    msgpack (dpool_json_to_msgpack, dpool_json_pack_args).

    The input is split at NUL bytes into at most 8 arguments, as a shell would hand them
    over. Each argument that parses is packed and converted back: the value must come
    back equal. Then all of them are packed as one argument array, which must hold the
    same values in order. A value nested deeper than msgpack-c reads (32 containers) may
    be refused on the way back, with DPOOL_ERR_PROTO as dpool_json.h says. */
#include "dpool_fuzz.h"

#include "dpool_json.h"

#include <dpool/errors.h>
#include <stdlib.h>
#include <string.h>

#define S_ARGS_MAX 8

static size_t
s_depth(const json_t *value)
{
    size_t deepest = 0;
    if (json_is_array(value)) {
        for (size_t i = 0; i < json_array_size(value); i++) {
            size_t depth = s_depth(json_array_get(value, i));
            deepest = depth > deepest ? depth : deepest;
        }
        return deepest + 1;
    }
    if (!json_is_object(value))
        return 0;
    const char *key;
    json_t *member;
    json_object_foreach((json_t *)value, key, member)
    {
        size_t depth = s_depth(member);
        deepest = depth > deepest ? depth : deepest;
    }
    return deepest + 1;
}

// Packs value and converts it back; returns the new value, or NULL when it nests too deep.
static json_t *
s_round_trip(const json_t *value, size_t depth)
{
    dpool_buf_t packed = {0};
    int rc = dpool_json_to_msgpack(value, &packed);
    DPOOL_FUZZ_CHECK(rc == DPOOL_OK || (rc == DPOOL_ERR_INVALID && depth > 512),
                     "packing a value of depth %zu returned %d", depth, rc);
    if (rc != DPOOL_OK)
        return NULL;
    json_t *again = NULL;
    rc = dpool_json_from_msgpack(packed.data, packed.size, &again);
    free(packed.data);
    DPOOL_FUZZ_CHECK(rc == DPOOL_OK ||
                         (rc == DPOOL_ERR_PROTO && depth > DPOOL_FUZZ_MSGPACK_DEPTH_MAX),
                     "converting back a value of depth %zu returned %d", depth, rc);
    return again;
}

static void
s_check_arg(const char *arg, json_t **value_p)
{
    json_t *value = dpool_json_parse_arg(arg);
    *value_p = value;
    if (!value)
        return; // not JSON, and not UTF-8 either: no string can hold it
    size_t depth = s_depth(value);
    json_t *again = s_round_trip(value, depth);
    DPOOL_FUZZ_CHECK(!again || json_equal(value, again), "an argument changed on its way round");
    json_decref(again);
}

static void
s_check_pack_args(int count, char *const *args, json_t *const *values)
{
    dpool_buf_t packed = {0};
    int rc = dpool_json_pack_args(count, args, &packed);
    bool all_parsed = true;
    size_t depth = 1;
    for (int i = 0; i < count; i++) {
        all_parsed = all_parsed && values[i];
        size_t one = values[i] ? s_depth(values[i]) + 1 : 0;
        depth = one > depth ? one : depth;
    }
    DPOOL_FUZZ_CHECK(rc == DPOOL_OK || (rc == DPOOL_ERR_INVALID && (!all_parsed || depth > 512)),
                     "pack_args returned %d", rc);
    DPOOL_FUZZ_CHECK(rc != DPOOL_OK || all_parsed, "pack_args took an argument parse_arg refused");
    json_t *array = NULL;
    if (rc == DPOOL_OK && depth <= DPOOL_FUZZ_MSGPACK_DEPTH_MAX) {
        rc = dpool_json_from_msgpack(packed.data, packed.size, &array);
        DPOOL_FUZZ_CHECK(rc == DPOOL_OK && json_is_array(array) &&
                             json_array_size(array) == (size_t)count,
                         "packed arguments do not read back as an array of %d", count);
        for (int i = 0; i < count; i++)
            DPOOL_FUZZ_CHECK(json_equal(json_array_get(array, i), values[i]),
                             "argument %d changed in the array", i);
    }
    json_decref(array);
    free(packed.data);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    char *args[S_ARGS_MAX];
    json_t *values[S_ARGS_MAX] = {0};
    int count = 0;
    for (char *at = text; count < S_ARGS_MAX && at <= text + size; at += strlen(at) + 1)
        args[count++] = at;
    for (int i = 0; i < count; i++)
        s_check_arg(args[i], &values[i]);
    s_check_pack_args(count, args, values);
    for (int i = 0; i < count; i++)
        json_decref(values[i]);
    free(text);
    return 0;
}
