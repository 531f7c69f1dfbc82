/* lvd-run with the real lvd-idx-export and lvd-fetch on Fashion-MNIST (skipped when the files
 * are absent): a rerun skips both steps even though lvd-fetch writes shards; a larger export
 * reruns the export (parameters) and then the fetch (its input folder changed). Args: lvd-run,
 * lvd-idx-export, lvd-fetch (all in the folders lvd-run searches). */
#include <libgen.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include "tests/check.h"
#include "tests/pipeline/pipetest.h"

#define FMNIST "/usr/share/datasets/fashion-mnist"

static void write_pipeline(int limit)
{
    char text[1024];
    snprintf(text, sizeof text,
             "[pipeline]\n"
             "db = m.db\n"
             "[idx-export:pool]\n"
             "images = " FMNIST "/train-images-idx3-ubyte.gz\n"
             "labels = " FMNIST "/train-labels-idx1-ubyte.gz\n"
             "out = data/pool\n"
             "limit = %d\n"
             "[fetch:pool]\n"
             "source = pool\n"
             "args = data/pool\n"
             "min-side = 16\n"
             "parallel = 4\n"
             "threads = 1\n"
             "no-progress\n",
             limit);
    pt_write("p.ini", text);
}

static int64_t ok_items(void)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    int64_t v = -1;
    if (sqlite3_open("m.db", &db) == SQLITE_OK &&
        sqlite3_prepare_v2(db,
                           "SELECT COUNT(*) FROM v_images WHERE source = 'pool' AND status = 'ok'",
                           -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return v;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: test_pipeline_real LVD-RUN LVD-IDX-EXPORT LVD-FETCH\n");
        return 1;
    }
    struct stat st;
    if (stat(FMNIST, &st) != 0) {
        printf("SKIP: %s absent (package dataset-fashion-mnist)\n", FMNIST);
        return 77;
    }
    char *lvd_run = pt_abs(argv[1]);
    char *export_exe = pt_abs(argv[2]), *fetch_exe = pt_abs(argv[3]);
    char path[8192];
    snprintf(path, sizeof path, "%s:%s", dirname(export_exe), dirname(fetch_exe));
    setenv("LVD_STAGE_PATH", path, 1);
    pt_scratch("real");
    char *run[] = {lvd_run, "p.ini", NULL};

    write_pipeline(30);
    CHECK(pt_run(run) == 0);
    CHECK(pt_count(pt_output, ": run (never ran)") == 2);
    CHECK(ok_items() == 30);
    CHECK(pt_run(run) == 0);
    CHECK(pt_count(pt_output, ": skip (unchanged since run ") == 2);

    write_pipeline(40);
    CHECK(pt_run(run) == 0);
    CHECK(strstr(pt_output, "idx-export:pool: run (parameters changed)") != NULL);
    CHECK(strstr(pt_output, "fetch:pool: run (input data/pool changed)") != NULL);
    CHECK(ok_items() == 40);
    CHECK(pt_run(run) == 0);
    CHECK(pt_count(pt_output, ": skip (unchanged since run ") == 2);

    free(lvd_run);
    free(export_exe);
    free(fetch_exe);
    return check_finish();
}
