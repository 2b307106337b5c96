/*  The worker daemon's records, shared by its modules (dpool_worker.c: lifecycle,
    poll loop and timers; dpool_slots.c: the worker processes, one slot each;
    dpool_tasks.c: what the daemon says to and hears from the broker). Not
    installed, not used outside worker/.

    Credits. The broker may hold one credit per idle process and no more (that is
    what makes a pool's cap exact), so the daemon keeps `granted`, the credits the
    broker holds, and `idle`, its idle processes, and tops the broker up whenever
    idle > granted: with a result (credits = 1), or with CREDIT at the end of a loop
    turn, which batches the hello's credits. A process that dies while idle leaves
    granted > idle, so its replacement earns no second credit; a TASK that arrives
    for it meanwhile waits in `pending` for the first process to become idle.

    Chained TASKs (`after` set) take no credit: the broker sends one ahead to a busy
    process, bound to the task it follows there, so the process goes from one to the
    next without a round trip. It never runs beside its predecessor, only in its
    place, so the tasks running on a host never outnumber the credits the broker
    spent, and a pool's cap stays exact. The process that moves on to a successor is
    not idle, so that result carries no credit: the credit comes back with the last
    result of the chain, which outlives a death of its process (the replacement runs
    the rest and is not idle, so earns no CREDIT of its own). */
#ifndef DPOOL_WORKER_INTERNAL_H
#define DPOOL_WORKER_INTERNAL_H

#include "dpool_functions.h"
#include "dpool_proc.h"
#include "dpool_proto.h"
#include "dpool_runner.h"
#include "dpool_uplink.h"
#include "dpool_worker.h"

#include <stdbool.h>
#include <stdint.h>

// PROTOCOL.md: "The daemon sends HEARTBEAT [] every second".
#define DPOOL_WORKER_HEARTBEAT_MS 1000
// A process that dies within this long of starting is restarted after a growing
// delay (doubling up to DPOOL_WORKER_RESTART_DELAY_MAX_MS), so a module that kills
// every process it is loaded into costs a few forks a second, not a fork storm.
#define DPOOL_WORKER_SHORT_LIFE_MS 1000
#define DPOOL_WORKER_RESTART_DELAY_MIN_MS 100
#define DPOOL_WORKER_RESTART_DELAY_MAX_MS 5000

typedef enum {
    DPOOL_SLOT_EMPTY,    // no process; one is started at spawn_at
    DPOOL_SLOT_STARTING, // forked, running its initializer; not READY yet
    DPOOL_SLOT_IDLE,
    DPOOL_SLOT_BUSY,
    DPOOL_SLOT_RETIRING, // ran its last task (maxtasksperchild) and is exiting
} dpool_slot_state_t;

// Jobs one queue may hold: `pending`, or one slot's chain. The broker sends a TASK
// only against a credit and chains only a bounded prefetch, so more than a handful
// means a confused broker; beyond this many the TASK is answered -21.
#define DPOOL_WORKER_QUEUE_MAX 1024

// A TASK as the broker sent it, kept until a process takes it: in `pending`, or in
// the queue of the slot it was chained to.
typedef struct {
    uint64_t task_id;
    char *function; // owned
    zframe_t *args; // owned: arguments, or a CHUNK's array of argument arrays
    uint32_t flags; // DPOOL_FLAG_*
    uint32_t time_limit_ms;
    bool killed; // KILL came after the job was written to a process: killed when it runs
} dpool_job_t;

// Running ahead (dpool_channel.h): at most this many chained jobs, and this many bytes
// of their frames, are written to a busy process behind its running task. Small enough
// that the socket's buffer holds them all, so the daemon's write never waits for a
// process that is busy; enough that a process runs a chain of short tasks without a
// wake-up of the daemon between them.
#define DPOOL_WORKER_AHEAD_MAX 16
#define DPOOL_WORKER_AHEAD_BYTES (32u * 1024u)

// One worker process place.
typedef struct {
    dpool_proc_t *proc; // NULL when EMPTY
    dpool_slot_state_t state;
    uint64_t task_id;       // when BUSY
    uint32_t time_limit_ms; // when BUSY: the task's limit; 0 = none
    int64_t deadline;       // when BUSY with a limit: when the process is killed
    unsigned tasks_done;    // tasks (a chunk counts once) since the process started
    uint64_t results_read;  // index of the last RESULT read from the process
    uint64_t finished_seen; // its count of finished tasks at the last look
    int64_t kept_check_at;  // ms: when to look at the results it keeps back; 0 = never
    // Output streams the last epoll_wait found readable (bit 1 << stream), not yet read:
    // a result's drain reads them and clears the bits.
    unsigned output_ready;
    unsigned watched; // descriptors of the process in the daemon's epoll set (1 << stream)
    int64_t spawned_at;
    int64_t spawn_at; // when EMPTY: when to start the replacement
    int64_t restart_delay;
    // Chained jobs (dpool_job_t, oldest first) that run in this slot and nowhere
    // else; kept across the deaths of its processes.
    zlist_t *queue;
    // Jobs taken from the queue and written to the process behind its running task
    // (oldest first), not answered yet; they go back to the queue's front when the
    // process skips them or dies.
    zlist_t *ahead;
    size_t ahead_bytes;
    uint32_t epoch;   // of the TASKs written now; the next one after a skip
    bool runs_ahead;  // the process said so in READY
    bool head_killed; // the running task was KILLed while it waited ahead
    bool fill_due;    // jobs were queued this loop turn: it is in self->fill_due
    // The newest task bound to the slot, the last queued, else the last written ahead,
    // else the one running; 0 = none. A chained TASK's `after` is looked up here.
    uint64_t tail_id;
} dpool_slot_t;

struct dpool_worker_t {
    char *endpoint;
    char host[256];
    unsigned processes;
    dpool_functions_t *functions;
    char *initializer; // owned; NULL = none
    dpool_runner_config_t runner;
    dpool_slot_t *slots;
    zlist_t *pending; // of dpool_job_t, oldest first
    dpool_uplink_t *uplink;
    unsigned idle;
    unsigned granted;
    int64_t heartbeat_at;
    int64_t hello_at;
    unsigned init_failures; // new processes in a row whose initializer failed
    char *error;            // owned: why the daemon stopped on its own, or NULL
    zcert_t *cert;          // owned: this daemon's CURVE key pair; NULL = no CURVE
    char *broker_key;       // owned: the broker's public key (Z85) when cert is set
    char *buffer;           // DPOOL_WORKER_OUTPUT_CHUNK bytes for pipe reads
    uint8_t *kept_copy;     // DPOOL_PROC_KEPT_MAX bytes: results a process keeps back
    int watch_fd;           // epoll: the broker's socket, every process's channel and pipes
    // No earlier than this is any slot's timer due (a replacement's start, a time limit):
    // until then the timers pass skips the slots, a scan a loop turn being O(processes).
    int64_t slot_timers_at;
    dpool_slot_t **fill_due; // slots queued to this turn (fill_due_count of processes)
    size_t fill_due_count;
};

// How often the daemon looks at a process that runs ahead, for results it keeps back
// while a long task runs after them: such results wait 1-3 of these at most.
#define DPOOL_WORKER_KEPT_WAIT_MS 2

// Bytes read from an output pipe in one go: one WORKER_OUTPUT each.
#define DPOOL_WORKER_OUTPUT_CHUNK 65536

// dpool_worker.c

// Adds the channel and pipes of the process just started in slot to the daemon's epoll
// set. Returns false when they could not be added (the process would go unheard).
bool dpool_worker_watch(dpool_worker_t *self, dpool_slot_t *slot);

// Removes what dpool_worker_watch added, before the process is destroyed.
void dpool_worker_unwatch(dpool_worker_t *self, dpool_slot_t *slot);

// Removes the pipe of stream at its end of file (it would be readable for ever).
void dpool_worker_unwatch_output(dpool_worker_t *self, dpool_slot_t *slot, int stream);

// A slot's timer is now due at `when` (ms): the timers pass looks at the slots then.
void dpool_worker_timer_at(dpool_worker_t *self, int64_t when);

// dpool_tasks.c

// How many credits the broker should get now, counted as given.
unsigned dpool_tasks_take_credits(dpool_worker_t *self);

// Sends WORKER_HELLO with every function; the broker then holds no credit.
void dpool_tasks_send_hello(dpool_worker_t *self);

// Sends WORKER_RESULT; *payload_p (may be NULL or point to NULL) is consumed.
void dpool_tasks_send_result(dpool_worker_t *self, uint64_t task_id, int code, const char *message,
                             zframe_t **payload_p, unsigned credits);

// Reads and handles every message the broker has sent (TASK, KILL, ERROR, ...).
void dpool_tasks_on_broker(dpool_worker_t *self);

// Frees the job of task_id if jobs (a zlist of dpool_job_t) holds it; returns whether
// it did.
bool dpool_tasks_jobs_drop(zlist_t *jobs, uint64_t task_id);

// Frees every job in jobs (NULL-safe); the list stays.
void dpool_tasks_jobs_clear(zlist_t *jobs);

// Frees a job. NULL-safe; sets *job_p to NULL.
void dpool_tasks_job_destroy(dpool_job_t **job_p);

// dpool_slots.c

// Forks a process into the EMPTY slot (it becomes STARTING), or, when fork fails,
// schedules another try.
void dpool_slots_spawn(dpool_worker_t *self, dpool_slot_t *slot);

// Hands job (borrowed) to the process in slot, which must be IDLE and no longer
// counted in self->idle; the slot becomes BUSY.
void dpool_slots_start(dpool_worker_t *self, dpool_slot_t *slot, const dpool_job_t *job);

// Handles what the process in slot sent on its channel (READY, RESULT, INIT_FAILED,
// end of file).
void dpool_slots_on_channel(dpool_worker_t *self, dpool_slot_t *slot);

// Reads the stream of the process in slot once, or with drain until it is empty,
// forwarding it as WORKER_OUTPUT while a task runs.
void dpool_slots_read_output(dpool_worker_t *self, dpool_slot_t *slot, int stream, bool drain);

// The poll found the stream of the process in slot readable: reads it once and
// forwards it as the output of the task that wrote it.
void dpool_slots_on_output(dpool_worker_t *self, dpool_slot_t *slot, int stream);

// KILL: kills the process in slot (BUSY), sends no result; a replacement follows at once.
void dpool_slots_kill(dpool_worker_t *self, dpool_slot_t *slot);

// Kills the process in slot, whose task ran past its time limit: forwards the output
// the task wrote, answers -14, and has the process replaced at once.
void dpool_slots_time_out(dpool_worker_t *self, dpool_slot_t *slot);

// Reads and forwards all the output both pipes of slot's process hold.
void dpool_slots_drain_output(dpool_worker_t *self, dpool_slot_t *slot);

// The output of the task whose result just came, which did not go on: what the pipes
// still hold. A process writes its output before its result, so once the result is
// here the pipes hold all of it.
void dpool_slots_drain_result_output(dpool_worker_t *self, dpool_slot_t *slot);

// Handles a RESULT frame (size bytes of body, borrowed) from the process in slot: the
// next index answers its running task; an index answered already is dropped; any
// other, or a frame that does not parse, buries the process as not trusted.
void dpool_slots_on_result(dpool_worker_t *self, dpool_slot_t *slot, const uint8_t *body,
                           size_t size);

// While jobs are written ahead to the process in slot, it may keep results back: the
// daemon looks again in a while (dpool_slots_on_kept_timer).
void dpool_slots_arm_kept_check(dpool_worker_t *self, dpool_slot_t *slot);

// After the process in slot died (reaped): answers the results it had sent and those it
// kept back that follow, in order, what the daemon had read.
void dpool_slots_take_from_dead(dpool_worker_t *self, dpool_slot_t *slot);

// Answers the results the process in slot keeps back (dpool_proc_shared_t): what it
// sent first, then a copy of what it keeps. The slot may be emptied (its process found
// dead).
void dpool_slots_collect_kept(dpool_worker_t *self, dpool_slot_t *slot);

// At slot->kept_check_at, while jobs are written ahead: collects what the process keeps
// back if it has finished no task since the last look (it runs a long one), and looks
// again later.
void dpool_slots_on_kept_timer(dpool_worker_t *self, dpool_slot_t *slot);

// The BUSY slot running task_id, or NULL.
dpool_slot_t *dpool_slots_find_task(dpool_worker_t *self, uint64_t task_id);

// The slot whose newest task (the last queued, else the one running) is task_id,
// whatever its state, or NULL: where a TASK chained after task_id goes.
dpool_slot_t *dpool_slots_find_tail(dpool_worker_t *self, uint64_t task_id);

// Appends *job_p to the queue of slot, to run there after its current tail; the job (owned) moves
// to the slot on success and is freed on failure. Returns DPOOL_OK, DPOOL_ERR_QUEUE_FULL
// (DPOOL_WORKER_QUEUE_MAX jobs wait there, queued or written ahead) or DPOOL_ERR_NOMEM.
int dpool_slots_chain(dpool_slot_t *slot, dpool_job_t **job_p);

// Writes every busy process whose queue grew this turn the next jobs of its queue (after
// a burst of TASKs from the broker: all of them in one write per process).
void dpool_slots_fill_ahead(dpool_worker_t *self);

// KILL of a queued chained task: frees the job waiting for task_id in a slot's queue,
// or marks the one written ahead to a process, which is killed if the task comes to
// run; nothing is sent. Returns false when no slot holds it.
bool dpool_slots_drop_queued(dpool_worker_t *self, uint64_t task_id);

// KILL of the running task of slot: the process is killed, unless what it has
// written says the task has ended already. Returns whether it was killed.
bool dpool_slots_kill_running(dpool_worker_t *self, dpool_slot_t *slot, uint64_t task_id);

// Frees every job queued in slot (the daemon is stopping, or registers anew); jobs
// written ahead to its process are marked killed. The slot keeps its lists.
void dpool_slots_clear_queue(dpool_slot_t *slot);

// The first IDLE slot, or NULL.
dpool_slot_t *dpool_slots_find_idle(dpool_worker_t *self);

#endif
