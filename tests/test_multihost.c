/*  Multi-host: a broker host, worker hosts and client hosts made of network namespaces
    on this machine (tests/netns/dpool_netns.h), each process started inside its host,
    traffic only over the topology's own bridge and addresses (10.213.7.0/24).

    What it shows: the seed program and the docker-compose demo topology (with the very
    commands docker-compose.yml runs) spread over several worker hosts; a cap holds
    across hosts and clients, measured from the workers' own timestamps; a host whose
    link is cut or whose daemon is stopped is detected by heartbeats within a stated
    bound, its task fails naming the host or is retried elsewhere as the pool's
    retries say, and the host rejoins without a restart when it comes back; `dpool
    status --json` from a client host shows every worker host and pool.

    Needs root (CI runs as root). Without it, or without `ip`, every namespace test is
    reported SKIPPED with the reason, on stderr and in criterion's log. */
#include "netns/dpool_netns.c"
#include "netns/multihost_util.c"

#include <signal.h>

// Liveness: the broker forgets a daemon silent for 3 s (3 beats of 1 s). The bound
// we assert leaves room for the beat that was just missed, the broker's timer tick
// and a loaded (sanitizer) run.
#define MH_DETECT_BOUND_S 10.0
// How long a host that came back may take to be listed again.
#define MH_REJOIN_BOUND_S 20.0

static void
mh_atexit(void)
{
    mh_close_all_pools();
    dpool_netns_destroy(&net); // a failed assertion ends the process through exit()
}

static void
mh_setup(void)
{
    static bool registered;
    if (!registered)
        atexit(mh_atexit);
    registered = true;
    worker_count = 0;
    net = dpool_netns_new(skip_reason, sizeof skip_reason);
    if (!net) {
        fprintf(stderr, "test_multihost: SKIPPED, network namespaces unavailable: %s\n",
                skip_reason);
        cr_log_warn("SKIPPED, network namespaces unavailable: %s", skip_reason);
    }
}

static void
mh_teardown(void)
{
    mh_close_all_pools();
    dpool_netns_destroy(&net);
}

TestSuite(multihost, .init = mh_setup, .fini = mh_teardown, .timeout = 180);

/* ---- The docker-compose demo, without Docker ---------------------------------------- */

// The commands of docker-compose.yml's services. compose_file_* below checks that the
// file still says exactly this; compose_topology_* runs them.
static const char *const compose_broker[] = {"dpool-broker", "--bind", "tcp://0.0.0.0:5555",
                                             "--insecure", NULL};
static const char *const compose_worker[] = {"dpool-worker", "--processes", "2", NULL};
static const char *const compose_client_script[] = {
    "tries=0",
    "until [ \"$(dpool status --json 2>/dev/null | grep -c '\"host\":')\" -ge "
    "\"$DPOOL_WAIT_HOSTS\" ]; do",
    "  tries=$((tries + 1))",
    "  if [ \"$tries\" -ge 60 ]; then",
    "    echo \"client: fewer than $DPOOL_WAIT_HOSTS worker hosts after 60 s\" >&2",
    "    exit 1",
    "  fi",
    "  sleep 1",
    "done",
    "seed_pool || exit 1",
    "dpool status",
    NULL};
static const char compose_broker_env[] = "DPOOL_BROKER: tcp://broker:5555";
// The client service prefixes forwarded task output with the worker host's name.
static const char compose_prefix_env[] = "DPOOL_OUTPUT_PREFIX: host";

typedef struct {
    int started, finished, most_running, other;
    bool seen_start[10], seen_finish[10];
    long pids[10];
    char hosts[10][64]; // the "[host] " prefix of each task's start line
    char first[64];
    bool ended; // "-----end-----" seen; what follows is `dpool status`
} mh_transcript_t;

static void
mh_read_seed_line(mh_transcript_t *t, const char *line)
{
    int task, pid;
    double seconds;
    char tail[64], host[64] = "";
    // "[host] " before a task's line names the worker host that printed it.
    const char *close = line[0] == '[' ? strstr(line, "] ") : NULL;
    if (close && close - line - 1 < (long)sizeof host) {
        snprintf(host, sizeof host, "%.*s", (int)(close - line - 1), line + 1);
        line = close + 2;
    }
    if (sscanf(line, "%d开始执行,进程号为%d%63s", &task, &pid, tail) == 2 && task >= 0 &&
        task < 10) {
        snprintf(t->hosts[task], sizeof t->hosts[task], "%s", host);
        t->seen_start[task] = true;
        t->pids[task] = pid;
        t->started++;
    } else if (sscanf(line, "%d 执行完毕,耗时%lf%63s", &task, &seconds, tail) == 2 && task >= 0 &&
               task < 10 && seconds >= 0 && seconds < 3) {
        t->seen_finish[task] = t->seen_start[task];
        t->finished++;
    } else if (strcmp(line, "-----end-----") == 0) {
        t->ended = true;
    } else if (strcmp(line, "----start----") != 0) {
        t->other++;
    }
    if (t->started - t->finished > t->most_running)
        t->most_running = t->started - t->finished;
}

// Reads the seed's lines up to "-----end-----" (out is cut into lines).
static mh_transcript_t
mh_transcript_of(char *out)
{
    mh_transcript_t t = {0};
    char *save = NULL;
    for (char *line = strtok_r(out, "\n", &save); line && !t.ended;
         line = strtok_r(NULL, "\n", &save)) {
        if (!t.first[0])
            snprintf(t.first, sizeof t.first, "%s", line);
        mh_read_seed_line(&t, line);
    }
    return t;
}

static char *
mh_client_script(void)
{
    size_t size = 1;
    for (size_t i = 0; compose_client_script[i]; i++)
        size += strlen(compose_client_script[i]) + 1;
    char *script = calloc(1, size);
    cr_assert_not_null(script);
    for (size_t i = 0; compose_client_script[i]; i++) {
        strcat(script, compose_client_script[i]);
        strcat(script, "\n");
    }
    return script;
}

Test(multihost, compose_topology_runs_the_seed_over_three_worker_hosts)
{
    MH_REQUIRE_NET();
    // Host names as Docker gives containers: their ids. The broker host is "broker",
    // which every host's /etc/hosts resolves, as Compose's DNS does for the service.
    static const char *const worker_hosts[] = {"3f9a1c2e7b01", "8d2e4b6a9c02", "c51f0e3d7a03",
                                               NULL};
    mh_add_hosts((const char *const[]){"broker", "client", NULL});
    mh_add_hosts(worker_hosts);
    cr_assert_gt(dpool_netns_spawn(net, "broker", compose_broker, NULL, NULL, NULL), 0);
    const char *const worker_env[] = {"DPOOL_BROKER=tcp://broker:5555", NULL};
    for (size_t i = 0; worker_hosts[i]; i++) {
        pid_t pid = dpool_netns_spawn(net, worker_hosts[i], compose_worker, worker_env, NULL, NULL);
        cr_assert_gt(pid, 0);
        mh_note_worker(worker_hosts[i], pid);
    }
    char *script = mh_client_script();
    const char *const client[] = {"/bin/sh", "-c", script, NULL};
    char path[600];
    snprintf(path, sizeof path, "PATH=%s:%s", DPOOL_BIN_DIR, getenv("PATH") ? getenv("PATH") : "");
    const char *const client_env[] = {"DPOOL_BROKER=tcp://broker:5555", "DPOOL_WAIT_HOSTS=3",
                                      "DPOOL_OUTPUT_PREFIX=host", path, NULL};
    char *out = NULL, *err = NULL;
    double start = mh_now();
    int status = dpool_netns_run(net, "client", client, client_env, 120, &out, &err);
    cr_log_info("compose client ran for %.1f s", mh_now() - start);
    cr_assert_eq(status, 0, "the client service exited %d: %s", status, err);
    char *status_text = strstr(out, "-----end-----");
    for (size_t i = 0; worker_hosts[i] && status_text; i++)
        cr_assert(strstr(status_text, worker_hosts[i]), "`dpool status` lacks host %s:\n%s",
                  worker_hosts[i], status_text);
    mh_transcript_t t = mh_transcript_of(out);
    cr_assert_str_eq(t.first, "----start----");
    cr_assert(t.ended, "no -----end----- line");
    cr_assert_eq(t.started, 10, "%d start lines", t.started);
    cr_assert_eq(t.finished, 10, "%d finish lines", t.finished);
    for (int i = 0; i < 10; i++)
        cr_assert(t.seen_start[i] && t.seen_finish[i], "task %d missing or finished first", i);
    cr_assert_eq(t.other, 0, "%d unexpected lines", t.other);
    cr_assert_leq(t.most_running, 3, "%d tasks ran at once in a Pool(3)", t.most_running);
    int hosts = mh_distinct_hosts(t.pids, 10);
    cr_log_info("the seed's ten tasks ran on %d worker hosts", hosts);
    cr_assert_geq(hosts, 2, "the seed's tasks all ran on one host");
    // The forwarded output itself says which container ran each task.
    for (int i = 0; i < 10; i++) {
        bool known = false;
        for (size_t h = 0; worker_hosts[h]; h++)
            known = known || strcmp(t.hosts[i], worker_hosts[h]) == 0;
        cr_assert(known, "task %d's output is not prefixed with its worker host: [%s]", i,
                  t.hosts[i]);
    }
    free(script);
    free(out);
    free(err);
}

// The repository's root, from this file's path (tests/test_multihost.c).
static void
mh_repo_path(char *path, size_t size, const char *name)
{
    const char *here = __FILE__;
    const char *tests = strstr(here, "tests/test_multihost.c");
    cr_assert_not_null(tests, "cannot find the repository from %s", here);
    snprintf(path, size, "%.*s%s", (int)(tests - here), here, name);
}

// line with every '$' doubled, as Compose wants it written.
static void
mh_compose_escape(const char *line, char *out, size_t size)
{
    size_t used = 0;
    for (; *line && used + 3 < size; line++) {
        if (*line == '$')
            out[used++] = '$';
        out[used++] = *line;
    }
    out[used] = '\0';
}

static void
mh_assert_argv_in(const char *file, const char *const *argv)
{
    char flow[512] = "command: [";
    for (size_t i = 0; argv[i]; i++) {
        size_t used = strlen(flow);
        snprintf(flow + used, sizeof flow - used, "%s\"%s\"", i ? ", " : "", argv[i]);
    }
    strcat(flow, "]");
    cr_assert(strstr(file, flow), "docker-compose.yml no longer has %s", flow);
}

TestSuite(compose, .timeout = 60);

Test(compose, compose_file_is_valid_and_runs_what_the_namespace_test_runs)
{
    char path[512];
    mh_repo_path(path, sizeof path, "docker-compose.yml");
    char *file = dpool_netns_slurp(path);
    cr_assert_not_null(file, "cannot read %s", path);
    mh_assert_argv_in(file, compose_broker);
    mh_assert_argv_in(file, compose_worker);
    cr_assert(strstr(file, compose_broker_env), "docker-compose.yml lacks %s", compose_broker_env);
    cr_assert(strstr(file, compose_prefix_env), "docker-compose.yml lacks %s", compose_prefix_env);
    for (size_t i = 0; compose_client_script[i]; i++) {
        char escaped[256];
        mh_compose_escape(compose_client_script[i], escaped, sizeof escaped);
        cr_assert(strstr(file, escaped), "the client script lacks the line: %s", escaped);
    }
    static const char *const services[] = {"\n  broker:\n", "\n  worker:\n", "\n  client:\n"};
    for (size_t i = 0; i < 3; i++)
        cr_assert(strstr(file, services[i]), "no service%s", services[i]);
    free(file);
    // The real schema check, where Debian's docker-compose (v1) or the docker CLI's
    // compose plugin is installed (scripts/setup.sh installs the former).
    if (access("/usr/bin/docker-compose", X_OK) != 0) {
        cr_log_warn("no /usr/bin/docker-compose: the compose file got the textual check only");
        return;
    }
    int out = open("/dev/null", O_WRONLY);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(out, STDOUT_FILENO);
        execl("/usr/bin/docker-compose", "docker-compose", "-f", path, "config", "-q", NULL);
        _exit(127);
    }
    close(out);
    int status = -1;
    double start = mh_now();
    pid_t done;
    while ((done = waitpid(pid, &status, WNOHANG)) == 0 && mh_now() - start < 50)
        usleep(20000);
    if (done == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "`docker-compose -f %s config -q` rejects the file", path);
}

#include "netns/multihost_cases.c"
