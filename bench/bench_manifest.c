/* lvd-bench-manifest: the manifest at scale. Builds a manifest of N image rows (default 10M) with
 * SQL inserts in one transaction, as lvd-fetch would leave them: four sources, 85% ok (sha256,
 * size, shard member), 4% duplicate, 9% failed over seven error classes, 2% pending; then one
 * model's embeddings of every ok image, dedup rows for the ok pool images and curated rows for a
 * tenth of them (--images-only skips those). Reports the build rate (the counting triggers
 * included), bytes per image row (the images table and its indexes, from dbstat, and the whole
 * file), then times lvd-status (a child process), SELECT * FROM v_status, the same counts taken
 * from the images table (what v_status did before migration 5), and lookups of random rows by
 * id, URL, sha256 and source (mean, median, 99th percentile and worst of 1000, in ms: on a loaded
 * machine the worst is a preemption, not the lookup), with each lookup's query plan. --reuse
 * measures the manifest a --keep run left in DIR again, without building it.
 *
 * Usage: lvd-bench-manifest LVD-STATUS [--rows N] [--dir DIR] [--images-only] [--keep] [--reuse] */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench_child.h"
#include "bench/bench_util.h"
#include "store/manifest.h"
#include "tests/index/synth.h"

#define SHARD_ROWS 10000
#define LOOKUPS    1000

typedef struct config {
    const char *status_tool;
    int64_t rows;
    int images_only, keep, reuse;
    char dir[512], db[600];
} config;

/* What row id looks like: a pure function of the id, so lookups can name random rows. */
typedef struct image_row {
    int source, status; /* status: 0 ok, 1 duplicate, 2 failed, 3 pending */
    const char *cls;
    char url[96], sha[65];
} image_row;

static const char *const statuses[] = {"ok", "duplicate", "failed", "pending"};
static const char *const fail_classes[] = {"dns",      "connect", "timeout",  "http_4xx",
                                           "http_5xx", "decode",  "too_small"};

static void image_of(int64_t id, image_row *r)
{
    uint64_t h = synth_mix((uint64_t)id * 0x9e3779b97f4a7c15ull);
    double u = synth_uniform(7, (uint64_t)id, 0), v = synth_uniform(7, (uint64_t)id, 1);
    r->source = u < 0.7 ? 1 : u < 0.9 ? 2 : u < 0.98 ? 3 : 4;
    r->status = v < 0.85 ? 0 : v < 0.89 ? 1 : v < 0.98 ? 2 : 3;
    r->cls = r->status == 0   ? "ok"
             : r->status == 1 ? "duplicate"
             : r->status == 2 ? fail_classes[h % 7]
                              : NULL;
    snprintf(r->url, sizeof r->url, "https://cdn%02d.example.com/%016llx/%09lld.jpg",
             (int)(h % 100), (unsigned long long)h, (long long)id);
    /* A duplicate has the bytes (sha256) of an earlier ok image: id - 1 stands in for it. */
    int64_t sid = r->status == 1 ? id - 1 : id;
    for (int k = 0; k < 4; k++)
        snprintf(r->sha + 16 * k, 17, "%016llx",
                 (unsigned long long)synth_mix((uint64_t)sid * 4 + (uint64_t)k));
}

static int step_reset(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static int insert_images(sqlite3 *db, int64_t n)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO images (id, source_id, url, label, status, error_class, "
                           "error, sha256, width, height, format, bytes, shard_id, member, "
                           "duplicate_of, run_id, attempts) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, "
                           "?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, 1, 1)",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    int rc = 0;
    for (int64_t id = 1; rc == 0 && id <= n; id++) {
        image_row r;
        image_of(id, &r);
        char member[32], label[16];
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_int(st, 2, r.source);
        sqlite3_bind_text(st, 3, r.url, -1, SQLITE_STATIC);
        snprintf(label, sizeof label, "n%05d", (int)(id % 1000));
        if (r.source == 3)
            sqlite3_bind_text(st, 4, label, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(st, 4);
        sqlite3_bind_text(st, 5, statuses[r.status], -1, SQLITE_STATIC);
        if (r.cls)
            sqlite3_bind_text(st, 6, r.cls, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(st, 6);
        for (int c = 7; c <= 15; c++)
            sqlite3_bind_null(st, c);
        if (r.status == 2)
            sqlite3_bind_text(st, 7, "HTTP 404 Not Found", -1, SQLITE_STATIC);
        if (r.status <= 1) {
            sqlite3_bind_text(st, 8, r.sha, 64, SQLITE_STATIC);
            sqlite3_bind_int(st, 9, 500);
            sqlite3_bind_int(st, 10, 375);
            sqlite3_bind_text(st, 11, "jpg", -1, SQLITE_STATIC);
            sqlite3_bind_int(st, 12, 40000 + (int)(id % 20000));
        }
        if (r.status == 0) {
            snprintf(member, sizeof member, "%09lld.jpg", (long long)id);
            sqlite3_bind_int64(st, 13, 1 + (id - 1) / SHARD_ROWS);
            sqlite3_bind_text(st, 14, member, -1, SQLITE_STATIC);
        }
        if (r.status == 1)
            sqlite3_bind_int64(st, 15, id - 1);
        rc = step_reset(st);
    }
    if (rc)
        fprintf(stderr, "bench: inserting images: %s\n", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return rc;
}

/* Embeddings of every ok image (one file per shard), dedup rows of the ok pool images (one in
 * ten a duplicate, one in a hundred removed by eval), curated rows for a tenth of those kept. */
static int insert_stages(sqlite3 *db, int64_t n)
{
    sqlite3_stmt *ef, *e, *d, *c;
    if (bench_exec_sql(db,
                       "INSERT INTO models (id, name, arch, dim, features) VALUES (1, 'vits14', "
                       "'vit_s14 dim=384', 384, 'cls')") ||
        sqlite3_prepare_v2(db,
                           "INSERT INTO embedding_files (id, model_id, path, rows, cols) VALUES "
                           "(?1, 1, printf('/data/emb/vits14/shard-%06d.r2.npy', ?1), ?2, 384)",
                           -1, &ef, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "INSERT INTO embeddings VALUES (?1, 1, ?2, ?3)", -1, &e, NULL) !=
            SQLITE_OK ||
        sqlite3_prepare_v2(db,
                           "INSERT INTO dedup (model_id, image_id, component, kept, reason, "
                           "similarity, run_id) VALUES (1, ?1, ?2, ?3, ?4, ?5, 3)",
                           -1, &d, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db,
                           "INSERT INTO curated (model_id, image_id, source_id, method, "
                           "seed_image_id, rank, similarity, run_id) VALUES (1, ?1, 3, 'knn', ?2, "
                           "1, 0.7, 4)",
                           -1, &c, NULL) != SQLITE_OK)
        return -1;
    int rc = 0;
    for (int64_t shard = 1; rc == 0 && shard <= (n + SHARD_ROWS - 1) / SHARD_ROWS; shard++) {
        sqlite3_bind_int64(ef, 1, shard);
        sqlite3_bind_int64(ef, 2, SHARD_ROWS);
        rc = step_reset(ef);
    }
    int64_t last_kept = 1;
    for (int64_t id = 1; rc == 0 && id <= n; id++) {
        image_row r;
        image_of(id, &r);
        if (r.status != 0)
            continue;
        sqlite3_bind_int64(e, 1, id);
        sqlite3_bind_int64(e, 2, 1 + (id - 1) / SHARD_ROWS);
        sqlite3_bind_int64(e, 3, (id - 1) % SHARD_ROWS);
        rc = step_reset(e);
        if (rc || r.source > 2)
            continue;
        int dup = id % 10 == 0 && last_kept < id, eval = id % 100 == 1;
        sqlite3_bind_int64(d, 1, id);
        sqlite3_bind_int64(d, 2, dup ? last_kept : id);
        sqlite3_bind_int(d, 3, !dup && !eval);
        if (dup || eval) {
            sqlite3_bind_text(d, 4, dup ? "duplicate" : "eval", -1, SQLITE_STATIC);
            sqlite3_bind_double(d, 5, 0.8);
        } else {
            sqlite3_bind_null(d, 4);
            sqlite3_bind_null(d, 5);
            last_kept = id;
        }
        rc = step_reset(d);
        if (rc == 0 && !dup && !eval && id % 10 == 3) {
            sqlite3_bind_int64(c, 1, id);
            sqlite3_bind_int64(c, 2, id + 1);
            rc = step_reset(c);
        }
    }
    if (rc)
        fprintf(stderr, "bench: inserting stage rows: %s\n", sqlite3_errmsg(db));
    sqlite3_finalize(ef);
    sqlite3_finalize(e);
    sqlite3_finalize(d);
    sqlite3_finalize(c);
    return rc;
}

static int build(const config *c)
{
    lvd_manifest *m;
    lvd_error err;
    if (lvd_manifest_open(c->db, &m, &err)) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return -1;
    }
    lvd_manifest_close(m);
    sqlite3 *db;
    if (sqlite3_open(c->db, &db) != SQLITE_OK)
        return -1;
    /* A new file has no old pages to journal: the one big transaction needs no WAL copy of
     * every page. The manifest goes back to WAL at the end. */
    int rc = bench_exec_sql(db, "PRAGMA journal_mode = DELETE; PRAGMA synchronous = OFF;"
                                " PRAGMA cache_size = -1048576; PRAGMA foreign_keys = OFF;"
                                " BEGIN;"
                                " INSERT INTO sources (id, name, role) VALUES (1, 'web', 'pool'),"
                                " (2, 'laion', 'pool'), (3, 'in1k', 'seed'), (4, 'bench', 'eval');"
                                " INSERT INTO runs (id, stage, status) VALUES (1, 'fetch', 'ok'),"
                                " (2, 'embed', 'ok'), (3, 'dedup', 'ok'), (4, 'retrieve', 'ok');");
    sqlite3_stmt *sh;
    if (rc == 0 && sqlite3_prepare_v2(db,
                                      "INSERT INTO shards (id, path, status, members, bytes, "
                                      "run_id) VALUES (?1, printf('/data/shards/shard-%06d.tar', "
                                      "?1), 'complete', ?2, ?2 * 50000, 1)",
                                      -1, &sh, NULL) == SQLITE_OK) {
        for (int64_t s = 1; rc == 0 && s <= (c->rows + SHARD_ROWS - 1) / SHARD_ROWS; s++) {
            sqlite3_bind_int64(sh, 1, s);
            sqlite3_bind_int64(sh, 2, SHARD_ROWS);
            rc = step_reset(sh);
        }
        sqlite3_finalize(sh);
    }
    double t0 = lvd_kit_now();
    if (rc == 0)
        rc = insert_images(db, c->rows);
    double t1 = lvd_kit_now();
    if (rc == 0)
        printf("images: %lld rows in %.1f s (%.0f rows/s, counting triggers included)\n",
               (long long)c->rows, t1 - t0, (double)c->rows / (t1 - t0));
    if (rc == 0 && !c->images_only) {
        rc = insert_stages(db, c->rows);
        printf("embeddings, dedup and curated rows in %.1f s\n", lvd_kit_now() - t1);
    }
    double t2 = lvd_kit_now();
    if (rc == 0)
        rc = bench_exec_sql(db, "COMMIT; PRAGMA journal_mode = WAL;");
    if (rc == 0)
        printf("commit %.1f s\n", lvd_kit_now() - t2);
    sqlite3_close(db);
    return rc;
}

static int64_t query_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    int64_t v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    else
        fprintf(stderr, "bench: %s: %s\n", sql, sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return v;
}

/* Bytes per image row: the images table with its indexes (dbstat), and the whole file. */
static void report_size(const config *c, sqlite3 *db)
{
    struct stat st;
    double file = stat(c->db, &st) == 0 ? (double)st.st_size : 0;
    int64_t images = query_int(db, "SELECT SUM(pgsize) FROM dbstat WHERE name = 'images' OR name "
                                   "IN (SELECT name FROM sqlite_master WHERE type = 'index' AND "
                                   "tbl_name = 'images')");
    int64_t url = query_int(db, "SELECT SUM(pgsize) FROM dbstat WHERE name = 'images_by_url'");
    printf("file %.2f GiB: %.0f bytes per image row; images table and its indexes %.0f bytes per "
           "row (of which the url index %.0f)\n",
           file / 1073741824.0, file / (double)c->rows, (double)images / (double)c->rows,
           (double)url / (double)c->rows);
}

/* Wall time of lvd-status --db DB (output to DIR/status.out). */
static double time_status(const config *c)
{
    char out[700];
    snprintf(out, sizeof out, "%s/status.out", c->dir);
    char *argv[] = {(char *)c->status_tool, "--db", (char *)c->db, NULL};
    bench_child r;
    return bench_run_child(argv, out, 0, &r) == 0 ? r.wall : -1;
}

/* Seconds to run sql to completion (every row stepped). */
static double time_query(sqlite3 *db, const char *sql, int64_t *rows)
{
    sqlite3_stmt *st;
    double t0 = lvd_kit_now();
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return -1;
    *rows = 0;
    while (sqlite3_step(st) == SQLITE_ROW)
        (*rows)++;
    sqlite3_finalize(st);
    return lvd_kit_now() - t0;
}

static void print_plan(sqlite3 *db, const char *sql)
{
    char buf[2048];
    snprintf(buf, sizeof buf, "EXPLAIN QUERY PLAN %s", sql);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, buf, -1, &st, NULL) != SQLITE_OK)
        return;
    printf("      plan:");
    while (sqlite3_step(st) == SQLITE_ROW)
        printf(" [%s]", (const char *)sqlite3_column_text(st, 3));
    printf("\n");
    sqlite3_finalize(st);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* LOOKUPS runs of sql, binding each time a random ok row's id / url / sha256 (what = 0, 1, 2)
 * or a source name and such a row's url (what = 3, 4); mean, median, 99th percentile and worst
 * in ms. */
static void time_lookups(sqlite3 *db, const config *c, const char *name, const char *sql, int what)
{
    static const char *const sources[] = {"web", "laion", "in1k", "bench"};
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "bench: %s: %s\n", sql, sqlite3_errmsg(db));
        return;
    }
    static double times[LOOKUPS];
    double total = 0;
    int64_t found = 0;
    for (int q = 0; q < LOOKUPS; q++) {
        int64_t id = 1 + (int64_t)(synth_uniform(9, (uint64_t)q, 0) * (double)c->rows);
        image_row r;
        image_of(id, &r);
        while (r.status != 0 && id < c->rows)
            image_of(++id, &r);
        double t0 = lvd_kit_now();
        if (what == 0)
            sqlite3_bind_int64(st, 1, id);
        else if (what == 1)
            sqlite3_bind_text(st, 1, r.url, -1, SQLITE_STATIC);
        else if (what == 2)
            sqlite3_bind_text(st, 1, r.sha, 64, SQLITE_STATIC);
        else {
            sqlite3_bind_text(st, 1, sources[r.source - 1], -1, SQLITE_STATIC);
            if (what == 4)
                sqlite3_bind_text(st, 2, r.url, -1, SQLITE_STATIC);
        }
        while (sqlite3_step(st) == SQLITE_ROW)
            found++;
        sqlite3_reset(st);
        times[q] = lvd_kit_now() - t0;
        total += times[q];
    }
    sqlite3_finalize(st);
    qsort(times, LOOKUPS, sizeof *times, cmp_double);
    printf("  %-34s mean %7.3f ms, median %7.3f, p99 %7.3f, worst %7.3f ms (%lld rows)\n", name,
           1000.0 * total / LOOKUPS, 1000.0 * times[LOOKUPS / 2],
           1000.0 * times[LOOKUPS * 99 / 100], 1000.0 * times[LOOKUPS - 1], (long long)found);
    print_plan(db, sql);
}

static int measure(config *c)
{
    sqlite3 *db;
    if (sqlite3_open_v2(c->db, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        return -1;
    if (c->reuse && (c->rows = query_int(db, "SELECT MAX(id) FROM images")) < 1)
        return -1;
    report_size(c, db);
    for (int rep = 0; rep < 3; rep++) {
        double t = time_status(c);
        printf("lvd-status (run %d): %.3f s\n", rep + 1, t);
        if (t < 0)
            return -1;
    }
    int64_t rows;
    for (int rep = 0; rep < 3; rep++) {
        double t = time_query(db, "SELECT * FROM v_status", &rows);
        printf("SELECT * FROM v_status (run %d): %.4f s, %lld rows\n", rep + 1, t, (long long)rows);
    }
    double t =
        time_query(db,
                   "SELECT s.name, i.status, i.error_class, COUNT(*) FROM images i JOIN "
                   "sources s ON s.id = i.source_id GROUP BY s.name, i.status, i.error_class",
                   &rows);
    printf("the same counts from the images table (v_status before migration 5): %.2f s\n", t);
    printf("lookups of %d random ok rows:\n", LOOKUPS);
    time_lookups(db, c, "v_images by id", "SELECT * FROM v_images WHERE id = ?1", 0);
    time_lookups(db, c, "v_images by url", "SELECT * FROM v_images WHERE url = ?1", 1);
    time_lookups(db, c, "v_images by sha256", "SELECT * FROM v_images WHERE sha256 = ?1", 2);
    time_lookups(db, c, "v_images by source and url",
                 "SELECT * FROM v_images WHERE source = ?1 AND url = ?2", 4);
    time_lookups(db, c, "v_images by source, first 100",
                 "SELECT * FROM v_images WHERE source = ?1 LIMIT 100", 3);
    time_lookups(db, c, "v_status of a source", "SELECT * FROM v_status WHERE source = ?1", 3);
    time_lookups(db, c, "embedding of an image (model named)",
                 "SELECT * FROM v_embeddings WHERE model = 'vits14' AND image_id = ?1", 0);
    time_lookups(db, c, "dedup row of an image (model named)",
                 "SELECT * FROM v_duplicates WHERE model = 'vits14' AND image_id = ?1", 0);
    sqlite3_close(db);
    return 0;
}

int main(int argc, char **argv)
{
    config c = {.rows = 10000000};
    static const struct option opts[] = {
        {"rows", required_argument, 0, 'r'},  {"dir", required_argument, 0, 'd'},
        {"images-only", no_argument, 0, 'i'}, {"keep", no_argument, 0, 'k'},
        {"reuse", no_argument, 0, 'u'},       {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o == 'r')
            c.rows = atoll(optarg);
        else if (o == 'd')
            snprintf(c.dir, sizeof c.dir, "%s", optarg);
        else if (o == 'i')
            c.images_only = 1;
        else if (o == 'k')
            c.keep = 1;
        else if (o == 'u')
            c.reuse = c.keep = 1;
        else
            c.rows = 0;
    }
    if (argc - optind != 1 || c.rows < 100) {
        fprintf(stderr, "usage: lvd-bench-manifest LVD-STATUS [--rows N (10000000)] [--dir DIR]"
                        " [--images-only] [--keep] [--reuse]\n");
        return 2;
    }
    c.status_tool = argv[optind];
    if (!c.dir[0]) {
        snprintf(c.dir, sizeof c.dir, "/tmp/lvd-bench-manifest-XXXXXX");
        if (!mkdtemp(c.dir))
            return 1;
    } else if (mkdir(c.dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "bench: %s: %s\n", c.dir, strerror(errno));
        return 1;
    }
    snprintf(c.db, sizeof c.db, "%s/manifest.db", c.dir);
    if ((access(c.db, F_OK) == 0) != c.reuse) {
        fprintf(stderr,
                c.reuse ? "bench: %s is missing (--reuse needs a kept run's --dir)\n"
                        : "bench: %s exists; give an empty --dir\n",
                c.db);
        return 1;
    }
    bench_print_load("at start");
    int rc = (!c.reuse && build(&c)) || measure(&c) ? 1 : 0;
    bench_print_load("at end");
    if (!c.keep) {
        char cmd[700];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", c.dir);
        if (system(cmd) != 0)
            fprintf(stderr, "bench: could not remove %s\n", c.dir);
    }
    return rc;
}
