/*  The test cases of tests/test_multihost.c on its "multihost" suite that use the
    library from a client host (included at the end of that file). The test thread
    enters a client host's network namespace before it opens any pool, so the pools'
    I/O threads, started afterwards, live there too. */

#define MH_CAP_TASKS 200
#define MH_CLI_LOOPS 4     // `dpool apply` loops on the second client host
#define MH_CLI_PER_LOOP 10 // tasks each loop runs, one after another
#define MH_LIB_POOLS 4     // library clients (connections) on the first client host
#define MH_SPAN_S "0.05"
#define MH_TEXT(x) #x
#define MH_TO_TEXT(x) MH_TEXT(x)

// Broker, two worker hosts of `processes` each, two client hosts; waits for them all.
static void
mh_two_worker_hosts(int processes)
{
    mh_add_hosts((const char *const[]){"broker", "w1", "w2", "c1", "c2", NULL});
    mh_start_broker("broker");
    mh_start_worker("w1", processes);
    mh_start_worker("w2", processes);
    double took = mh_wait_processes("c1", 2L * processes, 30);
    cr_log_info("2 worker hosts registered in %.1f s", took);
}

// A shell loop on host running `dpool apply` of a cap-3 named pool, one JSON span a line.
static pid_t
mh_start_cli_loop(const char *host, const char *out_path)
{
    static const char script[] =
        "i=0\n"
        "while [ $i -lt " MH_TO_TEXT(
            MH_CLI_PER_LOOP) " ]; do\n"
                             "  dpool apply --broker \"$1\" --pool cap3 --processes 3 "
                             "--timeout 60 test.span " MH_SPAN_S " || exit 1\n"
                             "  i=$((i + 1))\n"
                             "done\n";
    char path[600];
    snprintf(path, sizeof path, "PATH=%s:%s", DPOOL_BIN_DIR, getenv("PATH") ? getenv("PATH") : "");
    const char *const env[] = {path, NULL};
    const char *const argv[] = {"/bin/sh", "-c", script, "loop", endpoint, NULL};
    pid_t pid = dpool_netns_spawn_contained(net, host, argv, env, out_path, NULL, true);
    cr_assert_gt(pid, 0);
    return pid;
}

Test(multihost, cap_3_holds_across_two_hosts_of_4_processes_and_several_clients)
{
    MH_REQUIRE_NET();
    mh_two_worker_hosts(4);
    static mh_span_t spans[MH_CAP_TASKS];
    size_t count = 0;
    pid_t loops[MH_CLI_LOOPS];
    char paths[MH_CLI_LOOPS][400];
    for (int i = 0; i < MH_CLI_LOOPS; i++) {
        snprintf(paths[i], sizeof paths[i], "%s/loop-%d.out", dpool_netns_dir(net), i);
        loops[i] = mh_start_cli_loop("c2", paths[i]);
    }
    cr_assert(dpool_netns_enter(net, "c1"));
    enum { LIB_TASKS = MH_CAP_TASKS - MH_CLI_LOOPS * MH_CLI_PER_LOOP };
    dpool_t *lib_pools[MH_LIB_POOLS];
    for (int i = 0; i < MH_LIB_POOLS; i++)
        lib_pools[i] = mh_open_pool("cap3", 3, 0);
    static dpool_result_t *results[LIB_TASKS];
    double start = mh_now();
    for (int i = 0; i < LIB_TASKS; i++)
        results[i] = dpool_apply_asyncf(lib_pools[i % MH_LIB_POOLS], "test.span", "d", 0.05);
    for (int i = 0; i < LIB_TASKS; i++) {
        spans[count++] = mh_span_of(results[i], 60);
        dpool_result_destroy(&results[i]);
    }
    for (int i = 0; i < MH_CLI_LOOPS; i++) {
        cr_assert_eq(dpool_netns_wait(net, loops[i], 90), 0, "a `dpool apply` loop failed");
        char *text = dpool_netns_slurp(paths[i]);
        char *save = NULL;
        for (char *line = strtok_r(text, "\n", &save); line && count < MH_CAP_TASKS;
             line = strtok_r(NULL, "\n", &save))
            spans[count++] = mh_span_of_json(line);
        free(text);
    }
    cr_log_info("%d tasks of a cap-3 pool from %d clients took %.1f s", MH_CAP_TASKS,
                MH_LIB_POOLS + MH_CLI_LOOPS * MH_CLI_PER_LOOP, mh_now() - start);
    cr_assert_eq(count, MH_CAP_TASKS, "%zu spans, not %d", count, MH_CAP_TASKS);
    long pids[MH_CAP_TASKS];
    for (size_t i = 0; i < count; i++) {
        cr_assert(spans[i].start > 0 && spans[i].end >= spans[i].start, "span %zu is bad", i);
        pids[i] = spans[i].pid;
    }
    int overlap = mh_max_overlap(spans, count);
    cr_log_info("at most %d tasks ran at once", overlap);
    cr_assert_leq(overlap, 3, "%d tasks of a cap-3 pool ran at once", overlap);
    cr_assert_geq(overlap, 2, "the pool never ran tasks in parallel");
    cr_assert_eq(mh_distinct_hosts(pids, count), 2, "the tasks did not run on both hosts");
    for (int i = 0; i < MH_LIB_POOLS; i++)
        mh_close_pool(&lib_pools[i]);
}

// A long task on one of two single-process hosts; returns the host that runs it.
static dpool_result_t *
mh_start_long_task(dpool_t *pool, double seconds, char *host, size_t host_size)
{
    dpool_result_t *result = dpool_apply_asyncf(pool, "test.span", "d", seconds);
    cr_assert_not_null(result);
    mh_busy_host("c1", 10, host, host_size);
    return result;
}

// Waits for host to be listed again with an idle process; returns the seconds taken.
static double
mh_wait_rejoined(const char *host)
{
    double start = mh_now();
    for (int i = 0; i < 400 && mh_now() - start < MH_REJOIN_BOUND_S; i++) {
        json_t *status = mh_status("c1");
        json_t *entry = status ? mh_status_host(status, host) : NULL;
        bool back = entry && mh_int(entry, "idle") >= 1;
        json_decref(status);
        if (back)
            return mh_now() - start;
        usleep(100000);
    }
    cr_assert_fail("host %s was not listed with an idle process %.0f s after it came back", host,
                   MH_REJOIN_BOUND_S);
    return -1;
}

// Both hosts run one of two concurrent tasks (one process each, cap 2): the one that
// came back takes work again.
static void
mh_assert_both_hosts_work(void)
{
    dpool_t *pool = mh_open_pool(NULL, 2, 0);
    dpool_result_t *results[2];
    for (int i = 0; i < 2; i++)
        results[i] = dpool_apply_asyncf(pool, "test.span", "d", 1.0);
    long pids[2];
    for (int i = 0; i < 2; i++) {
        pids[i] = mh_span_of(results[i], 30).pid;
        dpool_result_destroy(&results[i]);
    }
    cr_assert_eq(mh_distinct_hosts(pids, 2), 2, "the host that came back ran nothing");
    mh_close_pool(&pool);
}

// The lost host's name is in the status no more.
static void
mh_assert_forgotten(const char *host)
{
    json_t *status = mh_status("c1");
    cr_assert_not_null(status, "no status from the broker");
    cr_assert_null(mh_status_host(status, host), "host %s is still listed", host);
    json_decref(status);
}

typedef enum { MH_CUT_LINK, MH_STOP_DAEMON } mh_cut_t;

static pid_t
mh_worker_pid(const char *host)
{
    for (size_t i = 0; i < worker_count; i++)
        if (strcmp(workers[i].host, host) == 0)
            return workers[i].pid;
    return -1;
}

static void
mh_cut(const char *host, mh_cut_t how, bool restore)
{
    if (how == MH_CUT_LINK)
        cr_assert(dpool_netns_set_link(net, host, restore), "cannot set %s's link", host);
    else
        cr_assert(dpool_netns_signal(net, mh_worker_pid(host), restore ? SIGCONT : SIGSTOP));
}

// The whole loss-and-return story for one way of losing a host, with retries 0 or 1.
static void
mh_lose_and_regain_a_host(mh_cut_t how, unsigned retries)
{
    MH_REQUIRE_NET();
    mh_two_worker_hosts(1);
    cr_assert(dpool_netns_enter(net, "c1"));
    dpool_t *pool = mh_open_pool(NULL, 1, retries);
    char lost[32];
    dpool_result_t *result = mh_start_long_task(pool, 4.0, lost, sizeof lost);
    double cut_at = mh_now();
    mh_cut(lost, how, false);
    dpool_buf_t value = {0};
    dpool_error_t err = {0};
    int rc = dpool_result_get(result, 30, &value, &err);
    double took = mh_now() - cut_at;
    if (retries == 0) {
        cr_log_info("host %s cut: its task failed after %.1f s: %s", lost, took, err.message);
        cr_assert_eq(rc, DPOOL_ERR_WORKER_LOST, "got %s (%s)", dpool_strerror(rc), err.message);
        cr_assert(strstr(err.message, lost), "the message does not name host %s: %s", lost,
                  err.message);
        cr_assert_leq(took, MH_DETECT_BOUND_S, "the loss took %.1f s to be detected", took);
        mh_assert_forgotten(lost);
    } else {
        cr_assert_eq(rc, DPOOL_OK, "a retried task failed: %s (%s)", dpool_strerror(rc),
                     err.message);
        mh_span_t span = mh_span_of_msgpack(&value);
        const char *ran_on = mh_host_of_pid(span.pid);
        cr_log_info("host %s cut: its task was re-run on %s, done %.1f s after the cut", lost,
                    ran_on ? ran_on : "?", took);
        cr_assert(ran_on && strcmp(ran_on, lost) != 0, "the retry did not run on the other host");
        cr_assert_leq(took, MH_DETECT_BOUND_S + 4.0, "the retried task took %.1f s", took);
    }
    dpool_buf_free(&value);
    dpool_result_destroy(&result);
    mh_close_pool(&pool);
    mh_cut(lost, how, true);
    double back = mh_wait_rejoined(lost);
    cr_log_info("host %s listed again %.1f s after it came back", lost, back);
    mh_assert_both_hosts_work();
}

Test(multihost, a_host_whose_link_is_cut_fails_its_task_naming_it_then_rejoins)
{
    mh_lose_and_regain_a_host(MH_CUT_LINK, 0);
}

Test(multihost, a_host_whose_link_is_cut_has_its_task_retried_elsewhere_with_retries_1)
{
    mh_lose_and_regain_a_host(MH_CUT_LINK, 1);
}

Test(multihost, a_stopped_worker_daemon_is_lost_then_rejoins_on_sigcont)
{
    mh_lose_and_regain_a_host(MH_STOP_DAEMON, 0);
}

static void
mh_assert_status_shows_everything(const json_t *status, const char *const *hosts)
{
    long busy = 0;
    for (size_t i = 0; hosts[i]; i++) {
        const json_t *entry = mh_status_host(status, hosts[i]);
        cr_assert_not_null(entry, "status lacks host %s", hosts[i]);
        cr_assert_eq(mh_int(entry, "processes"), 2);
        cr_assert_eq(mh_int(entry, "busy") + mh_int(entry, "idle"), 2, "host %s", hosts[i]);
        cr_assert_gt(mh_int(entry, "pid"), 0);
        busy += mh_int(entry, "busy");
    }
    cr_assert_eq(json_array_size(json_object_get(status, "hosts")), 3);
    cr_assert_eq(busy, 2, "%ld processes busy for a cap-2 pool", busy);
    const json_t *pool = mh_status_pool(status, "visible");
    cr_assert_not_null(pool, "status lacks pool \"visible\"");
    cr_assert_eq(mh_int(pool, "cap"), 2);
    cr_assert_eq(mh_int(pool, "failed"), 0);
    bool offered = false;
    size_t index;
    json_t *name;
    json_array_foreach(json_object_get(status, "functions"), index, name) offered =
        offered || strcmp(json_string_value(name), "test.span") == 0;
    cr_assert(offered, "status does not list test.span among the functions");
}

// Polls status from host until pool "visible" shows running/queued/done as given.
static json_t *
mh_wait_pool_counts(const char *host, long running, long queued, long done)
{
    double start = mh_now();
    for (int i = 0; i < 300 && mh_now() - start < 20; i++) {
        json_t *status = mh_status(host);
        const json_t *pool = status ? mh_status_pool(status, "visible") : NULL;
        if (pool && mh_int(pool, "running") == running && mh_int(pool, "queued") == queued &&
            mh_int(pool, "done") == done)
            return status;
        json_decref(status);
        usleep(50000);
    }
    cr_assert_fail("pool \"visible\" never showed running %ld, queued %ld, done %ld", running,
                   queued, done);
    return NULL;
}

Test(multihost, status_json_from_a_client_host_lists_every_worker_host_and_pool)
{
    MH_REQUIRE_NET();
    static const char *const hosts[] = {"w1", "w2", "w3", NULL};
    mh_add_hosts((const char *const[]){"broker", "w1", "w2", "w3", "c1", "c2", NULL});
    mh_start_broker("broker");
    for (size_t i = 0; hosts[i]; i++)
        mh_start_worker(hosts[i], 2);
    mh_wait_processes("c2", 6, 30);
    cr_assert(dpool_netns_enter(net, "c1"));
    dpool_t *pool = mh_open_pool("visible", 2, 0);
    dpool_result_t *results[4];
    for (int i = 0; i < 4; i++)
        results[i] = dpool_apply_asyncf(pool, "test.span", "d", 1.5);
    json_t *status = mh_wait_pool_counts("c2", 2, 2, 0);
    mh_assert_status_shows_everything(status, hosts);
    json_decref(status);
    for (int i = 0; i < 4; i++) {
        mh_span_of(results[i], 30);
        dpool_result_destroy(&results[i]);
    }
    json_decref(mh_wait_pool_counts("c2", 0, 0, 4));
    // The human-readable form names the hosts and the pool too.
    const char *argv[] = {"dpool", "status", "--broker", endpoint, NULL};
    char *out = NULL;
    cr_assert_eq(dpool_netns_run(net, "c2", argv, NULL, 10, &out, NULL), 0);
    for (size_t i = 0; hosts[i]; i++)
        cr_assert(strstr(out, hosts[i]), "`dpool status` lacks %s:\n%s", hosts[i], out);
    cr_assert(strstr(out, "visible"), "`dpool status` lacks the pool:\n%s", out);
    free(out);
    mh_close_pool(&pool);
}
