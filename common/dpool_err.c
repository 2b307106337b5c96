/*  Texts for the outcome codes of dpool/errors.h. The table is the only place a
    code's wording lives, so the library, the daemons and the CLI all say the same. */
#include <dpool/errors.h>

const char *
dpool_strerror(int rc)
{
    switch (rc) {
    case DPOOL_OK:
        return "success";
    case DPOOL_ERR_NOMEM:
        return "out of memory";
    case DPOOL_ERR_INVALID:
        return "invalid argument";
    case DPOOL_ERR_PROTO:
        return "protocol error";
    case DPOOL_ERR_TIMEOUT:
        return "timed out waiting";
    case DPOOL_ERR_IO:
        return "input/output error";
    case DPOOL_ERR_TASK_FAILED:
        return "task failed";
    case DPOOL_ERR_NO_FUNCTION:
        return "no worker offers the function";
    case DPOOL_ERR_WORKER_LOST:
        return "worker lost";
    case DPOOL_ERR_TERMINATED:
        return "terminated";
    case DPOOL_ERR_TASK_TIMEOUT:
        return "task timed out";
    case DPOOL_ERR_TOO_BIG:
        return "payload too big";
    case DPOOL_ERR_UNREACHABLE:
        return "broker unreachable";
    case DPOOL_ERR_NOT_AUTHORISED:
        return "not authorised";
    case DPOOL_ERR_CLOSED:
        return "pool is closed";
    case DPOOL_ERR_STATE:
        return "not allowed in this state";
    case DPOOL_ERR_NOT_READY:
        return "result not ready";
    case DPOOL_ERR_QUEUE_FULL:
        return "queue full";
    case DPOOL_ERR_UNCHAINED:
        return "predecessor had ended; queued again";
    default:
        return "unknown error";
    }
}
