/*  getpid() for the daemons, dpool-broker and dpool-worker, answered from memory.

    libzmq's signaler checks getpid() each time it waits on or reads a socket's command
    mailbox, to notice that it runs in a child of fork, and glibc no longer caches the
    pid: each check is a system call. In a busy cluster they were a fifth of all system
    calls (about 50,000 per 100,000 tasks, a dozen per synchronous apply in the broker
    alone), and a system call costs about a microsecond on a virtual machine. Defined in
    the executable, this is the getpid that libzmq's calls reach (dpool-broker exports
    it because libzmq uses it, dpool-worker exports every symbol for its task modules).

    The pid is written once, before main, into a page the kernel empties in every child
    that does not share the parent's memory (MADV_WIPEONFORK: fork, _Fork, clone), where
    getpid() then asks the kernel each time: a worker process, and a task that forks,
    see their own pid, and nothing a child does can change the parent's. A child that
    shares the parent's memory (vfork, posix_spawn) sees the parent's pid until it
    execs, as glibc's own getpid once did. Where the kernel cannot wipe the page (before
    4.14) nothing is cached.

    Only the daemons carry it: a library must not replace a C library function in the
    program that links it, so libdpool's clients keep glibc's. */
#define _GNU_SOURCE // syscall, MADV_WIPEONFORK
#include <stdatomic.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static _Atomic pid_t *s_cached; // in the wiped page; NULL: nothing is cached

__attribute__((constructor)) static void
s_cache_pid(void)
{
    long page = sysconf(_SC_PAGESIZE);
    void *area =
        mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (area == MAP_FAILED)
        return;
    if (madvise(area, (size_t)page, MADV_WIPEONFORK) != 0) {
        munmap(area, (size_t)page);
        return;
    }
    s_cached = area;
    atomic_store(s_cached, (pid_t)syscall(SYS_getpid));
}

pid_t
getpid(void)
{
    pid_t pid = s_cached ? atomic_load_explicit(s_cached, memory_order_relaxed) : 0;
    return pid ? pid : (pid_t)syscall(SYS_getpid);
}
