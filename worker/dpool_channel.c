/*  Frames on the daemon <-> worker process socketpair. One buffer per channel
    holds bytes read but not yet taken; a taken frame is discarded lazily, at the
    next call, so the body pointer handed out stays valid until then. */
#include "dpool_channel.h"

#include <dpool/errors.h>
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define S_HEADER_SIZE 5
// Reads one dpool_channel_fill makes at most: a large result takes several loop
// turns of the daemon, and the other processes are served in between.
#define S_FILL_READS 16
// The most buffer a channel keeps while it holds no frame.
#define S_KEEP_CAPACITY (1024u * 1024u)
// A RESULT body starts with an int32 code, uint32 flags, a uint64 index and a uint32
// message length.
#define S_RESULT_HEAD_SIZE 20
// A TASK body starts with a uint32 epoch.
#define S_TASK_HEAD_SIZE 4

struct dpool_channel_t {
    int fd;
    uint8_t *data;
    size_t size;  // bytes held
    size_t taken; // bytes at the front that belong to frames already handed out
    size_t capacity;
    uint8_t *kept; // where RESULT frames kept back go (not owned), or NULL: none are
    size_t kept_capacity;
    _Atomic uint32_t *kept_size; // bytes of whole frames in kept, published
    _Atomic uint64_t *kept_gen;  // moves on each time the frames kept are sent
    size_t kept_count;
};

dpool_channel_t *
dpool_channel_new(int fd)
{
    dpool_channel_t *self = calloc(1, sizeof *self);
    if (!self) {
        close(fd);
        return NULL;
    }
    self->fd = fd;
    return self;
}

void
dpool_channel_destroy(dpool_channel_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dpool_channel_t *self = *self_p;
    if (self->fd >= 0)
        close(self->fd);
    free(self->data);
    free(self);
    *self_p = NULL;
}

int
dpool_channel_fd(const dpool_channel_t *self)
{
    return self->fd;
}

// Writes every byte of the iovecs, riding out partial writes and signals.
static int
s_write_all(int fd, struct iovec *iov, int count)
{
    while (count > 0) {
        struct msghdr hdr = {.msg_iov = iov, .msg_iovlen = (size_t)count};
        // MSG_NOSIGNAL: a process that died must cost an error, not the daemon's life.
        ssize_t written = sendmsg(fd, &hdr, MSG_NOSIGNAL);
        if (written < 0 && errno == EINTR)
            continue;
        if (written < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            poll(&pfd, 1, 1000);
            continue;
        }
        if (written < 0)
            return DPOOL_ERR_IO;
        size_t left = (size_t)written;
        while (count > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++, count--;
        }
        if (count > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    return DPOOL_OK;
}

int
dpool_channel_send(dpool_channel_t *self, uint8_t kind, const void *head, size_t head_size,
                   const void *tail, size_t tail_size)
{
    if (head_size + tail_size > DPOOL_CHANNEL_FRAME_MAX)
        return DPOOL_ERR_INVALID;
    uint32_t length = (uint32_t)(head_size + tail_size);
    uint8_t header[S_HEADER_SIZE];
    memcpy(header, &length, sizeof length);
    header[4] = kind;
    struct iovec iov[3] = {
        {header, sizeof header}, {(void *)head, head_size}, {(void *)tail, tail_size}};
    return s_write_all(self->fd, iov, 3);
}

int
dpool_channel_send_tasks(dpool_channel_t *self, uint32_t epoch, const dpool_channel_task_t *tasks,
                         size_t count)
{
    // Per task: frame header, epoch, function name with its NUL, arguments.
    size_t heads_size = 0;
    for (size_t i = 0; i < count; i++) {
        size_t name_size = strlen(tasks[i].function) + 1;
        if (S_TASK_HEAD_SIZE + name_size + tasks[i].args_size > DPOOL_CHANNEL_FRAME_MAX)
            return DPOOL_ERR_INVALID;
        heads_size += S_HEADER_SIZE + S_TASK_HEAD_SIZE + name_size;
    }
    // On the stack for what one write ahead holds (a task started alone is the common
    // case); from the heap only for long names or many tasks.
    uint8_t stack_heads[4096];
    struct iovec stack_iov[2 * 17];
    bool heads_fit = heads_size <= sizeof stack_heads;
    bool iov_fit = 2 * count <= sizeof stack_iov / sizeof stack_iov[0];
    uint8_t *heads = heads_fit ? stack_heads : malloc(heads_size);
    struct iovec *iov = iov_fit ? stack_iov : malloc(2 * count * sizeof *iov);
    int rc = heads && iov ? DPOOL_OK : DPOOL_ERR_NOMEM;
    uint8_t *at = heads;
    for (size_t i = 0; rc == DPOOL_OK && i < count; i++) {
        size_t name_size = strlen(tasks[i].function) + 1;
        uint32_t length = (uint32_t)(S_TASK_HEAD_SIZE + name_size + tasks[i].args_size);
        iov[2 * i] = (struct iovec){at, S_HEADER_SIZE + S_TASK_HEAD_SIZE + name_size};
        memcpy(at, &length, sizeof length);
        at[4] = tasks[i].chunk ? DPOOL_CHANNEL_CHUNK : DPOOL_CHANNEL_TASK;
        memcpy(at + S_HEADER_SIZE, &epoch, sizeof epoch);
        memcpy(at + S_HEADER_SIZE + S_TASK_HEAD_SIZE, tasks[i].function, name_size);
        at += iov[2 * i].iov_len;
        iov[2 * i + 1] = (struct iovec){(void *)tasks[i].args, tasks[i].args_size};
    }
    if (rc == DPOOL_OK)
        rc = s_write_all(self->fd, iov, (int)(2 * count));
    if (!iov_fit)
        free(iov);
    if (!heads_fit)
        free(heads);
    return rc;
}

// Drops taken frames and makes room for at least want more bytes. A buffer that
// grew for a large chunk is given back once it is empty, so every process slot
// does not keep the largest frame it ever saw.
static int
s_make_room(dpool_channel_t *self, size_t want)
{
    if (self->taken) {
        memmove(self->data, self->data + self->taken, self->size - self->taken);
        self->size -= self->taken;
        self->taken = 0;
    }
    if (self->size == 0 && self->capacity > S_KEEP_CAPACITY && want <= S_KEEP_CAPACITY) {
        free(self->data);
        self->data = NULL;
        self->capacity = 0;
    }
    if (self->capacity - self->size >= want)
        return DPOOL_OK;
    size_t capacity = self->capacity ? self->capacity : 4096;
    while (capacity - self->size < want)
        capacity *= 2;
    uint8_t *grown = realloc(self->data, capacity);
    if (!grown)
        return DPOOL_ERR_NOMEM;
    self->data = grown;
    self->capacity = capacity;
    return DPOOL_OK;
}

// One read of up to want bytes (or more, if there is room). Returns 1 when it filled
// the room, 2 when it read less (the socket held no more just then), 0 when none
// were available (non-blocking), or DPOOL_ERR_IO at end of file.
static int
s_read(dpool_channel_t *self, size_t want, bool block)
{
    if (s_make_room(self, want < 65536 ? 65536 : want) != DPOOL_OK)
        return DPOOL_ERR_NOMEM;
    for (;;) {
        size_t room = self->capacity - self->size;
        ssize_t got = recv(self->fd, self->data + self->size, room, MSG_DONTWAIT);
        if (got > 0) {
            self->size += (size_t)got;
            return (size_t)got < room ? 2 : 1;
        }
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!block)
                return 0;
            // Waits in poll, not in a blocking recv: a recv sleeper is woken each time
            // the peer reads what this side wrote (the socket's room grew), a wasted
            // context switch per task; poll wakes for incoming data only.
            struct pollfd readable = {.fd = self->fd, .events = POLLIN};
            if (poll(&readable, 1, -1) < 0 && errno != EINTR)
                return DPOOL_ERR_IO;
            continue;
        }
        return DPOOL_ERR_IO;
    }
}

int
dpool_channel_fill(dpool_channel_t *self)
{
    for (int i = 0; i < S_FILL_READS; i++) {
        int rc = s_read(self, 1, false);
        if (rc < 0)
            return rc;
        // A short read emptied the socket: another would only say EAGAIN (one system
        // call per task saved; an end of file shows at the next poll).
        if (rc != 1)
            break;
    }
    return DPOOL_OK;
}

int
dpool_channel_next(dpool_channel_t *self, bool block, uint8_t *kind, const uint8_t **body,
                   size_t *size)
{
    for (;;) {
        size_t held = self->size - self->taken;
        uint8_t *start = self->data + self->taken;
        uint32_t length = 0;
        if (held >= S_HEADER_SIZE) {
            memcpy(&length, start, sizeof length);
            if (length > DPOOL_CHANNEL_FRAME_MAX)
                return DPOOL_ERR_PROTO;
            if (held >= S_HEADER_SIZE + (size_t)length) {
                *kind = start[4];
                *body = start + S_HEADER_SIZE;
                *size = length;
                self->taken += S_HEADER_SIZE + length;
                return 1;
            }
        }
        if (!block)
            return 0;
        size_t want = held >= S_HEADER_SIZE ? S_HEADER_SIZE + length - held : S_HEADER_SIZE;
        int rc = s_read(self, want, true);
        if (rc < 0)
            return rc;
    }
}

bool
dpool_channel_parse_task(const uint8_t *body, size_t size, uint32_t *epoch, const char **function,
                         const uint8_t **args, size_t *args_size)
{
    if (size <= S_TASK_HEAD_SIZE)
        return false;
    memcpy(epoch, body, sizeof *epoch);
    body += S_TASK_HEAD_SIZE;
    size -= S_TASK_HEAD_SIZE;
    const uint8_t *end = memchr(body, '\0', size);
    if (!end || end == body)
        return false;
    *function = (const char *)body;
    *args = end + 1;
    *args_size = size - (size_t)(end + 1 - body);
    return true;
}

#define S_RESULT_FRAME_HEAD (S_HEADER_SIZE + S_RESULT_HEAD_SIZE)

// Fills a RESULT frame's header and head: length, kind, code, flags, index, message
// length.
static void
s_result_head(uint8_t head[S_RESULT_FRAME_HEAD], const dpool_channel_result_t *result,
              size_t message_size)
{
    uint32_t length = (uint32_t)(S_RESULT_HEAD_SIZE + message_size + result->size);
    int32_t code32 = result->code;
    uint32_t message_size32 = (uint32_t)message_size;
    memcpy(head, &length, sizeof length);
    head[4] = DPOOL_CHANNEL_RESULT;
    memcpy(head + S_HEADER_SIZE, &code32, sizeof code32);
    memcpy(head + S_HEADER_SIZE + 4, &result->flags, sizeof result->flags);
    memcpy(head + S_HEADER_SIZE + 8, &result->index, sizeof result->index);
    memcpy(head + S_HEADER_SIZE + 16, &message_size32, sizeof message_size32);
}

// Forgets the frames kept back, once they are written: the generation moves on before
// the area is reused, so a daemon copying them meanwhile knows its copy may be torn.
static void
s_kept_sent(dpool_channel_t *self)
{
    if (self->kept_count) {
        atomic_fetch_add(self->kept_gen, 1);
        // The frames written next, at the area's start, are seen after the new
        // generation by a daemon copying (plain stores; the fence orders them).
        atomic_thread_fence(memory_order_release);
        atomic_store(self->kept_size, 0);
    }
    self->kept_count = 0;
}

int
dpool_channel_send_result(dpool_channel_t *self, const dpool_channel_result_t *result)
{
    size_t message_size = result->message ? strlen(result->message) : 0;
    if (S_RESULT_HEAD_SIZE + message_size + result->size > DPOOL_CHANNEL_FRAME_MAX)
        return DPOOL_ERR_INVALID;
    uint8_t head[S_RESULT_FRAME_HEAD];
    s_result_head(head, result, message_size);
    // The frames kept back go first, in the same write.
    size_t kept = self->kept_count ? atomic_load(self->kept_size) : 0;
    struct iovec iov[4] = {{self->kept, kept},
                           {head, sizeof head},
                           {(void *)result->message, message_size},
                           {(void *)result->data, result->size}};
    int rc = s_write_all(self->fd, iov, 4);
    s_kept_sent(self);
    return rc;
}

void
dpool_channel_keep_in(dpool_channel_t *self, uint8_t *area, size_t capacity, _Atomic uint32_t *size,
                      _Atomic uint64_t *gen)
{
    self->kept = area;
    self->kept_capacity = capacity;
    self->kept_size = size;
    self->kept_gen = gen;
    atomic_store(size, 0);
}

int
dpool_channel_keep_result(dpool_channel_t *self, const dpool_channel_result_t *result)
{
    size_t message_size = result->message ? strlen(result->message) : 0;
    size_t used = self->kept_count ? atomic_load(self->kept_size) : 0;
    size_t frame = S_RESULT_FRAME_HEAD + message_size + result->size;
    if (!self->kept || frame > self->kept_capacity - used)
        return 1;
    uint8_t *at = self->kept + used;
    s_result_head(at, result, message_size);
    if (message_size)
        memcpy(at + S_RESULT_FRAME_HEAD, result->message, message_size);
    if (result->size)
        memcpy(at + S_RESULT_FRAME_HEAD + message_size, result->data, result->size);
    atomic_store(self->kept_size, (uint32_t)(used + frame)); // the frame is whole first
    self->kept_count++;
    return DPOOL_OK;
}

size_t
dpool_channel_kept(const dpool_channel_t *self)
{
    return self->kept_count;
}

int
dpool_channel_send_kept(dpool_channel_t *self)
{
    if (self->kept_count == 0)
        return DPOOL_OK;
    struct iovec iov[1] = {{self->kept, atomic_load(self->kept_size)}};
    int rc = s_write_all(self->fd, iov, 1);
    s_kept_sent(self);
    return rc;
}

bool
dpool_channel_frame_at(const uint8_t *data, size_t size, size_t *at, uint8_t *kind,
                       const uint8_t **body, size_t *body_size)
{
    if (*at > size || size - *at < S_HEADER_SIZE)
        return false;
    uint32_t length;
    memcpy(&length, data + *at, sizeof length);
    if (length > size - *at - S_HEADER_SIZE)
        return false;
    *kind = data[*at + 4];
    *body = data + *at + S_HEADER_SIZE;
    *body_size = length;
    *at += S_HEADER_SIZE + (size_t)length;
    return true;
}

bool
dpool_channel_has_frame(const dpool_channel_t *self)
{
    size_t held = self->size - self->taken;
    if (held < S_HEADER_SIZE)
        return false;
    uint32_t length;
    memcpy(&length, self->data + self->taken, sizeof length);
    return held - S_HEADER_SIZE >= length;
}

bool
dpool_channel_parse_result(const uint8_t *body, size_t size, int *code, uint32_t *flags,
                           uint64_t *index, char **message_p, const uint8_t **result,
                           size_t *result_size)
{
    int32_t code32;
    uint32_t message_size;
    *message_p = NULL;
    if (size < S_RESULT_HEAD_SIZE)
        return false;
    memcpy(&code32, body, sizeof code32);
    memcpy(flags, body + 4, sizeof *flags);
    memcpy(index, body + 8, sizeof *index);
    memcpy(&message_size, body + 16, sizeof message_size);
    if (message_size > size - S_RESULT_HEAD_SIZE)
        return false;
    if (message_size) {
        *message_p = malloc((size_t)message_size + 1);
        if (!*message_p)
            return false;
        memcpy(*message_p, body + S_RESULT_HEAD_SIZE, message_size);
        (*message_p)[message_size] = '\0';
    }
    *code = code32;
    *result = body + S_RESULT_HEAD_SIZE + message_size;
    *result_size = size - S_RESULT_HEAD_SIZE - message_size;
    return true;
}
