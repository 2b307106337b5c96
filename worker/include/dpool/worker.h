/*  dpool/worker.h: the API a task module is written against.

    A task module is a shared library loaded by `dpool-worker --module FILE.so`. It
    exports one symbol, dpool_module_init(), which registers the module's functions
    by name with dpool_functions_add(). The daemon loads every module before it forks
    its worker processes, so each process has every function.

    A task function runs in one worker process, one task at a time. It receives the
    decoded argument array and packs exactly one value as the task's result into the
    packer it is given, or reports failure with dpool_task_fail() and returns that
    call's code. What it writes to stdout and stderr is forwarded to the client that
    submitted the task, all of it before the result.

    Symbols are resolved against the dpool-worker executable, which exports them: a
    module links msgpack-c but no dpool library. Build one with
        cc -shared -fPIC -o my_module.so my_module.c -I<dpool include dir> \
           $(pkg-config --cflags --libs msgpack)
    and see examples/module/example_module.c. */
#ifndef DPOOL_WORKER_H
#define DPOOL_WORKER_H

#include <dpool/errors.h>
#include <msgpack.h>

#ifdef __cplusplus
extern "C" {
#endif

// The set of named task functions a worker offers. Owned by the worker daemon; a
// module only ever borrows it during dpool_module_init().
typedef struct dpool_functions_t dpool_functions_t;

// One running task. Owned by the worker process; valid only during the call to the
// task function it is passed to.
typedef struct dpool_task_t dpool_task_t;

// A task function. args (borrowed, valid during the call) is the decoded argument
// array: args->type is always MSGPACK_OBJECT_ARRAY. On success, pack exactly one
// value into result and return DPOOL_OK (packing nothing gives nil). On failure,
// return dpool_task_fail(task, ...); whatever was packed is then discarded.
typedef int dpool_task_fn_t(dpool_task_t *task, const msgpack_object *args, msgpack_packer *result);

// Registers fn under name (copied; 1..255 bytes). Names are unique across the
// built-ins and every module. Returns DPOOL_OK, DPOOL_ERR_INVALID for an empty,
// too long or already registered name, a NULL fn or too many functions (1024), or
// DPOOL_ERR_NOMEM.
int dpool_functions_add(dpool_functions_t *functions, const char *name, dpool_task_fn_t *fn);

// Marks task as failed with a printf-style message (copied; the client receives it
// with code DPOOL_ERR_TASK_FAILED). Returns DPOOL_ERR_TASK_FAILED, for the task
// function to return. A second call replaces the first message.
int dpool_task_fail(dpool_task_t *task, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// The name the task was called by (borrowed from task).
const char *dpool_task_function(const dpool_task_t *task);

// The symbol every task module exports: registers its functions (functions is
// borrowed) and returns DPOOL_OK, or a negative code to make dpool-worker refuse to
// start, naming the module's file.
int dpool_module_init(dpool_functions_t *functions);

#define DPOOL_MODULE_INIT_SYMBOL "dpool_module_init"

#ifdef __cplusplus
}
#endif
#endif
