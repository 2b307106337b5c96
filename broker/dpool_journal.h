/*  dpool_journal: the broker's append-only journal of accepted submissions and their
    completions, so a broker killed with SIGKILL and restarted on the same directory
    runs every task it had accepted (at least once).

    Records are appended to a buffer and written with one write + fdatasync per call
    to dpool_journal_commit (group commit: the broker commits once per loop turn, not
    per task). The journal keeps a copy of every live submission in memory, so it can
    compact itself (rewrite only the live records into a new file and rename it over
    the old one) without asking the broker for anything. No sockets here. */
#ifndef DPOOL_JOURNAL_H
#define DPOOL_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct dpool_journal dpool_journal_t;

// One accepted submission, as journalled. Every pointer is borrowed.
typedef struct {
    const void *client_id; // the client's routing id
    size_t client_id_size;
    uint32_t pool_ref;
    const char *pool_name; // NULL for a private pool
    uint32_t cap;
    uint32_t retries;
    uint32_t time_limit_ms;
    uint64_t task_id; // the client's task id
    const char *function;
    uint32_t flags;
    const void *args;
    size_t args_size;
} dpool_journal_entry_t;

typedef void(dpool_journal_replay_fn)(void *ctx, const dpool_journal_entry_t *entry);

// Opens (creating if needed) the journal in dir, reads it, hands every submission that
// has no completion to replay (oldest first; replay may be NULL), and compacts the file
// to just those. Returns an owned journal, or NULL with a one-line reason in why (an
// unreadable or unwritable directory; a torn record at the end, from a crash in the
// middle of a write, is not an error: it is dropped).
dpool_journal_t *dpool_journal_open(const char *dir, dpool_journal_replay_fn *replay, void *ctx,
                                    char *why, size_t why_size);

// Commits what is buffered, then closes. NULL-safe; sets *self_p to NULL.
void dpool_journal_close(dpool_journal_t **self_p);

// Buffers an accepted submission. Returns 0, or -1 on out-of-memory.
int dpool_journal_submit(dpool_journal_t *self, const dpool_journal_entry_t *entry);

// Buffers the completion of (client_id, task_id): the task was answered. Returns 0, or
// -1 on out-of-memory. A completion for a task never journalled is ignored.
int dpool_journal_done(dpool_journal_t *self, const void *client_id, size_t client_id_size,
                       uint64_t task_id);

// Writes and syncs everything buffered (one fdatasync), compacting first when the file
// has grown well past its live content. Returns 0, or -1 when the disk refused (the
// broker logs it; the records stay buffered and are retried at the next commit).
int dpool_journal_commit(dpool_journal_t *self);

// Figures for status and tests.
size_t dpool_journal_live(const dpool_journal_t *self);
uint64_t dpool_journal_file_size(const dpool_journal_t *self);

#endif
