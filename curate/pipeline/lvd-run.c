/* lvd-run: runs the steps of a pipeline file, skipping those already done. */
#include <stdio.h>

#include "curate/pipeline/pipeline.h"
#include "kit/kit.h"

static const char help[] =
    "PIPELINE.ini [--db DB] [--from STEP] [--dry-run]\n"
    "\n"
    "Runs the steps of PIPELINE.ini in order. Step [STAGE] or [STAGE:NAME] runs the\n"
    "executable lvd-STAGE (looked up in $LVD_STAGE_PATH, beside lvd-run, then on $PATH)\n"
    "as: lvd-STAGE ARGS... --db DB --key value ... where each `key = value` line gives\n"
    "`--key value` (`-k value` for a one-letter key; repeated keys repeat), a line `key`\n"
    "or `key =` gives the flag `--key`, `args = X` a positional argument, and\n"
    "`reads = FACTS` the manifest state the step depends on (images[:SOURCE]\n"
    "embeddings[:MODEL] models[:NAME] dedup[:MODEL] curated[:MODEL] or none; default by\n"
    "stage, see curate/pipeline/pipeline.h).\n"
    "Values may use ${VAR}. Paths are relative to the working directory.\n"
    "\n"
    "A step is skipped when its last run succeeded and its command line, the files and\n"
    "folders it names (size and mtime, recursively, bounded) and the manifest facts it\n"
    "reads are those recorded after that run. Each run is recorded in the manifest's\n"
    "runs table as stage 'pipeline:<step>'. A failing step stops the pipeline.";

typedef struct args {
    lvd_pipeline_run_opts o;
    const char *const *file;
} args;

static int run(lvd_manifest *unused, void *ctx, lvd_error *err)
{
    (void)unused;
    args *a = ctx;
    lvd_pipeline *p;
    if (lvd_pipeline_load(a->file[0], &p, err) != 0)
        return -1;
    if (!a->o.db)
        a->o.db = p->db;
    int rc = 0;
    if (!a->o.db)
        rc = lvd_kit_usage_error("lvd-run", "no manifest: give --db DB or db = DB in [pipeline]");
    else if (lvd_pipeline_run(p, &a->o, err) != 0)
        rc = -1;
    lvd_pipeline_free(p);
    return rc;
}

int main(int argc, char **argv)
{
    args a = {.o = {.out = stdout}};
    const lvd_kit_opt opts[] = {
        LVD_OPT_STR("db", "DB", a.o.db, "manifest database",
                    .def = "db in the file's [pipeline] section"),
        LVD_OPT_STR("from", "STEP", a.o.from,
                    "run this step (an id, or the first step of a stage) and every\n"
                    "later one, whether changed or not"),
        LVD_OPT_FLAG("dry-run", a.o.dry_run, 1,
                     "print the plan (run or skip, why, the command) and run nothing"),
        LVD_OPT_END,
    };
    const lvd_kit_operands file = {"exactly one PIPELINE file", 1, 1, &a.file, NULL};
    const lvd_kit_cmd cmd = {"lvd-run",        help, opts, run, &a, .db = LVD_KIT_NO_DB,
                             .operands = &file};
    return lvd_kit_main(&cmd, argc, argv);
}
