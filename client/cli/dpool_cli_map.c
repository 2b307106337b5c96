/*  `dpool map FUNC`: a cluster-wide `xargs -P`. Each line of stdin is one item, the
    single argument of one call (JSON when it parses as JSON, else a string, as `dpool
    apply` reads its arguments); each result is printed as one line of JSON, in input
    order (--unordered: completion order). Input is pulled lazily by the iterator's
    feeder thread, at most a window of chunks ahead of the output, so memory stays
    bounded however long the input is. The first failing item stops the run: the
    results before it are printed, then one line naming its line number. */
#include "dpool_cli.h"
#include "dpool_cli_map_input.h"
#include "dpool_cli_progress.h"
#include "dpool_json.h"

#include <dpool/dpool.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// How long the output waits for a result before it updates the progress line.
#define S_TICK_S 0.2

typedef struct {
    dpool_opts_t opts;
    size_t chunksize;
    bool unordered;
    bool progress;
    const char *function;
} s_map_args_t;

static void
s_usage(FILE *out)
{
    fprintf(out,
            "usage: dpool map [--broker EP] [--pool NAME] [--processes N] [--timeout S]\n"
            "                 [--chunksize N] [--unordered] [--retries N] [--no-progress] FUNC\n\n"
            "Calls FUNC once per line of standard input, the line being its one argument, on\n"
            "the cluster, and prints each result as one line of JSON, in input order. A line\n"
            "is taken as JSON when it is valid JSON, else as a string (so `hello` is \"hello\"\n"
            "and `[1, 2]` an array). Input is read as it is needed, so it may be endless.\n"
            "When an item fails, the results before it are printed and dpool stops with a\n"
            "message naming its line (from 1).\n\n"
            "  -b, --broker EP      broker endpoint (default $DPOOL_BROKER, else "
            "tcp://127.0.0.1:5555)\n"
            "  -p, --pool NAME      run in the named pool shared with other clients\n"
            "  -n, --processes N    the pool's cap (default 0: the cluster's process count)\n"
            "  -t, --timeout S      per-task time limit: a task running longer is killed and\n"
            "                       fails (a chunk is one task)\n"
            "  -c, --chunksize N    lines sent to a process at once (default 1)\n"
            "  -u, --unordered      print results as they complete, not in input order\n"
            "  -r, --retries N      run a task again up to N times when its worker dies\n"
            "      --no-progress    no progress line (shown on stderr when it is a terminal)\n"
            "  -h, --help           this text\n"
            "  -V, --version        print the version\n\n"
            "Exit status: 0 every item succeeded, 1 an item failed or the broker is\n"
            "unreachable, 2 usage.\n");
}

static int
s_parse_option(int option, s_map_args_t *args)
{
    int number = 0;
    switch (option) {
    case 'b':
        return args->opts.broker = optarg, -1;
    case 'p':
        return args->opts.name = optarg, -1;
    case 'n':
        return dpool_cli_parse_int("map", "--processes", optarg, 0, &args->opts.processes)
                   ? -1
                   : DPOOL_CLI_EXIT_USAGE;
    case 't':
        return dpool_cli_parse_double("map", "--timeout", optarg, 0.001, &args->opts.time_limit)
                   ? -1
                   : DPOOL_CLI_EXIT_USAGE;
    case 'c':
        if (!dpool_cli_parse_int("map", "--chunksize", optarg, 1, &number))
            return DPOOL_CLI_EXIT_USAGE;
        return args->chunksize = (size_t)number, -1;
    case 'r':
        if (!dpool_cli_parse_int("map", "--retries", optarg, 0, &number))
            return DPOOL_CLI_EXIT_USAGE;
        return args->opts.retries = (unsigned)number, -1;
    case 'u':
        return args->unordered = true, -1;
    case 'P':
        return args->progress = false, -1;
    case 'h':
        return s_usage(stdout), DPOOL_CLI_EXIT_OK;
    case 'V':
        return dpool_cli_version(), DPOOL_CLI_EXIT_OK;
    default:
        return DPOOL_CLI_EXIT_USAGE;
    }
}

// Returns -1 to go on, else the exit code to leave with.
static int
s_parse(int argc, char **argv, s_map_args_t *args)
{
    static const struct option options[] = {
        {"broker", required_argument, NULL, 'b'},
        {"pool", required_argument, NULL, 'p'},
        {"processes", required_argument, NULL, 'n'},
        {"timeout", required_argument, NULL, 't'},
        {"chunksize", required_argument, NULL, 'c'},
        {"retries", required_argument, NULL, 'r'},
        {"unordered", no_argument, NULL, 'u'},
        {"no-progress", no_argument, NULL, 'P'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int option;
    while ((option = getopt_long(argc, argv, "+:b:p:n:t:c:r:uhV", options, NULL)) != -1) {
        if (option == '?' || option == ':')
            return dpool_cli_bad_option("map", argv, option);
        int code = s_parse_option(option, args);
        if (code >= 0)
            return code;
    }
    if (optind >= argc) {
        dpool_cli_error("map", "no function given (try `dpool map --help`)");
        return DPOOL_CLI_EXIT_USAGE;
    }
    if (optind + 1 < argc) {
        dpool_cli_error("map", "one function, no arguments: items come from standard input");
        return DPOOL_CLI_EXIT_USAGE;
    }
    args->function = argv[optind];
    return -1;
}

// Prints one result as a line of JSON. False when it cannot.
static bool
s_print(const char *data, size_t size)
{
    json_t *json = NULL;
    if (dpool_json_from_msgpack(data, size, &json) != DPOOL_OK) {
        dpool_cli_error("map", "a result is not one msgpack value");
        return false;
    }
    char *text = json_dumps(json, JSON_ENCODE_ANY | JSON_COMPACT);
    json_decref(json);
    if (!text) {
        dpool_cli_error("map", "cannot print a result as JSON");
        return false;
    }
    bool printed = fputs(text, stdout) >= 0 && putchar('\n') != EOF;
    free(text);
    if (!printed)
        dpool_cli_error("map", "cannot write the results");
    return printed;
}

// The failure of item index: its line, and the cause without the library's "item K: ".
static void
s_report_item(dpool_cli_map_input_t *input, size_t index, const dpool_error_t *err)
{
    const char *why = dpool_cli_map_input_error(input, index);
    if (why) {
        dpool_cli_error("map", "line %zu: %s", index + 1, why);
        return;
    }
    const char *text = err->message;
    const char *colon = strncmp(text, "item ", 5) == 0 ? strstr(text, ": ") : NULL;
    text = colon ? colon + 2 : text;
    dpool_cli_error("map", "line %zu: %s%s%s", index + 1, dpool_strerror(err->code),
                    *text ? ": " : "", text);
}

// Prints results until the end or the first failure. Returns the exit code.
static int
s_drain(dpool_imap_t *iterator, dpool_cli_map_input_t *input, dpool_cli_progress_t *progress)
{
    while (true) {
        const char *data = NULL;
        size_t size = 0;
        dpool_error_t err = {0};
        int rc = dpool_imap_next(iterator, 0, &data, &size, &err);
        if (rc == DPOOL_ERR_TIMEOUT) {
            // nothing ready: let what is printed be seen, then wait a tick
            fflush(stdout);
            dpool_cli_progress_show(progress, false);
            rc = dpool_imap_next(iterator, S_TICK_S, &data, &size, &err);
        }
        if (rc == DPOOL_ERR_TIMEOUT)
            continue;
        if (rc == 1) {
            if (!s_print(data, size))
                return DPOOL_CLI_EXIT_FAILURE;
            dpool_cli_progress_done(progress);
            continue;
        }
        if (fflush(stdout) != 0) {
            dpool_cli_error("map", "cannot write the results");
            return DPOOL_CLI_EXIT_FAILURE;
        }
        dpool_cli_progress_show(progress, true);
        if (rc == 0)
            return DPOOL_CLI_EXIT_OK;
        s_report_item(input, dpool_imap_index(iterator), &err);
        return DPOOL_CLI_EXIT_FAILURE;
    }
}

static int
s_run(const s_map_args_t *args, dpool_cli_map_input_t *input)
{
    dpool_error_t err = {0};
    dpool_t *pool = dpool_new_opts(&args->opts, &err);
    if (!pool) {
        char text[512];
        dpool_cli_error("map", "%s", dpool_cli_explain(&err, text, sizeof text));
        return DPOOL_CLI_EXIT_FAILURE;
    }
    dpool_imap_opts_t opts = {.chunksize = args->chunksize,
                              .unordered = args->unordered,
                              .source = dpool_cli_map_input_next,
                              .source_arg = input};
    dpool_imap_t *iterator = dpool_imap_new(pool, args->function, NULL, &opts, &err);
    int code = DPOOL_CLI_EXIT_FAILURE;
    if (iterator) {
        dpool_cli_progress_t *progress =
            dpool_cli_progress_new(input, args->progress && isatty(STDERR_FILENO));
        code = s_drain(iterator, input, progress);
        dpool_cli_progress_destroy(&progress);
        // the feeder may be waiting for input: tell the source to give up first
        dpool_cli_map_input_stop(input);
        dpool_imap_destroy(&iterator);
    } else {
        char text[512];
        dpool_cli_error("map", "%s", dpool_cli_explain(&err, text, sizeof text));
    }
    // destroying the pool terminates what still runs (after a failure)
    dpool_destroy(&pool);
    return code;
}

int
dpool_cli_map(int argc, char **argv)
{
    s_map_args_t args = {.progress = true};
    int code = s_parse(argc, argv, &args);
    if (code >= 0)
        return code;
    dpool_cli_map_input_t *input = dpool_cli_map_input_new(STDIN_FILENO);
    if (!input) {
        dpool_cli_error("map", "out of memory");
        return DPOOL_CLI_EXIT_FAILURE;
    }
    code = s_run(&args, input);
    dpool_cli_map_input_destroy(&input);
    return code;
}
