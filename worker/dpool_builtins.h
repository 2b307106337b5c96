/*  dpool_builtins: the task functions every worker offers (DESIGN.md's table):
    noop, echo, add, sleep, fail, crash, hostpid and demo.worker. */
#ifndef DPOOL_BUILTINS_H
#define DPOOL_BUILTINS_H

#include <dpool/worker.h>

// Registers every built-in in functions (borrowed). Returns DPOOL_OK, or the first
// failing dpool_functions_add() code.
int dpool_builtins_register(dpool_functions_t *functions);

#endif
