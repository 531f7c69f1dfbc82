/* lvd-retrieve under `mpirun -np 2` equals one process (curate/stages/kmeans_group.h): on
 * embeddings of known structure (d = 64; groups of 30, 12 and 6 pool images, two subgroups
 * each, fixed-seed noise; 8 seeds near two of the groups), --clusters and --hierarchical (with
 * resampling) with float64 sums give the same curated rows (similarity to 6 decimals) and the
 * same v_hkmeans clusters as one process, each invocation is one run, ok; a run that fails on
 * rank 0 before the k-means (too many clusters) and a usage error both end every rank.
 * Usage: test_retrieve_mpi LVD-FETCH LVD-DEDUP LVD-RETRIEVE MPIRUN */
#include <math.h>

#include "tests/stages/stages_test.h"

#define DIM     64
#define N_POOL  48
#define N_SEEDS 8

static const char *fetch_exe, *dedup_exe, *retrieve_exe, *mpirun;
static char dir[256], db_path[320];
static float rows[(N_POOL + N_SEEDS) * DIM];
static int64_t ids[N_POOL + N_SEEDS];

/* Group g on basis 8g, subgroup s adds 0.5 on basis 8g + 1 + s, noise in [-0.05, 0.05]. */
static void make_vector(int g, int s, uint64_t seed, float *out)
{
    double v[DIM] = {0}, n2 = 0;
    v[8 * g] = 1.0;
    v[8 * g + 1 + s] = 0.5;
    for (int j = 0; j < DIM; j++)
        v[j] += st_noise(seed, j) * 0.1;
    for (int j = 0; j < DIM; j++)
        n2 += v[j] * v[j];
    for (int j = 0; j < DIM; j++)
        out[j] = (float)(v[j] / sqrt(n2));
}

/* lvd-retrieve with extra arguments, under mpirun -np 2 when mpi; returns its exit status. */
static int retrieve(int mpi, char *const extra[])
{
    char *argv[48];
    int n = 0;
    if (mpi) {
        char *pre[] = {(char *)mpirun, "--allow-run-as-root", "--oversubscribe", "-np", "2"};
        for (int i = 0; i < 5; i++)
            argv[n++] = pre[i];
    }
    char *base[] = {(char *)retrieve_exe, "--db", db_path, "--model", "synth"};
    for (int i = 0; i < 5; i++)
        argv[n++] = base[i];
    for (int i = 0; extra[i] && n < 47; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    return st_run(argv, NULL);
}

static int fetch(const char *source, const char *role, const char *folder)
{
    char in[512], out[512];
    snprintf(in, sizeof in, "%s/%s", dir, folder);
    snprintf(out, sizeof out, "%s/shards", dir);
    char *argv[] = {(char *)fetch_exe,
                    "--db",
                    db_path,
                    "--source",
                    (char *)source,
                    "--role",
                    (char *)role,
                    "--out",
                    out,
                    "--no-progress",
                    in,
                    NULL};
    return st_run(argv, NULL);
}

static void setup(sqlite3 *db)
{
    static const int size[3] = {30, 12, 6};
    char path[512];
    snprintf(path, sizeof path, "%s/pool", dir);
    st_mkdir(path);
    snprintf(path, sizeof path, "%s/seed", dir);
    st_mkdir(path);
    int i = 0;
    for (int g = 0; g < 3; g++)
        for (int j = 0; j < size[g]; j++, i++) {
            snprintf(path, sizeof path, "%s/pool/p%02d.jpg", dir, i);
            CHECK(st_write_jpeg(path, 40, 36, (uint32_t)i) == 0);
            make_vector(g, j % 2, (uint64_t)i + 1, rows + i * DIM);
        }
    for (int s = 0; s < N_SEEDS; s++) {
        snprintf(path, sizeof path, "%s/seed/s%d.jpg", dir, s);
        CHECK(st_write_jpeg(path, 40, 36, 900 + (uint32_t)s) == 0);
        make_vector(s % 2, s / 4, 900 + (uint64_t)s, rows + (N_POOL + s) * DIM);
    }
    CHECK(fetch("web", "pool", "pool") == 0);
    CHECK(fetch("seeds", "seed", "seed") == 0);
    CHECK(sqlite3_exec(db,
                       "INSERT INTO models (id, name, arch, dim, features) VALUES (1, "
                       "'synth', 'external', 64, 'external')",
                       NULL, NULL, NULL) == SQLITE_OK);
    for (i = 0; i < N_POOL + N_SEEDS; i++) {
        char name[16];
        if (i < N_POOL)
            snprintf(name, sizeof name, "p%02d.jpg", i);
        else
            snprintf(name, sizeof name, "s%d.jpg", i - N_POOL);
        ids[i] = st_image_id(db, name);
        CHECK(ids[i] > 0);
    }
    snprintf(path, sizeof path, "%s/emb.npy", dir);
    CHECK(st_add_embeddings(db, 1, path, rows, ids, N_POOL + N_SEEDS, DIM) == 0);
    char *argv[] = {(char *)dedup_exe, "--db",        db_path, "--model",
                    "synth",           "--threshold", "0.99",  NULL};
    CHECK(st_run(argv, NULL) == 0);
    CHECK(st_int(db, "SELECT COUNT(*) FROM v_duplicates WHERE kept = 1") == N_POOL);
}

static const char curated_sql[] =
    "SELECT image_id, dataset, method, seed_image_id, rank, round(similarity, 6), cluster FROM "
    "v_curated ORDER BY method, dataset, image_id, seed_image_id";
static const char hkmeans_sql[] =
    "SELECT image_id, dataset, level, cluster FROM v_hkmeans ORDER BY dataset, level, image_id";

/* Runs extra once alone and once under mpirun; the curated set and v_hkmeans must match. */
static void check_same(sqlite3 *db, char *const extra[], const char *what)
{
    CHECK_MSG(retrieve(0, extra) == 0, "%s: one process failed", what);
    char *one = st_dump(db, curated_sql), *one_h = st_dump(db, hkmeans_sql);
    int64_t runs = st_int(db, "SELECT COUNT(*) FROM v_runs");
    CHECK_MSG(retrieve(1, extra) == 0, "%s: mpirun -np 2 failed", what);
    char *two = st_dump(db, curated_sql), *two_h = st_dump(db, hkmeans_sql);
    CHECK(st_int(db, "SELECT COUNT(*) FROM v_runs") == runs + 1);
    CHECK(st_int(db, "SELECT status = 'ok' FROM v_runs ORDER BY id DESC LIMIT 1") == 1);
    CHECK_MSG(strcmp(one, two) == 0, "%s: curated rows differ:\n%s\nvs one process:\n%s", what, two,
              one);
    CHECK_MSG(strcmp(one_h, two_h) == 0, "%s: v_hkmeans differs", what);
    CHECK(strlen(one) > 100);
    free(one);
    free(two);
    free(one_h);
    free(two_h);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: test_retrieve_mpi LVD-FETCH LVD-DEDUP LVD-RETRIEVE MPIRUN\n");
        return 2;
    }
    fetch_exe = argv[1];
    dedup_exe = argv[2];
    retrieve_exe = argv[3];
    mpirun = argv[4];
    snprintf(dir, sizeof dir, "/tmp/lvd-retrieve-mpi-XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    snprintf(db_path, sizeof db_path, "%s/m.db", dir);
    sqlite3 *db;
    CHECK(sqlite3_open(db_path, &db) == SQLITE_OK);
    sqlite3_busy_timeout(db, 60000);
    setup(db);
    char *clusters[] = {"--clusters", "3", "--per-cluster", "5", "--seed", "1",
                        "--redo",     "4", "--float64",     NULL};
    check_same(db, clusters, "--clusters");
    CHECK(st_int(db, "SELECT COUNT(*) FROM v_curated WHERE method = 'cluster'") > 0);
    char *hier[] = {"--hierarchical", "--clusters", "6,3", "--target", "20", "--resample", "1",
                    "--float64",      "--redo",     "2",   NULL};
    check_same(db, hier, "--hierarchical");
    CHECK(st_int(db, "SELECT COUNT(*) FROM v_curated WHERE method = 'hkmeans'") == 20);
    char *too_many[] = {"--clusters", "100", NULL};
    CHECK(retrieve(1, too_many) != 0);
    char *bogus[] = {"--bogus", NULL};
    CHECK(retrieve(1, bogus) != 0);
    sqlite3_close(db);
    if (!check_failures && !getenv("LVD_KEEP")) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "cannot remove %s\n", dir);
    }
    return check_finish();
}
