/* Two manifests beside each other fetch into the same default shard folder: the second must not
 * overwrite the first's shard (it used to, by giving its first shard the same file name), but
 * stop with an error naming the file; the first manifest's images stay readable, and the second
 * fetches fine into a folder of its own (--out).
 * Usage: test_fetch_shared_folder LVD_FETCH */
#include "image/image.h"
#include "tests/fetch/fetch_test.h"

/* n distinct 40 x 40 JPEGs (a gradient shifted by i) in dir. */
static void make_images(const char *dir, int n, int base)
{
    mkdir(dir, 0755);
    uint8_t rgb[40 * 40 * 3];
    lvd_image img = {40, 40, rgb};
    for (int i = 0; i < n; i++) {
        for (int p = 0; p < 40 * 40; p++)
            for (int c = 0; c < 3; c++)
                rgb[p * 3 + c] = (uint8_t)((p * (c + 1) + (base + i) * 29) & 255);
        uint8_t *jpg;
        size_t len;
        lvd_error err;
        if (lvd_image_encode_jpeg(&img, 90, &jpg, &len, &err) != 0) {
            fprintf(stderr, "encode: %s\n", err.msg);
            exit(1);
        }
        char path[1024];
        snprintf(path, sizeof path, "%s/%03d.jpg", dir, i);
        check_write_file(path, jpg, len);
        free(jpg);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_fetch_shared_folder LVD_FETCH\n");
        return 2;
    }
    const char *fetch = argv[1];
    char *dir = check_tmpdir("lvd-fetch-shared");
    char a[1024], b[1024], db_a[1024], db_b[1024], shard[1024], log[1024], own[1024];
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(b, sizeof b, "%s/b", dir);
    snprintf(db_a, sizeof db_a, "%s/a.db", dir);
    snprintf(db_b, sizeof db_b, "%s/b.db", dir);
    snprintf(shard, sizeof shard, "%s/shards/shard-000001.tar", dir);
    snprintf(log, sizeof log, "%s/log", dir);
    snprintf(own, sizeof own, "%s/shards-b", dir);
    make_images(a, 12, 0);
    make_images(b, 7, 100);

    CHECK(check_run(CHECK_LOG_QUIET, fetch, log, "--db", db_a, "--source", "a", "--no-progress", a,
                    (char *)NULL) == 0);
    size_t before_len;
    char *before = check_slurp(shard, &before_len);
    CHECK(before != NULL && before_len > 0);

    CHECK(check_run(CHECK_LOG_QUIET, fetch, log, "--db", db_b, "--source", "b", "--no-progress", b,
                    (char *)NULL) != 0);
    char *msg = check_slurp(log, NULL);
    CHECK_MSG(msg && strstr(msg, shard) && strstr(msg, "is not a shard of this manifest"),
              "lvd-fetch said: %s", msg ? msg : "(nothing)");
    free(msg);
    size_t after_len;
    char *after = check_slurp(shard, &after_len);
    CHECK(after && after_len == before_len && memcmp(before, after, before_len) == 0);
    free(before);
    free(after);

    /* a's manifest still reads: all 12 images ok in its one shard. */
    sqlite3 *m = check_db_open(db_a);
    CHECK(test_sql_int(m, "SELECT count(*) FROM images WHERE status = 'ok' AND shard_id = 1") ==
          12);
    sqlite3_close(m);

    /* b in its own folder: fetched, and no shard left behind in the shared folder. */
    CHECK(check_run(CHECK_LOG_QUIET, fetch, log, "--db", db_b, "--source", "b", "--no-progress",
                    "--out", own, b, (char *)NULL) == 0);
    m = check_db_open(db_b);
    CHECK(test_sql_int(m, "SELECT count(*) FROM images WHERE status = 'ok'") == 7);
    CHECK(test_sql_int(m, "SELECT count(*) FROM shards WHERE path NOT LIKE '%%/shards-b/%%'") == 0);
    sqlite3_close(m);
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp", shard);
    CHECK(access(tmp, F_OK) != 0);

    check_rmtree(dir);
    free(dir);
    return check_finish();
}
