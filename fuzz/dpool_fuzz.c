/*  Helpers shared by the fuzz targets: failing loudly (abort, so libFuzzer keeps the
    input), comparing two decodings of one message, and measuring msgpack nesting with a
    walk of its own, independent of the one in dpool_msgpack_check.c that it checks. */
#include "dpool_fuzz.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
dpool_fuzz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
{
    fprintf(stderr, "==dpool-fuzz== CHECK FAILED at %s:%d: %s\n==dpool-fuzz== ", file, line, cond);
    va_list args;
    va_start(args, fmt);
    vfprintf(stderr, fmt, args);
    va_end(args);
    fputc('\n', stderr);
    abort();
}

static bool
s_same_string(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

// OUTPUT and WORKER_OUTPUT carry bytes, which may hold NUL; every other text is a string.
static bool
s_text_is_bytes(dpool_cmd_t command)
{
    return command == DPOOL_CMD_OUTPUT || command == DPOOL_CMD_WORKER_OUTPUT;
}

static void
s_check_same_payload(const dpool_msg_t *a, const dpool_msg_t *b)
{
    DPOOL_FUZZ_CHECK(!a->payload == !b->payload, "payload present in one decoding only");
    if (a->payload)
        DPOOL_FUZZ_CHECK(zframe_eq(a->payload, b->payload), "payloads differ");
}

void
dpool_fuzz_check_same_msg(const dpool_msg_t *a, const dpool_msg_t *b)
{
    DPOOL_FUZZ_CHECK(a->command == b->command, "command %d != %d", a->command, b->command);
    DPOOL_FUZZ_CHECK(a->task_id == b->task_id && a->pool_ref == b->pool_ref && a->code == b->code &&
                         a->count == b->count && a->pid == b->pid && a->flags == b->flags &&
                         a->time_limit_ms == b->time_limit_ms && a->retries == b->retries,
                     "numeric fields differ (command %d)", a->command);
    DPOOL_FUZZ_CHECK(s_same_string(a->name, b->name), "names differ");
    if (s_text_is_bytes(a->command))
        DPOOL_FUZZ_CHECK(a->text_size == b->text_size && a->text && b->text &&
                             memcmp(a->text, b->text, a->text_size) == 0,
                         "output bytes differ");
    else
        DPOOL_FUZZ_CHECK(s_same_string(a->text, b->text), "messages differ");
    DPOOL_FUZZ_CHECK(a->function_count == b->function_count, "function counts differ");
    for (size_t i = 0; i < a->function_count; i++)
        DPOOL_FUZZ_CHECK(s_same_string(a->functions[i], b->functions[i]), "function %zu differs",
                         i);
    s_check_same_payload(a, b);
}

static void
s_check_name(const char *name)
{
    size_t length = strlen(name);
    DPOOL_FUZZ_CHECK(length >= 1 && length <= DPOOL_PROTO_NAME_MAX, "name of %zu bytes", length);
}

void
dpool_fuzz_check_msg_invariants(const dpool_msg_t *msg)
{
    if (msg->name)
        s_check_name(msg->name);
    if (msg->text)
        DPOOL_FUZZ_CHECK(msg->text[msg->text_size] == '\0', "text not terminated at text_size");
    DPOOL_FUZZ_CHECK(msg->function_count <= DPOOL_PROTO_FUNCTIONS_MAX, "%zu functions",
                     msg->function_count);
    DPOOL_FUZZ_CHECK(msg->function_count == 0 || msg->functions, "functions missing");
    for (size_t i = 0; i < msg->function_count; i++) {
        DPOOL_FUZZ_CHECK(msg->functions[i], "function %zu is NULL", i);
        s_check_name(msg->functions[i]);
    }
}

static uint64_t
s_be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

// One item's header: its size in bytes, the bytes of data that follow it (skip), and
// for an array or map the items it holds (children; 0 for an empty one).
typedef struct {
    size_t header;
    uint64_t skip;
    uint64_t children;
    bool container;
} s_item_t;

// Reads the header of the item at p[0..left). Returns false when it runs past the end
// or is the byte 0xc1, which msgpack leaves unused.
static bool
s_item(const uint8_t *p, size_t left, s_item_t *item)
{
    // 0xc0..0xdf: bytes after the type byte of fixed-size items, 0xff for the others.
    static const uint8_t fixed[32] = {0, 0xff, 0,  0,    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 4,
                                      8, 1,    2,  4,    8,    1,    2,    4,    8,    2,    3,
                                      5, 9,    17, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    // Width of the length of str/bin/ext 8/16/32 and array/map 16/32.
    static const uint8_t width[32] = {
        [0x04] = 1, [0x05] = 2, [0x06] = 4, [0x07] = 1, [0x08] = 2, [0x09] = 4, [0x19] = 1,
        [0x1a] = 2, [0x1b] = 4, [0x1c] = 2, [0x1d] = 4, [0x1e] = 2, [0x1f] = 4};
    uint8_t b = p[0];
    *item = (s_item_t){.header = 1};
    if (b <= 0x7f || b >= 0xe0)
        return true;
    if (b <= 0x9f) {
        item->container = true;
        item->children = (b & 0x0f) * (b <= 0x8f ? 2u : 1u);
        return true;
    }
    if (b <= 0xbf) {
        item->skip = b & 0x1f;
        return true;
    }
    if (fixed[b - 0xc0] != 0xff) {
        item->skip = fixed[b - 0xc0];
        return true;
    }
    size_t n = width[b - 0xc0];
    if (n == 0 || left < 1 + n)
        return false;
    uint64_t value = s_be(p + 1, n);
    item->header = 1 + n;
    item->container = b >= 0xdc;
    if (item->container)
        item->children = value * (b >= 0xde ? 2 : 1);
    else
        item->skip = value + (b >= 0xc7 && b <= 0xc9 ? 1 : 0); // ext: its type byte
    return true;
}

size_t
dpool_fuzz_msgpack_depth(const void *data, size_t size)
{
    const uint8_t *p = data;
    uint64_t *left = malloc((size + 1) * sizeof *left); // per open container: items due
    size_t top = 0, deepest = 0, at = 0;
    if (!left)
        abort();
    for (;;) {
        s_item_t item;
        if (at >= size || !s_item(p + at, size - at, &item) ||
            item.skip > size - at - item.header || item.children > size) {
            free(left);
            return SIZE_MAX;
        }
        at += item.header + item.skip;
        if (item.container && top + 1 > deepest)
            deepest = top + 1;
        if (item.children > 0) {
            left[top++] = item.children;
            continue;
        }
        // The item is complete: so is every container whose last item it was.
        while (top > 0 && --left[top - 1] == 0)
            top--;
        if (top == 0)
            break;
    }
    free(left);
    return deepest;
}
