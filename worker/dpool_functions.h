/*  dpool_functions: the registry of named task functions a worker offers, the
    module loader, and the one place a task function is called.

    dpool_functions_add() and dpool_task_fail() are declared in <dpool/worker.h>,
    because task modules call them; this header adds what only the daemon, its
    worker processes and the tests use. */
#ifndef DPOOL_FUNCTIONS_H
#define DPOOL_FUNCTIONS_H

#include <dpool/worker.h>
#include <stddef.h>

// An empty registry (no built-ins: see dpool_builtins.h). Returns an owned
// object, or NULL when memory runs out.
dpool_functions_t *dpool_functions_new(void);

// Frees the registry and unloads the modules it loaded. NULL-safe; sets *self_p
// to NULL. Function pointers taken from it are invalid afterwards.
void dpool_functions_destroy(dpool_functions_t **self_p);

// The function registered under name, or NULL.
dpool_task_fn_t *dpool_functions_lookup(const dpool_functions_t *self, const char *name);

// How many functions are registered, and the name of the index-th in order of
// registration (borrowed from self; NULL when index is out of range).
size_t dpool_functions_size(const dpool_functions_t *self);
const char *dpool_functions_name(const dpool_functions_t *self, size_t index);

// Loads the task module at path (dlopen, then its dpool_module_init). The module
// stays loaded until self is destroyed. Returns DPOOL_OK, or a negative code with
// a one-line reason naming path written to error (error_size bytes, caller-owned).
int dpool_functions_load(dpool_functions_t *self, const char *path, char *error, size_t error_size);

// Runs the function called name on args (args_size bytes of msgpack, borrowed; it
// must be one array). On DPOOL_OK, result (caller-owned, initialised) holds exactly
// one msgpack value. Otherwise returns DPOOL_ERR_NO_FUNCTION for an unknown name or
// DPOOL_ERR_TASK_FAILED (bad arguments, the function failed, or it packed something
// that is not one value), or DPOOL_ERR_NOMEM when the process has no memory to decode
// the arguments in, and *message_p receives an owned explanation.
int dpool_functions_call(const dpool_functions_t *self, const char *name, const void *args,
                         size_t args_size, msgpack_sbuffer *result, char **message_p);

// Runs a CHUNK: args (args_size bytes of msgpack, borrowed) must be one array of
// argument arrays, and the function called name runs once per item, in order.
// result (caller-owned, initialised and empty) receives one msgpack array: on
// DPOOL_OK every item's result; when item k fails (the function failed, or the item
// is not an array), the k results before it, with that failure's code returned
// (DPOOL_ERR_TASK_FAILED) and *message_p an owned "item k: <message>" (k counted
// from 0). When the chunk as a whole is unusable (unknown name: DPOOL_ERR_NO_FUNCTION;
// not one msgpack array: DPOOL_ERR_TASK_FAILED), result stays empty and *message_p
// explains; with no memory to decode items in, result is an empty array and the code
// DPOOL_ERR_NOMEM. The chunk is decoded once; its items are not copied.
int dpool_functions_call_chunk(const dpool_functions_t *self, const char *name, const void *args,
                               size_t args_size, msgpack_sbuffer *result, char **message_p);

#endif
