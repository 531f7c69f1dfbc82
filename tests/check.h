/* Minimal test helpers: each test is a plain executable that exits 0 (pass), 1 (fail) or
 * 77 (skip, meson's convention). CHECK records a failure and goes on, so one run reports
 * every broken case. */
#ifndef LVD_TESTS_CHECK_H
#define LVD_TESTS_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int check_failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            check_failures++;                                                                      \
        }                                                                                          \
    } while (0)

#define CHECK_MSG(cond, ...)                                                                       \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            check_failures++;                                                                      \
        }                                                                                          \
    } while (0)

/* Returns the reference folder, or exits 77 with a message when it is missing. */
static inline const char *check_reference_dir(void)
{
    const char *dir = getenv("LVD_REFERENCE");
    if (!dir || access(dir, R_OK) != 0) {
        printf("SKIP: reference tensors not found (%s); they live in ../shared/reference\n",
               dir ? dir : "LVD_REFERENCE unset");
        exit(77);
    }
    return dir;
}

/* Waits for child pid; returns its exit status, or 128 + signal (-1 when waiting fails). */
static inline int check_wait(pid_t pid)
{
    int status;
    if (waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static inline int check_finish(void)
{
    if (check_failures) {
        fprintf(stderr, "%d check(s) failed\n", check_failures);
        return 1;
    }
    printf("all checks passed\n");
    return 0;
}

#endif
