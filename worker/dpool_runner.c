/*  The worker process's side of the channel. Everything here runs after fork in
    a copy of the daemon, so it uses only the channel, stdio and the functions
    registry, and leaves with _exit. The one ordering that matters: stdout and stderr
    are flushed after the function returns and before the result is written, so the
    daemon, which drains the pipes when the result arrives, forwards every byte of
    output ahead of the result. */
#define _GNU_SOURCE // srandom with C11 on
#include "dpool_runner.h"

#include "dpool_channel.h"
#include "dpool_clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

// Runs one TASK or CHUNK frame's body: the function name, a NUL, then the argument
// bytes.
static int
s_run(const dpool_runner_config_t *config, dpool_channel_t *channel, uint8_t kind,
      const uint8_t *body, size_t size)
{
    msgpack_sbuffer result;
    msgpack_sbuffer_init(&result);
    char *message = NULL;
    int code;
    const char *function;
    const uint8_t *args;
    size_t args_size;
    if (dpool_channel_parse_task(body, size, &function, &args, &args_size)) {
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
    int rc = dpool_channel_send_result(channel, code, message, result.data, result.size);
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
    if (!channel || dpool_channel_send(channel, DPOOL_CHANNEL_READY, NULL, 0, NULL, 0) != DPOOL_OK)
        _exit(1);
    unsigned done = 0;
    for (;;) {
        uint8_t kind;
        const uint8_t *body;
        size_t size;
        int rc = dpool_channel_next(channel, true, &kind, &body, &size);
        if (rc == DPOOL_ERR_IO)
            _exit(0); // the daemon closed the channel: it is stopping
        if (rc != 1 || (kind != DPOOL_CHANNEL_TASK && kind != DPOOL_CHANNEL_CHUNK))
            _exit(1);
        if (s_run(config, channel, kind, body, size) != DPOOL_OK)
            _exit(1);
        if (config->max_tasks && ++done >= config->max_tasks)
            _exit(0);
    }
}
