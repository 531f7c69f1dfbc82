/* Helpers of the stages tests: running the tools, SQL checks, writing images and registering
 * embeddings the way the embed stage records them (models, embedding_files, embeddings), reading
 * the report's pages, removing the test's folder. */
#ifndef LVD_TESTS_STAGES_STAGES_TEST_H
#define LVD_TESTS_STAGES_STAGES_TEST_H

#include <fcntl.h>
#include <math.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "image/image.h"
#include "store/npy.h"
#include "tests/check_run.h"

/* Runs argv (NULL-terminated) with stdout sent to out_path (NULL: /dev/null); returns the exit
 * status, or -1 when it did not exit normally. */
static inline int st_run(char *const argv[], const char *out_path)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(out_path ? out_path : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0)
            dup2(fd, 1);
        execv(argv[0], argv);
        _exit(127);
    }
    int status;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
        return -1;
    return WEXITSTATUS(status);
}

/* lvd-fetch of dir/folder into the manifest db_path as source with role, shards in dir/shards,
 * with one more option opt (NULL: none) and its value; returns the exit status. */
static inline int st_fetch(const char *fetch_exe, const char *dir, const char *db_path,
                           const char *source, const char *role, const char *folder,
                           const char *opt, const char *value)
{
    char in[512], out[512];
    snprintf(in, sizeof in, "%s/%s", dir, folder);
    snprintf(out, sizeof out, "%s/shards", dir);
    char *argv[14] = {
        (char *)fetch_exe, "--db",       (char *)db_path, "--source", (char *)source,
        "--role",          (char *)role, "--out",         out,        "--no-progress"};
    int n = 10;
    if (opt) {
        argv[n++] = (char *)opt;
        argv[n++] = (char *)value;
    }
    argv[n++] = in;
    argv[n] = NULL;
    return st_run(argv, NULL);
}

/* The integer an SQL query returns (first column of the first row); -1 on none. */
static inline int64_t st_int(sqlite3 *db, const char *fmt, ...)
{
    char sql[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    sqlite3_stmt *st;
    int64_t v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "sql error: %s: %s\n", sqlite3_errmsg(db), sql);
        return -1;
    }
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static inline double st_double(sqlite3 *db, const char *fmt, ...)
{
    char sql[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    sqlite3_stmt *st;
    double v = -9.0;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "sql error: %s: %s\n", sqlite3_errmsg(db), sql);
        return v;
    }
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        v = sqlite3_column_double(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* Every row of a query joined into one string ('|' between columns, '\n' between rows), for
 * comparing whole results. Caller frees. */
static inline char *st_dump(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    size_t cap = 4096, len = 0;
    char *out = calloc(cap, 1);
    if (!out || sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return out;
    while (sqlite3_step(st) == SQLITE_ROW) {
        for (int c = 0; c < sqlite3_column_count(st); c++) {
            const char *t = (const char *)sqlite3_column_text(st, c);
            size_t need = len + (t ? strlen(t) : 4) + 2;
            if (need >= cap) {
                cap = need * 2;
                out = realloc(out, cap);
            }
            len += (size_t)sprintf(out + len, "%s%c", t ? t : "NULL",
                                   c + 1 < sqlite3_column_count(st) ? '|' : '\n');
        }
    }
    sqlite3_finalize(st);
    return out;
}

static inline void st_mkdir(const char *path)
{
    if (mkdir(path, 0755) != 0 && access(path, F_OK) != 0) {
        fprintf(stderr, "cannot create %s\n", path);
        exit(1);
    }
}

/* Writes a JPEG of w x h whose pixels depend on seed only (distinct seeds: distinct bytes). */
static inline int st_write_jpeg(const char *path, int w, int h, uint32_t seed)
{
    lvd_image img = {w, h, malloc((size_t)w * h * 3)};
    if (!img.rgb)
        return -1;
    for (int i = 0; i < w * h * 3; i++) {
        uint32_t z = (seed + 1) * 2654435761u ^ (uint32_t)(i / 3 / 8) * 40503u;
        img.rgb[i] = (uint8_t)((z >> 13) + (uint32_t)i % 3 * 85);
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    lvd_error err;
    int rc = lvd_image_encode_jpeg(&img, 90, &buf, &len, &err);
    free(img.rgb);
    FILE *f = rc == 0 ? fopen(path, "wb") : NULL;
    if (!f || fwrite(buf, 1, len, f) != len)
        rc = -1;
    if (f && fclose(f) != 0)
        rc = -1;
    free(buf);
    return rc;
}

/* Id of the image whose URL ends with "/name". */
static inline int64_t st_image_id(sqlite3 *db, const char *name)
{
    return st_int(db, "SELECT id FROM images WHERE url LIKE '%%/%s'", name);
}

/* Writes rows (n x dim) to npy_path and records them as embeddings of model_id for ids. */
static inline int st_add_embeddings(sqlite3 *db, int64_t model_id, const char *npy_path,
                                    const float *rows, const int64_t *ids, int64_t n, int dim)
{
    lvd_error err;
    int64_t shape[2] = {n, dim};
    if (lvd_npy_write(npy_path, rows, 2, shape, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    char sql[4096];
    snprintf(sql, sizeof sql,
             "INSERT INTO embedding_files (model_id, path, rows, cols, normalized) "
             "VALUES (%lld, '%s', %lld, %d, 1)",
             (long long)model_id, npy_path, (long long)n, dim);
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return -1;
    int64_t file_id = sqlite3_last_insert_rowid(db);
    for (int64_t i = 0; i < n; i++) {
        snprintf(sql, sizeof sql,
                 "INSERT INTO embeddings (image_id, model_id, file_id, row) "
                 "VALUES (%lld, %lld, %lld, %lld)",
                 (long long)ids[i], (long long)model_id, (long long)file_id, (long long)i);
        if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) {
            fprintf(stderr, "%s\n", sqlite3_errmsg(db));
            return -1;
        }
    }
    return 0;
}

/* Uniform noise in [-0.5, 0.5), a pure function of (seed, j) (splitmix64), so the planted
 * embeddings are the same on every machine. */
static inline double st_noise(uint64_t seed, int j)
{
    uint64_t z = seed * 1000003ull + (uint64_t)j + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0 - 0.5;
}

/* One planted image: file name, folder, and its embedding as up to three (basis, weight) terms
 * (basis -1: unused) plus optional noise (the planted copies). */
typedef struct st_item {
    const char *name, *folder;
    int basis[3];
    float weight[3];
    uint32_t noise_seed; /* 0: none */
} st_item;

/* Writes the unit embedding of it (dim <= ST_MAX_DIM values) to out: its basis terms plus
 * uniform noise in [-0.01, 0.01] when it has a noise seed. */
#define ST_MAX_DIM 256
static inline void st_item_vector(const st_item *it, int dim, float *out)
{
    double v[ST_MAX_DIM] = {0}, s = 0;
    for (int t = 0; t < 3; t++)
        if (it->basis[t] >= 0)
            v[it->basis[t]] += it->weight[t];
    for (int j = 0; j < dim && it->noise_seed; j++)
        v[j] += st_noise(it->noise_seed, j) * 0.02;
    for (int j = 0; j < dim; j++)
        s += v[j] * v[j];
    for (int j = 0; j < dim; j++)
        out[j] = (float)(v[j] / sqrt(s));
}

/* The index of the item whose file name is name + "." + extension; exits when there is none. */
static inline int st_item_find(const st_item *items, int n, const char *name)
{
    size_t len = strlen(name);
    for (int i = 0; i < n; i++)
        if (strncmp(items[i].name, name, len) == 0 && items[i].name[len] == '.')
            return i;
    fprintf(stderr, "no item %s\n", name);
    exit(1);
}

/* Writes every item's JPEG (40 x 36, seeded by its index) as dir/folder/name, making the folders,
 * and its embedding (dim values, st_item_vector) as row i of rows. */
static inline void st_write_items(const char *dir, const st_item *items, int n, int dim,
                                  float *rows)
{
    for (int i = 0; i < n; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, items[i].folder);
        st_mkdir(path);
        snprintf(path, sizeof path, "%s/%s/%s", dir, items[i].folder, items[i].name);
        CHECK(st_write_jpeg(path, 40, 36, (uint32_t)i) == 0);
        st_item_vector(&items[i], dim, rows + (size_t)i * dim);
    }
}

/* The page out/name (malloc'd); a missing page fails the test and reads as "", so that the checks
 * on it fail too rather than crash. */
static inline char *st_read_page(const char *out, const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", out, name);
    char *html = check_slurp(path, NULL);
    CHECK_MSG(html != NULL, "%s missing", path);
    return html ? html : calloc(1, 1);
}

/* How many times what occurs in text (without overlaps). */
static inline int st_count_of(const char *text, const char *what)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, what)); p += strlen(what))
        n++;
    return n;
}

/* The end of a test: its folder dir removed when every check passed and LVD_KEEP is unset (a
 * failed removal fails the test), otherwise kept with a line saying where. */
static inline void st_remove_or_keep(const char *dir)
{
    if (!check_failures && !getenv("LVD_KEEP")) {
        char cmd[1100];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        CHECK(system(cmd) == 0);
    } else {
        fprintf(stderr, "files kept in %s\n", dir);
    }
}

#endif
