/*  msgpack walking: one pass over the type bytes, counting the values still owed
    (a container adds its element count) instead of recursing, so a deeply nested value
    cannot exhaust the stack. A value owing more elements than bytes remain is refused
    at once: every element takes at least one byte. */
#include "dpool_walk.h"

#include <stdint.h>

static uint64_t
s_be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

// What one type byte b says: bytes to skip after it (*skip), bytes of a length that
// follows (*len_bytes, added to skip), elements it owns (*children, or a count read
// from *count_bytes big-endian bytes times *per). False for the unused byte 0xc1.
typedef struct {
    uint64_t skip;
    size_t len_bytes;
    uint64_t children;
    size_t count_bytes;
    uint64_t per;
} s_shape_t;

static bool
s_shape_fixed(uint8_t b, s_shape_t *shape)
{
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
        return true;
    if ((b & 0xf0) == 0x80)
        return shape->children = 2u * (b & 0x0f), true;
    if ((b & 0xf0) == 0x90)
        return shape->children = b & 0x0f, true;
    if ((b & 0xe0) == 0xa0)
        return shape->skip = b & 0x1f, true;
    return false;
}

static bool
s_shape_of(uint8_t b, s_shape_t *shape)
{
    *shape = (s_shape_t){0};
    if (s_shape_fixed(b, shape))
        return true;
    // 0xc4..0xc6 bin, 0xd9..0xdb str: 1, 2, 4 length bytes
    static const uint8_t len_of[] = {1, 2, 4};
    if (b >= 0xc4 && b <= 0xc6)
        return shape->len_bytes = len_of[b - 0xc4], true;
    if (b >= 0xd9 && b <= 0xdb)
        return shape->len_bytes = len_of[b - 0xd9], true;
    if (b >= 0xc7 && b <= 0xc9) // ext 8/16/32: length, then a type byte
        return shape->len_bytes = len_of[b - 0xc7], shape->skip = 1, true;
    // 0xca float32 .. 0xd8 fixext 16: fixed sizes after the type byte
    static const uint8_t fixed[] = {4, 8, 1, 2, 4, 8, 1, 2, 4, 8, 2, 3, 5, 9, 17};
    if (b >= 0xca && b <= 0xd8)
        return shape->skip = fixed[b - 0xca], true;
    if (b >= 0xdc && b <= 0xdf) { // array 16/32, map 16/32
        shape->count_bytes = (b == 0xdc || b == 0xde) ? 2 : 4;
        shape->per = b >= 0xde ? 2 : 1;
        return true;
    }
    return false;
}

// Reads the length or count fields that follow a type byte; false when they do not fit.
static bool
s_read_sizes(const uint8_t *p, size_t size, size_t *at, s_shape_t *shape)
{
    if (shape->count_bytes) {
        if (size - *at < shape->count_bytes)
            return false;
        shape->children = s_be(p + *at, shape->count_bytes) * shape->per;
        *at += shape->count_bytes;
    }
    if (shape->len_bytes) {
        if (size - *at < shape->len_bytes)
            return false;
        shape->skip += s_be(p + *at, shape->len_bytes);
        *at += shape->len_bytes;
    }
    return true;
}

bool
dpool_walk_skip(const char *data, size_t size, size_t *at)
{
    const uint8_t *p = (const uint8_t *)data;
    size_t here = *at;
    uint64_t owed = 1;
    while (owed > 0) {
        if (here >= size || owed > size - here)
            return false;
        s_shape_t shape;
        if (!s_shape_of(p[here++], &shape) || !s_read_sizes(p, size, &here, &shape))
            return false;
        if (shape.skip > size - here)
            return false;
        here += shape.skip;
        owed = owed - 1 + shape.children;
    }
    *at = here;
    return true;
}

bool
dpool_walk_is_array(const char *data, size_t size)
{
    if (size == 0)
        return false;
    uint8_t b = (uint8_t)data[0];
    return (b & 0xf0) == 0x90 || b == 0xdc || b == 0xdd;
}

bool
dpool_walk_array(const char *data, size_t size, size_t *at, size_t *count)
{
    if (*at >= size || !dpool_walk_is_array(data + *at, size - *at))
        return false;
    const uint8_t *p = (const uint8_t *)data + *at;
    uint8_t b = p[0];
    if ((b & 0xf0) == 0x90) {
        *count = b & 0x0f;
        *at += 1;
        return true;
    }
    size_t n = b == 0xdc ? 2 : 4;
    if (size - *at < 1 + n)
        return false;
    *count = (size_t)s_be(p + 1, n);
    *at += 1 + n;
    return true;
}

size_t
dpool_walk_put_array(size_t count, char *out)
{
    uint8_t *p = (uint8_t *)out;
    if (count < 16) {
        p[0] = (uint8_t)(0x90 | count);
        return 1;
    }
    if (count <= 0xffff) {
        p[0] = 0xdc;
        p[1] = (uint8_t)(count >> 8);
        p[2] = (uint8_t)count;
        return 3;
    }
    p[0] = 0xdd;
    for (int i = 0; i < 4; i++)
        p[1 + i] = (uint8_t)(count >> (24 - 8 * i));
    return 5;
}
