/*  Loading the client's CURVE certificates and applying them to a socket. Kept apart
    from the I/O thread so the CLI's own sockets (`dpool status`) use the same rules. */
#include "dpool_curve.h"

#include <dpool/errors.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
dpool_curve_apply(zsock_t *sock, const char *secret_path, const char *broker_key_path, char *why,
                  size_t why_size)
{
    if (!secret_path)
        secret_path = getenv(DPOOL_CURVE_SECRET_ENV);
    if (!broker_key_path)
        broker_key_path = getenv(DPOOL_BROKER_KEY_ENV);
    if (!secret_path && !broker_key_path)
        return DPOOL_OK;
    if (!secret_path || !broker_key_path) {
        snprintf(why, why_size, "CURVE needs both a secret key (%s) and the broker's key (%s)",
                 DPOOL_CURVE_SECRET_ENV, DPOOL_BROKER_KEY_ENV);
        return DPOOL_ERR_INVALID;
    }
    zcert_t *mine = zcert_load(secret_path);
    zcert_t *broker = zcert_load(broker_key_path);
    int rc = DPOOL_ERR_INVALID;
    if (!mine)
        snprintf(why, why_size, "cannot read the CURVE certificate %s", secret_path);
    else if (!broker)
        snprintf(why, why_size, "cannot read the broker's CURVE certificate %s", broker_key_path);
    else if (strspn(zcert_secret_txt(mine), "0") == strlen(zcert_secret_txt(mine)))
        // zcert_load of a public-only file gives an all-zero secret key.
        snprintf(why, why_size, "%s holds no secret key (give the NAME.key_secret file)",
                 secret_path);
    else {
        zcert_apply(mine, sock);
        zsock_set_curve_serverkey(sock, zcert_public_txt(broker));
        rc = DPOOL_OK;
    }
    zcert_destroy(&mine);
    zcert_destroy(&broker);
    return rc;
}
