/*  The worker process's side of the channel. Everything here runs after fork in
    a copy of the daemon, so it uses only the channel, stdio and the functions
    registry, and leaves with _exit. The one ordering that matters: stdout and stderr
    are flushed after the function returns and before the result is written, so the
    daemon, which drains the pipes when the result arrives, forwards every byte of
    output ahead of the result.

    Running ahead (dpool_channel.h). Whether a task wrote is told by the bytes that
    went into the stdout and stderr pipes: those still in them (FIONREAD, on the pipes
    as they were when the process started, after a poll of their read ends, which
    tells empty pipes in one system call) plus those the daemon has read out
    (output_taken in the memory it shares with the daemon). Unchanged across a task
    means no byte of output can be its. The daemon's reads are bracketed by a counter
    that is odd while one is under way: a count taken across one is not trusted, and
    the task counts as one that wrote (a skip, never a wrong owner). Output that
    reaches the pipes after the task returned (a child still running) is not seen; it
    was attributed to whichever task ran when it arrived before, too. A process whose
    standard streams are not pipes (FIONREAD fails) runs one task at a time.

    Where the kernel can tell it without a system call (dpool_output_watch.h: an
    io_uring poll of the pipes' read ends flags each write in memory the process shares
    with the kernel), that is asked instead of counting: any write to the pipes since
    the last task ended means the task wrote, which is what a changed count means. */
#define _GNU_SOURCE // srandom with C11 on
#include "dpool_runner.h"

#include "dpool_channel.h"
#include "dpool_clock.h"
#include "dpool_output_watch.h"
#include "dpool_proc.h"

#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

// Results of tasks that went on may be kept back and sent with a later one, in one
// write, while the next task has arrived already: this many in one write at most,
// kept no longer than this after the first when the decision is made, and only after
// tasks that ran shorter than that. Before this process would wait for a frame, it
// sends what it kept; when the task after them runs long, the daemon takes them from
// the memory the two share (dpool_slots_collect_kept).
#define S_KEEP_MAX 16
#define S_KEEP_US 200

typedef struct {
    dpool_proc_shared_t *shared;
    int output_fds[2];           // stdout and stderr as the process started with them
    int peek_fds[2];             // the read ends of those pipes, polled (dpool_proc.h)
    dpool_output_watch_t *watch; // tells writes to those pipes; NULL: counted instead
    uint64_t output_total;       // bytes of output so far, as counted after the last task
    bool total_known;            // false: the next task counts as one that wrote
    bool skipping;               // TASKs of skip_epoch are dropped: the daemon sends them again
    uint32_t skip_epoch;
    int64_t kept_since; // when the first result kept back was, in us
} s_ahead_t;

// Counts the bytes written to the output pipes so far into *total; false when the
// count cannot be trusted (a pipe is gone, or the daemon was reading meanwhile).
static bool
s_count_output(const s_ahead_t *ahead, uint64_t *total)
{
    uint64_t reads = atomic_load(&ahead->shared->output_reads);
    if ((reads & 1) || ahead->output_fds[0] < 0 || ahead->output_fds[1] < 0)
        return false;
    // Empty pipes, the usual case, take one poll of their read ends instead of two
    // ioctls (which would be a third of a no-op task's system calls).
    struct pollfd pipes[2] = {{.fd = ahead->peek_fds[0], .events = POLLIN},
                              {.fd = ahead->peek_fds[1], .events = POLLIN}};
    bool empty = ahead->peek_fds[0] >= 0 && ahead->peek_fds[1] >= 0 && poll(pipes, 2, 0) == 0;
    int waiting[2] = {0, 0};
    if (!empty && (ioctl(ahead->output_fds[0], FIONREAD, &waiting[0]) != 0 ||
                   ioctl(ahead->output_fds[1], FIONREAD, &waiting[1]) != 0))
        return false;
    uint64_t taken = atomic_load(&ahead->shared->output_taken);
    if (atomic_load(&ahead->shared->output_reads) != reads)
        return false;
    *total = taken + (uint64_t)waiting[0] + (uint64_t)waiting[1];
    return true;
}

// A close-on-exec copy of fd, numbered high; -1 when there is none.
static int
s_dup_high(int fd)
{
    int copy = fcntl(fd, F_DUPFD_CLOEXEC, DPOOL_PROC_FD_LOW_MARK);
    return copy >= 0 ? copy : fcntl(fd, F_DUPFD_CLOEXEC, 0);
}

// fd moved high; -1 when there is none.
static int
s_move_high(int fd)
{
    int copy = s_dup_high(fd);
    close(fd);
    return copy;
}

// Whether the task that just ran may have written output; counts anew for the next.
static bool
s_task_wrote(s_ahead_t *ahead)
{
    if (ahead->watch) {
        int fired = dpool_output_watch_fired(ahead->watch);
        if (fired >= 0)
            return fired == 1;
        // Counted from now on; the count kept is older than this task: it wrote.
        dpool_output_watch_destroy(&ahead->watch);
        ahead->total_known = false;
    }
    uint64_t total = 0;
    bool known = s_count_output(ahead, &total);
    bool wrote = !known || !ahead->total_known || total != ahead->output_total;
    ahead->output_total = total;
    ahead->total_known = known;
    return wrote;
}

// Whether the result of a task that went on, after running for run_us, is kept back.
static bool
s_keep_back(s_ahead_t *ahead, dpool_channel_t *channel, int64_t now, int64_t run_us)
{
    size_t kept = dpool_channel_kept(channel);
    if (run_us >= S_KEEP_US || kept + 1 >= S_KEEP_MAX || !dpool_channel_has_frame(channel) ||
        (kept > 0 && now - ahead->kept_since >= S_KEEP_US))
        return false;
    if (kept == 0)
        ahead->kept_since = now;
    return true;
}

// Runs one TASK or CHUNK frame's body: the epoch, the function name, a NUL, then the
// argument bytes; may_keep says whether its result may be kept back. Returns DPOOL_OK,
// 1 for a task skipped (not run, not answered), or a negative error when the result
// could not be sent.
static int
s_run(const dpool_runner_config_t *config, dpool_channel_t *channel, s_ahead_t *ahead, uint8_t kind,
      const uint8_t *body, size_t size, bool may_keep)
{
    msgpack_sbuffer result;
    msgpack_sbuffer_init(&result);
    char *message = NULL;
    int code;
    uint32_t epoch = 0;
    const char *function;
    const uint8_t *args;
    size_t args_size;
    bool parsed = dpool_channel_parse_task(body, size, &epoch, &function, &args, &args_size);
    if (parsed && ahead->skipping && epoch == ahead->skip_epoch) {
        msgpack_sbuffer_destroy(&result);
        return 1;
    }
    atomic_fetch_add(&ahead->shared->started, 1); // before any output of the task
    int64_t began_us = dpool_clock_us();
    if (parsed) {
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
    bool wrote = s_task_wrote(ahead);
    // Counted before the skip is looked at, as the daemon marks a skip before it reads
    // this count (dpool_slots_kill_running): either the process sees the skip and stops
    // here, or the daemon sees the task done and does not kill the process for it.
    uint64_t finished = atomic_fetch_add(&ahead->shared->finished, 1) + 1;
    // A job written ahead under this epoch was KILLed: stop as after a task that wrote,
    // so the daemon takes the rest back and the KILLed one never runs.
    bool skip = atomic_load(&ahead->shared->skip) == (uint64_t)epoch + 1;
    if (wrote || skip) {
        ahead->skipping = true;
        ahead->skip_epoch = epoch;
    }
    uint32_t flags = wrote || skip ? 0 : DPOOL_CHANNEL_WENT_ON;
    int64_t now = dpool_clock_us();
    dpool_channel_result_t frame = {.code = code,
                                    .flags = flags,
                                    .index = finished,
                                    .message = message,
                                    .data = result.data,
                                    .size = result.size};
    int rc = 1;
    if (flags && may_keep && s_keep_back(ahead, channel, now, now - began_us))
        rc = dpool_channel_keep_result(channel, &frame);
    if (rc == 1) // not kept back: no room for it
        rc = dpool_channel_send_result(channel, &frame);
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
dpool_runner_main(void *arg, int channel_fd, dpool_proc_shared_t *shared)
{
    const dpool_runner_config_t *config = arg;
    // Every process draws its own random() sequence (demo.worker's sleeps).
    srandom((unsigned)getpid() ^ (unsigned)time(NULL) ^ (unsigned)dpool_clock_us());
    // Out of the way before the initializer, a task module's code, opens anything.
    int peek_fds[2] = {s_move_high(DPOOL_PROC_STDOUT_PEEK_FD),
                       s_move_high(DPOOL_PROC_STDERR_PEEK_FD)};
    dpool_channel_t *channel = dpool_channel_new(channel_fd);
    if (channel) {
        dpool_channel_keep_in(channel, shared->kept, sizeof shared->kept, &shared->kept_size,
                              &shared->kept_gen);
        s_initialize(config, channel);
    }
    // The pipes as they are now: a task that points stdout elsewhere writes no output
    // of ours. High, out of the way of the descriptors a task opens and closes.
    s_ahead_t ahead = {.shared = shared,
                       .output_fds = {s_dup_high(STDOUT_FILENO), s_dup_high(STDERR_FILENO)},
                       .peek_fds = {peek_fds[0], peek_fds[1]}};
    // A count taken while the daemon reads the initializer's output is not trusted:
    // looked at again, briefly, before this process says whether it runs ahead.
    for (int tries = 0; tries < 100; tries++) {
        ahead.total_known = s_count_output(&ahead, &ahead.output_total);
        if (ahead.total_known)
            break;
        usleep(100);
    }
    uint8_t ready = ahead.total_known ? DPOOL_CHANNEL_RUNS_AHEAD : 0;
    if (ready)
        ahead.watch = dpool_output_watch_new(ahead.peek_fds);
    if (!channel ||
        dpool_channel_send(channel, DPOOL_CHANNEL_READY, &ready, 1, NULL, 0) != DPOOL_OK)
        _exit(1);
    unsigned done = 0;
    for (;;) {
        uint8_t kind;
        const uint8_t *body;
        size_t size;
        // Nothing kept back waits while this process waits for a frame.
        if (dpool_channel_kept(channel) > 0 && !dpool_channel_has_frame(channel) &&
            dpool_channel_send_kept(channel) != DPOOL_OK)
            _exit(1);
        int rc = dpool_channel_next(channel, true, &kind, &body, &size);
        if (rc == DPOOL_ERR_IO)
            _exit(0); // the daemon closed the channel: it is stopping
        if (rc != 1 || (kind != DPOOL_CHANNEL_TASK && kind != DPOOL_CHANNEL_CHUNK))
            _exit(1);
        bool may_keep = !config->max_tasks || done + 1 < config->max_tasks;
        rc = s_run(config, channel, &ahead, kind, body, size, may_keep);
        if (rc < 0)
            _exit(1);
        if (rc == DPOOL_OK && config->max_tasks && ++done >= config->max_tasks)
            _exit(0);
    }
}
