/*  dpool_walk: finds where msgpack values begin and end without unpacking them, so
    map items and chunk results are sliced out of one buffer with no allocation per
    item. Every walk reads only data[0..size) and refuses bytes that end too early. */
#ifndef DPOOL_WALK_H
#define DPOOL_WALK_H

#include <stdbool.h>
#include <stddef.h>

// The largest array header dpool_walk_put_array writes.
#define DPOOL_WALK_ARRAY_HEADER_MAX 5

// Advances *at past the one msgpack value that starts at data[*at]. Returns false (and
// leaves *at as it was) when the bytes end before the value does or hold a byte no
// value starts with.
bool dpool_walk_skip(const char *data, size_t size, size_t *at);

// Reads the array header at data[*at]: sets *count and advances *at to the first
// element. Returns false (nothing changed) when no array header starts there.
bool dpool_walk_array(const char *data, size_t size, size_t *at, size_t *count);

// True when the byte at data[0] starts a msgpack array (size must be at least 1).
bool dpool_walk_is_array(const char *data, size_t size);

// Writes the shortest array header for count into out (room for
// DPOOL_WALK_ARRAY_HEADER_MAX bytes). Returns how many bytes it wrote.
size_t dpool_walk_put_array(size_t count, char *out);

#endif
