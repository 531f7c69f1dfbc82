/* Helpers for the fetch tests (besides tests/check_run.h's folders and children): the local HTTP
 * server, SQL queries on the manifest views and shard checks. */
#ifndef LVD_TESTS_FETCH_FETCH_TEST_H
#define LVD_TESTS_FETCH_FETCH_TEST_H

#include <dirent.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/check_run.h"

typedef struct test_server {
    pid_t pid;
    int port;
    FILE *to_server; /* closing it stops the server */
} test_server;

/* Starts the Python HTTP server script (serving root under /data/ when root is not NULL) and
 * reads its port. */
static inline void test_server_start(test_server *s, const char *python, const char *script,
                                     const char *root)
{
    int out[2], in[2];
    if (pipe(out) != 0 || pipe(in) != 0) {
        perror("pipe");
        exit(1);
    }
    s->pid = fork();
    if (s->pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[1]);
        close(out[0]);
        if (root)
            execl(python, python, script, "--root", root, (char *)NULL);
        else
            execl(python, python, script, (char *)NULL);
        perror(python);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    s->to_server = fdopen(in[1], "w");
    FILE *from = fdopen(out[0], "r");
    if (!from || fscanf(from, "PORT %d", &s->port) != 1) {
        fprintf(stderr, "the test server did not start\n");
        exit(1);
    }
    fclose(from);
}

static inline void test_server_stop(test_server *s)
{
    fclose(s->to_server);
    kill(s->pid, SIGTERM);
    check_wait(s->pid);
}

/* The first column of the first row of a printf-formatted query as an integer (-1: no row). */
static inline long long test_sql_int(sqlite3 *db, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *sql = sqlite3_vmprintf(fmt, ap);
    va_end(ap);
    sqlite3_stmt *st;
    long long v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "%s: %s\n", sql, sqlite3_errmsg(db));
        exit(1);
    }
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_free(sql);
    return v;
}

/* The same as text, malloc'd ("" when NULL, "<no row>" without a row). */
static inline char *test_sql_text(sqlite3 *db, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *sql = sqlite3_vmprintf(fmt, ap);
    va_end(ap);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "%s: %s\n", sql, sqlite3_errmsg(db));
        exit(1);
    }
    char *v;
    if (sqlite3_step(st) == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        v = strdup(t ? (const char *)t : "");
    } else {
        v = strdup("<no row>");
    }
    sqlite3_finalize(st);
    sqlite3_free(sql);
    return v;
}

/* Every row of a query, columns joined by '|' and rows by '\n', malloc'd. */
static inline char *test_sql_dump(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "%s: %s\n", sql, sqlite3_errmsg(db));
        exit(1);
    }
    size_t cap = 4096, len = 0;
    char *out = malloc(cap);
    out[0] = '\0';
    while (sqlite3_step(st) == SQLITE_ROW) {
        for (int i = 0; i < sqlite3_column_count(st); i++) {
            const unsigned char *t = sqlite3_column_text(st, i);
            size_t need = len + (t ? strlen((const char *)t) : 0) + 3;
            while (need >= cap)
                out = realloc(out, cap *= 2);
            len += (size_t)sprintf(out + len, "%s%s", i ? "|" : "", t ? (const char *)t : "");
        }
        out[len++] = '\n';
        out[len] = '\0';
    }
    sqlite3_finalize(st);
    return out;
}

/* Checks one shard: `tar -tf` reads it, and its members are exactly (as a sorted list) the
 * manifest's members of that shard plus their .json companions. Returns the member count. */
static inline int test_check_shard(sqlite3 *db, const char *path)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "tar -tf '%s' | LC_ALL=C sort", path);
    FILE *p = popen(cmd, "r");
    char listed[1 << 16];
    size_t n = p ? fread(listed, 1, sizeof listed - 1, p) : 0;
    listed[n] = '\0';
    int rc = p ? pclose(p) : -1;
    CHECK_MSG(rc == 0, "tar -tf %s failed", path);
    char *sql = sqlite3_mprintf(
        "SELECT name FROM (SELECT member AS name FROM images i JOIN shards s ON s.id = i.shard_id"
        " WHERE s.path = '%q' UNION ALL SELECT substr(member, 1, instr(member, '.')) || 'json'"
        " FROM images i JOIN shards s ON s.id = i.shard_id WHERE s.path = '%q') ORDER BY name",
        path, path);
    char *expected = test_sql_dump(db, sql);
    sqlite3_free(sql);
    CHECK_MSG(strcmp(listed, expected) == 0, "%s holds:\n%s\nthe manifest says:\n%s", path, listed,
              expected);
    int members = 0;
    for (char *c = listed; *c; c++)
        members += *c == '\n';
    free(expected);
    return members;
}

/* Checks every shard the manifest references; returns how many. */
static inline int test_check_shards(sqlite3 *db)
{
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db, "SELECT DISTINCT shard FROM v_images WHERE shard IS NOT NULL", -1, &st,
                       NULL);
    int n = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        test_check_shard(db, (const char *)sqlite3_column_text(st, 0));
        n++;
    }
    sqlite3_finalize(st);
    return n;
}

/* Files in dir whose name ends with suffix. */
static inline int test_count_files(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    int n = 0;
    size_t k = strlen(suffix);
    for (struct dirent *e; d && (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        n += len >= k && strcmp(e->d_name + len - k, suffix) == 0;
    }
    if (d)
        closedir(d);
    return n;
}

#endif
