/*  Shared by the end-to-end tests of chained TASKs (test_worker_chain.c) and of the
    output of processes that run ahead (test_worker_output.c): the arguments they send,
    chained TASKs and KILLs, and the checks of what comes back. Over test_worker_play.h,
    whose broker socket and daemon they use. */
#ifndef WORKER_CHAIN_FIXTURE_H
#define WORKER_CHAIN_FIXTURE_H

#include "test_worker_play.h"

#include <stdint.h>
#include <string.h>

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
static inline void
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

static inline void
s_send_kill(uint64_t task_id)
{
    dpool_msg_t msg = {.command = DPOOL_CMD_KILL, .task_id = task_id};
    cr_assert_eq(dpool_proto_send(s_router, &msg, s_peer), DPOOL_OK);
}

// Waits for the successful result of an example.initialized task_id carrying credits;
// returns the pid of the process that ran it.
static inline uint64_t
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
static inline void
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
static inline void
s_expect_quiet(int ms)
{
    dpool_msg_t msg = {0};
    bool got = s_recv(&msg, ms);
    cr_assert_not(got, "unexpected %s (task %llu, count %u)", dpool_proto_command_name(msg.command),
                  (unsigned long long)msg.task_id, (unsigned)msg.count);
    dpool_msg_reset(&msg);
}

// Output collected per task: its stdout and stderr bytes.
typedef struct {
    char out[64];
    char err[64];
} s_task_output_t;

static inline void
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
static inline void
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

#endif
