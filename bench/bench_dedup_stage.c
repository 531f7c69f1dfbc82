/* lvd-bench-dedup-stage: the dedup stage (lvd-dedup) at scale, run from a manifest the way a user
 * runs it. Builds a manifest of N pool images (plus eval and seed images) with SQL, writes their
 * synthetic embeddings (bench/planted.h: every fifth image a near-copy at cosine 0.9) as .npy files
 * and attaches them with lvd-embed --import, in two batches: all but NEW pool images (scattered
 * ids), then the NEW ones. Then it runs, each as a child process whose wall time, CPU time and peak
 * RSS are measured:
 *   1. lvd-dedup over the first batch (a full run: the partition is fitted);
 *   2. lvd-dedup after the second import (incremental: only the NEW images are searched);
 *   3. with --check-full, lvd-dedup --full, whose v_duplicates must equal run 2's;
 *   4. lvd-retrieve --per-seed 4 (sample-based retrieval over the kept pool).
 * Quality, against an exact search (every pool row) of a sample of rows: recall of the planted
 * copies and of all exact edges, and wrong merges (a component holding rows of two planted
 * groups) over the whole pool; decontamination recall of the eval images planted near pool
 * images. Prints the load average before and after (the machine may be shared).
 *
 * Usage: lvd-bench-dedup-stage LVD-EMBED LVD-DEDUP LVD-RETRIEVE [--n N] [--new M] [--d D]
 *        [--eval E] [--seeds S] [--sample Q] [--dir DIR] [--check-full] [--keep] */
#include <cblas.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench_child.h"
#include "bench/bench_util.h"
#include "bench/planted.h"
#include "store/manifest.h"
#include "store/npy.h"

#define SEED_NEW   201
#define SEED_EVAL  202
#define SEED_SEEDS 203
#define THRESHOLD  0.6f
#define K          64

typedef struct config {
    const char *embed, *dedup, *retrieve;
    int64_t n, n_new, n_eval, n_seeds, sample;
    int d, check_full, keep;
    char dir[512], db[600];
} config;

/* Pool row i is in the second batch. */
static int is_new(const config *c, int64_t i)
{
    return synth_uniform(SEED_NEW, (uint64_t)i, 0) * (double)c->n < (double)c->n_new;
}

/* Eval row e: odd ones at cosine 0.9 to pool row eval_target(e), even ones random. */
static int64_t eval_target(const config *c, int64_t e)
{
    return e % 2 ? (e * 7919) % c->n : -1;
}

/* Runs argv as a child (stdout kept in DIR/last.out, stderr passed through); prints its wall and
 * CPU seconds and peak RSS, and its stdout's last line. Returns its exit status. */
static int run_child(const config *c, const char *what, char *const argv[], double *wall)
{
    char out[700];
    snprintf(out, sizeof out, "%s/last.out", c->dir);
    bench_child r;
    bench_run_child(argv, out, 0, &r);
    if (wall)
        *wall = r.wall;
    char line[1024] = "", last[1024] = "";
    FILE *f = fopen(out, "r");
    while (f && fgets(line, sizeof line, f))
        snprintf(last, sizeof last, "%s", line);
    if (f)
        fclose(f);
    printf("%-28s %8.1f s wall %8.1f s CPU  peak RSS %6.0f MiB  exit %d\n    %s", what, r.wall,
           r.cpu, r.rss_mib, r.status, last[0] ? last : "(no output)\n");
    return r.status;
}

/* Sources pool, eval and seed, and one 'ok' image row per embedding: pool image i has id i + 1,
 * then the eval and the seed images. */
static int make_manifest(const config *c)
{
    lvd_manifest *m;
    lvd_error err;
    if (lvd_manifest_open(c->db, &m, &err)) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return -1;
    }
    sqlite3 *db = lvd_manifest_db(m);
    sqlite3_stmt *st = NULL;
    int rc = bench_exec_sql(db, "BEGIN; INSERT INTO sources (id, name, role) VALUES (1, 'web', "
                                "'pool'), (2, 'bench-eval', 'eval'), (3, 'seeds', 'seed')");
    if (rc == 0)
        rc = sqlite3_prepare_v2(db,
                                "INSERT INTO images (id, source_id, url, status, error_class) "
                                "VALUES (?1, ?2, printf('https://img.example/%09d.jpg', ?1), "
                                "'ok', 'ok')",
                                -1, &st, NULL) == SQLITE_OK
                 ? 0
                 : -1;
    int64_t total = c->n + c->n_eval + c->n_seeds;
    for (int64_t id = 1; rc == 0 && id <= total; id++) {
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_int(st, 2, id <= c->n ? 1 : id <= c->n + c->n_eval ? 2 : 3);
        rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    if (rc == 0)
        rc = bench_exec_sql(db, "COMMIT");
    else
        fprintf(stderr, "bench: inserting images: %s\n", sqlite3_errmsg(db));
    lvd_manifest_close(m);
    return rc;
}

/* One .npy file being written with its ids file. */
typedef struct out_file {
    lvd_npy_appender *a;
    FILE *ids;
    char npy[700], txt[700];
} out_file;

static int out_open(const config *c, const char *name, out_file *o)
{
    lvd_error err;
    snprintf(o->npy, sizeof o->npy, "%s/embeddings/bench/%s.npy", c->dir, name);
    snprintf(o->txt, sizeof o->txt, "%s/%s.txt", c->dir, name);
    o->ids = fopen(o->txt, "w");
    if (!o->ids || lvd_npy_appender_open(o->npy, c->d, &o->a, &err)) {
        fprintf(stderr, "bench: cannot write %s\n", o->npy);
        return -1;
    }
    return 0;
}

static int out_add(out_file *o, const float *row, int64_t id)
{
    lvd_error err;
    fprintf(o->ids, "%lld\n", (long long)id);
    return lvd_npy_append(o->a, row, 1, &err);
}

static int out_close(out_file *o)
{
    lvd_error err;
    int rc = fclose(o->ids) == 0 ? 0 : -1;
    if (lvd_npy_appender_finish(o->a, &err))
        rc = -1;
    return rc;
}

/* Writes base (first batch of the pool, eval, seeds) and new (second batch). */
static int write_embeddings(const config *c, const float *x)
{
    char path[700];
    snprintf(path, sizeof path, "%s/embeddings", c->dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/embeddings/bench", c->dir);
    mkdir(path, 0755);
    out_file base, fresh;
    if (out_open(c, "base", &base) || out_open(c, "new", &fresh))
        return -1;
    int rc = 0;
    for (int64_t i = 0; rc == 0 && i < c->n; i++)
        rc = out_add(is_new(c, i) ? &fresh : &base, x + (size_t)i * c->d, i + 1);
    float *v = malloc((size_t)c->d * sizeof *v);
    for (int64_t e = 0; rc == 0 && v && e < c->n_eval; e++) {
        int64_t t = eval_target(c, e);
        if (t >= 0)
            synth_at_cos(v, x + (size_t)t * c->d, c->d, 0.9, SEED_EVAL, (uint64_t)e);
        else
            synth_unit(v, c->d, SEED_EVAL + 1, (uint64_t)e);
        rc = out_add(&base, v, c->n + 1 + e);
    }
    for (int64_t s = 0; rc == 0 && v && s < c->n_seeds; s++) {
        synth_at_cos(v, x + (size_t)((s * 104729) % c->n) * c->d, c->d, 0.7, SEED_SEEDS,
                     (uint64_t)s);
        rc = out_add(&base, v, c->n + c->n_eval + 1 + s);
    }
    free(v);
    if (out_close(&base) || out_close(&fresh))
        rc = -1;
    return rc;
}

static int import(const config *c, const char *name, const char *what)
{
    char npy[700], txt[700];
    snprintf(npy, sizeof npy, "%s/embeddings/bench/%s.npy", c->dir, name);
    snprintf(txt, sizeof txt, "%s/%s.txt", c->dir, name);
    char *argv[] = {(char *)c->embed, "--db", (char *)c->db, "--model", "bench",
                    "--import",       npy,    "--ids",       txt,       NULL};
    return run_child(c, what, argv, NULL);
}

static int dedup(const config *c, const char *extra, const char *what)
{
    char *argv[] = {(char *)c->dedup, "--db",        (char *)c->db, "--model",
                    "bench",          (char *)extra, NULL};
    int rc = run_child(c, what, argv, NULL);
    sqlite3 *db;
    sqlite3_stmt *st;
    if (rc == 0 && sqlite3_open(c->db, &db) == SQLITE_OK) {
        if (sqlite3_prepare_v2(db,
                               "SELECT json_extract(counts, '$.seconds') FROM runs WHERE stage = "
                               "'dedup' ORDER BY id DESC LIMIT 1",
                               -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
            printf("    phases (s): %s\n", (const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
        sqlite3_close(db);
    }
    return rc;
}

/* comp[i]: the component (kept row) of pool row i from v_duplicates; a digest of the whole view
 * in *digest (to compare two runs). */
static int read_components(const config *c, int64_t *comp, uint64_t *digest)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    if (sqlite3_open(c->db, &db) != SQLITE_OK)
        return -1;
    int rc = sqlite3_prepare_v2(db,
                                "SELECT image_id, component, kept, COALESCE(reason, ''), "
                                "COALESCE(similarity, 0) FROM v_duplicates ORDER BY image_id",
                                -1, &st, NULL) == SQLITE_OK
                 ? 0
                 : -1;
    uint64_t h = 0xcbf29ce484222325ull;
    while (rc == 0 && sqlite3_step(st) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0), cm = sqlite3_column_int64(st, 1);
        if (id >= 1 && id <= c->n && cm >= 1 && cm <= c->n)
            comp[id - 1] = cm - 1;
        double sim = sqlite3_column_double(st, 4);
        const unsigned char *r = sqlite3_column_text(st, 3);
        uint64_t v[4] = {(uint64_t)id, (uint64_t)cm, (uint64_t)sqlite3_column_int(st, 2), 0};
        memcpy(&v[3], &sim, sizeof sim);
        for (int j = 0; j < 4; j++)
            h = (h ^ v[j]) * 0x100000001b3ull;
        for (; r && *r; r++)
            h = (h ^ *r) * 0x100000001b3ull;
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    *digest = h;
    return rc;
}

/* Whole-pool check against the planted structure: planted copies joined to their parent, and
 * rows whose component root is neither their group's first row nor themselves (wrong merges). */
static void report_planted(const config *c, const int64_t *comp)
{
    int64_t planted = 0, joined = 0, wrong = 0;
    for (int64_t i = 0; i < c->n; i++) {
        int64_t p = planted_parent(i), want = p >= 0 ? p : i;
        planted += p >= 0;
        joined += p >= 0 && comp[i] == p;
        wrong += comp[i] != want && comp[i] != i;
    }
    printf("planted copies joined %lld / %lld (%.3f%%); rows in a wrong component %lld\n",
           (long long)joined, (long long)planted, 100.0 * (double)joined / (double)planted,
           (long long)wrong);
}

/* Exact search of the sample rows against the whole pool (sgemm, blocks of pool rows): every
 * neighbour above the threshold among each sample row's K best; recall = those the stage put in
 * the same component, for all of them and for the planted pairs. */
static int report_exact(const config *c, const float *x, const int64_t *comp)
{
    int64_t q = c->sample < c->n ? c->sample : c->n, block = 8192;
    float *qx = malloc((size_t)q * c->d * sizeof *qx);
    float *s = malloc((size_t)q * block * sizeof *s);
    int64_t *rows = malloc((size_t)q * sizeof *rows);
    int *cnt = calloc((size_t)q, sizeof *cnt);
    int64_t *hit = malloc((size_t)q * 256 * sizeof *hit);
    if (!qx || !s || !rows || !cnt || !hit)
        return -1;
    for (int64_t j = 0; j < q; j++) {
        rows[j] = (j * (c->n / q) + (j % 5)) % c->n; /* every residue mod 5: copies and parents */
        memcpy(qx + (size_t)j * c->d, x + (size_t)rows[j] * c->d, (size_t)c->d * sizeof *qx);
    }
    double t0 = lvd_kit_now();
    for (int64_t b0 = 0; b0 < c->n; b0 += block) {
        int64_t nb = c->n - b0 < block ? c->n - b0 : block;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)q, (int)nb, c->d, 1.0f, qx, c->d,
                    x + (size_t)b0 * c->d, c->d, 0.0f, s, (int)nb);
        for (int64_t j = 0; j < q; j++)
            for (int64_t r = 0; r < nb; r++)
                if (s[(size_t)j * nb + r] > THRESHOLD && b0 + r != rows[j] && cnt[j] < 256)
                    hit[(size_t)j * 256 + cnt[j]++] = b0 + r;
    }
    int64_t edges = 0, joined = 0, planted = 0, planted_joined = 0, capped = 0;
    for (int64_t j = 0; j < q; j++) {
        capped += cnt[j] > K;
        for (int h = 0; h < cnt[j] && h < K; h++) {
            int64_t a = rows[j], b = hit[(size_t)j * 256 + h];
            int is_planted = planted_parent(a) == b || planted_parent(b) == a;
            edges++;
            joined += comp[a] == comp[b];
            planted += is_planted;
            planted_joined += is_planted && comp[a] == comp[b];
        }
    }
    printf("exact search of %lld sample rows (%.1f s): %lld neighbours above %.2f (%lld rows with "
           "more than k), %lld of them planted copies\n",
           (long long)q, lvd_kit_now() - t0, (long long)edges, THRESHOLD, (long long)capped,
           (long long)planted);
    printf("recall against exact search: planted copies %lld / %lld (%.3f%%), all neighbours "
           "%lld / %lld (%.3f%%)\n",
           (long long)planted_joined, (long long)planted,
           planted ? 100.0 * (double)planted_joined / (double)planted : 100.0, (long long)joined,
           (long long)edges, edges ? 100.0 * (double)joined / (double)edges : 100.0);
    free(qx);
    free(s);
    free(rows);
    free(cnt);
    free(hit);
    return 0;
}

/* Eval images planted near pool images: is each target removed by decontamination? */
static void report_eval(const config *c)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    if (sqlite3_open(c->db, &db) != SQLITE_OK)
        return;
    int64_t planted = 0, removed = 0, total = 0;
    if (sqlite3_prepare_v2(db, "SELECT reason = 'eval' FROM dedup WHERE image_id = ?1", -1, &st,
                           NULL) == SQLITE_OK) {
        for (int64_t e = 0; e < c->n_eval; e++) {
            int64_t t = eval_target(c, e);
            if (t < 0)
                continue;
            planted++;
            sqlite3_bind_int64(st, 1, t + 1);
            removed += sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 1;
            sqlite3_reset(st);
        }
        sqlite3_finalize(st);
    }
    if (sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM dedup WHERE reason = 'eval'", -1, &st, NULL) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        total = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    printf("decontamination: %lld / %lld eval images planted near a pool image removed it; %lld "
           "pool images removed in all\n",
           (long long)removed, (long long)planted, (long long)total);
}

static int run(config *c)
{
    bench_print_load("at start");
    printf("pool %lld x %d (second batch %lld), eval %lld, seeds %lld, in %s\n", (long long)c->n,
           c->d, (long long)c->n_new, (long long)c->n_eval, (long long)c->n_seeds, c->dir);
    float *x = malloc((size_t)c->n * c->d * sizeof *x);
    int64_t *comp = malloc((size_t)c->n * sizeof *comp);
    if (!x || !comp || planted_rows(x, c->n, c->d)) {
        fprintf(stderr, "bench: out of memory for %lld rows\n", (long long)c->n);
        return -1;
    }
    double t0 = lvd_kit_now();
    if (make_manifest(c) || write_embeddings(c, x))
        return -1;
    printf("manifest rows and .npy files written in %.1f s\n", lvd_kit_now() - t0);
    if (import(c, "base", "lvd-embed --import (first)") ||
        dedup(c, NULL, "lvd-dedup (first batch)") ||
        import(c, "new", "lvd-embed --import (second)") ||
        dedup(c, NULL, "lvd-dedup (incremental)"))
        return -1;
    uint64_t inc_digest, full_digest;
    if (read_components(c, comp, &inc_digest))
        return -1;
    report_planted(c, comp);
    report_eval(c);
    if (report_exact(c, x, comp))
        return -1;
    if (c->check_full) {
        if (dedup(c, "--full", "lvd-dedup --full") || read_components(c, comp, &full_digest))
            return -1;
        printf("incremental result %s the full rerun's (v_duplicates digest %016llx vs %016llx)\n",
               inc_digest == full_digest ? "EQUALS" : "DIFFERS FROM",
               (unsigned long long)inc_digest, (unsigned long long)full_digest);
    }
    char *argv[] = {(char *)c->retrieve, "--db", c->db, "--model", "bench",
                    "--per-seed",        "4",    NULL};
    if (run_child(c, "lvd-retrieve --per-seed 4", argv, NULL))
        return -1;
    struct stat st;
    if (stat(c->db, &st) == 0)
        printf("manifest %.0f MiB\n", (double)st.st_size / 1048576.0);
    bench_print_load("at end");
    free(x);
    free(comp);
    return 0;
}

static int parse(int argc, char **argv, config *c)
{
    static const struct option opts[] = {{"n", required_argument, 0, 'n'},
                                         {"new", required_argument, 0, 'w'},
                                         {"d", required_argument, 0, 'd'},
                                         {"eval", required_argument, 0, 'e'},
                                         {"seeds", required_argument, 0, 's'},
                                         {"sample", required_argument, 0, 'q'},
                                         {"dir", required_argument, 0, 'D'},
                                         {"check-full", no_argument, 0, 'c'},
                                         {"keep", no_argument, 0, 'k'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'n':
            c->n = atoll(optarg);
            break;
        case 'w':
            c->n_new = atoll(optarg);
            break;
        case 'd':
            c->d = atoi(optarg);
            break;
        case 'e':
            c->n_eval = atoll(optarg);
            break;
        case 's':
            c->n_seeds = atoll(optarg);
            break;
        case 'q':
            c->sample = atoll(optarg);
            break;
        case 'D':
            snprintf(c->dir, sizeof c->dir, "%s", optarg);
            break;
        case 'c':
            c->check_full = 1;
            break;
        case 'k':
            c->keep = 1;
            break;
        default:
            return -1;
        }
    }
    if (argc - optind != 3 || c->n < 100 || c->n_new < 0 || c->n_new >= c->n || c->d < 4 ||
        c->n_eval < 0 || c->n_seeds < 1 || c->sample < 1)
        return -1;
    c->embed = argv[optind];
    c->dedup = argv[optind + 1];
    c->retrieve = argv[optind + 2];
    return 0;
}

int main(int argc, char **argv)
{
    config c = {
        .n = 100000, .n_new = 5000, .d = 384, .n_eval = 10000, .n_seeds = 10000, .sample = 1000};
    if (parse(argc, argv, &c)) {
        fprintf(stderr,
                "usage: lvd-bench-dedup-stage LVD-EMBED LVD-DEDUP LVD-RETRIEVE [--n N (100000)]\n"
                "       [--new M (5000)] [--d D (384)] [--eval E (10000)] [--seeds S (10000)]\n"
                "       [--sample Q (1000)] [--dir DIR] [--check-full] [--keep]\n");
        return 2;
    }
    if (!c.dir[0]) {
        snprintf(c.dir, sizeof c.dir, "/tmp/lvd-bench-dedup-XXXXXX");
        if (!mkdtemp(c.dir)) {
            fprintf(stderr, "bench: cannot create a folder: %s\n", strerror(errno));
            return 1;
        }
    } else if (mkdir(c.dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "bench: %s: %s\n", c.dir, strerror(errno));
        return 1;
    }
    snprintf(c.db, sizeof c.db, "%s/bench.db", c.dir);
    if (access(c.db, F_OK) == 0) {
        fprintf(stderr, "bench: %s exists; give an empty --dir\n", c.db);
        return 1;
    }
    int rc = run(&c);
    if (!c.keep) {
        char cmd[700];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", c.dir);
        if (system(cmd) != 0)
            fprintf(stderr, "bench: could not remove %s\n", c.dir);
    }
    return rc ? 1 : 0;
}
