/* Hostile inputs: none may hang, abort or poison the fetch.
 * - A folder holding a dangling symlink, a self-link, a symlink loop, a symlink to a parent
 *   folder and a FIFO: the fetch finishes, each bad entry is one failed item (http_4xx) and the
 *   rest is stored.
 * - file:// URLs of a FIFO and of a device are refused without being read (no hang).
 * - NUL bytes in a URL list do not merge lines: every line is one item.
 * - A 1 MB URL fails as http_4xx with a message about its length.
 * - Bytes that are not UTF-8 in a folder name and a file name: every JSON lvd writes (shard
 *   .json members, run params) is valid UTF-8 and parses; the url keeps the bytes percent-encoded.
 * - SIGTERM while the input list is a FIFO nobody writes to: exit 130, run 'interrupted'.
 * Usage: test_fetch_hostile LVD_FETCH */
#include <cjson/cJSON.h>
#include <errno.h>
#include <time.h>

#include "image/image.h"
#include "tests/fetch/fetch_test.h"

static const char *fetch_exe;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Waits for pid at most limit_s seconds; a process still running then is hung: killed, and
 * reported as -2. */
static int wait_bounded(pid_t pid, int limit_s)
{
    for (int waited = 0; waited < limit_s * 1000; waited += 10) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        sleep_ms(10);
    }
    kill(pid, SIGKILL);
    check_wait(pid);
    return -2;
}

static pid_t spawn_fetch(const char *db, const char *source, const char *input, const char *log)
{
    char *argv[] = {(char *)fetch_exe, "--db",      (char *)db,    "--source",
                    (char *)source,    "--threads", "2",           "--no-progress",
                    "--timeout",       "5",         (char *)input, NULL};
    return check_spawn(CHECK_LOG_APPEND, argv, log);
}

static void write_jpeg(const char *path, int seed)
{
    uint8_t rgb[64 * 48 * 3];
    for (size_t i = 0; i < sizeof rgb; i++)
        rgb[i] = (uint8_t)(i * 7 + (size_t)seed * 31 + i / 150);
    lvd_image img = {64, 48, rgb};
    uint8_t *jpg;
    size_t len;
    lvd_error err;
    if (lvd_image_encode_jpeg(&img, 90, &jpg, &len, &err) != 0)
        exit(1);
    check_write_file(path, jpg, len);
    free(jpg);
}

/* 1 when s[0..n) is valid UTF-8 (checked here independently of the code under test). */
static int valid_utf8(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t len = c < 0x80             ? 1
                     : (c & 0xe0) == 0xc0 ? 2
                     : (c & 0xf0) == 0xe0 ? 3
                     : (c & 0xf8) == 0xf0 ? 4
                                          : 0;
        if (!len || i + len > n || (len == 2 && c < 0xc2) || (len == 4 && c > 0xf4))
            return 0;
        for (size_t k = 1; k < len; k++)
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
        i += len;
    }
    return 1;
}

/* The status and class of the item whose url ends with suffix. */
static char *outcome(sqlite3 *db, const char *suffix)
{
    return test_sql_text(db,
                         "SELECT status || ' ' || COALESCE(error_class, '') FROM v_images"
                         " WHERE substr(url, -length(%Q)) = %Q",
                         suffix, suffix);
}

static void check_outcome(sqlite3 *db, const char *suffix, const char *expected)
{
    char *got = outcome(db, suffix);
    CHECK_MSG(strcmp(got, expected) == 0, "%s: %s, expected %s", suffix, got, expected);
    free(got);
}

/* The .json member of the stored item whose url ends with suffix: valid UTF-8, parsed. */
static cJSON *member_json(sqlite3 *db, const char *suffix)
{
    char *shard = test_sql_text(db,
                                "SELECT shard FROM v_images WHERE substr(url, -length(%Q))"
                                " = %Q",
                                suffix, suffix);
    char *member = test_sql_text(db,
                                 "SELECT member FROM v_images WHERE substr(url, -length(%Q))"
                                 " = %Q",
                                 suffix, suffix);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "tar -xOf '%.900s' '%.10s.json'", shard, member);
    FILE *p = popen(cmd, "r");
    char json[4096];
    size_t n = p ? fread(json, 1, sizeof json - 1, p) : 0;
    json[n] = '\0';
    if (p)
        pclose(p);
    CHECK_MSG(n > 0 && valid_utf8((const unsigned char *)json, n), "%s: member json %s", suffix,
              json);
    cJSON *j = cJSON_Parse(json);
    CHECK_MSG(j != NULL, "%s: member json %s does not parse", suffix, json);
    free(shard);
    free(member);
    return j;
}

/* The folder with bad entries, and its bytes that are not UTF-8. */
static void folder_case(const char *dir)
{
    char tree[600], path[700], db_path[600], log[600];
    snprintf(tree, sizeof tree, "%s/tree\xe9", dir);
    mkdir(tree, 0755);
    snprintf(path, sizeof path, "%s/good", tree);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/good/a.jpg", tree);
    write_jpeg(path, 1);
    snprintf(path, sizeof path, "%s/good/b.jpg", tree);
    write_jpeg(path, 2);
    snprintf(path, sizeof path, "%s/caf\xe9", tree);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/caf\xe9/\xff\xfe.jpg", tree);
    write_jpeg(path, 3);
    struct {
        const char *link, *to;
    } links[] = {{"good/dangling.jpg", "nowhere.jpg"},
                 {"good/self.jpg", "self.jpg"},
                 {"good/loop1.jpg", "loop2.jpg"},
                 {"good/loop2.jpg", "loop1.jpg"},
                 {"good/up", ".."}};
    for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", tree, links[i].link);
        CHECK(symlink(links[i].to, path) == 0);
    }
    snprintf(path, sizeof path, "%s/good/pipe.jpg", tree);
    CHECK(mkfifo(path, 0644) == 0);

    snprintf(db_path, sizeof db_path, "%s/folder.db", dir);
    snprintf(log, sizeof log, "%s/folder.log", dir);
    int rc = wait_bounded(spawn_fetch(db_path, "tree", tree, log), 60);
    CHECK_MSG(rc == 0, "lvd-fetch on a folder with bad entries: exit %d (-2: hung), see %s", rc,
              log);
    if (rc != 0)
        return;
    sqlite3 *db = check_db_open(db_path);
    check_outcome(db, "/good/a.jpg", "ok ok");
    check_outcome(db, "/good/b.jpg", "ok ok");
    check_outcome(db, "/%FF%FE.jpg", "ok ok");
    const char *bad[] = {"/dangling.jpg", "/self.jpg", "/loop1.jpg",
                         "/loop2.jpg",    "/good/up",  "/pipe.jpg"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        check_outcome(db, bad[i], "failed http_4xx");
    char *msg = test_sql_text(db, "SELECT error FROM v_images WHERE url LIKE '%%/pipe.jpg'");
    CHECK_MSG(strstr(msg, "FIFO"), "pipe.jpg: %s", msg);
    free(msg);
    CHECK(test_sql_int(db, "SELECT COUNT(*) FROM v_images") == 9);
    CHECK(test_sql_int(db, "SELECT COUNT(*) FROM v_runs WHERE status = 'ok'") == 1);

    /* Every JSON written is valid UTF-8 and parses: run params, counts and shard members. */
    char *params = test_sql_text(db, "SELECT params || counts FROM v_runs");
    CHECK_MSG(valid_utf8((const unsigned char *)params, strlen(params)), "params: %s", params);
    free(params);
    cJSON *j = member_json(db, "%FF%FE.jpg");
    const cJSON *label = cJSON_GetObjectItemCaseSensitive(j, "label");
    CHECK_MSG(cJSON_IsString(label) && strcmp(label->valuestring, "caf\xef\xbf\xbd") == 0,
              "label %s", cJSON_IsString(label) ? label->valuestring : "?");
    cJSON_Delete(j);
    sqlite3_close(db);
}

/* A URL list with a NUL byte, a FIFO and a device behind file:// URLs and a 1 MB URL. */
static void list_case(const char *dir)
{
    char path[600], a[600], b[600], fifo[600], db_path[600], log[600];
    snprintf(a, sizeof a, "%s/la.jpg", dir);
    write_jpeg(a, 4);
    snprintf(b, sizeof b, "%s/lb.jpg", dir);
    write_jpeg(b, 5);
    snprintf(fifo, sizeof fifo, "%s/fifo.jpg", dir);
    CHECK(mkfifo(fifo, 0644) == 0);
    snprintf(path, sizeof path, "%s/l\xe9.jpg", dir);
    write_jpeg(path, 6);
    snprintf(path, sizeof path, "%s/list.txt", dir);
    FILE *f = fopen(path, "wb");
    fprintf(f, "%s", a);
    fputc('\0', f);
    fprintf(f, "junk\n%s\nfile://%s\nfile:///dev/zero\nfile://%s/l\xe9.jpg\nhttp://127.0.0.1:9/", b,
            fifo, dir);
    for (int i = 0; i < 1 << 20; i++)
        fputc('a', f);
    fputc('\n', f);
    fclose(f);

    /* Each manifest in its own folder: beside folder.db it would share its shard folder. */
    snprintf(db_path, sizeof db_path, "%s/list", dir);
    mkdir(db_path, 0755);
    snprintf(db_path, sizeof db_path, "%s/list/list.db", dir);
    snprintf(log, sizeof log, "%s/list.log", dir);
    int rc = wait_bounded(spawn_fetch(db_path, "list", path, log), 60);
    CHECK_MSG(rc == 0, "lvd-fetch on a hostile list: exit %d (-2: hung), see %s", rc, log);
    if (rc != 0)
        return;
    sqlite3 *db = check_db_open(db_path);
    CHECK_MSG(test_sql_int(db, "SELECT COUNT(*) FROM v_images") == 6, "%lld items for 6 lines",
              test_sql_int(db, "SELECT COUNT(*) FROM v_images"));
    check_outcome(db, "/la.jpg%2500junk", "failed http_4xx");
    check_outcome(db, "/lb.jpg", "ok ok");
    check_outcome(db, "/fifo.jpg", "failed http_4xx");
    check_outcome(db, "/dev/zero", "failed http_4xx");
    check_outcome(db, "aaaa", "failed http_4xx");
    check_outcome(db, "/l\xe9.jpg", "ok ok");
    cJSON *j = member_json(db, "/l\xe9.jpg");
    const cJSON *url = cJSON_GetObjectItemCaseSensitive(j, "url");
    CHECK_MSG(cJSON_IsString(url) && strstr(url->valuestring, "/l%E9.jpg"), "url %s",
              cJSON_IsString(url) ? url->valuestring : "?");
    cJSON_Delete(j);
    char *msg = test_sql_text(db, "SELECT error FROM v_images WHERE url LIKE 'http:%%'");
    CHECK_MSG(strstr(msg, "longer than"), "1 MB URL: %s", msg);
    free(msg);
    sqlite3_close(db);
}

/* SIGTERM while the input list is a FIFO that nobody opens for writing. */
static void sigterm_case(const char *dir)
{
    char fifo[600], db_path[600], log[600];
    snprintf(fifo, sizeof fifo, "%s/list-fifo.txt", dir);
    CHECK(mkfifo(fifo, 0644) == 0);
    snprintf(db_path, sizeof db_path, "%s/term", dir);
    mkdir(db_path, 0755);
    snprintf(db_path, sizeof db_path, "%s/term/term.db", dir);
    snprintf(log, sizeof log, "%s/term.log", dir);
    pid_t pid = spawn_fetch(db_path, "term", fifo, log);
    /* The run is recorded before the inputs are read: wait for it. */
    int running = 0;
    for (int i = 0; i < 30000 && !running; i += 10) {
        sleep_ms(10);
        if (access(db_path, F_OK) != 0)
            continue;
        sqlite3 *db = check_db_open(db_path);
        running =
            test_sql_int(db, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'v_runs'") == 1 &&
            test_sql_int(db, "SELECT COUNT(*) FROM v_runs WHERE status = 'running'") == 1;
        sqlite3_close(db);
    }
    CHECK(running);
    kill(pid, SIGTERM);
    int rc = wait_bounded(pid, 10);
    CHECK_MSG(rc == 130, "exit %d after SIGTERM while reading a FIFO list (-2: hung)", rc);
    sqlite3 *db = check_db_open(db_path);
    char *status = test_sql_text(db, "SELECT status FROM v_runs");
    CHECK_MSG(strcmp(status, "interrupted") == 0, "run %s after SIGTERM", status);
    free(status);
    sqlite3_close(db);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s LVD_FETCH\n", argv[0]);
        return 1;
    }
    fetch_exe = argv[1];
    char *dir = check_tmpdir("lvd-fetch-test");
    folder_case(dir);
    list_case(dir);
    sigterm_case(dir);
    if (!check_failures)
        check_rmtree(dir);
    else
        fprintf(stderr, "kept %s for inspection\n", dir);
    free(dir);
    return check_finish();
}
