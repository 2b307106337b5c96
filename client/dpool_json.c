/*  JSON <-> msgpack conversion for the CLI (the mapping is in dpool_json.h). Both
    directions recurse over the value; msgpack's unpacker already bounds nesting, and
    the explicit depth limit keeps a hand-made value from exhausting the stack. */
#include "dpool_json.h"
#include "dpool_msgpack_check.h"

#include <math.h>
#include <stdint.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#define S_DEPTH_MAX 512

static int
s_ok(int packed)
{
    return packed == 0 ? DPOOL_OK : DPOOL_ERR_NOMEM;
}

static int s_pack(msgpack_packer *pk, const json_t *value, int depth);

static int
s_pack_object(msgpack_packer *pk, const json_t *value, int depth)
{
    int rc = s_ok(msgpack_pack_map(pk, json_object_size(value)));
    const char *key;
    json_t *member;
    // json_object_foreach takes a non-const object; iteration does not modify it
    json_object_foreach((json_t *)value, key, member)
    {
        size_t size = strlen(key);
        if (rc == DPOOL_OK)
            rc = s_ok(msgpack_pack_str(pk, size) || msgpack_pack_str_body(pk, key, size));
        if (rc == DPOOL_OK)
            rc = s_pack(pk, member, depth + 1);
    }
    return rc;
}

static int
s_pack(msgpack_packer *pk, const json_t *value, int depth)
{
    if (depth > S_DEPTH_MAX)
        return DPOOL_ERR_INVALID;
    switch (json_typeof(value)) {
    case JSON_NULL:
        return s_ok(msgpack_pack_nil(pk));
    case JSON_TRUE:
        return s_ok(msgpack_pack_true(pk));
    case JSON_FALSE:
        return s_ok(msgpack_pack_false(pk));
    case JSON_INTEGER:
        return s_ok(msgpack_pack_int64(pk, json_integer_value(value)));
    case JSON_REAL:
        return s_ok(msgpack_pack_double(pk, json_real_value(value)));
    case JSON_STRING: {
        size_t size = json_string_length(value);
        return s_ok(msgpack_pack_str(pk, size) ||
                    msgpack_pack_str_body(pk, json_string_value(value), size));
    }
    case JSON_ARRAY: {
        int rc = s_ok(msgpack_pack_array(pk, json_array_size(value)));
        for (size_t i = 0; i < json_array_size(value) && rc == DPOOL_OK; i++)
            rc = s_pack(pk, json_array_get(value, i), depth + 1);
        return rc;
    }
    case JSON_OBJECT:
        return s_pack_object(pk, value, depth);
    default:
        return DPOOL_ERR_INVALID;
    }
}

int
dpool_json_to_msgpack(const json_t *value, dpool_buf_t *out)
{
    if (!out)
        return DPOOL_ERR_INVALID;
    out->data = NULL;
    out->size = 0;
    if (!value)
        return DPOOL_ERR_INVALID;
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init(&sbuf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sbuf, msgpack_sbuffer_write);
    int rc = s_pack(&pk, value, 0);
    if (rc != DPOOL_OK) {
        msgpack_sbuffer_destroy(&sbuf);
        return rc;
    }
    out->size = sbuf.size;
    out->data = msgpack_sbuffer_release(&sbuf);
    return DPOOL_OK;
}

static json_t *
s_base64(const char *data, size_t size)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t length = (size + 2) / 3 * 4;
    char *text = malloc(length + 1);
    if (!text)
        return NULL;
    const unsigned char *bytes = (const unsigned char *)data;
    size_t at = 0;
    for (size_t i = 0; i < size; i += 3) {
        uint32_t chunk = (uint32_t)bytes[i] << 16;
        if (i + 1 < size)
            chunk |= (uint32_t)bytes[i + 1] << 8;
        if (i + 2 < size)
            chunk |= bytes[i + 2];
        text[at++] = alphabet[(chunk >> 18) & 63];
        text[at++] = alphabet[(chunk >> 12) & 63];
        text[at++] = i + 1 < size ? alphabet[(chunk >> 6) & 63] : '=';
        text[at++] = i + 2 < size ? alphabet[chunk & 63] : '=';
    }
    json_t *value = json_stringn(text, at);
    free(text);
    return value;
}

// Text as a JSON string when it is valid UTF-8 (json_stringn checks), else base64.
static json_t *
s_text(const char *data, size_t size)
{
    json_t *value = json_stringn(data ? data : "", size);
    return value ? value : s_base64(data, size);
}

static json_t *s_convert(const msgpack_object *obj, int depth);

static char *
s_key_text(const msgpack_object *key, int depth, size_t *size)
{
    // msgpack-c gives an empty string a NULL ptr, which memchr and strndup must not see.
    if (key->type == MSGPACK_OBJECT_STR &&
        (key->via.str.size == 0 || memchr(key->via.str.ptr, '\0', key->via.str.size) == NULL)) {
        char *text = key->via.str.size ? strndup(key->via.str.ptr, key->via.str.size) : strdup("");
        *size = key->via.str.size;
        return text;
    }
    // Only scalars become key text. A container key would be dumped as escaped JSON inside
    // a key, whose own keys are dumped again: the text grows exponentially with depth
    // (the fuzzer made 200 bytes ask for 256 MiB), and JSON has no use for such keys.
    if (key->type == MSGPACK_OBJECT_ARRAY || key->type == MSGPACK_OBJECT_MAP)
        return NULL;
    json_t *converted = s_convert(key, depth + 1);
    char *text = converted ? json_dumps(converted, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
    json_decref(converted);
    *size = text ? strlen(text) : 0;
    return text;
}

static json_t *
s_convert_map(const msgpack_object *obj, int depth)
{
    json_t *object = json_object();
    for (uint32_t i = 0; object && i < obj->via.map.size; i++) {
        const msgpack_object_kv *pair = &obj->via.map.ptr[i];
        size_t key_size = 0;
        char *key = s_key_text(&pair->key, depth, &key_size);
        json_t *member = key ? s_convert(&pair->val, depth + 1) : NULL;
        // json_object_set_new checks UTF-8; a key that fails makes the whole map fail
        if (!member || json_object_set_new(object, key, member) != 0) {
            json_decref(object);
            object = NULL;
        }
        free(key);
    }
    return object;
}

static json_t *
s_convert(const msgpack_object *obj, int depth)
{
    if (depth > S_DEPTH_MAX)
        return NULL;
    switch (obj->type) {
    case MSGPACK_OBJECT_NIL:
        return json_null();
    case MSGPACK_OBJECT_BOOLEAN:
        return json_boolean(obj->via.boolean);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        if (obj->via.u64 > (uint64_t)INT64_MAX)
            return json_real((double)obj->via.u64);
        return json_integer((json_int_t)obj->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return json_integer((json_int_t)obj->via.i64);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return isfinite(obj->via.f64) ? json_real(obj->via.f64) : json_null();
    case MSGPACK_OBJECT_STR:
        return s_text(obj->via.str.ptr, obj->via.str.size);
    case MSGPACK_OBJECT_BIN:
        return s_text(obj->via.bin.ptr, obj->via.bin.size);
    case MSGPACK_OBJECT_EXT:
        return s_base64(obj->via.ext.ptr, obj->via.ext.size);
    case MSGPACK_OBJECT_ARRAY: {
        json_t *array = json_array();
        for (uint32_t i = 0; array && i < obj->via.array.size; i++)
            if (json_array_append_new(array, s_convert(&obj->via.array.ptr[i], depth + 1)) != 0) {
                json_decref(array);
                array = NULL;
            }
        return array;
    }
    case MSGPACK_OBJECT_MAP:
        return s_convert_map(obj, depth);
    default:
        return NULL;
    }
}

int
dpool_json_from_msgpack(const void *data, size_t size, json_t **value_p)
{
    if (!value_p)
        return DPOOL_ERR_INVALID;
    *value_p = NULL;
    if (!data || size == 0)
        return DPOOL_ERR_PROTO;
    msgpack_zone zone;
    if (!msgpack_zone_init(&zone, 1024))
        return DPOOL_ERR_NOMEM;
    msgpack_object root;
    size_t offset = 0;
    int rc = DPOOL_ERR_PROTO;
    // Results come from workers the client does not control: sizes are checked first.
    msgpack_unpack_return unpacked = dpool_codec_sizes_fit(data, size)
                                         ? msgpack_unpack(data, size, &offset, &zone, &root)
                                         : MSGPACK_UNPACK_PARSE_ERROR;
    if (unpacked == MSGPACK_UNPACK_NOMEM_ERROR)
        rc = DPOOL_ERR_NOMEM;
    else if (unpacked == MSGPACK_UNPACK_SUCCESS && offset == size) {
        *value_p = s_convert(&root, 0);
        rc = *value_p ? DPOOL_OK : DPOOL_ERR_PROTO;
    }
    msgpack_zone_destroy(&zone);
    return rc;
}

json_t *
dpool_json_parse_arg(const char *text)
{
    if (!text)
        return NULL;
    json_error_t error;
    json_t *value = json_loads(text, JSON_DECODE_ANY, &error);
    return value ? value : json_string(text);
}

int
dpool_json_pack_args(int count, char *const *args, dpool_buf_t *out)
{
    json_t *array = json_array();
    int rc = array ? DPOOL_OK : DPOOL_ERR_NOMEM;
    for (int i = 0; i < count && rc == DPOOL_OK; i++) {
        json_t *value = dpool_json_parse_arg(args[i]);
        // a plain-string argument that is not UTF-8 cannot be a JSON string either
        if (!value || json_array_append_new(array, value) != 0)
            rc = value ? DPOOL_ERR_NOMEM : DPOOL_ERR_INVALID;
    }
    if (rc == DPOOL_OK)
        rc = dpool_json_to_msgpack(array, out);
    json_decref(array);
    return rc;
}
