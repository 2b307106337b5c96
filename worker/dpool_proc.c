/*  Forking, watching and reaping one worker process.

    The daemon holds a ZeroMQ context with I/O threads by the time it respawns a
    process, and a context does not survive fork. So the child touches nothing of
    the daemon's past the fork: it places its six descriptors on 0 to 5, closes every
    other one (the context's sockets and eventfds among them), runs main_fn and
    leaves with _exit, so no atexit handler (czmq's shutdown, LeakSanitizer's check)
    ever runs in it. */
#define _GNU_SOURCE // pipe2, close_range and prctl with C11 on
#include "dpool_proc.h"

#include "dpool_log.h"
#include "dpool_proto.h"

#include <dpool/errors.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define S_CHANNEL_FD 3
_Static_assert(DPOOL_PROC_STDOUT_PEEK_FD == S_CHANNEL_FD + 1 &&
                   DPOOL_PROC_STDERR_PEEK_FD == S_CHANNEL_FD + 2,
               "s_child places descriptors 0 to 5 in this order");

struct dpool_proc_t {
    pid_t pid;
    bool reaped;
    int status; // waitpid's, once reaped
    dpool_channel_t *channel;
    dpool_proc_shared_t *shared; // mapped, shared with the process
    int output_fds[2];           // stdout, stderr read ends; -1 when closed
    bool output_ended[2];        // end of file seen: the fd stays open until destroy
};

static void
s_close(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

// Runs in the child right after fork; never returns.
static void
s_child(pid_t parent, const int out[2], const int err[2], int channel_fd,
        dpool_proc_main_fn *main_fn, void *arg, dpool_proc_shared_t *shared)
{
    // A process outliving its daemon would hold a slot nobody supervises.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(1); // the daemon died before prctl took effect
    struct sigaction action = {.sa_handler = SIG_DFL};
    const int reset[] = {SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGCHLD};
    for (size_t i = 0; i < sizeof reset / sizeof reset[0]; i++)
        sigaction(reset[i], &action, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    // Each descriptor lands on its number from a copy above them all, so that none is
    // overwritten before it is moved (a pipe may have been made on 3, 4 or 5).
    const int from[] = {open("/dev/null", O_RDONLY), out[1], err[1], channel_fd, out[0], err[0]};
    int copies[6];
    for (int fd = 0; fd < 6; fd++)
        if (from[fd] < 0 || (copies[fd] = fcntl(from[fd], F_DUPFD_CLOEXEC, 6)) < 0)
            _exit(71);
    for (int fd = 0; fd < 6; fd++)
        if (dup3(copies[fd], fd, fd > S_CHANNEL_FD ? O_CLOEXEC : 0) < 0)
            _exit(71);
    if (close_range(DPOOL_PROC_STDERR_PEEK_FD + 1, ~0U, 0) != 0) {
        long max = sysconf(_SC_OPEN_MAX);
        for (long fd = DPOOL_PROC_STDERR_PEEK_FD + 1; fd < (max > 0 && max < 65536 ? max : 65536);
             fd++)
            close((int)fd);
    }
    // Output reaches the client while the task runs, a line at a time, instead of
    // in one block when the task ends.
    setvbuf(stdout, NULL, _IOLBF, 0);
    main_fn(arg, S_CHANNEL_FD, shared);
    _exit(70);
}

// Makes sure fds 0..2 are open, so no pipe made here lands on one of them and is
// overwritten by the child's dup2 onto its standard streams.
static void
s_hold_std_fds(void)
{
    int fd = open("/dev/null", O_RDWR);
    while (fd >= 0 && fd <= STDERR_FILENO)
        fd = open("/dev/null", O_RDWR);
    if (fd > STDERR_FILENO)
        close(fd);
}

dpool_proc_t *
dpool_proc_spawn(dpool_proc_main_fn *main_fn, void *arg)
{
    s_hold_std_fds();
    int out[2] = {-1, -1}, err[2] = {-1, -1}, chan[2] = {-1, -1};
    dpool_proc_t *self = calloc(1, sizeof *self);
    if (!self || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC) ||
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, chan))
        goto fail;
    void *shared =
        mmap(NULL, sizeof *self->shared, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED)
        goto fail;
    self->shared = shared; // zero-filled: no skip, nothing read
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        goto fail;
    if (pid == 0)
        s_child(parent, out, err, chan[1], main_fn, arg, self->shared);
    self->pid = pid;
    // Processes forked later do not see this one's page (nor could scribble on it).
    madvise(self->shared, sizeof *self->shared, MADV_DONTFORK);
    s_close(&out[1]);
    s_close(&err[1]);
    s_close(&chan[1]);
    // Output is read whenever poll says so, and drained until EAGAIN before a
    // result is forwarded: these reads must never block.
    fcntl(out[0], F_SETFL, O_NONBLOCK);
    fcntl(err[0], F_SETFL, O_NONBLOCK);
    self->output_fds[0] = out[0];
    self->output_fds[1] = err[0];
    self->channel = dpool_channel_new(chan[0]);
    if (!self->channel) {
        dpool_proc_destroy(&self);
        return NULL;
    }
    return self;
fail:
    DPOOL_LOG_ERROR("cannot start a worker process: %s", strerror(errno));
    for (int i = 0; i < 2; i++) {
        s_close(&out[i]);
        s_close(&err[i]);
        s_close(&chan[i]);
    }
    if (self && self->shared)
        munmap(self->shared, sizeof *self->shared);
    free(self);
    return NULL;
}

void
dpool_proc_destroy(dpool_proc_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dpool_proc_t *self = *self_p;
    char why[256];
    dpool_proc_reap(self, "", why, sizeof why);
    dpool_channel_destroy(&self->channel);
    s_close(&self->output_fds[0]);
    s_close(&self->output_fds[1]);
    munmap(self->shared, sizeof *self->shared);
    free(self);
    *self_p = NULL;
}

pid_t
dpool_proc_pid(const dpool_proc_t *self)
{
    return self->pid;
}

dpool_channel_t *
dpool_proc_channel(dpool_proc_t *self)
{
    return self->channel;
}

void
dpool_proc_skip(dpool_proc_t *self, uint32_t epoch)
{
    atomic_store(&self->shared->skip, (uint64_t)epoch + 1);
}

bool
dpool_proc_copy_kept(const dpool_proc_t *self, uint8_t *buffer, size_t *size_p)
{
    // A sequence lock: the process writes frames, then their size; it moves the
    // generation on before it reuses the area.
    uint64_t gen = atomic_load(&self->shared->kept_gen);
    size_t size = atomic_load(&self->shared->kept_size);
    if (size > sizeof self->shared->kept)
        size = 0; // a process that scribbled there is not believed
    memcpy(buffer, self->shared->kept, size);
    atomic_thread_fence(memory_order_acquire);
    *size_p = size;
    return atomic_load(&self->shared->kept_gen) == gen;
}

uint64_t
dpool_proc_started(const dpool_proc_t *self)
{
    return atomic_load(&self->shared->started);
}

uint64_t
dpool_proc_finished(const dpool_proc_t *self)
{
    return atomic_load(&self->shared->finished);
}

int
dpool_proc_output_fd(const dpool_proc_t *self, int stream)
{
    return self->output_fds[stream == DPOOL_STREAM_STDERR];
}

ssize_t
dpool_proc_read_output(dpool_proc_t *self, int stream, void *buffer, size_t size)
{
    int index = stream == DPOOL_STREAM_STDERR;
    if (self->output_fds[index] < 0 || self->output_ended[index])
        return -1;
    for (;;) {
        // Bracketed for the process's count of output (dpool_proc_shared_t): bytes are
        // out of the pipe before they are counted as taken.
        atomic_fetch_add(&self->shared->output_reads, 1);
        ssize_t got = read(self->output_fds[index], buffer, size);
        if (got > 0)
            atomic_fetch_add(&self->shared->output_taken, (uint64_t)got);
        atomic_fetch_add(&self->shared->output_reads, 1);
        if (got > 0)
            return got;
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        self->output_ended[index] = true;
        return -1;
    }
}

// The name of the signals a task can plausibly die of; NULL for the rest.
static const char *
s_signal_name(int signal_number)
{
    static const struct {
        int number;
        const char *name;
    } names[] = {
        {SIGHUP, "SIGHUP"},   {SIGINT, "SIGINT"},   {SIGQUIT, "SIGQUIT"}, {SIGILL, "SIGILL"},
        {SIGTRAP, "SIGTRAP"}, {SIGABRT, "SIGABRT"}, {SIGBUS, "SIGBUS"},   {SIGFPE, "SIGFPE"},
        {SIGKILL, "SIGKILL"}, {SIGUSR1, "SIGUSR1"}, {SIGSEGV, "SIGSEGV"}, {SIGUSR2, "SIGUSR2"},
        {SIGPIPE, "SIGPIPE"}, {SIGALRM, "SIGALRM"}, {SIGTERM, "SIGTERM"}, {SIGXCPU, "SIGXCPU"},
        {SIGXFSZ, "SIGXFSZ"}, {SIGSYS, "SIGSYS"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].number == signal_number)
            return names[i].name;
    return NULL;
}

static void
s_describe(const dpool_proc_t *self, const char *host, char *why, size_t why_size)
{
    int status = self->status;
    if (WIFSIGNALED(status)) {
        const char *name = s_signal_name(WTERMSIG(status));
        snprintf(why, why_size, "worker process %d on %s killed by signal %d (%s)", (int)self->pid,
                 host, WTERMSIG(status), name ? name : strsignal(WTERMSIG(status)));
    } else {
        snprintf(why, why_size, "worker process %d on %s exited with status %d", (int)self->pid,
                 host, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    }
}

int
dpool_proc_reap(dpool_proc_t *self, const char *host, char *why, size_t why_size)
{
    if (!self->reaped) {
        // Harmless on a process that already died: its status stays the one it
        // died with. It matters for one that only closed its channel.
        kill(self->pid, SIGKILL);
        while (waitpid(self->pid, &self->status, 0) < 0) {
            if (errno != EINTR) {
                snprintf(why, why_size, "worker process %d on %s: waitpid failed: %s",
                         (int)self->pid, host, strerror(errno));
                return DPOOL_ERR_IO;
            }
        }
        self->reaped = true;
    }
    s_describe(self, host, why, why_size);
    return DPOOL_OK;
}
