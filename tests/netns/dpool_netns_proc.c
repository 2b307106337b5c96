/*  dpool_netns, second part: the processes started on a topology's hosts. Included at
    the end of dpool_netns.c (it uses that file's struct and helpers); not compiled on
    its own. */

// environ plus the extra entries, an entry of extra replacing one of the same name.
static char **
s_environment(const char *const *extra)
{
    size_t count = 0, extra_count = 0;
    while (environ[count])
        count++;
    while (extra && extra[extra_count])
        extra_count++;
    char **envp = calloc(count + extra_count + 1, sizeof *envp);
    if (!envp)
        return NULL;
    size_t used = 0;
    for (size_t i = 0; i < count; i++) {
        bool replaced = false;
        for (size_t j = 0; j < extra_count && !replaced; j++) {
            size_t name_size = strcspn(extra[j], "=");
            replaced = strncmp(environ[i], extra[j], name_size + 1) == 0;
        }
        if (!replaced)
            envp[used++] = environ[i];
    }
    for (size_t j = 0; j < extra_count; j++)
        envp[used++] = (char *)extra[j];
    return envp;
}

typedef struct {
    const char *program;
    const char *const *argv;
    char **envp;
    const s_host_t *host;
    const char *hosts_file;
    const char *out_path;
    const char *err_path;
    bool contain;
    pid_t parent;
} s_spawn_t;

static void
s_child_fail(const char *what)
{
    char line[160];
    int size = snprintf(line, sizeof line, "dpool_netns: child: %s: %s\n", what, strerror(errno));
    if (write(STDERR_FILENO, line, (size_t)size) < 0)
        _exit(126);
    _exit(126);
}

// A contained child: it becomes the parent of the program, which runs as process 1 of
// a PID namespace of its own, dies with this parent (PR_SET_PDEATHSIG), and when it
// dies the kernel kills everything it started. So a shell script's children go too,
// though no death signal was armed in them. Leaves with the program's status.
static void
s_child_contain(void)
{
    if (unshare(CLONE_NEWPID) < 0)
        s_child_fail("unshare(CLONE_NEWPID)");
    pid_t init = fork();
    if (init < 0)
        s_child_fail("fork");
    if (init == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        // /proc of this PID namespace (the mount namespace is already ours): programs
        // that read /proc/<own pid> (LeakSanitizer does) must find themselves there.
        if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
            s_child_fail("mounting /proc");
        return;
    }
    int status = 0;
    while (waitpid(init, &status, 0) < 0 && errno == EINTR)
        ;
    _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
}

// In the child: the host's network, its own host name and /etc/hosts, then exec.
static void
s_child_enter(const s_spawn_t *spawn)
{
    // What the test process does with these signals is no business of the program's
    // (exec keeps an ignored signal ignored); a contained child dies of SIGTERM.
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != spawn->parent)
        _exit(127); // the test process died before the death signal was armed
    int in = open("/dev/null", O_RDONLY);
    int out = open(spawn->out_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    int err = open(spawn->err_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (in < 0 || out < 0 || err < 0)
        _exit(126);
    dup2(in, STDIN_FILENO);
    dup2(out, STDOUT_FILENO);
    dup2(err, STDERR_FILENO);
    int ns = open(spawn->host->ns_path, O_RDONLY | O_CLOEXEC);
    if (ns < 0 || setns(ns, CLONE_NEWNET) < 0)
        s_child_fail("entering the network namespace");
    if (unshare(CLONE_NEWUTS | CLONE_NEWNS) < 0)
        s_child_fail("unshare(CLONE_NEWUTS | CLONE_NEWNS)");
    if (sethostname(spawn->host->name, strlen(spawn->host->name)) < 0)
        s_child_fail("sethostname");
    if (mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
        mount(spawn->hosts_file, "/etc/hosts", NULL, MS_BIND, NULL) < 0)
        s_child_fail("bind-mounting the topology's /etc/hosts");
    if (spawn->contain)
        s_child_contain();
    execve(spawn->program, (char *const *)spawn->argv, spawn->envp);
    s_child_fail(spawn->program);
}

pid_t
dpool_netns_spawn(dpool_netns_t *self, const char *host, const char *const *argv,
                  const char *const *env, const char *out_path, const char *err_path)
{
    return dpool_netns_spawn_contained(self, host, argv, env, out_path, err_path, false);
}

pid_t
dpool_netns_spawn_contained(dpool_netns_t *self, const char *host, const char *const *argv,
                            const char *const *env, const char *out_path, const char *err_path,
                            bool contain)
{
    const s_host_t *where = s_host(self, host);
    if (!where || !argv || !argv[0] || self->pid_count == S_MAX_PROCESSES)
        return -1;
    char program[512];
    if (strchr(argv[0], '/'))
        snprintf(program, sizeof program, "%s", argv[0]);
    else
        snprintf(program, sizeof program, "%s/%s", DPOOL_BIN_DIR, argv[0]);
    s_spawn_t spawn = {.program = program,
                       .argv = argv,
                       .envp = s_environment(env),
                       .host = where,
                       .hosts_file = self->hosts_file,
                       .out_path = out_path ? out_path : where->log,
                       .err_path = err_path ? err_path : where->log,
                       .contain = contain,
                       .parent = getpid()};
    if (!spawn.envp)
        return -1;
    pid_t pid = fork();
    if (pid == 0)
        s_child_enter(&spawn);
    free(spawn.envp);
    if (pid > 0)
        self->pids[self->pid_count++] = pid;
    return pid;
}

int
dpool_netns_wait(dpool_netns_t *self, pid_t pid, double timeout_s)
{
    if (s_find_pid(self, pid) < 0)
        return -1;
    double deadline = s_now() + timeout_s;
    int status = 0;
    pid_t done;
    while ((done = waitpid(pid, &status, WNOHANG)) == 0 && s_now() < deadline)
        usleep(5000);
    if (done == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    s_forget_pid(self, pid);
    if (done != pid)
        return -1;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : -1;
}

int
dpool_netns_run(dpool_netns_t *self, const char *host, const char *const *argv,
                const char *const *env, double timeout_s, char **out_p, char **err_p)
{
    // A program that starts others (a shell script) is contained: see spawn_contained.
    bool contain = strcmp(argv[0], "/bin/sh") == 0;
    // Unique per call: runs in parallel never share capture files.
    static const char *const names[] = {"out", "err"};
    char paths[2][320];
    unsigned call = ++self->runs;
    for (int i = 0; i < 2; i++) {
        snprintf(paths[i], sizeof paths[i], "%s/run-%u.%s", self->dir, call, names[i]);
        unlink(paths[i]);
    }
    pid_t pid = dpool_netns_spawn_contained(self, host, argv, env, paths[0], paths[1], contain);
    int status = pid > 0 ? dpool_netns_wait(self, pid, timeout_s) : -1;
    char **texts[2] = {out_p, err_p};
    for (int i = 0; i < 2; i++) {
        if (texts[i]) {
            *texts[i] = dpool_netns_slurp(paths[i]);
            if (!*texts[i])
                *texts[i] = strdup("");
        }
    }
    return status;
}

int
dpool_netns_stop(dpool_netns_t *self, pid_t pid)
{
    if (s_find_pid(self, pid) < 0)
        return -1;
    kill(pid, SIGCONT); // a stopped process cannot act on SIGTERM
    kill(pid, SIGTERM);
    int status = -1;
    double deadline = s_now() + 5;
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (s_now() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            break;
        }
        usleep(10000);
    }
    s_forget_pid(self, pid);
    return status;
}

bool
dpool_netns_signal(dpool_netns_t *self, pid_t pid, int signum)
{
    return s_find_pid(self, pid) >= 0 && kill(pid, signum) == 0;
}

bool
dpool_netns_set_link(dpool_netns_t *self, const char *host, bool up)
{
    const s_host_t *where = s_host(self, host);
    char why[600];
    if (!where)
        return false;
    if (s_ip(self,
             (const char *[]){"-n", where->ns, "link", "set", "eth0", up ? "up" : "down", NULL},
             why, sizeof why))
        return true;
    fprintf(stderr, "dpool_netns: %s\n", why);
    return false;
}

bool
dpool_netns_enter(dpool_netns_t *self, const char *host)
{
    const s_host_t *where = s_host(self, host);
    if (!where)
        return false;
    int fd = open(where->ns_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    bool entered = setns(fd, CLONE_NEWNET) == 0;
    close(fd);
    return entered;
}

const char *
dpool_netns_dir(const dpool_netns_t *self)
{
    return self->dir;
}

char *
dpool_netns_slurp(const char *path)
{
    FILE *file = fopen(path, "r");
    if (!file)
        return NULL;
    size_t size = 0, capacity = 4096;
    char *text = malloc(capacity);
    while (text) {
        size += fread(text + size, 1, capacity - size - 1, file);
        if (size + 1 < capacity)
            break;
        char *bigger = realloc(text, capacity * 2);
        if (!bigger) {
            free(text);
            text = NULL;
            break;
        }
        text = bigger;
        capacity *= 2;
    }
    fclose(file);
    if (text)
        text[size] = '\0';
    return text;
}
