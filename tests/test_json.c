/*  dpool_json: JSON -> msgpack -> JSON for every type, msgpack-only types to JSON, and
    the CLI rule that an argument is JSON when it parses, else a string. */
#include <criterion/criterion.h>
#include <dpool_json.h>
#include <msgpack.h>
#include <string.h>

TestSuite(json, .timeout = 5);

// Parses text as JSON, converts to msgpack and back, and returns the compact JSON.
static char *
s_round_trip(const char *text)
{
    json_error_t error;
    json_t *value = json_loads(text, JSON_DECODE_ANY, &error);
    cr_assert_not_null(value, "bad test JSON %s", text);
    dpool_buf_t buf = {0};
    cr_assert_eq(dpool_json_to_msgpack(value, &buf), DPOOL_OK);
    json_decref(value);
    json_t *back = NULL;
    cr_assert_eq(dpool_json_from_msgpack(buf.data, buf.size, &back), DPOOL_OK);
    dpool_buf_free(&buf);
    char *dumped = json_dumps(back, JSON_ENCODE_ANY | JSON_COMPACT);
    json_decref(back);
    return dumped;
}

static void
s_expect_round_trip(const char *text)
{
    char *dumped = s_round_trip(text);
    cr_assert_str_eq(dumped, text);
    free(dumped);
}

Test(json, scalars_round_trip)
{
    s_expect_round_trip("null");
    s_expect_round_trip("true");
    s_expect_round_trip("false");
    s_expect_round_trip("0");
    s_expect_round_trip("42");
    s_expect_round_trip("-7");
    s_expect_round_trip("9223372036854775807");
    s_expect_round_trip("-9223372036854775808");
    s_expect_round_trip("2.5");
    s_expect_round_trip("\"hello\"");
    s_expect_round_trip("\"\"");
    s_expect_round_trip("\"开始\"");
}

Test(json, containers_round_trip)
{
    s_expect_round_trip("[]");
    s_expect_round_trip("{}");
    s_expect_round_trip("[1,\"a\",null,[true,{\"k\":2.5}]]");
    s_expect_round_trip("{\"host\":\"a\",\"pid\":42,\"list\":[1,2]}");
}

Test(json, ints_stay_ints_and_floats_stay_floats)
{
    json_t *value = json_integer(3);
    dpool_buf_t buf = {0};
    cr_assert_eq(dpool_json_to_msgpack(value, &buf), DPOOL_OK);
    cr_assert_eq(buf.size, 1);
    cr_assert_eq(buf.data[0], 3, "a positive fixint");
    dpool_buf_free(&buf);
    json_decref(value);
    value = json_real(3.0);
    cr_assert_eq(dpool_json_to_msgpack(value, &buf), DPOOL_OK);
    cr_assert_eq((unsigned char)buf.data[0], 0xcb, "a float 64");
    json_t *back = NULL;
    cr_assert_eq(dpool_json_from_msgpack(buf.data, buf.size, &back), DPOOL_OK);
    cr_assert(json_is_real(back));
    json_decref(back);
    dpool_buf_free(&buf);
    json_decref(value);
}

// Converts msgpack packed by pack() to compact JSON text.
static char *
s_from_packed(void (*pack)(msgpack_packer *))
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init(&sbuf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sbuf, msgpack_sbuffer_write);
    pack(&pk);
    json_t *value = NULL;
    cr_assert_eq(dpool_json_from_msgpack(sbuf.data, sbuf.size, &value), DPOOL_OK);
    msgpack_sbuffer_destroy(&sbuf);
    char *text = json_dumps(value, JSON_ENCODE_ANY | JSON_COMPACT);
    json_decref(value);
    return text;
}

static void
s_pack_bins(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 4);
    msgpack_pack_bin(pk, 2);
    msgpack_pack_bin_body(pk, "ok", 2);
    msgpack_pack_bin(pk, 3);
    msgpack_pack_bin_body(pk, "\xff\x00\x01", 3);
    msgpack_pack_float(pk, 1.5f);
    msgpack_pack_uint64(pk, UINT64_MAX);
}

static void
s_pack_int_keys(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 2);
    msgpack_pack_int(pk, 1);
    msgpack_pack_str(pk, 1);
    msgpack_pack_str_body(pk, "a", 1);
    msgpack_pack_nil(pk);
    msgpack_pack_false(pk);
}

Test(json, msgpack_only_types_have_a_json_form)
{
    char *text = s_from_packed(s_pack_bins);
    cr_assert_str_eq(text, "[\"ok\",\"/wAB\",1.5,1.8446744073709552e19]",
                     "bin as text or base64, float32, uint64 beyond int64: %s", text);
    free(text);
    text = s_from_packed(s_pack_int_keys);
    cr_assert_str_eq(text, "{\"1\":\"a\",\"null\":false}");
    free(text);
}

Test(json, malformed_msgpack_is_a_protocol_error)
{
    json_t *value = NULL;
    const char truncated[] = {(char)0x92, 0x01};
    cr_assert_eq(dpool_json_from_msgpack(truncated, sizeof truncated, &value), DPOOL_ERR_PROTO);
    cr_assert_null(value);
    const char two[] = {0x01, 0x02};
    cr_assert_eq(dpool_json_from_msgpack(two, sizeof two, &value), DPOOL_ERR_PROTO);
    cr_assert_eq(dpool_json_from_msgpack(NULL, 0, &value), DPOOL_ERR_PROTO);
}

static void
s_expect_arg(const char *arg, const char *json)
{
    json_t *value = dpool_json_parse_arg(arg);
    cr_assert_not_null(value);
    char *text = json_dumps(value, JSON_ENCODE_ANY | JSON_COMPACT);
    cr_assert_str_eq(text, json, "argument %s", arg);
    free(text);
    json_decref(value);
}

Test(json, cli_argument_is_json_when_valid_else_string)
{
    s_expect_arg("1", "1");
    s_expect_arg("-2.5", "-2.5");
    s_expect_arg("\"quoted\"", "\"quoted\"");
    s_expect_arg("null", "null");
    s_expect_arg("true", "true");
    s_expect_arg("[1,2]", "[1,2]");
    s_expect_arg("{\"a\":1}", "{\"a\":1}");
    s_expect_arg("hello", "\"hello\"");
    s_expect_arg("1x", "\"1x\"");
    s_expect_arg("", "\"\"");
    s_expect_arg("[1,", "\"[1,\"");
}

Test(json, cli_arguments_pack_as_one_array)
{
    char *argv[] = {"1", "hello", "[2]"};
    dpool_buf_t buf = {0};
    cr_assert_eq(dpool_json_pack_args(3, argv, &buf), DPOOL_OK);
    json_t *back = NULL;
    cr_assert_eq(dpool_json_from_msgpack(buf.data, buf.size, &back), DPOOL_OK);
    char *text = json_dumps(back, JSON_COMPACT);
    cr_assert_str_eq(text, "[1,\"hello\",[2]]");
    free(text);
    json_decref(back);
    dpool_buf_free(&buf);
    cr_assert_eq(dpool_json_pack_args(0, NULL, &buf), DPOOL_OK);
    cr_assert_eq(buf.size, 1);
    cr_assert_eq((unsigned char)buf.data[0], 0x90);
    dpool_buf_free(&buf);
}

Test(json, non_utf8_plain_argument_is_refused)
{
    char bad[] = {(char)0xff, 'x', 0};
    char *argv[] = {bad};
    dpool_buf_t buf = {0};
    cr_assert_eq(dpool_json_pack_args(1, argv, &buf), DPOOL_ERR_INVALID);
    cr_assert_null(buf.data);
}

Test(json, a_map_whose_keys_are_containers_is_refused_not_expanded)
{
    // {{"a": 1}: 2}: JSON has no container keys, and dumping them nests escapes.
    const unsigned char bytes[] = {0x81, 0x81, 0xa1, 'a', 0x01, 0x02};
    json_t *value = NULL;
    cr_assert_eq(dpool_json_from_msgpack(bytes, sizeof bytes, &value), DPOOL_ERR_PROTO);
    cr_assert_null(value);
}
