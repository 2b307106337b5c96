/*  dpool_broker: the broker daemon's top object. One ROUTER socket; clients and
    worker daemons connect DEALERs to it (docs/PROTOCOL.md). The main loop is
    poll -> drain every readable message -> dispatch -> timers. */
#ifndef DPOOL_BROKER_H
#define DPOOL_BROKER_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct dpool_broker dpool_broker_t;

typedef struct {
    const char *bind;          // endpoint to bind (borrowed); tcp://HOST:* picks a free port
    bool insecure;             // allow a non-loopback tcp bind without CURVE
    int64_t grace_ms;          // how long a task waits for a worker offering its function
    const char *endpoint_file; // when set, the bound endpoint is written there
    int64_t max_queued;        // unanswered tasks accepted at most; past it: queue full
    int64_t max_message;       // bytes; larger messages are dropped by ZeroMQ
    const char *journal_dir;   // when set, accepted tasks survive a broker restart
    const char *curve_secret;  // the broker's zcert secret file; NULL = no CURVE
    const char *authorized;    // with curve_secret: folder with clients/ and workers/ keys
    // Set from a SIGHUP handler (may be NULL): the authorised keys are read again.
    volatile sig_atomic_t *reload_keys;
} dpool_broker_config_t;

// Fills config with the defaults (tcp://127.0.0.1:5555, grace 10 s).
void dpool_broker_config_defaults(dpool_broker_config_t *config);

// True when endpoint needs no --insecure: ipc://, inproc://, or tcp on a loopback
// address (127.x.x.x, localhost, [::1]).
bool dpool_broker_endpoint_is_local(const char *endpoint);

// Binds the socket (a CURVE server when config->curve_secret is set). Returns an owned
// broker, or NULL with a one-line reason written to why (a buffer of why_size bytes): the
// bind failed, a key file or the authorised folder cannot be read, or a non-loopback bind
// lacks both CURVE and --insecure. config is copied; its strings must outlive the broker.
dpool_broker_t *dpool_broker_new(const dpool_broker_config_t *config, char *why, size_t why_size);

// Destroys the broker; outstanding tasks are dropped. NULL-safe; sets *self_p to NULL.
void dpool_broker_destroy(dpool_broker_t **self_p);

// Serves until *stop becomes non-zero (set from a signal handler). Returns 0, or -1
// when the socket fails beyond repair.
int dpool_broker_run(dpool_broker_t *self, volatile sig_atomic_t *stop);

// The endpoint actually bound (borrowed, valid for the broker's life).
const char *dpool_broker_endpoint(const dpool_broker_t *self);

#endif
