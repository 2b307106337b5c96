/*  dpool_cli_map_input: the lines of `dpool map`'s standard input as items, pulled
    one at a time by the iterator's feeder thread (a dpool_source_fn), so the input is
    never read further ahead than the iterator asks. Each line is converted to msgpack
    by the `dpool apply` argument rule (JSON if it parses, else a string). */
#ifndef DPOOL_CLI_MAP_INPUT_H
#define DPOOL_CLI_MAP_INPUT_H

#include <stdbool.h>
#include <stddef.h>

typedef struct _dpool_cli_map_input_t dpool_cli_map_input_t;

// Reads lines from fd (borrowed, not closed). NULL when memory runs out.
dpool_cli_map_input_t *dpool_cli_map_input_new(int fd);

// Frees the reader. NULL-safe; sets *self_p to NULL.
void dpool_cli_map_input_destroy(dpool_cli_map_input_t **self_p);

// dpool_source_fn over the lines (arg is the reader): 1 with the next line's msgpack
// bytes (valid until the next call), 0 at the end of the input (or after
// dpool_cli_map_input_stop), a negative code when a line cannot be read or converted
// (dpool_cli_map_input_error says why).
int dpool_cli_map_input_next(void *arg, const char **data, size_t *size);

// Makes a call of dpool_cli_map_input_next waiting for input return 0 soon (within
// 0.1 s), from any thread.
void dpool_cli_map_input_stop(dpool_cli_map_input_t *self);

// Why the line of 0-based index `index` could not be taken as an item, or NULL when it
// could (or was not read).
const char *dpool_cli_map_input_error(dpool_cli_map_input_t *self, size_t index);

// Lines taken so far (any thread).
size_t dpool_cli_map_input_lines(dpool_cli_map_input_t *self);

// The number of lines in the whole input: exact once the end was read, estimated from
// the bytes read so far when the input is a regular file (*estimate true). False when
// it is not known (a pipe still open).
bool dpool_cli_map_input_total(dpool_cli_map_input_t *self, size_t *total, bool *estimate);

#endif
