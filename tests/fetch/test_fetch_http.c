/* lvd-fetch against a local HTTP server: every failure class, retries, redirects, duplicates,
 * shards, accounting and incremental reruns, checked through SQL on the manifest views.
 * Usage: test_fetch_http PYTHON SERVER_SCRIPT LVD_FETCH */
#include <netinet/in.h>
#include <sys/socket.h>

#include "tests/fetch/fetch_test.h"

/* A local port nobody listens on (bound, then closed). */
static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        perror("socket");
        exit(1);
    }
    close(fd);
    return ntohs(a.sin_port);
}

typedef struct expect {
    const char *path; /* appended to the server's base URL, or a full URL when it has "://" */
    const char *status;
    const char *error_class;
} expect;

/* Items whose outcome does not depend on timing (of two copies, the first stored one is ok). */
static const expect cases[] = {
    {"/img/Storm.jpg", "ok", "ok"},
    {"/img/Arc-Colors-Transparent-Wallpaper.png", "ok", "ok"},
    {"/medium.png", "ok", "ok"},
    {"/404", "failed", "http_4xx"},
    {"/500", "failed", "http_5xx"},
    {"/reset", "failed", "connect"},
    {"/resetonce/Blinds.jpg", "ok", "ok"},
    {"/ua/Wood.jpg", "ok", "ok"},
    {"/flaky429/LadyBird.jpg", "ok", "ok"},
    {"/redirect/2/Aqua.jpg", "ok", "ok"},
    {"/loop", "failed", "http_4xx"},
    {"/stall", "failed", "timeout"},
    {"/truncated.jpg", "failed", "decode"},
    {"/html", "failed", "not_image"},
    {"/bomb.png", "failed", "too_many_pixels"},
    {"/small.png", "failed", "too_small"},
    {"/wide.png", "failed", "bad_aspect"},
    {"/img/Elephants_5640x3172.jpg", "failed", "too_large"},
    {"http://nonexistent.invalid/a.jpg", "failed", "dns"},
    {"CLOSED", "failed", "connect"},
    {"ftp://127.0.0.1/a.jpg", "failed", "connect"},
};
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

static void case_url(const expect *c, int port, int closed, char *url, size_t cap)
{
    if (strcmp(c->path, "CLOSED") == 0)
        snprintf(url, cap, "http://127.0.0.1:%d/a.jpg", closed);
    else if (strstr(c->path, "://"))
        snprintf(url, cap, "%s", c->path);
    else
        snprintf(url, cap, "http://127.0.0.1:%d%s", port, c->path);
}

static int run(const char *exe, const char *dir, const char *list, const char *extra)
{
    char db[600], out[600], log[600];
    snprintf(db, sizeof db, "%s/m.db", dir);
    snprintf(out, sizeof out, "%s/shards", dir);
    snprintf(log, sizeof log, "%s/log.txt", dir);
    return check_run(CHECK_LOG_APPEND, exe, log, "--db", db, "--source", "web", "--out", out,
                     "--parallel", "8", "--threads", "2", "--connect-timeout", "2", "--timeout",
                     "1.5", "--retries", "2", "--retry-backoff", "0.05", "--max-redirects", "3",
                     "--max-bytes", "4M", "--max-side", "512", "--min-side", "32", "--max-aspect",
                     "4", "--shard-size", "256K", "--user-agent", "lvd-test/1", "--no-progress",
                     list, extra, (char *)NULL);
}

static void check_cases(sqlite3 *db, int port, int closed)
{
    for (int i = 0; i < N_CASES; i++) {
        char url[256];
        case_url(&cases[i], port, closed, url, sizeof url);
        char *got = test_sql_text(db,
                                  "SELECT status || '/' || error_class FROM v_images"
                                  " WHERE url = %Q",
                                  url);
        char want[64];
        snprintf(want, sizeof want, "%s/%s", cases[i].status, cases[i].error_class);
        CHECK_MSG(strcmp(got, want) == 0, "%s: got %s, want %s", url, got, want);
        free(got);
    }
}

/* The stored image bytes hash to the manifest's sha256, and the .json member names the item. */
static void check_member(sqlite3 *db, const char *url)
{
    char *shard = test_sql_text(db, "SELECT shard FROM v_images WHERE url = %Q", url);
    char *member = test_sql_text(db, "SELECT member FROM v_images WHERE url = %Q", url);
    char *sha = test_sql_text(db, "SELECT sha256 FROM v_images WHERE url = %Q", url);
    char cmd[2048], got[128] = "";
    snprintf(cmd, sizeof cmd, "tar -xOf '%s' '%s' | sha256sum", shard, member);
    FILE *p = popen(cmd, "r");
    CHECK(p && fscanf(p, "%64s", got) == 1);
    if (p)
        pclose(p);
    CHECK_MSG(strcmp(got, sha) == 0, "%s: stored bytes hash to %s, manifest says %s", url, got,
              sha);
    char json[4096] = "";
    snprintf(cmd, sizeof cmd, "tar -xOf '%s' '%.*sjson'", shard,
             (int)(strchr(member, '.') - member + 1), member);
    p = popen(cmd, "r");
    size_t n = p ? fread(json, 1, sizeof json - 1, p) : 0;
    json[n] = '\0';
    if (p)
        pclose(p);
    CHECK_MSG(strstr(json, url) && strstr(json, sha) && strstr(json, "\"width\":"), "%s: json %s",
              url, json);
    free(shard);
    free(member);
    free(sha);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s PYTHON SERVER_SCRIPT LVD_FETCH\n", argv[0]);
        return 1;
    }
    if (access("/usr/share/backgrounds/mate/nature/Garden.jpg", R_OK) != 0) {
        printf("SKIP: mate-backgrounds photos are not installed\n");
        return 77;
    }
    test_server server;
    test_server_start(&server, argv[1], argv[2], NULL);
    int closed = closed_port();
    char *dir = check_tmpdir("lvd-fetch-test");
    char list[600], url[256];
    snprintf(list, sizeof list, "%s/urls.txt", dir);
    FILE *f = fopen(list, "w");
    fprintf(f, "# fetch test list\n\n");
    for (int i = 0; i < N_CASES; i++) {
        case_url(&cases[i], server.port, closed, url, sizeof url);
        fprintf(f, "%s\n", url);
    }
    fprintf(f, "http://127.0.0.1:%d/img/Garden.jpg\n", server.port);
    fprintf(f, "http://127.0.0.1:%d/copy/Garden.jpg\n", server.port);
    fclose(f);

    CHECK_MSG(run(argv[3], dir, list, NULL) == 0, "lvd-fetch failed (see %s/log.txt)", dir);
    char dbpath[600];
    snprintf(dbpath, sizeof dbpath, "%s/m.db", dir);
    sqlite3 *db = check_db_open(dbpath);
    check_cases(db, server.port, closed);
    CHECK(test_sql_int(db, "SELECT SUM(n) FROM v_status WHERE source = 'web'") == N_CASES + 2);
    CHECK(test_sql_int(db, "SELECT COUNT(*) FROM v_images WHERE status = 'pending'") == 0);
    CHECK(test_sql_int(db, "SELECT attempts FROM images WHERE url LIKE '%%/500'") == 3);
    CHECK(test_sql_int(db, "SELECT attempts FROM images WHERE url LIKE '%%/flaky429/%%'") == 2);
    CHECK(test_sql_int(db, "SELECT attempts FROM images WHERE url LIKE '%%/404'") == 1);
    CHECK(test_sql_int(db, "SELECT attempts FROM images WHERE url LIKE '%%/stall'") == 3);
    CHECK(test_sql_int(db, "SELECT attempts FROM images WHERE url LIKE '%%/reset'") == 3);
    CHECK(test_sql_int(db, "SELECT attempts FROM images WHERE url LIKE '%%/resetonce/%%'") == 2);
    /* Two copies of the same photo: one stored, the other a duplicate pointing at it. */
    CHECK(test_sql_int(db, "SELECT COUNT(*) FROM v_images d JOIN v_images o ON o.id ="
                           " d.duplicate_of WHERE d.url LIKE '%%/Garden.jpg' AND o.url LIKE"
                           " '%%/Garden.jpg' AND d.status = 'duplicate' AND o.status = 'ok'"
                           " AND d.sha256 = o.sha256 AND d.member = o.member"
                           " AND d.shard = o.shard") == 1);
    /* Resized to fit 512, aspect kept (2560x1600 -> 512x320), re-encoded as JPEG. */
    CHECK(test_sql_int(db, "SELECT width * 10000 + height FROM v_images WHERE url LIKE"
                           " '%%/img/Garden.jpg'") == 512 * 10000 + 320);
    char *fmt = test_sql_text(db, "SELECT format FROM v_images WHERE url LIKE '%%Arc-Colors%%'");
    CHECK_MSG(strcmp(fmt, "jpg") == 0, "RGBA PNG stored as %s", fmt);
    free(fmt);
    /* Small enough for its original bytes: kept as PNG. */
    CHECK(test_sql_int(db, "SELECT COUNT(*) FROM v_images WHERE url LIKE '%%/medium.png'"
                           " AND format = 'png' AND width = 300 AND height = 200") == 1);
    CHECK(test_sql_int(db, "SELECT COUNT(*) FROM v_runs WHERE stage = 'fetch' AND status = 'ok'"
                           " AND json_extract(counts, '$.ok') = 8 AND"
                           " json_extract(counts, '$.duplicate') = 1") == 1);
    CHECK(test_check_shards(db) >= 1);
    char *stored = test_sql_text(db, "SELECT url FROM v_images WHERE url LIKE '%%/Garden.jpg'"
                                     " AND status = 'ok'");
    check_member(db, stored);
    free(stored);
    char *before = test_sql_dump(db, "SELECT * FROM v_images ORDER BY id");

    /* The same input again: nothing to do, nothing changes. */
    CHECK(run(argv[3], dir, list, NULL) == 0);
    CHECK(test_sql_int(db, "SELECT json_extract(counts, '$.todo') FROM v_runs ORDER BY id DESC"
                           " LIMIT 1") == 0);
    char *after = test_sql_dump(db, "SELECT * FROM v_images ORDER BY id");
    CHECK_MSG(strcmp(before, after) == 0, "a rerun changed the manifest");
    free(after);

    /* A longer input: only the new item is fetched. */
    f = fopen(list, "a");
    fprintf(f, "http://127.0.0.1:%d/img/Dune.jpg\n", server.port);
    fclose(f);
    CHECK(run(argv[3], dir, list, NULL) == 0);
    CHECK(test_sql_int(db, "SELECT json_extract(counts, '$.todo') FROM v_runs ORDER BY id DESC"
                           " LIMIT 1") == 1);
    CHECK(test_sql_int(db, "SELECT COUNT(*) FROM v_images WHERE url LIKE '%%/img/Dune.jpg'"
                           " AND status = 'ok'") == 1);
    CHECK(test_sql_int(db, "SELECT SUM(n) FROM v_status WHERE source = 'web'") == N_CASES + 3);

    /* --retry-failed retries exactly the failures; they fail the same way again. */
    long long failed = test_sql_int(db, "SELECT COUNT(*) FROM v_images WHERE status = 'failed'");
    CHECK(run(argv[3], dir, list, "--retry-failed") == 0);
    CHECK(test_sql_int(db, "SELECT json_extract(counts, '$.todo') FROM v_runs ORDER BY id DESC"
                           " LIMIT 1") == failed);
    check_cases(db, server.port, closed);
    CHECK(test_sql_int(db, "SELECT COUNT(*) FROM v_runs WHERE status != 'ok'") == 0);
    free(before);
    sqlite3_close(db);

    if (!check_failures)
        check_rmtree(dir);
    else
        fprintf(stderr, "kept %s for inspection\n", dir);
    free(dir);
    test_server_stop(&server);
    return check_finish();
}
