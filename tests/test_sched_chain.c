/*  Tests for chaining in dpool_sched: once a pool's tasks are timed as short, a lease
    (one process held by the pool) is sent the pool's next tasks ahead, each naming the
    one it follows; the cap counts leases, so it holds exactly. Refused chained tasks,
    cancelled ones and a host that leaves put them back in order. The fixture:
    sched_fixture.h. */
#include "sched_fixture.h"

#include <criterion/criterion.h>
#include <stdint.h>

TestSuite(sched_chain, .init = setup, .fini = teardown, .timeout = 10);

// Makes pool's tasks look short: one task dispatched at t_us, done 10 us later, on a
// host with `processes` processes (all credited). Returns the host.
static dpool_sched_host_t *
s_warm_up(dpool_sched_pool_t *pool, int slot, uint32_t processes, int *value)
{
    dpool_sched_host_t *host = s_add_host(slot, processes, "f");
    dpool_sched_host_set_chaining(host, true);
    cr_assert_eq(dpool_sched_credit(sched, host, processes), processes);
    s_submit(pool, "f", value, 0);
    dispatch_t first;
    cr_assert(dpool_sched_dispatch(sched, 0, 1000, &first));
    cr_assert_eq(first.after_id, 0, "no figure yet: a new lease, not a chain");
    cr_assert_not_null(dpool_sched_complete(sched, first.task_id, host, true, 1010));
    cr_assert_eq(dpool_sched_credit(sched, host, 1), 1);
    return host;
}

// A pool warmed up on a 1-process host (values[count] is used for that), then count
// tasks submitted and as many sent: the first starts the lease, the rest chain.
static dpool_sched_host_t *
s_chain_up(dpool_sched_pool_t *pool, int *values, int count, dispatch_t *d)
{
    dpool_sched_host_t *host = s_warm_up(pool, 0, 1, &values[count]);
    for (int i = 0; i < count; i++)
        s_submit(pool, "f", &values[i], 0);
    for (int i = 0; i < count; i++)
        cr_assert(dpool_sched_dispatch(sched, 0, 2000, &d[i]), "dispatch %d", i);
    return host;
}

Test(sched_chain, short_tasks_chain_onto_the_pools_leases_and_the_cap_still_holds)
{
    dpool_sched_pool_t *pool = dpool_sched_pool_new(sched, 2);
    int values[41];
    dpool_sched_host_t *host = s_warm_up(pool, 0, 4, &values[40]);
    for (int i = 0; i < 40; i++)
        s_submit(pool, "f", &values[i], 0);

    dispatch_t d[40];
    size_t sent = 0;
    while (sent < 40 && dpool_sched_dispatch(sched, 0, 2000, &d[sent]))
        sent++;
    cr_assert_gt(sent, 2, "short tasks are sent ahead (%zu sent)", sent);
    cr_assert_eq(d[0].after_id, 0);
    cr_assert_eq(d[1].after_id, 0, "two leases under cap 2, each with a credit");
    cr_assert_eq(s_stats(pool).running, 2, "the cap counts processes held, not tasks sent");
    cr_assert_eq(dpool_sched_host_running(host), 2);
    // Each chained task follows the newest task of one of the two leases.
    uint64_t tails[2] = {d[0].task_id, d[1].task_id};
    for (size_t i = 2; i < sent; i++) {
        int lease = d[i].after_id == tails[0] ? 0 : d[i].after_id == tails[1] ? 1 : -1;
        cr_assert_neq(lease, -1, "task %zu follows a lease's newest task", i);
        tails[lease] = d[i].task_id;
        cr_assert_eq(d[i].task_data, &values[i], "FIFO: task %zu goes %zu-th", i, i);
    }
    // Results come per lease in order; the lease stays held until its last one.
    for (size_t i = 0; i < sent; i++)
        cr_assert_eq(dpool_sched_complete(sched, d[i].task_id, host, true, 2100 + i), &values[i]);
    cr_assert_leq(s_stats(pool).running, 2);
}

Test(sched_chain, long_tasks_are_never_chained)
{
    dpool_sched_pool_t *pool = dpool_sched_pool_new(sched, 1);
    dpool_sched_host_t *host = s_add_host(0, 2, "f");
    dpool_sched_host_set_chaining(host, true);
    cr_assert_eq(dpool_sched_credit(sched, host, 2), 2);
    int values[3];
    for (int i = 0; i < 3; i++)
        s_submit(pool, "f", &values[i], 0);
    dispatch_t first, second;
    cr_assert(dpool_sched_dispatch(sched, 0, 1000, &first));
    cr_assert_not(dpool_sched_dispatch(sched, 0, 1000, &second), "cap 1, no figure yet");
    // It ran for 50 ms: longer than the chaining horizon.
    cr_assert_not_null(dpool_sched_complete(sched, first.task_id, host, true, 51000));
    cr_assert(dpool_sched_dispatch(sched, 51, 51000, &second));
    cr_assert_eq(second.after_id, 0);
    cr_assert_not(dpool_sched_dispatch(sched, 51, 51000, &first), "a 50 ms task is not chained");
}

Test(sched_chain, chaining_pauses_while_another_pool_waits_for_a_process)
{
    dpool_sched_pool_t *busy = dpool_sched_pool_new(sched, 0);
    int values[20];
    dpool_sched_host_t *host = s_warm_up(busy, 0, 1, &values[19]);
    for (int i = 0; i < 10; i++)
        s_submit(busy, "f", &values[i], 0);
    dispatch_t d[10];
    cr_assert(dpool_sched_dispatch(sched, 0, 2000, &d[0]));
    cr_assert(dpool_sched_dispatch(sched, 0, 2000, &d[1]));
    cr_assert_eq(d[1].after_id, d[0].task_id, "chained while nobody else waits");

    dpool_sched_pool_t *other = dpool_sched_pool_new(sched, 1);
    s_submit(other, "f", &values[10], 0);
    // The busy pool may be ahead of it in the ring for one more turn; then the other
    // pool waits for the process (parked), and the busy pool's lease must run out.
    size_t sent = 2;
    while (sent < 10 && dpool_sched_dispatch(sched, 0, 2000, &d[sent]))
        sent++;
    cr_assert_leq(sent, 3, "chaining went on while a pool waited (%zu sent)", sent);
    for (size_t i = 0; i < sent; i++)
        cr_assert_not_null(dpool_sched_complete(sched, d[i].task_id, host, true, 2010 + i));
    // The pool that waited goes first, although the busy pool's own task freed the
    // process and it has work left.
    dispatch_t next;
    cr_assert_eq(dpool_sched_credit(sched, host, 1), 1);
    cr_assert(dpool_sched_dispatch(sched, 0, 2030, &next));
    cr_assert_eq(next.task_data, &values[10], "the waiting pool gets the process");
    cr_assert_eq(next.after_id, 0);
}

Test(sched_chain, a_refused_chained_task_and_those_after_it_queue_again_in_order)
{
    dpool_sched_pool_t *pool = dpool_sched_pool_new(sched, 1);
    int values[5];
    dispatch_t d[4];
    dpool_sched_host_t *host = s_chain_up(pool, values, 4, d);
    // The first ends; the second arrived too late and is refused, so the third and
    // fourth (chained after it) are refused as well.
    cr_assert_not_null(dpool_sched_complete(sched, d[0].task_id, host, true, 2010));
    cr_assert(dpool_sched_unchained(sched, d[1].task_id, host));
    cr_assert_not(dpool_sched_unchained(sched, d[2].task_id, host), "already queued again");
    cr_assert_not(dpool_sched_unchained(sched, d[3].task_id, host), "already queued again");
    cr_assert_null(dpool_sched_complete(sched, d[2].task_id, host, true, 2020), "old id: stale");
    dpool_sched_pool_stats_t stats = s_stats(pool);
    cr_assert_eq(stats.queued, 3);
    cr_assert_eq(stats.running, 0, "the lease ended with its last task");
    cr_assert_eq(stats.failed, 0, "a refused task is not a failure");

    cr_assert_eq(dpool_sched_credit(sched, host, 1), 1);
    for (int i = 1; i < 4; i++) {
        dispatch_t again;
        cr_assert(dpool_sched_dispatch(sched, 0, 3000, &again), "re-dispatch %d", i);
        cr_assert_eq(again.task_data, &values[i], "in their old order");
        cr_assert_neq(again.task_id, d[i].task_id, "under a new id");
    }
}

Test(sched_chain, cancelling_the_running_task_hands_its_process_to_the_next_in_the_chain)
{
    dpool_sched_pool_t *pool = dpool_sched_pool_new(sched, 1);
    int values[4];
    dispatch_t d[3];
    dpool_sched_host_t *host = s_chain_up(pool, values, 3, d);
    void *host_of = NULL;
    cr_assert_eq(dpool_sched_cancel(sched, d[1].task_id, &host_of), &values[1]);
    cr_assert_eq(host_of, &host_data[0], "a chained task is on its host: the owner sends KILL");
    cr_assert_eq(dpool_sched_cancel(sched, d[0].task_id, &host_of), &values[0]);
    cr_assert_eq(s_stats(pool).running, 1, "the lease lives on with its last task");
    cr_assert_eq(dpool_sched_host_credits(host), 0);
    cr_assert_eq(dpool_sched_complete(sched, d[2].task_id, host, true, 2100), &values[2]);
    cr_assert_eq(s_stats(pool).running, 0);
}

Test(sched_chain, a_leaving_host_hands_back_its_running_tasks_and_requeues_the_chained_ones)
{
    dpool_sched_pool_t *pool = dpool_sched_pool_new(sched, 1);
    int values[4];
    dispatch_t d[3];
    s_chain_up(pool, values, 3, d);
    visits_t lost = {0};
    dpool_sched_host_remove(sched, &hosts[0], s_collect, &lost);
    cr_assert_eq(lost.count, 1, "only the running task is lost");
    cr_assert(s_visited(&lost, d[0].task_id, &values[0]));
    dpool_sched_pool_stats_t stats = s_stats(pool);
    cr_assert_eq(stats.running, 0);
    cr_assert_eq(stats.queued, 2, "the two that never started wait for another host");

    dpool_sched_host_t *next_host = s_add_host(1, 1, "f");
    dpool_sched_host_set_chaining(next_host, true);
    cr_assert_eq(dpool_sched_credit(sched, next_host, 1), 1);
    dispatch_t again;
    cr_assert(dpool_sched_dispatch(sched, 0, 5000, &again));
    cr_assert_eq(again.task_data, &values[1], "oldest first");
    cr_assert_eq(again.host_data, &host_data[1]);
}

Test(sched_chain, a_credit_for_a_held_process_waits_until_its_lease_ends)
{
    dpool_sched_pool_t *pool = dpool_sched_pool_new(sched, 0);
    int values[4];
    dpool_sched_host_t *host = s_warm_up(pool, 0, 1, &values[3]);
    for (int i = 0; i < 3; i++)
        s_submit(pool, "f", &values[i], 0);
    dispatch_t d[2];
    cr_assert(dpool_sched_dispatch(sched, 0, 2000, &d[0]));
    cr_assert(dpool_sched_dispatch(sched, 0, 2000, &d[1]));
    // The head's process died; its replacement reported idle before the chained task
    // arrived, so the daemon will refuse that one.
    cr_assert_not_null(dpool_sched_complete(sched, d[0].task_id, host, false, 2010));
    cr_assert_eq(dpool_sched_credit(sched, host, 1), 1);
    cr_assert_eq(dpool_sched_host_credits(host), 0, "the process is still held by the lease");
    cr_assert(dpool_sched_unchained(sched, d[1].task_id, host));
    cr_assert_eq(dpool_sched_host_credits(host), 1, "the lease ended: the credit is usable");
    dispatch_t again;
    cr_assert(dpool_sched_dispatch(sched, 0, 3000, &again));
    cr_assert_eq(again.task_data, &values[1]);
    cr_assert_eq(again.after_id, 0);
}

Test(sched_chain, a_lease_whose_running_task_is_overdue_takes_no_more)
{
    dpool_sched_pool_t *pool = dpool_sched_pool_new(sched, 1);
    int values[4];
    s_warm_up(pool, 0, 1, &values[3]);
    for (int i = 0; i < 3; i++)
        s_submit(pool, "f", &values[i], 0);
    dispatch_t first, next;
    cr_assert(dpool_sched_dispatch(sched, 0, 2000, &first));
    // The average says 10 us, but this one has run for a second: nothing more joins it.
    cr_assert_not(dpool_sched_dispatch(sched, 1002, 1002000, &next));
    cr_assert_eq(s_stats(pool).queued, 3 - 1);
}

Test(sched_chain, a_host_whose_daemon_does_not_chain_gets_no_chained_task)
{
    dpool_sched_pool_t *pool = dpool_sched_pool_new(sched, 1);
    int values[3];
    dpool_sched_host_t *host = s_warm_up(pool, 0, 1, &values[2]);
    dpool_sched_host_set_chaining(host, false);
    for (int i = 0; i < 2; i++)
        s_submit(pool, "f", &values[i], 0);
    dispatch_t first, next;
    cr_assert(dpool_sched_dispatch(sched, 0, 2000, &first));
    cr_assert_not(dpool_sched_dispatch(sched, 0, 2000, &next),
                  "an older daemon would run a chained task beside the one before it");
}

Test(sched_chain, a_chained_task_run_after_its_predecessor_ended_keeps_the_lease_and_one_credit)
{
    // d[1] crossed d[0]'s result on the wire and the daemon ran it in the process d[0]
    // left idle: d[0]'s result brought that process's credit back, and no credit comes
    // with d[1]'s. The broker must not use the credit while the lease holds the
    // process, and must count it once when the lease ends.
    dpool_sched_pool_t *pool = dpool_sched_pool_new(sched, 0);
    int values[4];
    dispatch_t d[2];
    dpool_sched_host_t *host = s_chain_up(pool, values, 2, d);
    cr_assert_not_null(dpool_sched_complete(sched, d[0].task_id, host, true, 2010));
    cr_assert_eq(dpool_sched_credit(sched, host, 1), 1);
    cr_assert_eq(dpool_sched_host_credits(host), 0, "the lease holds the process for d[1]");
    s_submit(pool, "f", &values[2], 0);
    dispatch_t next;
    cr_assert(dpool_sched_dispatch(sched, 0, 2100, &next));
    cr_assert_eq(next.after_id, d[1].task_id, "the new task chains after d[1], no new lease");
    cr_assert_not_null(dpool_sched_complete(sched, d[1].task_id, host, true, 2110));
    cr_assert_not_null(dpool_sched_complete(sched, next.task_id, host, true, 2120));
    cr_assert_eq(s_stats(pool).running, 0);
    cr_assert_eq(dpool_sched_host_credits(host), 1, "the lease ended: its process, once");
}
