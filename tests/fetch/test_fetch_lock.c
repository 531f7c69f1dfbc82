/* Locks and run records across processes, as a user meets them (issue 11, defects 8, 10, 13):
 * - a second lvd-fetch through a symlink to the manifest is refused while the first one works;
 * - a live fetch's run stays 'running' when another stage starts, and once the fetch is killed
 *   (kill -9) the next run of any stage marks it 'interrupted';
 * - lvd-fetch refuses --max-pixels 0, --max-side below --min-side and --max-aspect 0.5 as bad
 *   usage, creating nothing; lvd-model list on a mistyped path creates no database.
 * The first fetch is held by the server's /stall route, so every step waits on a condition.
 * Usage: test_fetch_lock PYTHON SERVER_SCRIPT LVD_FETCH LVD_RUN LVD_MODEL */
#include <time.h>

#include "image/image.h"
#include "tests/fetch/fetch_test.h"

static const char *fetch_exe, *run_exe, *model_exe;
static char *dir;

static const char *in_dir(const char *name)
{
    static char buf[8][600];
    static int next;
    char *p = buf[next++ % 8];
    snprintf(p, sizeof buf[0], "%s/%s", dir, name);
    return p;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    static char text[1 << 16];
    size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
    text[n] = '\0';
    if (f)
        fclose(f);
    return text;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The status of the manifest's first fetch run ("" before the manifest, its schema or the run
 * exist). */
static char *first_fetch_status(const char *db_path)
{
    static char status[32];
    status[0] = '\0';
    sqlite3 *db;
    sqlite3_stmt *st;
    if (access(db_path, F_OK) != 0 ||
        sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        return status;
    sqlite3_busy_timeout(db, 10000);
    if (sqlite3_prepare_v2(db, "SELECT status FROM runs WHERE stage = 'fetch' ORDER BY id LIMIT 1",
                           -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            snprintf(status, sizeof status, "%s", (const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return status;
}

static int run_pipeline(const char *db)
{
    char *argv[] = {(char *)run_exe, (char *)in_dir("status.ini"), "--db", (char *)db, NULL};
    return check_wait(check_spawn(CHECK_LOG_APPEND, argv, in_dir("run.log")));
}

static void test_symlink_and_kill(const char *python, const char *server)
{
    test_server s;
    test_server_start(&s, python, server, NULL);
    char list[64];
    snprintf(list, sizeof list, "http://127.0.0.1:%d/stall\n", s.port);
    check_write_file(in_dir("list.txt"), list, strlen(list));
    check_write_file(in_dir("status.ini"), "[status]\n", 9);
    char *db = strdup(in_dir("m.db")), *link = strdup(in_dir("link.db"));
    CHECK(symlink(db, link) == 0);
    char *first[] = {(char *)fetch_exe,
                     "--db",
                     (char *)db,
                     "--source",
                     "web",
                     "--timeout",
                     "600",
                     "--low-speed-time",
                     "0",
                     "--retries",
                     "0",
                     "--no-progress",
                     (char *)in_dir("list.txt"),
                     NULL};
    pid_t pid = check_spawn(CHECK_LOG_APPEND, first, in_dir("first.log"));
    /* Its run is recorded once it holds the lock and starts working. */
    for (int i = 0; i < 3000 && strcmp(first_fetch_status(db), "running") != 0; i++)
        sleep_ms(10);
    CHECK(strcmp(first_fetch_status(db), "running") == 0);
    int rc = check_run(CHECK_LOG_APPEND, fetch_exe, in_dir("second.log"), "--db", link, "--source",
                       "web2", "--timeout", "1", "--retries", "0", "--no-progress",
                       in_dir("list.txt"), NULL);
    CHECK_MSG(rc == 1, "a second fetch through a symlink exited %d", rc);
    CHECK(strstr(slurp(in_dir("second.log")), "another lvd-fetch is working on this manifest"));
    /* Another stage's run leaves the live fetch's run alone... */
    CHECK(run_pipeline(link) == 0);
    CHECK(strcmp(first_fetch_status(db), "running") == 0);
    /* ... and marks it interrupted once its process is dead. */
    kill(pid, SIGKILL);
    CHECK(check_wait(pid) == 128 + SIGKILL);
    CHECK(strcmp(first_fetch_status(db), "running") == 0);
    CHECK(run_pipeline(link) == 0);
    CHECK_MSG(strcmp(first_fetch_status(db), "interrupted") == 0, "status '%s'",
              first_fetch_status(db));
    /* The lock went with the process. */
    rc =
        check_run(CHECK_LOG_APPEND, fetch_exe, in_dir("third.log"), "--db", link, "--source", "web",
                  "--timeout", "1", "--retries", "0", "--no-progress", in_dir("list.txt"), NULL);
    CHECK_MSG(rc == 0, "a fetch after the kill exited %d", rc);
    test_server_stop(&s);
    free(db);
    free(link);
}

/* A bad option is bad usage (exit 2) and creates nothing. */
static void refused(const char *what, const char *opt1, const char *val1, const char *opt2,
                    const char *val2)
{
    char *db = strdup(in_dir("options.db"));
    int rc = check_run(CHECK_LOG_APPEND, fetch_exe, in_dir("options.log"), "--db", db, "--source",
                       "s", opt1, val1, opt2 ? opt2 : "--no-progress",
                       val2 ? val2 : "--no-progress", in_dir("images"), NULL);
    CHECK_MSG(rc == 2, "%s: exit %d", what, rc);
    CHECK_MSG(access(db, F_OK) != 0, "%s: created %s", what, db);
    CHECK_MSG(strstr(slurp(in_dir("options.log")), opt1) != NULL, "%s: %s", what,
              slurp(in_dir("options.log")));
    free(db);
}

static void test_options(void)
{
    mkdir(in_dir("images"), 0755);
    lvd_image img = {64, 48, calloc(64 * 48 * 3, 1)};
    uint8_t *jpg;
    size_t len;
    lvd_error err;
    CHECK(lvd_image_encode_jpeg(&img, 90, &jpg, &len, &err) == 0);
    check_write_file(in_dir("images/a.jpg"), jpg, len);
    free(jpg);
    free(img.rgb);
    refused("--max-pixels 0", "--max-pixels", "0", NULL, NULL);
    refused("--max-side 1 --min-side 16", "--max-side", "1", "--min-side", "16");
    refused("--max-aspect 0.5", "--max-aspect", "0.5", NULL, NULL);
    /* 0 still switches the aspect check off. */
    int rc =
        check_run(CHECK_LOG_APPEND, fetch_exe, in_dir("options.log"), "--db", in_dir("options.db"),
                  "--source", "s", "--max-aspect", "0", "--no-progress", in_dir("images"), NULL);
    CHECK_MSG(rc == 0, "--max-aspect 0: exit %d", rc);
    /* Read-only tools never create a manifest. */
    char *list[] = {(char *)model_exe, "list", "--db", (char *)in_dir("mistyped.db"), NULL};
    rc = check_wait(check_spawn(CHECK_LOG_APPEND, list, in_dir("model.log")));
    CHECK_MSG(rc == 1, "lvd-model list on a missing manifest exited %d", rc);
    CHECK(access(in_dir("mistyped.db"), F_OK) != 0);
    CHECK(strstr(slurp(in_dir("model.log")), "mistyped.db: no such manifest"));
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: test_fetch_lock PYTHON SERVER LVD_FETCH LVD_RUN LVD_MODEL\n");
        return 1;
    }
    fetch_exe = argv[3];
    run_exe = argv[4];
    model_exe = argv[5];
    dir = check_tmpdir("lvd-fetch-test");
    test_symlink_and_kill(argv[1], argv[2]);
    test_options();
    if (!check_failures)
        check_rmtree(dir);
    else
        fprintf(stderr, "files kept in %s\n", dir);
    return check_finish();
}
