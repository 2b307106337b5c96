/*  The status map answered to STATUS (docs/PROTOCOL.md, "Status map"): hosts with busy
    and idle processes, pools with their counters, and the functions on offer. Built
    on demand, O(hosts + pools + functions): status is rare, the hot path pays nothing. */
#include "dpool_broker_internal.h"
#include "dpool_clock.h"

#include <msgpack.h>
#include <string.h>

static void
s_pack_key(msgpack_packer *pk, const char *key)
{
    size_t size = strlen(key);
    msgpack_pack_str(pk, size);
    msgpack_pack_str_body(pk, key, size);
}

static void
s_pack_string(msgpack_packer *pk, const char *key, const char *value)
{
    s_pack_key(pk, key);
    s_pack_key(pk, value ? value : "");
}

static void
s_pack_uint(msgpack_packer *pk, const char *key, uint64_t value)
{
    s_pack_key(pk, key);
    msgpack_pack_uint64(pk, value);
}

static void
s_pack_host(msgpack_packer *pk, const dpool_host_t *host)
{
    uint32_t idle = dpool_sched_host_credits(host->sched_host);
    msgpack_pack_map(pk, 6);
    s_pack_string(pk, "host", host->host);
    s_pack_uint(pk, "pid", host->pid);
    s_pack_uint(pk, "processes", host->processes);
    s_pack_uint(pk, "busy", host->processes - idle);
    s_pack_uint(pk, "idle", idle);
    s_pack_key(pk, "functions");
    msgpack_pack_array(pk, host->function_count);
    for (size_t i = 0; i < host->function_count; i++)
        s_pack_key(pk, host->functions[i]);
}

static void
s_pack_pool(msgpack_packer *pk, dpool_broker_t *self, const dpool_pool_t *pool)
{
    dpool_sched_pool_stats_t stats;
    dpool_sched_pool_stats(self->sched, pool->sched_pool, &stats);
    msgpack_pack_map(pk, 7);
    s_pack_string(pk, "name", pool->label);
    s_pack_uint(pk, "cap", stats.effective_cap);
    s_pack_key(pk, "shared");
    if (pool->name)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
    s_pack_uint(pk, "queued", stats.queued);
    s_pack_uint(pk, "running", stats.running);
    s_pack_uint(pk, "done", stats.done);
    s_pack_uint(pk, "failed", stats.failed);
}

// Every pool once: named ones from their table, private ones through their clients.
static void
s_pack_pools(msgpack_packer *pk, dpool_broker_t *self)
{
    zlist_t *pools = zlist_new();
    if (!pools) {
        msgpack_pack_array(pk, 0);
        return;
    }
    for (dpool_pool_t *pool = zhashx_first(self->named_pools); pool;
         pool = zhashx_next(self->named_pools))
        zlist_append(pools, pool);
    for (dpool_client_t *client = zhashx_first(self->clients); client;
         client = zhashx_next(self->clients))
        for (size_t i = 0; i < client->ref_count; i++)
            if (!client->refs[i].pool->name)
                zlist_append(pools, client->refs[i].pool);
    msgpack_pack_array(pk, zlist_size(pools));
    for (dpool_pool_t *pool = zlist_first(pools); pool; pool = zlist_next(pools))
        s_pack_pool(pk, self, pool);
    zlist_destroy(&pools);
}

// Function names offered by at least one host, each once.
static void
s_pack_functions(msgpack_packer *pk, dpool_broker_t *self)
{
    zhashx_t *seen = zhashx_new();
    for (dpool_host_t *host = zhashx_first(self->hosts); seen && host;
         host = zhashx_next(self->hosts))
        for (size_t i = 0; i < host->function_count; i++)
            zhashx_insert(seen, host->functions[i], host);
    msgpack_pack_array(pk, seen ? zhashx_size(seen) : 0);
    zlistx_t *names = seen ? zhashx_keys(seen) : NULL;
    if (names) {
        zlistx_set_comparator(names, (zlistx_comparator_fn *)strcmp);
        zlistx_sort(names);
        for (const char *name = zlistx_first(names); name; name = zlistx_next(names))
            s_pack_key(pk, name);
    }
    zlistx_destroy(&names);
    zhashx_destroy(&seen);
}

zframe_t *
dpool_status_build(dpool_broker_t *self)
{
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init(&buffer);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 9);
    s_pack_string(&pk, "version", DPOOL_VERSION);
    s_pack_key(&pk, "uptime_s");
    msgpack_pack_double(&pk, (double)(dpool_clock_ms() - self->started_ms) / 1000.0);
    s_pack_uint(&pk, "malformed", self->malformed);
    s_pack_uint(&pk, "oversized", self->oversized);
    s_pack_uint(&pk, "unauthorised", self->unauthorised);
    s_pack_uint(&pk, "processes", dpool_sched_total_processes(self->sched));
    s_pack_key(&pk, "hosts");
    msgpack_pack_array(&pk, zhashx_size(self->hosts));
    for (dpool_host_t *host = zhashx_first(self->hosts); host; host = zhashx_next(self->hosts))
        s_pack_host(&pk, host);
    s_pack_key(&pk, "pools");
    s_pack_pools(&pk, self);
    s_pack_key(&pk, "functions");
    s_pack_functions(&pk, self);
    zframe_t *frame = zframe_new(buffer.data, buffer.size);
    msgpack_sbuffer_destroy(&buffer);
    return frame;
}
