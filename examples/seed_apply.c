/*  The seed with blocking apply, as Python's

        p = Pool(3)
        for i in range(10):
            p.apply(worker, args=(i,))
        print("----start----")
        p.close()
        p.join()
        print("-----end-----")

    Each call waits for its task, so the ten tasks run one after another and all their
    output comes before "----start----". */
#include <dpool/dpool.h>
#include <stdio.h>
#include <stdlib.h>

#define TASKS 10

static int
s_fail(const char *what, const dpool_error_t *err)
{
    fprintf(stderr, "seed_apply: %s: %s%s%s\n", what, dpool_strerror(err->code),
            err->message[0] ? ": " : "", err->message);
    return EXIT_FAILURE;
}

int
main(void)
{
    dpool_error_t err = {0};
    dpool_opts_t opts = {.processes = 3};
    dpool_t *pool = dpool_new_opts(&opts, &err);
    if (!pool)
        return s_fail("cannot open the pool", &err);
    int code = EXIT_SUCCESS;
    for (int i = 0; i < TASKS && code == EXIT_SUCCESS; i++) {
        dpool_buf_t args = {0};
        int rc = dpool_pack(&args, "i", i);
        if (rc == DPOOL_OK)
            rc = dpool_apply(pool, "demo.worker", &args, NULL, &err);
        else
            err = (dpool_error_t){.code = rc};
        dpool_buf_free(&args);
        if (rc != DPOOL_OK)
            code = s_fail("task failed", &err);
    }
    if (code == EXIT_SUCCESS) {
        puts("----start----");
        fflush(stdout);
        dpool_close(pool);
        dpool_join(pool);
        puts("-----end-----");
        fflush(stdout);
    }
    dpool_destroy(&pool);
    return code;
}
