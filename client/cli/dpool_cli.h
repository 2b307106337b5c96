/*  dpool_cli: the `dpool` command-line tool. main() in dpool_cli.c picks the
    subcommand from a table; each subcommand lives in its own file and parses its own
    options with getopt_long. A new subcommand (`map`) is one row and one file. */
#ifndef DPOOL_CLI_H
#define DPOOL_CLI_H

#include <dpool/dpool.h>
#include <stdbool.h>
#include <stddef.h>

// Exit codes of every subcommand.
#define DPOOL_CLI_EXIT_OK 0
#define DPOOL_CLI_EXIT_FAILURE 1 // the task failed, the broker is unreachable, I/O failed
#define DPOOL_CLI_EXIT_USAGE 2   // bad command line

// A subcommand's entry point: argv[0] is the subcommand's name. Returns an exit code.
typedef int(dpool_cli_command_fn)(int argc, char **argv);

int dpool_cli_apply(int argc, char **argv);
int dpool_cli_map(int argc, char **argv);
int dpool_cli_status(int argc, char **argv);
int dpool_cli_keygen(int argc, char **argv);

// Prints "dpool: <command>: <text>" and a newline on stderr (command NULL: just
// "dpool: <text>").
// Writes "<code text>: <message>" for err into buffer, or the message alone when it
// already starts with the code's text (the broker's "not authorised: ..."), or the code
// text alone when there is no message. Returns buffer.
const char *dpool_cli_explain(const dpool_error_t *err, char *buffer, size_t size);

void dpool_cli_error(const char *command, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

// After getopt_long returned '?' or ':' (option strings start with ":" so getopt stays
// quiet): prints one line naming the offending option and where help is. Returns
// DPOOL_CLI_EXIT_USAGE.
int dpool_cli_bad_option(const char *command, char **argv, int option);

// Prints "dpool 0.1.0" on stdout.
void dpool_cli_version(void);

// Parses a whole-string number; false (and an error line naming option) when text is
// not one, or is out of [min, max].
bool dpool_cli_parse_double(const char *command, const char *option, const char *text, double min,
                            double *out);
bool dpool_cli_parse_int(const char *command, const char *option, const char *text, int min,
                         int *out);

#endif
