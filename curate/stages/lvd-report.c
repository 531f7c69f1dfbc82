/* lvd-report: static HTML pages about a manifest's curation results (curate/stages/report.h). */
#include <stdio.h>

#include "curate/stages/report.h"
#include "kit/kit.h"

static const char help[] =
    "--db DB --out DIR [options]\n"
    "\n"
    "Writes static HTML pages into DIR, with thumbnails under DIR/thumbs/ read from the fetch\n"
    "shards: index.html (images by source and status, embeddings per model, indexes, dedup\n"
    "kept / duplicate / eval, curated rows by dataset and method, the last runs), and the\n"
    "galleries of one model: duplicates.html (largest duplicate components),\n"
    "decontaminated.html (removed components with the eval image each matched),\n"
    "neighbours.html (each seed's retrieved neighbours) and clusters.html (samples per\n"
    "cluster), training.html (charts of every training and distillation: losses, lr, weight\n"
    "decay, teacher momentum and temperature, gradient norms, k-NN accuracy during training;\n"
    "the final evaluations) and similarities.html (histograms of the model's dedup edges,\n"
    "duplicate and decontamination similarities with the thresholds marked). Charts are\n"
    "inline SVG: the pages need no network. Files are replaced atomically; open\n"
    "DIR/index.html in a browser. The manifest is only read.";

static int run(lvd_manifest *m, void *ctx, lvd_error *err)
{
    const lvd_report_options *o = ctx;
    lvd_report_counts c;
    if (lvd_report_run(m, o, &c, err))
        return -1;
    printf("%s/index.html: %lld groups, %lld images shown, %lld thumbnails, %lld trainings, "
           "%lld dedup pairs\n",
           o->out, (long long)c.groups, (long long)c.tiles, (long long)c.thumbs,
           (long long)c.trainings, (long long)c.edges);
    return 0;
}

int main(int argc, char **argv)
{
    const char *db = NULL;
    lvd_report_options o;
    lvd_report_defaults(&o);
    const lvd_kit_opt opts[] = {
        LVD_OPT_DB(db),
        LVD_OPT_STR("out", "DIR", o.out, "folder to write (created when absent)", .required = 1),
        LVD_OPT_STR("model", "NAME", o.model, "model whose galleries are shown",
                    .def = "the only model"),
        LVD_OPT_INT("groups", "N", o.groups, 1, 100000,
                    "components, seeds or clusters per gallery"),
        LVD_OPT_INT("per-group", "N", o.per_group, 1, 100000, "images shown per group"),
        LVD_OPT_INT("thumb", "PX", o.thumb, 8, 1024, "thumbnail size"),
        LVD_OPT_INT("runs", "N", o.runs, 0, 100000, "runs listed on the index page"),
        LVD_OPT_END,
    };
    const lvd_kit_cmd cmd = {"lvd-report", help, opts, run, &o, .db = LVD_KIT_READ};
    return lvd_kit_main(&cmd, argc, argv);
}
