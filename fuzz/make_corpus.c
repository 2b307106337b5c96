/*  Writes the seed corpus of every fuzz target into DIR/<target>/ (run.sh --make-corpus
    runs it on fuzz/corpus): valid messages of every command built by dpool's own encoder,
    the variants the protocol allows (optional fields left out, routing ids), and a few
    hostile ones (huge declared sizes, deep nesting). libFuzzer mutates from these. */
#include "dpool_batch.h"
#include "dpool_fuzz.h"

#include "dpool_codec.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

// A string literal as bytes and a size, without its terminating NUL.
#define S_BYTES(literal) literal, sizeof literal - 1

typedef struct {
    const char *dir;
    int files;
} s_out_t;

static void
s_write(s_out_t *out, const char *target, const char *name, const void *data, size_t size)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", out->dir, target);
    if ((mkdir(out->dir, 0755) != 0 && errno != EEXIST) ||
        (mkdir(path, 0755) != 0 && errno != EEXIST))
        goto fail;
    snprintf(path, sizeof path, "%s/%s/%s", out->dir, target, name);
    FILE *file = fopen(path, "wb");
    if (!file)
        goto fail;
    if (size && fwrite(data, 1, size, file) != size) {
        fclose(file);
        goto fail;
    }
    if (fclose(file) != 0)
        goto fail;
    out->files++;
    return;
fail:
    fprintf(stderr, "make_corpus: cannot write %s: %s\n", path, strerror(errno));
    exit(1);
}

// A packer writing into a fresh buffer; the caller destroys the buffer.
static msgpack_packer
s_packer(msgpack_sbuffer *buffer)
{
    msgpack_sbuffer_init(buffer);
    msgpack_packer pk;
    msgpack_packer_init(&pk, buffer, msgpack_sbuffer_write);
    return pk;
}

static void
s_pack_str(msgpack_packer *pk, const char *text)
{
    msgpack_pack_str(pk, strlen(text));
    msgpack_pack_str_body(pk, text, strlen(text));
}

static zframe_t *
s_frame(const msgpack_sbuffer *buffer)
{
    return zframe_new(buffer->data, buffer->size);
}

/* ---- msgpack values: sizes_fit, json_from_msgpack, and the payloads of messages ---- */

typedef void(s_value_fn)(msgpack_packer *pk);

static void
s_scalars(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 16);
    msgpack_pack_nil(pk);
    msgpack_pack_true(pk);
    msgpack_pack_false(pk);
    msgpack_pack_uint8(pk, 5);
    msgpack_pack_int8(pk, -3);
    msgpack_pack_uint16(pk, 65535);
    msgpack_pack_uint32(pk, 4000000000u);
    msgpack_pack_uint64(pk, UINT64_MAX);
    msgpack_pack_int16(pk, -30000);
    msgpack_pack_int32(pk, INT32_MIN);
    msgpack_pack_int64(pk, INT64_MIN);
    msgpack_pack_float(pk, 1.5f);
    msgpack_pack_double(pk, 0.1);
    msgpack_pack_double(pk, 1.0 / 0.0);
    msgpack_pack_double(pk, 0.0 / 0.0);
    msgpack_pack_double(pk, -0.0);
}

static void
s_strings(msgpack_packer *pk)
{
    static const char non_utf8[] = {'\xff', '\xfe', 'a', '\0', 'b'};
    char long_text[300];
    memset(long_text, 'x', sizeof long_text);
    msgpack_pack_array(pk, 7);
    s_pack_str(pk, "h\xc3\xa9llo \xf0\x9f\x98\x80");
    msgpack_pack_str(pk, sizeof long_text);
    msgpack_pack_str_body(pk, long_text, sizeof long_text);
    msgpack_pack_str(pk, sizeof non_utf8);
    msgpack_pack_str_body(pk, non_utf8, sizeof non_utf8);
    msgpack_pack_bin(pk, sizeof non_utf8);
    msgpack_pack_bin_body(pk, non_utf8, sizeof non_utf8);
    msgpack_pack_bin(pk, 3);
    msgpack_pack_bin_body(pk, "abc", 3);
    msgpack_pack_ext(pk, 1, 1);
    msgpack_pack_ext_body(pk, "z", 1);
    msgpack_pack_ext(pk, 7, -5);
    msgpack_pack_ext_body(pk, "1234567", 7);
}

static void
s_maps(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 5);
    s_pack_str(pk, "name");
    s_pack_str(pk, "value");
    msgpack_pack_int32(pk, 1);
    s_pack_str(pk, "an integer key");
    msgpack_pack_array(pk, 2);
    msgpack_pack_nil(pk);
    msgpack_pack_true(pk);
    s_pack_str(pk, "an array key");
    msgpack_pack_str(pk, 3);
    msgpack_pack_str_body(pk, "a\0b", 3);
    s_pack_str(pk, "a key with a NUL");
    s_pack_str(pk, "nested");
    msgpack_pack_map(pk, 1);
    s_pack_str(pk, "list");
    msgpack_pack_array(pk, 0);
}

// {"": 1}: msgpack-c unpacks an empty string with a NULL pointer.
static void
s_empty_key(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 1);
    msgpack_pack_str(pk, 0);
    msgpack_pack_int32(pk, 1);
}

static void
s_status_map(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 4);
    s_pack_str(pk, "version");
    s_pack_str(pk, "0.1.0");
    s_pack_str(pk, "uptime_s");
    msgpack_pack_double(pk, 12.5);
    s_pack_str(pk, "malformed");
    msgpack_pack_uint64(pk, 3);
    s_pack_str(pk, "functions");
    msgpack_pack_array(pk, 2);
    s_pack_str(pk, "echo");
    s_pack_str(pk, "add");
}

static void
s_nested(msgpack_packer *pk, int depth)
{
    for (int i = 0; i < depth; i++)
        msgpack_pack_array(pk, 1);
    msgpack_pack_int32(pk, 1);
}

static void
s_nested_10(msgpack_packer *pk)
{
    s_nested(pk, 10);
}

static void
s_nested_32(msgpack_packer *pk)
{
    s_nested(pk, 32);
}

static void
s_nested_33(msgpack_packer *pk)
{
    s_nested(pk, 33);
}

static void
s_write_values(s_out_t *out, const char *target)
{
    static const struct {
        const char *name;
        s_value_fn *fn;
    } values[] = {
        {"scalars", s_scalars},     {"strings", s_strings},       {"maps", s_maps},
        {"empty_key", s_empty_key}, {"status_map", s_status_map}, {"nested_10", s_nested_10},
        {"nested_32", s_nested_32}, {"nested_33", s_nested_33}};
    static const struct {
        const char *name;
        const char *bytes;
        size_t size;
    } hostile[] = {
        {"array32_huge", S_BYTES("\xdd\xff\xff\xff\xff\x01")},
        {"map32_huge", S_BYTES("\xdf\xff\xff\xff\xff\x01\x02")},
        {"str32_huge", S_BYTES("\xdb\xff\xff\xff\xff"
                               "abc")},
        {"bin32_huge", S_BYTES("\xc6\x7f\xff\xff\xff"
                               "abc")},
        {"ext32_huge", S_BYTES("\xc9\x7f\xff\xff\xff\x01"
                               "abc")},
        {"truncated", S_BYTES("\x93\x01\xcf\x00")},
        {"unused_byte", S_BYTES("\x92\x01\xc1")},
        {"trailing", S_BYTES("\x91\x01\x02")},
        {"empty_containers", S_BYTES("\x93\x90\x80\xdc\x00\x00")},
    };
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        msgpack_sbuffer buffer;
        msgpack_packer pk = s_packer(&buffer);
        values[i].fn(&pk);
        s_write(out, target, values[i].name, buffer.data, buffer.size);
        msgpack_sbuffer_destroy(&buffer);
    }
    for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++)
        s_write(out, target, hostile[i].name, hostile[i].bytes, hostile[i].size);
}

/* ---- messages: proto_decode and codec_decode ---------------------------------------- */

static zframe_t *
s_payload(s_value_fn *fn)
{
    msgpack_sbuffer buffer;
    msgpack_packer pk = s_packer(&buffer);
    fn(&pk);
    zframe_t *frame = s_frame(&buffer);
    msgpack_sbuffer_destroy(&buffer);
    return frame;
}

static void
s_args_hello(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 1);
    s_pack_str(pk, "hello");
}

static void
s_args_chunk(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 2);
    msgpack_pack_array(pk, 2);
    msgpack_pack_int32(pk, 1);
    msgpack_pack_int32(pk, 2);
    msgpack_pack_array(pk, 2);
    msgpack_pack_double(pk, 0.5);
    msgpack_pack_int32(pk, -1);
}

static void
s_result_hello(msgpack_packer *pk)
{
    s_pack_str(pk, "hello");
}

// Serialises zmsg in fuzz_proto_decode's layout (with_routing_id: its first frame is one).
static void
s_write_frames(s_out_t *out, const char *name, zmsg_t *zmsg, bool with_routing_id)
{
    size_t frames = zmsg_size(zmsg);
    uint8_t *bytes = malloc(1 + frames * 2 + zmsg_content_size(zmsg));
    size_t at = 0;
    bytes[at++] =
        (uint8_t)(((frames - 1) & 3) | ((frames - 1) & 4) << 1 | (with_routing_id ? 4 : 0));
    size_t index = 0;
    for (zframe_t *frame = zmsg_first(zmsg); frame; frame = zmsg_next(zmsg), index++) {
        size_t size = zframe_size(frame);
        if (index + 1 < frames) {
            bytes[at++] = (uint8_t)(size >> 8);
            bytes[at++] = (uint8_t)size;
        }
        memcpy(bytes + at, zframe_data(frame), size);
        at += size;
    }
    s_write(out, "fuzz_proto_decode", name, bytes, at);
    free(bytes);
}

// BATCHes of two messages (one with a payload, one without), as sent by a daemon and
// as the broker's ROUTER receives one.
static void
s_write_batches(s_out_t *out)
{
    for (int with_routing_id = 0; with_routing_id < 2; with_routing_id++) {
        dpool_batch_t *batch = dpool_batch_new();
        uint8_t one = 1;
        dpool_msg_t result = {
            .command = DPOOL_CMD_WORKER_RESULT, .task_id = 7, .payload = zframe_new(&one, 1)};
        dpool_msg_t credit = {.command = DPOOL_CMD_CREDIT, .count = 1};
        dpool_batch_add(batch, &result);
        dpool_batch_add(batch, &credit);
        zframe_t *routing_id = with_routing_id ? zframe_from("W1") : NULL;
        zmsg_t *zmsg = dpool_batch_take(batch, routing_id);
        s_write_frames(out, with_routing_id ? "batch_routed" : "batch", zmsg, with_routing_id);
        zmsg_destroy(&zmsg);
        zframe_destroy(&routing_id);
        dpool_batch_destroy(&batch);
    }
}

static void
s_write_message(s_out_t *out, const char *name, dpool_msg_t msg)
{
    zframe_t *payload = msg.payload ? zframe_dup(msg.payload) : NULL;
    zmsg_t *plain = dpool_proto_build(&msg, NULL);
    msg.payload = payload;
    zframe_t *routing_id = zframe_new("Cclient-0001", 12);
    zmsg_t *routed = dpool_proto_build(&msg, routing_id);
    if (!plain || !routed) {
        fprintf(stderr, "make_corpus: cannot build %s\n", name);
        exit(1);
    }
    char file[128];
    s_write_frames(out, name, plain, false);
    snprintf(file, sizeof file, "%s.routed", name);
    s_write_frames(out, file, routed, true);
    // The codec target: the command byte, then the body frame.
    zmsg_first(plain);
    zframe_t *body = zmsg_next(plain);
    uint8_t *bytes = malloc(1 + zframe_size(body));
    bytes[0] = (uint8_t)msg.command;
    memcpy(bytes + 1, zframe_data(body), zframe_size(body));
    s_write(out, "fuzz_codec_decode", name, bytes, 1 + zframe_size(body));
    free(bytes);
    zframe_destroy(&routing_id);
    zmsg_destroy(&plain);
    zmsg_destroy(&routed);
}

static void
s_write_messages(s_out_t *out)
{
    char *functions[] = {"echo", "add", "demo.worker"};
    s_write_message(out, "pool_open",
                    (dpool_msg_t){.command = DPOOL_CMD_POOL_OPEN,
                                  .pool_ref = 1,
                                  .count = 4,
                                  .retries = 2,
                                  .time_limit_ms = 1000});
    s_write_message(out, "pool_open_named",
                    (dpool_msg_t){.command = DPOOL_CMD_POOL_OPEN, .pool_ref = 2, .name = "shared"});
    s_write_message(out, "pool_opened",
                    (dpool_msg_t){.command = DPOOL_CMD_POOL_OPENED, .pool_ref = 1, .count = 4});
    s_write_message(
        out, "pool_opened_refused",
        (dpool_msg_t){
            .command = DPOOL_CMD_POOL_OPENED, .pool_ref = 1, .code = -2, .text = "refused"});
    s_write_message(out, "submit",
                    (dpool_msg_t){.command = DPOOL_CMD_SUBMIT,
                                  .pool_ref = 1,
                                  .task_id = 7,
                                  .name = "echo",
                                  .payload = s_payload(s_args_hello)});
    s_write_message(out, "submit_chunk",
                    (dpool_msg_t){.command = DPOOL_CMD_SUBMIT,
                                  .pool_ref = 1,
                                  .task_id = 8,
                                  .name = "add",
                                  .flags = DPOOL_FLAG_CHUNK,
                                  .payload = s_payload(s_args_chunk)});
    s_write_message(out, "result",
                    (dpool_msg_t){.command = DPOOL_CMD_RESULT,
                                  .task_id = 7,
                                  .payload = s_payload(s_result_hello)});
    s_write_message(
        out, "result_failed",
        (dpool_msg_t){.command = DPOOL_CMD_RESULT, .task_id = 7, .code = -10, .text = "boom"});
    s_write_message(out, "output",
                    (dpool_msg_t){.command = DPOOL_CMD_OUTPUT,
                                  .task_id = 7,
                                  .count = 1,
                                  .text = "out\n",
                                  .text_size = 4});
    s_write_message(out, "terminate", (dpool_msg_t){.command = DPOOL_CMD_TERMINATE, .pool_ref = 1});
    s_write_message(out, "release",
                    (dpool_msg_t){.command = DPOOL_CMD_POOL_RELEASE, .pool_ref = 1});
    s_write_message(out, "status", (dpool_msg_t){.command = DPOOL_CMD_STATUS});
    s_write_message(
        out, "status_reply",
        (dpool_msg_t){.command = DPOOL_CMD_STATUS_REPLY, .payload = s_payload(s_status_map)});
    s_write_message(out, "error",
                    (dpool_msg_t){.command = DPOOL_CMD_ERROR, .code = -3, .text = "bad"});
    s_write_message(out, "worker_hello",
                    (dpool_msg_t){.command = DPOOL_CMD_WORKER_HELLO,
                                  .name = "host-a",
                                  .pid = 42,
                                  .count = 2,
                                  .functions = functions,
                                  .function_count = 3});
    s_write_message(out, "credit", (dpool_msg_t){.command = DPOOL_CMD_CREDIT, .count = 2});
    s_write_message(out, "task",
                    (dpool_msg_t){.command = DPOOL_CMD_TASK,
                                  .task_id = 9,
                                  .name = "echo",
                                  .time_limit_ms = 500,
                                  .payload = s_payload(s_args_hello)});
    s_write_message(out, "worker_result",
                    (dpool_msg_t){.command = DPOOL_CMD_WORKER_RESULT,
                                  .task_id = 9,
                                  .count = 1,
                                  .payload = s_payload(s_result_hello)});
    s_write_message(out, "worker_result_lost",
                    (dpool_msg_t){.command = DPOOL_CMD_WORKER_RESULT,
                                  .task_id = 9,
                                  .code = -12,
                                  .text = "worker process 4242 on host-a killed by signal 9"});
    s_write_message(out, "worker_output",
                    (dpool_msg_t){.command = DPOOL_CMD_WORKER_OUTPUT,
                                  .task_id = 9,
                                  .count = 2,
                                  .text = "e\0r",
                                  .text_size = 3});
    s_write_message(out, "kill", (dpool_msg_t){.command = DPOOL_CMD_KILL, .task_id = 9});
    s_write_message(out, "heartbeat", (dpool_msg_t){.command = DPOOL_CMD_HEARTBEAT});
    s_write_message(out, "bye", (dpool_msg_t){.command = DPOOL_CMD_BYE});
}

// Bodies the encoder does not write: optional fields left out, and hostile ones.
static void
s_write_bodies(s_out_t *out)
{
    static const struct {
        const char *name;
        const char *bytes;
        size_t size;
    } bodies[] = {
        {"pool_open_short", S_BYTES("\x01\x93\x01\xc0\x04")},
        {"submit_short", S_BYTES("\x03\x93\x01\x07\xa4"
                                 "echo")},
        {"task_short", S_BYTES("\x12\x92\x09\xa3"
                               "add")},
        {"hello_huge_functions", S_BYTES("\x10\x94\xa1h\x01\x01\xdd\xff\xff\xff\xff")},
        {"submit_huge_name", S_BYTES("\x03\x93\x01\x07\xdb\xff\xff\xff\xff")},
        {"output_str", S_BYTES("\x05\x93\x07\x01\xa3out")},
        {"error_negative_code", S_BYTES("\x0a\x92\xd2\x80\x00\x00\x00\xc0")},
        {"credit_too_big", S_BYTES("\x11\x91\xcf\x00\x00\x00\x01\x00\x00\x00\x00")},
        {"status_deep", S_BYTES("\x08\x91\x91\x91\x91\x91\x91\x91\x90")},
        {"unknown_command", S_BYTES("\x7f\x90")},
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++)
        s_write(out, "fuzz_codec_decode", bodies[i].name, bodies[i].bytes, bodies[i].size);
    static const struct {
        const char *name;
        const char *bytes;
        size_t size;
    } frames[] = {
        {"one_frame", S_BYTES("\x00"
                              "DP\x01\x08")},
        {"bad_magic", S_BYTES("\x01\x00\x04XP\x01\x08\x90")},
        {"bad_version", S_BYTES("\x01\x00\x04"
                                "DP\x09\x08\x90")},
        {"status_with_payload", S_BYTES("\x02\x00\x04"
                                        "DP\x01\x08\x00\x01\x90\xc0")},
        {"four_frames", S_BYTES("\x07\x00\x02id\x00\x04"
                                "DP\x01\x03\x00\x01\x90\x91\x01")},
    };
    for (size_t i = 0; i < sizeof frames / sizeof frames[0]; i++)
        s_write(out, "fuzz_proto_decode", frames[i].name, frames[i].bytes, frames[i].size);
    s_write_batches(out);
}

/* ---- command-line arguments and task functions ------------------------------------- */

static void
s_write_args(s_out_t *out)
{
    static const struct {
        const char *name;
        const char *text;
        size_t size;
    } args[] = {
        {"integer", S_BYTES("1")},
        {"negative", S_BYTES("-7")},
        {"real", S_BYTES("1.5e3")},
        {"string", S_BYTES("\"x\"")},
        {"null", S_BYTES("null")},
        {"true", S_BYTES("true")},
        {"plain", S_BYTES("hello")},
        {"not_json", S_BYTES("1x")},
        {"array", S_BYTES("[1,2,{\"a\":[true,false,null]},\"\\u00e9\"]")},
        {"object", S_BYTES("{\"k\":{\"n\":[]},\"r\":-0.0}")},
        {"too_big", S_BYTES("18446744073709551616")},
        {"overflow", S_BYTES("1e400")},
        {"not_utf8", S_BYTES("\xff\xfe")},
        {"several", S_BYTES("a\0[1]\0{\"b\":2}")},
        {"empty_key", S_BYTES("{\"\":1}")},
    };
    for (size_t i = 0; i < sizeof args / sizeof args[0]; i++)
        s_write(out, "fuzz_json_args", args[i].name, args[i].text, args[i].size);
    // One level deeper than msgpack-c reads back.
    char deep[2 * (DPOOL_FUZZ_MSGPACK_DEPTH_MAX + 1) + 1];
    size_t levels = DPOOL_FUZZ_MSGPACK_DEPTH_MAX + 1;
    memset(deep, '[', levels);
    deep[levels] = '1';
    memset(deep + levels + 1, ']', levels);
    s_write(out, "fuzz_json_args", "deep_33", deep, sizeof deep);
}

static void
s_write_calls(s_out_t *out)
{
    // Byte 0 picks the function: 0 echo, 1 add, 2 noop, 3 fail, 4 hostpid, 5 unknown.
    static const struct {
        const char *name;
        const char *bytes;
        size_t size;
    } calls[] = {
        {"echo", S_BYTES("\x00\x91\xa5hello")},
        {"echo_nested", S_BYTES("\x00\x91\x92\x01\x81\xa1"
                                "a\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00")},
        {"echo_two", S_BYTES("\x00\x92\x01\x02")},
        {"echo_not_array", S_BYTES("\x00\x05")},
        {"echo_trailing", S_BYTES("\x00\x91\x01\x02")},
        {"add", S_BYTES("\x01\x92\x01\x02")},
        {"add_real", S_BYTES("\x01\x92\xca\x3f\xc0\x00\x00\x02")},
        {"add_overflow", S_BYTES("\x01\x92\xcf\x7f\xff\xff\xff\xff\xff\xff\xff\x01")},
        {"add_unsigned", S_BYTES("\x01\x92\xcf\xff\xff\xff\xff\xff\xff\xff\xff\xff")},
        {"add_string", S_BYTES("\x01\x92\xa1"
                               "a\x01")},
        {"noop", S_BYTES("\x02\x90")},
        {"fail", S_BYTES("\x03\x91\xa4"
                         "boom")},
        {"fail_map", S_BYTES("\x03\x91\x82\xa1k\x94\x01\xcb\x40\x04\x00\x00\x00\x00\x00\x00\xc0\xc3"
                             "\xc4\x02\x00\xff\xd4\x01\x00")},
        {"hostpid", S_BYTES("\x04\x90")},
        {"unknown", S_BYTES("\x05\x90")},
        {"huge", S_BYTES("\x00\xdd\xff\xff\xff\xff")},
    };
    for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++)
        s_write(out, "fuzz_functions_call", calls[i].name, calls[i].bytes, calls[i].size);
}

int
main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    s_out_t out = {argv[1], 0};
    s_write_values(&out, "fuzz_sizes_fit");
    s_write_values(&out, "fuzz_json_from_msgpack");
    s_write_messages(&out);
    s_write_bodies(&out);
    s_write_args(&out);
    s_write_calls(&out);
    printf("make_corpus: %d files in %s\n", out.files, out.dir);
    return 0;
}
