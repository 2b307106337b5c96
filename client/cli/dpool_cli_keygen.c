/*  `dpool keygen`: makes a CURVE key pair with czmq's zcert and writes it as
    DIR/NAME.key (the public certificate: copy it to the broker's authorised clients/
    or workers/ folder, or to peers as --broker-key) and DIR/NAME.key_secret (the
    secret one, readable by its owner only: it stays on the host that uses it). The
    public key is printed on stdout, alone on its line, for scripts. Existing files are
    never overwritten: a lost secret key cannot be brought back. */
#include "dpool_cli.h"

#include <czmq.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void
s_usage(FILE *out)
{
    fprintf(out, "usage: dpool keygen [--out DIR] [--name NAME]\n\n"
                 "Makes a CURVE key pair: DIR/NAME.key (public certificate) and\n"
                 "DIR/NAME.key_secret (secret, mode 0600), and prints the public key.\n\n"
                 "  -o, --out DIR     where to write them (default: the current folder;\n"
                 "                    made when missing)\n"
                 "  -n, --name NAME   file name stem (default: dpool)\n"
                 "  -h, --help        this text\n"
                 "  -V, --version     print the version\n");
}

// True when name is a plain file name stem: no slash, not empty, not "." or "..".
static bool
s_valid_name(const char *name)
{
    return *name && !strchr(name, '/') && strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

// Writes a new key pair to base (public) and base_secret. Returns an exit code.
static int
s_write(const char *base, const char *name)
{
    char secret_path[4096 + 64];
    snprintf(secret_path, sizeof secret_path, "%s_secret", base);
    if (access(base, F_OK) == 0 || access(secret_path, F_OK) == 0) {
        dpool_cli_error("keygen", "%s or %s exists already: not overwritten", base, secret_path);
        return DPOOL_CLI_EXIT_FAILURE;
    }
    zcert_t *cert = zcert_new();
    if (!cert) {
        dpool_cli_error("keygen", "cannot make a key pair");
        return DPOOL_CLI_EXIT_FAILURE;
    }
    zcert_set_meta(cert, "name", "%s", name);
    zcert_set_meta(cert, "created-by", "dpool keygen %s", DPOOL_VERSION);
    // zcert writes the secret file with a private umask (0600).
    int rc = zcert_save(cert, base);
    if (rc != 0) {
        dpool_cli_error("keygen", "cannot write %s: %s", base, strerror(errno));
        unlink(base);
        unlink(secret_path);
        zcert_destroy(&cert);
        return DPOOL_CLI_EXIT_FAILURE;
    }
    printf("%s\n", zcert_public_txt(cert));
    zcert_destroy(&cert);
    return fflush(stdout) == 0 ? DPOOL_CLI_EXIT_OK : DPOOL_CLI_EXIT_FAILURE;
}

int
dpool_cli_keygen(int argc, char **argv)
{
    static const struct option options[] = {
        {"out", required_argument, NULL, 'o'},
        {"name", required_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    const char *dir = ".";
    const char *name = "dpool";
    int option;
    while ((option = getopt_long(argc, argv, ":o:n:hV", options, NULL)) != -1) {
        switch (option) {
        case 'o':
            dir = optarg;
            break;
        case 'n':
            name = optarg;
            break;
        case 'h':
            return s_usage(stdout), DPOOL_CLI_EXIT_OK;
        case 'V':
            return dpool_cli_version(), DPOOL_CLI_EXIT_OK;
        default:
            return dpool_cli_bad_option("keygen", argv, option);
        }
    }
    if (optind < argc) {
        dpool_cli_error("keygen", "unexpected argument \"%s\"", argv[optind]);
        return DPOOL_CLI_EXIT_USAGE;
    }
    if (!s_valid_name(name)) {
        dpool_cli_error("keygen", "--name wants a file name without '/', not \"%s\"", name);
        return DPOOL_CLI_EXIT_USAGE;
    }
    if (!*dir || strlen(dir) + strlen(name) > 4000) {
        dpool_cli_error("keygen", "--out wants a folder path of at most 4000 bytes");
        return DPOOL_CLI_EXIT_USAGE;
    }
    struct stat info;
    if (stat(dir, &info) != 0 && zsys_dir_create("%s", dir) != 0) {
        dpool_cli_error("keygen", "cannot make the folder %s: %s", dir, strerror(errno));
        return DPOOL_CLI_EXIT_FAILURE;
    }
    char base[4096];
    snprintf(base, sizeof base, "%s/%s.key", dir, name);
    return s_write(base, name);
}
