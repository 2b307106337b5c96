/*  The registry of task functions, kept as an array in registration order: a worker
    offers tens of functions, not thousands, and the order is the order its hello
    announces them in. Modules are loaded with dlopen into the daemon before it forks,
    so every worker process inherits every function. dpool_functions_call() is the
    one place a task function runs: it decodes the arguments, checks that the
    function packed exactly one value, and turns every failure into a code plus a
    message, because a result with no explanation is what users cannot debug. */
#include "dpool_functions.h"
#include "dpool_msgpack_check.h"

#include "dpool_proto.h"

#include <dlfcn.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// printf into a fresh buffer (the caller frees it), or NULL. Not czmq's
// zsys_sprintf: this file runs in forked worker processes, which stay clear of
// anything that might touch the daemon's ZeroMQ state.
static char *
s_vformat(const char *fmt, va_list args)
{
    va_list again;
    va_copy(again, args);
    int length = vsnprintf(NULL, 0, fmt, args);
    char *text = length < 0 ? NULL : malloc((size_t)length + 1);
    if (text)
        vsnprintf(text, (size_t)length + 1, fmt, again);
    va_end(again);
    return text;
}

static char *s_format(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *
s_format(const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    char *text = s_vformat(fmt, args);
    va_end(args);
    return text;
}

typedef struct {
    char *name;
    dpool_task_fn_t *fn;
} s_entry_t;

struct dpool_functions_t {
    s_entry_t *entries;
    size_t size;
    size_t capacity;
    void **modules; // dlopen handles, closed on destroy
    size_t module_count;
};

struct dpool_task_t {
    const char *function;
    char *message; // owned, set by dpool_task_fail
};

dpool_functions_t *
dpool_functions_new(void)
{
    return calloc(1, sizeof(dpool_functions_t));
}

void
dpool_functions_destroy(dpool_functions_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dpool_functions_t *self = *self_p;
    for (size_t i = 0; i < self->size; i++)
        free(self->entries[i].name);
    free(self->entries);
    for (size_t i = 0; i < self->module_count; i++)
        dlclose(self->modules[i]);
    free(self->modules);
    free(self);
    *self_p = NULL;
}

int
dpool_functions_add(dpool_functions_t *functions, const char *name, dpool_task_fn_t *fn)
{
    if (!functions || !name || !fn)
        return DPOOL_ERR_INVALID;
    size_t length = strlen(name);
    if (length == 0 || length > DPOOL_PROTO_NAME_MAX || dpool_functions_lookup(functions, name) ||
        functions->size >= DPOOL_PROTO_FUNCTIONS_MAX)
        return DPOOL_ERR_INVALID;
    if (functions->size == functions->capacity) {
        size_t capacity = functions->capacity ? functions->capacity * 2 : 16;
        s_entry_t *grown = realloc(functions->entries, capacity * sizeof *grown);
        if (!grown)
            return DPOOL_ERR_NOMEM;
        functions->entries = grown;
        functions->capacity = capacity;
    }
    char *copy = strdup(name);
    if (!copy)
        return DPOOL_ERR_NOMEM;
    functions->entries[functions->size++] = (s_entry_t){copy, fn};
    return DPOOL_OK;
}

dpool_task_fn_t *
dpool_functions_lookup(const dpool_functions_t *self, const char *name)
{
    for (size_t i = 0; self && name && i < self->size; i++)
        if (strcmp(self->entries[i].name, name) == 0)
            return self->entries[i].fn;
    return NULL;
}

size_t
dpool_functions_size(const dpool_functions_t *self)
{
    return self ? self->size : 0;
}

const char *
dpool_functions_name(const dpool_functions_t *self, size_t index)
{
    return self && index < self->size ? self->entries[index].name : NULL;
}

// Frees the names registered from index size on: what a failed module left behind
// must not outlive its dlclose.
static void
s_truncate(dpool_functions_t *self, size_t size)
{
    while (self->size > size)
        free(self->entries[--self->size].name);
}

int
dpool_functions_load(dpool_functions_t *self, const char *path, char *error, size_t error_size)
{
    // dlopen searches the library path for a name without a slash; a user who
    // types --module example.so means the file in the current directory.
    char *file = strchr(path, '/') ? strdup(path) : s_format("./%s", path);
    void **grown = realloc(self->modules, (self->module_count + 1) * sizeof *grown);
    if (!file || !grown) {
        free(file);
        self->modules = grown ? grown : self->modules;
        snprintf(error, error_size, "cannot load module %s: out of memory", path);
        return DPOOL_ERR_NOMEM;
    }
    self->modules = grown;
    void *handle = dlopen(file, RTLD_NOW | RTLD_LOCAL);
    free(file);
    if (!handle) {
        snprintf(error, error_size, "cannot load module %s: %s", path, dlerror());
        return DPOOL_ERR_IO;
    }
    int (*init)(dpool_functions_t *) = NULL;
    *(void **)&init = dlsym(handle, DPOOL_MODULE_INIT_SYMBOL);
    if (!init) {
        snprintf(error, error_size, "module %s does not export %s", path, DPOOL_MODULE_INIT_SYMBOL);
        dlclose(handle);
        return DPOOL_ERR_INVALID;
    }
    size_t before = self->size;
    int rc = init(self);
    if (rc != DPOOL_OK) {
        snprintf(error, error_size, "module %s: %s failed: %s (%d)", path, DPOOL_MODULE_INIT_SYMBOL,
                 dpool_strerror(rc), rc);
        s_truncate(self, before);
        dlclose(handle);
        return rc < 0 ? rc : DPOOL_ERR_INVALID;
    }
    self->modules[self->module_count++] = handle;
    return DPOOL_OK;
}

int
dpool_task_fail(dpool_task_t *task, const char *fmt, ...)
{
    if (!task || !fmt)
        return DPOOL_ERR_TASK_FAILED;
    va_list args;
    va_start(args, fmt);
    char *message = s_vformat(fmt, args);
    va_end(args);
    if (message) {
        free(task->message);
        task->message = message;
    }
    return DPOOL_ERR_TASK_FAILED;
}

const char *
dpool_task_function(const dpool_task_t *task)
{
    return task ? task->function : NULL;
}

// Decodes the msgpack value at *offset in bytes into *value, its memory from zone, and
// moves *offset past it. True when a whole value was there (more may follow).
static bool
s_unpack_value(const char *bytes, size_t size, size_t *offset, msgpack_zone *zone,
               msgpack_object *value)
{
    // msgpack_unpack, not msgpack_unpack_next: that one makes a zone of its own for
    // each value (a malloc of 8 KiB and its free, the largest cost of a map's items).
    msgpack_unpack_return rc = msgpack_unpack(bytes, size, offset, zone, value);
    return rc == MSGPACK_UNPACK_SUCCESS || rc == MSGPACK_UNPACK_EXTRA_BYTES;
}

// True when bytes hold exactly one complete msgpack value, the contract of a result.
static bool
s_is_one_value(const char *bytes, size_t size, msgpack_zone *zone)
{
    size_t offset = 0;
    msgpack_object value;
    return s_unpack_value(bytes, size, &offset, zone, &value) && offset == size;
}

static int
s_fail(char **message_p, int code, char *message)
{
    *message_p = message ? message : strdup(dpool_strerror(code));
    return code;
}

// Calls fn on args, appending its one result value to result (checked with memory
// from zone). On failure, result is cut back to the size it had, so a chunk keeps the
// results of the items before.
static int
s_invoke(dpool_task_fn_t *fn, const char *name, const msgpack_object *args, msgpack_zone *zone,
         msgpack_sbuffer *result, char **message_p)
{
    size_t start = result->size;
    dpool_task_t task = {name, NULL};
    msgpack_packer packer;
    msgpack_packer_init(&packer, result, msgpack_sbuffer_write);
    int rc = fn(&task, args, &packer);
    if (rc != DPOOL_OK) {
        result->size = start;
        if (task.message)
            return s_fail(message_p, DPOOL_ERR_TASK_FAILED, task.message);
        return s_fail(message_p, DPOOL_ERR_TASK_FAILED,
                      s_format("function %s failed: %s (%d)", name, dpool_strerror(rc), rc));
    }
    free(task.message);
    if (result->size == start)
        msgpack_pack_nil(&packer);
    else if (!s_is_one_value(result->data + start, result->size - start, zone)) {
        result->size = start;
        return s_fail(message_p, DPOOL_ERR_TASK_FAILED,
                      s_format("function %s packed a result that is not exactly one value", name));
    }
    return DPOOL_OK;
}

// Decodes the one msgpack value args holds into *value, its memory from zone.
// Arguments come from any client: sizes are checked before msgpack-c allocates.
// Returns false, with *message_p set, when args are not one complete value.
static bool
s_unpack_args(const char *name, const void *args, size_t args_size, msgpack_zone *zone,
              msgpack_object *value, char **message_p)
{
    size_t offset = 0;
    if (dpool_codec_sizes_fit(args, args_size) &&
        s_unpack_value(args, args_size, &offset, zone, value) && offset == args_size)
        return true;
    s_fail(message_p, DPOOL_ERR_TASK_FAILED,
           s_format("arguments of %s are not one complete msgpack value", name));
    return false;
}

int
dpool_functions_call(const dpool_functions_t *self, const char *name, const void *args,
                     size_t args_size, msgpack_sbuffer *result, char **message_p)
{
    *message_p = NULL;
    dpool_task_fn_t *fn = dpool_functions_lookup(self, name);
    if (!fn)
        return s_fail(message_p, DPOOL_ERR_NO_FUNCTION,
                      s_format("no function \"%s\" in this worker", name ? name : "(null)"));
    msgpack_zone zone;
    if (!msgpack_zone_init(&zone, MSGPACK_ZONE_CHUNK_SIZE))
        return s_fail(message_p, DPOOL_ERR_NOMEM, NULL);
    msgpack_object value;
    int rc = DPOOL_ERR_TASK_FAILED;
    if (!s_unpack_args(name, args, args_size, &zone, &value, message_p))
        rc = DPOOL_ERR_TASK_FAILED;
    else if (value.type != MSGPACK_OBJECT_ARRAY)
        rc = s_fail(message_p, DPOOL_ERR_TASK_FAILED,
                    s_format("arguments of %s are not a msgpack array", name));
    else
        rc = s_invoke(fn, name, &value, &zone, result, message_p);
    msgpack_zone_destroy(&zone);
    return rc;
}

// Writes the array header for count items in front of the items packed after the
// S_CHUNK_HEAD bytes reserved at the start of result: one move of the bytes, once
// per chunk.
#define S_CHUNK_HEAD 5

static void
s_finish_array(msgpack_sbuffer *result, size_t count)
{
    uint8_t head[S_CHUNK_HEAD];
    size_t size;
    if (count < 16) {
        head[0] = (uint8_t)(0x90 | count);
        size = 1;
    } else if (count <= UINT16_MAX) {
        head[0] = 0xdc;
        head[1] = (uint8_t)(count >> 8);
        head[2] = (uint8_t)count;
        size = 3;
    } else {
        head[0] = 0xdd;
        for (int i = 0; i < 4; i++)
            head[1 + i] = (uint8_t)(count >> (24 - 8 * i));
        size = 5;
    }
    memmove(result->data + size, result->data + S_CHUNK_HEAD, result->size - S_CHUNK_HEAD);
    memcpy(result->data, head, size);
    result->size -= S_CHUNK_HEAD - size;
}

// Reads the array header at the start of bytes (size bytes): *count items, whose
// bytes begin at *offset. False when bytes do not start with an array.
static bool
s_array_head(const uint8_t *bytes, size_t size, uint32_t *count, size_t *offset)
{
    if (size >= 1 && (bytes[0] & 0xf0) == 0x90) {
        *count = bytes[0] & 0x0f;
        *offset = 1;
    } else if (size >= 3 && bytes[0] == 0xdc) {
        *count = (uint32_t)bytes[1] << 8 | bytes[2];
        *offset = 3;
    } else if (size >= 5 && bytes[0] == 0xdd) {
        *count = (uint32_t)bytes[1] << 24 | (uint32_t)bytes[2] << 16 | (uint32_t)bytes[3] << 8 |
                 bytes[4];
        *offset = 5;
    } else {
        return false;
    }
    return true;
}

// Runs one item, the msgpack value at *offset in args, and moves *offset past it.
static int
s_invoke_item(dpool_task_fn_t *fn, const char *name, const char *args, size_t args_size,
              size_t *offset, msgpack_zone *zone, msgpack_sbuffer *result, char **message_p)
{
    msgpack_object item;
    if (!s_unpack_value(args, args_size, offset, zone, &item))
        return s_fail(message_p, DPOOL_ERR_TASK_FAILED,
                      s_format("arguments of %s are not one complete msgpack value", name));
    if (item.type != MSGPACK_OBJECT_ARRAY)
        return s_fail(message_p, DPOOL_ERR_TASK_FAILED,
                      s_format("arguments of %s are not a msgpack array", name));
    return s_invoke(fn, name, &item, zone, result, message_p);
}

// Runs fn on each item of the chunk in order, decoding one item at a time into one
// zone emptied after each (so memory follows the largest item, not the chunk, and an
// item costs no allocation), appending results; stops at the first failure with its
// code and "item k: ..." in *message_p.
static int
s_invoke_items(dpool_task_fn_t *fn, const char *name, const char *args, size_t args_size,
               uint32_t count, size_t offset, msgpack_sbuffer *result, char **message_p)
{
    msgpack_zone zone;
    if (!msgpack_zone_init(&zone, MSGPACK_ZONE_CHUNK_SIZE)) {
        s_finish_array(result, 0);
        return s_fail(message_p, DPOOL_ERR_NOMEM, NULL);
    }
    int rc = DPOOL_OK;
    uint32_t k = 0;
    for (; k < count; k++) {
        char *why = NULL;
        rc = s_invoke_item(fn, name, args, args_size, &offset, &zone, result, &why);
        msgpack_zone_clear(&zone);
        if (rc != DPOOL_OK) {
            *message_p = s_format("item %" PRIu32 ": %s", k, why);
            free(why);
            if (!*message_p)
                *message_p = strdup(dpool_strerror(rc));
            break;
        }
    }
    msgpack_zone_destroy(&zone);
    s_finish_array(result, k);
    return rc;
}

int
dpool_functions_call_chunk(const dpool_functions_t *self, const char *name, const void *args,
                           size_t args_size, msgpack_sbuffer *result, char **message_p)
{
    *message_p = NULL;
    dpool_task_fn_t *fn = dpool_functions_lookup(self, name);
    if (!fn)
        return s_fail(message_p, DPOOL_ERR_NO_FUNCTION,
                      s_format("no function \"%s\" in this worker", name ? name : "(null)"));
    uint32_t count = 0;
    size_t offset = 0;
    // The size check covers every item too, before any of them reaches msgpack-c.
    if (!dpool_codec_sizes_fit(args, args_size) || !s_array_head(args, args_size, &count, &offset))
        return s_fail(message_p, DPOOL_ERR_TASK_FAILED,
                      s_format("chunk for %s is not a msgpack array of argument arrays", name));
    if (msgpack_sbuffer_write(result, "\0\0\0\0\0", S_CHUNK_HEAD) != 0)
        return s_fail(message_p, DPOOL_ERR_NOMEM, NULL);
    return s_invoke_items(fn, name, args, args_size, count, offset, result, message_p);
}
