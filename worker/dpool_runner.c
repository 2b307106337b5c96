/*  The worker process's side of the channel. Everything here runs after fork in
    a copy of the daemon, so it uses only the channel, stdio and the functions
    registry, and leaves with _exit. The one ordering that matters: stdout and stderr
    are flushed after the function returns and before the result is written, so the
    daemon, which drains the pipes when the result arrives, forwards every byte of
    output ahead of the result.

    Running ahead (dpool_channel.h). Whether a task wrote is read from the kernel's
    count of this process's write system calls (/proc/self/io, `syscw`; a reaped
    child's count is added to its parent's): unchanged across a task means no byte
    of output can be its. The result is sent with sendmsg, which that count leaves
    out. Output that reaches the pipes without a write call (splice, vmsplice, a
    child still running after the task) is not seen; it was attributed to whichever
    task ran when it arrived before, too. */
#define _GNU_SOURCE // srandom with C11 on
#include "dpool_runner.h"

#include "dpool_channel.h"
#include "dpool_clock.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

// The process's write system calls so far, from an open /proc/self/io; -1 when it
// cannot be read.
static int64_t
s_write_calls(int io_fd)
{
    char text[512];
    ssize_t got = io_fd >= 0 ? pread(io_fd, text, sizeof text - 1, 0) : -1;
    if (got <= 0)
        return -1;
    text[got] = '\0';
    const char *field = strstr(text, "syscw:");
    return field ? strtoll(field + 6, NULL, 10) : -1;
}

typedef struct {
    int io_fd;           // /proc/self/io, or -1: every task then counts as one that wrote
    int64_t write_calls; // as read after the previous task
    bool skipping;       // TASKs of skip_epoch are dropped: the daemon sends them again
    uint32_t skip_epoch;
} s_ahead_t;

// Runs one TASK or CHUNK frame's body: the epoch, the function name, a NUL, then the
// argument bytes. Returns DPOOL_OK, 1 for a task skipped (not run, not answered), or
// a negative error when the result could not be sent.
static int
s_run(const dpool_runner_config_t *config, dpool_channel_t *channel, s_ahead_t *ahead, uint8_t kind,
      const uint8_t *body, size_t size)
{
    msgpack_sbuffer result;
    msgpack_sbuffer_init(&result);
    char *message = NULL;
    int code;
    uint32_t epoch = 0;
    const char *function;
    const uint8_t *args;
    size_t args_size;
    if (dpool_channel_parse_task(body, size, &epoch, &function, &args, &args_size)) {
        if (ahead->skipping && epoch == ahead->skip_epoch) {
            msgpack_sbuffer_destroy(&result);
            return 1;
        }
        ahead->skipping = false;
        code = kind == DPOOL_CHANNEL_CHUNK
                   ? dpool_functions_call_chunk(config->functions, function, args, args_size,
                                                &result, &message)
                   : dpool_functions_call(config->functions, function, args, args_size, &result,
                                          &message);
    } else {
        code = DPOOL_ERR_TASK_FAILED;
        message = strdup("worker process got a task frame without a function name");
    }
    fflush(stdout);
    fflush(stderr);
    int64_t write_calls = s_write_calls(ahead->io_fd);
    bool wrote = write_calls < 0 || write_calls != ahead->write_calls;
    ahead->write_calls = write_calls;
    // A job written ahead under this epoch was KILLed: stop as after a task that wrote,
    // so the daemon takes the rest back and the KILLed one never runs.
    bool skip = dpool_channel_fill(channel) == DPOOL_OK &&
                dpool_channel_holds(channel, DPOOL_CHANNEL_SKIP, &epoch, sizeof epoch);
    if (wrote || skip) {
        ahead->skipping = true;
        ahead->skip_epoch = epoch;
    }
    int rc = dpool_channel_send_result(channel, code, wrote || skip ? 0 : DPOOL_CHANNEL_WENT_ON,
                                       message, result.data, result.size);
    free(message);
    msgpack_sbuffer_destroy(&result);
    return rc;
}

// Runs the initializer, as Python's Pool runs its initializer in each new process.
// When it fails, the daemon is told why (it logs the WARN line: this process's
// stderr goes to a pipe nobody reads while no task runs) and the process exits.
static void
s_initialize(const dpool_runner_config_t *config, dpool_channel_t *channel)
{
    if (!config->initializer)
        return;
    msgpack_sbuffer result;
    msgpack_sbuffer_init(&result);
    char *message = NULL;
    const uint8_t no_args[] = {0x90};
    int code = dpool_functions_call(config->functions, config->initializer, no_args, sizeof no_args,
                                    &result, &message);
    msgpack_sbuffer_destroy(&result);
    fflush(stdout);
    fflush(stderr);
    if (code == DPOOL_OK) {
        free(message);
        return;
    }
    const char *text = message ? message : dpool_strerror(code);
    dpool_channel_send(channel, DPOOL_CHANNEL_INIT_FAILED, text, strlen(text), NULL, 0);
    _exit(1);
}

void
dpool_runner_main(void *arg, int channel_fd)
{
    const dpool_runner_config_t *config = arg;
    // Every process draws its own random() sequence (demo.worker's sleeps).
    srandom((unsigned)getpid() ^ (unsigned)time(NULL) ^ (unsigned)dpool_clock_us());
    dpool_channel_t *channel = dpool_channel_new(channel_fd);
    if (channel)
        s_initialize(config, channel);
    s_ahead_t ahead = {.io_fd = open("/proc/self/io", O_RDONLY | O_CLOEXEC)};
    ahead.write_calls = s_write_calls(ahead.io_fd);
    uint8_t ready = ahead.write_calls >= 0 ? DPOOL_CHANNEL_RUNS_AHEAD : 0;
    if (!channel ||
        dpool_channel_send(channel, DPOOL_CHANNEL_READY, &ready, 1, NULL, 0) != DPOOL_OK)
        _exit(1);
    unsigned done = 0;
    for (;;) {
        uint8_t kind;
        const uint8_t *body;
        size_t size;
        int rc = dpool_channel_next(channel, true, &kind, &body, &size);
        if (rc == DPOOL_ERR_IO)
            _exit(0); // the daemon closed the channel: it is stopping
        if (rc == 1 && kind == DPOOL_CHANNEL_SKIP)
            continue; // acted on when it arrived, if its epoch was running
        if (rc != 1 || (kind != DPOOL_CHANNEL_TASK && kind != DPOOL_CHANNEL_CHUNK))
            _exit(1);
        rc = s_run(config, channel, &ahead, kind, body, size);
        if (rc < 0)
            _exit(1);
        if (rc == DPOOL_OK && config->max_tasks && ++done >= config->max_tasks)
            _exit(0);
    }
}
