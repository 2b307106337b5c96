/*  Fuzz target: dpool_codec_sizes_fit, checked against msgpack-c itself.

    sizes_fit is the guard every decoder of network bytes runs before msgpack_unpack.
    Whenever it says the bytes fit, msgpack_unpack must read one value (maybe with bytes
    after it) without running out of memory, and allocate in proportion to the input:
    here at most 64 bytes per input byte plus 64 KiB (a msgpack_object is 24 bytes and a
    zone chunk at most doubles what it must hold). run.sh also sets -malloc_limit_mb, so
    one huge allocation fails the run even where this measure would not see it. */
#include "dpool_fuzz.h"

#include "dpool_msgpack_check.h"

#include <sanitizer/allocator_interface.h>

#define S_BYTES_PER_INPUT_BYTE 64
#define S_BYTES_FIXED (64 * 1024)

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bool fits = dpool_codec_sizes_fit(data, size);
    size_t depth = dpool_fuzz_msgpack_depth(data, size);
    // The independent walk agrees on what is complete (0xc1 and the end of data).
    DPOOL_FUZZ_CHECK(!fits || depth != SIZE_MAX, "sizes_fit accepted bytes that end too soon");
    if (!fits)
        return 0;
    size_t before = __sanitizer_get_current_allocated_bytes();
    msgpack_zone zone;
    DPOOL_FUZZ_CHECK(msgpack_zone_init(&zone, 512), "zone init");
    msgpack_object root;
    size_t offset = 0;
    msgpack_unpack_return rc = msgpack_unpack((const char *)data, size, &offset, &zone, &root);
    size_t used = __sanitizer_get_current_allocated_bytes() - before;
    msgpack_zone_destroy(&zone);
    DPOOL_FUZZ_CHECK(rc != MSGPACK_UNPACK_NOMEM_ERROR,
                     "sizes_fit accepted %zu bytes (nesting depth %zu) that msgpack_unpack "
                     "refuses with NOMEM",
                     size, depth);
    DPOOL_FUZZ_CHECK(rc == MSGPACK_UNPACK_SUCCESS || rc == MSGPACK_UNPACK_EXTRA_BYTES,
                     "sizes_fit accepted %zu bytes that msgpack_unpack refuses (%d)", size, rc);
    DPOOL_FUZZ_CHECK(used <= S_BYTES_PER_INPUT_BYTE * size + S_BYTES_FIXED,
                     "unpacking %zu bytes took %zu bytes of memory", size, used);
    return 0;
}
