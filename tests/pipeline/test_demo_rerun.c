/* The main job (pipelines/demo.sh) end to end at a toy size, twice: the first run trains,
 * calibrates, curates, pretrains on the curated set, distills, evaluates, reports and writes
 * its summary; the second runs no step at all (every lvd-run step is skipped: the training
 * steps too, although the models, embeddings and curation added after them change the
 * manifest) and records no second summary; a third with another retrieval option reruns the
 * retrieval and the trainings on its curated set only. Skipped when Fashion-MNIST or the MATE
 * photos (the Debian packages the demo reads) are absent. Args: demo.sh, lvd-run (the build folder
 * is LVD_BUILD_ROOT). */
#include <sqlite3.h>
#include <sys/stat.h>

#include "tests/check.h"
#include "tests/pipeline/pipetest.h"

#define FMNIST "/usr/share/datasets/fashion-mnist"
#define MATE   "/usr/share/backgrounds/mate"

/* A tiny ViT and heads, a few images per step, warm-ups of one step: the settings file of the
 * demo (pipelines/demo-settings.ini) at a size that trains in seconds. */
static const char settings[] = "[train]\n"
                               "arch = tiny\n"
                               "dim = 64\n"
                               "depth = 2\n"
                               "layerscale = 0.1\n"
                               "global-size = 28\n"
                               "local-size = 12\n"
                               "local-crops = 2\n"
                               "prototypes = 64\n"
                               "head-hidden = 64\n"
                               "head-bottleneck = 32\n"
                               "batch = 4\n"
                               "lr = 1e-3\n"
                               "lr-scaling = none\n"
                               "epoch-length = 1\n"
                               "warmup-epochs = 1\n"
                               "teacher-temp-warmup-epochs = 1\n"
                               "threads = 1\n"
                               "workers = 1\n"
                               "no-progress\n"
                               "[distill]\n"
                               "arch = tiny\n"
                               "dim = 64\n"
                               "depth = 1\n"
                               "layerscale = 0.1\n"
                               "global-size = 28\n"
                               "local-size = 12\n"
                               "local-crops = 2\n"
                               "batch = 4\n"
                               "lr = 1e-3\n"
                               "lr-scaling = none\n"
                               "epoch-length = 1\n"
                               "warmup-epochs = 1\n"
                               "teacher-temp-warmup-epochs = 1\n"
                               "threads = 1\n"
                               "workers = 1\n"
                               "no-progress\n";

static int64_t query_int(const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    int64_t v = -1;
    if (sqlite3_open_v2("out/demo.db", &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return v;
}

int main(int argc, char **argv)
{
    const char *build = getenv("LVD_BUILD_ROOT");
    if (argc != 3 || !build) {
        fprintf(stderr, "usage: test_demo_rerun DEMO.sh LVD-RUN (LVD_BUILD_ROOT set)\n");
        return 1;
    }
    struct stat st;
    if (stat(FMNIST "/train-images-idx3-ubyte.gz", &st) != 0 || stat(MATE, &st) != 0) {
        printf("SKIP: %s or %s absent (packages dataset-fashion-mnist, mate-backgrounds)\n", FMNIST,
               MATE);
        return 77;
    }
    char *demo = pt_abs(argv[1]);
    pt_scratch("demo");
    pt_write("settings.ini", settings);
    char *settings_path = pt_abs("settings.ini");
    setenv("LVD_BUILD", build, 1);
    setenv("LVD_DEMO_DIR", "out", 1);
    setenv("LVD_DEMO_SETTINGS", settings_path, 1);
    setenv("LVD_DEMO_POOL_SIZE", "60", 1);
    setenv("LVD_DEMO_SEEDS_PER_CLASS", "4", 1);
    setenv("LVD_DEMO_EVAL_SIZE", "30", 1);
    setenv("LVD_DEMO_BANK_PER_CLASS", "3", 1);
    setenv("LVD_DEMO_CROPS_PER_PHOTO", "1", 1);
    setenv("LVD_DEMO_TRAIN_STEPS", "3", 1);
    setenv("LVD_DEMO_CURATED_STEPS", "3", 1);
    setenv("LVD_DEMO_DISTILL_STEPS", "3", 1);
    setenv("LVD_DEMO_CLUSTERS", "2", 1);
    /* A toy model's calibration says little; fixed thresholds keep the toy pool's size known
     * (the calibrated threshold is still computed and printed). */
    setenv("LVD_DEMO_THRESHOLD", "0.9999", 1);
    setenv("LVD_DEMO_EVAL_THRESHOLD", "0.9999", 1);
    unsetenv("LVD_MODEL");
    char *run[] = {"/bin/bash", demo, NULL};

    int rc = pt_run(run);
    CHECK_MSG(rc == 0, "first run: exit status %d", rc);
    int steps = pt_count(pt_output, ": run (never ran)");
    CHECK_MSG(steps >= 20, "first run: %d steps ran", steps);
    CHECK(query_int("SELECT COUNT(*) FROM v_models") == 4);
    CHECK(query_int("SELECT COUNT(DISTINCT model) FROM v_evals WHERE protocol = 'knn'") == 4);
    CHECK(query_int("SELECT COUNT(*) FROM v_runs WHERE stage = 'demo-summary'") == 1);
    CHECK(query_int("SELECT COUNT(*) FROM v_runs WHERE stage IN ('train', 'distill')") == 4);
    CHECK(query_int("SELECT COUNT(*) FROM v_curated WHERE method = 'knn'") > 0);
    CHECK(strstr(pt_read("out/summary.txt"), "retrieval precision per seed class") != NULL);
    CHECK(strstr(pt_read("out/summary.json"), "\"knn\":[{") != NULL);
    CHECK(access("out/report/index.html", F_OK) == 0);
    CHECK(access("out/curated/manifest.jsonl", F_OK) == 0);
    int64_t runs = query_int("SELECT COUNT(*) FROM v_runs");

    rc = pt_run(run);
    CHECK_MSG(rc == 0, "second run: exit status %d", rc);
    CHECK_MSG(pt_count(pt_output, ": run (") == 0, "second run: %d steps ran",
              pt_count(pt_output, ": run ("));
    CHECK(pt_count(pt_output, ": skip (unchanged since run ") == steps);
    CHECK(query_int("SELECT COUNT(*) FROM v_runs") == runs);
    CHECK(query_int("SELECT COUNT(*) FROM v_models") == 4);

    /* Another retrieval gives another curated set: the retrieval and everything trained on
     * its result run again (in folders of their own: a training refuses a checkpoint of other
     * images), the steps before it are skipped. */
    setenv("LVD_DEMO_CLUSTERS", "1", 1);
    rc = pt_run(run);
    CHECK_MSG(rc == 0, "third run: exit status %d", rc);
    CHECK(strstr(pt_output, "retrieve: run (parameters changed)") != NULL);
    CHECK(strstr(pt_output, "train:curated: run (") != NULL);
    CHECK(strstr(pt_output, "distill: run (") != NULL);
    CHECK(strstr(pt_output, "train: skip (unchanged since run ") != NULL);
    CHECK(strstr(pt_output, "dedup: skip (unchanged since run ") != NULL);

    free(settings_path);
    free(demo);
    return check_finish();
}
