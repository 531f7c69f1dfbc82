/* Helpers of the tests that build a manifest with lvd-fetch from small grayscale PNGs (the loader,
 * lvd-train, lvd-distill, k-NN during training): the scratch folder, writing the images, running
 * lvd-fetch, one-value queries. They set the scene and check nothing: each exits the test with one
 * line on failure. */
#ifndef LVD_TESTS_TRAIN_TRAIN_TEST_H
#define LVD_TESTS_TRAIN_TRAIN_TEST_H

#include <sqlite3.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "curate/mnist/mnist_png.h"
#include "tests/check_run.h"

/* A fresh folder $TMPDIR/NAME-XXXXXX in dir and its manifest, dir/m.db, in db. */
static inline void tt_scratch(const char *name, char *dir, size_t dir_size, char *db,
                              size_t db_size)
{
    char *d = check_tmpdir(name);
    snprintf(dir, dir_size, "%s", d);
    free(d);
    snprintf(db, db_size, "%s/m.db", dir);
}

/* Writes the 28 x 28 grayscale image px to path as a PNG. */
static inline void tt_write_png(const char *path, const uint8_t *px)
{
    uint8_t *png;
    size_t len;
    lvd_error err;
    if (lvd_png_encode_gray(px, 28, 28, &png, &len, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    check_write_file(path, png, len);
    free(png);
}

/* dir/folder/class0 and class1 (the folders made as needed), n images each of stripes and
 * gradients varied per image, plus a texture (p * i) % texture of pixel p in image i (texture 1:
 * none). */
static inline void tt_write_stripes(const char *dir, const char *folder, int n, int texture)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, folder);
    mkdir(path, 0777);
    for (int c = 0; c < 2; c++) {
        snprintf(path, sizeof path, "%s/%s/class%d", dir, folder, c);
        mkdir(path, 0777);
        for (int i = 0; i < n; i++) {
            uint8_t px[28 * 28];
            for (int p = 0; p < 28 * 28; p++)
                px[p] =
                    (uint8_t)((p % 28) * (3 + i) + (p / 28) * (5 + c) + i * 17 + (p * i) % texture);
            snprintf(path, sizeof path, "%s/%s/class%d/%02d.png", dir, folder, c, i);
            tt_write_png(path, px);
        }
    }
}

/* Fetches dir/folder into the manifest db as source (one thread, images of 8 pixels or more),
 * with the extra options (may be ""), its output discarded. */
static inline void tt_fetch(const char *fetch_exe, const char *db, const char *source,
                            const char *dir, const char *folder, const char *extra)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "'%s' --db '%s' --source %s --min-side 8 --threads 1 --no-progress %s '%s/%s' "
             ">/dev/null 2>&1",
             fetch_exe, db, source, extra, dir, folder);
    if (system(cmd) != 0) {
        fprintf(stderr, "lvd-fetch failed: %s\n", cmd);
        exit(1);
    }
}

/* The query fmt formats (with ap) run on db, stepped to its first row for the caller to read and
 * finalize; NULL, with the query and SQLite's message on stderr, when it fails or has no row. */
static inline sqlite3_stmt *tt_first_row(sqlite3 *db, const char *fmt, va_list ap)
{
    char sql[2048];
    vsnprintf(sql, sizeof sql, fmt, ap);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        return st;
    fprintf(stderr, "sql: %s: %s\n", sql, sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return NULL;
}

#endif
