/*  dpool-worker end to end, the output of processes that run ahead: a process runs
    chained silent tasks one after another without waiting for its daemon, stops after a
    task that wrote, and every byte of output comes as its own task's, before that
    task's result, whether the process watches its pipes through io_uring or polls them
    (DPOOL_NO_IO_URING). The test plays the broker (test_worker_play.h); the daemon is
    stopped by its pid in .fini. */
#include "worker_chain_fixture.h"

#include "dpool_output_watch.h"

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

TestSuite(worker_output, .fini = teardown, .timeout = 120);

Test(worker_output, chained_output_is_attributed_to_its_own_task_and_precedes_its_result)
{
    s_start_ready("2", NULL);
    // A silent head, then example.print ["bb", 2] and ["ccc", 3] chained behind it.
    s_send_raw_task(1, "sleep", S_ONE, S_SIZE(S_ONE));
    s_send_chained(2, 1, "example.print", S_PRINT_BB, S_SIZE(S_PRINT_BB), 0);
    s_send_chained(3, 2, "example.print", S_PRINT_CCC, S_SIZE(S_PRINT_CCC), 0);
    s_task_output_t tasks[4] = {0};
    s_collect_chain(tasks, 1, 3, 1);
    cr_assert_str_eq(tasks[1].out, "");
    cr_assert_str_eq(tasks[2].out, "bbbb");
    cr_assert_str_eq(tasks[2].err, "example.print done\n");
    cr_assert_str_eq(tasks[3].out, "ccccccccc");
    cr_assert_str_eq(tasks[3].err, "example.print done\n");
    s_expect_quiet(300);
}

Test(worker_output, silent_tasks_run_ahead_and_output_between_them_stays_with_its_task)
{
    s_start_ready("1", NULL);
    // While the head sleeps, the rest is written ahead to its process: silent noops,
    // which it runs past, and printing tasks, after which it skips the rest and the
    // daemon sends it again.
    s_send_raw_task(1, "sleep", S_ONE, S_SIZE(S_ONE));
    s_send_chained(2, 1, "noop", S_NONE, S_SIZE(S_NONE), 0);
    s_send_chained(3, 2, "example.print", S_PRINT_BB, S_SIZE(S_PRINT_BB), 0);
    s_send_chained(4, 3, "noop", S_NONE, S_SIZE(S_NONE), 0);
    s_send_chained(5, 4, "noop", S_NONE, S_SIZE(S_NONE), 0);
    s_send_chained(6, 5, "example.print", S_PRINT_CCC, S_SIZE(S_PRINT_CCC), 0);
    s_send_chained(7, 6, "noop", S_NONE, S_SIZE(S_NONE), 0);
    s_task_output_t tasks[8] = {0};
    s_collect_chain(tasks, 1, 7, 1);
    for (int silent = 1; silent <= 7; silent++) {
        if (silent == 3 || silent == 6)
            continue;
        cr_assert_str_eq(tasks[silent].out, "", "task %d", silent);
        cr_assert_str_eq(tasks[silent].err, "", "task %d", silent);
    }
    cr_assert_str_eq(tasks[3].out, "bbbb");
    cr_assert_str_eq(tasks[3].err, "example.print done\n");
    cr_assert_str_eq(tasks[6].out, "ccccccccc");
    cr_assert_str_eq(tasks[6].err, "example.print done\n");
    s_expect_quiet(300);
    cr_assert_eq(s_credits, 1);
}

// 120 chained tasks, printing and silent ones interleaved, handed ahead in batches:
// the process goes on past silent ones and stops after each printing one.
static void
s_check_mixed_chain(void)
{
    enum { S_LAST = 121 };
    s_start_ready("1", NULL);
    s_send_raw_task(1, "sleep", S_ONE, S_SIZE(S_ONE));
    for (uint64_t id = 2; id <= S_LAST; id++) {
        if (id % 4 == 0)
            s_send_chained(id, id - 1, "example.print", S_PRINT_BB, S_SIZE(S_PRINT_BB), 0);
        else if (id % 7 == 0)
            s_send_chained(id, id - 1, "example.print", S_PRINT_CCC, S_SIZE(S_PRINT_CCC), 0);
        else
            s_send_chained(id, id - 1, "noop", S_NONE, S_SIZE(S_NONE), 0);
    }
    static s_task_output_t tasks[S_LAST + 1];
    memset(tasks, 0, sizeof tasks);
    s_collect_chain(tasks, 1, S_LAST, 1);
    for (uint64_t id = 2; id <= S_LAST; id++) {
        const char *out = id % 4 == 0 ? "bbbb" : id % 7 == 0 ? "ccccccccc" : "";
        const char *err = id % 4 == 0 || id % 7 == 0 ? "example.print done\n" : "";
        cr_assert_str_eq(tasks[id].out, out, "task %llu", (unsigned long long)id);
        cr_assert_str_eq(tasks[id].err, err, "task %llu", (unsigned long long)id);
    }
    s_expect_quiet(300);
    cr_assert_eq(s_credits, 1);
}

Test(worker_output, a_long_mixed_chain_keeps_every_output_with_its_task)
{
    s_check_mixed_chain();
}

// 200 silent tasks chained behind a head that sleeps 1 s, so that they queue and go
// ahead to the process. The mark of running ahead: results the process keeps back go
// several in one write, so several in one BATCH; a process that stopped after every
// task (as after tasks that wrote) sends each alone.
static void
s_check_run_ahead(void)
{
    enum { S_LAST = 201 };
    s_start_ready("1", NULL);
    s_send_raw_task(1, "sleep", S_ONE, S_SIZE(S_ONE));
    for (uint64_t id = 2; id <= S_LAST; id++)
        s_send_chained(id, id - 1, "noop", S_NONE, S_SIZE(S_NONE), 0);
    static s_task_output_t tasks[S_LAST + 1];
    memset(tasks, 0, sizeof tasks);
    s_collect_chain(tasks, 1, S_LAST, 1);
    cr_assert_geq(s_batch_results_max, 2, "no two results travelled together: nothing ran ahead");
}

Test(worker_output, silent_tasks_run_ahead_and_their_results_travel_together)
{
    s_check_run_ahead();
}

Test(worker_output, silent_tasks_run_ahead_also_when_pipes_are_polled)
{
    setenv(DPOOL_OUTPUT_WATCH_OFF_ENV, "1", 1);
    s_check_run_ahead();
}

Test(worker_output, a_long_mixed_chain_keeps_every_output_with_its_task_when_pipes_are_polled)
{
    setenv(DPOOL_OUTPUT_WATCH_OFF_ENV, "1", 1); // the daemon and its processes inherit it
    s_check_mixed_chain();
}

// The parent of process pid, from /proc/PID/stat ("pid (comm) state ppid ..."); -1 if gone.
static pid_t
s_parent_of(const char *pid)
{
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%s/stat", pid);
    FILE *stat = fopen(path, "r");
    if (!stat)
        return -1;
    bool read = fgets(line, sizeof line, stat) != NULL;
    fclose(stat);
    const char *after_comm = read ? strrchr(line, ')') : NULL;
    int parent = -1;
    if (!after_comm || sscanf(after_comm, ") %*c %d", &parent) != 1)
        return -1;
    return (pid_t)parent;
}

// Whether process pid holds an io_uring (a descriptor of anon_inode:[io_uring]).
static bool
s_holds_a_ring(const char *pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%s/fd", pid);
    DIR *fds = opendir(path);
    cr_assert_not_null(fds, "cannot list %s", path);
    bool ring = false;
    for (struct dirent *fd; !ring && (fd = readdir(fds));) {
        char link[400], target[128] = "";
        snprintf(link, sizeof link, "%s/%s", path, fd->d_name);
        ssize_t size = readlink(link, target, sizeof target - 1);
        ring = size > 0 && strstr(target, "io_uring") != NULL;
    }
    closedir(fds);
    return ring;
}

// Counts the daemon's processes and, in *with_ring, those that hold an io_uring.
static unsigned
s_count_processes(unsigned *with_ring)
{
    DIR *proc = opendir("/proc");
    cr_assert_not_null(proc);
    unsigned processes = 0;
    *with_ring = 0;
    for (struct dirent *entry; (entry = readdir(proc));) {
        if (atoi(entry->d_name) <= 0 || s_parent_of(entry->d_name) != s_pid)
            continue;
        processes++;
        *with_ring += s_holds_a_ring(entry->d_name);
    }
    closedir(proc);
    return processes;
}

// Skips the test where this kernel gives this process no io_uring to watch with.
static void
s_need_io_uring(void)
{
    int pipe_fds[2];
    cr_assert_eq(pipe(pipe_fds), 0);
    int read_ends[2] = {pipe_fds[0], pipe_fds[0]};
    errno = 0;
    dpool_output_watch_t *watch = dpool_output_watch_new(read_ends);
    int error = errno;
    bool watched = watch != NULL;
    dpool_output_watch_destroy(&watch);
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    if (!watched)
        cr_skip_test("SKIPPED, no io_uring here: %s", strerror(error));
}

Test(worker_output, processes_watch_their_pipes_through_io_uring)
{
    s_need_io_uring();
    s_start_ready("2", NULL);
    unsigned with_ring = 0;
    cr_assert_eq(s_count_processes(&with_ring), 2);
    cr_assert_eq(with_ring, 2, "every process that runs ahead watches its pipes");
}

Test(worker_output, processes_told_not_to_use_io_uring_poll_their_pipes)
{
    s_need_io_uring();
    setenv(DPOOL_OUTPUT_WATCH_OFF_ENV, "1", 1);
    s_start_ready("2", NULL);
    unsigned with_ring = 0;
    cr_assert_eq(s_count_processes(&with_ring), 2);
    cr_assert_eq(with_ring, 0);
}

Test(worker_output, output_larger_than_a_pipe_between_silent_tasks_stays_with_its_task)
{
    // Task 5 writes 300,000 bytes: more than a pipe holds, so the daemon reads while it
    // runs and while silent tasks wait ahead of it in its process. Every byte must come
    // as task 5's, before its result, and the silent tasks around it print nothing.
    static const char print_large[] = "\x92\xaa"
                                      "0123456789\xcd\x75\x30"; // ["0123456789", 30000]
    enum { S_LAST = 10 };
    s_start_ready("1", NULL);
    s_send_raw_task(1, "sleep", S_ONE, S_SIZE(S_ONE));
    for (uint64_t id = 2; id <= S_LAST; id++) {
        if (id == 5)
            s_send_chained(id, id - 1, "example.print", print_large, S_SIZE(print_large), 0);
        else if (id == 8)
            s_send_chained(id, id - 1, "example.print", S_PRINT_BB, S_SIZE(S_PRINT_BB), 0);
        else
            s_send_chained(id, id - 1, "noop", S_NONE, S_SIZE(S_NONE), 0);
    }
    size_t out_bytes[S_LAST + 1] = {0};
    bool digits_in_order = true;
    uint64_t next = 1;
    dpool_msg_t msg = {0};
    while (next <= S_LAST) {
        cr_assert(s_recv(&msg, 10000), "nothing from task %llu within 10 s",
                  (unsigned long long)next);
        if (msg.command == DPOOL_CMD_CREDIT)
            continue;
        if (msg.command == DPOOL_CMD_WORKER_OUTPUT) {
            uint64_t id = msg.task_id;
            cr_assert(id >= next && id <= S_LAST, "output of task %llu after its result",
                      (unsigned long long)id);
            if (msg.count == DPOOL_STREAM_STDOUT) {
                for (size_t i = 0; i < msg.text_size; i++)
                    if (id == 5 && msg.text[i] != '0' + (char)((out_bytes[id] + i) % 10))
                        digits_in_order = false;
                out_bytes[id] += msg.text_size;
            }
            dpool_msg_reset(&msg);
            continue;
        }
        cr_assert_eq(msg.task_id, next, "%s of task %llu while task %llu runs",
                     dpool_proto_command_name(msg.command), (unsigned long long)msg.task_id,
                     (unsigned long long)next);
        cr_assert_eq(msg.command, DPOOL_CMD_WORKER_RESULT);
        cr_assert_eq(msg.code, DPOOL_OK, "task %llu: %s", (unsigned long long)next,
                     msg.text ? msg.text : "");
        dpool_msg_reset(&msg);
        next++;
    }
    for (uint64_t id = 1; id <= S_LAST; id++) {
        size_t expected = id == 5 ? 300000 : id == 8 ? 4 : 0;
        cr_assert_eq(out_bytes[id], expected, "task %llu: %zu bytes of stdout",
                     (unsigned long long)id, out_bytes[id]);
    }
    cr_assert(digits_in_order, "task 5's output arrived whole and in order");
    s_expect_quiet(300);
}
