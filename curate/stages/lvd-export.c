/* lvd-export: the curated set as WebDataset shards plus a JSONL manifest (curate/stages/export.h). */
#include <stdio.h>

#include "curate/stages/export.h"
#include "kit/kit.h"

static const char help[] =
    "--db DB --out DIR [options]\n"
    "\n"
    "Writes the curated set (view v_curated, made by lvd-retrieve) as WebDataset tar shards\n"
    "DIR/curated-NNNNNN.tar, copying each image and its .json from the fetch shards under the\n"
    "key <image id, 10 digits>, plus DIR/manifest.jsonl: one line per curated row with key,\n"
    "image_id, url, dataset, method, similarity, seed_image_id, rank, cluster and model.\n"
    "The manifest is only read; one export at a time writes into a folder.";

static int run(lvd_manifest *m, void *ctx, lvd_error *err)
{
    lvd_export_counts c;
    if (lvd_export_run(m, ctx, &c, err))
        return -1;
    printf("%lld images (%lld manifest lines) in %lld shards, %lld members\n", (long long)c.images,
           (long long)c.rows, (long long)c.shards, (long long)c.members);
    return 0;
}

int main(int argc, char **argv)
{
    const char *db = NULL;
    lvd_export_options o = {NULL, NULL, (uint64_t)256 << 20};
    const lvd_kit_opt opts[] = {
        LVD_OPT_DB(db),
        LVD_OPT_STR("out", "DIR", o.out_dir, "output folder (created when absent)", .required = 1),
        LVD_OPT_STR("model", "NAME", o.model, "export only this model's curated set",
                    .def = "every model's"),
        LVD_OPT_INT("shard-size", "MB", o.shard_bytes, 1, (int64_t)1 << 30,
                    "shard size bound in MiB", .scale = 1 << 20),
        LVD_OPT_END,
    };
    const lvd_kit_cmd cmd = {"lvd-export", help, opts, run, &o, .db = LVD_KIT_READ};
    return lvd_kit_main(&cmd, argc, argv);
}
