/*  Process control for integration tests: fork/exec with a death signal, endpoint
    discovery through the broker's --endpoint-file, readiness through STATUS, and a
    stop by PID that always ends in waitpid so no zombie or stray daemon is left. */
#define _GNU_SOURCE
#include "dpool_harness.h"
#include "dpool_clock.h"
#include "dpool_proto.h"

#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <msgpack.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#define S_MAX_PROCESSES 64

struct dpool_harness {
    char dir[256];
    char endpoint[256];
    pid_t broker_pid;
    pid_t pids[S_MAX_PROCESSES];
    size_t pid_count;
};

dpool_harness_t *
dpool_harness_new(void)
{
    dpool_harness_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    snprintf(self->dir, sizeof self->dir, "/tmp/dpool-test.XXXXXX");
    if (!mkdtemp(self->dir)) {
        free(self);
        return NULL;
    }
    return self;
}

static int
s_remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static ssize_t
s_find(const dpool_harness_t *self, pid_t pid)
{
    for (size_t i = 0; i < self->pid_count; i++)
        if (self->pids[i] == pid)
            return (ssize_t)i;
    return -1;
}

int
dpool_harness_stop(dpool_harness_t *self, pid_t pid)
{
    ssize_t index = s_find(self, pid);
    if (index < 0)
        return -1;
    kill(pid, SIGTERM);
    int status = -1;
    int64_t deadline = dpool_clock_ms() + 5000;
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (dpool_clock_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            break;
        }
        usleep(10000);
    }
    self->pids[index] = self->pids[--self->pid_count];
    return status;
}

bool
dpool_harness_signal(dpool_harness_t *self, pid_t pid, int signum)
{
    return s_find(self, pid) >= 0 && kill(pid, signum) == 0;
}

void
dpool_harness_destroy(dpool_harness_t **self_p)
{
    dpool_harness_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    // Workers first, so they leave before their broker; then the broker.
    while (self->pid_count > 0)
        dpool_harness_stop(self, self->pids[self->pid_count - 1]);
    if (!getenv("DPOOL_TEST_KEEP"))
        nftw(self->dir, s_remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(self);
}

// Starts bin/<program> with argv, stdout+stderr to log_path. Returns the pid or -1.
static pid_t
s_spawn(dpool_harness_t *self, const char *const *argv, const char *log_path)
{
    if (self->pid_count == S_MAX_PROCESSES)
        return -1;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        // Dies with the test process: a crashed or timed-out test leaves nothing behind.
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int log = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (log >= 0) {
            dup2(log, STDOUT_FILENO);
            dup2(log, STDERR_FILENO);
            close(log);
        }
        // Started as from a shell, with only 0-2 open: the descriptors a daemon makes
        // then take the lowest numbers, as they do in use.
        close_range(3, ~0U, 0);
        char program[512];
        snprintf(program, sizeof program, "%s/%s", DPOOL_BIN_DIR, argv[0]);
        execv(program, (char *const *)argv);
        _exit(127);
    }
    self->pids[self->pid_count++] = pid;
    return pid;
}

static bool
s_read_endpoint(dpool_harness_t *self, const char *path)
{
    FILE *file = fopen(path, "r");
    if (!file)
        return false;
    bool ok = fgets(self->endpoint, sizeof self->endpoint, file) != NULL;
    fclose(file);
    self->endpoint[strcspn(self->endpoint, "\n")] = '\0';
    return ok && self->endpoint[0];
}

const char *
dpool_harness_start_broker(dpool_harness_t *self, const char *const *extra_args)
{
    char endpoint_file[300], log_path[300];
    snprintf(endpoint_file, sizeof endpoint_file, "%s/endpoint", self->dir);
    snprintf(log_path, sizeof log_path, "%s/broker.log", self->dir);
    const char *argv[32] = {"dpool-broker", "--bind", "tcp://127.0.0.1:*", "--endpoint-file",
                            endpoint_file};
    size_t argc = 5;
    for (size_t i = 0; extra_args && extra_args[i] && argc < 31; i++)
        argv[argc++] = extra_args[i];
    argv[argc] = NULL;
    // A restarted broker must not be mistaken for the last one: its endpoint goes first.
    unlink(endpoint_file);
    self->endpoint[0] = '\0';
    pid_t pid = s_spawn(self, argv, log_path);
    if (pid < 0)
        return NULL;
    self->broker_pid = pid;
    for (int i = 0; i < 1000; i++) {
        if (s_read_endpoint(self, endpoint_file))
            return self->endpoint;
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            self->pid_count--;
            return NULL;
        }
        usleep(10000);
    }
    return NULL;
}

pid_t
dpool_harness_start_worker(dpool_harness_t *self, int processes, const char *const *extra_args)
{
    if (!self->endpoint[0])
        return -1;
    char count[16], log_path[300];
    snprintf(count, sizeof count, "%d", processes);
    snprintf(log_path, sizeof log_path, "%s/worker-%zu.log", self->dir, self->pid_count);
    const char *argv[32] = {"dpool-worker", "--broker", self->endpoint, "--processes", count};
    size_t argc = 5;
    for (size_t i = 0; extra_args && extra_args[i] && argc < 31; i++)
        argv[argc++] = extra_args[i];
    argv[argc] = NULL;
    return s_spawn(self, argv, log_path);
}

// Reads the "processes" figure from a STATUS_REPLY payload, or -1.
static long
s_status_processes(zframe_t *payload)
{
    msgpack_unpacked unpacked;
    msgpack_unpacked_init(&unpacked);
    long processes = -1;
    if (msgpack_unpack_next(&unpacked, (const char *)zframe_data(payload), zframe_size(payload),
                            NULL) == MSGPACK_UNPACK_SUCCESS &&
        unpacked.data.type == MSGPACK_OBJECT_MAP) {
        const msgpack_object_map *map = &unpacked.data.via.map;
        for (uint32_t i = 0; i < map->size; i++) {
            const msgpack_object *key = &map->ptr[i].key;
            if (key->type == MSGPACK_OBJECT_STR && key->via.str.size == 9 &&
                memcmp(key->via.str.ptr, "processes", 9) == 0 &&
                map->ptr[i].val.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
                processes = (long)map->ptr[i].val.via.u64;
        }
    }
    msgpack_unpacked_destroy(&unpacked);
    return processes;
}

static long
s_ask_processes(zsock_t *dealer)
{
    dpool_msg_t request = {.command = DPOOL_CMD_STATUS};
    if (dpool_proto_send(dealer, &request, NULL) != 0)
        return -1;
    zpoller_t *poller = zpoller_new(dealer, NULL);
    long processes = -1;
    if (poller && zpoller_wait(poller, 1000) == dealer) {
        zmsg_t *zmsg = zmsg_recv(dealer);
        dpool_msg_t reply = {0};
        const char *why = NULL;
        if (zmsg && dpool_proto_decode(&zmsg, false, NULL, &reply, &why) == 0 &&
            reply.command == DPOOL_CMD_STATUS_REPLY)
            processes = s_status_processes(reply.payload);
        dpool_msg_reset(&reply);
        zmsg_destroy(&zmsg);
    }
    zpoller_destroy(&poller);
    return processes;
}

bool
dpool_harness_wait_processes(dpool_harness_t *self, int processes, double timeout_s)
{
    zsock_t *dealer = zsock_new_dealer(self->endpoint);
    if (!dealer)
        return false;
    zsock_set_linger(dealer, 0);
    int64_t deadline = dpool_clock_ms() + (int64_t)(timeout_s * 1000);
    bool reached = false;
    while (!reached && dpool_clock_ms() < deadline) {
        reached = s_ask_processes(dealer) == processes;
        if (!reached)
            usleep(20000);
    }
    zsock_destroy(&dealer);
    return reached;
}

int
dpool_harness_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t size = sizeof addr;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) == 0 &&
        getsockname(fd, (struct sockaddr *)&addr, &size) == 0)
        port = ntohs(addr.sin_port);
    close(fd);
    return port;
}

pid_t
dpool_harness_broker_pid(const dpool_harness_t *self)
{
    return self->broker_pid;
}

const char *
dpool_harness_endpoint(const dpool_harness_t *self)
{
    return self->endpoint[0] ? self->endpoint : NULL;
}

const char *
dpool_harness_dir(const dpool_harness_t *self)
{
    return self->dir;
}

typedef struct {
    int fd;
    char *data;
    size_t size;
    size_t capacity;
} s_capture_t;

static bool
s_capture_read(s_capture_t *capture)
{
    if (capture->size + 4096 + 1 > capture->capacity) {
        size_t capacity = capture->capacity ? capture->capacity * 2 : 16384;
        char *data = realloc(capture->data, capacity);
        if (!data)
            return false;
        capture->data = data;
        capture->capacity = capacity;
        capture->data[capture->size] = '\0';
    }
    ssize_t got = read(capture->fd, capture->data + capture->size, 4096);
    if (got <= 0)
        return false;
    capture->size += (size_t)got;
    capture->data[capture->size] = '\0';
    return true;
}

// Gives the captured text to the caller (an empty string when nothing came), or frees it.
static void
s_capture_hand_over(s_capture_t *capture, char **text_p)
{
    if (text_p)
        *text_p = capture->data ? capture->data : strdup("");
    else
        free(capture->data);
    capture->data = NULL;
}

static void
s_child_exec(const char *const *argv, int in_fd, int out_fd, int err_fd, const char *endpoint)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    dup2(in_fd, STDIN_FILENO);
    dup2(out_fd, STDOUT_FILENO);
    dup2(err_fd, STDERR_FILENO);
    close_range(3, ~0U, 0); // as from a shell (s_spawn)
    if (endpoint)
        setenv("DPOOL_BROKER", endpoint, 1);
    char program[512];
    snprintf(program, sizeof program, "%s/%s", DPOOL_BIN_DIR, argv[0]);
    execv(program, (char *const *)argv);
    _exit(127);
}

// Feeds input and collects both outputs until the child closes them or time runs out.
static bool
s_pump(s_capture_t captures[2], int in_fd, const char *stdin_text, int64_t deadline)
{
    size_t fed = 0, to_feed = stdin_text ? strlen(stdin_text) : 0;
    if (to_feed == 0 && in_fd >= 0) {
        close(in_fd);
        in_fd = -1;
    }
    // Non-blocking: a program that streams (prints while it reads) must get its output
    // read while its input is still being fed, or both sides wait for ever.
    if (in_fd >= 0)
        fcntl(in_fd, F_SETFL, fcntl(in_fd, F_GETFL) | O_NONBLOCK);
    while (captures[0].fd >= 0 || captures[1].fd >= 0) {
        struct pollfd fds[3] = {{.fd = captures[0].fd, .events = POLLIN},
                                {.fd = captures[1].fd, .events = POLLIN},
                                {.fd = in_fd, .events = POLLOUT}};
        int64_t left = deadline - dpool_clock_ms();
        if (left <= 0 || poll(fds, 3, (int)left) < 0) {
            if (in_fd >= 0)
                close(in_fd);
            return false;
        }
        for (int i = 0; i < 2; i++)
            if (fds[i].revents && !s_capture_read(&captures[i])) {
                close(captures[i].fd);
                captures[i].fd = -1;
            }
        if (in_fd >= 0 && fds[2].revents) {
            ssize_t put = write(in_fd, stdin_text + fed, to_feed - fed);
            fed += put > 0 ? (size_t)put : 0;
            if ((put < 0 && errno != EAGAIN) || fed == to_feed) {
                close(in_fd);
                in_fd = -1;
            }
        }
    }
    if (in_fd >= 0)
        close(in_fd);
    return true;
}

int
dpool_harness_run(dpool_harness_t *self, const char *const *argv, const char *stdin_text,
                  double timeout_s, char **out_p, char **err_p)
{
    int in[2], out[2], err[2];
    if (pipe(in) < 0)
        return -1;
    if (pipe(out) < 0 || pipe(err) < 0)
        return -1; // the test process is about to fail anyway; fds are reclaimed at exit
    signal(SIGPIPE, SIG_IGN);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        close(in[1]);
        close(out[0]);
        close(err[0]);
        s_child_exec(argv, in[0], out[1], err[1], dpool_harness_endpoint(self));
    }
    close(in[0]);
    close(out[1]);
    close(err[1]);
    s_capture_t captures[2] = {{.fd = out[0]}, {.fd = err[0]}};
    bool finished =
        s_pump(captures, in[1], stdin_text, dpool_clock_ms() + (int64_t)(timeout_s * 1000));
    for (int i = 0; i < 2; i++)
        if (captures[i].fd >= 0)
            close(captures[i].fd);
    if (!finished)
        kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    s_capture_hand_over(&captures[0], out_p);
    s_capture_hand_over(&captures[1], err_p);
    if (!finished || !WIFEXITED(status))
        return -1;
    return WEXITSTATUS(status);
}
