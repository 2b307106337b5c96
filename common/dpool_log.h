/*  dpool_log: one line per event on stderr: "2026-11-25T18:58:38.123Z WARN broker: text".

    The threshold is the one piece of process-wide mutable state allowed outside a
    self object (STYLE.md): main.c sets it once, before any thread starts. The macros
    test it before formatting, so a DEBUG line on a hot path costs one comparison. */
#ifndef DPOOL_LOG_H
#define DPOOL_LOG_H

#include <stdbool.h>

typedef enum {
    DPOOL_LOG_LEVEL_ERROR = 0,
    DPOOL_LOG_LEVEL_WARN = 1,
    DPOOL_LOG_LEVEL_INFO = 2,
    DPOOL_LOG_LEVEL_DEBUG = 3,
} dpool_log_level_t;

// Sets the component name shown on every line (borrowed: must outlive the process,
// normally a string literal) and the threshold. Call once from main() before threads.
void dpool_log_setup(const char *component, dpool_log_level_t threshold);

// Parses "error", "warn", "info" or "debug" into *level. Returns false on any other text.
bool dpool_log_parse_level(const char *text, dpool_log_level_t *level);

// True when a line at this level would be written.
bool dpool_log_enabled(dpool_log_level_t level);

// Writes one line at this level; use the macros below instead.
void dpool_log_write(dpool_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define DPOOL_LOG_AT(level, ...)                                                                   \
    do {                                                                                           \
        if (dpool_log_enabled(level))                                                              \
            dpool_log_write(level, __VA_ARGS__);                                                   \
    } while (0)
#define DPOOL_LOG_ERROR(...) DPOOL_LOG_AT(DPOOL_LOG_LEVEL_ERROR, __VA_ARGS__)
#define DPOOL_LOG_WARN(...) DPOOL_LOG_AT(DPOOL_LOG_LEVEL_WARN, __VA_ARGS__)
#define DPOOL_LOG_INFO(...) DPOOL_LOG_AT(DPOOL_LOG_LEVEL_INFO, __VA_ARGS__)
#define DPOOL_LOG_DEBUG(...) DPOOL_LOG_AT(DPOOL_LOG_LEVEL_DEBUG, __VA_ARGS__)

#endif
