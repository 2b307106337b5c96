/*  Logging to stderr with an ISO-8601 UTC timestamp, the level and the component.
    Each line is formatted into one buffer and written with one write(2), so lines
    from the forked worker processes and the daemon never interleave mid-line. */
#include "dpool_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

// The two pieces of process-wide state STYLE.md allows: set once from main().
static const char *s_component = "dpool";
static dpool_log_level_t s_threshold = DPOOL_LOG_LEVEL_INFO;

void
dpool_log_setup(const char *component, dpool_log_level_t threshold)
{
    s_component = component ? component : "dpool";
    s_threshold = threshold;
}

bool
dpool_log_parse_level(const char *text, dpool_log_level_t *level)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; text && i < 4; i++) {
        if (strcasecmp(text, names[i]) == 0) {
            *level = (dpool_log_level_t)i;
            return true;
        }
    }
    return false;
}

bool
dpool_log_enabled(dpool_log_level_t level)
{
    return level <= s_threshold;
}

void
dpool_log_write(dpool_log_level_t level, const char *fmt, ...)
{
    static const char *const tags[] = {"ERROR", "WARN", "INFO", "DEBUG"};
    char line[1024];
    struct timespec now;
    struct tm utc;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &utc);
    int used = snprintf(line, sizeof line,
                        "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s[%d]: ", utc.tm_year + 1900,
                        utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
                        now.tv_nsec / 1000000, tags[level], s_component, (int)getpid());
    va_list args;
    va_start(args, fmt);
    int more = vsnprintf(line + used, sizeof line - (size_t)used - 1, fmt, args);
    va_end(args);
    size_t len = (size_t)used + (more < 0 ? 0 : (size_t)more);
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    line[len++] = '\n';
    ssize_t written = write(STDERR_FILENO, line, len);
    (void)written; // nowhere left to report a failed log write
}
