/* kill -9 at several moments of a fetch, then a rerun: the manifest must equal that of an
 * uninterrupted run (same rows, same statuses), every referenced shard must be complete and hold
 * exactly its manifest members, and no leftover of an interrupted shard may remain.
 * Usage: test_fetch_crash LVD_FETCH */
#include <errno.h>
#include <time.h>

#include "image/image.h"
#include "tests/fetch/fetch_test.h"

#define N_IMAGES 400
#define CROP_W   120
#define CROP_H   90

/* N_IMAGES distinct JPEG crops of a real photo in five class folders, an exact copy of one, a
 * truncated JPEG and a text file. */
static void make_dataset(const char *dir)
{
    size_t len;
    uint8_t *data = (uint8_t *)check_slurp("/usr/share/backgrounds/mate/nature/Garden.jpg", &len);
    lvd_image photo = {0};
    lvd_error err;
    if (!data || lvd_image_decode(data, len, NULL, &photo, &err) != 0) {
        fprintf(stderr, "cannot decode the photo\n");
        exit(1);
    }
    free(data);
    char path[1024];
    for (int c = 0; c < 5; c++) {
        snprintf(path, sizeof path, "%s/class%d", dir, c);
        mkdir(path, 0755);
    }
    uint8_t *rgb = malloc(CROP_W * CROP_H * 3);
    lvd_image crop = {CROP_W, CROP_H, rgb};
    uint8_t *first = NULL;
    size_t first_len = 0;
    for (int i = 0; i < N_IMAGES; i++) {
        int x = (i * 37) % (photo.width - CROP_W), y = (i * 53) % (photo.height - CROP_H);
        for (int r = 0; r < CROP_H; r++)
            memcpy(rgb + (size_t)r * CROP_W * 3,
                   photo.rgb + ((size_t)(y + r) * photo.width + x) * 3, CROP_W * 3);
        uint8_t *jpg;
        size_t jlen;
        if (lvd_image_encode_jpeg(&crop, 85, &jpg, &jlen, &err) != 0) {
            fprintf(stderr, "encode: %s\n", err.msg);
            exit(1);
        }
        snprintf(path, sizeof path, "%s/class%d/img%04d.jpg", dir, i % 5, i);
        check_write_file(path, jpg, jlen);
        if (i == 0) {
            first = jpg;
            first_len = jlen;
        } else {
            free(jpg);
        }
    }
    snprintf(path, sizeof path, "%s/class0/copy.jpg", dir);
    check_write_file(path, first, first_len);
    snprintf(path, sizeof path, "%s/class1/truncated.jpg", dir);
    check_write_file(path, first, first_len / 2);
    snprintf(path, sizeof path, "%s/class2/notes.txt", dir);
    check_write_file(path, "not an image\n", 13);
    free(first);
    free(rgb);
    lvd_image_free(&photo);
}

static pid_t start_fetch(const char *exe, const char *dir, const char *name, const char *data)
{
    static char db[600], out[600], log[600];
    snprintf(db, sizeof db, "%s/%s.db", dir, name);
    snprintf(out, sizeof out, "%s/%s_shards", dir, name);
    snprintf(log, sizeof log, "%s/%s.log", dir, name);
    char *argv[] = {(char *)exe, "--db",          db,           "--source",
                    "local",     "--out",         out,          "--threads",
                    "1",         "--shard-size",  "64K",        "--max-side",
                    "100",       "--no-progress", (char *)data, NULL};
    return check_spawn(CHECK_LOG_APPEND, argv, log);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Starts a fetch, waits until `tars` complete shards and a temporary one exist (or it ends),
 * sends it sig. Returns its exit status (128 + SIGKILL when killed). */
static int run_and_signal(const char *exe, const char *dir, const char *data, int tars, int sig)
{
    char out[600];
    snprintf(out, sizeof out, "%s/b_shards", dir);
    pid_t pid = start_fetch(exe, dir, "b", data);
    for (int waited = 0; waited < 60000; waited += 2) {
        if (test_count_files(out, ".tar") >= tars && test_count_files(out, ".tmp") > 0)
            break;
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        sleep_ms(2);
    }
    kill(pid, sig);
    return check_wait(pid);
}

static const char *dump_sql = "SELECT url, label, status, error_class, sha256, width, height,"
                              " format, member IS NOT NULL, duplicate_of IS NOT NULL"
                              " FROM v_images ORDER BY url";

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s LVD_FETCH\n", argv[0]);
        return 1;
    }
    if (access("/usr/share/backgrounds/mate/nature/Garden.jpg", R_OK) != 0) {
        printf("SKIP: mate-backgrounds photos are not installed\n");
        return 77;
    }
    char *dir = check_tmpdir("lvd-fetch-test");
    char data[600], path[600];
    snprintf(data, sizeof data, "%s/data", dir);
    mkdir(data, 0755);
    make_dataset(data);

    CHECK(check_wait(start_fetch(argv[1], dir, "a", data)) == 0);

    int interrupted = 0;
    for (int tars = 0; tars <= 6; tars += 3)
        interrupted += run_and_signal(argv[1], dir, data, tars, SIGKILL) == 128 + SIGKILL;
    printf("%d of 3 runs killed mid-way\n", interrupted);
    CHECK_MSG(interrupted > 0, "no run was killed mid-way: the test exercised nothing");
    /* SIGTERM: a clean stop (exit 130) completes the open shard and leaves no temporary file. */
    int rc = run_and_signal(argv[1], dir, data, 9, SIGTERM);
    printf("exit status %d after SIGTERM (0: it had finished)\n", rc);
    CHECK_MSG(rc == 130 || rc == 0, "exit status %d after SIGTERM", rc);
    snprintf(path, sizeof path, "%s/b_shards", dir);
    CHECK(test_count_files(path, ".tmp") == 0);
    interrupted += rc == 130;
    CHECK(check_wait(start_fetch(argv[1], dir, "b", data)) == 0);

    snprintf(path, sizeof path, "%s/a.db", dir);
    sqlite3 *a = check_db_open(path);
    snprintf(path, sizeof path, "%s/b.db", dir);
    sqlite3 *b = check_db_open(path);
    char *rows_a = test_sql_dump(a, dump_sql);
    char *rows_b = test_sql_dump(b, dump_sql);
    CHECK_MSG(strcmp(rows_a, rows_b) == 0, "interrupted and uninterrupted runs differ");
    CHECK(test_sql_int(a, "SELECT COUNT(*) FROM v_images") == N_IMAGES + 3);
    CHECK(test_sql_int(a, "SELECT n FROM v_status WHERE status = 'ok'") == N_IMAGES);
    CHECK(test_sql_int(a, "SELECT n FROM v_status WHERE error_class = 'duplicate'") == 1);
    CHECK(test_sql_int(a, "SELECT n FROM v_status WHERE error_class = 'decode'") == 1);
    CHECK(test_sql_int(a, "SELECT n FROM v_status WHERE error_class = 'not_image'") == 1);
    CHECK(test_sql_int(a, "SELECT COUNT(*) FROM v_images WHERE label = 'class3'") == N_IMAGES / 5);
    CHECK(test_sql_int(b, "SELECT COUNT(*) FROM v_runs WHERE status = 'interrupted'") ==
          interrupted);
    CHECK(test_sql_int(b, "SELECT COUNT(*) FROM shards WHERE status != 'complete'") == 0);

    /* Every shard complete and exact; nothing left behind by the killed runs. */
    int shards_a = test_check_shards(a), shards_b = test_check_shards(b);
    printf("%d shards uninterrupted, %d after the kills\n", shards_a, shards_b);
    CHECK(shards_a > 3 && shards_b > 3);
    snprintf(path, sizeof path, "%s/b_shards", dir);
    CHECK(test_count_files(path, ".tmp") == 0);
    CHECK(test_count_files(path, ".tar") == shards_b);
    CHECK(test_sql_int(b, "SELECT SUM(members) FROM shards") == N_IMAGES);
    /* Shards respect --shard-size 64K, and their recorded size is their file size. */
    CHECK(test_sql_int(b, "SELECT MAX(bytes) FROM shards") <= 65536);
    sqlite3_stmt *st;
    sqlite3_prepare_v2(b, "SELECT path, bytes FROM shards", -1, &st, NULL);
    while (sqlite3_step(st) == SQLITE_ROW) {
        struct stat sb;
        const char *shard = (const char *)sqlite3_column_text(st, 0);
        CHECK_MSG(stat(shard, &sb) == 0 && sb.st_size == sqlite3_column_int64(st, 1),
                  "%s: size differs from the manifest", shard);
    }
    sqlite3_finalize(st);

    free(rows_a);
    free(rows_b);
    sqlite3_close(a);
    sqlite3_close(b);
    if (!check_failures)
        check_rmtree(dir);
    else
        fprintf(stderr, "kept %s for inspection\n", dir);
    free(dir);
    return check_finish();
}
