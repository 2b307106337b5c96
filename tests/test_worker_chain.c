/*  dpool-worker end to end, chained TASKs: a TASK with `after` runs in the process of
    the task it follows, right after it, without a credit; it is refused with -22 when
    that task had ended; KILL drops it from its queue; a crash or time limit of the
    task before it leaves it to the replacement process. Output stays with its task
    while processes run ahead, whether they watch their pipes through io_uring or poll
    them (DPOOL_NO_IO_URING). The test plays the broker (test_worker_play.h); the
    daemon is stopped by its pid in .fini. */
#include "test_worker_play.h"

#include "dpool_output_watch.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

TestSuite(worker_chain, .fini = teardown, .timeout = 120);

// Arguments, msgpack: [0], [1], [2], [30] (seconds for example.initialized or sleep),
// [], and example.print's ["bb", 2], ["ccc", 3], ["never", 1].
static const char S_ZERO[] = "\x91\x00";
static const char S_ONE[] = "\x91\x01";
static const char S_FIVE[] = "\x91\x05";
static const char S_THIRTY[] = "\x91\x1e";
static const char S_NONE[] = "\x90";
static const char S_PRINT_BB[] = "\x92\xa2"
                                 "bb\x02";
static const char S_PRINT_CCC[] = "\x92\xa3"
                                  "ccc\x03";
static const char S_PRINT_NEVER[] = "\x92\xa5"
                                    "never\x01";
#define S_SIZE(args) (sizeof(args) - 1)

// Sends TASK [task_id, function, 0, time_limit_ms, after] + args. Spends no credit
// of the test broker's: a chained TASK takes none.
static void
s_send_chained(uint64_t task_id, uint64_t after, const char *function, const void *args,
               size_t args_size, uint32_t time_limit_ms)
{
    dpool_msg_t msg = {.command = DPOOL_CMD_TASK,
                       .task_id = task_id,
                       .after_id = after,
                       .name = (char *)function,
                       .time_limit_ms = time_limit_ms,
                       .payload = zframe_new(args, args_size)};
    cr_assert_eq(dpool_proto_send(s_router, &msg, s_peer), DPOOL_OK);
}

static void
s_send_kill(uint64_t task_id)
{
    dpool_msg_t msg = {.command = DPOOL_CMD_KILL, .task_id = task_id};
    cr_assert_eq(dpool_proto_send(s_router, &msg, s_peer), DPOOL_OK);
}

// Waits for the successful result of an example.initialized task_id carrying credits;
// returns the pid of the process that ran it.
static uint64_t
s_expect_pid(uint64_t task_id, unsigned credits)
{
    dpool_msg_t msg = {0};
    msgpack_unpacked result;
    msgpack_unpacked_init(&result);
    s_expect_result(task_id, &msg, &result, 10000);
    cr_assert_eq(msg.code, DPOOL_OK, "task %llu: code %d, %s", (unsigned long long)task_id,
                 msg.code, msg.text ? msg.text : "");
    cr_assert_eq(msg.count, credits, "task %llu returned %u credits, not %u",
                 (unsigned long long)task_id, (unsigned)msg.count, credits);
    cr_assert_eq(result.data.type, MSGPACK_OBJECT_ARRAY);
    cr_assert_eq(result.data.via.array.size, 2);
    uint64_t pid = result.data.via.array.ptr[1].via.u64;
    cr_assert_gt(pid, 0);
    msgpack_unpacked_destroy(&result);
    dpool_msg_reset(&msg);
    return pid;
}

// Waits for -22 for task_id, chained after `after`: no payload, no credit.
static void
s_expect_unchained(uint64_t task_id, uint64_t after)
{
    dpool_msg_t msg = {0};
    s_expect_result(task_id, &msg, NULL, 5000);
    cr_assert_eq(msg.code, DPOOL_ERR_UNCHAINED, "code %d: %s", msg.code, msg.text ? msg.text : "");
    char text[64];
    snprintf(text, sizeof text, "task %llu had ended on this host", (unsigned long long)after);
    cr_assert_str_eq(msg.text, text);
    cr_assert_eq(msg.count, 0, "a chained TASK took no credit, so its refusal returns none");
    dpool_msg_reset(&msg);
}

// Nothing but heartbeats for ms milliseconds: no stray result, output or CREDIT.
static void
s_expect_quiet(int ms)
{
    dpool_msg_t msg = {0};
    bool got = s_recv(&msg, ms);
    cr_assert_not(got, "unexpected %s (task %llu, count %u)", dpool_proto_command_name(msg.command),
                  (unsigned long long)msg.task_id, (unsigned)msg.count);
    dpool_msg_reset(&msg);
}

// A head that runs 1 s and two successors chained behind it, sent back to back: three
// results in order from one process, the credit only with the last.
static void
s_check_chain_of_three(unsigned processes)
{
    s_send_raw_task(1, "example.initialized", S_ONE, S_SIZE(S_ONE));
    s_send_chained(2, 1, "example.initialized", S_ZERO, S_SIZE(S_ZERO), 0);
    s_send_chained(3, 2, "example.initialized", S_ZERO, S_SIZE(S_ZERO), 0);
    uint64_t head = s_expect_pid(1, 0);
    cr_assert_eq(s_expect_pid(2, 0), head, "the successor ran in its predecessor's process");
    cr_assert_eq(s_expect_pid(3, 1), head, "the successor ran in its predecessor's process");
    cr_assert_eq(s_credits, processes);
    s_expect_quiet(300);
    cr_assert_eq(s_credits, processes, "no credit beyond one per process");
}

Test(worker_chain, chain_of_three_runs_in_order_in_one_process)
{
    s_start_ready("1", NULL);
    s_check_chain_of_three(1);
}

Test(worker_chain, chain_of_three_stays_in_its_process_while_another_is_idle)
{
    s_start_ready("2", NULL);
    s_check_chain_of_three(2);
    s_hostpid(4); // plain tasks run as before
    cr_assert_eq(s_credits, 2);
}

// Waits for task_id's successful result carrying credits.
static void
s_expect_ok_with(uint64_t task_id, unsigned credits)
{
    dpool_msg_t msg = {0};
    s_expect_result(task_id, &msg, NULL, 10000);
    cr_assert_eq(msg.code, DPOOL_OK, "task %llu: %s", (unsigned long long)task_id,
                 msg.text ? msg.text : "");
    cr_assert_eq(msg.count, credits, "task %llu returned %u credits, not %u",
                 (unsigned long long)task_id, (unsigned)msg.count, credits);
    dpool_msg_reset(&msg);
}

Test(worker_chain, a_chained_task_whose_predecessor_is_gone_runs_in_an_idle_process_or_is_refused)
{
    s_start_ready("1", NULL);
    // Its `after` is no task here (it ended, and its result crossed this TASK): the
    // idle process runs it, on no credit, so it brings none back.
    s_send_chained(5, 999, "hostpid", S_NONE, S_SIZE(S_NONE), 0);
    s_expect_ok_with(5, 0);
    cr_assert_eq(s_credits, 1);
    // With the one process busy, running it elsewhere would take the pool past its
    // cap: refused, -22, and the broker queues it again.
    s_send_raw_task(1, "example.initialized", S_ONE, S_SIZE(S_ONE));
    s_send_chained(6, 999, "hostpid", S_NONE, S_SIZE(S_NONE), 0);
    s_expect_unchained(6, 999);
    s_expect_pid(1, 1);
    cr_assert_eq(s_credits, 1);
    s_expect_quiet(300);
    cr_assert_eq(s_credits, 1, "one credit per process, none lost or doubled");
}

// Output collected per task: its stdout and stderr bytes.
typedef struct {
    char out[64];
    char err[64];
} s_task_output_t;

static void
s_append(char *text, size_t size, const dpool_msg_t *msg)
{
    size_t used = strlen(text);
    cr_assert_lt(used + msg->text_size, size, "more output than expected");
    memcpy(text + used, msg->text, msg->text_size);
    text[used + msg->text_size] = '\0';
}

// Reads until the results of tasks first..last (consecutive ids; tasks holds last + 1) have come,
// in order, each successful, the last with credits and the others with none;
// collects each task's output into tasks[id], failing on output of a task whose result
// has come already, or of one outside the chain. (A task's output may come before the
// results of the tasks before it: a process keeps results of silent tasks back.)
static void
s_collect_chain(s_task_output_t *tasks, uint64_t first, uint64_t last, unsigned credits)
{
    uint64_t next = first; // the task whose result is due
    dpool_msg_t msg = {0};
    while (next <= last) {
        cr_assert(s_recv(&msg, 10000), "nothing from task %llu within 10 s",
                  (unsigned long long)next);
        if (msg.command == DPOOL_CMD_CREDIT)
            continue;
        if (msg.command == DPOOL_CMD_WORKER_OUTPUT) {
            cr_assert(msg.task_id >= next && msg.task_id <= last,
                      "output of task %llu while the result of task %llu is due",
                      (unsigned long long)msg.task_id, (unsigned long long)next);
            s_task_output_t *task = &tasks[msg.task_id];
            bool out = msg.count == DPOOL_STREAM_STDOUT;
            s_append(out ? task->out : task->err, sizeof task->out, &msg);
            continue;
        }
        cr_assert_eq(msg.task_id, next, "%s of task %llu while task %llu runs",
                     dpool_proto_command_name(msg.command), (unsigned long long)msg.task_id,
                     (unsigned long long)next);
        cr_assert_eq(msg.command, DPOOL_CMD_WORKER_RESULT);
        cr_assert_eq(msg.code, DPOOL_OK, "task %llu: %s", (unsigned long long)next,
                     msg.text ? msg.text : "");
        cr_assert_eq(msg.count, next == last ? credits : 0);
        next++;
    }
    dpool_msg_reset(&msg);
}

Test(worker_chain, chained_output_is_attributed_to_its_own_task_and_precedes_its_result)
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

Test(worker_chain, silent_tasks_run_ahead_and_output_between_them_stays_with_its_task)
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

Test(worker_chain, a_long_mixed_chain_keeps_every_output_with_its_task)
{
    s_check_mixed_chain();
}

Test(worker_chain, a_long_mixed_chain_keeps_every_output_with_its_task_when_pipes_are_polled)
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

Test(worker_chain, processes_watch_their_pipes_through_io_uring)
{
    s_need_io_uring();
    s_start_ready("2", NULL);
    unsigned with_ring = 0;
    cr_assert_eq(s_count_processes(&with_ring), 2);
    cr_assert_eq(with_ring, 2, "every process that runs ahead watches its pipes");
}

Test(worker_chain, processes_told_not_to_use_io_uring_poll_their_pipes)
{
    s_need_io_uring();
    setenv(DPOOL_OUTPUT_WATCH_OFF_ENV, "1", 1);
    s_start_ready("2", NULL);
    unsigned with_ring = 0;
    cr_assert_eq(s_count_processes(&with_ring), 2);
    cr_assert_eq(with_ring, 0);
}

Test(worker_chain, output_larger_than_a_pipe_between_silent_tasks_stays_with_its_task)
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

Test(worker_chain, kill_of_the_running_task_leaves_the_tasks_written_ahead_to_the_replacement)
{
    s_start_ready("1", NULL);
    s_send_raw_task(1, "sleep", S_THIRTY, S_SIZE(S_THIRTY));
    s_send_chained(2, 1, "example.initialized", S_ZERO, S_SIZE(S_ZERO), 0);
    s_send_chained(3, 2, "example.initialized", S_ZERO, S_SIZE(S_ZERO), 0);
    // Its answer proves the TASKs before it were handled (and 2, 3 written ahead).
    s_send_chained(9, 999, "noop", S_NONE, S_SIZE(S_NONE), 0);
    s_expect_unchained(9, 999);
    s_send_kill(1);
    // No result for task 1; 2 and 3 run in one replacement process, the last with the
    // chain's credit.
    uint64_t replacement = s_expect_pid(2, 0);
    cr_assert_eq(s_expect_pid(3, 1), replacement);
    s_expect_quiet(300);
    cr_assert_eq(s_credits, 1);
}

// Waits for the successful results of tasks first..last, in order, each within
// timeout_ms.
static void
s_expect_ok(uint64_t first, uint64_t last, int timeout_ms)
{
    dpool_msg_t msg = {0};
    for (uint64_t id = first; id <= last; id++) {
        s_expect_result(id, &msg, NULL, timeout_ms);
        cr_assert_eq(msg.code, DPOOL_OK, "task %llu: code %d, %s", (unsigned long long)id, msg.code,
                     msg.text ? msg.text : "");
        dpool_msg_reset(&msg);
    }
}

// [0.00008]: example sleep for 80 us, shorter than what a process keeps results back
// after, longer than the daemon takes to read the result before.
static const char S_80US[] = "\x91\xcb\x3f\x14\xf8\xb5\x88\xe3\x68\xf1";

// Sends sleep 1 s, two 80 us sleeps and a 30 s sleep chained in one process, then a
// quick task after them; expects results 1 (in 10 s) and, when expect_two, 2 and 3
// (in 5 s each, though task 4 runs 30 s: the daemon takes them from the process's
// shared memory within milliseconds; 5 s is slack for a loaded machine).
static void
s_send_short_then_long(bool expect_two)
{
    s_start_ready("1", NULL);
    s_send_raw_task(1, "sleep", S_ONE, S_SIZE(S_ONE));
    s_send_chained(2, 1, "sleep", S_80US, S_SIZE(S_80US), 0);
    s_send_chained(3, 2, "sleep", S_80US, S_SIZE(S_80US), 0);
    s_send_chained(4, 3, "sleep", S_THIRTY, S_SIZE(S_THIRTY), 0);
    s_send_chained(5, 4, "example.initialized", S_ZERO, S_SIZE(S_ZERO), 0);
    s_expect_ok(1, 1, 10000);
    if (expect_two)
        s_expect_ok(2, 3, 5000);
}

Test(worker_chain, results_kept_back_come_while_a_long_task_after_them_runs_and_a_kill_stops_it)
{
    // Tasks 2 and 3 end while the 30 s task 4 runs after them: their results come
    // anyway. A KILL of task 4, the running task by then, kills it; task 5 runs in the
    // replacement.
    s_send_short_then_long(true);
    s_send_kill(4);
    s_expect_pid(5, 1); // no result for task 4: killed, as a running task is
    s_expect_quiet(300);
    cr_assert_eq(s_credits, 1);
}

Test(worker_chain, kill_of_a_job_run_ahead_that_the_process_runs_kills_it)
{
    // The KILL of task 4 comes while the daemon may still count task 2 as running
    // (results kept back): the process runs task 4, and is killed for it.
    s_send_short_then_long(false);
    zclock_sleep(50);
    s_send_kill(4);
    s_expect_ok(2, 3, 5000);
    s_expect_pid(5, 1);
    s_expect_quiet(300);
    cr_assert_eq(s_credits, 1);
}

Test(worker_chain, a_quick_task_before_a_long_one_is_answered_while_the_long_one_runs)
{
    s_start_ready("1", NULL);
    s_send_raw_task(1, "noop", S_NONE, S_SIZE(S_NONE));
    s_send_chained(2, 1, "sleep", S_THIRTY, S_SIZE(S_THIRTY), 0);
    dpool_msg_t msg = {0};
    s_expect_result(1, &msg, NULL, 5000);
    cr_assert_eq(msg.code, DPOOL_OK);
    dpool_msg_reset(&msg);
}

Test(worker_chain, tasks_written_ahead_respect_maxtasksperchild)
{
    s_start_ready("1", "2");
    s_send_raw_task(1, "sleep", S_ONE, S_SIZE(S_ONE));
    for (uint64_t id = 2; id <= 5; id++)
        s_send_chained(id, id - 1, "example.initialized", S_ZERO, S_SIZE(S_ZERO), 0);
    dpool_msg_t msg = {0};
    s_expect_result(1, &msg, NULL, 10000);
    cr_assert_eq(msg.code, DPOOL_OK, "code %d: %s", msg.code, msg.text ? msg.text : "");
    dpool_msg_reset(&msg);
    // Two tasks per process: 1 and 2, then 3 and 4, then 5, each pair in a new process.
    uint64_t first = s_expect_pid(2, 0);
    uint64_t second = s_expect_pid(3, 0);
    cr_assert_neq(second, first);
    cr_assert_eq(s_expect_pid(4, 0), second);
    uint64_t third = s_expect_pid(5, 1);
    cr_assert_neq(third, second);
    cr_assert_neq(third, first);
    s_expect_quiet(300);
    cr_assert_eq(s_credits, 1);
}

Test(worker_chain, kill_of_a_queued_task_drops_it_and_the_chain_goes_on)
{
    s_start_ready("1", NULL);
    s_send_raw_task(1, "example.initialized", S_ONE, S_SIZE(S_ONE));
    // Task 2 would print; neither output nor a result of it may come.
    s_send_chained(2, 1, "example.print", S_PRINT_NEVER, S_SIZE(S_PRINT_NEVER), 0);
    s_send_chained(3, 2, "example.initialized", S_ZERO, S_SIZE(S_ZERO), 0);
    s_send_kill(2); // in the middle: task 3 stays the newest
    s_send_chained(4, 3, "example.initialized", S_ZERO, S_SIZE(S_ZERO), 0);
    s_send_kill(4); // the newest: task 3 is the newest again
    s_send_chained(5, 3, "example.initialized", S_ZERO, S_SIZE(S_ZERO), 0);
    // s_expect_result fails on any output, and on a result for another task.
    uint64_t head = s_expect_pid(1, 0);
    cr_assert_eq(s_expect_pid(3, 0), head);
    cr_assert_eq(s_expect_pid(5, 1), head);
    s_expect_quiet(300);
    cr_assert_eq(s_credits, 1);
}

Test(worker_chain, crash_of_the_running_task_leaves_its_successors_to_the_replacement)
{
    s_start_ready("1", NULL);
    s_send_raw_task(1, "example.initialized", S_ONE, S_SIZE(S_ONE));
    s_send_chained(2, 1, "crash", S_NONE, S_SIZE(S_NONE), 0);
    s_send_chained(3, 2, "example.initialized", S_ONE, S_SIZE(S_ONE), 0);
    uint64_t first = s_expect_pid(1, 0);
    dpool_msg_t msg = {0};
    s_expect_result(2, &msg, NULL, 10000);
    cr_assert_eq(msg.code, DPOOL_ERR_WORKER_LOST, "code %d: %s", msg.code,
                 msg.text ? msg.text : "");
    cr_assert_eq(msg.count, 0);
    int crashed = 0;
    cr_assert_eq(sscanf(msg.text, "worker process %d on ", &crashed), 1, "message: %s", msg.text);
    cr_assert_eq((uint64_t)crashed, first, "task 2 ran where task 1 had run");
    // Task 3 waits for the replacement or runs in it (1 s): a TASK chained after it
    // finds it either way.
    s_send_chained(4, 3, "example.initialized", S_ZERO, S_SIZE(S_ZERO), 0);
    uint64_t replacement = s_expect_pid(3, 0);
    cr_assert_neq(replacement, first);
    cr_assert_eq(s_expect_pid(4, 1), replacement);
    // The replacement went to the queue, not idle: no CREDIT of its own.
    s_expect_quiet(300);
    cr_assert_eq(s_credits, 1);
    dpool_msg_reset(&msg);
}

Test(worker_chain, crash_after_silent_tasks_ran_ahead_answers_them_and_loses_only_the_crashed_one)
{
    // Tasks 2-6 are silent and short, run ahead in one process, their results likely
    // kept back to go with a later one; task 7 crashes the process. Each silent task
    // is answered once, successfully; only task 7 is lost; task 8 runs in the
    // replacement.
    s_start_ready("1", NULL);
    s_send_raw_task(1, "sleep", S_ONE, S_SIZE(S_ONE));
    for (uint64_t id = 2; id <= 6; id++)
        s_send_chained(id, id - 1, "noop", S_NONE, S_SIZE(S_NONE), 0);
    s_send_chained(7, 6, "crash", S_NONE, S_SIZE(S_NONE), 0);
    s_send_chained(8, 7, "example.initialized", S_ZERO, S_SIZE(S_ZERO), 0);
    s_expect_ok(1, 6, 10000);
    dpool_msg_t msg = {0};
    s_expect_result(7, &msg, NULL, 10000);
    cr_assert_eq(msg.code, DPOOL_ERR_WORKER_LOST, "code %d: %s", msg.code,
                 msg.text ? msg.text : "");
    dpool_msg_reset(&msg);
    s_expect_pid(8, 1);
    s_expect_quiet(300);
    cr_assert_eq(s_credits, 1);
}

Test(worker_chain, time_limit_of_the_running_task_leaves_its_successor_to_the_replacement)
{
    s_start_ready("1", NULL);
    s_send_task_full(1, "sleep", S_THIRTY, S_SIZE(S_THIRTY), 0, 500);
    s_send_chained(2, 1, "example.initialized", S_ZERO, S_SIZE(S_ZERO), 0);
    dpool_msg_t msg = {0};
    s_expect_result(1, &msg, NULL, 10000);
    cr_assert_eq(msg.code, DPOOL_ERR_TASK_TIMEOUT, "code %d: %s", msg.code,
                 msg.text ? msg.text : "");
    cr_assert_eq(msg.count, 0);
    const char *process = strstr(msg.text, "process ");
    int killed = 0;
    cr_assert(process && sscanf(process, "process %d", &killed) == 1, "message: %s", msg.text);
    cr_assert_neq(s_expect_pid(2, 1), (uint64_t)killed);
    s_expect_quiet(300);
    cr_assert_eq(s_credits, 1);
    dpool_msg_reset(&msg);
}

Test(worker_chain, queue_of_one_process_holds_1024_chained_tasks_and_refuses_more)
{
    s_start_ready("1", NULL);
    // A head long enough that a loaded machine does not end it while 1,025 tasks queue.
    s_send_raw_task(1, "sleep", S_FIVE, S_SIZE(S_FIVE));
    // In batches, each answered by a probe (unchained at once), so the socket's
    // high-water mark (1000 messages) never drops one.
    for (uint64_t id = 2; id <= 1026; id++) {
        s_send_chained(id, id - 1, "noop", S_NONE, S_SIZE(S_NONE), 0);
        if (id % 256 == 0) {
            s_send_chained(100000 + id, 999999, "noop", S_NONE, S_SIZE(S_NONE), 0);
            s_expect_unchained(100000 + id, 999999);
        }
    }
    dpool_msg_t msg = {0};
    s_expect_result(1026, &msg, NULL, 10000); // at once, before the head ends
    cr_assert_eq(msg.code, DPOOL_ERR_QUEUE_FULL, "code %d: %s", msg.code, msg.text ? msg.text : "");
    cr_assert_eq(msg.count, 0);
    for (uint64_t id = 1; id <= 1025; id++) {
        s_expect_result(id, &msg, NULL, 20000);
        cr_assert_eq(msg.code, DPOOL_OK, "task %llu: %s", (unsigned long long)id,
                     msg.text ? msg.text : "");
        cr_assert_eq(msg.count, id == 1025 ? 1 : 0, "task %llu", (unsigned long long)id);
    }
    cr_assert_eq(s_credits, 1);
    dpool_msg_reset(&msg);
}

Test(worker_chain, sigterm_with_chained_tasks_queued_exits_zero)
{
    // Under the sanitizer build a queued job left unfreed fails the exit status.
    s_start_ready("1", NULL);
    s_send_raw_task(1, "sleep", S_THIRTY, S_SIZE(S_THIRTY));
    s_send_chained(2, 1, "echo", S_ONE, S_SIZE(S_ONE), 0);
    s_send_chained(3, 2, "echo", S_ONE, S_SIZE(S_ONE), 0);
    // Its answer proves the TASKs before it were handled: one connection keeps order.
    s_send_chained(9, 999, "echo", S_ONE, S_SIZE(S_ONE), 0);
    s_expect_unchained(9, 999);
    cr_assert_eq(kill(s_pid, SIGTERM), 0);
    dpool_msg_t msg = {0};
    while (!s_bye) {
        cr_assert(s_recv(&msg, 5000), "no BYE within 5 s of SIGTERM");
        cr_assert_neq(msg.command, DPOOL_CMD_WORKER_RESULT, "a result for task %llu",
                      (unsigned long long)msg.task_id);
    }
    int status = 0;
    cr_assert(s_reap(10000, &status), "the daemon did not exit within 10 s");
    s_pid = -1;
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
    dpool_msg_reset(&msg);
}
