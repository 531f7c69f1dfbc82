/* The dedup stage over its partition (curate/stages/dedup_stage.h), through the C API on a manifest
 * made with SQL: 6000 pool images of 128 dims with planted near-copy groups, clusters larger than k
 * and bitwise-identical copies, embedded in two batches interleaved by image id, with 32 lists of
 * which 4 are searched. The incremental second run equals a --full run bitwise (v_duplicates);
 * only the newest state file is left; planted copies are found as the exact search (every list)
 * finds them, with no wrong merge; eval images near pool images remove their components with the
 * best similarity; a missing or corrupt state file makes the run full and says why. */
#include "curate/stages/dedup_stage.h"
#include "store/npy.h"
#include "tests/check.h"
#include "tests/index/synth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define D        128
#define N        6000
#define GROUPS   150
#define BIG_SIZE 30
#define EVAL     20
#define SEED     21

static float x[(size_t)N * D], ev[(size_t)EVAL * D];
static int64_t group[N]; /* planted group's first row, or the row itself */
static char dir[64], db_path[128];

static float *row(int64_t i)
{
    return x + (size_t)i * D;
}

/* Random rows (cosine below 0.6 to each other) and planted groups at scattered rows: GROUPS groups
 * of 2 .. 4 at cosine 0.95 to a base, two clusters of BIG_SIZE at 0.99 (more neighbours than k),
 * the second of bitwise-identical rows. Eval row e sits at cosine 0.8 to pool row 97 e + 5. */
static void build(void)
{
    static int64_t perm[N];
    for (int64_t i = 0; i < N; i++) {
        perm[i] = i;
        group[i] = i;
        synth_unit(row(i), D, SEED, (uint64_t)i);
    }
    for (int64_t i = N - 1; i > 0; i--) {
        int64_t j = (int64_t)(synth_uniform(SEED, (uint64_t)i, 1) * (double)(i + 1)), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    float base[D];
    int64_t next = 0;
    for (int g = 0; g < GROUPS + 2; g++) {
        int size = g < GROUPS ? 2 + g % 3 : BIG_SIZE;
        synth_unit(base, D, SEED + 1, (uint64_t)g);
        int64_t first = perm[next];
        for (int m = 0; m < size; m++) {
            int64_t r = perm[next + m];
            first = r < first ? r : first;
            if (g == GROUPS + 1 && m > 0)
                memcpy(row(r), row(perm[next]), D * sizeof(float));
            else
                synth_at_cos(row(r), base, D, g < GROUPS ? 0.95 : 0.99, SEED + 2,
                             (uint64_t)(next + m));
        }
        for (int m = 0; m < size; m++)
            group[perm[next + m]] = first;
        next += size;
    }
    for (int e = 0; e < EVAL; e++)
        synth_at_cos(ev + (size_t)e * D, row(97 * e + 5), D, 0.8, SEED + 3, (uint64_t)e);
}

/* Image i of the pool has image id i + 1 (the eval images come after). */
static int first_batch(int64_t i)
{
    return synth_uniform(SEED, (uint64_t)i, 2) > 0.25;
}

static void exec_sql(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        fprintf(stderr, "sql: %s: %s\n", msg, sql);
        exit(1);
    }
}

static void make_manifest(void)
{
    lvd_manifest *m;
    lvd_error err;
    CHECK(lvd_manifest_open(db_path, &m, &err) == 0);
    sqlite3 *db = lvd_manifest_db(m);
    exec_sql(db, "BEGIN; INSERT INTO sources (id, name, role) VALUES (1, 'web', 'pool'), "
                 "(2, 'bench', 'eval'); INSERT INTO models (id, name, arch, dim, features) "
                 "VALUES (1, 'synth', 'external', 128, 'external')");
    sqlite3_stmt *st;
    CHECK(sqlite3_prepare_v2(db,
                             "INSERT INTO images (id, source_id, url, status) VALUES (?1, ?2, "
                             "'file:///x/' || ?1, 'ok')",
                             -1, &st, NULL) == SQLITE_OK);
    for (int64_t i = 1; i <= N + EVAL; i++) {
        sqlite3_bind_int64(st, 1, i);
        sqlite3_bind_int(st, 2, i <= N ? 1 : 2);
        CHECK(sqlite3_step(st) == SQLITE_DONE);
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    exec_sql(db, "COMMIT");
    lvd_manifest_close(m);
}

/* Records the embeddings of pool rows with first_batch(i) == batch (and, in batch 1, of the eval
 * images) as one .npy file. */
static void add_embeddings(int batch)
{
    static float rows[(size_t)(N + EVAL) * D];
    static int64_t ids[N + EVAL];
    int64_t n = 0;
    for (int64_t i = 0; i < N; i++)
        if (first_batch(i) == batch) {
            memcpy(rows + (size_t)n * D, row(i), D * sizeof(float));
            ids[n++] = i + 1;
        }
    for (int e = 0; batch == 1 && e < EVAL; e++) {
        memcpy(rows + (size_t)n * D, ev + (size_t)e * D, D * sizeof(float));
        ids[n++] = N + 1 + e;
    }
    char path[256], sql[512];
    snprintf(path, sizeof path, "%s/emb%d.npy", dir, batch);
    int64_t shape[2] = {n, D};
    lvd_error err;
    CHECK(lvd_npy_write(path, rows, 2, shape, &err) == 0);
    lvd_manifest *m;
    CHECK(lvd_manifest_open(db_path, &m, &err) == 0);
    sqlite3 *db = lvd_manifest_db(m);
    snprintf(sql, sizeof sql,
             "BEGIN; INSERT INTO embedding_files (id, model_id, path, rows, cols) VALUES (%d, 1, "
             "'%s', %lld, %d)",
             batch + 1, path, (long long)n, D);
    exec_sql(db, sql);
    for (int64_t r = 0; r < n; r++) {
        snprintf(sql, sizeof sql,
                 "INSERT INTO embeddings (image_id, model_id, file_id, row) VALUES (%lld, 1, %d, "
                 "%lld)",
                 (long long)ids[r], batch + 1, (long long)r);
        exec_sql(db, sql);
    }
    exec_sql(db, "COMMIT");
    lvd_manifest_close(m);
}

static int run(const lvd_dedup_stage_options *o, lvd_dedup_stage_counts *c)
{
    lvd_manifest *m;
    lvd_error err = {0};
    if (lvd_manifest_open(db_path, &m, &err))
        return -1;
    int rc = lvd_dedup_stage_run(m, o, c, &err);
    if (rc)
        fprintf(stderr, "dedup stage: %s\n", err.msg);
    lvd_manifest_close(m);
    return rc;
}

/* v_duplicates as one string. */
static char *dump(void)
{
    sqlite3 *db;
    CHECK(sqlite3_open(db_path, &db) == SQLITE_OK);
    sqlite3_stmt *st;
    CHECK(sqlite3_prepare_v2(db,
                             "SELECT image_id, component, kept, reason, printf('%.7f', "
                             "similarity) FROM v_duplicates ORDER BY image_id",
                             -1, &st, NULL) == SQLITE_OK);
    size_t cap = 1 << 20, len = 0;
    char *out = malloc(cap);
    out[0] = '\0';
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (len + 256 > cap)
            out = realloc(out, cap *= 2);
        const char *reason = (const char *)sqlite3_column_text(st, 3);
        len += (size_t)snprintf(out + len, cap - len, "%lld|%lld|%d|%s|%s\n",
                                (long long)sqlite3_column_int64(st, 0),
                                (long long)sqlite3_column_int64(st, 1), sqlite3_column_int(st, 2),
                                reason ? reason : "-", (const char *)sqlite3_column_text(st, 4));
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
}

/* The component of every pool row (image i + 1) from v_duplicates, as a row. */
static void components(int64_t *comp)
{
    sqlite3 *db;
    CHECK(sqlite3_open(db_path, &db) == SQLITE_OK);
    sqlite3_stmt *st;
    CHECK(sqlite3_prepare_v2(db, "SELECT image_id, component FROM v_duplicates", -1, &st, NULL) ==
          SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW)
        comp[sqlite3_column_int64(st, 0) - 1] = sqlite3_column_int64(st, 1) - 1;
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* State files beside the manifest. */
static int count_states(char *last, size_t size)
{
    int n = 0;
    for (int run = 1; run < 40; run++) {
        char path[256];
        snprintf(path, sizeof path, "%s.dedup-m1-r%d.ivf", db_path, run);
        if (access(path, F_OK) == 0) {
            n++;
            snprintf(last, size, "%s", path);
        }
    }
    return n;
}

/* Planted rows joined to their group, and rows in a component with another group. */
static void quality(const int64_t *comp, int64_t *joined, int64_t *wrong)
{
    *joined = *wrong = 0;
    for (int64_t i = 0; i < N; i++) {
        *wrong += group[comp[i]] != group[i];
        *joined += group[i] != i && comp[i] == comp[group[i]];
    }
}

static void test_stage(void)
{
    lvd_dedup_stage_options o;
    lvd_dedup_stage_defaults(&o);
    o.model = "synth";
    o.k = 8;
    o.nlist = 32;
    o.nprobe = 4;
    lvd_dedup_stage_counts c;
    add_embeddings(1);
    CHECK(run(&o, &c) == 0);
    CHECK(c.incremental == 0 && c.refitted == 1 && c.nlist == 32 && c.nprobe == 4);
    CHECK(c.eval == EVAL && c.pool == c.new_images && c.pool < N);
    add_embeddings(0);
    CHECK(run(&o, &c) == 0);
    CHECK_MSG(c.incremental == 1 && c.refitted == 0, "second run not incremental: %s", c.why);
    CHECK(c.pool == N && c.new_images > 1000 && c.new_images < 2000);
    char *inc = dump(), last[256];
    CHECK(count_states(last, sizeof last) == 1);
    o.full = 1;
    CHECK(run(&o, &c) == 0);
    CHECK(c.incremental == 0 && c.refitted == 0 && c.new_images == N);
    CHECK(strstr(c.why, "full run") != NULL);
    char *full = dump();
    CHECK_MSG(strcmp(inc, full) == 0, "incremental and full results differ");
    CHECK(count_states(last, sizeof last) == 1);

    /* Planted structure against the exact search (every list searched). */
    static int64_t comp[N], exact[N];
    components(comp);
    o.full = 0;
    o.nprobe = 32;
    CHECK(run(&o, &c) == 0);
    CHECK(c.incremental == 0 && c.refitted == 0);
    components(exact);
    int64_t joined, wrong, joined_exact, wrong_exact, planted = 0;
    for (int64_t i = 0; i < N; i++)
        planted += group[i] != i;
    quality(comp, &joined, &wrong);
    quality(exact, &joined_exact, &wrong_exact);
    printf("planted rows %lld: joined %lld with 4 of 32 lists, %lld with all; wrong merges %lld, "
           "%lld\n",
           (long long)planted, (long long)joined, (long long)joined_exact, (long long)wrong,
           (long long)wrong_exact);
    CHECK(joined_exact == planted && wrong == 0 && wrong_exact == 0);
    CHECK(joined * 100 >= joined_exact * 99);

    /* Decontamination: every eval image's pool neighbour is removed with its whole component, the
     * similarity being the best found (0.8 by construction, within float rounding). */
    sqlite3 *db;
    CHECK(sqlite3_open(db_path, &db) == SQLITE_OK);
    for (int e = 0; e < EVAL; e++) {
        char sql[256];
        snprintf(sql, sizeof sql,
                 "SELECT reason = 'eval' AND similarity > 0.7999 AND similarity < 0.81 FROM "
                 "v_duplicates WHERE image_id = %d",
                 97 * e + 5 + 1);
        sqlite3_stmt *st;
        CHECK(sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK);
        CHECK_MSG(sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 1,
                  "eval image %d did not remove pool image %d", e, 97 * e + 6);
        sqlite3_finalize(st);
    }
    CHECK(c.eval_removed >= EVAL);
    sqlite3_close(db);

    /* Without its state file, or with a corrupt one, the next run is full and says why. */
    o.nprobe = 4;
    CHECK(count_states(last, sizeof last) == 1);
    CHECK(unlink(last) == 0);
    CHECK(run(&o, &c) == 0);
    CHECK(c.incremental == 0 && c.refitted == 1 && strstr(c.why, "cannot open") != NULL);
    CHECK(count_states(last, sizeof last) == 1);
    FILE *f = fopen(last, "r+b");
    CHECK(f && fputc('X', f) != EOF);
    if (f)
        fclose(f);
    CHECK(run(&o, &c) == 0);
    CHECK_MSG(c.incremental == 0 && strstr(c.why, "not an lvd dedup state") != NULL, "%s", c.why);
    CHECK(run(&o, &c) == 0);
    CHECK(c.incremental == 1 && c.new_images == 0);
    components(comp);
    quality(comp, &joined, &wrong);
    CHECK(wrong == 0 && joined * 100 >= joined_exact * 99);
    free(inc);
    free(full);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/lvd-dedup-inc-XXXXXX");
    if (!mkdtemp(dir)) {
        fprintf(stderr, "cannot create a temporary folder\n");
        return 1;
    }
    snprintf(db_path, sizeof db_path, "%s/m.db", dir);
    build();
    make_manifest();
    test_stage();
    if (check_failures == 0) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", dir);
    }
    return check_finish();
}
