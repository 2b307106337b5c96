/*  dpool_json: JSON <-> msgpack for the command-line tool, which takes arguments and
    prints results as JSON while tasks speak msgpack.

    msgpack -> JSON: nil -> null, bool, integers stay integers (a positive integer
    above INT64_MAX becomes a float), floats (NaN and infinities -> null), str ->
    string, bin -> string when it is valid UTF-8 else base64 text, ext -> base64 of its
    data, array, map -> object (a key that is not a string becomes its compact JSON
    text, so {1: "a"} prints as {"1": "a"}). */
#ifndef DPOOL_JSON_H
#define DPOOL_JSON_H

#include <dpool/dpool.h>
#include <jansson.h>

// Packs value as one msgpack value into *out (owned by the caller, emptied first).
// Returns DPOOL_OK, DPOOL_ERR_INVALID (NULL value), DPOOL_ERR_NOMEM.
int dpool_json_to_msgpack(const json_t *value, dpool_buf_t *out);

// Converts the one msgpack value in data[0..size) to a new JSON value in *value_p
// (owned by the caller). Returns DPOOL_OK, DPOOL_ERR_PROTO when the bytes are not
// exactly one msgpack value (or nest too deep), DPOOL_ERR_NOMEM.
int dpool_json_from_msgpack(const void *data, size_t size, json_t **value_p);

// The command-line rule for one argument: its JSON value when text is valid JSON (any
// value, not just arrays and objects: `1`, `"x"`, `null`), else text itself as a
// string (`hello`, `1x`). Returns a new reference, or NULL when memory runs out.
json_t *dpool_json_parse_arg(const char *text);

// Packs args[0..count), each read by dpool_json_parse_arg, as one msgpack array into
// *out (owned by the caller). Returns DPOOL_OK, DPOOL_ERR_INVALID when a plain-string
// argument is not valid UTF-8 (JSON strings must be), DPOOL_ERR_NOMEM.
int dpool_json_pack_args(int count, char *const *args, dpool_buf_t *out);

#endif
