/*  dpool_fuzz: what the libFuzzer targets of fuzz/ share: the entry point's prototype,
    a check that aborts (libFuzzer then saves the input as a crash), and comparisons of
    decoded values used by the round-trip checks. Test code only: never linked into dpool. */
#ifndef DPOOL_FUZZ_H
#define DPOOL_FUZZ_H

#include "dpool_proto.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// libFuzzer's entry points, declared for -Wmissing-prototypes.
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

// Aborts with the failed condition and a printf-style explanation when cond is false.
#define DPOOL_FUZZ_CHECK(cond, ...)                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            dpool_fuzz_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);                               \
    } while (0)

// Prints where and why a check failed, then aborts. Never returns.
void dpool_fuzz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5)));

// Checks that two decoded messages carry the same fields. Text of a field that may be
// nil ("message?") is compared as a C string: the encoder writes strlen(text) bytes.
void dpool_fuzz_check_same_msg(const dpool_msg_t *a, const dpool_msg_t *b);

// Checks what every decoded message promises its users: names 1..255 bytes without a
// NUL, at most 1024 functions, and text NUL-terminated at text_size.
void dpool_fuzz_check_msg_invariants(const dpool_msg_t *msg);

// The nesting depth of the first msgpack value in data[0..size) (a scalar is 0, [] is 1),
// read without allocating; SIZE_MAX when the bytes end first or hold the byte 0xc1.
size_t dpool_fuzz_msgpack_depth(const void *data, size_t size);

// msgpack-c's own limit: msgpack_unpack refuses (with NOMEM) containers nested deeper.
#define DPOOL_FUZZ_MSGPACK_DEPTH_MAX 32

#endif
