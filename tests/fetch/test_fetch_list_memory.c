/* lvd-fetch's memory does not grow with the length of a URL list: a list of LINES file:// URLs of
 * about 1 KB (missing files, so each item fails fast as http_4xx) is fetched whole and its first
 * tenth is fetched into another manifest; the whole list's peak RSS may exceed the tenth's by
 * less than GROWTH_MIB, though the list itself is ten times as long (40 MB against 4 MB: a fetch
 * that held the list, or a registration batch of 20000 such lines, would grow by 20 MB or more).
 * Every item is recorded. Skipped under AddressSanitizer, whose quarantine holds freed memory.
 * The million-line figure is bench/bench_fetch_list.c's. Usage: test_fetch_list_memory LVD-FETCH */
#include "tests/fetch/fetch_test.h"

#include <sys/resource.h>

#define LINES      40000
#define URL_BYTES  1000
#define GROWTH_MIB 12

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#else
#define UNDER_ASAN 0
#endif

/* The first `lines` lines: distinct URLs of missing files. */
static void write_list(const char *path, const char *dir, int lines)
{
    static char pad[URL_BYTES];
    memset(pad, 'a', sizeof pad - 1);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    for (int i = 0; f && i < lines; i++)
        fprintf(f, "file://%s/missing/%07d-%s.jpg\n", dir, i, pad);
    CHECK(f && fclose(f) == 0);
}

/* Fetches list into DIR/name.db; returns the peak RSS in MiB (-1 on failure). */
static double fetch_rss(const char *exe, const char *dir, const char *name, const char *list,
                        int lines)
{
    char db[600], out[600], log[600];
    snprintf(db, sizeof db, "%s/%s.db", dir, name);
    snprintf(out, sizeof out, "%s/%s-shards", dir, name);
    snprintf(log, sizeof log, "%s/%s.log", dir, name);
    char *argv[] = {(char *)exe, "--db",          db,           "--source", "web", "--out",
                    out,         "--no-progress", (char *)list, NULL};
    pid_t pid = check_spawn(CHECK_LOG_APPEND, argv, log);
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "lvd-fetch on %s failed (see %s)\n", list, log);
        return -1;
    }
    sqlite3 *s = check_db_open(db);
    long long failed = test_sql_int(s, "SELECT SUM(n) FROM v_status WHERE status = 'failed'");
    CHECK_MSG(failed == lines, "%s: %lld of %d items failed", name, failed, lines);
    sqlite3_close(s);
    return (double)ru.ru_maxrss / 1024.0;
}

int main(int argc, char **argv)
{
    if (UNDER_ASAN) {
        printf("SKIP: peak RSS means nothing under AddressSanitizer\n");
        return 77;
    }
    if (argc != 2) {
        fprintf(stderr, "usage: test_fetch_list_memory LVD-FETCH\n");
        return 2;
    }
    char *dir = check_tmpdir("lvd-fetch-test");
    char tenth[600], all[600];
    snprintf(tenth, sizeof tenth, "%s/tenth.txt", dir);
    snprintf(all, sizeof all, "%s/all.txt", dir);
    write_list(tenth, dir, LINES / 10);
    write_list(all, dir, LINES);
    double small = fetch_rss(argv[1], dir, "tenth", tenth, LINES / 10);
    double big = fetch_rss(argv[1], dir, "all", all, LINES);
    printf("peak RSS: %d lines %.1f MiB, %d lines %.1f MiB\n", LINES / 10, small, LINES, big);
    CHECK(small > 0 && big > 0);
    CHECK_MSG(big - small < GROWTH_MIB, "peak RSS grew by %.1f MiB with the list", big - small);
    check_rmtree(dir);
    free(dir);
    return check_finish();
}
