/*  `dpool apply FUNC [ARG...]`: one task through libdpool, its output forwarded as it
    comes, its result printed as JSON. Each ARG is JSON when it parses as JSON, else a
    string (dpool_json_parse_arg), so `dpool apply add 1 2` and `dpool apply echo hello`
    both do what they look like. */
#include "dpool_cli.h"
#include "dpool_json.h"

#include <dpool/dpool.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    dpool_opts_t opts;
    double timeout; // seconds to wait for the result; negative = no limit
    const char *function;
    int arg_count;
    char **args;
} s_apply_args_t;

static void
s_usage(FILE *out)
{
    fprintf(out,
            "usage: dpool apply [--broker EP] [--pool NAME] [--processes N] [--timeout S]\n"
            "                   FUNC [ARG...]\n\n"
            "Runs FUNC(ARG...) on the cluster, forwards what it prints, and prints its result\n"
            "as JSON. Each ARG is taken as JSON when it is valid JSON, else as a string.\n\n"
            "  -b, --broker EP      broker endpoint (default $DPOOL_BROKER, else "
            "tcp://127.0.0.1:5555)\n"
            "  -p, --pool NAME      run in the named pool shared with other clients\n"
            "  -n, --processes N    the pool's cap (default 0: the cluster's process count)\n"
            "  -t, --timeout S      give up after S seconds (default: wait for the result)\n"
            "  -h, --help           this text\n"
            "  -V, --version        print the version\n\n"
            "Exit status: 0 success, 1 the task failed or the broker is unreachable, 2 usage.\n");
}

// Returns -1 to go on, else the exit code to leave with.
static int
s_parse(int argc, char **argv, s_apply_args_t *args)
{
    static const struct option options[] = {
        {"broker", required_argument, NULL, 'b'},
        {"pool", required_argument, NULL, 'p'},
        {"processes", required_argument, NULL, 'n'},
        {"timeout", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int option;
    // '+': options end at FUNC, so an argument such as -1 after it stays an argument
    while ((option = getopt_long(argc, argv, "+:b:p:n:t:hV", options, NULL)) != -1) {
        switch (option) {
        case 'b':
            args->opts.broker = optarg;
            break;
        case 'p':
            args->opts.name = optarg;
            break;
        case 'n':
            if (!dpool_cli_parse_int("apply", "--processes", optarg, 0, &args->opts.processes))
                return DPOOL_CLI_EXIT_USAGE;
            break;
        case 't':
            if (!dpool_cli_parse_double("apply", "--timeout", optarg, 0, &args->timeout))
                return DPOOL_CLI_EXIT_USAGE;
            break;
        case 'h':
            return s_usage(stdout), DPOOL_CLI_EXIT_OK;
        case 'V':
            return dpool_cli_version(), DPOOL_CLI_EXIT_OK;
        default:
            return dpool_cli_bad_option("apply", argv, option);
        }
    }
    if (optind >= argc) {
        dpool_cli_error("apply", "no function given (try `dpool apply --help`)");
        return DPOOL_CLI_EXIT_USAGE;
    }
    args->function = argv[optind];
    args->arg_count = argc - optind - 1;
    args->args = argv + optind + 1;
    return -1;
}

static void
s_report(const dpool_error_t *err)
{
    char text[512];
    dpool_cli_error("apply", "%s", dpool_cli_explain(err, text, sizeof text));
}

static int
s_print_result(const dpool_buf_t *value)
{
    json_t *json = NULL;
    if (dpool_json_from_msgpack(value->data, value->size, &json) != DPOOL_OK) {
        dpool_cli_error("apply", "the result is not one msgpack value");
        return DPOOL_CLI_EXIT_FAILURE;
    }
    char *text = json_dumps(json, JSON_ENCODE_ANY | JSON_COMPACT);
    json_decref(json);
    if (!text) {
        dpool_cli_error("apply", "cannot print the result as JSON");
        return DPOOL_CLI_EXIT_FAILURE;
    }
    int printed = printf("%s\n", text);
    free(text);
    return printed < 0 || fflush(stdout) != 0 ? DPOOL_CLI_EXIT_FAILURE : DPOOL_CLI_EXIT_OK;
}

static int
s_run(const s_apply_args_t *args, const dpool_buf_t *packed)
{
    dpool_error_t err = {0};
    dpool_t *pool = dpool_new_opts(&args->opts, &err);
    if (!pool)
        return s_report(&err), DPOOL_CLI_EXIT_FAILURE;
    dpool_buf_t value = {0};
    dpool_result_t *result = dpool_apply_async(pool, args->function, packed, &err);
    int rc = result ? dpool_result_get(result, args->timeout, &value, &err) : err.code;
    dpool_result_destroy(&result);
    // destroying the pool terminates the task if it is still running (a timeout)
    dpool_destroy(&pool);
    if (rc != DPOOL_OK)
        return s_report(&err), DPOOL_CLI_EXIT_FAILURE;
    int code = s_print_result(&value);
    dpool_buf_free(&value);
    return code;
}

int
dpool_cli_apply(int argc, char **argv)
{
    s_apply_args_t args = {.timeout = -1};
    int code = s_parse(argc, argv, &args);
    if (code >= 0)
        return code;
    dpool_buf_t packed = {0};
    int rc = dpool_json_pack_args(args.arg_count, args.args, &packed);
    if (rc != DPOOL_OK) {
        dpool_cli_error("apply", "cannot pack the arguments: %s%s", dpool_strerror(rc),
                        rc == DPOOL_ERR_INVALID ? " (an argument is not UTF-8)" : "");
        return rc == DPOOL_ERR_INVALID ? DPOOL_CLI_EXIT_USAGE : DPOOL_CLI_EXIT_FAILURE;
    }
    code = s_run(&args, &packed);
    dpool_buf_free(&packed);
    return code;
}
