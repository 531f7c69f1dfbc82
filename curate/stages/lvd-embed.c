/* lvd-embed: the embed stage (curate/stages/embed_stage.h) from the command line. */
#include <stdio.h>
#include <unistd.h>

#include "curate/stages/embed_stage.h"
#include "dist/dist.h"
#include "kit/kit.h"

static const char help[] =
    "--db DB --model NAME [options]\n"
    "--db DB --model NAME --import FILE.npy --ids FILE.txt [--source NAME]\n"
    "\n"
    "Embeds every stored ('ok') image of the manifest DB that has no embedding of model NAME\n"
    "(registered with lvd-model add): reads it from its tar shard, decodes it as PIL\n"
    "convert(\"RGB\") does (alpha dropped, EXIF orientation not applied), resizes the short\n"
    "side to S and center crops C x C (bicubic, ImageNet normalization) and runs the ViT.\n"
    "Writes one float32 .npy per shard, OUT/NAME/<shard>.r<run>.npy, and records its rows in\n"
    "the manifest (view v_embeddings) once the file is in place; a rerun after a crash embeds\n"
    "exactly what is missing. Images that fail to decode are recorded (v_embedding_failures)\n"
    "and skipped by later runs (unless --retry-failed).\n"
    "With --import, attaches the rows of FILE.npy (rows, dim) to the images named by the lines\n"
    "of FILE.txt (an image id or url a line); an unknown model name is registered as external.\n"
    "\n"
    "Under mpirun or srun (a build with MPI), the ranks embed disjoint shares of the pending\n"
    "images, whole shards each, and rank 0 alone opens the manifest and records every file:\n"
    "the manifest can stay on rank 0's local disk; shards, weights and OUT must be shared.";

typedef struct args {
    lvd_embed_opts o;
    const char *import, *ids;
} args;

static int check(void *ctx, lvd_error *err)
{
    const args *a = ctx;
    if (!a->import != !a->ids)
        return lvd_fail(err, "--import and --ids go together");
    return 0;
}

static int run(lvd_manifest *m, void *ctx, lvd_error *err)
{
    (void)m;
    args *a = ctx;
    lvd_dist d;
    if (lvd_dist_init(&d, err) != 0)
        return -1;
    if (a->import && d.size > 1)
        return d.rank == 0 ? lvd_fail(err, "--import runs as one process, not under mpirun") : 1;
    if (a->import) {
        lvd_import_opts io = {.db = a->o.db,
                              .model = a->o.model,
                              .out_dir = a->o.out_dir,
                              .npy = a->import,
                              .ids = a->ids,
                              .source = a->o.source,
                              .log = stderr};
        int64_t rows;
        return lvd_embed_import(&io, &rows, err);
    }
    lvd_embed_summary sum;
    if (lvd_embed_run(&a->o, &sum, err) == 0)
        return 0;
    if (d.rank != 0)
        return 1; /* rank 0 says why, once */
    /* After a progress line, on a line of its own. */
    fprintf(stderr, "%slvd-embed: %s\n", a->o.progress ? "\n" : "", err->msg);
    return 1;
}

int main(int argc, char **argv)
{
    args a = {0};
    lvd_embed_opts_init(&a.o);
    a.o.progress = isatty(STDERR_FILENO);
    lvd_embed_opts *o = &a.o;
    const lvd_kit_opt opts[] = {
        LVD_OPT_DB(o->db),
        LVD_OPT_MODEL(o->model, "registered model (lvd-model list)"),
        LVD_OPT_STR("source", "NAME", o->source, "only images of this source"),
        LVD_OPT_INT("batch", "N", o->batch, 1, 4096, "images per forward pass"),
        LVD_OPT_INT("threads", "N", o->threads, 1, 1024,
                    "ViT threads; decoding runs on one more thread", .def = "all cores"),
        LVD_OPT_FN("features", "F", o->features, lvd_kit_features_opt,
                   "cls or cls+patchmean (changeable only while\nthe model has no embeddings)",
                   .def = "the model's"),
        LVD_OPT_INT("limit", "N", o->limit, 1, (int64_t)1 << 62, "embed at most N images this run",
                    .def = ""),
        LVD_OPT_INT("resize", "S", o->resize, 1, 16384, "short side before the crop"),
        LVD_OPT_INT("crop", "C", o->crop, 1, 16384, "crop side, a multiple of the patch size"),
        LVD_OPT_FLAG("no-normalize", o->normalize, 0,
                     "keep raw features (default: L2-normalized rows)"),
        LVD_OPT_STR("out", "DIR", o->out_dir, "output folder", .def = "'embeddings' beside DB"),
        LVD_OPT_FLAG("retry-failed", o->retry_failed, 1,
                     "also images that failed to decode in earlier runs"),
        LVD_OPT_STR("import", "FILE.npy", a.import, "import embeddings instead (with --ids)"),
        LVD_OPT_STR("ids", "FILE.txt", a.ids, "the images of the imported rows, one a line"),
        LVD_OPT_FLAG("progress", o->progress, 1,
                     "progress line (default when stderr is a terminal)"),
        LVD_OPT_FLAG("no-progress", o->progress, 0, "periodic log lines instead"),
        LVD_OPT_NUM("log-interval", "S", o->log_interval_s, 1, 86400, "seconds between log lines"),
        LVD_OPT_END,
    };
    const lvd_kit_cmd cmd = {"lvd-embed", help, opts, run, &a, .db = LVD_KIT_NO_DB, .check = check};
    return lvd_kit_main(&cmd, argc, argv);
}
