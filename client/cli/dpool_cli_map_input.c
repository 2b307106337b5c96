/*  Line input for `dpool map`. The reader keeps one buffer of the bytes read and not
    yet taken, grown only for a line longer than it; so memory is bounded by the
    longest line, whatever the input's length. Reads wait in poll() with a short
    timeout, so `stop` can end a feeder blocked on a quiet pipe. */
#include "dpool_cli_map_input.h"
#include "dpool_json.h"

#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_READ_SIZE 65536
#define S_POLL_MS 100

struct _dpool_cli_map_input_t {
    int fd;
    char *buf;
    size_t start, scanned, len, capacity; // taken up to start; no newline in [start, scanned)
    bool eof;
    atomic_bool stop;
    atomic_size_t lines;  // items taken
    atomic_size_t bytes;  // bytes of the lines taken
    atomic_bool ended;    // eof and every line taken
    long long file_bytes; // a regular file's bytes from where reading began, else -1
    dpool_buf_t item;     // the last item's msgpack
    size_t error_index;
    char error[128]; // empty: no line failed
};

dpool_cli_map_input_t *
dpool_cli_map_input_new(int fd)
{
    dpool_cli_map_input_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->fd = fd;
    self->file_bytes = -1;
    struct stat st;
    off_t at = lseek(fd, 0, SEEK_CUR);
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && at >= 0 && st.st_size >= at)
        self->file_bytes = (long long)(st.st_size - at);
    return self;
}

void
dpool_cli_map_input_destroy(dpool_cli_map_input_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dpool_cli_map_input_t *self = *self_p;
    *self_p = NULL;
    free(self->buf);
    dpool_buf_free(&self->item);
    free(self);
}

// Moves the untaken bytes to the front and makes room to read. False on no memory.
static bool
s_make_room(dpool_cli_map_input_t *self)
{
    if (self->buf)
        memmove(self->buf, self->buf + self->start, self->len - self->start);
    self->len -= self->start;
    self->scanned -= self->start;
    self->start = 0;
    if (self->capacity - self->len >= S_READ_SIZE / 2)
        return true;
    size_t capacity = self->capacity ? self->capacity * 2 : S_READ_SIZE;
    char *buf = realloc(self->buf, capacity + 1); // + 1: room for a last line's NUL
    if (!buf)
        return false;
    self->buf = buf;
    self->capacity = capacity;
    return true;
}

// Reads more bytes. Returns 1 (read some), 0 (end of input or stopped), or -1 (error).
static int
s_read(dpool_cli_map_input_t *self)
{
    while (!atomic_load(&self->stop)) {
        struct pollfd pfd = {.fd = self->fd, .events = POLLIN};
        int ready = poll(&pfd, 1, S_POLL_MS);
        if (ready < 0 && errno != EINTR)
            return -1;
        if (ready <= 0)
            continue;
        ssize_t got = read(self->fd, self->buf + self->len, self->capacity - self->len);
        if (got < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (got < 0)
            return -1;
        if (got == 0) {
            self->eof = true;
            return 0;
        }
        self->len += (size_t)got;
        return 1;
    }
    return 0;
}

// Fails the line about to be taken.
static int
s_fail(dpool_cli_map_input_t *self, int code, const char *why)
{
    self->error_index = atomic_load(&self->lines);
    snprintf(self->error, sizeof self->error, "%s", why);
    return code;
}

// Converts the NUL-terminated line (without its newline) to the item.
static int
s_take(dpool_cli_map_input_t *self, char *line, size_t size, const char **data, size_t *out_size)
{
    if (size > 0 && line[size - 1] == '\r')
        line[size - 1] = '\0';
    json_t *json = dpool_json_parse_arg(line);
    if (!json)
        return s_fail(self, DPOOL_ERR_INVALID, "neither JSON nor a UTF-8 string");
    dpool_buf_free(&self->item);
    int rc = dpool_json_to_msgpack(json, &self->item);
    json_decref(json);
    if (rc != DPOOL_OK)
        return s_fail(self, rc, "cannot convert the line to msgpack");
    *data = self->item.data;
    *out_size = self->item.size;
    atomic_fetch_add(&self->bytes, size + 1);
    atomic_fetch_add(&self->lines, 1);
    return 1;
}

int
dpool_cli_map_input_next(void *arg, const char **data, size_t *size)
{
    dpool_cli_map_input_t *self = arg;
    while (true) {
        char *newline =
            self->buf ? memchr(self->buf + self->scanned, '\n', self->len - self->scanned) : NULL;
        if (newline) {
            char *line = self->buf + self->start;
            *newline = '\0';
            self->start = self->scanned = (size_t)(newline - self->buf) + 1;
            return s_take(self, line, (size_t)(newline - line), data, size);
        }
        self->scanned = self->len;
        if (self->eof && self->start < self->len) { // a last line without a newline
            char *line = self->buf + self->start;
            size_t length = self->len - self->start;
            line[length] = '\0'; // the buffer keeps one byte beyond capacity for this
            self->start = self->scanned = self->len;
            return s_take(self, line, length, data, size);
        }
        if (self->eof) {
            atomic_store(&self->ended, true);
            return 0;
        }
        if (!s_make_room(self))
            return s_fail(self, DPOOL_ERR_NOMEM, "out of memory (line too long?)");
        int got = s_read(self);
        if (got < 0)
            return s_fail(self, DPOOL_ERR_IO, strerror(errno));
        if (got == 0 && !self->eof)
            return 0; // stopped
    }
}

void
dpool_cli_map_input_stop(dpool_cli_map_input_t *self)
{
    atomic_store(&self->stop, true);
}

const char *
dpool_cli_map_input_error(dpool_cli_map_input_t *self, size_t index)
{
    return self->error[0] && self->error_index == index ? self->error : NULL;
}

size_t
dpool_cli_map_input_lines(dpool_cli_map_input_t *self)
{
    return atomic_load(&self->lines);
}

bool
dpool_cli_map_input_total(dpool_cli_map_input_t *self, size_t *total, bool *estimate)
{
    size_t lines = atomic_load(&self->lines);
    if (atomic_load(&self->ended)) {
        *total = lines;
        *estimate = false;
        return true;
    }
    size_t bytes = atomic_load(&self->bytes);
    if (self->file_bytes < 0 || bytes == 0 || lines == 0)
        return false;
    *total = (size_t)((double)lines * (double)self->file_bytes / (double)bytes + 0.5);
    *estimate = true;
    return true;
}
