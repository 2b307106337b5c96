/*  dpool_curve: the client's side of CURVE. A broker started with --curve-secret only
    talks to clients that encrypt with its public key and present a key of their own
    that it knows (docs/PROTOCOL.md, "Security (CURVE)"). */
#ifndef DPOOL_CURVE_H
#define DPOOL_CURVE_H

#include <czmq.h>
#include <stddef.h>

#define DPOOL_CURVE_SECRET_ENV "DPOOL_CURVE_SECRET"
#define DPOOL_BROKER_KEY_ENV "DPOOL_BROKER_KEY"

// Makes sock (not yet connected) a CURVE client: secret_path is this client's secret
// certificate file (zcert format, as `dpool keygen` writes NAME.key_secret), and
// broker_key_path the broker's public certificate. Either NULL falls back to
// $DPOOL_CURVE_SECRET / $DPOOL_BROKER_KEY; both absent = no CURVE (returns DPOOL_OK).
// Returns DPOOL_OK, or DPOOL_ERR_INVALID with a one-line reason in why (only one of the
// two given, an unreadable file, a public file given as the secret one).
int dpool_curve_apply(zsock_t *sock, const char *secret_path, const char *broker_key_path,
                      char *why, size_t why_size);

#endif
