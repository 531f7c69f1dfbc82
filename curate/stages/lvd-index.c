/* lvd-index: a saved vector index over a model's embeddings (curate/stages/index_stage.h). */
#include <stdio.h>

#include "curate/stages/index_stage.h"
#include "kit/kit.h"

static const char help[] =
    "--db DB --model NAME [options]\n"
    "\n"
    "Builds an inner-product index over the model's L2-normalized embeddings (cosine\n"
    "similarity): exact (Flat) for small sets, IVF or IVF-PQ chosen from the count and the\n"
    "memory budget otherwise. Saves it beside DB and records it with its id-map (index row ->\n"
    "image id; views v_indexes). It replaces the earlier index of the same model and source.";

static int run(lvd_manifest *m, void *ctx, lvd_error *err)
{
    const lvd_index_stage_options *o = ctx;
    lvd_index_stage_result r;
    if (lvd_index_stage_run(m, o, &r, err))
        return -1;
    printf("index %lld: %lld rows, %s, %s\n", (long long)r.index_id, (long long)r.rows, r.factory,
           r.path);
    return 0;
}

int main(int argc, char **argv)
{
    lvd_index_stage_options o = {NULL, NULL, NULL, NULL, LVD_STAGE_MEMORY_BUDGET, LVD_STAGE_NPROBE};
    const lvd_kit_opt opts[] = {
        LVD_OPT_DB(o.db),
        LVD_OPT_MODEL(o.model, "registered model whose embeddings are indexed"),
        LVD_OPT_STR("source", "NAME", o.source, "index only this source's images",
                    .def = "every source"),
        LVD_OPT_STR("factory", "STRING", o.factory, "FAISS index factory string",
                    .def = "chosen from the count"),
        LVD_OPT_INT("memory-budget", "MB", o.memory_budget, 1, (int64_t)1 << 30,
                    "memory budget of the chosen index", .scale = 1 << 20),
        LVD_OPT_INT("nprobe", "N", o.nprobe, 1, 1 << 20,
                    "lists an IVF index visits per query, saved with it"),
        LVD_OPT_END,
    };
    const lvd_kit_cmd cmd = {"lvd-index", help, opts, run, &o, .db = LVD_KIT_WRITE};
    return lvd_kit_main(&cmd, argc, argv);
}
