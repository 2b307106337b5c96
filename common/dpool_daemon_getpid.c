/*  getpid() for the daemons, dpool-broker and dpool-worker, answered from memory.

    libzmq looks at getpid() each time it checks a socket's command mailbox, to notice
    that it runs in a child of fork, and glibc no longer caches the pid: each check is a
    system call. In a busy cluster they were a fifth of all system calls (about 50,000
    per 100,000 tasks, a dozen per synchronous apply in the broker alone), and a system
    call costs about a microsecond on a virtual machine. Defined in the executable, this
    is the getpid that libzmq's calls reach (the linker exports it because libzmq uses
    it). Around fork the pid is forgotten (pthread_atfork: before, so that fork
    handlers that run before this one in the child ask the kernel too, and in the
    child), so a worker process, and a task that forks, see their own pid.

    Only the daemons carry it: a library must not replace a C library function in the
    program that links it, so libdpool's clients keep glibc's. A child made without
    fork's handlers (vfork, a raw clone) sees its parent's pid until it execs; POSIX
    allows such a child nothing but exec and _exit. */
#define _GNU_SOURCE // syscall
#include <pthread.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <unistd.h>

static _Atomic pid_t s_pid; // 0: ask the kernel

static void
s_forget_pid(void)
{
    atomic_store_explicit(&s_pid, 0, memory_order_relaxed);
}

__attribute__((constructor)) static void
s_watch_forks(void)
{
    pthread_atfork(s_forget_pid, NULL, s_forget_pid);
}

pid_t
getpid(void)
{
    pid_t pid = atomic_load_explicit(&s_pid, memory_order_relaxed);
    if (pid == 0) {
        pid = (pid_t)syscall(SYS_getpid);
        atomic_store_explicit(&s_pid, pid, memory_order_relaxed);
    }
    return pid;
}
