/*  dpool/dpool.h: the client API of dpool, a distributed process pool.

    A dpool_t is Python's multiprocessing.Pool whose processes live on every worker
    host of a cluster: the broker caps how many of its tasks run at once across all of
    them. Functions are named ("demo.worker"); arguments and results are msgpack bytes
    (the arguments always one msgpack array). docs/API.md has an example per call.

    Ownership follows one rule: a function that returns a pointer from _new, _apply_async
    or fills a dpool_buf_t gives the caller ownership; free it with the matching
    _destroy / dpool_buf_free. A `T **` parameter takes ownership and NULLs the caller's
    pointer. Everything else is borrowed for the duration of the call.

    Errors: calls return DPOOL_OK (0) or a negative code from <dpool/errors.h>; calls
    that can fail for a reason worth explaining also fill a caller-supplied dpool_error_t
    (which may be NULL) with the code and a message: the broker's text for task
    outcomes (it names the host, pid or signal), or the library's own. The library never
    logs, never aborts the process, and never waits forever on a broker that is gone.

    Broker restarts: an open pool heartbeats its broker. When the broker restarts (or
    comes back after being lost), the pool opens itself again and re-sends every task
    that has no result yet, under the same task id; each outcome is delivered once,
    though a task may run more than once. Pending tasks fail as DPOOL_ERR_UNREACHABLE
    only when the broker stays lost past the reconnect timeout (dpool_opts_t).

    THREAD SAFETY
    - Every call on a dpool_t may be made from any thread, concurrently, except
      dpool_destroy: the caller must make sure no other call on that pool is running or
      starts once destroy begins.
    - Every call on a dpool_result_t may be made from any thread, concurrently, except
      dpool_result_destroy, which the holder calls once, when no other thread uses it.
      A result stays valid after its pool is destroyed (it then holds its outcome,
      DPOOL_ERR_TERMINATED for tasks that had not finished).
    - Each pool runs one background I/O thread that owns the pool's only ZeroMQ socket
      (a thread sending a task alone in flight, or waiting for it in dpool_apply,
      borrows the socket while the I/O thread sleeps). The output handler runs on the
      I/O thread, or on a thread in dpool_apply reading for it: it must return promptly
      and must not call any dpool_* function of the same pool (the thread it would wait
      for may be its own).
    - Callbacks (dpool_callbacks_t) run on the pool's own CALLBACK THREAD, started with
      the pool's first call that has callbacks: one at a time, in completion order, each
      once. Results keep arriving while a callback runs (the I/O thread never waits for
      one), and each pool has its own callback thread, so a callback that blocks delays
      only later callbacks of its own pool. A callback may call any dpool_* function
      except dpool_join, dpool_terminate and dpool_destroy of its own pool (they wait
      for the callback thread). dpool_join waits until every callback has run;
      dpool_destroy runs the callbacks still due (tasks it terminates get their
      error_callback) before it returns.
    - A dpool_imap_t pulls its items on a thread of its own (the FEEDER): a
      dpool_source_fn runs there, never on the caller's thread.
    - Making a pool turns off CZMQ's default SIGINT/SIGTERM handler
      (zsys_handler_set(NULL)), so the program keeps its own signal behaviour: Ctrl-C
      still ends a program that did not ask otherwise. A program that wants CZMQ's
      handler installs it again after its last dpool_new.
    - Destroy every pool before the program exits: CZMQ tears its context down at exit. */
#ifndef DPOOL_DPOOL_H
#define DPOOL_DPOOL_H

#include <dpool/errors.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DPOOL_CLIENT_VERSION "0.1.0"

// Default connect timeout: how long dpool_new waits for the broker's first POOL_OPENED.
#define DPOOL_DEFAULT_CONNECT_TIMEOUT 5.0

// Default reconnect timeout: how long an open pool's broker may stay lost (3 s without
// a word from it, or its connection gone) before the pool's pending tasks fail as
// DPOOL_ERR_UNREACHABLE. Long enough for a broker to be restarted: meanwhile the library
// reconnects by itself and re-sends what has no result yet.
#define DPOOL_DEFAULT_RECONNECT_TIMEOUT 60.0

// dpool_opts_t.output_prefix: what the default output handler puts before each line.
#define DPOOL_OUTPUT_PREFIX_DEFAULT 0 // $DPOOL_OUTPUT_PREFIX: "host" = as _HOST, else _NONE
#define DPOOL_OUTPUT_PREFIX_NONE 1    // the task's output verbatim
#define DPOOL_OUTPUT_PREFIX_HOST 2    // "[<worker host>] " before each line

typedef struct _dpool_t dpool_t;
typedef struct _dpool_result_t dpool_result_t;

// What went wrong: code is a <dpool/errors.h> code, message a NUL-terminated text
// (empty when there is nothing to add to dpool_strerror(code)).
typedef struct {
    int code;
    char message[256];
} dpool_error_t;

// An owned buffer of msgpack bytes (arguments or a result). data is malloc'd and owned
// by whoever holds the struct; release it with dpool_buf_free. A zeroed struct is empty.
typedef struct {
    char *data;
    size_t size;
} dpool_buf_t;

// Receives what a task wrote: stream is 1 (stdout) or 2 (stderr); data is not
// NUL-terminated and is only borrowed for the call. Runs on the pool's I/O thread (or
// on a thread in dpool_apply that reads for it), in the order written, always before
// the task's result becomes visible.
typedef void(dpool_output_fn)(void *arg, uint64_t task_id, int stream, const char *data,
                              size_t size);

// Options for dpool_new_opts. Zero-initialise (or call dpool_opts_init) and set what
// you need: every zero field means its default. Later versions add fields at the end.
typedef struct {
    const char *broker;       // endpoint; NULL = $DPOOL_BROKER, else tcp://127.0.0.1:5555
    int processes;            // the pool's cap; 0 = the cluster's current process count
    const char *name;         // NULL = a private pool; else a named pool shared by clients
    double connect_timeout;   // seconds; <= 0 = DPOOL_DEFAULT_CONNECT_TIMEOUT
    dpool_output_fn *output;  // NULL = write to this process's stdout / stderr and flush
                              // (verbatim, or see output_prefix)
    void *output_arg;         // passed to output, borrowed: must outlive the pool
    double time_limit;        // seconds a task may run before it is killed and fails with
                              // DPOOL_ERR_TASK_TIMEOUT; <= 0 = no limit (a chunk of a map
                              // is one task)
    unsigned retries;         // times a task is run again after its process or host died
                              // (DPOOL_ERR_WORKER_LOST); 0 = never
    double reconnect_timeout; // seconds the broker of an open pool may stay lost before
                              // pending tasks fail as DPOOL_ERR_UNREACHABLE; 0 =
                              // DPOOL_DEFAULT_RECONNECT_TIMEOUT, < 0 = wait for ever
    int output_prefix;        // DPOOL_OUTPUT_PREFIX_*, for the default output handler only
    const char *curve_secret; // this client's CURVE secret certificate file (dpool keygen's
                              // NAME.key_secret); NULL = $DPOOL_CURVE_SECRET, else no CURVE
    const char *broker_key;   // the broker's public certificate file; NULL =
                              // $DPOOL_BROKER_KEY. Both or neither.
} dpool_opts_t;

// A successful outcome: data / size are the result's msgpack bytes (for a map, one
// msgpack array of the items' results), borrowed for the call. Runs on the pool's
// callback thread (see THREAD SAFETY).
typedef void(dpool_callback_fn)(void *arg, const char *data, size_t size);

// A failed outcome (borrowed for the call). Runs on the pool's callback thread.
typedef void(dpool_error_callback_fn)(void *arg, const dpool_error_t *err);

// Python's callback= and error_callback=. Either may be NULL; arg is passed to both and
// is borrowed: it must stay valid until the callback ran.
typedef struct {
    dpool_callback_fn *callback;
    dpool_error_callback_fn *error_callback;
    void *arg;
} dpool_callbacks_t;

typedef struct _dpool_imap_t dpool_imap_t;

// Pulls the next item for a lazy imap: returns 1 with *data / *size set to one msgpack
// value (borrowed: valid until the next call), 0 at the end of the items, or a negative
// code to stop there (the iterator reports it at that item's index). Runs on the
// iterator's feeder thread.
typedef int(dpool_source_fn)(void *arg, const char **data, size_t *size);

// Options for dpool_imap_new. Zero-initialise; every zero field means its default.
typedef struct {
    size_t chunksize;        // items per task; 0 = 1
    size_t window;           // chunks submitted and not yet consumed, at most (bounded
                             // memory); 0 = max(16, 4 x the pool's cap)
    bool unordered;          // completion order (imap_unordered) instead of input order
    bool star;               // each item is an argument array (starmap), not the one arg
    dpool_source_fn *source; // pull items lazily; the items argument is then NULL
    void *source_arg;        // passed to source, borrowed until dpool_imap_destroy
} dpool_imap_opts_t;

/* ---- Building arguments ---------------------------------------------------------- */

// Frees buf->data and empties buf. NULL-safe.
void dpool_buf_free(dpool_buf_t *buf);

// Packs a msgpack array with one element per letter of fmt, taking the values from the
// variable arguments:
//   i int           I int64_t        u unsigned       U uint64_t
//   d double        s const char * (NULL packs nil)  b bool (passed as int)
//   n nil (takes no argument)        y bytes: const void *, size_t (packed as bin)
//   m raw msgpack: const dpool_buf_t * holding exactly one value, copied verbatim
// On success *buf holds the new bytes (owned by the caller; whatever buf held before is
// not freed). Returns DPOOL_OK, DPOOL_ERR_INVALID for an unknown letter or a NULL
// argument (buf is then left empty), DPOOL_ERR_NOMEM.
int dpool_pack(dpool_buf_t *buf, const char *fmt, ...);

// dpool_pack with a va_list.
int dpool_vpack(dpool_buf_t *buf, const char *fmt, va_list ap);

// Reads the header of a msgpack array (a map's items or results): *count elements,
// the first at *offset. Returns DPOOL_OK or DPOOL_ERR_INVALID when array holds no array.
int dpool_array_open(const dpool_buf_t *array, size_t *count, size_t *offset);

// Borrows the element at *offset of array (data / size point into array) and moves
// *offset past it. Returns DPOOL_OK, or DPOOL_ERR_INVALID when no whole value is there.
int dpool_array_next(const dpool_buf_t *array, size_t *offset, const char **data, size_t *size);

/* ---- Pools ----------------------------------------------------------------------- */

// Fills opts with the defaults (all zero).
void dpool_opts_init(dpool_opts_t *opts);

// Opens a private pool of `processes` (0 = the cluster's current process count) on
// broker (NULL = $DPOOL_BROKER, else tcp://127.0.0.1:5555). Returns an owned pool, or
// NULL when the broker refused, did not answer within DPOOL_DEFAULT_CONNECT_TIMEOUT,
// or memory ran out; use dpool_new_opts to learn why.
dpool_t *dpool_new(const char *broker, int processes);

// Opens a pool as opts says (opts is borrowed; NULL = all defaults). Returns an owned
// pool, or NULL with *err filled (err may be NULL): DPOOL_ERR_INVALID (negative
// processes, bad name or endpoint), DPOOL_ERR_UNREACHABLE (no POOL_OPENED within the
// connect timeout), the broker's refusal code and message, DPOOL_ERR_NOMEM.
dpool_t *dpool_new_opts(const dpool_opts_t *opts, dpool_error_t *err);

// The cap in force when the pool was opened (for processes = 0, the cluster's process
// count then; a named pool's existing cap if another client opened it first).
int dpool_cap(const dpool_t *self);

// Submits function(args...) and returns at once. args is a msgpack array (borrowed,
// copied; NULL = no arguments). Returns an owned result handle, or NULL with *err
// filled: DPOOL_ERR_CLOSED after dpool_close / dpool_terminate, DPOOL_ERR_INVALID (bad
// function name, args not an array), DPOOL_ERR_NOMEM, DPOOL_ERR_IO.
dpool_result_t *dpool_apply_async(dpool_t *self, const char *function, const dpool_buf_t *args,
                                  dpool_error_t *err);

// dpool_apply_async with Python's callback / error_callback (callbacks borrowed,
// copied; NULL = none): exactly one of them runs, once, on the pool's callback thread,
// when the outcome is in. No callback runs when the call returns NULL.
dpool_result_t *dpool_apply_async_cb(dpool_t *self, const char *function, const dpool_buf_t *args,
                                     const dpool_callbacks_t *callbacks, dpool_error_t *err);

// One-line dpool_apply_async: the arguments are packed from fmt as dpool_pack does. A
// submission that fails (closed pool, bad format) still returns a handle, already
// ready and unsuccessful, so dpool_result_get reports the error (a failed future).
// Returns NULL only when memory runs out.
dpool_result_t *dpool_apply_asyncf(dpool_t *self, const char *function, const char *fmt, ...);

// Submits function(args...) and waits for its result. On DPOOL_OK *value (may be NULL
// to discard) holds the result's msgpack bytes, owned by the caller. Otherwise returns
// the submission's error or the task's outcome code (DPOOL_ERR_TASK_FAILED,
// DPOOL_ERR_NO_FUNCTION, DPOOL_ERR_WORKER_LOST, DPOOL_ERR_TERMINATED,
// DPOOL_ERR_UNREACHABLE, ...) with *err filled.
int dpool_apply(dpool_t *self, const char *function, const dpool_buf_t *args, dpool_buf_t *value,
                dpool_error_t *err);

/* ---- Map family ------------------------------------------------------------------
   items is ONE msgpack array (borrowed, read during the call) holding one value per
   item. map calls function(item) for each (arguments [item]); starmap calls
   function(*item), so each item must itself be an argument array. Items travel in
   chunks of chunksize: one SUBMIT each (DPOOL_FLAG_CHUNK), run in one process, one
   slot of the cap. chunksize 0 = Python's default for map: ceil(items / (4 x cap)),
   cap being dpool_cap (at least 1). The results keep the input order. An item that
   fails fails the whole map with its code and the message "item K: <message>", K its
   0-based index in items (the first failure to arrive); the other chunks run on. */

// Runs function over items and waits. On DPOOL_OK *results (may be NULL) holds one
// msgpack array of the results in input order, owned by the caller (walk it with
// dpool_array_open / dpool_array_next). Otherwise the first failure, *err filled:
// DPOOL_ERR_INVALID (items not an array of whole values), DPOOL_ERR_CLOSED, or an
// item's outcome code. Zero items: an empty array at once.
int dpool_map(dpool_t *self, const char *function, const dpool_buf_t *items, size_t chunksize,
              dpool_buf_t *results, dpool_error_t *err);

// dpool_map returning at once: the handle's value is the array of results
// (dpool_result_get, or dpool_result_count / dpool_result_item); callbacks (may be NULL)
// get the array, or the first failure. NULL with *err filled when nothing could be
// submitted (closed pool, items not an array).
dpool_result_t *dpool_map_async(dpool_t *self, const char *function, const dpool_buf_t *items,
                                size_t chunksize, const dpool_callbacks_t *callbacks,
                                dpool_error_t *err);

// dpool_map where each item is an argument array (Python's starmap).
int dpool_starmap(dpool_t *self, const char *function, const dpool_buf_t *items, size_t chunksize,
                  dpool_buf_t *results, dpool_error_t *err);

// dpool_map_async where each item is an argument array (Python's starmap_async).
dpool_result_t *dpool_starmap_async(dpool_t *self, const char *function, const dpool_buf_t *items,
                                    size_t chunksize, const dpool_callbacks_t *callbacks,
                                    dpool_error_t *err);

// Python's imap: an iterator over function(item) in input order, items (a msgpack array,
// copied) submitted by a feeder thread in chunks of chunksize (0 = 1), at most a window
// of chunks ahead of the consumer. Returns an owned iterator, or NULL with *err filled.
dpool_imap_t *dpool_imap(dpool_t *self, const char *function, const dpool_buf_t *items,
                         size_t chunksize, dpool_error_t *err);

// Python's imap_unordered: as dpool_imap, in completion order (a chunk's results stay
// together, in order).
dpool_imap_t *dpool_imap_unordered(dpool_t *self, const char *function, const dpool_buf_t *items,
                                   size_t chunksize, dpool_error_t *err);

// The general iterator: items as for dpool_imap, or NULL with opts->source pulling them
// lazily (memory stays bounded by the window whatever the number of items). opts is
// borrowed (NULL = defaults). Returns an owned iterator, or NULL with *err filled.
dpool_imap_t *dpool_imap_new(dpool_t *self, const char *function, const dpool_buf_t *items,
                             const dpool_imap_opts_t *opts, dpool_error_t *err);

// The next result, waiting up to timeout seconds (negative = no limit). Returns 1 with
// *data / *size set to its msgpack bytes (borrowed: valid until the next call on the
// iterator), 0 when every item has been yielded, DPOOL_ERR_TIMEOUT when none came in
// time (call again), or an item's failure (*err: code and "item K: <message>"); after a
// failure, which comes after every result before it, the iterator stops and each later
// call returns the same failure.
int dpool_imap_next(dpool_imap_t *self, double timeout, const char **data, size_t *size,
                    dpool_error_t *err);

// The 0-based index, in the items, of what dpool_imap_next returned last (a result or
// a failure); with unordered iterators, the way to tell which item a result is for.
size_t dpool_imap_index(const dpool_imap_t *self);

// Stops feeding (waiting for a source call in progress to return) and frees the
// iterator; chunks already submitted run on, their results dropped. Call it before
// destroying the pool. NULL-safe; sets *self_p to NULL.
void dpool_imap_destroy(dpool_imap_t **self_p);

// No more submissions: later apply / apply_async fail with DPOOL_ERR_CLOSED. Tasks
// already submitted run on. Returns DPOOL_OK (DPOOL_ERR_INVALID for NULL).
int dpool_close(dpool_t *self);

// Waits until every task submitted to this pool has its result and every callback due
// has run. Returns DPOOL_OK, or
// DPOOL_ERR_STATE when the pool was neither closed nor terminated (as Python's join).
// Tasks whose broker stays lost for longer than the reconnect timeout fail as
// DPOOL_ERR_UNREACHABLE, so join returns then too.
int dpool_join(dpool_t *self);

// Stops the pool: no more submissions; every task without a result is dropped from
// the broker's queue or killed where it runs, and its result becomes
// DPOOL_ERR_TERMINATED. Waits until the broker has confirmed each one (bounded by the
// connect timeout; unconfirmed ones are then failed here). Returns DPOOL_OK, or
// DPOOL_ERR_TIMEOUT when the broker did not confirm in time.
int dpool_terminate(dpool_t *self);

// Terminates outstanding tasks (as leaving Python's `with Pool()` block does),
// releases the pool at the broker, stops the I/O thread and frees the pool. Result
// handles stay valid. NULL-safe; sets *self_p to NULL.
void dpool_destroy(dpool_t **self_p);

/* ---- Results --------------------------------------------------------------------- */

// Waits up to timeout seconds (negative = no limit, 0 = just look) for the outcome.
// DPOOL_OK: *value (may be NULL) receives a copy of the result's msgpack bytes, owned
// by the caller; unpack it with msgpack_unpack / msgpack_unpacked (one value). Else
// returns DPOOL_ERR_TIMEOUT (not ready; the task goes on), or the task's outcome code
// with *err filled with the broker's message. May be called again: each call copies.
int dpool_result_get(dpool_result_t *self, double timeout, dpool_buf_t *value, dpool_error_t *err);

// Waits up to timeout seconds (negative = no limit) for the outcome. Returns DPOOL_OK
// when it is ready, DPOOL_ERR_TIMEOUT otherwise.
int dpool_result_wait(dpool_result_t *self, double timeout);

// True when the outcome is in (success or failure).
bool dpool_result_ready(dpool_result_t *self);

// 1 when the task succeeded, 0 when it failed, DPOOL_ERR_NOT_READY when the outcome
// is not in yet (Python raises ValueError there).
int dpool_result_successful(dpool_result_t *self);

// The task id this client gave the task (counting from 1 per pool; 0 for a handle of
// a submission that failed).
uint64_t dpool_result_task_id(const dpool_result_t *self);

// For a map's handle: *count results, once it succeeded. Returns DPOOL_OK,
// DPOOL_ERR_NOT_READY, the map's failure code, or DPOOL_ERR_INVALID when the value is
// not an array.
int dpool_result_count(dpool_result_t *self, size_t *count);

// For a map's handle: borrows result `index` (msgpack bytes inside the handle, valid
// while the handle lives). Returns as dpool_result_count; DPOOL_ERR_INVALID for an
// index past the end.
int dpool_result_item(dpool_result_t *self, size_t index, const char **data, size_t *size);

// Drops the caller's handle. The task itself goes on. NULL-safe; sets *self_p to NULL.
void dpool_result_destroy(dpool_result_t **self_p);

#ifdef __cplusplus
}
#endif
#endif
