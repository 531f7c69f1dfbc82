/* The shipped pipelines (pipelines/demo*.ini, claim*.ini, lvd142m.ini) load and plan: lvd-run
 * --dry-run on each lists every step with its command and creates nothing. Skipped when a stage
 * executable is not built. Args: lvd-run, then each pipeline file. */
#include <sys/stat.h>

#include "tests/check.h"
#include "tests/pipeline/pipetest.h"

/* The number of step sections ([...] lines other than [pipeline]) of an INI file. */
static int count_steps(const char *path)
{
    char line[1024];
    int n = 0;
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f))
        n += line[0] == '[' && strncmp(line, "[pipeline]", 10) != 0;
    if (f)
        fclose(f);
    return n;
}

int main(int argc, char **argv)
{
    const char *build = getenv("LVD_BUILD_ROOT");
    if (argc < 3 || !build) {
        fprintf(stderr,
                "usage: test_pipeline_files LVD-RUN PIPELINE.ini... (LVD_BUILD_ROOT set)\n");
        return 1;
    }
    char *lvd_run = pt_abs(argv[1]);
    char stage_path[8192];
    snprintf(
        stage_path, sizeof stage_path,
        "%s/curate/fetch:%s/curate/pipeline:%s/curate/mnist:%s/curate/stages:%s/embed:%s/train",
        build, build, build, build, build, build);
    setenv("LVD_STAGE_PATH", stage_path, 1);
    setenv("LVD_DATA", "/nonexistent", 1);
    setenv("LVD_MODEL", "/nonexistent/model.pth", 1);
    setenv("LVD_FMNIST", "/nonexistent/fashion-mnist", 1);
    setenv("LVD_MATE", "/nonexistent/mate", 1);
    setenv("LVD_DEMO_MODEL", "m", 1);
    setenv("LVD_DEMO_RESIZE", "112", 1);
    setenv("LVD_DEMO_CROP", "112", 1);
    setenv("LVD_DEMO_THRESHOLD", "0.95", 1);
    setenv("LVD_DEMO_EVAL_THRESHOLD", "0.9", 1);
    setenv("LVD_DEMO_TRAIN_MINUTES", "1", 1);
    setenv("LVD_DEMO_TRAIN_STEPS", "100", 1);
    setenv("LVD_DEMO_SETTINGS", "/nonexistent/settings.ini", 1);
    setenv("LVD_DEMO_POOL_SIZE", "20", 1);
    setenv("LVD_DEMO_SEEDS_PER_CLASS", "2", 1);
    setenv("LVD_DEMO_EVAL_SIZE", "10", 1);
    setenv("LVD_DEMO_BANK_PER_CLASS", "2", 1);
    setenv("LVD_DEMO_CROPS_PER_PHOTO", "2", 1);
    setenv("LVD_DEMO_CLUSTERS", "2", 1);
    setenv("LVD_DEMO_CURATED_STEPS", "100", 1);
    setenv("LVD_DEMO_CURATED_MINUTES", "1", 1);
    setenv("LVD_DEMO_DISTILL_STEPS", "100", 1);
    setenv("LVD_DEMO_DISTILL_MINUTES", "1", 1);
    setenv("LVD_DEMO_CURATED_MODEL", "m2", 1);
    setenv("LVD_DEMO_DISTILLED_MODEL", "m3", 1);
    setenv("LVD_DEMO_INIT_MODEL", "m4", 1);
    setenv("LVD_DEMO_RUNS", "runs/m-0", 1);
    setenv("LVD_CLAIM_ICONS", "/nonexistent/icons", 1);
    setenv("LVD_CLAIM_POOL_SIZE", "20", 1);
    setenv("LVD_CLAIM_STEPS", "100", 1);
    setenv("LVD_CLAIM_MINUTES", "1", 1);
    setenv("LVD_CLAIM_THRESHOLD", "0.9", 1);
    char *files[32];
    int n = argc - 2 < 32 ? argc - 2 : 32;
    for (int i = 0; i < n; i++)
        files[i] = pt_abs(argv[i + 2]);
    pt_scratch("files");
    int skipped = 0;
    for (int i = 0; i < n; i++) {
        char *args[] = {lvd_run, files[i], "--db", "x.db", "--dry-run", NULL};
        int rc = pt_run(args);
        if (rc != 0 && strstr(pt_output, "unknown stage") && strstr(pt_output, "no executable")) {
            printf("SKIP part: %s needs a stage that is not built\n", files[i]);
            skipped++;
            continue;
        }
        CHECK_MSG(rc == 0, "%s: exit status %d", files[i], rc);
        int steps = pt_count(pt_output, ": run (never ran)\n");
        CHECK_MSG(steps > 0 && steps == count_steps(files[i]), "%s: %d steps planned", files[i],
                  steps);
        CHECK(pt_count(pt_output, "\n        /") == steps);
        CHECK(access("x.db", F_OK) != 0);
    }
    for (int i = 0; i < n; i++)
        free(files[i]);
    free(lvd_run);
    if (skipped == n)
        return 77;
    return check_finish();
}
