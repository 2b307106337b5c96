/*  The seed program in C: Python's

        p = Pool(3)
        for i in range(10):
            p.apply_async(worker, args=(i,))
        print("----start----")
        p.close()
        p.join()
        print("-----end-----")

    with the pool spread over a dpool cluster. demo.worker prints its own start and
    finish lines on whichever host runs it; the library forwards them to our stdout. */
#include <dpool/dpool.h>
#include <stdio.h>
#include <stdlib.h>

#define TASKS 10

static int
s_fail(const char *what, const dpool_error_t *err)
{
    fprintf(stderr, "seed_pool: %s: %s%s%s\n", what, dpool_strerror(err->code),
            err->message[0] ? ": " : "", err->message);
    return EXIT_FAILURE;
}

int
main(void)
{
    dpool_error_t err = {0};
    dpool_opts_t opts = {.processes = 3}; // broker from $DPOOL_BROKER or the default
    dpool_t *pool = dpool_new_opts(&opts, &err);
    if (!pool)
        return s_fail("cannot open the pool", &err);
    dpool_result_t *results[TASKS] = {0};
    // Python's worker processes take long enough to start that its start line always
    // comes first. Here a task can start and print within a millisecond, so stdout is
    // held while the tasks are submitted: the library writes their output through the
    // same FILE, so it waits the few microseconds until the start line is out.
    flockfile(stdout);
    for (int i = 0; i < TASKS; i++)
        results[i] = dpool_apply_asyncf(pool, "demo.worker", "i", i);
    puts("----start----");
    fflush(stdout);
    funlockfile(stdout);
    dpool_close(pool);
    dpool_join(pool);
    puts("-----end-----");
    fflush(stdout);
    // Python's seed ignores its results; we report the first failure, so a broken
    // cluster does not pass for a working one.
    int code = EXIT_SUCCESS;
    for (int i = 0; i < TASKS; i++) {
        if (code == EXIT_SUCCESS && dpool_result_get(results[i], 0, NULL, &err) != DPOOL_OK)
            code = s_fail("task failed", &err);
        dpool_result_destroy(&results[i]);
    }
    dpool_destroy(&pool);
    return code;
}
