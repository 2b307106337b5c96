/*  dpool_pack: builds task arguments (a msgpack array) from a format string, so a C
    caller can write dpool_pack(&args, "isd", 1, "x", 2.5) instead of driving a
    msgpack packer. The letters are listed in dpool/dpool.h. */
#include "dpool_walk.h"

#include <dpool/dpool.h>

#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

void
dpool_buf_free(dpool_buf_t *buf)
{
    if (!buf)
        return;
    free(buf->data);
    buf->data = NULL;
    buf->size = 0;
}

// A raw value must be exactly one complete msgpack value: anything else would shift
// every later argument and the worker would see garbage.
static bool
s_is_one_value(const dpool_buf_t *raw)
{
    if (!raw || !raw->data || raw->size == 0)
        return false;
    msgpack_zone zone;
    if (!msgpack_zone_init(&zone, 256))
        return false;
    msgpack_object obj;
    size_t offset = 0;
    msgpack_unpack_return rc = msgpack_unpack(raw->data, raw->size, &offset, &zone, &obj);
    msgpack_zone_destroy(&zone);
    return rc == MSGPACK_UNPACK_SUCCESS && offset == raw->size;
}

// msgpack's packers return 0 or -1, and -1 only when the buffer cannot grow.
static int
s_ok(int packed)
{
    return packed == 0 ? DPOOL_OK : DPOOL_ERR_NOMEM;
}

static int
s_pack_bytes(msgpack_packer *pk, char letter, va_list *ap)
{
    if (letter == 's') {
        const char *text = va_arg(*ap, const char *);
        if (!text)
            return s_ok(msgpack_pack_nil(pk));
        size_t size = strlen(text);
        return s_ok(msgpack_pack_str(pk, size) || msgpack_pack_str_body(pk, text, size));
    }
    if (letter == 'y') {
        const void *bytes = va_arg(*ap, const void *);
        size_t size = va_arg(*ap, size_t);
        if (!bytes && size)
            return DPOOL_ERR_INVALID;
        return s_ok(msgpack_pack_bin(pk, size) || msgpack_pack_bin_body(pk, bytes, size));
    }
    const dpool_buf_t *raw = va_arg(*ap, const dpool_buf_t *);
    if (!s_is_one_value(raw))
        return DPOOL_ERR_INVALID;
    return s_ok(msgpack_sbuffer_write(pk->data, raw->data, raw->size));
}

static int
s_pack_one(msgpack_packer *pk, char letter, va_list *ap)
{
    switch (letter) {
    case 'i':
        return s_ok(msgpack_pack_int64(pk, va_arg(*ap, int)));
    case 'I':
        return s_ok(msgpack_pack_int64(pk, va_arg(*ap, int64_t)));
    case 'u':
        return s_ok(msgpack_pack_uint64(pk, va_arg(*ap, unsigned)));
    case 'U':
        return s_ok(msgpack_pack_uint64(pk, va_arg(*ap, uint64_t)));
    case 'd':
        return s_ok(msgpack_pack_double(pk, va_arg(*ap, double)));
    case 'b':
        return s_ok(va_arg(*ap, int) ? msgpack_pack_true(pk) : msgpack_pack_false(pk));
    case 'n':
        return s_ok(msgpack_pack_nil(pk));
    case 's':
    case 'y':
    case 'm':
        return s_pack_bytes(pk, letter, ap);
    default:
        return DPOOL_ERR_INVALID;
    }
}

int
dpool_vpack(dpool_buf_t *buf, const char *fmt, va_list ap)
{
    if (!buf || !fmt)
        return DPOOL_ERR_INVALID;
    buf->data = NULL;
    buf->size = 0;
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init(&sbuf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sbuf, msgpack_sbuffer_write);
    int rc = s_ok(msgpack_pack_array(&pk, strlen(fmt)));
    va_list args;
    va_copy(args, ap);
    for (const char *letter = fmt; *letter && rc == DPOOL_OK; letter++)
        rc = s_pack_one(&pk, *letter, &args);
    va_end(args);
    if (rc != DPOOL_OK) {
        msgpack_sbuffer_destroy(&sbuf);
        return rc;
    }
    buf->size = sbuf.size;
    buf->data = msgpack_sbuffer_release(&sbuf);
    return DPOOL_OK;
}

int
dpool_pack(dpool_buf_t *buf, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = dpool_vpack(buf, fmt, ap);
    va_end(ap);
    return rc;
}

int
dpool_array_open(const dpool_buf_t *array, size_t *count, size_t *offset)
{
    if (!array || !array->data || !count || !offset)
        return DPOOL_ERR_INVALID;
    size_t at = 0;
    if (!dpool_walk_array(array->data, array->size, &at, count))
        return DPOOL_ERR_INVALID;
    *offset = at;
    return DPOOL_OK;
}

int
dpool_array_next(const dpool_buf_t *array, size_t *offset, const char **data, size_t *size)
{
    if (!array || !array->data || !offset || !data || !size)
        return DPOOL_ERR_INVALID;
    size_t at = *offset;
    if (!dpool_walk_skip(array->data, array->size, &at))
        return DPOOL_ERR_INVALID;
    *data = array->data + *offset;
    *size = at - *offset;
    *offset = at;
    return DPOOL_OK;
}
