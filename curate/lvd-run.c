/* lvd-run: runs the steps of a pipeline file, skipping those already done. */
#include <getopt.h>
#include <stdio.h>

#include "curate/pipeline.h"

static void usage(FILE *f)
{
    fputs("usage: lvd-run PIPELINE.ini [--db DB] [--from STEP] [--dry-run]\n"
          "\n"
          "Runs the steps of PIPELINE.ini in order. Step [STAGE] or [STAGE:NAME] runs the\n"
          "executable lvd-STAGE (looked up in $LVD_STAGE_PATH, beside lvd-run, then on $PATH)\n"
          "as: lvd-STAGE ARGS... --db DB --key value ... where each `key = value` line gives\n"
          "`--key value` (`-k value` for a one-letter key; repeated keys repeat), a line `key`\n"
          "or `key =` gives the flag `--key`, `args = X` a positional argument, and\n"
          "`reads = FACTS` the manifest state the step depends on (images[:SOURCE]\n"
          "embeddings[:MODEL] models[:NAME] dedup[:MODEL] curated[:MODEL] or none; default by\n"
          "stage, see curate/pipeline.h).\n"
          "Values may use ${VAR}. Paths are relative to the working directory.\n"
          "\n"
          "A step is skipped when its last run succeeded and its command line, the files and\n"
          "folders it names (size and mtime, recursively, bounded) and the manifest facts it\n"
          "reads are those recorded after that run. Each run is recorded in the manifest's\n"
          "runs table as stage 'pipeline:<step>'. A failing step stops the pipeline.\n"
          "\n"
          "  --db DB        manifest database (default: db in the file's [pipeline] section)\n"
          "  --from STEP    run this step (an id, or the first step of a stage) and every\n"
          "                 later one, whether changed or not\n"
          "  --dry-run      print the plan (run or skip, why, the command) and run nothing\n"
          "  --help         this text\n",
          f);
}

enum { OPT_DB = 1, OPT_FROM, OPT_DRY_RUN, OPT_HELP };

static const struct option long_opts[] = {
    {"db", required_argument, NULL, OPT_DB},
    {"from", required_argument, NULL, OPT_FROM},
    {"dry-run", no_argument, NULL, OPT_DRY_RUN},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

int main(int argc, char **argv)
{
    lvd_pipeline_run_opts o = {.out = stdout};
    int c;
    opterr = 0; /* one error line, ours */
    while ((c = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
        switch (c) {
        case OPT_DB:
            o.db = optarg;
            break;
        case OPT_FROM:
            o.from = optarg;
            break;
        case OPT_DRY_RUN:
            o.dry_run = 1;
            break;
        case OPT_HELP:
            usage(stdout);
            return 0;
        default:
            fprintf(stderr, "lvd-run: unknown option or missing value: %s (see --help)\n",
                    argv[optind - 1]);
            return 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "lvd-run: exactly one PIPELINE file is required (see --help)\n");
        return 2;
    }
    lvd_error err;
    lvd_error_clear(&err);
    lvd_pipeline *p;
    if (lvd_pipeline_load(argv[optind], &p, &err) != 0) {
        fprintf(stderr, "lvd-run: %s\n", err.msg);
        return 1;
    }
    if (!o.db)
        o.db = p->db;
    int rc = 0;
    if (!o.db) {
        fprintf(stderr, "lvd-run: no manifest: give --db DB or db = DB in [pipeline]\n");
        rc = 2;
    } else if (lvd_pipeline_run(p, &o, &err) != 0) {
        fprintf(stderr, "lvd-run: %s\n", err.msg);
        rc = 1;
    }
    lvd_pipeline_free(p);
    return rc;
}
