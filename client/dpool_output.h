/*  dpool_output: the default output handler, which writes what tasks print to this
    process's stdout / stderr. Verbatim by default (the seed demo's lines must come out
    exactly as the tasks wrote them); with the host prefix on, each line starts with
    "[<host>] ", the name of the worker host that ran the task, so a cluster's output
    shows where each line came from. Used by the pool's I/O thread only. */
#ifndef DPOOL_OUTPUT_H
#define DPOOL_OUTPUT_H

#include <stdbool.h>
#include <stddef.h>

// The environment variable that turns the host prefix on ("host") for pools whose
// options leave it at its default.
#define DPOOL_OUTPUT_PREFIX_ENV "DPOOL_OUTPUT_PREFIX"

typedef struct _dpool_output_t dpool_output_t;

// A writer; prefix_host as described above. Returns an owned writer or NULL (memory).
dpool_output_t *dpool_output_new(bool prefix_host);

// Frees the writer. NULL-safe; sets *self_p to NULL.
void dpool_output_destroy(dpool_output_t **self_p);

// Writes size bytes of data (borrowed) that a task on host (borrowed, may be NULL when
// the broker did not say) wrote on stream (1 stdout, 2 stderr), and flushes. A line
// split across calls gets one prefix: the writer remembers, per stream, whether the
// last call ended a line.
void dpool_output_write(dpool_output_t *self, int stream, const char *host, const char *data,
                        size_t size);

// True when the prefix should be on by default: $DPOOL_OUTPUT_PREFIX is "host".
bool dpool_output_prefix_from_env(void);

#endif
