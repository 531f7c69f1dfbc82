/* Helpers for the embed stage tests (besides tests/check_run.h's folders and children): SQL on the
 * manifest, small JPEGs made from the mate-backgrounds photos, and the consistency check of a
 * model's embeddings. */
#ifndef LVD_TESTS_EMBED_STAGE_EMBED_STAGE_TEST_H
#define LVD_TESTS_EMBED_STAGE_EMBED_STAGE_TEST_H

#include <dirent.h>
#include <math.h>
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

#include "image/image.h"
#include "store/tensors.h"
#include "tests/check_run.h"

#define MATE "/usr/share/backgrounds/mate"

/* The tools under test, passed as arguments by meson. */
typedef struct tools {
    const char *fetch, *model, *embed;
} tools;

static inline tools test_tools(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s LVD-FETCH LVD-MODEL LVD-EMBED\n", argv[0]);
        exit(2);
    }
    return (tools){argv[1], argv[2], argv[3]};
}

static inline void test_mkdir(const char *path)
{
    if (mkdir(path, 0755) != 0) {
        perror(path);
        exit(1);
    }
}

/* 1 when the file at path contains needle. */
static inline int test_file_has(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strstr(buf, needle) != NULL;
}

static inline void test_print_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char line[1024];
    while (fgets(line, sizeof line, f))
        fprintf(stderr, "  | %s", line);
    fclose(f);
}

/* The first column of the first row of a query returning an integer; -1 on error. */
static inline long long test_sql_int(const char *dbpath, const char *sql)
{
    sqlite3 *db = check_db_open(dbpath);
    sqlite3_stmt *st;
    long long v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    } else {
        fprintf(stderr, "%s: %s\n", sql, sqlite3_errmsg(db));
    }
    sqlite3_close(db);
    return v;
}

/* Writes photo resized to w x h as a JPEG at path. */
static inline void test_small_jpeg(const char *photo, int w, int h, const char *path)
{
    FILE *f = fopen(photo, "rb");
    if (!f) {
        perror(photo);
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)len);
    if (!buf || fread(buf, 1, (size_t)len, f) != (size_t)len) {
        fprintf(stderr, "%s: read failed\n", photo);
        exit(1);
    }
    fclose(f);
    lvd_image img, small;
    lvd_error err;
    uint8_t *jpg;
    size_t jlen;
    if (lvd_image_decode(buf, (size_t)len, NULL, &img, &err) != 0 ||
        lvd_image_resize(&img, w, h, &small, &err) != 0 ||
        lvd_image_encode_jpeg(&small, 90, &jpg, &jlen, &err) != 0) {
        fprintf(stderr, "%s: %s\n", photo, err.msg);
        exit(1);
    }
    f = fopen(path, "wb");
    if (!f || fwrite(jpg, 1, jlen, f) != jlen || fclose(f) != 0) {
        fprintf(stderr, "%s: write failed\n", path);
        exit(1);
    }
    free(jpg);
    free(buf);
    lvd_image_free(&img);
    lvd_image_free(&small);
}

static const char *const test_photos[] = {
    MATE "/nature/FreshFlower.jpg",
    MATE "/nature/GreenMeadow.jpg",
    MATE "/nature/Dune.jpg",
    MATE "/desktop/GreenTraditional.jpg",
};

/* Writes n distinct small JPEGs (photo i % 4 at a size depending on i) named prefix-I.jpg into
 * dir. */
static inline void test_make_photos(const char *dir, const char *prefix, int n)
{
    for (int i = 0; i < n; i++) {
        char path[2048];
        snprintf(path, sizeof path, "%s/%s-%03d.jpg", dir, prefix, i);
        int w = 96 + 4 * i + (prefix[0] % 7) * 2;
        test_small_jpeg(test_photos[i % 4], w, 72 + 2 * i, path);
    }
}

/* A test's scratch folder: a fresh $TMPDIR/lvd-stage-test-XXXXXX, returned (malloc'd, for
 * check_rmtree) and copied into tmp, with its manifest tmp/m.db in db and the children's log
 * tmp/log in log (the env structs' fields). */
static inline char *test_scratch(char tmp[static 512], char db[static 1024], char log[static 1024])
{
    char *dir = check_tmpdir("lvd-stage-test");
    snprintf(tmp, 512, "%s", dir);
    snprintf(db, 1024, "%s/m.db", dir);
    snprintf(log, 1024, "%s/log", dir);
    return dir;
}

/* The end of a test: the scratch folder tmp removed when every check passed, otherwise kept with
 * the children's log (when log is not NULL) printed; tmp is freed. Returns check_finish(). */
static inline int test_finish(char *tmp, const char *log)
{
    if (!check_failures)
        check_rmtree(tmp);
    else if (log)
        test_print_file(log);
    free(tmp);
    return check_finish();
}

/* Makes folder dir with n photos prefix-I.jpg (test_make_photos) and runs fetch on it into the
 * manifest db as source, in shards of shard_size (NULL: lvd-fetch's default), stderr to log.
 * Returns lvd-fetch's exit status. */
static inline int test_fetch_photos(const char *fetch, const char *db, const char *log,
                                    const char *dir, const char *prefix, int n, const char *source,
                                    const char *shard_size)
{
    test_mkdir(dir);
    test_make_photos(dir, prefix, n);
    char *argv[10] = {(char *)fetch, "--db", (char *)db, "--source", (char *)source};
    int k = 5;
    if (shard_size) {
        argv[k++] = "--shard-size";
        argv[k++] = (char *)shard_size;
    }
    argv[k++] = "--no-progress";
    argv[k++] = (char *)dir;
    argv[k] = NULL;
    return check_wait(check_spawn(CHECK_LOG_QUIET, argv, log));
}

/* Replaces the data of tar member `member` of shard by data (zeros when NULL), keeping its size
 * (the tar stays readable); the previous bytes are returned in *old (malloc'd) when old is not
 * NULL. Returns 0 when the member was found. */
static inline int test_swap_member(const char *shard, const char *member, const uint8_t *data,
                                   uint8_t **old)
{
    FILE *f = fopen(shard, "r+b");
    if (!f)
        return -1;
    unsigned char h[512];
    long pos = 0;
    int rc = -1;
    while (fseek(f, pos, SEEK_SET) == 0 && fread(h, 1, 512, f) == 512 && h[0]) {
        char size_field[13];
        memcpy(size_field, h + 124, 12);
        size_field[12] = '\0';
        long size = strtol(size_field, NULL, 8);
        if (strncmp((const char *)h, member, 100) == 0) {
            uint8_t *prev = malloc((size_t)size + 1);
            rc = prev && fread(prev, 1, (size_t)size, f) == (size_t)size ? 0 : -1;
            uint8_t *zeros = data ? NULL : calloc((size_t)size + 1, 1);
            if (rc == 0 && fseek(f, pos + 512, SEEK_SET) == 0 &&
                fwrite(data ? data : zeros, 1, (size_t)size, f) != (size_t)size)
                rc = -1;
            free(zeros);
            if (old)
                *old = prev;
            else
                free(prev);
            break;
        }
        pos += 512 + (size + 511) / 512 * 512;
    }
    if (fclose(f) != 0)
        rc = -1;
    return rc;
}

/* The embedding rows of model in the manifest at db, (n_images + 1) x dim floats indexed by image
 * id (row 0 unused); rows an image does not have stay NaN. The caller frees the array. */
static inline float *test_load_rows(const char *db_path, const char *model, int n_images, int dim)
{
    float *rows = malloc((size_t)(n_images + 1) * dim * sizeof *rows);
    for (size_t i = 0; i < (size_t)(n_images + 1) * dim; i++)
        rows[i] = NAN;
    sqlite3 *db = check_db_open(db_path);
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db, "SELECT image_id, file, row FROM v_embeddings WHERE model = ?1", -1, &st,
                       NULL);
    sqlite3_bind_text(st, 1, model, -1, SQLITE_STATIC);
    while (sqlite3_step(st) == SQLITE_ROW) {
        int id = sqlite3_column_int(st, 0);
        lvd_tensors *ts;
        lvd_error err;
        if (id < 1 || id > n_images ||
            lvd_tensors_open((const char *)sqlite3_column_text(st, 1), &ts, &err) != 0) {
            CHECK_MSG(0, "image %d: bad row", id);
            continue;
        }
        const lvd_tensor *t = lvd_tensors_find(ts, "array");
        memcpy(rows + (size_t)id * dim, t->data + (size_t)sqlite3_column_int(st, 2) * dim,
               dim * sizeof *rows);
        lvd_tensors_close(ts);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rows;
}

/* The value of json key in the counts of the last run of stage; -1 when absent. */
static inline long long test_last_count(const char *db, const char *stage, const char *key)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT json_extract(counts, '$.%s') FROM v_runs WHERE stage = '%s' ORDER BY id DESC "
             "LIMIT 1",
             key, stage);
    return test_sql_int(db, sql);
}

/* Checks the embeddings of model against the manifest: when complete, every 'ok' image (of any
 * source) that has no recorded failure has exactly one row; every row lies in a recorded file that
 * exists with that many rows of dim values (norm 1 when normalized), rows are numbered 0..rows-1 in
 * each file, and no other .npy or temporary file lies in dir. Returns the number of embeddings. */
static inline long long test_check_consistent(const char *dbpath, const char *model,
                                              const char *dir, int dim, int complete)
{
    char sql[1024];
    snprintf(sql, sizeof sql,
             "SELECT COUNT(*) FROM images i WHERE i.status = 'ok' AND NOT EXISTS (SELECT 1 FROM "
             "v_embeddings e WHERE e.image_id = i.id AND e.model = '%s') AND NOT EXISTS (SELECT 1 "
             "FROM v_embedding_failures x WHERE x.image_id = i.id AND x.model = '%s')",
             model, model);
    long long missing = test_sql_int(dbpath, sql);
    CHECK_MSG(!complete || missing == 0, "%lld ok images have no embedding of %s", missing, model);
    snprintf(sql, sizeof sql,
             "SELECT COUNT(*) FROM v_embeddings e JOIN images i ON i.id = e.image_id "
             "WHERE e.model = '%s' AND i.status <> 'ok'",
             model);
    CHECK(test_sql_int(dbpath, sql) == 0);
    sqlite3 *db = check_db_open(dbpath);
    sqlite3_stmt *st;
    snprintf(sql, sizeof sql,
             "SELECT f.path, f.rows, f.cols, f.normalized, COUNT(e.row), MIN(e.row), MAX(e.row), "
             "COUNT(DISTINCT e.row) FROM embedding_files f JOIN models m ON m.id = f.model_id "
             "LEFT JOIN embeddings e ON e.file_id = f.id WHERE m.name = '%s' GROUP BY f.id",
             model);
    long long total = 0;
    int files = 0;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "%s\n", sqlite3_errmsg(db));
        exit(1);
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *path = (const char *)sqlite3_column_text(st, 0);
        long long rows = sqlite3_column_int64(st, 1);
        files++;
        CHECK_MSG(sqlite3_column_int(st, 2) == dim, "%s: cols %d", path, sqlite3_column_int(st, 2));
        CHECK_MSG(sqlite3_column_int64(st, 4) == rows && sqlite3_column_int64(st, 7) == rows &&
                      sqlite3_column_int64(st, 5) == 0 && sqlite3_column_int64(st, 6) == rows - 1,
                  "%s: rows 0..%lld not each used once", path, rows - 1);
        total += rows;
        lvd_tensors *ts;
        lvd_error err;
        if (lvd_tensors_open(path, &ts, &err) != 0) {
            CHECK_MSG(0, "%s", err.msg);
            continue;
        }
        const lvd_tensor *t = lvd_tensors_find(ts, "array");
        CHECK_MSG(t && t->ndim == 2 && t->shape[0] == rows && t->shape[1] == dim,
                  "%s: shape does not match its record (%lld x %d)", path, rows, dim);
        for (long long r = 0; t && sqlite3_column_int(st, 3) && r < t->shape[0]; r++) {
            double ss = 0;
            for (int j = 0; j < dim; j++)
                ss += (double)t->data[r * dim + j] * t->data[r * dim + j];
            CHECK_MSG(fabs(sqrt(ss) - 1) < 1e-5, "%s row %lld: norm %g", path, r, sqrt(ss));
        }
        lvd_tensors_close(ts);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    DIR *d = opendir(dir);
    int on_disk = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        CHECK_MSG(!strstr(e->d_name, ".tmp"), "leftover temporary file %s/%s", dir, e->d_name);
        on_disk += strstr(e->d_name, ".npy") != NULL;
    }
    if (d)
        closedir(d);
    CHECK_MSG(on_disk == files, "%s: %d .npy files, %d recorded", dir, on_disk, files);
    return total;
}

#endif
