/*  dpool_auth: CURVE for the broker (docs/PROTOCOL.md, "Security (CURVE)"). It makes
    the broker's socket a CURVE server, runs the ZAP handler that lets every CURVE key
    through the handshake (so every peer's traffic is encrypted, and a stranger can be
    told why it is refused), and holds the authorised public keys with their roles,
    loaded from DIR/clients and DIR/workers. The broker asks it, per message, which
    roles the sending key has: one hash lookup. */
#ifndef DPOOL_AUTH_H
#define DPOOL_AUTH_H

#include "dpool_proto.h"

#include <czmq.h>
#include <stdbool.h>

typedef struct dpool_auth dpool_auth_t;

// What an authorised key may do; a key found in both folders may do both.
#define DPOOL_AUTH_CLIENT 0x1u
#define DPOOL_AUTH_WORKER 0x2u

// Loads the broker's secret certificate from secret_path (zcert_save's "_secret" file),
// the public certificates in dir/clients and dir/workers, and starts the ZAP handler.
// Returns an owned object, or NULL with a one-line reason written to why (why_size
// bytes): a file that is not a certificate, a secret file without a secret key, a
// missing folder, or a ZAP handler already running in this process.
dpool_auth_t *dpool_auth_new(const char *secret_path, const char *dir, char *why, size_t why_size);

// Stops the ZAP handler and frees the keys. NULL-safe; sets *self_p to NULL.
void dpool_auth_destroy(dpool_auth_t **self_p);

// Makes sock (borrowed, not yet bound) a CURVE server with the broker's keys.
void dpool_auth_apply(const dpool_auth_t *self, zsock_t *sock);

// Re-reads dir/clients and dir/workers; the old key sets stay when that fails. Returns
// DPOOL_OK or DPOOL_ERR_IO with a one-line reason in why.
int dpool_auth_reload(dpool_auth_t *self, char *why, size_t why_size);

// A CURVE public key in Z85: 40 characters.
#define DPOOL_AUTH_KEY_TEXT 40

// The public key (Z85, borrowed from frame) of the peer that sent frame, or NULL. frame
// must be one the peer sent (on a ROUTER: not the routing id, which libzmq may hand out
// without the connection's properties when the message was polled first).
const char *dpool_auth_peer_key(zframe_t *frame);

// The roles (DPOOL_AUTH_*) of key (NULL-safe), or 0 when it is not authorised. O(1).
unsigned dpool_auth_roles(const dpool_auth_t *self, const char *key);

// NULL when a peer with roles may send command, else why not ("not authorised: ...",
// static text).
const char *dpool_auth_refusal(unsigned roles, dpool_cmd_t command);

// How many client and worker keys are authorised.
size_t dpool_auth_clients(const dpool_auth_t *self);
size_t dpool_auth_workers(const dpool_auth_t *self);

#endif
