/*  The progress line: redrawn in place with "\r" and erase-to-end-of-line, on stderr
    only (stdout carries the results), at most every 0.2 s so that printing it never
    costs more than a sliver of the run. */
#include "dpool_cli_progress.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define S_REDRAW_S 0.2

struct _dpool_cli_progress_t {
    dpool_cli_map_input_t *input;
    size_t done;
    double start, drawn; // seconds on the monotonic clock
    bool finished;
};

static double
s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

dpool_cli_progress_t *
dpool_cli_progress_new(dpool_cli_map_input_t *input, bool enabled)
{
    if (!enabled)
        return NULL;
    dpool_cli_progress_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->input = input;
    self->start = self->drawn = s_now();
    return self;
}

static void
s_draw(dpool_cli_progress_t *self, double now, bool final)
{
    double elapsed = now - self->start;
    double rate = elapsed > 0 ? (double)self->done / elapsed : 0;
    size_t total = 0;
    bool estimate = false;
    fprintf(stderr, "\r\033[Kdpool map: %zu done", self->done);
    if (dpool_cli_map_input_total(self->input, &total, &estimate)) {
        fprintf(stderr, " / %s%zu", estimate ? "~" : "", total);
        if (total > 0)
            fprintf(stderr, " (%.0f%%)", 100.0 * (double)self->done / (double)total);
    } else
        fprintf(stderr, " / %zu read", dpool_cli_map_input_lines(self->input));
    fprintf(stderr, ", %.0f/s", rate);
    if (final)
        fprintf(stderr, ", %.1f s\n", elapsed);
    else if (total >= self->done && rate > 0 && (total > 0 || !estimate)) {
        long left = (long)((double)(total - self->done) / rate + 0.5);
        fprintf(stderr, ", %s%ld:%02ld left", estimate ? "~" : "", left / 60, left % 60);
    }
    fflush(stderr);
    self->drawn = now;
}

void
dpool_cli_progress_done(dpool_cli_progress_t *self)
{
    if (!self)
        return;
    self->done++;
    // the clock is read once per 64 results: a tight loop of results stays cheap
    if ((self->done & 63) == 0)
        dpool_cli_progress_show(self, false);
}

void
dpool_cli_progress_show(dpool_cli_progress_t *self, bool final)
{
    if (!self || self->finished)
        return;
    double now = s_now();
    if (final || now - self->drawn >= S_REDRAW_S)
        s_draw(self, now, final);
    self->finished = final;
}

void
dpool_cli_progress_destroy(dpool_cli_progress_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free(*self_p);
    *self_p = NULL;
}
