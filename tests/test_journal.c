/*  The broker's journal: the module on its own (records, replay, torn tails,
    compaction), and a real dpool-broker killed with SIGKILL and restarted on its
    journal, carrying accepted tasks over to the same client. */
#include "dpool_harness.h"
#include "dpool_journal.h"
#include "dpool_proto.h"
#include "peer_assert.h"

#include <criterion/criterion.h>
#include <dpool/errors.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static dpool_harness_t *harness;
static char dir[512];

static void
setup(void)
{
    harness = dpool_harness_new();
    cr_assert_not_null(harness);
    snprintf(dir, sizeof dir, "%s/journal", dpool_harness_dir(harness));
}

static void
teardown(void)
{
    dpool_harness_destroy(&harness);
}

TestSuite(journal, .init = setup, .fini = teardown, .timeout = 60);

typedef struct {
    uint64_t ids[64];
    char functions[64][32];
    size_t count;
} replayed_t;

static void
collect(void *ctx, const dpool_journal_entry_t *entry)
{
    replayed_t *replayed = ctx;
    cr_assert_lt(replayed->count, 64);
    replayed->ids[replayed->count] = entry->task_id;
    snprintf(replayed->functions[replayed->count], 32, "%s", entry->function);
    replayed->count++;
}

static dpool_journal_entry_t
entry_for(uint64_t task_id, const char *function)
{
    static const char args[] = {(char)0x91, 0x01}; // [1]
    return (dpool_journal_entry_t){.client_id = "Cclient",
                                   .client_id_size = 7,
                                   .pool_ref = 1,
                                   .cap = 2,
                                   .task_id = task_id,
                                   .function = function,
                                   .args = args,
                                   .args_size = sizeof args};
}

static dpool_journal_t *
open_journal(replayed_t *replayed)
{
    char why[256] = "";
    dpool_journal_t *journal = dpool_journal_open(dir, collect, replayed, why, sizeof why);
    cr_assert_not_null(journal, "%s", why);
    return journal;
}

Test(journal, replays_submissions_without_completions_in_order)
{
    replayed_t first = {0};
    dpool_journal_t *journal = open_journal(&first);
    cr_assert_eq(first.count, 0);
    for (uint64_t id = 1; id <= 5; id++) {
        dpool_journal_entry_t entry = entry_for(id, id % 2 ? "odd" : "even");
        cr_assert_eq(dpool_journal_submit(journal, &entry), 0);
    }
    cr_assert_eq(dpool_journal_done(journal, "Cclient", 7, 2), 0);
    cr_assert_eq(dpool_journal_done(journal, "Cclient", 7, 4), 0);
    cr_assert_eq(dpool_journal_commit(journal), 0);
    cr_assert_eq(dpool_journal_live(journal), 3);
    // Like a SIGKILL: no close. The file holds what was committed.
    replayed_t second = {0};
    dpool_journal_t *reopened = open_journal(&second);
    cr_assert_eq(second.count, 3);
    cr_assert_eq(second.ids[0], 1);
    cr_assert_eq(second.ids[1], 3);
    cr_assert_eq(second.ids[2], 5);
    cr_assert_str_eq(second.functions[1], "odd");
    dpool_journal_close(&reopened);
    cr_assert_null(reopened);
    dpool_journal_close(&journal);
}

Test(journal, uncommitted_records_are_not_replayed_and_a_torn_tail_is_dropped)
{
    // A child plays the broker that is killed: it commits one record, buffers another
    // and dies without closing (like SIGKILL, nothing more reaches the disk).
    pid_t child = fork();
    cr_assert_geq(child, 0);
    if (child == 0) {
        replayed_t none = {0};
        char why[256];
        dpool_journal_t *journal = dpool_journal_open(dir, NULL, &none, why, sizeof why);
        if (!journal)
            _exit(2);
        dpool_journal_entry_t entry = entry_for(1, "f");
        dpool_journal_submit(journal, &entry);
        if (dpool_journal_commit(journal) != 0)
            _exit(3);
        entry = entry_for(2, "f");
        dpool_journal_submit(journal, &entry);
        _exit(0);
    }
    int status = -1;
    cr_assert_eq(waitpid(child, &status, 0), child);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child failed: %d", status);
    // Half a record at the end, as a crash in the middle of a write leaves it.
    char path[600];
    snprintf(path, sizeof path, "%s/journal", dir);
    int fd = open(path, O_WRONLY | O_APPEND);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, "\x40\x00\x00\x00\x9b\xa1", 6), 6);
    close(fd);
    replayed_t replayed = {0};
    dpool_journal_t *reopened = open_journal(&replayed);
    cr_assert_eq(replayed.count, 1);
    cr_assert_eq(replayed.ids[0], 1);
    dpool_journal_close(&reopened);
}

Test(journal, a_resent_submission_is_journalled_once)
{
    replayed_t none = {0};
    dpool_journal_t *journal = open_journal(&none);
    dpool_journal_entry_t entry = entry_for(9, "f");
    dpool_journal_submit(journal, &entry);
    dpool_journal_submit(journal, &entry);
    cr_assert_eq(dpool_journal_live(journal), 1);
    dpool_journal_close(&journal);
    replayed_t replayed = {0};
    journal = open_journal(&replayed);
    cr_assert_eq(replayed.count, 1);
    dpool_journal_close(&journal);
}

Test(journal, compaction_keeps_the_file_near_its_live_content)
{
    replayed_t none = {0};
    dpool_journal_t *journal = open_journal(&none);
    char big_args[4096];
    memset(big_args, 0, sizeof big_args);
    big_args[0] = (char)0x91;
    big_args[1] = (char)0xc5; // bin 16
    big_args[2] = 0x0f;
    big_args[3] = (char)0xf0;
    uint64_t largest = 0;
    for (uint64_t id = 1; id <= 20000; id++) {
        dpool_journal_entry_t entry = entry_for(id, "f");
        entry.args = big_args;
        entry.args_size = 4 + 0x0ff0;
        dpool_journal_submit(journal, &entry);
        if (id > 1)
            dpool_journal_done(journal, "Cclient", 7, id - 1);
        if (id % 100 == 0) {
            cr_assert_eq(dpool_journal_commit(journal), 0);
            if (dpool_journal_file_size(journal) > largest)
                largest = dpool_journal_file_size(journal);
        }
    }
    cr_assert_eq(dpool_journal_live(journal), 1);
    // 20,000 tasks of 4 KiB went through; the file never held more than a bounded part.
    cr_assert_lt(largest, 64u << 20, "the journal grew to %llu bytes", (unsigned long long)largest);
    dpool_journal_close(&journal);
    replayed_t replayed = {0};
    journal = open_journal(&replayed);
    cr_assert_eq(replayed.count, 1);
    cr_assert_eq(replayed.ids[0], 20000);
    dpool_journal_close(&journal);
}

// --- a real broker, killed and restarted on its journal ---

static bool
receive(zsock_t *sock, dpool_cmd_t command, dpool_msg_t *msg, int timeout_ms)
{
    // Anything else, malformed messages included, is passed over until the deadline.
    int64_t deadline = zclock_mono() + timeout_ms;
    while (zclock_mono() < deadline) {
        if (dpool_peer_recv(sock, msg, (int)(deadline - zclock_mono()), NULL) == DPOOL_OK &&
            msg->command == command)
            return true;
        dpool_msg_reset(msg);
    }
    return false;
}

static zframe_t *
one_arg(void)
{
    const char args[] = {(char)0x91, 0x07}; // [7]
    return zframe_new(args, sizeof args);
}

Test(journal, a_killed_broker_restarted_on_its_journal_runs_the_accepted_tasks)
{
    const char *args[] = {"--journal", dir, NULL};
    const char *endpoint = dpool_harness_start_broker(harness, args);
    cr_assert_not_null(endpoint);
    zsock_t *client = connect_to(endpoint, "Cdurable");
    send_msg(client, (dpool_msg_t){.command = DPOOL_CMD_POOL_OPEN, .pool_ref = 1, .count = 2});
    dpool_msg_t msg;
    cr_assert(receive(client, DPOOL_CMD_POOL_OPENED, &msg, 5000));
    uint64_t first_epoch = msg.task_id;
    dpool_msg_reset(&msg);
    for (uint64_t id = 1; id <= 3; id++)
        send_msg(client, (dpool_msg_t){.command = DPOOL_CMD_SUBMIT,
                                       .pool_ref = 1,
                                       .task_id = id,
                                       .name = "f",
                                       .payload = one_arg()});
    // STATUS after the submissions: its answer proves the loop turn that took them ended,
    // and with it the group commit.
    send_msg(client, (dpool_msg_t){.command = DPOOL_CMD_STATUS});
    cr_assert(receive(client, DPOOL_CMD_STATUS_REPLY, &msg, 5000));
    dpool_msg_reset(&msg);
    pid_t broker = dpool_harness_broker_pid(harness);
    cr_assert(dpool_harness_signal(harness, broker, SIGKILL));
    dpool_harness_stop(harness, broker);
    zsock_destroy(&client);

    endpoint = dpool_harness_start_broker(harness, args);
    cr_assert_not_null(endpoint, "the broker did not restart on its journal");
    client = connect_to(endpoint, "Cdurable");
    // The client re-attaches and re-sends one task: it must still run only once.
    send_msg(client, (dpool_msg_t){.command = DPOOL_CMD_POOL_OPEN, .pool_ref = 1, .count = 2});
    cr_assert(receive(client, DPOOL_CMD_POOL_OPENED, &msg, 5000));
    cr_assert_eq(msg.code, DPOOL_OK);
    cr_assert_neq(msg.task_id, first_epoch, "a restarted broker must show a new epoch");
    dpool_msg_reset(&msg);
    send_msg(client, (dpool_msg_t){.command = DPOOL_CMD_SUBMIT,
                                   .pool_ref = 1,
                                   .task_id = 2,
                                   .name = "f",
                                   .payload = one_arg()});
    zsock_t *worker = connect_to(endpoint, "Wjournal-worker");
    char *functions[] = {"f"};
    send_msg(worker, (dpool_msg_t){.command = DPOOL_CMD_WORKER_HELLO,
                                   .name = "jhost",
                                   .pid = 1,
                                   .count = 4,
                                   .functions = functions,
                                   .function_count = 1});
    send_msg(worker, (dpool_msg_t){.command = DPOOL_CMD_CREDIT, .count = 4});
    int seen[4] = {0};
    for (int i = 0; i < 3; i++) {
        cr_assert(receive(worker, DPOOL_CMD_TASK, &msg, 5000), "task %d never came", i);
        send_msg(worker, (dpool_msg_t){.command = DPOOL_CMD_WORKER_RESULT,
                                       .task_id = msg.task_id,
                                       .count = 1,
                                       .payload = one_arg()});
        dpool_msg_reset(&msg);
    }
    for (int i = 0; i < 3; i++) {
        cr_assert(receive(client, DPOOL_CMD_RESULT, &msg, 5000), "result %d never came", i);
        cr_assert_eq(msg.code, DPOOL_OK);
        cr_assert(msg.task_id >= 1 && msg.task_id <= 3);
        seen[msg.task_id]++;
        dpool_msg_reset(&msg);
    }
    cr_assert(seen[1] == 1 && seen[2] == 1 && seen[3] == 1, "results: %d %d %d", seen[1], seen[2],
              seen[3]);
    cr_assert_not(receive(worker, DPOOL_CMD_TASK, &msg, 500), "a task ran twice");
    zsock_destroy(&worker);
    zsock_destroy(&client);
}
