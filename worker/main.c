/*  dpool-worker: parses the command line, builds the daemon, runs it until SIGTERM
    or SIGINT, destroys it. Everything else lives in dpool_worker. */
#include "dpool_log.h"
#include "dpool_proto.h"
#include "dpool_worker.h"

#include <dpool/errors.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// The one piece of mutable state STYLE.md allows here: set by the signal handler.
static volatile sig_atomic_t s_stop = 0;

// Long options without a short letter.
enum { S_OPT_CURVE_SECRET = 256, S_OPT_BROKER_KEY };
// Environment fallbacks for the CURVE key files, as DPOOL_BROKER is for --broker.
#define S_CURVE_SECRET_ENV "DPOOL_CURVE_SECRET"
#define S_BROKER_KEY_ENV "DPOOL_BROKER_KEY"

static void
s_on_signal(int signal_number)
{
    (void)signal_number;
    s_stop = 1;
}

static void
s_usage(FILE *out)
{
    fprintf(out,
            "usage: dpool-worker [--broker EP] [--processes N] [--module FILE.so]...\n"
            "                    [--maxtasksperchild N] [--initializer NAME] [--log-level L]\n"
            "                    [--curve-secret FILE --broker-key FILE] [--help] [--version]\n"
            "\n"
            "  -b, --broker EP           broker endpoint (default $%s or %s)\n"
            "  -p, --processes N         worker processes, 1..%d (default: CPU count)\n"
            "  -m, --module FILE.so      load a task module (repeatable)\n"
            "  -t, --maxtasksperchild N  replace a process after N tasks; a chunk counts as\n"
            "                            one task (default: never)\n"
            "  -i, --initializer NAME    run function NAME with no arguments in each new\n"
            "                            process before its first task (built-in or from a\n"
            "                            module); the daemon stops if it fails %d times in a row\n"
            "      --curve-secret FILE   encrypt with CURVE: this daemon's secret certificate\n"
            "                            (dpool keygen's .key_secret; default $%s)\n"
            "      --broker-key FILE     with --curve-secret: the broker's public certificate\n"
            "                            (default $%s)\n"
            "  -l, --log-level L         error, warn, info or debug (default info)\n"
            "  -h, --help                show this help\n"
            "  -V, --version             show the version\n",
            DPOOL_ENDPOINT_ENV, DPOOL_DEFAULT_ENDPOINT, DPOOL_WORKER_PROCESSES_MAX,
            DPOOL_WORKER_INIT_FAILURES_MAX, S_CURVE_SECRET_ENV, S_BROKER_KEY_ENV);
}

// Parses a whole number in [min, max]; false for anything else.
static bool
s_parse_count(const char *text, unsigned long min, unsigned long max, unsigned *value)
{
    char *end = NULL;
    errno = 0;
    if (!text || !*text || *text == '-' || *text == '+')
        return false;
    unsigned long parsed = strtoul(text, &end, 10);
    if (errno || *end || parsed < min || parsed > max)
        return false;
    *value = (unsigned)parsed;
    return true;
}

static int
s_fail(const char *message)
{
    fprintf(stderr, "dpool-worker: %s\n", message);
    return EXIT_FAILURE;
}

static unsigned
s_cpu_count(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1)
        return 1;
    return cpus > DPOOL_WORKER_PROCESSES_MAX ? DPOOL_WORKER_PROCESSES_MAX : (unsigned)cpus;
}

// Applies one option to config, level and modules. Returns -1 to go on, or the
// exit status when the program ends here (--help, --version, a bad value).
static int
s_apply(int option, char *const argv[], dpool_worker_config_t *config, dpool_log_level_t *level,
        const char **modules)
{
    switch (option) {
    case 'b':
        config->endpoint = optarg;
        return -1;
    case 'p':
        if (!s_parse_count(optarg, 1, DPOOL_WORKER_PROCESSES_MAX, &config->processes))
            return s_fail("--processes needs a whole number from 1 to 1024");
        return -1;
    case 'm':
        modules[config->module_count++] = optarg;
        return -1;
    case 't':
        if (!s_parse_count(optarg, 0, 1000000000, &config->max_tasks_per_child))
            return s_fail("--maxtasksperchild needs a whole number (0 = never)");
        return -1;
    case 'i':
        if (!*optarg)
            return s_fail("--initializer needs a function name");
        config->initializer = optarg;
        return -1;
    case S_OPT_CURVE_SECRET:
        config->curve_secret = optarg;
        return -1;
    case S_OPT_BROKER_KEY:
        config->broker_key = optarg;
        return -1;
    case 'l':
        if (!dpool_log_parse_level(optarg, level))
            return s_fail("--log-level needs error, warn, info or debug");
        return -1;
    case 'h':
        s_usage(stdout);
        return EXIT_SUCCESS;
    case 'V':
        printf("dpool-worker %s\n", DPOOL_VERSION);
        return EXIT_SUCCESS;
    case ':':
        fprintf(stderr, "dpool-worker: %s needs a value (try --help)\n", argv[optind - 1]);
        return EXIT_FAILURE;
    default:
        fprintf(stderr, "dpool-worker: unknown option %s (try --help)\n", argv[optind - 1]);
        return EXIT_FAILURE;
    }
}

// Parses the command line into config and level. Returns -1 to run, or the exit
// status when the program ends here.
static int
s_parse(int argc, char *argv[], dpool_worker_config_t *config, dpool_log_level_t *level,
        const char **modules)
{
    static const struct option options[] = {
        {"broker", required_argument, NULL, 'b'},
        {"processes", required_argument, NULL, 'p'},
        {"module", required_argument, NULL, 'm'},
        {"maxtasksperchild", required_argument, NULL, 't'},
        {"initializer", required_argument, NULL, 'i'},
        {"curve-secret", required_argument, NULL, S_OPT_CURVE_SECRET},
        {"broker-key", required_argument, NULL, S_OPT_BROKER_KEY},
        {"log-level", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    opterr = 0;
    int option;
    while ((option = getopt_long(argc, argv, ":b:p:m:t:i:l:hV", options, NULL)) != -1) {
        int status = s_apply(option, argv, config, level, modules);
        if (status >= 0)
            return status;
    }
    if (optind < argc) {
        fprintf(stderr, "dpool-worker: unexpected argument %s (try --help)\n", argv[optind]);
        return EXIT_FAILURE;
    }
    if (!strstr(config->endpoint, "://"))
        return s_fail("--broker needs an endpoint like tcp://host:5555");
    if (!config->curve_secret != !config->broker_key)
        return s_fail("--curve-secret and --broker-key go together (or $" S_CURVE_SECRET_ENV
                      " and $" S_BROKER_KEY_ENV ")");
    return -1;
}

// Builds the daemon, runs it until a signal (or until it gives up), destroys it.
static int
s_run(const dpool_worker_config_t *config)
{
    char error[512] = "";
    dpool_worker_t *worker = dpool_worker_new(config, error, sizeof error);
    if (!worker)
        return s_fail(error);
    // czmq would install its own SIGINT/SIGTERM handlers at its first socket; ours
    // must win, so the loop sees the stop and says BYE.
    zsys_handler_set(NULL);
    struct sigaction action = {.sa_handler = s_on_signal};
    sigemptyset(&action.sa_mask);
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGINT, &action, NULL);
    signal(SIGPIPE, SIG_IGN);
    int rc = dpool_worker_run(worker, &s_stop);
    if (rc != DPOOL_OK) {
        const char *why = dpool_worker_error(worker);
        s_fail(why ? why : dpool_strerror(rc));
    }
    dpool_worker_destroy(&worker);
    return rc == DPOOL_OK ? EXIT_SUCCESS : EXIT_FAILURE;
}

int
main(int argc, char *argv[])
{
    const char *env = getenv(DPOOL_ENDPOINT_ENV);
    const char *secret = getenv(S_CURVE_SECRET_ENV);
    const char *broker_key = getenv(S_BROKER_KEY_ENV);
    dpool_worker_config_t config = {
        .endpoint = env && *env ? env : DPOOL_DEFAULT_ENDPOINT,
        .processes = s_cpu_count(),
        .curve_secret = secret && *secret ? secret : NULL,
        .broker_key = broker_key && *broker_key ? broker_key : NULL,
    };
    dpool_log_level_t level = DPOOL_LOG_LEVEL_INFO;
    // At most argc modules: an array sized once, so parsing needs no cleanup path.
    const char **modules = calloc((size_t)argc, sizeof *modules);
    if (!modules)
        return s_fail("out of memory");
    config.modules = modules;
    int status = s_parse(argc, argv, &config, &level, modules);
    if (status < 0) {
        dpool_log_setup("worker", level);
        status = s_run(&config);
    }
    free(modules);
    return status;
}
