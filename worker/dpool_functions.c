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

// True when bytes hold exactly one complete msgpack value, the contract of a result.
static bool
s_is_one_value(const char *bytes, size_t size)
{
    msgpack_unpacked unpacked;
    msgpack_unpacked_init(&unpacked);
    size_t offset = 0;
    msgpack_unpack_return rc = msgpack_unpack_next(&unpacked, bytes, size, &offset);
    msgpack_unpacked_destroy(&unpacked);
    return rc == MSGPACK_UNPACK_SUCCESS && offset == size;
}

static int
s_fail(char **message_p, int code, char *message)
{
    *message_p = message ? message : strdup(dpool_strerror(code));
    return code;
}

static int
s_invoke(dpool_task_fn_t *fn, const char *name, const msgpack_object *args, msgpack_sbuffer *result,
         char **message_p)
{
    dpool_task_t task = {name, NULL};
    msgpack_packer packer;
    msgpack_packer_init(&packer, result, msgpack_sbuffer_write);
    int rc = fn(&task, args, &packer);
    if (rc != DPOOL_OK) {
        msgpack_sbuffer_clear(result);
        if (task.message)
            return s_fail(message_p, DPOOL_ERR_TASK_FAILED, task.message);
        return s_fail(message_p, DPOOL_ERR_TASK_FAILED,
                      s_format("function %s failed: %s (%d)", name, dpool_strerror(rc), rc));
    }
    free(task.message);
    if (result->size == 0)
        msgpack_pack_nil(&packer);
    else if (!s_is_one_value(result->data, result->size)) {
        msgpack_sbuffer_clear(result);
        return s_fail(message_p, DPOOL_ERR_TASK_FAILED,
                      s_format("function %s packed a result that is not exactly one value", name));
    }
    return DPOOL_OK;
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
    msgpack_unpacked unpacked;
    msgpack_unpacked_init(&unpacked);
    size_t offset = 0;
    // Arguments come from any client: sizes are checked before msgpack-c allocates.
    msgpack_unpack_return unpacked_rc =
        dpool_codec_sizes_fit(args, args_size)
            ? msgpack_unpack_next(&unpacked, args, args_size, &offset)
            : MSGPACK_UNPACK_PARSE_ERROR;
    int rc;
    if (unpacked_rc != MSGPACK_UNPACK_SUCCESS || offset != args_size)
        rc = s_fail(message_p, DPOOL_ERR_TASK_FAILED,
                    s_format("arguments of %s are not one complete msgpack value", name));
    else if (unpacked.data.type != MSGPACK_OBJECT_ARRAY)
        rc = s_fail(message_p, DPOOL_ERR_TASK_FAILED,
                    s_format("arguments of %s are not a msgpack array", name));
    else
        rc = s_invoke(fn, name, &unpacked.data, result, message_p);
    msgpack_unpacked_destroy(&unpacked);
    return rc;
}
