/* Helpers of the pipeline tests: a scratch folder, files, and running a command with its output
 * captured. */
#ifndef LVD_TESTS_PIPELINE_PIPETEST_H
#define LVD_TESTS_PIPELINE_PIPETEST_H

#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Output of the last run_cmd: stdout and stderr together. */
static char pt_output[1 << 16];

/* The absolute path of an existing file (meson passes paths relative to the build folder and
 * tests change folder); malloc'd, exits on failure. */
static inline char *pt_abs(const char *path)
{
    char *abs = realpath(path, NULL);
    if (!abs) {
        perror(path);
        exit(1);
    }
    return abs;
}

/* Creates a fresh scratch folder under the build folder (or /tmp) and enters it. */
static inline void pt_scratch(const char *name)
{
    const char *root = getenv("LVD_BUILD_ROOT");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tests-pipeline-%s-XXXXXX", root ? root : "/tmp", name);
    if (!mkdtemp(dir) || chdir(dir) != 0) {
        perror("scratch folder");
        exit(1);
    }
}

static inline void pt_write(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

/* Reads a whole small file into a static buffer ("" when absent). */
static inline const char *pt_read(const char *path)
{
    static char buf[1 << 16];
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f)
        return buf;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Runs argv (NULL-terminated) with stdout and stderr captured into pt_output; returns the exit
 * status (-1 when it did not exit normally). */
static inline int pt_run(char *const *argv)
{
    char tmpl[] = "/tmp/lvd-pipetest-XXXXXX";
    int fd = mkstemp(tmpl);
    if (fd < 0) {
        perror("mkstemp");
        exit(1);
    }
    unlink(tmpl);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    int ws = 0;
    waitpid(pid, &ws, 0);
    off_t len = lseek(fd, 0, SEEK_CUR);
    lseek(fd, 0, SEEK_SET);
    size_t want = len < (off_t)sizeof pt_output - 1 ? (size_t)len : sizeof pt_output - 1;
    ssize_t n = read(fd, pt_output, want);
    pt_output[n > 0 ? n : 0] = '\0';
    close(fd);
    fputs(pt_output, stdout);
    return WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
}

/* Occurrences of needle in haystack. */
static inline int pt_count(const char *haystack, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(haystack, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

#endif
