/*  dpool_pack: every format letter, the empty array and bad input, each checked by
    unpacking the bytes again with msgpack. */
#include <criterion/criterion.h>
#include <dpool/dpool.h>
#include <msgpack.h>
#include <string.h>

static msgpack_unpacked unpacked;

static void
setup(void)
{
    msgpack_unpacked_init(&unpacked);
}

static void
teardown(void)
{
    msgpack_unpacked_destroy(&unpacked);
}

TestSuite(args, .init = setup, .fini = teardown, .timeout = 5);

// Unpacks buf, checks it is exactly one array of count elements, returns them.
static msgpack_object *
s_unpack_array(const dpool_buf_t *buf, uint32_t count)
{
    size_t offset = 0;
    cr_assert_eq(msgpack_unpack_next(&unpacked, buf->data, buf->size, &offset),
                 MSGPACK_UNPACK_SUCCESS);
    cr_assert_eq(offset, buf->size, "one value, no trailing bytes");
    cr_assert_eq(unpacked.data.type, MSGPACK_OBJECT_ARRAY);
    cr_assert_eq(unpacked.data.via.array.size, count);
    return unpacked.data.via.array.ptr;
}

Test(args, packs_every_scalar_letter)
{
    dpool_buf_t buf = {0};
    cr_assert_eq(dpool_pack(&buf, "iIuUdsbbn", -5, (int64_t)INT64_MIN, 7u, (uint64_t)UINT64_MAX,
                            2.5, "hello", 1, 0),
                 DPOOL_OK);
    msgpack_object *items = s_unpack_array(&buf, 9);
    cr_assert_eq(items[0].type, MSGPACK_OBJECT_NEGATIVE_INTEGER);
    cr_assert_eq(items[0].via.i64, -5);
    cr_assert_eq(items[1].via.i64, INT64_MIN);
    cr_assert_eq(items[2].type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    cr_assert_eq(items[2].via.u64, 7);
    cr_assert_eq(items[3].via.u64, UINT64_MAX);
    cr_assert_eq(items[4].type, MSGPACK_OBJECT_FLOAT64);
    cr_assert_float_eq(items[4].via.f64, 2.5, 1e-12);
    cr_assert_eq(items[5].type, MSGPACK_OBJECT_STR);
    cr_assert_eq(items[5].via.str.size, 5);
    cr_assert_arr_eq(items[5].via.str.ptr, "hello", 5);
    cr_assert_eq(items[6].type, MSGPACK_OBJECT_BOOLEAN);
    cr_assert(items[6].via.boolean);
    cr_assert_eq(items[7].type, MSGPACK_OBJECT_BOOLEAN);
    cr_assert_not(items[7].via.boolean);
    cr_assert_eq(items[8].type, MSGPACK_OBJECT_NIL);
    dpool_buf_free(&buf);
    cr_assert_null(buf.data);
    cr_assert_eq(buf.size, 0);
}

Test(args, packs_the_brief_example)
{
    dpool_buf_t buf = {0};
    cr_assert_eq(dpool_pack(&buf, "isd", 1, "x", 2.5), DPOOL_OK);
    msgpack_object *items = s_unpack_array(&buf, 3);
    cr_assert_eq(items[0].type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    cr_assert_eq(items[0].via.u64, 1);
    cr_assert_arr_eq(items[1].via.str.ptr, "x", 1);
    cr_assert_float_eq(items[2].via.f64, 2.5, 1e-12);
    dpool_buf_free(&buf);
}

Test(args, null_string_packs_nil)
{
    dpool_buf_t buf = {0};
    cr_assert_eq(dpool_pack(&buf, "s", (const char *)NULL), DPOOL_OK);
    cr_assert_eq(s_unpack_array(&buf, 1)[0].type, MSGPACK_OBJECT_NIL);
    dpool_buf_free(&buf);
}

Test(args, packs_bytes_as_bin)
{
    dpool_buf_t buf = {0};
    const char bytes[3] = {0, 1, 2};
    cr_assert_eq(dpool_pack(&buf, "y", bytes, sizeof bytes), DPOOL_OK);
    msgpack_object *items = s_unpack_array(&buf, 1);
    cr_assert_eq(items[0].type, MSGPACK_OBJECT_BIN);
    cr_assert_eq(items[0].via.bin.size, 3);
    cr_assert_arr_eq(items[0].via.bin.ptr, bytes, 3);
    dpool_buf_free(&buf);
}

Test(args, raw_msgpack_is_inserted_verbatim)
{
    dpool_buf_t inner = {0}, buf = {0};
    cr_assert_eq(dpool_pack(&inner, "ii", 1, 2), DPOOL_OK);
    cr_assert_eq(dpool_pack(&buf, "mi", &inner, 3), DPOOL_OK);
    msgpack_object *items = s_unpack_array(&buf, 2);
    cr_assert_eq(items[0].type, MSGPACK_OBJECT_ARRAY);
    cr_assert_eq(items[0].via.array.size, 2);
    cr_assert_eq(items[0].via.array.ptr[1].via.u64, 2);
    cr_assert_eq(items[1].via.u64, 3);
    dpool_buf_free(&inner);
    dpool_buf_free(&buf);
}

Test(args, raw_msgpack_must_be_exactly_one_value)
{
    dpool_buf_t buf = {0};
    char two[2] = {0x01, 0x02}; // two fixints
    dpool_buf_t raw = {two, sizeof two};
    cr_assert_eq(dpool_pack(&buf, "m", &raw), DPOOL_ERR_INVALID);
    cr_assert_null(buf.data);
    char truncated[1] = {(char)0x92}; // an array of two with no elements
    raw = (dpool_buf_t){truncated, 1};
    cr_assert_eq(dpool_pack(&buf, "m", &raw), DPOOL_ERR_INVALID);
    cr_assert_eq(dpool_pack(&buf, "m", (dpool_buf_t *)NULL), DPOOL_ERR_INVALID);
}

Test(args, empty_format_packs_an_empty_array)
{
    dpool_buf_t buf = {0};
    cr_assert_eq(dpool_pack(&buf, ""), DPOOL_OK);
    cr_assert_eq(buf.size, 1);
    cr_assert_eq((unsigned char)buf.data[0], 0x90);
    s_unpack_array(&buf, 0);
    dpool_buf_free(&buf);
}

Test(args, unknown_letter_is_invalid_and_leaves_buf_empty)
{
    dpool_buf_t buf = {0};
    cr_assert_eq(dpool_pack(&buf, "iZ", 1, 2), DPOOL_ERR_INVALID);
    cr_assert_null(buf.data);
    cr_assert_eq(buf.size, 0);
    cr_assert_eq(dpool_pack(&buf, NULL), DPOOL_ERR_INVALID);
    cr_assert_eq(dpool_pack(NULL, "i", 1), DPOOL_ERR_INVALID);
}

Test(args, large_arrays_use_the_long_header)
{
    dpool_buf_t buf = {0};
    char fmt[21];
    memset(fmt, 'n', 20);
    fmt[20] = '\0';
    cr_assert_eq(dpool_pack(&buf, fmt), DPOOL_OK);
    cr_assert_eq((unsigned char)buf.data[0], 0xdc, "array 16 beyond 15 elements");
    s_unpack_array(&buf, 20);
    dpool_buf_free(&buf);
}

Test(args, buf_free_is_null_safe)
{
    dpool_buf_free(NULL);
    dpool_buf_t empty = {0};
    dpool_buf_free(&empty);
    cr_assert_null(empty.data);
}
