/*  A pre-check of msgpack bytes from the network, before msgpack-c sees them.

    msgpack_unpack reserves room for a container's declared item count before it reads
    the items, so five hostile bytes (an array "of 4 billion items") make it try to
    allocate over 100 GiB. This walk allocates nothing: it follows the declared sizes
    and refuses any that the bytes left cannot hold (every item takes at least one byte),
    so what passes can only ask for memory in proportion to its own size. */
#include "dpool_msgpack_check.h"

#include <stdint.h>

// msgpack-c's unpacker keeps open containers on a fixed stack of this many
// (MSGPACK_EMBED_STACK_SIZE) and fails with NOMEM past it: deeper bytes are refused here.
#define S_DEPTH_MAX 32

static uint64_t
s_be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

bool
dpool_codec_sizes_fit(const void *data, size_t size)
{
    const uint8_t *p = data;
    size_t at = 0;
    uint64_t pending = 1;
    uint64_t open[S_DEPTH_MAX]; // items still due in each open, non-empty container
    size_t depth = 0;
    while (pending > 0) {
        if (at >= size || pending > size - at)
            return false;
        uint8_t b = p[at++];
        pending--;
        uint64_t skip = 0, children = 0;
        size_t len_bytes = 0;
        if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
            skip = 0;
        else if ((b & 0xf0) == 0x80)
            children = 2u * (b & 0x0f);
        else if ((b & 0xf0) == 0x90)
            children = b & 0x0f;
        else if ((b & 0xe0) == 0xa0)
            skip = b & 0x1f;
        else {
            switch (b) {
            case 0xc4:
            case 0xd9:
                len_bytes = 1;
                break;
            case 0xc5:
            case 0xda:
                len_bytes = 2;
                break;
            case 0xc6:
            case 0xdb:
                len_bytes = 4;
                break;
            case 0xc7:
                len_bytes = 1;
                skip = 1;
                break;
            case 0xc8:
                len_bytes = 2;
                skip = 1;
                break;
            case 0xc9:
                len_bytes = 4;
                skip = 1;
                break;
            case 0xca:
                skip = 4;
                break;
            case 0xcb:
                skip = 8;
                break;
            case 0xcc:
            case 0xd0:
                skip = 1;
                break;
            case 0xcd:
            case 0xd1:
                skip = 2;
                break;
            case 0xce:
            case 0xd2:
                skip = 4;
                break;
            case 0xcf:
            case 0xd3:
                skip = 8;
                break;
            case 0xd4:
                skip = 2;
                break;
            case 0xd5:
                skip = 3;
                break;
            case 0xd6:
                skip = 5;
                break;
            case 0xd7:
                skip = 9;
                break;
            case 0xd8:
                skip = 17;
                break;
            case 0xdc:
            case 0xdd:
            case 0xde:
            case 0xdf: {
                size_t n = (b == 0xdc || b == 0xde) ? 2 : 4;
                if (size - at < n)
                    return false;
                children = s_be(p + at, n) * (b >= 0xde ? 2 : 1);
                at += n;
                break;
            }
            default:
                return false;
            }
        }
        if (len_bytes) {
            if (size - at < len_bytes)
                return false;
            skip += s_be(p + at, len_bytes);
            at += len_bytes;
        }
        if (skip > size - at)
            return false;
        at += skip;
        pending += children;
        if (((b & 0xe0) == 0x80 || (b >= 0xdc && b <= 0xdf)) && depth == S_DEPTH_MAX)
            return false;
        if (children > 0)
            open[depth++] = children;
        else
            while (depth > 0 && --open[depth - 1] == 0) // the item ends its containers
                depth--;
    }
    return true;
}
