/*  The journal file is a sequence of records, each a 4-byte little-endian length and
    that many bytes of one msgpack array:
        ["S", client_id (bin), pool_ref, pool_name|nil, cap, retries, time_limit_ms,
         task_id, function, flags, args (bin)]          an accepted submission
        ["D", client_id (bin), task_id]                 its completion
    Reading stops at the first record that is short or does not parse: that is where a
    crash cut a write, and everything after it was never committed.

    Live submissions are kept in memory in arrival order (an intrusive list) and by key
    (a hash of client id + task id), each with its encoded record, so compaction is a
    plain rewrite of the list. */
#include "dpool_journal.h"
#include "dpool_list.h"
#include "dpool_msgpack_check.h"

#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// Compact once the file holds this much more than its live records, and is this big.
#define S_COMPACT_RATIO 4
#define S_COMPACT_MIN_BYTES (8u << 20)
// A record longer than this is not ours: the read stops there.
#define S_RECORD_MAX (256u << 20)

typedef struct {
    dpool_link_t link;
    char *key;
    char *record; // length prefix + body, as written
    size_t size;
} s_live_t;

struct dpool_journal {
    char *path;
    char *temporary_path;
    int fd;
    uint64_t file_size;
    uint64_t live_bytes;
    zhashx_t *live; // key -> s_live_t
    dpool_link_t order;
    msgpack_sbuffer pending; // records not yet written
};

static char *
s_key(const void *client_id, size_t client_id_size, uint64_t task_id)
{
    static const char hex[] = "0123456789abcdef";
    char *key = malloc(client_id_size * 2 + 24);
    if (!key)
        return NULL;
    const unsigned char *bytes = client_id;
    for (size_t i = 0; i < client_id_size; i++) {
        key[2 * i] = hex[bytes[i] >> 4];
        key[2 * i + 1] = hex[bytes[i] & 15];
    }
    snprintf(key + 2 * client_id_size, 24, ":%llu", (unsigned long long)task_id);
    return key;
}

static void
s_live_free(s_live_t *live)
{
    free(live->key);
    free(live->record);
    free(live);
}

static void
s_pack_bytes(msgpack_packer *pk, const void *bytes, size_t size)
{
    msgpack_pack_bin(pk, size);
    msgpack_pack_bin_body(pk, bytes, size);
}

static void
s_pack_text(msgpack_packer *pk, const char *text)
{
    if (!text) {
        msgpack_pack_nil(pk);
        return;
    }
    msgpack_pack_str(pk, strlen(text));
    msgpack_pack_str_body(pk, text, strlen(text));
}

// Encodes a submission record (length prefix included) into buffer.
static void
s_encode_submit(msgpack_sbuffer *buffer, const dpool_journal_entry_t *entry)
{
    msgpack_sbuffer_write(buffer, "\0\0\0\0", 4);
    size_t start = buffer->size;
    msgpack_packer pk;
    msgpack_packer_init(&pk, buffer, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 11);
    s_pack_text(&pk, "S");
    s_pack_bytes(&pk, entry->client_id, entry->client_id_size);
    msgpack_pack_uint32(&pk, entry->pool_ref);
    s_pack_text(&pk, entry->pool_name);
    msgpack_pack_uint32(&pk, entry->cap);
    msgpack_pack_uint32(&pk, entry->retries);
    msgpack_pack_uint32(&pk, entry->time_limit_ms);
    msgpack_pack_uint64(&pk, entry->task_id);
    s_pack_text(&pk, entry->function);
    msgpack_pack_uint32(&pk, entry->flags);
    s_pack_bytes(&pk, entry->args, entry->args_size);
    uint32_t length = (uint32_t)(buffer->size - start);
    for (int i = 0; i < 4; i++)
        buffer->data[start - 4 + i] = (char)(length >> (8 * i));
}

static int
s_track(dpool_journal_t *self, const dpool_journal_entry_t *entry, const char *record, size_t size)
{
    s_live_t *live = calloc(1, sizeof *live);
    if (!live)
        return -1;
    live->key = s_key(entry->client_id, entry->client_id_size, entry->task_id);
    live->record = malloc(size);
    if (!live->key || !live->record) {
        s_live_free(live);
        return -1;
    }
    memcpy(live->record, record, size);
    live->size = size;
    s_live_t *previous = zhashx_lookup(self->live, live->key);
    if (previous) {
        // The same client task again (a re-send): the first record stands.
        s_live_free(live);
        return 0;
    }
    zhashx_insert(self->live, live->key, live);
    dpool_list_init(&live->link);
    dpool_list_push_back(&self->order, &live->link);
    self->live_bytes += size;
    return 0;
}

static void
s_untrack(dpool_journal_t *self, const char *key)
{
    s_live_t *live = zhashx_lookup(self->live, key);
    if (!live)
        return;
    zhashx_delete(self->live, key);
    dpool_list_remove(&live->link);
    self->live_bytes -= live->size;
    s_live_free(live);
}

int
dpool_journal_submit(dpool_journal_t *self, const dpool_journal_entry_t *entry)
{
    size_t start = self->pending.size;
    s_encode_submit(&self->pending, entry);
    return s_track(self, entry, self->pending.data + start, self->pending.size - start);
}

int
dpool_journal_done(dpool_journal_t *self, const void *client_id, size_t client_id_size,
                   uint64_t task_id)
{
    char *key = s_key(client_id, client_id_size, task_id);
    if (!key)
        return -1;
    bool known = zhashx_lookup(self->live, key) != NULL;
    s_untrack(self, key);
    free(key);
    if (!known)
        return 0;
    msgpack_sbuffer_write(&self->pending, "\0\0\0\0", 4);
    size_t start = self->pending.size;
    msgpack_packer pk;
    msgpack_packer_init(&pk, &self->pending, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 3);
    s_pack_text(&pk, "D");
    s_pack_bytes(&pk, client_id, client_id_size);
    msgpack_pack_uint64(&pk, task_id);
    uint32_t length = (uint32_t)(self->pending.size - start);
    for (int i = 0; i < 4; i++)
        self->pending.data[start - 4 + i] = (char)(length >> (8 * i));
    return 0;
}

static int
s_write_all(int fd, const char *data, size_t size)
{
    while (size > 0) {
        ssize_t written = write(fd, data, size);
        if (written < 0 && errno == EINTR)
            continue;
        if (written <= 0)
            return -1;
        data += written;
        size -= (size_t)written;
    }
    return 0;
}

// Rewrites the file with the live records only: temporary file, sync, rename, so a
// crash at any point leaves either the old journal or the new one, whole.
static int
s_compact(dpool_journal_t *self)
{
    int fd = open(self->temporary_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    uint64_t size = 0;
    for (dpool_link_t *link = self->order.next; link != &self->order; link = link->next) {
        s_live_t *live = DPOOL_CONTAINER_OF(link, s_live_t, link);
        if (s_write_all(fd, live->record, live->size) < 0) {
            close(fd);
            return -1;
        }
        size += live->size;
    }
    if (fdatasync(fd) < 0 || rename(self->temporary_path, self->path) < 0) {
        close(fd);
        return -1;
    }
    if (self->fd >= 0)
        close(self->fd);
    self->fd = fd;
    self->file_size = size;
    // Pending records of tasks already live were just written with the rest.
    msgpack_sbuffer_clear(&self->pending);
    return 0;
}

int
dpool_journal_commit(dpool_journal_t *self)
{
    if (self->file_size > S_COMPACT_MIN_BYTES &&
        self->file_size > S_COMPACT_RATIO * self->live_bytes)
        return s_compact(self);
    if (self->pending.size == 0)
        return 0;
    if (s_write_all(self->fd, self->pending.data, self->pending.size) < 0 ||
        fdatasync(self->fd) < 0)
        return -1;
    self->file_size += self->pending.size;
    msgpack_sbuffer_clear(&self->pending);
    return 0;
}

size_t
dpool_journal_live(const dpool_journal_t *self)
{
    return zhashx_size(self->live);
}

uint64_t
dpool_journal_file_size(const dpool_journal_t *self)
{
    return self->file_size;
}

static bool
s_read_uint(const msgpack_object *obj, uint64_t *value)
{
    if (obj->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return false;
    *value = obj->via.u64;
    return true;
}

// A NUL-terminated copy of a str field into buffer (NULL for nil). False on a bad type.
static bool
s_read_text(const msgpack_object *obj, char *buffer, size_t size, const char **text)
{
    if (obj->type == MSGPACK_OBJECT_NIL) {
        *text = NULL;
        return true;
    }
    if (obj->type != MSGPACK_OBJECT_STR || obj->via.str.size >= size)
        return false;
    memcpy(buffer, obj->via.str.ptr, obj->via.str.size);
    buffer[obj->via.str.size] = '\0';
    *text = buffer;
    return true;
}

// Decodes a submission record's fields into entry (pointing into root and the buffers).
static bool
s_decode_submit(const msgpack_object *fields, dpool_journal_entry_t *entry, char *pool_name,
                char *function)
{
    uint64_t numbers[6];
    const int positions[6] = {2, 4, 5, 6, 7, 9};
    for (int i = 0; i < 6; i++)
        if (!s_read_uint(&fields[positions[i]], &numbers[i]))
            return false;
    if (fields[1].type != MSGPACK_OBJECT_BIN || fields[10].type != MSGPACK_OBJECT_BIN)
        return false;
    *entry = (dpool_journal_entry_t){
        .client_id = fields[1].via.bin.ptr,
        .client_id_size = fields[1].via.bin.size,
        .pool_ref = (uint32_t)numbers[0],
        .cap = (uint32_t)numbers[1],
        .retries = (uint32_t)numbers[2],
        .time_limit_ms = (uint32_t)numbers[3],
        .task_id = numbers[4],
        .flags = (uint32_t)numbers[5],
        .args = fields[10].via.bin.ptr,
        .args_size = fields[10].via.bin.size,
    };
    return s_read_text(&fields[3], pool_name, 256, &entry->pool_name) &&
           s_read_text(&fields[8], function, 256, &entry->function) && entry->function;
}

// Applies one record to the live set. False when it is not a record of ours.
static bool
s_apply(dpool_journal_t *self, const char *record, size_t size)
{
    msgpack_unpacked unpacked;
    msgpack_unpacked_init(&unpacked);
    size_t body = size - 4;
    bool ok = dpool_codec_sizes_fit(record + 4, body) &&
              msgpack_unpack_next(&unpacked, record + 4, body, NULL) == MSGPACK_UNPACK_SUCCESS &&
              unpacked.data.type == MSGPACK_OBJECT_ARRAY && unpacked.data.via.array.size >= 3;
    const msgpack_object *fields = ok ? unpacked.data.via.array.ptr : NULL;
    char kind = ok && fields[0].type == MSGPACK_OBJECT_STR && fields[0].via.str.size == 1
                    ? fields[0].via.str.ptr[0]
                    : '?';
    char pool_name[256], function[256];
    dpool_journal_entry_t entry;
    uint64_t task_id;
    if (kind == 'S' && unpacked.data.via.array.size == 11 &&
        s_decode_submit(fields, &entry, pool_name, function))
        ok = s_track(self, &entry, record, size) == 0;
    else if (kind == 'D' && fields[1].type == MSGPACK_OBJECT_BIN &&
             s_read_uint(&fields[2], &task_id)) {
        char *key = s_key(fields[1].via.bin.ptr, fields[1].via.bin.size, task_id);
        if (key)
            s_untrack(self, key);
        free(key);
    } else
        ok = false;
    msgpack_unpacked_destroy(&unpacked);
    return ok;
}

static int
s_load(dpool_journal_t *self)
{
    int fd = open(self->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -1;
    struct stat st;
    char *data = NULL;
    int rc = -1;
    if (fstat(fd, &st) < 0 || !(data = malloc((size_t)st.st_size + 1)))
        goto done;
    size_t size = 0;
    while (size < (size_t)st.st_size) {
        ssize_t got = read(fd, data + size, (size_t)st.st_size - size);
        if (got <= 0)
            break;
        size += (size_t)got;
    }
    size_t at = 0;
    while (size - at >= 4) {
        const unsigned char *prefix = (const unsigned char *)data + at;
        uint32_t length = prefix[0] | prefix[1] << 8 | prefix[2] << 16 | (uint32_t)prefix[3] << 24;
        if (length == 0 || length > S_RECORD_MAX || length > size - at - 4 ||
            !s_apply(self, data + at, length + 4))
            break; // a torn tail: never committed
        at += length + 4;
    }
    rc = 0;
done:
    free(data);
    close(fd);
    return rc;
}

static void
s_replay(dpool_journal_t *self, dpool_journal_replay_fn *replay, void *ctx)
{
    for (dpool_link_t *link = self->order.next; replay && link != &self->order; link = link->next) {
        s_live_t *live = DPOOL_CONTAINER_OF(link, s_live_t, link);
        char pool_name[256], function[256];
        dpool_journal_entry_t entry;
        msgpack_unpacked unpacked;
        msgpack_unpacked_init(&unpacked);
        if (msgpack_unpack_next(&unpacked, live->record + 4, live->size - 4, NULL) ==
                MSGPACK_UNPACK_SUCCESS &&
            s_decode_submit(unpacked.data.via.array.ptr, &entry, pool_name, function))
            replay(ctx, &entry);
        msgpack_unpacked_destroy(&unpacked);
    }
}

dpool_journal_t *
dpool_journal_open(const char *dir, dpool_journal_replay_fn *replay, void *ctx, char *why,
                   size_t why_size)
{
    dpool_journal_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(why, why_size, "out of memory");
        return NULL;
    }
    self->fd = -1;
    msgpack_sbuffer_init(&self->pending);
    dpool_list_init(&self->order);
    self->live = zhashx_new();
    self->path = zsys_sprintf("%s/journal", dir);
    self->temporary_path = zsys_sprintf("%s/journal.compacting", dir);
    if (!self->live || !self->path || !self->temporary_path) {
        snprintf(why, why_size, "out of memory");
        goto fail;
    }
    // Keys live inside the records; the records are freed by s_untrack / close.
    zhashx_set_key_duplicator(self->live, NULL);
    zhashx_set_key_destructor(self->live, NULL);
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        snprintf(why, why_size, "cannot create journal directory %s: %s", dir, strerror(errno));
        goto fail;
    }
    if (s_load(self) < 0) {
        snprintf(why, why_size, "cannot read %s: %s", self->path, strerror(errno));
        goto fail;
    }
    s_replay(self, replay, ctx);
    if (s_compact(self) < 0) {
        snprintf(why, why_size, "cannot write %s: %s", self->path, strerror(errno));
        goto fail;
    }
    return self;
fail:
    dpool_journal_close(&self);
    return NULL;
}

void
dpool_journal_close(dpool_journal_t **self_p)
{
    dpool_journal_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    if (self->fd >= 0) {
        dpool_journal_commit(self);
        close(self->fd);
    }
    dpool_link_t *link;
    while ((link = dpool_list_front(&self->order))) {
        s_live_t *live = DPOOL_CONTAINER_OF(link, s_live_t, link);
        dpool_list_remove(link);
        s_live_free(live);
    }
    zhashx_destroy(&self->live);
    msgpack_sbuffer_destroy(&self->pending);
    zstr_free(&self->path);
    zstr_free(&self->temporary_path);
    free(self);
}
