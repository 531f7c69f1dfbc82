/* lvd-query: nearest neighbours of an image in a recorded index (curate/stages/query_stage.h). */
#include <stdio.h>

#include "curate/stages/query_stage.h"
#include "kit/kit.h"

static const char help[] =
    "--db DB --model NAME (--id ID | --image FILE) [options]\n"
    "\n"
    "Prints the nearest images of the model's index (made by lvd-index) as TSV lines\n"
    "id<TAB>url<TAB>similarity (cosine), nearest first, after a header line. --id queries\n"
    "with the stored embedding of image ID (which is left out of the answer); --image decodes,\n"
    "preprocesses and embeds FILE with the registered model (it needs the model's weights).\n"
    "The manifest is only read.";

static int check(void *ctx, lvd_error *err)
{
    const lvd_query_options *o = ctx;
    if ((o->image_id > 0) == (o->image != NULL))
        return lvd_fail(err, "give exactly one of --id and --image");
    if (o->crop > o->resize)
        return lvd_fail(err, "--crop %d is larger than --resize %d", o->crop, o->resize);
    return 0;
}

static int run(lvd_manifest *m, void *ctx, lvd_error *err)
{
    return lvd_query_run(m, ctx, stdout, err);
}

int main(int argc, char **argv)
{
    const char *db = NULL;
    lvd_query_options o;
    lvd_query_defaults(&o);
    const lvd_kit_opt opts[] = {
        LVD_OPT_DB(db),
        LVD_OPT_MODEL(o.model, "registered model"),
        LVD_OPT_INT("id", "ID", o.image_id, 1, INT64_MAX, "query image id", .def = ""),
        LVD_OPT_STR("image", "FILE", o.image, "query image file (JPEG, PNG or WebP)"),
        LVD_OPT_INT("k", "K", o.k, 1, 100000, "neighbours printed"),
        LVD_OPT_STR("source", "NAME", o.source, "use the index over this source",
                    .def = "over every source"),
        LVD_OPT_INT("resize", "N", o.resize, 1, 16384, "--image: short side resize"),
        LVD_OPT_INT("crop", "N", o.crop, 1, 16384, "--image: center crop"),
        LVD_OPT_INT("nprobe", "N", o.nprobe, 1, 1 << 20, "lists an IVF index visits",
                    .def = "as saved"),
        LVD_OPT_END,
    };
    const lvd_kit_cmd cmd = {"lvd-query", help, opts, run, &o, .db = LVD_KIT_READ, .check = check};
    return lvd_kit_main(&cmd, argc, argv);
}
