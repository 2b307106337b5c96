/*  dpool_cli_progress: `dpool map`'s progress line on stderr: results done, lines
    read (or the total, when known), rate, and time left when the total is known. */
#ifndef DPOOL_CLI_PROGRESS_H
#define DPOOL_CLI_PROGRESS_H

#include "dpool_cli_map_input.h"

#include <stdbool.h>

typedef struct _dpool_cli_progress_t dpool_cli_progress_t;

// A progress line over input (borrowed), or NULL when not enabled (every call below
// accepts NULL and then does nothing).
dpool_cli_progress_t *dpool_cli_progress_new(dpool_cli_map_input_t *input, bool enabled);

// Counts one more result, redrawing the line at most five times a second.
void dpool_cli_progress_done(dpool_cli_progress_t *self);

// Redraws the line now if it is due (final: always, and ends it with a newline).
void dpool_cli_progress_show(dpool_cli_progress_t *self, bool final);

// Frees it. NULL-safe; sets *self_p to NULL.
void dpool_cli_progress_destroy(dpool_cli_progress_t **self_p);

#endif
