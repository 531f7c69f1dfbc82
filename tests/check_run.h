/* check.h's companion for the tests that run lvd executables: scratch folders, files, child
 * processes with their stderr in a log, the manifest opened read-only. Failures to set up exit
 * the test with one line; what the children do is for the test to check. */
#ifndef LVD_TESTS_CHECK_RUN_H
#define LVD_TESTS_CHECK_RUN_H

#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "tests/check.h"

/* A fresh folder $TMPDIR/PREFIX-XXXXXX (TMPDIR unset: /tmp), malloc'd. */
static inline char *check_tmpdir(const char *prefix)
{
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s-XXXXXX", base, prefix);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(1);
    }
    return strdup(dir);
}

static inline void check_rmtree(const char *dir)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
}

static inline void check_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
}

/* The whole file at path, NUL-terminated and malloc'd, its length in *len (len may be NULL);
 * NULL when it cannot be read. */
static inline char *check_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0, got;
    char *buf = malloc(cap + 1);
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            cap *= 2;
            char *p = realloc(buf, cap + 1);
            if (!p)
                free(buf);
            buf = p;
        }
    }
    fclose(f);
    if (buf)
        buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

/* s with every occurrence of from replaced by to, malloc'd; s is freed (so calls chain). */
static inline char *check_replace_all(char *s, const char *from, const char *to)
{
    size_t nf = strlen(from), nt = strlen(to), n = 0;
    for (const char *p = s; (p = strstr(p, from)); p += nf)
        n++;
    char *out = malloc(strlen(s) + n * (nt > nf ? nt - nf : 0) + 1), *o = out;
    const char *p = s;
    for (const char *q; (q = strstr(p, from)); p = q + nf) {
        memcpy(o, p, (size_t)(q - p));
        o += q - p;
        memcpy(o, to, nt);
        o += nt;
    }
    strcpy(o, p);
    free(s);
    return out;
}

/* Where a child's output goes when it has a log (without one it inherits the test's). */
typedef enum check_log {
    CHECK_LOG_APPEND, /* stderr appended to the log, stdout the test's */
    CHECK_LOG_QUIET   /* stderr in a fresh log, stdout to /dev/null */
} check_log;

/* Starts argv[0] with argv (NULL-terminated), its output as mode says for log (may be NULL);
 * returns the pid. */
static inline pid_t check_spawn(check_log mode, char *const argv[], const char *log)
{
    fflush(stdout); /* the child's freopen would write the parent's pending output again */
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(1);
    }
    if (pid == 0) {
        if (log && !freopen(log, mode == CHECK_LOG_APPEND ? "a" : "w", stderr))
            _exit(127);
        if (log && mode == CHECK_LOG_QUIET && !freopen("/dev/null", "w", stdout))
            _exit(127);
        execv(argv[0], argv);
        perror(argv[0]);
        _exit(127);
    }
    return pid;
}

/* Runs exe with the arguments after log (NULL-terminated, at most 62) and waits; returns its exit
 * status (check_wait's). */
static inline int check_run(check_log mode, const char *exe, const char *log, ...)
{
    char *argv[64];
    int n = 0;
    argv[n++] = (char *)exe;
    va_list ap;
    va_start(ap, log);
    for (char *a; n < 63 && (a = va_arg(ap, char *));)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    return check_wait(check_spawn(mode, argv, log));
}

/* The manifest at path, read-only, waiting up to a minute for a writer's lock. */
static inline sqlite3 *check_db_open(const char *path)
{
    sqlite3 *db;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        fprintf(stderr, "%s: %s\n", path, sqlite3_errmsg(db));
        exit(1);
    }
    sqlite3_busy_timeout(db, 60000);
    return db;
}

#endif
