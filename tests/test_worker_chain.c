/*  dpool-worker end to end, chained TASKs: a TASK with `after` runs in the process of
    the task it follows, right after it, without a credit; it is refused with -22 when
    that task had ended; KILL drops it from its queue; a crash or time limit of the
    task before it leaves it to the replacement process (the output of chained tasks:
    test_worker_output.c). The test plays the broker (test_worker_play.h); the daemon
    is stopped by its pid in .fini. */
#include "worker_chain_fixture.h"

#include <signal.h>
#include <stdint.h>
#include <unistd.h>
#include <string.h>

TestSuite(worker_chain, .fini = teardown, .timeout = 120);

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
