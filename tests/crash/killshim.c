/* LD_PRELOAD shim of the crash harness (tests/crash/test_crash.c): kills its process with
 * SIGKILL at the Nth occurrence of an event, so that kill points are chosen by what the process
 * is doing, not by timing. Events:
 *   rename  a rename() or renameat() call: a file being published
 *   commit  a write into a SQLite "-wal" file: a transaction reaching the log (several writes per
 *           transaction, so a kill can also land inside one)
 *   write   a write into a file whose name holds ".tmp": a temporary file being filled
 * Environment:
 *   LVD_KILL_AT=EVENT:N[:after]  kill at the Nth EVENT (1-based), before the call is made or,
 *                                with ":after", once it is done
 *   LVD_KILL_EXE=NAME            only in the executable NAME (its basename); default: any
 *   LVD_KILL_GROUP=1             kill the whole process group (a runner and its children)
 *   LVD_KILL_COUNT=FILE          at exit, append "EXE EVENT COUNT" lines (a counting run)
 * Without LVD_KILL_AT and LVD_KILL_COUNT the shim only forwards the calls. */
/* pwrite and pwrite64 are both interposed: no redirection of one to the other. */
#undef _FILE_OFFSET_BITS
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

enum { EV_RENAME, EV_COMMIT, EV_WRITE, N_EVENTS };
static const char *const event_names[N_EVENTS] = {"rename", "commit", "write"};

static long counts[N_EVENTS];
static int armed = -1; /* -1: not configured yet; 0: inactive; 1: active */
static int kill_event = -1;
static long kill_at;
static int kill_after;
static int kill_group;
static const char *count_file;
static char exe_name[64];

static void configure(void)
{
    if (armed >= 0)
        return;
    armed = 0;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = '\0';
    const char *base = strrchr(exe, '/');
    snprintf(exe_name, sizeof exe_name, "%.63s", base ? base + 1 : exe);
    const char *only = getenv("LVD_KILL_EXE");
    if (only && *only && strcmp(only, exe_name) != 0)
        return;
    count_file = getenv("LVD_KILL_COUNT");
    kill_group = getenv("LVD_KILL_GROUP") && atoi(getenv("LVD_KILL_GROUP")) == 1;
    const char *at = getenv("LVD_KILL_AT");
    if (at && *at) {
        for (int e = 0; e < N_EVENTS; e++) {
            size_t len = strlen(event_names[e]);
            if (strncmp(at, event_names[e], len) == 0 && at[len] == ':') {
                kill_event = e;
                char *end;
                kill_at = strtol(at + len + 1, &end, 10);
                kill_after = strcmp(end, ":after") == 0;
            }
        }
    }
    armed = kill_event >= 0 || count_file;
}

static void die(void)
{
    if (kill_group)
        kill(0, SIGKILL);
    kill(getpid(), SIGKILL);
}

/* Counts one event; returns 1 when the process must die after the call. */
static int event(int e)
{
    configure();
    if (!armed)
        return 0;
    long n = __atomic_add_fetch(&counts[e], 1, __ATOMIC_SEQ_CST);
    if (e != kill_event || n != kill_at)
        return 0;
    if (!kill_after)
        die();
    return 1;
}

/* The event a write into fd is, or -1. */
static int write_event(int fd)
{
    configure();
    if (!armed)
        return -1;
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    int saved = errno;
    ssize_t n = readlink(link, path, sizeof path - 1);
    errno = saved;
    if (n <= 0)
        return -1;
    path[n] = '\0';
    if (n > 4 && strcmp(path + n - 4, "-wal") == 0)
        return EV_COMMIT;
    return strstr(path, ".tmp") ? EV_WRITE : -1;
}

typedef int (*rename_fn)(const char *, const char *);
typedef int (*renameat_fn)(int, const char *, int, const char *);
typedef ssize_t (*write_fn)(int, const void *, size_t);
typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);
typedef size_t (*fwrite_fn)(const void *, size_t, size_t, FILE *);

/* The next definition of name (libc's), looked up once. */
#define REAL(name, type)                                                                           \
    static type real_##name;                                                                       \
    if (!real_##name)                                                                              \
    real_##name = (type)dlsym(RTLD_NEXT, #name)

int rename(const char *from, const char *to)
{
    REAL(rename, rename_fn);
    int after = event(EV_RENAME);
    int rc = real_rename(from, to);
    if (after)
        die();
    return rc;
}

int renameat(int fromfd, const char *from, int tofd, const char *to)
{
    REAL(renameat, renameat_fn);
    int after = event(EV_RENAME);
    int rc = real_renameat(fromfd, from, tofd, to);
    if (after)
        die();
    return rc;
}

/* The write calls: count, forward, maybe die. */
#define WRITE_BODY(call)                                                                           \
    int e = write_event(fd);                                                                       \
    int after = e >= 0 && event(e);                                                                \
    ssize_t rc = call;                                                                             \
    if (after)                                                                                     \
        die();                                                                                     \
    return rc

ssize_t write(int fd, const void *buf, size_t n)
{
    REAL(write, write_fn);
    WRITE_BODY(real_write(fd, buf, n));
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t at)
{
    REAL(pwrite, pwrite_fn);
    WRITE_BODY(real_pwrite(fd, buf, n, at));
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t at)
{
    REAL(pwrite64, pwrite_fn);
    WRITE_BODY(real_pwrite64(fd, buf, n, at));
}

size_t fwrite(const void *buf, size_t size, size_t n, FILE *f)
{
    REAL(fwrite, fwrite_fn);
    int fd = fileno(f);
    int e = fd >= 0 ? write_event(fd) : -1;
    int after = e >= 0 && event(e);
    size_t rc = real_fwrite(buf, size, n, f);
    if (after) {
        fflush(f);
        die();
    }
    return rc;
}

__attribute__((destructor)) static void report(void)
{
    if (armed != 1 || !count_file)
        return;
    int fd = open(count_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    char line[256];
    for (int e = 0; e < N_EVENTS; e++) {
        int len = snprintf(line, sizeof line, "%s %s %ld\n", exe_name, event_names[e], counts[e]);
        REAL(write, write_fn);
        if (real_write(fd, line, (size_t)len) < 0)
            break;
    }
    close(fd);
}
