/*  Tests for dpool_output_watch: a look says whether a pipe was written to since the
    last one, whoever wrote (this process, stdio once flushed, a child, another thread
    or process that said so through memory alone), also after more writes than its ring
    holds; a write interrupts none of the task's own waits; and it is off when
    DPOOL_NO_IO_URING is set. On a
    kernel that offers no io_uring (or forbids it) there is nothing to watch with, and
    the tests that need it are skipped, saying so. */
#define _GNU_SOURCE // pipe2
#include "dpool_output_watch.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int s_out[2] = {-1, -1}; // "stdout": read end, write end
static int s_err[2] = {-1, -1}; // "stderr"
static dpool_output_watch_t *s_watch = NULL;

static void
s_open_pipes(void)
{
    unsetenv(DPOOL_OUTPUT_WATCH_OFF_ENV);
    cr_assert_eq(pipe2(s_out, O_CLOEXEC), 0);
    cr_assert_eq(pipe2(s_err, O_CLOEXEC), 0);
    // Never block the test on a full pipe.
    fcntl(s_out[1], F_SETFL, O_NONBLOCK);
    fcntl(s_err[1], F_SETFL, O_NONBLOCK);
}

static void
s_close_pipes(void)
{
    dpool_output_watch_destroy(&s_watch);
    for (int i = 0; i < 2; i++) {
        if (s_out[i] >= 0)
            close(s_out[i]);
        if (s_err[i] >= 0)
            close(s_err[i]);
        s_out[i] = s_err[i] = -1;
    }
}

TestSuite(output_watch, .init = s_open_pipes, .fini = s_close_pipes, .timeout = 30);

static void
s_watch_pipes(void)
{
    int read_ends[2] = {s_out[0], s_err[0]};
    s_watch = dpool_output_watch_new(read_ends);
    if (!s_watch)
        cr_skip_test("SKIPPED, no io_uring to watch with here: %s", strerror(errno));
}

static void
s_drain(int fd)
{
    char buffer[4096];
    int flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    while (read(fd, buffer, sizeof buffer) > 0)
        ;
    fcntl(fd, F_SETFL, flags);
}

Test(output_watch, pipes_nobody_writes_to_never_fire)
{
    s_watch_pipes();
    for (int look = 0; look < 3; look++)
        cr_assert_eq(dpool_output_watch_fired(s_watch), 0, "look %d", look);
}

Test(output_watch, a_write_to_either_pipe_fires_at_the_next_look_only)
{
    s_watch_pipes();
    cr_assert_eq(write(s_out[1], "x", 1), 1);
    cr_assert_eq(dpool_output_watch_fired(s_watch), 1, "a write to stdout");
    cr_assert_eq(dpool_output_watch_fired(s_watch), 0, "told once");
    cr_assert_eq(write(s_err[1], "y", 1), 1);
    cr_assert_eq(dpool_output_watch_fired(s_watch), 1, "a write to stderr");
    cr_assert_eq(dpool_output_watch_fired(s_watch), 0, "told once");
}

Test(output_watch, a_write_behind_bytes_nobody_read_yet_fires_again)
{
    s_watch_pipes();
    cr_assert_eq(write(s_out[1], "ab", 2), 2);
    cr_assert_eq(dpool_output_watch_fired(s_watch), 1);
    cr_assert_eq(dpool_output_watch_fired(s_watch), 0, "bytes waiting are no new write");
    cr_assert_eq(write(s_out[1], "c", 1), 1);
    cr_assert_eq(dpool_output_watch_fired(s_watch), 1, "the pipe was not empty: still a write");
    s_drain(s_out[0]);
    cr_assert_eq(dpool_output_watch_fired(s_watch), 0, "a read is no write");
}

Test(output_watch, bytes_waiting_when_the_watch_begins_fire_at_the_first_look)
{
    cr_assert_eq(write(s_err[1], "early", 5), 5);
    s_watch_pipes();
    cr_assert_eq(dpool_output_watch_fired(s_watch), 1);
    cr_assert_eq(dpool_output_watch_fired(s_watch), 0);
}

Test(output_watch, stdio_output_fires_once_flushed)
{
    s_watch_pipes();
    FILE *stream = fdopen(dup(s_out[1]), "w");
    cr_assert_not_null(stream);
    fprintf(stream, "buffered %d\n", 42);
    cr_assert_eq(dpool_output_watch_fired(s_watch), 0, "still in the FILE's buffer");
    cr_assert_eq(fflush(stream), 0);
    cr_assert_eq(dpool_output_watch_fired(s_watch), 1, "flushed into the pipe");
    fclose(stream);
}

Test(output_watch, a_write_by_a_child_process_fires)
{
    s_watch_pipes();
    pid_t child = fork();
    cr_assert_geq(child, 0);
    if (child == 0)
        _exit(write(s_out[1], "child", 5) == 5 ? 0 : 1);
    int status = -1;
    cr_assert_eq(waitpid(child, &status, 0), child);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    cr_assert_eq(dpool_output_watch_fired(s_watch), 1);
    cr_assert_eq(dpool_output_watch_fired(s_watch), 0);
}

// A writer that writes one byte each time it is asked, and says so in shared memory.
typedef struct {
    _Atomic int asked, written, stop;
} s_handoff_t;

static void
s_write_when_asked(s_handoff_t *handoff)
{
    while (!atomic_load(&handoff->stop)) {
        if (!atomic_load(&handoff->asked))
            continue;
        atomic_store(&handoff->asked, 0);
        if (write(s_out[1], "w", 1) != 1)
            return;
        atomic_store(&handoff->written, 1);
    }
}

static void *
s_writer_thread(void *handoff)
{
    s_write_when_asked(handoff);
    return NULL;
}

static int64_t
s_now_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

// Asks the writer for a byte `rounds` times, each time waiting for its word in memory
// (no system call between the write and the look, as a task whose thread or child
// wrote and then told it through memory), and looks: each look must see the write.
static void
s_check_handoffs(s_handoff_t *handoff, int rounds)
{
    int64_t deadline = s_now_ms() + 10000;
    int missed = 0, done = 0;
    for (; done < rounds && s_now_ms() < deadline; done++) {
        atomic_store(&handoff->written, 0);
        atomic_store(&handoff->asked, 1);
        for (long spins = 0; !atomic_load(&handoff->written) && spins < 2000000000L; spins++)
            ;
        if (!atomic_load(&handoff->written))
            break;
        missed += dpool_output_watch_fired(s_watch) != 1;
        if (done % 256 == 255)
            s_drain(s_out[0]);
    }
    bool wrote = atomic_load(&handoff->written);
    atomic_store(&handoff->stop, 1);
    cr_assert(wrote, "the writer did not write");
    cr_assert_gt(done, 1000, "only %d rounds within 10 s", done);
    cr_assert_eq(missed, 0, "%d of %d writes not seen at the look after them", missed, done);
}

Test(output_watch, a_write_another_thread_reported_through_memory_is_seen)
{
    s_watch_pipes();
    s_handoff_t handoff = {0};
    pthread_t writer;
    cr_assert_eq(pthread_create(&writer, NULL, s_writer_thread, &handoff), 0);
    s_check_handoffs(&handoff, 100000);
    pthread_join(writer, NULL);
}

Test(output_watch, a_write_another_process_reported_through_memory_is_seen)
{
    s_watch_pipes();
    s_handoff_t *handoff =
        mmap(NULL, sizeof *handoff, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq(handoff, MAP_FAILED);
    memset(handoff, 0, sizeof *handoff);
    pid_t child = fork();
    cr_assert_geq(child, 0);
    if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); // gone with the test, whatever happens
        s_write_when_asked(handoff);
        _exit(0);
    }
    s_check_handoffs(handoff, 100000);
    waitpid(child, NULL, 0);
    munmap(handoff, sizeof *handoff);
}

static void *
s_write_later(void *unused)
{
    (void)unused;
    usleep(50000);
    return (void *)(intptr_t)write(s_out[1], "late", 4);
}

Test(output_watch, a_write_does_not_interrupt_the_tasks_own_waits)
{
    // A task waiting in a call that fails with EINTR when interrupted (epoll_wait,
    // semop, ...) while its thread or child writes must not be interrupted for the watch.
    s_watch_pipes();
    int waiting = epoll_create1(EPOLL_CLOEXEC);
    cr_assert_geq(waiting, 0);
    pthread_t writer;
    cr_assert_eq(pthread_create(&writer, NULL, s_write_later, NULL), 0);
    struct epoll_event event;
    errno = 0;
    int got = epoll_wait(waiting, &event, 1, 300);
    int error = errno;
    void *written = NULL;
    pthread_join(writer, &written);
    close(waiting);
    cr_assert_eq((intptr_t)written, 4);
    cr_assert_eq(got, 0, "epoll_wait gave %d (%s) instead of its timeout", got, strerror(error));
    cr_assert_eq(dpool_output_watch_fired(s_watch), 1);
}

Test(output_watch, more_writes_than_the_ring_holds_fire_and_the_watch_goes_on)
{
    s_watch_pipes();
    // Thousands of writes between two looks overflow the completion ring many times.
    for (int i = 0; i < 5000; i++) {
        cr_assert_eq(write(i % 2 ? s_out[1] : s_err[1], "z", 1), 1);
        if (i % 1000 == 999) {
            s_drain(s_out[0]);
            s_drain(s_err[0]);
        }
    }
    int first = dpool_output_watch_fired(s_watch);
    cr_assert_eq(first, 1);
    // What the kernel held back is taken over the next looks; then it is quiet...
    int looks = 0;
    while (dpool_output_watch_fired(s_watch) == 1 && looks < 100)
        looks++;
    cr_assert_lt(looks, 100, "the watch never went quiet");
    cr_assert_eq(dpool_output_watch_fired(s_watch), 0);
    // ...and still watching both pipes.
    cr_assert_eq(write(s_out[1], "x", 1), 1);
    cr_assert_eq(dpool_output_watch_fired(s_watch), 1, "stdout after the overflow");
    cr_assert_eq(write(s_err[1], "x", 1), 1);
    cr_assert_eq(dpool_output_watch_fired(s_watch), 1, "stderr after the overflow");
    cr_assert_eq(dpool_output_watch_fired(s_watch), 0);
}

Test(output_watch, the_write_end_closed_fires)
{
    s_watch_pipes();
    close(s_out[1]);
    s_out[1] = -1;
    cr_assert_eq(dpool_output_watch_fired(s_watch), 1, "cannot tell: counts as a write");
}

Test(output_watch, the_environment_variable_turns_it_off)
{
    setenv(DPOOL_OUTPUT_WATCH_OFF_ENV, "1", 1);
    int read_ends[2] = {s_out[0], s_err[0]};
    errno = 0;
    cr_assert_null(dpool_output_watch_new(read_ends));
    cr_assert_eq(errno, ENOTSUP);
}

Test(output_watch, a_missing_pipe_is_refused)
{
    int read_ends[2] = {s_out[0], -1};
    errno = 0;
    cr_assert_null(dpool_output_watch_new(read_ends));
    cr_assert_eq(errno, EBADF);
}
