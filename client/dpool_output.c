/*  The default output writer. The prefix is per line, not per OUTPUT message: a task's
    output arrives in pieces that need not end at a line break, so the writer keeps, per
    stream, whether it stands at the start of a line. Pieces of different tasks can
    interleave mid-line; that is the price of forwarding output as it is written rather
    than buffering whole lines (the verbatim writer has the same property). */
#include "dpool_output.h"

#include <dpool_proto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct _dpool_output_t {
    bool prefix_host;
    bool midline[2]; // by stream - 1: the last piece did not end with a line break
};

dpool_output_t *
dpool_output_new(bool prefix_host)
{
    dpool_output_t *self = calloc(1, sizeof *self);
    if (self)
        self->prefix_host = prefix_host;
    return self;
}

void
dpool_output_destroy(dpool_output_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free(*self_p);
    *self_p = NULL;
}

bool
dpool_output_prefix_from_env(void)
{
    const char *value = getenv(DPOOL_OUTPUT_PREFIX_ENV);
    return value && strcmp(value, "host") == 0;
}

void
dpool_output_write(dpool_output_t *self, int stream, const char *host, const char *data,
                   size_t size)
{
    bool err = stream == DPOOL_STREAM_STDERR;
    FILE *out = err ? stderr : stdout;
    if (!self->prefix_host) {
        fwrite(data, 1, size, out);
        fflush(out);
        return;
    }
    bool *midline = &self->midline[err ? 1 : 0];
    while (size > 0) {
        const char *end = memchr(data, '\n', size);
        size_t line = end ? (size_t)(end - data) + 1 : size;
        if (!*midline)
            fprintf(out, "[%s] ", host && *host ? host : "?");
        fwrite(data, 1, line, out);
        *midline = !end;
        data += line;
        size -= line;
    }
    fflush(out);
}
