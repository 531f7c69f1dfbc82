/* lvd-dedup: near-duplicate removal and decontamination of the pool (curate/stages/dedup_stage.h).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "curate/stages/dedup_stage.h"
#include "curate/stages/calibrate_cli.h"
#include "kit/kit.h"

static const char help[] =
    "--db DB --model NAME [options]\n"
    "\n"
    "Removes near-duplicates within the pool sources and decontaminates the pool against the\n"
    "eval sources, using the model's embeddings. Pool images linked by a cosine similarity\n"
    "above the threshold among their k nearest neighbours form components; each component\n"
    "keeps its image with the lowest id. A component holding an image above the eval\n"
    "threshold to any eval image is removed whole. Reruns search only new pool images\n"
    "(the result equals a full rerun over the same partition; state file beside DB).\n"
    "Results: view v_duplicates.\n"
    "With --calibrate, instead measures copy detection to choose --threshold (the options of\n"
    "lvd-calibrate; see lvd-dedup --calibrate --help).";

static int run(lvd_manifest *m, void *ctx, lvd_error *err)
{
    lvd_dedup_stage_counts c;
    if (lvd_dedup_stage_run(m, ctx, &c, err))
        return -1;
    printf("pool %lld (searched %lld, %s), eval %lld, IVF%lld nprobe %d: %lld components, "
           "%lld duplicates, %lld removed by eval, %lld kept\n",
           (long long)c.pool, (long long)c.new_images, c.incremental ? "incremental" : "full",
           (long long)c.eval, (long long)c.nlist, c.nprobe, (long long)c.components,
           (long long)c.duplicates, (long long)c.eval_removed, (long long)c.kept);
    return 0;
}

/* lvd-dedup --calibrate ...: lvd-calibrate with the other arguments. */
static int calibrate(int argc, char **argv)
{
    int n = 0;
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "--calibrate") != 0)
            argv[n++] = argv[i];
    argv[n] = NULL;
    return lvd_calibrate_cli("lvd-dedup --calibrate", n, argv);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "--calibrate") == 0)
            return calibrate(argc, argv);
    const char *db = NULL;
    lvd_dedup_stage_options o;
    lvd_dedup_stage_defaults(&o);
    int calibrate_flag = 0; /* handled above: listed for --help */
    const lvd_kit_opt opts[] = {
        LVD_OPT_DB(db),
        LVD_OPT_MODEL(o.model, "registered model whose embeddings are used"),
        LVD_OPT_INT("k", "K", o.k, 1, 4096, "neighbours searched per image"),
        LVD_OPT_NUM("threshold", "T", o.threshold, -1, 1, "duplicate similarity threshold"),
        LVD_OPT_NUM("eval-threshold", "T", o.eval_threshold, -1, 1,
                    "contamination similarity threshold"),
        LVD_OPT_INT("nprobe", "N", o.nprobe, 1, 1 << 20, "inverted lists each image searches"),
        LVD_OPT_INT("nlist", "N", o.nlist, 1, INT32_MAX, "inverted lists",
                    .def = "about 2 sqrt(pool), a power of two"),
        LVD_OPT_FLAG("full", o.full, 1, "search every pool image again"),
        LVD_OPT_FLAG("calibrate", calibrate_flag, 1,
                     "instead, measure copy detection (lvd-calibrate)"),
        LVD_OPT_END,
    };
    const lvd_kit_cmd cmd = {"lvd-dedup", help, opts, run, &o, .db = LVD_KIT_WRITE};
    return lvd_kit_main(&cmd, argc, argv);
}
