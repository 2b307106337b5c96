/*  Message bodies, table-driven: each command's schema is a short string with one
    letter per field of its msgpack array, so adding a command is one table row and
    the encoder and decoder cannot drift apart.

      t  task id         uint64
      a  after           uint64: the task a chained TASK follows (0 = none)
      p  pool ref        uint32
      c  code            int32 (a dpool/errors.h code)
      n  count           uint32 (cap, credits, processes or stream)
      i  pid             uint32
      s  name            string, required
      S  name            string or nil
      m  text            string or nil
      b  text            bin or string (task output bytes)
      f  functions       array of strings
      F  flags           uint32 (DPOOL_FLAG_*)
      T  time limit      uint32, milliseconds (0 = none)
      R  retries         uint32

    Fields after a '|' are optional on decoding: a peer of an older minor revision
    may leave them out, and they then read as 0. Fields after the last known one are a
    newer peer's and are ignored. Encoders always write every field they know. */
#include "dpool_codec.h"
#include "dpool_msgpack_check.h"

#include <dpool/errors.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int command;
    const char *schema;
    dpool_payload_rule_t payload;
} s_command_schema_t;

static const s_command_schema_t s_schemas[] = {
    {DPOOL_CMD_POOL_OPEN, "pSn|RT", DPOOL_PAYLOAD_NONE},
    {DPOOL_CMD_POOL_OPENED, "pcmn|t", DPOOL_PAYLOAD_NONE},
    {DPOOL_CMD_SUBMIT, "pts|F", DPOOL_PAYLOAD_REQUIRED},
    {DPOOL_CMD_RESULT, "tcm", DPOOL_PAYLOAD_OPTIONAL},
    {DPOOL_CMD_OUTPUT, "tnb|S", DPOOL_PAYLOAD_NONE},
    {DPOOL_CMD_TERMINATE, "p", DPOOL_PAYLOAD_NONE},
    {DPOOL_CMD_POOL_RELEASE, "p", DPOOL_PAYLOAD_NONE},
    {DPOOL_CMD_STATUS, "", DPOOL_PAYLOAD_NONE},
    {DPOOL_CMD_STATUS_REPLY, "", DPOOL_PAYLOAD_REQUIRED},
    {DPOOL_CMD_ERROR, "cm", DPOOL_PAYLOAD_NONE},
    {DPOOL_CMD_WORKER_HELLO, "sinf|F", DPOOL_PAYLOAD_NONE},
    {DPOOL_CMD_CREDIT, "n", DPOOL_PAYLOAD_NONE},
    {DPOOL_CMD_TASK, "ts|FTa", DPOOL_PAYLOAD_REQUIRED},
    {DPOOL_CMD_WORKER_RESULT, "tcmn", DPOOL_PAYLOAD_OPTIONAL},
    {DPOOL_CMD_WORKER_OUTPUT, "tnb", DPOOL_PAYLOAD_NONE},
    {DPOOL_CMD_KILL, "t", DPOOL_PAYLOAD_NONE},
    {DPOOL_CMD_HEARTBEAT, "|t", DPOOL_PAYLOAD_NONE},
    {DPOOL_CMD_BYE, "", DPOOL_PAYLOAD_NONE},
};

static const s_command_schema_t *
s_schema_of(int command)
{
    for (size_t i = 0; i < sizeof s_schemas / sizeof s_schemas[0]; i++)
        if (s_schemas[i].command == command)
            return &s_schemas[i];
    return NULL;
}

bool
dpool_codec_known(int command, dpool_payload_rule_t *rule)
{
    const s_command_schema_t *schema = s_schema_of(command);
    if (schema && rule)
        *rule = schema->payload;
    return schema != NULL;
}

static void
s_pack_string(msgpack_packer *pk, const char *text, size_t size)
{
    if (!text) {
        msgpack_pack_nil(pk);
        return;
    }
    msgpack_pack_str(pk, size);
    msgpack_pack_str_body(pk, text, size);
}

// The number of fields in a schema, and in *required those before the optional ones.
static size_t
s_field_count(const char *schema, size_t *required)
{
    const char *bar = strchr(schema, '|');
    size_t total = strlen(schema) - (bar ? 1 : 0);
    if (required)
        *required = bar ? (size_t)(bar - schema) : total;
    return total;
}

static int
s_pack_field(msgpack_packer *pk, char field, const dpool_msg_t *msg)
{
    switch (field) {
    case 't':
        return msgpack_pack_uint64(pk, msg->task_id), DPOOL_OK;
    case 'a':
        return msgpack_pack_uint64(pk, msg->after_id), DPOOL_OK;
    case 'p':
        return msgpack_pack_uint32(pk, msg->pool_ref), DPOOL_OK;
    case 'c':
        return msgpack_pack_int32(pk, msg->code), DPOOL_OK;
    case 'n':
        return msgpack_pack_uint32(pk, msg->count), DPOOL_OK;
    case 'i':
        return msgpack_pack_uint32(pk, msg->pid), DPOOL_OK;
    case 'F':
        return msgpack_pack_uint32(pk, msg->flags), DPOOL_OK;
    case 'T':
        return msgpack_pack_uint32(pk, msg->time_limit_ms), DPOOL_OK;
    case 'R':
        return msgpack_pack_uint32(pk, msg->retries), DPOOL_OK;
    case 's':
        if (!msg->name || !msg->name[0] || strlen(msg->name) > DPOOL_PROTO_NAME_MAX)
            return DPOOL_ERR_INVALID;
        s_pack_string(pk, msg->name, strlen(msg->name));
        return DPOOL_OK;
    case 'S':
        s_pack_string(pk, msg->name, msg->name ? strlen(msg->name) : 0);
        return DPOOL_OK;
    case 'm':
        s_pack_string(pk, msg->text, msg->text ? strlen(msg->text) : 0);
        return DPOOL_OK;
    case 'b':
        msgpack_pack_bin(pk, msg->text_size);
        msgpack_pack_bin_body(pk, msg->text, msg->text_size);
        return DPOOL_OK;
    case 'f':
        msgpack_pack_array(pk, msg->function_count);
        for (size_t i = 0; i < msg->function_count; i++)
            if (!msg->functions[i])
                return DPOOL_ERR_INVALID;
        for (size_t i = 0; i < msg->function_count; i++)
            s_pack_string(pk, msg->functions[i], strlen(msg->functions[i]));
        return DPOOL_OK;
    default:
        return DPOOL_ERR_INVALID;
    }
}

int
dpool_codec_encode(const dpool_msg_t *msg, msgpack_sbuffer *buffer)
{
    const s_command_schema_t *schema = s_schema_of(msg->command);
    if (!schema)
        return DPOOL_ERR_INVALID;
    msgpack_packer pk;
    msgpack_packer_init(&pk, buffer, msgpack_sbuffer_write);
    size_t fields = s_field_count(schema->schema, NULL);
    msgpack_pack_array(&pk, fields);
    for (const char *field = schema->schema; *field; field++) {
        if (*field == '|')
            continue;
        int rc = s_pack_field(&pk, *field, msg);
        if (rc != DPOOL_OK)
            return rc;
    }
    return DPOOL_OK;
}

// Copies a msgpack str or bin into a fresh NUL-terminated buffer.
static char *
s_copy_bytes(const msgpack_object *obj, size_t *size)
{
    const char *bytes = obj->type == MSGPACK_OBJECT_STR ? obj->via.str.ptr : obj->via.bin.ptr;
    size_t length = obj->type == MSGPACK_OBJECT_STR ? obj->via.str.size : obj->via.bin.size;
    char *copy = malloc(length + 1);
    if (!copy)
        return NULL;
    if (length)
        memcpy(copy, bytes, length);
    copy[length] = '\0';
    if (size)
        *size = length;
    return copy;
}

// A name is printable and NUL-free: it becomes a C string and a hash key.
static bool
s_valid_name(const msgpack_object *obj)
{
    if (obj->type != MSGPACK_OBJECT_STR || obj->via.str.size == 0 ||
        obj->via.str.size > DPOOL_PROTO_NAME_MAX)
        return false;
    return memchr(obj->via.str.ptr, '\0', obj->via.str.size) == NULL;
}

static bool
s_read_uint(const msgpack_object *obj, uint64_t max, uint64_t *out)
{
    if (obj->type != MSGPACK_OBJECT_POSITIVE_INTEGER || obj->via.u64 > max)
        return false;
    *out = obj->via.u64;
    return true;
}

static int
s_decode_functions(const msgpack_object *obj, dpool_msg_t *msg, const char **why)
{
    if (obj->type != MSGPACK_OBJECT_ARRAY || obj->via.array.size > DPOOL_PROTO_FUNCTIONS_MAX) {
        *why = "functions is not an array of at most 1024 names";
        return DPOOL_ERR_PROTO;
    }
    size_t count = obj->via.array.size;
    msg->functions = calloc(count ? count : 1, sizeof(char *));
    if (!msg->functions)
        return DPOOL_ERR_NOMEM;
    for (size_t i = 0; i < count; i++) {
        if (!s_valid_name(&obj->via.array.ptr[i])) {
            *why = "a function name is not a non-empty string of at most 255 bytes";
            return DPOOL_ERR_PROTO;
        }
        msg->functions[i] = s_copy_bytes(&obj->via.array.ptr[i], NULL);
        if (!msg->functions[i])
            return DPOOL_ERR_NOMEM;
        msg->function_count = i + 1;
    }
    return DPOOL_OK;
}

static int
s_decode_text(const msgpack_object *obj, char field, dpool_msg_t *msg, const char **why)
{
    bool nil_ok = field == 'm';
    if (obj->type == MSGPACK_OBJECT_NIL && nil_ok)
        return DPOOL_OK;
    if (obj->type != MSGPACK_OBJECT_STR && (field != 'b' || obj->type != MSGPACK_OBJECT_BIN)) {
        *why = field == 'b' ? "output is not bytes" : "message is not a string or nil";
        return DPOOL_ERR_PROTO;
    }
    msg->text = s_copy_bytes(obj, &msg->text_size);
    return msg->text ? DPOOL_OK : DPOOL_ERR_NOMEM;
}

static int
s_decode_name(const msgpack_object *obj, char field, dpool_msg_t *msg, const char **why)
{
    if (obj->type == MSGPACK_OBJECT_NIL && field == 'S')
        return DPOOL_OK;
    if (!s_valid_name(obj)) {
        *why = "name is not a non-empty string of at most 255 bytes";
        return DPOOL_ERR_PROTO;
    }
    msg->name = s_copy_bytes(obj, NULL);
    return msg->name ? DPOOL_OK : DPOOL_ERR_NOMEM;
}

static uint32_t *
s_uint32_field(dpool_msg_t *msg, char field)
{
    switch (field) {
    case 'p':
        return &msg->pool_ref;
    case 'n':
        return &msg->count;
    case 'i':
        return &msg->pid;
    case 'F':
        return &msg->flags;
    case 'T':
        return &msg->time_limit_ms;
    default:
        return &msg->retries;
    }
}

static int
s_decode_field(const msgpack_object *obj, char field, dpool_msg_t *msg, const char **why)
{
    uint64_t value = 0;
    switch (field) {
    case 't':
        if (!s_read_uint(obj, UINT64_MAX, &msg->task_id))
            return *why = "task id is not an unsigned integer", DPOOL_ERR_PROTO;
        return DPOOL_OK;
    case 'a':
        if (!s_read_uint(obj, UINT64_MAX, &msg->after_id))
            return *why = "after is not an unsigned integer", DPOOL_ERR_PROTO;
        return DPOOL_OK;
    case 'p':
    case 'n':
    case 'i':
    case 'F':
    case 'T':
    case 'R':
        if (!s_read_uint(obj, UINT32_MAX, &value))
            return *why = "field is not an unsigned 32-bit integer", DPOOL_ERR_PROTO;
        *s_uint32_field(msg, field) = (uint32_t)value;
        return DPOOL_OK;
    case 'c':
        if (obj->type == MSGPACK_OBJECT_POSITIVE_INTEGER && obj->via.u64 <= INT32_MAX)
            return msg->code = (int32_t)obj->via.u64, DPOOL_OK;
        if (obj->type == MSGPACK_OBJECT_NEGATIVE_INTEGER && obj->via.i64 >= INT32_MIN)
            return msg->code = (int32_t)obj->via.i64, DPOOL_OK;
        return *why = "code is not a 32-bit integer", DPOOL_ERR_PROTO;
    case 's':
    case 'S':
        return s_decode_name(obj, field, msg, why);
    case 'm':
    case 'b':
        return s_decode_text(obj, field, msg, why);
    case 'f':
        return s_decode_functions(obj, msg, why);
    default:
        return *why = "internal schema error", DPOOL_ERR_PROTO;
    }
}

static int
s_decode_fields(const msgpack_object *root, const char *schema, dpool_msg_t *msg, const char **why)
{
    size_t required;
    size_t fields = s_field_count(schema, &required);
    if (root->type != MSGPACK_OBJECT_ARRAY || root->via.array.size < required) {
        *why = "body is not an array with the command's fields";
        return DPOOL_ERR_PROTO;
    }
    // Fields past the ones this version knows are a newer peer's: they are skipped.
    size_t present = root->via.array.size < fields ? root->via.array.size : fields;
    const char *field = schema;
    for (size_t i = 0; i < present; i++, field++) {
        if (*field == '|')
            field++;
        int rc = s_decode_field(&root->via.array.ptr[i], *field, msg, why);
        if (rc != DPOOL_OK)
            return rc;
    }
    return DPOOL_OK;
}

int
dpool_codec_decode(const void *body, size_t size, dpool_msg_t *msg, const char **why)
{
    const s_command_schema_t *schema = s_schema_of(msg->command);
    if (!schema) {
        *why = "unknown command";
        return DPOOL_ERR_PROTO;
    }
    msgpack_zone zone;
    if (!msgpack_zone_init(&zone, 512))
        return DPOOL_ERR_NOMEM;
    msgpack_object root;
    size_t offset = 0;
    int rc = DPOOL_ERR_PROTO;
    if (!dpool_codec_sizes_fit(body, size)) {
        *why = "body declares more than it holds";
        msgpack_zone_destroy(&zone);
        return DPOOL_ERR_PROTO;
    }
    msgpack_unpack_return unpacked = msgpack_unpack(body, size, &offset, &zone, &root);
    if (unpacked != MSGPACK_UNPACK_SUCCESS)
        *why = "body is not one complete msgpack value";
    else
        rc = s_decode_fields(&root, schema->schema, msg, why);
    msgpack_zone_destroy(&zone);
    if (rc != DPOOL_OK) {
        dpool_cmd_t command = msg->command;
        dpool_msg_reset(msg);
        msg->command = command;
    }
    return rc;
}
