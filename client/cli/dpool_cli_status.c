/*  `dpool status`: one STATUS on a DEALER of its own (it needs no pool, so it does not
    go through libdpool), the STATUS_REPLY map printed as JSON (--json) or as a table
    (docs/PROTOCOL.md, "Status map"). Missing fields print as 0 or "?": a newer or older
    broker may send more or less. */
#include "dpool_cli.h"
#include "dpool_curve.h"
#include "dpool_json.h"

#include <dpool_proto.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

static void
s_usage(FILE *out)
{
    fprintf(out, "usage: dpool status [--broker EP] [--json] [--timeout S]\n\n"
                 "Shows the cluster: worker hosts with their processes (busy / idle), pools\n"
                 "(cap, queued, running, done, failed) and the functions on offer.\n\n"
                 "  -b, --broker EP   broker endpoint (default $DPOOL_BROKER, else "
                 "tcp://127.0.0.1:5555)\n"
                 "  -j, --json        print the broker's status map as JSON\n"
                 "  -t, --timeout S   wait at most S seconds for the broker (default 5)\n"
                 "  -h, --help        this text\n"
                 "  -V, --version     print the version\n");
}

static json_int_t
s_int(const json_t *object, const char *key)
{
    const json_t *value = json_object_get(object, key);
    return json_is_integer(value) ? json_integer_value(value) : 0;
}

static const char *
s_str(const json_t *object, const char *key)
{
    const char *text = json_string_value(json_object_get(object, key));
    return text ? text : "?";
}

static void
s_print_names(const json_t *names)
{
    size_t i;
    json_t *name;
    json_array_foreach(names, i, name)
        printf("%s%s", i ? ", " : "", json_is_string(name) ? json_string_value(name) : "?");
    printf("\n");
}

static void
s_print_table(const json_t *status)
{
    const json_t *uptime = json_object_get(status, "uptime_s");
    printf("broker %s, up %.1f s, %lld malformed messages dropped\n\n", s_str(status, "version"),
           json_is_number(uptime) ? json_number_value(uptime) : 0.0,
           (long long)s_int(status, "malformed"));
    printf("HOSTS\n%-24s %8s %6s %6s %6s  %s\n", "host", "pid", "procs", "busy", "idle",
           "functions");
    size_t i;
    json_t *item;
    json_array_foreach(json_object_get(status, "hosts"), i, item) printf(
        "%-24s %8lld %6lld %6lld %6lld  %zu\n", s_str(item, "host"), (long long)s_int(item, "pid"),
        (long long)s_int(item, "processes"), (long long)s_int(item, "busy"),
        (long long)s_int(item, "idle"), json_array_size(json_object_get(item, "functions")));
    printf("\nPOOLS\n%-24s %6s %8s %8s %10s %8s\n", "name", "cap", "queued", "running", "done",
           "failed");
    json_array_foreach(json_object_get(status, "pools"), i, item)
        printf("%-24s %6lld %8lld %8lld %10lld %8lld\n", s_str(item, "name"),
               (long long)s_int(item, "cap"), (long long)s_int(item, "queued"),
               (long long)s_int(item, "running"), (long long)s_int(item, "done"),
               (long long)s_int(item, "failed"));
    printf("\nFUNCTIONS\n");
    s_print_names(json_object_get(status, "functions"));
}

// Sends STATUS and waits up to timeout seconds for STATUS_REPLY; on DPOOL_OK *status
// holds the map as JSON (owned by the caller).
static int
s_query(const char *endpoint, double timeout, json_t **status)
{
    zsock_t *dealer = zsock_new(ZMQ_DEALER);
    zpoller_t *poller = NULL;
    int rc = DPOOL_ERR_IO;
    if (!dealer)
        goto done;
    zsock_set_linger(dealer, 0);
    char curve_why[256];
    if (dpool_curve_apply(dealer, NULL, NULL, curve_why, sizeof curve_why) != DPOOL_OK) {
        dpool_cli_error("status", "%s", curve_why);
        rc = DPOOL_ERR_INVALID;
        goto done;
    }
    if (zsock_connect(dealer, "%s", endpoint) != 0) {
        dpool_cli_error("status", "bad broker endpoint \"%s\"", endpoint);
        goto done;
    }
    dpool_msg_t msg = {.command = DPOOL_CMD_STATUS};
    poller = zpoller_new(dealer, NULL);
    if (!poller || dpool_proto_send(dealer, &msg, NULL) != DPOOL_OK)
        goto done;
    rc = DPOOL_ERR_UNREACHABLE;
    if (zpoller_wait(poller, (int)(timeout * 1000)) != dealer) {
        dpool_cli_error("status", "%s: no answer from the broker at %s within %.1f s",
                        dpool_strerror(rc), endpoint, timeout);
        goto done;
    }
    zmsg_t *reply = zmsg_recv(dealer);
    const char *why = "no message";
    rc = reply ? dpool_proto_decode(&reply, false, NULL, &msg, &why) : DPOOL_ERR_IO;
    if (rc == DPOOL_OK && msg.command == DPOOL_CMD_ERROR)
        dpool_cli_error("status", "%s: %s", dpool_strerror(rc = msg.code),
                        msg.text ? msg.text : "");
    else if (rc != DPOOL_OK || msg.command != DPOOL_CMD_STATUS_REPLY ||
             dpool_json_from_msgpack(zframe_data(msg.payload), zframe_size(msg.payload), status) !=
                 DPOOL_OK) {
        dpool_cli_error("status", "malformed reply from the broker (%s)", why);
        rc = DPOOL_ERR_PROTO;
    }
    dpool_msg_reset(&msg);
done:
    zpoller_destroy(&poller);
    zsock_destroy(&dealer);
    return rc;
}

int
dpool_cli_status(int argc, char **argv)
{
    static const struct option options[] = {
        {"broker", required_argument, NULL, 'b'},  {"json", no_argument, NULL, 'j'},
        {"timeout", required_argument, NULL, 't'}, {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},       {NULL, 0, NULL, 0},
    };
    const char *endpoint = getenv(DPOOL_ENDPOINT_ENV);
    bool as_json = false;
    double timeout = 5.0;
    int option;
    while ((option = getopt_long(argc, argv, ":b:jt:hV", options, NULL)) != -1) {
        switch (option) {
        case 'b':
            endpoint = optarg;
            break;
        case 'j':
            as_json = true;
            break;
        case 't':
            if (!dpool_cli_parse_double("status", "--timeout", optarg, 0.001, &timeout))
                return DPOOL_CLI_EXIT_USAGE;
            break;
        case 'h':
            return s_usage(stdout), DPOOL_CLI_EXIT_OK;
        case 'V':
            return dpool_cli_version(), DPOOL_CLI_EXIT_OK;
        default:
            return dpool_cli_bad_option("status", argv, option);
        }
    }
    if (optind < argc) {
        dpool_cli_error("status", "unexpected argument \"%s\"", argv[optind]);
        return DPOOL_CLI_EXIT_USAGE;
    }
    json_t *status = NULL;
    if (s_query(endpoint && *endpoint ? endpoint : DPOOL_DEFAULT_ENDPOINT,
                timeout < 86400 ? timeout : 86400, &status) != DPOOL_OK)
        return DPOOL_CLI_EXIT_FAILURE;
    if (as_json) {
        json_dumpf(status, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        printf("\n");
    } else
        s_print_table(status);
    json_decref(status);
    return fflush(stdout) == 0 ? DPOOL_CLI_EXIT_OK : DPOOL_CLI_EXIT_FAILURE;
}
