/*  Fuzz target: the client's msgpack -> JSON conversion (dpool_json_from_msgpack), which
    prints results that come from workers the client does not control.

    The input is the msgpack bytes. A value that converts is converted back to msgpack
    (dpool_json_to_msgpack) and to JSON once more: the two JSON values must be equal.
    The only failure dpool_json.h allows for bytes is DPOOL_ERR_PROTO (not one value, or
    nested too deep): memory is not short here, so DPOOL_ERR_NOMEM would be a lie. */
#include "dpool_fuzz.h"

#include "dpool_json.h"

#include <stdlib.h>

static void
s_round_trip(const json_t *value)
{
    char *text = json_dumps(value, JSON_ENCODE_ANY | JSON_COMPACT);
    DPOOL_FUZZ_CHECK(text, "a converted value does not print");
    free(text);
    dpool_buf_t packed = {0};
    int rc = dpool_json_to_msgpack(value, &packed);
    DPOOL_FUZZ_CHECK(rc == DPOOL_OK, "a converted value does not pack again: %d", rc);
    json_t *again = NULL;
    rc = dpool_json_from_msgpack(packed.data, packed.size, &again);
    DPOOL_FUZZ_CHECK(rc == DPOOL_OK, "a repacked value does not convert: %d", rc);
    DPOOL_FUZZ_CHECK(json_equal(value, again), "the value changed on its way round");
    json_decref(again);
    free(packed.data);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *value = NULL;
    int rc = dpool_json_from_msgpack(data, size, &value);
    DPOOL_FUZZ_CHECK(rc == DPOOL_OK || rc == DPOOL_ERR_PROTO,
                     "conversion returned %d for %zu bytes (nesting depth %zu)", rc, size,
                     dpool_fuzz_msgpack_depth(data, size));
    DPOOL_FUZZ_CHECK((rc == DPOOL_OK) == (value != NULL), "value and code disagree");
    if (value)
        s_round_trip(value);
    json_decref(value);
    return 0;
}
