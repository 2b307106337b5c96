/*  `dpool`: the entry point picks a subcommand and hands it the rest of the command
    line; shared helpers for messages and number options live here too, so every
    subcommand words its errors the same way. */
#include "dpool_cli.h"

#include <czmq.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name;
    dpool_cli_command_fn *run;
    const char *summary;
} s_command_t;

static const s_command_t s_commands[] = {
    {"apply", dpool_cli_apply, "run one task and print its result as JSON"},
    {"map", dpool_cli_map, "run a task per line of stdin, print the results as JSON lines"},
    {"status", dpool_cli_status, "show hosts, processes, pools and functions"},
    {"keygen", dpool_cli_keygen, "make a CURVE key pair (NAME.key, NAME.key_secret)"},
};

const char *
dpool_cli_explain(const dpool_error_t *err, char *buffer, size_t size)
{
    const char *code = dpool_strerror(err->code);
    if (!err->message[0])
        snprintf(buffer, size, "%s", code);
    else if (strncmp(err->message, code, strlen(code)) == 0)
        snprintf(buffer, size, "%s", err->message);
    else
        snprintf(buffer, size, "%s: %s", code, err->message);
    return buffer;
}

void
dpool_cli_error(const char *command, const char *fmt, ...)
{
    if (command)
        fprintf(stderr, "dpool: %s: ", command);
    else
        fputs("dpool: ", stderr);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int
dpool_cli_bad_option(const char *command, char **argv, int option)
{
    const char *text = optind > 0 ? argv[optind - 1] : "?";
    const char *what = option == ':' ? "option needs a value" : "unknown option";
    if (command)
        dpool_cli_error(command, "%s: %s (try `dpool %s --help`)", what, text, command);
    else
        dpool_cli_error(NULL, "%s: %s (try `dpool --help`)", what, text);
    return DPOOL_CLI_EXIT_USAGE;
}

void
dpool_cli_version(void)
{
    printf("dpool %s\n", DPOOL_VERSION);
}

bool
dpool_cli_parse_double(const char *command, const char *option, const char *text, double min,
                       double *out)
{
    char *end = NULL;
    errno = 0;
    double value = strtod(text, &end);
    if (errno || end == text || *end || !(value >= min)) {
        dpool_cli_error(command, "%s wants a number of at least %g, not \"%s\"", option, min, text);
        return false;
    }
    *out = value;
    return true;
}

bool
dpool_cli_parse_int(const char *command, const char *option, const char *text, int min, int *out)
{
    char *end = NULL;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno || end == text || *end || value < min || value > INT_MAX) {
        dpool_cli_error(command, "%s wants a whole number of at least %d, not \"%s\"", option, min,
                        text);
        return false;
    }
    *out = (int)value;
    return true;
}

static void
s_usage(FILE *out)
{
    fprintf(out, "usage: dpool [--help] [--version] COMMAND [OPTIONS] [ARGS]\n\n"
                 "Client of a dpool cluster (broker: --broker, else $DPOOL_BROKER, else "
                 "tcp://127.0.0.1:5555).\n\ncommands:\n");
    for (size_t i = 0; i < sizeof s_commands / sizeof s_commands[0]; i++)
        fprintf(out, "  %-8s %s\n", s_commands[i].name, s_commands[i].summary);
    fprintf(out, "\n`dpool COMMAND --help` describes a command.\n");
}

int
main(int argc, char **argv)
{
    // CZMQ would otherwise swallow Ctrl-C while a command waits on the broker.
    zsys_handler_set(NULL);
    static const struct option options[] = {
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int option;
    // '+': stop at the command name, whose options are its own
    while ((option = getopt_long(argc, argv, "+:hV", options, NULL)) != -1) {
        if (option == 'h')
            return s_usage(stdout), DPOOL_CLI_EXIT_OK;
        if (option == 'V')
            return dpool_cli_version(), DPOOL_CLI_EXIT_OK;
        return dpool_cli_bad_option(NULL, argv, option);
    }
    if (optind >= argc) {
        dpool_cli_error(NULL, "no command given (try `dpool --help`)");
        return DPOOL_CLI_EXIT_USAGE;
    }
    const char *name = argv[optind];
    for (size_t i = 0; i < sizeof s_commands / sizeof s_commands[0]; i++) {
        if (strcmp(name, s_commands[i].name) != 0)
            continue;
        int sub_argc = argc - optind;
        char **sub_argv = argv + optind;
        optind = 0; // glibc: 0 re-initialises getopt for the subcommand's own parse
        return s_commands[i].run(sub_argc, sub_argv);
    }
    dpool_cli_error(NULL, "unknown command \"%s\" (try `dpool --help`)", name);
    return DPOOL_CLI_EXIT_USAGE;
}
