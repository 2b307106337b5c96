/*  CURVE for the broker. The ROUTER is a CURVE server, so every connection is
    encrypted and every peer proves it holds the secret key of the public key it shows.
    Which keys may do what is decided per message, not at the handshake: a stranger
    whose handshake was refused would only see silence and reconnect for ever, while one
    let through can be answered ERROR -17 "not authorised" and stop.

    czmq's zauth cannot be used for that: with CURVE_ALLOW_ANY (czmq 4.2) it answers
    the ZAP request with an empty User-Id, and with a certificate folder it refuses
    unknown keys in the handshake. So this module runs its own ZAP handler (RFC 27) in
    an actor: it accepts every CURVE client and sets the connection's User-Id to the
    client's public key in Z85, which libzmq then attaches to each message as the
    "User-Id" property. The broker's thread looks that text up in one hash table of
    authorised keys (value: the roles, from the folder the key was found in). */
#include "dpool_auth.h"

#include "dpool_log.h"

#include <dirent.h>
#include <dpool/errors.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

// Where libzmq sends its ZAP requests: one handler per ZeroMQ context.
#define S_ZAP_ENDPOINT "inproc://zeromq.zap.01"

struct dpool_auth {
    char *dir;           // owned copy of the authorised folder
    zcert_t *cert;       // the broker's own key pair
    zhashx_t *keys;      // Z85 public key -> roles, as (void *)(uintptr_t)
    size_t client_count; // keys with DPOOL_AUTH_CLIENT
    size_t worker_count; // keys with DPOOL_AUTH_WORKER
    zactor_t *zap;
};

// Answers one ZAP request: any CURVE client is let in and named by its public key;
// anything else (the socket only speaks CURVE, so nothing else should come) is refused.
static void
s_zap_answer(zsock_t *handler)
{
    zmsg_t *request = zmsg_recv(handler);
    if (!request)
        return;
    char *version = zmsg_popstr(request);
    char *sequence = zmsg_popstr(request);
    char *domain = zmsg_popstr(request);
    char *address = zmsg_popstr(request);
    zframe_t *identity = zmsg_pop(request);
    char *mechanism = zmsg_popstr(request);
    zframe_t *key = zmsg_pop(request);
    char user_id[DPOOL_AUTH_KEY_TEXT + 1] = "";
    bool curve = version && streq(version, "1.0") && mechanism && streq(mechanism, "CURVE") &&
                 key && zframe_size(key) == 32;
    if (curve)
        zmq_z85_encode(user_id, zframe_data(key), 32);
    DPOOL_LOG_DEBUG("handshake from %s: %s %s", address ? address : "?",
                    mechanism ? mechanism : "?", curve ? user_id : "refused");
    zmsg_t *reply = zmsg_new();
    zmsg_addstr(reply, "1.0");
    zmsg_addstr(reply, sequence ? sequence : "");
    zmsg_addstr(reply, curve ? "200" : "400");
    zmsg_addstr(reply, curve ? "OK" : "CURVE only");
    zmsg_addstr(reply, user_id);
    zmsg_addmem(reply, "", 0); // no metadata
    if (zmsg_send(&reply, handler) != 0)
        zmsg_destroy(&reply);
    zstr_free(&version);
    zstr_free(&sequence);
    zstr_free(&domain);
    zstr_free(&address);
    zframe_destroy(&identity);
    zstr_free(&mechanism);
    zframe_destroy(&key);
    zmsg_destroy(&request);
}

// The ZAP handler's thread. After the actor handshake it sends one string on the pipe:
// empty when it serves, else why it cannot (and then it ends).
static void
s_zap_actor(zsock_t *pipe, void *args)
{
    (void)args;
    zsock_signal(pipe, 0);
    zsock_t *handler = zsock_new(ZMQ_REP);
    if (!handler || zsock_bind(handler, S_ZAP_ENDPOINT) != 0) {
        zstr_sendf(pipe, "cannot bind the ZAP handler: %s", zmq_strerror(zmq_errno()));
        zsock_destroy(&handler);
        return;
    }
    zstr_send(pipe, "");
    zmq_pollitem_t items[] = {{zsock_resolve(pipe), 0, ZMQ_POLLIN, 0},
                              {zsock_resolve(handler), 0, ZMQ_POLLIN, 0}};
    while (true) {
        // A signal meant for the broker's thread may land here: EINTR is not an end.
        if (zmq_poll(items, 2, -1) < 0) {
            if (zmq_errno() == EINTR)
                continue;
            break;
        }
        if (items[0].revents & ZMQ_POLLIN) {
            char *command = zstr_recv(pipe);
            bool stop = !command || streq(command, "$TERM");
            zstr_free(&command);
            if (stop)
                break;
        }
        if (items[1].revents & ZMQ_POLLIN)
            s_zap_answer(handler);
    }
    zsock_destroy(&handler);
}

static bool
s_has_secret(zcert_t *cert)
{
    const char *secret = zcert_secret_txt(cert);
    return secret && strspn(secret, "0") != strlen(secret);
}

// Adds role to the key in the certificate at path. Returns false with why set when the
// file is not a certificate.
static bool
s_add_key(zhashx_t *keys, const char *path, unsigned role, char *why, size_t why_size)
{
    zcert_t *cert = zcert_load(path);
    const char *text = cert ? zcert_public_txt(cert) : NULL;
    if (!text || strlen(text) != DPOOL_AUTH_KEY_TEXT) {
        snprintf(why, why_size, "%s is not a CURVE certificate (zcert public file)", path);
        zcert_destroy(&cert);
        return false;
    }
    uintptr_t roles = (uintptr_t)zhashx_lookup(keys, text) | role;
    zhashx_update(keys, text, (void *)roles);
    zcert_destroy(&cert);
    return true;
}

// Loads every certificate in dir/sub with role. A missing folder is empty. Returns
// false with why set when the folder cannot be read or holds something else.
static bool
s_load_folder(zhashx_t *keys, const char *dir, const char *sub, unsigned role, size_t *count,
              char *why, size_t why_size)
{
    char folder[4096], path[4096 + 256];
    snprintf(folder, sizeof folder, "%s/%s", dir, sub);
    *count = 0;
    DIR *listing = opendir(folder);
    if (!listing && errno == ENOENT)
        return true;
    if (!listing) {
        snprintf(why, why_size, "cannot read %s: %s", folder, strerror(errno));
        return false;
    }
    bool ok = true;
    struct dirent *entry;
    while (ok && (entry = readdir(listing))) {
        struct stat info;
        snprintf(path, sizeof path, "%s/%s", folder, entry->d_name);
        if (entry->d_name[0] == '.' || stat(path, &info) != 0 || !S_ISREG(info.st_mode))
            continue;
        // A secret key has no business here; its public half, if wanted, is beside it.
        size_t length = strlen(entry->d_name);
        if (length > 7 && streq(entry->d_name + length - 7, "_secret")) {
            DPOOL_LOG_WARN("%s is a secret key: ignored (authorise the public file)", path);
            continue;
        }
        ok = s_add_key(keys, path, role, why, why_size);
        *count += ok;
    }
    closedir(listing);
    return ok;
}

int
dpool_auth_reload(dpool_auth_t *self, char *why, size_t why_size)
{
    struct stat info;
    if (stat(self->dir, &info) != 0 || !S_ISDIR(info.st_mode)) {
        snprintf(why, why_size, "--authorized %s: not a folder", self->dir);
        return DPOOL_ERR_IO;
    }
    zhashx_t *keys = zhashx_new();
    size_t clients = 0, workers = 0;
    if (!keys ||
        !s_load_folder(keys, self->dir, "clients", DPOOL_AUTH_CLIENT, &clients, why, why_size) ||
        !s_load_folder(keys, self->dir, "workers", DPOOL_AUTH_WORKER, &workers, why, why_size)) {
        if (!keys)
            snprintf(why, why_size, "out of memory");
        zhashx_destroy(&keys);
        return DPOOL_ERR_IO;
    }
    zhashx_destroy(&self->keys);
    self->keys = keys;
    self->client_count = clients;
    self->worker_count = workers;
    DPOOL_LOG_INFO("CURVE: %zu client keys and %zu worker keys authorised (%s)", clients, workers,
                   self->dir);
    return DPOOL_OK;
}

static bool
s_start_zap(dpool_auth_t *self, char *why, size_t why_size)
{
    self->zap = zactor_new(s_zap_actor, NULL);
    char *status = self->zap ? zstr_recv(self->zap) : NULL;
    bool ok = status && !*status;
    if (!ok)
        snprintf(why, why_size, "%s", status ? status : "cannot start the ZAP handler");
    zstr_free(&status);
    return ok;
}

dpool_auth_t *
dpool_auth_new(const char *secret_path, const char *dir, char *why, size_t why_size)
{
    dpool_auth_t *self = calloc(1, sizeof *self);
    if (!self || !(self->dir = strdup(dir))) {
        snprintf(why, why_size, "out of memory");
        goto fail;
    }
    self->cert = zcert_load(secret_path);
    if (!self->cert || !s_has_secret(self->cert)) {
        snprintf(why, why_size, "--curve-secret %s: %s", secret_path,
                 self->cert ? "holds no secret key (give the _secret file)"
                            : "cannot read a CURVE certificate there");
        goto fail;
    }
    if (dpool_auth_reload(self, why, why_size) != DPOOL_OK)
        goto fail;
    if (self->client_count + self->worker_count == 0)
        DPOOL_LOG_WARN("CURVE: no key in %s/clients or %s/workers: every peer is refused", dir,
                       dir);
    if (!s_start_zap(self, why, why_size))
        goto fail;
    return self;
fail:
    dpool_auth_destroy(&self);
    return NULL;
}

void
dpool_auth_destroy(dpool_auth_t **self_p)
{
    dpool_auth_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    zactor_destroy(&self->zap);
    zhashx_destroy(&self->keys);
    zcert_destroy(&self->cert);
    free(self->dir);
    free(self);
}

void
dpool_auth_apply(const dpool_auth_t *self, zsock_t *sock)
{
    zcert_apply(self->cert, sock);
    zsock_set_curve_server(sock, 1);
    zsock_set_zap_domain(sock, "dpool");
}

const char *
dpool_auth_peer_key(zframe_t *frame)
{
    // Our ZAP handler set the connection's User-Id to the peer's public key.
    const char *user_id = zframe_meta(frame, "User-Id");
    return user_id && strlen(user_id) == DPOOL_AUTH_KEY_TEXT ? user_id : NULL;
}

unsigned
dpool_auth_roles(const dpool_auth_t *self, const char *key)
{
    return key ? (unsigned)(uintptr_t)zhashx_lookup(self->keys, key) : 0;
}

const char *
dpool_auth_refusal(unsigned roles, dpool_cmd_t command)
{
    if (!roles)
        return "not authorised: unknown key";
    switch (command) {
    case DPOOL_CMD_WORKER_HELLO:
    case DPOOL_CMD_CREDIT:
    case DPOOL_CMD_WORKER_RESULT:
    case DPOOL_CMD_WORKER_OUTPUT:
        return roles & DPOOL_AUTH_WORKER ? NULL
                                         : "not authorised: a client key cannot act as a worker";
    case DPOOL_CMD_POOL_OPEN:
    case DPOOL_CMD_SUBMIT:
    case DPOOL_CMD_TERMINATE:
    case DPOOL_CMD_POOL_RELEASE:
        return roles & DPOOL_AUTH_CLIENT ? NULL : "not authorised: a worker key cannot submit";
    default:
        // STATUS, HEARTBEAT, BYE: either role. Commands only the broker sends are
        // refused later as not being a peer's commands.
        return NULL;
    }
}

size_t
dpool_auth_clients(const dpool_auth_t *self)
{
    return self->client_count;
}

size_t
dpool_auth_workers(const dpool_auth_t *self)
{
    return self->worker_count;
}
