/*  Tests for the scheduler's hosts (broker/dpool_sched_hosts.c): hosts joining and
    leaving, the credits they give, the functions they offer, and the cluster size that a
    cap-0 pool follows (docs/PROTOCOL.md, "Scheduling rules"). The fixture is
    sched_fixture.h, shared with test_sched.c. */
#include "sched_fixture.h"

#include <criterion/criterion.h>
#include <stdint.h>

TestSuite(sched_hosts, .init = setup, .fini = teardown, .timeout = 10);

// Two hosts offering "f" (slots 0 and 1), each with processes processes, all credited.
static void
s_two_hosts(uint32_t processes)
{
    for (int slot = 0; slot < 2; slot++)
        cr_assert_eq(dpool_sched_credit(sched, s_add_host(slot, processes, "f"), processes),
                     processes);
}

// The host a dispatch went to.
static dpool_sched_host_t *
s_host_of(const dispatch_t *d)
{
    return hosts[(const int *)d->host_data - host_data];
}

Test(sched_hosts, routes_each_task_to_a_host_offering_its_function)
{
    dpool_sched_pool_t *pool = dpool_sched_pool_new(sched, 0);
    dpool_sched_host_t *host_f = s_add_host(0, 4, "f");
    dpool_sched_host_t *host_g = s_add_host(1, 4, "g");
    cr_assert_eq(dpool_sched_credit(sched, host_f, 4), 4);
    cr_assert_eq(dpool_sched_credit(sched, host_g, 4), 4);
    int f_tasks[3], g_tasks[3];
    for (int i = 0; i < 3; i++) {
        s_submit(pool, "f", &f_tasks[i], 0);
        s_submit(pool, "g", &g_tasks[i], 0);
    }
    for (int i = 0; i < 6; i++) {
        dispatch_t d;
        cr_assert(s_dispatch(0, &d));
        int *value = d.task_data;
        bool is_f = value >= f_tasks && value < f_tasks + 3;
        cr_assert_eq(d.host_data, is_f ? &host_data[0] : &host_data[1],
                     "a task of %s went to the wrong host", is_f ? "f" : "g");
    }
    cr_assert_not(s_dispatch(0, NULL));
    cr_assert_eq(dpool_sched_host_running(host_f), 3);
    cr_assert_eq(dpool_sched_host_running(host_g), 3);
}

Test(sched_hosts, dispatches_nothing_without_credit)
{
    dpool_sched_pool_t *pool = dpool_sched_pool_new(sched, 0);
    dpool_sched_host_t *host = s_add_host(0, 4, "f");
    int value = 0;
    s_submit(pool, "f", &value, 0);
    cr_assert_eq(dpool_sched_host_credits(host), 0, "a new host has no credit");
    cr_assert_not(s_dispatch(0, NULL));
    cr_assert_eq(s_stats(pool).queued, 1);
}

Test(sched_hosts, refuses_credits_beyond_the_process_count)
{
    dpool_sched_host_t *host = s_add_host(0, 4, "f");
    cr_assert_eq(dpool_sched_credit(sched, host, 3), 3);
    cr_assert_eq(dpool_sched_credit(sched, host, 5), 1, "only one process is left uncredited");
    cr_assert_eq(dpool_sched_credit(sched, host, 1), 0);
    cr_assert_eq(dpool_sched_host_credits(host), 4);
    cr_assert_eq(dpool_sched_host_processes(host), 4);
}

// CREDIT says "this many more idle processes": a process running a task is not idle,
// so a host whose processes are all busy can take no credit at all.
Test(sched_hosts, credits_for_processes_that_are_running_tasks_start_nothing)
{
    dpool_sched_pool_t *pool = dpool_sched_pool_new(sched, 0);
    dpool_sched_host_t *host = s_add_host(0, 2, "f");
    int values[4];
    for (int i = 0; i < 4; i++)
        s_submit(pool, "f", &values[i], 0);
    cr_assert_eq(dpool_sched_credit(sched, host, 2), 2);
    cr_assert_eq(s_dispatch_all(0), 2);

    // Counted (the daemon counts them as given) but unusable while both are held.
    cr_assert_eq(dpool_sched_credit(sched, host, 3), 2, "at most one credit per process");
    cr_assert_eq(dpool_sched_host_credits(host), 0, "no process is free");
    cr_assert_eq(s_dispatch_all(0), 0, "a 2-process host must never run more than 2 tasks");
    cr_assert_leq(dpool_sched_host_running(host), 2);
}

Test(sched_hosts, one_credit_allows_one_dispatch)
{
    dpool_sched_pool_t *pool = dpool_sched_pool_new(sched, 0);
    dpool_sched_host_t *host = s_add_host(0, 4, "f");
    int values[4];
    for (int i = 0; i < 4; i++)
        s_submit(pool, "f", &values[i], 0);
    for (int round = 0; round < 3; round++) {
        cr_assert_eq(dpool_sched_credit(sched, host, 1), 1);
        cr_assert_eq(s_dispatch_all(0), 1, "round %d", round);
        cr_assert_eq(dpool_sched_host_credits(host), 0);
    }
    cr_assert_eq(dpool_sched_host_running(host), 3);
}

Test(sched_hosts, cap_zero_follows_the_cluster_process_count)
{
    dpool_sched_pool_t *pool = dpool_sched_pool_new(sched, 0);
    dpool_sched_host_t *small = s_add_host(0, 2, "f");
    dpool_sched_host_t *big = s_add_host(1, 3, "f");
    cr_assert_eq(dpool_sched_total_processes(sched), 5);
    int values[20];
    for (int i = 0; i < 20; i++)
        s_submit(pool, "f", &values[i], 0);
    cr_assert_eq(dpool_sched_credit(sched, small, 2), 2);
    cr_assert_eq(dpool_sched_credit(sched, big, 3), 3);
    dpool_sched_pool_stats_t stats = s_stats(pool);
    cr_assert_eq(stats.cap, 0);
    cr_assert_eq(stats.effective_cap, 5);
    cr_assert_eq(s_dispatch_all(0), 5);
    cr_assert_eq(s_stats(pool).running, 5);

    visits_t lost = {0};
    dpool_sched_host_remove(sched, &hosts[1], s_collect, &lost);
    cr_assert_eq(lost.count, 3, "the big host ran 3 tasks");
    cr_assert_eq(dpool_sched_total_processes(sched), 2);
    stats = s_stats(pool);
    cr_assert_eq(stats.effective_cap, 2);
    cr_assert_eq(stats.running, 2);
    cr_assert_eq(s_dispatch_all(0), 0, "the cap of 2 is used up");

    dpool_sched_host_t *extra = s_add_host(2, 4, "f");
    cr_assert_eq(s_stats(pool).effective_cap, 6);
    cr_assert_eq(dpool_sched_credit(sched, extra, 4), 4);
    cr_assert_eq(s_dispatch_all(0), 4, "a new host raises the cap to 6");
    cr_assert_eq(s_stats(pool).running, 6);
}

Test(sched_hosts, cap_zero_pool_waits_while_the_cluster_is_empty)
{
    dpool_sched_pool_t *pool = dpool_sched_pool_new(sched, 0);
    // A host with no processes makes f known without adding capacity.
    s_add_host(0, 0, "f");
    int value = 0;
    s_submit(pool, "f", &value, 0);
    cr_assert_eq(s_stats(pool).effective_cap, 0);
    cr_assert_not(s_dispatch(0, NULL));

    dpool_sched_host_t *host = s_add_host(1, 1, "f");
    cr_assert_eq(dpool_sched_credit(sched, host, 1), 1);
    dispatch_t d;
    cr_assert(s_dispatch(0, &d), "a host joining gives a cap-0 pool room");
    cr_assert_eq(d.host_data, &host_data[1]);
}

Test(sched_hosts, removing_a_host_hands_back_its_running_tasks_only)
{
    dpool_sched_pool_t *pool = dpool_sched_pool_new(sched, 10);
    s_two_hosts(2);
    dpool_sched_host_t *staying = hosts[1];
    int values[6];
    for (int i = 0; i < 6; i++)
        s_submit(pool, "f", &values[i], 0);
    dispatch_t d[4];
    for (int i = 0; i < 4; i++)
        cr_assert(s_dispatch(0, &d[i]));

    visits_t lost = {0};
    dpool_sched_host_remove(sched, &hosts[0], s_collect, &lost);
    cr_assert_null(hosts[0], "host_remove must NULL the caller's pointer");
    cr_assert_eq(lost.count, 2);
    for (int i = 0; i < 4; i++) {
        bool on_leaving = d[i].host_data == &host_data[0];
        cr_assert_eq(s_visited(&lost, d[i].task_id, d[i].task_data), on_leaving,
                     "task %d: handed back iff it ran on the leaving host", i);
        if (on_leaving)
            cr_assert_null(dpool_sched_complete(sched, d[i].task_id, NULL, true, 0));
    }
    dpool_sched_pool_stats_t stats = s_stats(pool);
    cr_assert_eq(stats.running, 2);
    cr_assert_eq(stats.failed, 2);
    cr_assert_eq(stats.queued, 2);

    // The other host carries on.
    for (int i = 0; i < 4; i++)
        if (d[i].host_data == &host_data[1]) {
            cr_assert_not_null(dpool_sched_complete(sched, d[i].task_id, staying, true, 0));
            break;
        }
    cr_assert_eq(dpool_sched_credit(sched, staying, 1), 1);
    dispatch_t next;
    cr_assert(s_dispatch(0, &next));
    cr_assert_eq(next.host_data, &host_data[1]);
}

// Leases that run at once spread over hosts; a lease that starts again goes to the
// host whose process came free last, whose daemon and processes are warm, instead of
// touring every host (docs/PROTOCOL.md, "Scheduling rules").
Test(sched_hosts, spreads_concurrent_leases_and_restarts_on_the_host_freed_last)
{
    dpool_sched_pool_t *pool = dpool_sched_pool_new(sched, 2);
    s_two_hosts(4);
    int values[6];
    for (int i = 0; i < 6; i++)
        s_submit(pool, "f", &values[i], 0);
    dispatch_t a, b;
    cr_assert(s_dispatch(0, &a));
    cr_assert(s_dispatch(0, &b));
    cr_assert_neq(a.host_data, b.host_data, "two leases at once go to two hosts");
    cr_assert_not(s_dispatch(0, NULL), "the cap is 2");

    // Each host still has credits; the one whose task ended last gets the next lease,
    // whichever took a lease before.
    for (int round = 0; round < 2; round++) {
        dispatch_t *done = round == 0 ? &b : &a;
        cr_assert_not_null(dpool_sched_complete(sched, done->task_id, s_host_of(done), true, 0));
        dispatch_t next;
        cr_assert(s_dispatch(0, &next), "round %d", round);
        cr_assert_eq(next.host_data, done->host_data,
                     "round %d: the next lease goes to the host freed last", round);
        *done = next;
    }
}

// A task whose process was lost runs again elsewhere: the host where it failed, even
// with a replacement process just reported idle, does not go first.
Test(sched_hosts, a_retry_does_not_go_back_to_the_host_where_it_failed)
{
    dpool_sched_pool_t *pool = dpool_sched_pool_new(sched, 1);
    s_two_hosts(4);
    int value = 0;
    s_submit(pool, "f", &value, 0);
    for (int attempt = 0; attempt < 4; attempt++) {
        dispatch_t d;
        cr_assert(s_dispatch(0, &d), "attempt %d", attempt);
        dpool_sched_host_t *failed = s_host_of(&d);
        cr_assert_eq(dpool_sched_complete(sched, d.task_id, failed, false, 0), &value);
        cr_assert_eq(dpool_sched_credit(sched, failed, 1), 1, "the replacement process");
        uint64_t id = 0;
        cr_assert_eq(dpool_sched_requeue(sched, pool, "f", &value, 0, &id), 0);
        dispatch_t retry;
        cr_assert(s_dispatch(0, &retry), "attempt %d", attempt);
        cr_assert_neq(retry.host_data, d.host_data, "attempt %d: the retry went back", attempt);
        cr_assert_not_null(dpool_sched_complete(sched, retry.task_id, s_host_of(&retry), true, 0));
        s_submit(pool, "f", &value, 0);
    }
}
