/*  Tests for dpool_sched, the broker's scheduler. It is pure (time is a parameter),
    so every test drives it directly: pools, hosts and credits are set up, and the
    sequence of dispatch results is checked against the rules of docs/PROTOCOL.md
    ("Scheduling rules"). Hosts, credits and functions on offer: test_sched_hosts.c;
    the fixture both share: sched_fixture.h. */
#include "sched_fixture.h"

#include <criterion/criterion.h>
#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/lsan_interface.h>
#endif
#include <stdint.h>
#include <string.h>

TestSuite(sched, .init = setup, .fini = teardown, .timeout = 10);

static uint64_t
s_random(uint64_t *state)
{
    // xorshift64: deterministic, so a failure replays identically.
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

Test(sched, dispatches_exactly_cap_tasks_and_one_more_per_completion)
{
    dpool_sched_pool_t *pool = dpool_sched_pool_new(sched, 3);
    cr_assert_not_null(pool);
    dpool_sched_host_t *host = s_add_host(0, 8, "f");
    cr_assert_eq(dpool_sched_credit(sched, host, 8), 8);
    int values[20];
    for (int i = 0; i < 20; i++)
        s_submit(pool, "f", &values[i], 0);

    dispatch_t first[3];
    for (int i = 0; i < 3; i++)
        cr_assert(s_dispatch(0, &first[i]), "dispatch %d of 3 should succeed", i);
    cr_assert_not(s_dispatch(0, NULL), "a fourth task must wait for the cap");
    dpool_sched_pool_stats_t stats = s_stats(pool);
    cr_assert_eq(stats.running, 3);
    cr_assert_eq(stats.queued, 17);
    cr_assert_eq(stats.effective_cap, 3);
    cr_assert_eq(dpool_sched_host_credits(host), 5, "only 3 credits were used");

    cr_assert_eq(dpool_sched_complete(sched, first[1].task_id, host, true, 0), first[1].task_data);
    cr_assert(s_dispatch(0, NULL), "a completion frees one slot");
    cr_assert_not(s_dispatch(0, NULL), "and only one");
    cr_assert_eq(s_stats(pool).running, 3);
}

// A simulated cluster: the test plays the worker daemons, returning one credit per
// completed task (as WORKER_RESULT does) at random later moments.
#define SIM_POOLS 3
#define SIM_HOSTS 2
#define SIM_MAX_RUNNING 64

typedef struct {
    uint64_t task_id;
    int host;
} sim_running_t;

Test(sched, running_count_never_exceeds_cap_over_random_interleaving)
{
    const uint32_t caps[SIM_POOLS] = {3, 5, 0};
    const uint32_t processes[SIM_HOSTS] = {4, 6};
    const char *const functions[] = {"f", "g"};
    dpool_sched_pool_t *pools[SIM_POOLS];
    for (int p = 0; p < SIM_POOLS; p++)
        pools[p] = dpool_sched_pool_new(sched, caps[p]);
    const char *const both[] = {"f", "g"};
    uint32_t owed[SIM_HOSTS];
    for (int h = 0; h < SIM_HOSTS; h++) {
        hosts[h] = dpool_sched_host_add(sched, &host_data[h], processes[h], both, 2);
        cr_assert_not_null(hosts[h]);
        owed[h] = processes[h];
    }
    sim_running_t running[SIM_MAX_RUNNING];
    size_t running_count = 0;
    int pool_tag[SIM_POOLS];
    size_t submitted = 0, completed = 0;
    size_t peak[SIM_POOLS] = {0};
    uint64_t seed = 0x9E3779B97F4A7C15u;

    for (int step = 0; step < 20000; step++) {
        uint64_t r = s_random(&seed);
        switch (r % 4) {
        case 0: {
            int p = (int)((r >> 8) % SIM_POOLS);
            s_submit(pools[p], functions[(r >> 16) % 2], &pool_tag[p], step);
            submitted++;
            break;
        }
        case 1: {
            dispatch_t d;
            if (!s_dispatch(step, &d))
                break;
            cr_assert_lt(running_count, SIM_MAX_RUNNING);
            int h = (int *)d.host_data - host_data;
            cr_assert(h >= 0 && h < SIM_HOSTS, "dispatch named an unknown host");
            running[running_count++] = (sim_running_t){d.task_id, h};
            break;
        }
        case 2: {
            if (running_count == 0)
                break;
            size_t i = (r >> 8) % running_count;
            sim_running_t done = running[i];
            running[i] = running[--running_count];
            cr_assert_not_null(
                dpool_sched_complete(sched, done.task_id, hosts[done.host], (r >> 20) & 1, 0));
            owed[done.host]++;
            completed++;
            break;
        }
        default: {
            int h = (int)((r >> 8) % SIM_HOSTS);
            cr_assert_eq(dpool_sched_credit(sched, hosts[h], owed[h]), owed[h],
                         "credits for idle processes must all be accepted");
            owed[h] = 0;
            break;
        }
        }
        for (int p = 0; p < SIM_POOLS; p++) {
            dpool_sched_pool_stats_t stats = s_stats(pools[p]);
            cr_assert_leq(stats.running, stats.effective_cap, "pool %d over its cap at step %d", p,
                          step);
            peak[p] = stats.running > peak[p] ? stats.running : peak[p];
        }
        for (int h = 0; h < SIM_HOSTS; h++)
            cr_assert_leq(dpool_sched_host_running(hosts[h]), processes[h]);
    }
    cr_assert_gt(completed, 1000, "the interleaving should exercise many completions");
    cr_assert_eq(peak[0], caps[0], "the run should fill pool 0 up to its cap");
    cr_assert_eq(peak[1], caps[1], "the run should fill pool 1 up to its cap");
    cr_assert_eq(dpool_sched_task_count(sched), submitted - completed);
    cr_assert_eq(s_stats(pools[2]).effective_cap, 10, "cap 0 = the 4 + 6 processes");
}

Test(sched, dispatches_tasks_of_a_pool_in_submission_order)
{
    dpool_sched_pool_t *pool = dpool_sched_pool_new(sched, 0);
    dpool_sched_host_t *host = s_add_host(0, 10, "f");
    int values[10];
    uint64_t ids[10];
    for (int i = 0; i < 10; i++) {
        values[i] = i;
        ids[i] = s_submit(pool, "f", &values[i], 0);
    }
    cr_assert_eq(dpool_sched_credit(sched, host, 10), 10);
    for (int i = 0; i < 10; i++) {
        dispatch_t d;
        cr_assert(s_dispatch(0, &d));
        cr_assert_eq(*(int *)d.task_data, i, "dispatch %d took task %d", i, *(int *)d.task_data);
        cr_assert_eq(d.task_id, ids[i]);
        cr_assert_eq(d.host_data, &host_data[0]);
    }
    cr_assert_not(s_dispatch(0, NULL));
}

Test(sched, pools_with_work_take_turns)
{
    dpool_sched_pool_t *a = dpool_sched_pool_new(sched, 100);
    dpool_sched_pool_t *b = dpool_sched_pool_new(sched, 100);
    dpool_sched_host_t *host = s_add_host(0, 20, "f");
    int in_a[10], in_b[10];
    for (int i = 0; i < 10; i++)
        s_submit(a, "f", &in_a[i], 0);
    for (int i = 0; i < 10; i++)
        s_submit(b, "f", &in_b[i], 0);
    cr_assert_eq(dpool_sched_credit(sched, host, 20), 20);

    int previous = -1;
    for (int i = 0; i < 20; i++) {
        dispatch_t d;
        cr_assert(s_dispatch(0, &d));
        int *value = d.task_data;
        int which = (value >= in_a && value < in_a + 10) ? 0 : 1;
        cr_assert_neq(which, previous, "dispatch %d came from the same pool twice in a row", i);
        previous = which;
    }
    cr_assert_eq(s_stats(a).running, 10);
    cr_assert_eq(s_stats(b).running, 10);
}

Test(sched, pool_with_long_queue_does_not_starve_a_later_pool)
{
    dpool_sched_pool_t *busy = dpool_sched_pool_new(sched, 0);
    dpool_sched_pool_t *late = dpool_sched_pool_new(sched, 0);
    dpool_sched_host_t *host = s_add_host(0, 2, "f");
    int busy_value = 0, late_value = 0;
    for (int i = 0; i < 1000; i++)
        s_submit(busy, "f", &busy_value, 0);
    cr_assert_eq(dpool_sched_credit(sched, host, 2), 2);
    dispatch_t running[2];
    cr_assert(s_dispatch(0, &running[0]));
    cr_assert(s_dispatch(0, &running[1]));
    cr_assert_eq(running[0].task_data, &busy_value);

    s_submit(late, "f", &late_value, 1);
    // Both processes free up: with two pools taking turns, one of them runs the late task.
    for (int i = 0; i < 2; i++)
        cr_assert_not_null(dpool_sched_complete(sched, running[i].task_id, host, true, 0));
    cr_assert_eq(dpool_sched_credit(sched, host, 2), 2);
    dispatch_t next[2];
    cr_assert(s_dispatch(2, &next[0]));
    cr_assert(s_dispatch(2, &next[1]));
    cr_assert(next[0].task_data == &late_value || next[1].task_data == &late_value,
              "the late pool's task must run within one round of the ring");
    cr_assert_eq(s_stats(late).running, 1);
}

Test(sched, task_whose_function_nobody_offers_expires_after_grace)
{
    dpool_sched_pool_t *pool = dpool_sched_pool_new(sched, 0);
    dpool_sched_host_t *host = s_add_host(0, 4, "f");
    cr_assert_eq(dpool_sched_credit(sched, host, 4), 4);
    cr_assert_eq(dpool_sched_next_deadline(sched), -1, "nothing waits for a function yet");
    int value = 42;
    const int64_t now = 1000;
    uint64_t id = s_submit(pool, "h", &value, now);

    cr_assert_not(s_dispatch(now, NULL), "no host offers h");
    cr_assert_eq(dpool_sched_next_deadline(sched), now + GRACE_MS);
    cr_assert_eq(s_stats(pool).queued, 1, "a task waiting for its function counts as queued");

    visits_t visits = {0};
    cr_assert_eq(dpool_sched_expire(sched, now + GRACE_MS - 1, s_collect, &visits), 0);
    cr_assert_eq(visits.count, 0, "nothing expires before the deadline");
    cr_assert_eq(dpool_sched_expire(sched, now + GRACE_MS, s_collect, &visits), 1);
    cr_assert_eq(visits.count, 1);
    cr_assert_eq(visits.ids[0], id);
    cr_assert_eq(visits.data[0], &value);

    dpool_sched_pool_stats_t stats = s_stats(pool);
    cr_assert_eq(stats.queued, 0);
    cr_assert_eq(stats.failed, 1);
    cr_assert_eq(dpool_sched_next_deadline(sched), -1);
    cr_assert_eq(dpool_sched_task_count(sched), 0);
    cr_assert_null(dpool_sched_complete(sched, id, NULL, true, 0), "an expired id is stale");
}

Test(sched, next_deadline_is_the_oldest_waiting_task)
{
    dpool_sched_pool_t *pool = dpool_sched_pool_new(sched, 0);
    int first = 1, second = 2;
    s_submit(pool, "h", &first, 100);
    s_submit(pool, "k", &second, 250);
    cr_assert_eq(dpool_sched_next_deadline(sched), 100 + GRACE_MS);
    visits_t visits = {0};
    cr_assert_eq(dpool_sched_expire(sched, 100 + GRACE_MS, s_collect, &visits), 1);
    cr_assert_eq(visits.data[0], &first);
    cr_assert_eq(dpool_sched_next_deadline(sched), 250 + GRACE_MS);
}

Test(sched, host_joining_within_grace_runs_the_waiting_task)
{
    dpool_sched_pool_t *pool = dpool_sched_pool_new(sched, 0);
    int value = 7;
    uint64_t id = s_submit(pool, "h", &value, 0);
    cr_assert_not(s_dispatch(GRACE_MS - 1, NULL));

    dpool_sched_host_t *host = s_add_host(0, 1, "h");
    cr_assert_eq(dpool_sched_credit(sched, host, 1), 1);
    dispatch_t d;
    cr_assert(s_dispatch(GRACE_MS - 1, &d), "the new host offers h");
    cr_assert_eq(d.task_id, id);
    cr_assert_eq(d.task_data, &value);
    cr_assert_eq(d.host_data, &host_data[0]);
    cr_assert_eq(dpool_sched_next_deadline(sched), -1);

    visits_t visits = {0};
    cr_assert_eq(dpool_sched_expire(sched, GRACE_MS, s_collect, &visits), 0);
    cr_assert_eq(visits.count, 0, "a dispatched task never expires");
    cr_assert_eq(s_stats(pool).running, 1);
}

Test(sched, queued_task_whose_last_host_left_waits_out_the_grace_again)
{
    dpool_sched_pool_t *pool = dpool_sched_pool_new(sched, 10);
    s_add_host(0, 1, "f");
    int value = 3;
    uint64_t id = s_submit(pool, "f", &value, 0);
    cr_assert_eq(dpool_sched_next_deadline(sched), -1, "f is offered, so the task queues");
    dpool_sched_host_remove(sched, &hosts[0], NULL, NULL);
    cr_assert_null(hosts[0]);

    cr_assert_not(s_dispatch(500, NULL));
    cr_assert_eq(dpool_sched_next_deadline(sched), 500 + GRACE_MS);
    visits_t visits = {0};
    cr_assert_eq(dpool_sched_expire(sched, 500 + GRACE_MS, s_collect, &visits), 1);
    cr_assert(s_visited(&visits, id, &value));
}

// The same with a cap-0 pool: when the last host leaves, the cluster has no process,
// so the pool has no room, yet its task must still fail after the grace period
// rather than wait forever for a host that may never come.
Test(sched, cap_zero_task_whose_last_host_left_still_expires)
{
    dpool_sched_pool_t *pool = dpool_sched_pool_new(sched, 0);
    s_add_host(0, 1, "f");
    int value = 3;
    uint64_t id = s_submit(pool, "f", &value, 0);
    dpool_sched_host_remove(sched, &hosts[0], NULL, NULL);

    cr_assert_not(s_dispatch(500, NULL));
    visits_t visits = {0};
    dpool_sched_expire(sched, 500 + GRACE_MS, s_collect, &visits);
    cr_assert(s_visited(&visits, id, &value), "the task never expires: next deadline %lld",
              (long long)dpool_sched_next_deadline(sched));
    cr_assert_eq(s_stats(pool).queued, 0);
}

Test(sched, complete_returns_the_task_data_once)
{
    dpool_sched_pool_t *pool = dpool_sched_pool_new(sched, 0);
    dpool_sched_host_t *host = s_add_host(0, 2, "f");
    cr_assert_eq(dpool_sched_credit(sched, host, 2), 2);
    int ok_value = 1, bad_value = 2;
    uint64_t ok_id = s_submit(pool, "f", &ok_value, 0);
    uint64_t bad_id = s_submit(pool, "f", &bad_value, 0);
    cr_assert_eq(s_dispatch_all(0), 2);

    cr_assert_eq(dpool_sched_complete(sched, ok_id, host, true, 0), &ok_value);
    cr_assert_null(dpool_sched_complete(sched, ok_id, host, true, 0), "second complete");
    cr_assert_eq(dpool_sched_complete(sched, bad_id, NULL, false, 0), &bad_value);

    dpool_sched_pool_stats_t stats = s_stats(pool);
    cr_assert_eq(stats.done, 1);
    cr_assert_eq(stats.failed, 1);
    cr_assert_eq(stats.running, 0);
    cr_assert_eq(dpool_sched_host_running(host), 0);
    cr_assert_eq(dpool_sched_task_count(sched), 0);
}

Test(sched, complete_ignores_stale_and_unknown_ids)
{
    dpool_sched_pool_t *pool = dpool_sched_pool_new(sched, 0);
    dpool_sched_host_t *host = s_add_host(0, 1, "f");
    int old_value = 1, new_value = 2;
    uint64_t old_id = s_submit(pool, "f", &old_value, 0);
    cr_assert_eq(dpool_sched_credit(sched, host, 1), 1);
    cr_assert_eq(s_dispatch_all(0), 1);
    cr_assert_not_null(dpool_sched_complete(sched, old_id, host, true, 0));

    // The freed slot is reused: the new task must not answer to the old id.
    uint64_t new_id = s_submit(pool, "f", &new_value, 0);
    cr_assert_neq(new_id, old_id);
    cr_assert_eq(dpool_sched_credit(sched, host, 1), 1);
    cr_assert_eq(s_dispatch_all(0), 1);
    cr_assert_null(dpool_sched_complete(sched, old_id, host, true, 0), "stale id");
    cr_assert_null(dpool_sched_complete(sched, 0, NULL, true, 0), "id 0");
    cr_assert_null(dpool_sched_complete(sched, UINT64_MAX, NULL, true, 0), "slot never made");
    cr_assert_null(dpool_sched_complete(sched, new_id ^ (1ull << 40), NULL, true, 0),
                   "right slot, wrong generation");
    cr_assert_eq(s_stats(pool).running, 1, "the new task is still running");
    cr_assert_eq(dpool_sched_complete(sched, new_id, host, true, 0), &new_value);
}

Test(sched, complete_refuses_a_task_from_another_host_or_not_running)
{
    dpool_sched_pool_t *pool = dpool_sched_pool_new(sched, 0);
    dpool_sched_host_t *runner = s_add_host(0, 1, "f");
    dpool_sched_host_t *other = s_add_host(1, 1, "g");
    int running_value = 1, queued_value = 2;
    uint64_t running_id = s_submit(pool, "f", &running_value, 0);
    uint64_t queued_id = s_submit(pool, "f", &queued_value, 0);
    cr_assert_eq(dpool_sched_credit(sched, runner, 1), 1);
    cr_assert_eq(s_dispatch_all(0), 1);

    cr_assert_null(dpool_sched_complete(sched, running_id, other, true, 0), "wrong host");
    cr_assert_null(dpool_sched_complete(sched, queued_id, runner, true, 0), "queued, not running");
    dpool_sched_pool_stats_t stats = s_stats(pool);
    cr_assert_eq(stats.running, 1);
    cr_assert_eq(stats.queued, 1);
    cr_assert_eq(stats.done + stats.failed, 0, "refused completions count nothing");
    cr_assert_eq(dpool_sched_complete(sched, running_id, runner, true, 0), &running_value);
}

Test(sched, cancel_removes_a_queued_task)
{
    dpool_sched_pool_t *pool = dpool_sched_pool_new(sched, 0);
    s_add_host(0, 1, "f");
    int value = 5;
    uint64_t id = s_submit(pool, "f", &value, 0);
    void *task_host = &value; // must be overwritten
    cr_assert_eq(dpool_sched_cancel(sched, id, &task_host), &value);
    cr_assert_null(task_host, "a queued task has no host");
    dpool_sched_pool_stats_t stats = s_stats(pool);
    cr_assert_eq(stats.queued, 0);
    cr_assert_eq(stats.failed, 1);
    cr_assert_null(dpool_sched_cancel(sched, id, &task_host), "already gone");
    cr_assert_eq(dpool_sched_task_count(sched), 0);
}

Test(sched, cancel_of_a_running_task_names_its_host)
{
    dpool_sched_pool_t *pool = dpool_sched_pool_new(sched, 0);
    dpool_sched_host_t *host = s_add_host(0, 2, "f");
    cr_assert_eq(dpool_sched_credit(sched, host, 2), 2);
    int value = 5;
    uint64_t id = s_submit(pool, "f", &value, 0);
    cr_assert_eq(s_dispatch_all(0), 1);
    void *task_host = NULL;
    cr_assert_eq(dpool_sched_cancel(sched, id, &task_host), &value);
    cr_assert_eq(task_host, &host_data[0]);
    cr_assert_eq(s_stats(pool).running, 0);
    cr_assert_eq(dpool_sched_host_running(host), 0);
    cr_assert_null(dpool_sched_complete(sched, id, host, true, 0), "a late result is ignored");
    cr_assert_eq(s_stats(pool).done, 0);
}

Test(sched, cancel_removes_a_task_waiting_for_its_function)
{
    dpool_sched_pool_t *pool = dpool_sched_pool_new(sched, 0);
    int value = 5;
    uint64_t id = s_submit(pool, "h", &value, 0);
    void *task_host = &value;
    cr_assert_eq(dpool_sched_cancel(sched, id, &task_host), &value);
    cr_assert_null(task_host);
    cr_assert_eq(s_stats(pool).queued, 0);
    cr_assert_eq(dpool_sched_next_deadline(sched), -1);
    cr_assert_eq(dpool_sched_expire(sched, GRACE_MS, NULL, NULL), 0);
}

Test(sched, oldest_task_waiting_for_its_function_holds_back_its_pool)
{
    dpool_sched_pool_t *pool = dpool_sched_pool_new(sched, 0);
    dpool_sched_host_t *host_f = s_add_host(0, 1, "f");
    dpool_sched_host_t *host_g = s_add_host(1, 1, "g");
    int first = 1, second = 2, third = 3;
    uint64_t first_id = s_submit(pool, "f", &first, 0);
    cr_assert_eq(dpool_sched_credit(sched, host_f, 1), 1);
    cr_assert_eq(s_dispatch_all(0), 1);
    s_submit(pool, "f", &second, 0);
    s_submit(pool, "g", &third, 0);
    cr_assert_eq(dpool_sched_credit(sched, host_g, 1), 1);

    cr_assert_not(s_dispatch(0, NULL), "the g task must not overtake the older f task");

    cr_assert_not_null(dpool_sched_complete(sched, first_id, host_f, true, 0));
    cr_assert_eq(dpool_sched_credit(sched, host_f, 1), 1);
    dispatch_t d;
    cr_assert(s_dispatch(0, &d));
    cr_assert_eq(d.task_data, &second);
    cr_assert_eq(d.host_data, &host_data[0]);
    cr_assert(s_dispatch(0, &d));
    cr_assert_eq(d.task_data, &third);
    cr_assert_eq(d.host_data, &host_data[1]);
}

Test(sched, cancelling_the_waiting_oldest_task_lets_the_next_one_run)
{
    dpool_sched_pool_t *pool = dpool_sched_pool_new(sched, 0);
    dpool_sched_host_t *host_f = s_add_host(0, 1, "f");
    dpool_sched_host_t *host_g = s_add_host(1, 1, "g");
    int first = 1, second = 2, third = 3;
    s_submit(pool, "f", &first, 0);
    cr_assert_eq(dpool_sched_credit(sched, host_f, 1), 1);
    cr_assert_eq(s_dispatch_all(0), 1);
    uint64_t blocked_id = s_submit(pool, "f", &second, 0);
    s_submit(pool, "g", &third, 0);
    cr_assert_eq(dpool_sched_credit(sched, host_g, 1), 1);
    cr_assert_not(s_dispatch(0, NULL), "the pool waits for a free f host");

    void *task_host = NULL;
    cr_assert_eq(dpool_sched_cancel(sched, blocked_id, &task_host), &second);
    dispatch_t d;
    cr_assert(s_dispatch(0, &d), "with the f task gone, the g task is the oldest and can run");
    cr_assert_eq(d.task_data, &third);
    cr_assert_eq(d.host_data, &host_data[1]);
}

Test(sched, pool_remove_refuses_a_pool_with_tasks)
{
    dpool_sched_pool_t *pool = dpool_sched_pool_new(sched, 0);
    dpool_sched_host_t *host = s_add_host(0, 1, "f");
    int queued = 1, running = 2, orphan = 3;
    uint64_t running_id = s_submit(pool, "f", &running, 0);
    cr_assert_eq(dpool_sched_credit(sched, host, 1), 1);
    cr_assert_eq(s_dispatch_all(0), 1);
    uint64_t queued_id = s_submit(pool, "f", &queued, 0);
    uint64_t orphan_id = s_submit(pool, "h", &orphan, 0);
    const uint64_t ids[] = {queued_id, running_id, orphan_id};

    dpool_sched_pool_t *handle = pool;
    for (int i = 0; i < 3; i++) {
        cr_assert_not(dpool_sched_pool_remove(sched, &handle), "pool still has %d tasks", 3 - i);
        cr_assert_eq(handle, pool, "a refused remove keeps the handle");
        void *task_host;
        cr_assert_not_null(dpool_sched_cancel(sched, ids[i], &task_host));
    }
    cr_assert(dpool_sched_pool_remove(sched, &handle));
    cr_assert_null(handle);
}

Test(sched, drain_hands_back_every_remaining_task)
{
    dpool_sched_pool_t *a = dpool_sched_pool_new(sched, 0);
    dpool_sched_pool_t *b = dpool_sched_pool_new(sched, 1);
    dpool_sched_host_t *host = s_add_host(0, 4, "f");
    cr_assert_eq(dpool_sched_credit(sched, host, 4), 4);
    int values[6];
    uint64_t ids[6];
    ids[0] = s_submit(a, "f", &values[0], 0);
    ids[1] = s_submit(a, "f", &values[1], 0);
    ids[2] = s_submit(b, "f", &values[2], 0);
    ids[3] = s_submit(b, "f", &values[3], 0); // queued behind b's cap of 1
    ids[4] = s_submit(a, "h", &values[4], 0); // waits for h
    ids[5] = s_submit(b, "h", &values[5], 0);
    cr_assert_eq(s_dispatch_all(0), 3);

    visits_t visits = {0};
    dpool_sched_drain(sched, s_collect, &visits);
    cr_assert_eq(visits.count, 6);
    for (int i = 0; i < 6; i++)
        cr_assert(s_visited(&visits, ids[i], &values[i]), "task %d not handed back", i);
    cr_assert_eq(dpool_sched_task_count(sched), 0);
    cr_assert_eq(dpool_sched_next_deadline(sched), -1);
    cr_assert_eq(dpool_sched_host_running(host), 0);
    cr_assert(dpool_sched_pool_remove(sched, &a));
    cr_assert(dpool_sched_pool_remove(sched, &b));
}

Test(sched, pool_foreach_visits_only_that_pools_tasks_and_keeps_them)
{
    dpool_sched_pool_t *mine = dpool_sched_pool_new(sched, 0);
    dpool_sched_pool_t *other = dpool_sched_pool_new(sched, 0);
    dpool_sched_host_t *host = s_add_host(0, 1, "f");
    cr_assert_eq(dpool_sched_credit(sched, host, 1), 1);
    int values[5];
    uint64_t running_id = s_submit(mine, "f", &values[0], 0);
    cr_assert_eq(s_dispatch_all(0), 1);
    uint64_t queued_id = s_submit(mine, "f", &values[1], 0);
    uint64_t orphan_id = s_submit(mine, "h", &values[2], 0);
    s_submit(other, "f", &values[3], 0);
    s_submit(other, "h", &values[4], 0);

    visits_t visits = {0};
    dpool_sched_pool_foreach(sched, mine, s_collect, &visits);
    cr_assert_eq(visits.count, 3);
    cr_assert(s_visited(&visits, running_id, &values[0]));
    cr_assert(s_visited(&visits, queued_id, &values[1]));
    cr_assert(s_visited(&visits, orphan_id, &values[2]));
    cr_assert_eq(dpool_sched_task_count(sched), 5, "foreach removes nothing");
}

Test(sched, hundred_thousand_tasks_reuse_task_records)
{
    enum { TASKS = 100000, CAP = 32, PROCESSES = 64 };
    dpool_sched_pool_t *pool = dpool_sched_pool_new(sched, CAP);
    dpool_sched_host_t *host = s_add_host(0, PROCESSES, "f");
    cr_assert_eq(dpool_sched_credit(sched, host, PROCESSES), PROCESSES);
    static int value;
    size_t submitted = 0, completed = 0;
    uint64_t running[CAP];
    size_t running_count = 0;
    uint32_t highest_slot = 0;
    while (completed < TASKS) {
        while (submitted < TASKS && submitted - completed < 2 * CAP) {
            uint64_t id = s_submit(pool, "f", &value, 0);
            uint32_t slot = (uint32_t)id;
            highest_slot = slot > highest_slot ? slot : highest_slot;
            submitted++;
        }
        dispatch_t d;
        while (s_dispatch(0, &d)) {
            cr_assert_lt(running_count, CAP, "over the cap");
            running[running_count++] = d.task_id;
        }
        cr_assert_gt(running_count, 0, "nothing runs after %zu completions", completed);
        for (size_t i = 0; i < running_count; i++)
            cr_assert_eq(dpool_sched_complete(sched, running[i], host, true, 0), &value);
        cr_assert_eq(dpool_sched_credit(sched, host, (uint32_t)running_count), running_count);
        completed += running_count;
        running_count = 0;
    }
    cr_assert_eq(dpool_sched_task_count(sched), 0);
    dpool_sched_pool_stats_t stats = s_stats(pool);
    cr_assert_eq(stats.done, TASKS);
    cr_assert_eq(stats.queued + stats.running, 0);
    // At most 2 * CAP records live at once, so freed records must be reused: the slot
    // part of the id (its low 32 bits) stays within the first chunk of records.
    cr_assert_lt(highest_slot, 1024, "slot %u: records are not reused", highest_slot);
}

// No remove: destroy alone must free a host still registered ("destroys the scheduler
// with every pool, host and task record"). Only a leak checker can see this.
Test(sched, destroy_frees_hosts_still_registered)
{
#ifdef __SANITIZE_ADDRESS__
    const char *const functions[] = {"f", "g"};
    dpool_sched_host_t *host = dpool_sched_host_add(sched, NULL, 2, functions, 2);
    cr_assert_not_null(host);
    cr_assert_eq(dpool_sched_credit(sched, host, 2), 2);
    host = NULL; // the scheduler holds the only reference now
    dpool_sched_destroy(&sched);
    cr_assert_null(sched);
    cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "destroy leaked the host's records");
#else
    cr_skip_test("needs the ASan build (-DDPOOL_SANITIZE=ON) to detect the leak");
#endif
}

Test(sched, ids_start_from_the_base_a_broker_run_sets)
{
    dpool_sched_t *other = dpool_sched_new(GRACE_MS);
    cr_assert_not_null(other);
    dpool_sched_set_id_base(other, 0x5a5a0000u);
    dpool_sched_pool_t *pool = dpool_sched_pool_new(sched, 1);
    dpool_sched_pool_t *other_pool = dpool_sched_pool_new(other, 1);
    int value;
    uint64_t id = 0, other_id = 0;
    cr_assert_eq(dpool_sched_submit(sched, pool, "f", &value, 0, &id), 0);
    cr_assert_eq(dpool_sched_submit(other, other_pool, "f", &value, 0, &other_id), 0);
    cr_assert_eq((uint32_t)id, (uint32_t)other_id, "the same record");
    cr_assert_neq(id, other_id, "an id of one run names no task of another");
    cr_assert_eq(other_id >> 32, 0x5a5a0001u);
    void *ran_on;
    cr_assert_null(dpool_sched_cancel(other, id, &ran_on), "the other run's id is stale here");
    cr_assert_eq(dpool_sched_cancel(other, other_id, &ran_on), &value);
    dpool_sched_destroy(&other);
}
