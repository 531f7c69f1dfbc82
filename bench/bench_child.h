/* The benchmarks that run lvd executables as a user does: one child process measured (wall and
 * CPU seconds, peak RSS), and the load average printed beside the figures, since the machine may
 * be shared and wall time means little without it. */
#ifndef LVD_BENCH_BENCH_CHILD_H
#define LVD_BENCH_BENCH_CHILD_H

#include <fcntl.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kit/kit.h"

typedef struct bench_child {
    int status;     /* exit status; -1: it did not run or did not exit */
    double wall;    /* seconds from fork to its end */
    double cpu;     /* user + system seconds of the child */
    double rss_mib; /* its peak resident set */
} bench_child;

/* Runs argv (NULL-terminated, argv[0] the executable) with stdout written to out_path, and stderr
 * too when with_stderr (otherwise passed through); fills r and returns r->status. */
static inline int bench_run_child(char *const argv[], const char *out_path, int with_stderr,
                                  bench_child *r)
{
    *r = (bench_child){-1, 0, 0, 0};
    fflush(stdout); /* the child would write the parent's pending output again */
    double t0 = lvd_kit_now();
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            if (with_stderr)
                dup2(fd, 2);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    int status;
    struct rusage ru;
    if (pid < 0 || wait4(pid, &status, 0, &ru) != pid)
        return -1;
    r->wall = lvd_kit_now() - t0;
    r->cpu = (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
             (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
    r->rss_mib = (double)ru.ru_maxrss / 1024.0;
    r->status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return r->status;
}

/* Prints "load average WHEN: " and /proc/loadavg's line. */
static inline void bench_print_load(const char *when)
{
    char buf[128] = "?\n";
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (!fgets(buf, sizeof buf, f))
            snprintf(buf, sizeof buf, "?\n");
        fclose(f);
    }
    printf("load average %s: %s", when, buf);
}

#endif
