/*  Integration: the command-line tools against a real broker and worker: `dpool apply`
    (JSON in, JSON out), `dpool status`, and the conventions every tool keeps: --help,
    --version, exit 0 only on success, a one-line error otherwise. */
#include "dpool_harness.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static dpool_harness_t *harness;

static void
setup(void)
{
    harness = dpool_harness_new();
    cr_assert_not_null(harness);
    const char *broker_args[] = {"--grace", "1", NULL};
    cr_assert_not_null(dpool_harness_start_broker(harness, broker_args));
    cr_assert_gt(dpool_harness_start_worker(harness, 2, NULL), 0);
    cr_assert(dpool_harness_wait_processes(harness, 2, 20), "the worker did not register");
}

static void
teardown(void)
{
    dpool_harness_destroy(&harness);
}

TestSuite(cli, .init = setup, .fini = teardown, .timeout = 60);

typedef struct {
    int status;
    char *out;
    char *err;
} run_t;

static run_t
run(const char *const *argv)
{
    run_t r = {0};
    r.status = dpool_harness_run(harness, argv, NULL, 30, &r.out, &r.err);
    return r;
}

static void
run_free(run_t *r)
{
    free(r->out);
    free(r->err);
}

static bool
one_line(const char *text)
{
    size_t size = strlen(text);
    return size > 0 && strchr(text, '\n') == text + size - 1;
}

// Parses out as one JSON value, failing the test otherwise.
static json_t *
json_of(const char *out)
{
    json_error_t error;
    json_t *value = json_loads(out, JSON_DECODE_ANY, &error);
    cr_assert_not_null(value, "not JSON: %s (%s)", out, error.text);
    return value;
}

Test(cli, apply_adds_json_numbers)
{
    const char *argv[] = {"dpool", "apply", "add", "2", "3", NULL};
    run_t r = run(argv);
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    json_t *value = json_of(r.out);
    cr_assert(json_is_integer(value) && json_integer_value(value) == 5, "got %s", r.out);
    json_decref(value);
    run_free(&r);
}

Test(cli, apply_echoes_json_and_takes_plain_words_as_strings)
{
    const char *object[] = {"dpool", "apply", "echo", "{\"a\": [1, 2.5, null, true]}", NULL};
    run_t r = run(object);
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    json_t *value = json_of(r.out);
    json_t *expected = json_loads("{\"a\": [1, 2.5, null, true]}", 0, NULL);
    cr_assert(json_equal(value, expected), "got %s", r.out);
    json_decref(value);
    json_decref(expected);
    run_free(&r);

    const char *word[] = {"dpool", "apply", "echo", "hello", NULL};
    r = run(word);
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    value = json_of(r.out);
    cr_assert(json_is_string(value) && strcmp(json_string_value(value), "hello") == 0);
    json_decref(value);
    run_free(&r);
}

Test(cli, apply_of_a_failing_task_exits_1_with_its_message_on_one_line)
{
    const char *argv[] = {"dpool", "apply", "fail", "out of cheese", NULL};
    run_t r = run(argv);
    cr_assert_eq(r.status, 1);
    cr_assert(one_line(r.err), "stderr: %s", r.err);
    cr_assert(strstr(r.err, "out of cheese"), "stderr: %s", r.err);
    cr_assert_str_eq(r.out, "", "stdout: [%s]", r.out);
    run_free(&r);
}

Test(cli, apply_of_an_unknown_function_exits_1_naming_it)
{
    const char *argv[] = {"dpool", "apply", "no.such", NULL};
    run_t r = run(argv);
    cr_assert_eq(r.status, 1);
    cr_assert(one_line(r.err) && strstr(r.err, "no.such"), "stderr: %s", r.err);
    run_free(&r);
}

Test(cli, status_json_lists_the_host_processes_and_functions)
{
    const char *argv[] = {"dpool", "status", "--json", NULL};
    // The processes register (HELLO) a moment before their credits (idle) arrive.
    run_t r = {0};
    json_t *status = NULL;
    for (int attempt = 0; attempt < 50; attempt++) {
        run_free(&r);
        json_decref(status);
        r = run(argv);
        cr_assert_eq(r.status, 0, "stderr: %s", r.err);
        status = json_of(r.out);
        json_t *first = json_array_get(json_object_get(status, "hosts"), 0);
        if (json_integer_value(json_object_get(first, "idle")) == 2)
            break;
        nanosleep(&(struct timespec){0, 100 * 1000 * 1000}, NULL);
    }
    json_t *hosts = json_object_get(status, "hosts");
    cr_assert(json_is_array(hosts) && json_array_size(hosts) == 1, "got %s", r.out);
    json_t *host = json_array_get(hosts, 0);
    cr_assert_eq(json_integer_value(json_object_get(host, "processes")), 2);
    cr_assert_eq(json_integer_value(json_object_get(host, "idle")), 2);
    bool has_echo = false;
    json_t *functions = json_object_get(status, "functions");
    for (size_t i = 0; i < json_array_size(functions); i++)
        has_echo = has_echo || strcmp(json_string_value(json_array_get(functions, i)), "echo") == 0;
    cr_assert(has_echo, "echo not among the functions: %s", r.out);
    json_decref(status);
    run_free(&r);
}

Test(cli, status_as_text_names_the_host)
{
    const char *argv[] = {"dpool", "status", NULL};
    run_t r = run(argv);
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    cr_assert(strstr(r.out, host), "no %s in: %s", host, r.out);
    run_free(&r);
}

Test(cli, every_tool_has_help_and_version_and_refuses_bad_flags_in_one_line)
{
    const char *tools[] = {"dpool", "dpool-broker", "dpool-worker"};
    for (size_t i = 0; i < 3; i++) {
        const char *help[] = {tools[i], "--help", NULL};
        run_t r = run(help);
        cr_assert_eq(r.status, 0, "%s --help: %s", tools[i], r.err);
        cr_assert(strstr(r.out, "usage") || strstr(r.out, "Usage"), "%s --help: %s", tools[i],
                  r.out);
        run_free(&r);
        const char *version[] = {tools[i], "--version", NULL};
        r = run(version);
        cr_assert_eq(r.status, 0);
        cr_assert(strstr(r.out, "0.1.0"), "%s --version: %s", tools[i], r.out);
        run_free(&r);
        const char *bad[] = {tools[i], "--no-such-flag", NULL};
        r = run(bad);
        cr_assert_neq(r.status, 0, "%s accepted a bad flag", tools[i]);
        cr_assert(one_line(r.err), "%s: not one line: %s", tools[i], r.err);
        run_free(&r);
    }
}

Test(cli, worker_refuses_a_bad_process_count_and_a_missing_module)
{
    const char *count[] = {"dpool-worker", "--processes", "many", NULL};
    run_t r = run(count);
    cr_assert_neq(r.status, 0);
    cr_assert(one_line(r.err) && strstr(r.err, "--processes"), "stderr: %s", r.err);
    run_free(&r);
    const char *module[] = {"dpool-worker", "--module", "/nonexistent/module.so", NULL};
    r = run(module);
    cr_assert_neq(r.status, 0);
    cr_assert(strstr(r.err, "/nonexistent/module.so"), "stderr: %s", r.err);
    run_free(&r);
}
