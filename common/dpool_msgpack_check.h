/*  dpool_msgpack_check: refuses msgpack bytes whose declared sizes exceed what they
    hold, before they reach msgpack-c (see the .c for why). */
#ifndef DPOOL_MSGPACK_CHECK_H
#define DPOOL_MSGPACK_CHECK_H

#include <stdbool.h>
#include <stddef.h>

// True when data holds at least one complete msgpack value whose every array, map,
// string, bin and ext declares no more than the bytes after it. Trailing bytes after
// the first value are not judged here. Reads only data[0..size).
bool dpool_codec_sizes_fit(const void *data, size_t size);

#endif
