/* lvd-retrieve under `mpirun -np 2` equals one process (curate/stages/kmeans_group.h): on
 * embeddings of known structure (d = 64; groups of 30, 12 and 6 pool images, two subgroups
 * each, fixed-seed noise; 8 seeds near two of the groups), --clusters and --hierarchical (with
 * resampling) with float64 sums give the same curated rows (similarity to 6 decimals) and the
 * same v_hkmeans clusters as one process, each invocation is one run, ok; a run that fails on
 * rank 0 before the k-means (too many clusters) and a usage error both end every rank.
 * Usage: test_retrieve_mpi LVD-FETCH LVD-DEDUP LVD-RETRIEVE MPIRUN */
#include "tests/check_run.h"
#include "tests/stages/groups_test.h"

#define N_SEEDS 8

static const char *fetch_exe, *dedup_exe, *retrieve_exe, *mpirun;
static char dir[256], db_path[320];
static float rows[(GT_N_POOL + N_SEEDS) * GT_DIM];
static int64_t ids[GT_N_POOL + N_SEEDS];

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

static void setup(sqlite3 *db)
{
    char path[512];
    gt_write_pool(dir, rows, NULL);
    for (int s = 0; s < N_SEEDS; s++) {
        snprintf(path, sizeof path, "%s/seed/s%d.jpg", dir, s);
        CHECK(st_write_jpeg(path, 40, 36, 900 + (uint32_t)s) == 0);
        gt_vector(s % 2, s / 4, 900 + (uint64_t)s, rows + (GT_N_POOL + s) * GT_DIM);
    }
    CHECK(st_fetch(fetch_exe, dir, db_path, "web", "pool", "pool", NULL, NULL) == 0);
    CHECK(st_fetch(fetch_exe, dir, db_path, "seeds", "seed", "seed", NULL, NULL) == 0);
    gt_pool_ids(db, ids);
    for (int s = 0; s < N_SEEDS; s++) {
        char name[16];
        snprintf(name, sizeof name, "s%d.jpg", s);
        ids[GT_N_POOL + s] = st_image_id(db, name);
        CHECK(ids[GT_N_POOL + s] > 0);
    }
    gt_embed_dedup(db, dedup_exe, dir, db_path, rows, ids, GT_N_POOL + N_SEEDS);
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
    char *scratch = check_tmpdir("lvd-retrieve-mpi");
    snprintf(dir, sizeof dir, "%s", scratch);
    free(scratch);
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
        check_rmtree(dir);
    }
    return check_finish();
}
