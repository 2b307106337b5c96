/*  Shared by the scheduler tests (test_sched.c: pools, queues, grace, completion;
    test_sched_hosts.c: hosts, credits and what they offer): a scheduler per test, hosts
    in slots that teardown() removes, and helpers that drive dispatch. Task and host data
    are pointers to test-owned integers, so a dispatch tells which task went to which
    host. Criterion runs each test in its own process, so this file's static state is per
    test. Helpers are static inline so a file may use any subset; setup() and teardown()
    are each file's suite .init and .fini. */
#ifndef SCHED_FIXTURE_H
#define SCHED_FIXTURE_H

#include "dpool_sched.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#define GRACE_MS 10000
#define MAX_HOSTS 4
#define MAX_VISITS 64

static dpool_sched_t *sched;
// Hosts a test adds go here so the teardown can remove those still registered.
static dpool_sched_host_t *hosts[MAX_HOSTS];
static int host_data[MAX_HOSTS];

static inline void
setup(void)
{
    sched = dpool_sched_new(GRACE_MS);
    cr_assert_not_null(sched);
    memset(hosts, 0, sizeof hosts);
}

static inline void
teardown(void)
{
    for (int i = 0; i < MAX_HOSTS; i++)
        dpool_sched_host_remove(sched, &hosts[i], NULL, NULL);
    dpool_sched_destroy(&sched);
    cr_assert_null(sched, "destroy must NULL the caller's pointer");
}

// Tasks handed back by host_remove, expire, drain and foreach.
typedef struct {
    size_t count;
    uint64_t ids[MAX_VISITS];
    void *data[MAX_VISITS];
} visits_t;

static inline void
s_collect(void *ctx, uint64_t task_id, void *task_data)
{
    visits_t *visits = ctx;
    cr_assert_lt(visits->count, MAX_VISITS, "more tasks visited than the test made");
    visits->ids[visits->count] = task_id;
    visits->data[visits->count] = task_data;
    visits->count++;
}

static inline bool
s_visited(const visits_t *visits, uint64_t task_id, const void *task_data)
{
    for (size_t i = 0; i < visits->count; i++)
        if (visits->ids[i] == task_id && visits->data[i] == task_data)
            return true;
    return false;
}

// Adds host `slot` offering one function (or none when function is NULL).
static inline dpool_sched_host_t *
s_add_host(int slot, uint32_t processes, const char *function)
{
    const char *functions[] = {function};
    hosts[slot] =
        dpool_sched_host_add(sched, &host_data[slot], processes, functions, function ? 1 : 0);
    cr_assert_not_null(hosts[slot]);
    return hosts[slot];
}

static inline uint64_t
s_submit(dpool_sched_pool_t *pool, const char *function, void *data, int64_t now_ms)
{
    uint64_t task_id = 0;
    cr_assert_eq(dpool_sched_submit(sched, pool, function, data, now_ms, &task_id), 0);
    cr_assert_neq(task_id, 0, "id 0 never names a task");
    return task_id;
}

typedef dpool_sched_dispatch_t dispatch_t;

// Tests that do not time their tasks (complete with now_us 0) never chain: every
// dispatch is a new lease, one per credit.
static inline bool
s_dispatch(int64_t now_ms, dispatch_t *out)
{
    dispatch_t ignored;
    if (!out)
        out = &ignored;
    return dpool_sched_dispatch(sched, now_ms, now_ms * 1000, out);
}

// Dispatches until nothing can run; returns how many went.
static inline size_t
s_dispatch_all(int64_t now_ms)
{
    size_t count = 0;
    while (s_dispatch(now_ms, NULL))
        count++;
    return count;
}

static inline dpool_sched_pool_stats_t
s_stats(const dpool_sched_pool_t *pool)
{
    dpool_sched_pool_stats_t stats;
    memset(&stats, 0xff, sizeof stats);
    dpool_sched_pool_stats(sched, pool, &stats);
    return stats;
}

#endif
