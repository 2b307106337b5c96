/*  dpool-broker: parses flags, builds the broker, runs it until SIGINT/SIGTERM. */
#include "dpool_broker.h"
#include "dpool_log.h"

#include <czmq.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// The signal flags STYLE.md allows, set by the handlers below: stop, and (SIGHUP)
// read the authorised CURVE keys again.
static volatile sig_atomic_t s_stop = 0;
static volatile sig_atomic_t s_reload = 0;

static void
s_on_signal(int signum)
{
    (void)signum;
    s_stop = 1;
}

static void
s_on_hangup(int signum)
{
    (void)signum;
    s_reload = 1;
}

static void
s_usage(FILE *out)
{
    fprintf(out,
            "usage: dpool-broker [OPTION]...\n"
            "Queues tasks of dpool pools and dispatches them to worker daemons.\n\n"
            "  -b, --bind EP            endpoint to bind (default %s);\n"
            "                           tcp://HOST:* picks a free port\n"
            "      --insecure           allow binding a non-loopback address without CURVE\n"
            "      --curve-secret FILE  encrypt and authenticate with CURVE: FILE is the\n"
            "                           broker's secret certificate (dpool keygen's .key_secret)\n"
            "      --authorized DIR     with --curve-secret: public certificates of the keys\n"
            "                           let in, DIR/clients/ (submit) and DIR/workers/ (run\n"
            "                           tasks); SIGHUP reads them again\n"
            "  -g, --grace SECONDS      how long a task waits for a worker offering its\n"
            "                           function before it fails (default 10)\n"
            "      --endpoint-file FILE write the bound endpoint to FILE once listening\n"
            "      --journal DIR        keep accepted tasks in DIR/journal, so a restarted\n"
            "                           broker runs every task it had accepted\n"
            "      --max-queued N       accept at most N unanswered tasks; past it a submission\n"
            "                           fails with \"queue full\" (default 10000000)\n"
            "      --max-message BYTES  drop any message larger than BYTES (default 64 MiB)\n"
            "  -l, --log-level LEVEL    error, warn, info (default) or debug\n"
            "  -h, --help               show this help and exit\n"
            "  -V, --version            show the version and exit\n",
            "tcp://127.0.0.1:5555");
}

static int
s_fail(const char *fmt, const char *arg)
{
    fprintf(stderr, "dpool-broker: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    return 2;
}

// Parses a whole number in [low, high]. Returns false for anything else.
static bool
s_parse_count(const char *text, int64_t low, int64_t high, int64_t *value)
{
    char *end = NULL;
    errno = 0;
    long long parsed = strtoll(text, &end, 10);
    if (end == text || *end || errno || parsed < low || parsed > high)
        return false;
    *value = parsed;
    return true;
}

// Parses flags into config. Returns -1 to go on, or the exit code to stop with.
static int
s_parse(int argc, char **argv, dpool_broker_config_t *config, dpool_log_level_t *level)
{
    enum {
        OPT_INSECURE = 256,
        OPT_ENDPOINT_FILE,
        OPT_MAX_QUEUED,
        OPT_MAX_MESSAGE,
        OPT_JOURNAL,
        OPT_CURVE_SECRET,
        OPT_AUTHORIZED
    };
    static const struct option options[] = {
        {"bind", required_argument, NULL, 'b'},
        {"insecure", no_argument, NULL, OPT_INSECURE},
        {"grace", required_argument, NULL, 'g'},
        {"endpoint-file", required_argument, NULL, OPT_ENDPOINT_FILE},
        {"max-queued", required_argument, NULL, OPT_MAX_QUEUED},
        {"journal", required_argument, NULL, OPT_JOURNAL},
        {"max-message", required_argument, NULL, OPT_MAX_MESSAGE},
        {"curve-secret", required_argument, NULL, OPT_CURVE_SECRET},
        {"authorized", required_argument, NULL, OPT_AUTHORIZED},
        {"log-level", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "b:g:l:hV", options, NULL)) != -1) {
        char *end = NULL;
        double seconds;
        switch (opt) {
        case 'b':
            config->bind = optarg;
            break;
        case OPT_INSECURE:
            config->insecure = true;
            break;
        case OPT_ENDPOINT_FILE:
            config->endpoint_file = optarg;
            break;
        case 'g':
            seconds = strtod(optarg, &end);
            if (end == optarg || *end || !(seconds >= 0 && seconds <= 86400))
                return s_fail("--grace needs seconds from 0 to 86400, not '%s'", optarg);
            config->grace_ms = (int64_t)(seconds * 1000);
            break;
        case OPT_JOURNAL:
            config->journal_dir = optarg;
            break;
        case OPT_CURVE_SECRET:
            config->curve_secret = optarg;
            break;
        case OPT_AUTHORIZED:
            config->authorized = optarg;
            break;
        case OPT_MAX_QUEUED:
            if (!s_parse_count(optarg, 1, 1000000000, &config->max_queued))
                return s_fail("--max-queued needs a whole number from 1 to 1000000000, not '%s'",
                              optarg);
            break;
        case OPT_MAX_MESSAGE:
            if (!s_parse_count(optarg, 1024, INT64_MAX, &config->max_message))
                return s_fail("--max-message needs a byte count of at least 1024, not '%s'",
                              optarg);
            break;
        case 'l':
            if (!dpool_log_parse_level(optarg, level))
                return s_fail("--log-level needs error, warn, info or debug, not '%s'", optarg);
            break;
        case 'h':
            s_usage(stdout);
            return 0;
        case 'V':
            printf("dpool-broker %s\n", DPOOL_VERSION);
            return 0;
        default:
            return s_fail("%s", "unknown option (see --help)");
        }
    }
    if (optind < argc)
        return s_fail("unexpected argument '%s' (see --help)", argv[optind]);
    if (!config->curve_secret != !config->authorized)
        return s_fail("%s", "--curve-secret and --authorized go together (see --help)");
    return -1;
}

int
main(int argc, char **argv)
{
    dpool_broker_config_t config;
    dpool_broker_config_defaults(&config);
    dpool_log_level_t level = DPOOL_LOG_LEVEL_INFO;
    opterr = 0;
    int rc = s_parse(argc, argv, &config, &level);
    if (rc >= 0)
        return rc;
    dpool_log_setup("broker", level);
    // czmq's own handler would swallow SIGINT into zsys_interrupted; ours sets s_stop.
    zsys_handler_set(NULL);
    struct sigaction action = {.sa_handler = s_on_signal};
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGTERM, &action, NULL);
    struct sigaction hangup = {.sa_handler = s_on_hangup};
    sigaction(SIGHUP, &hangup, NULL);
    config.reload_keys = &s_reload;
    char why[512];
    dpool_broker_t *broker = dpool_broker_new(&config, why, sizeof why);
    if (!broker) {
        fprintf(stderr, "dpool-broker: %s\n", why);
        return 1;
    }
    rc = dpool_broker_run(broker, &s_stop) == 0 ? 0 : 1;
    dpool_broker_destroy(&broker);
    return rc;
}
