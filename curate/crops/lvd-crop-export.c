/* lvd-crop-export: random square crops of photos as small grayscale PNG files. */
#include <stdio.h>

#include "curate/crops/crop_export.h"
#include "kit/kit.h"

static const char help[] =
    "--photos DIR --out DIR [options]\n"
    "\n"
    "Writes --per-photo random square crops of every photo below DIR (walked as lvd-fetch\n"
    "walks a folder: sorted, hidden entries skipped) as grayscale PNG files\n"
    "OUT/<relative folder>/<file name>-<NNN>.png, --side pixels square, so that lvd-fetch\n"
    "labels each crop with its photo's folder name. A crop's side is a uniform fraction in\n"
    "[--min-frac, --max-frac] of the photo's short side, at a uniform position, resized with\n"
    "PIL's antialiased bicubic and converted to gray as PIL's convert(\"L\"). The crops are a\n"
    "pure function of --seed, the photo's relative path and its pixels. A photo that cannot\n"
    "be read or decoded is reported on stderr and skipped (exit 1 only when none could be\n"
    "cropped). Files that already hold the same bytes are not rewritten.";

static void on_skip(void *ctx, const char *path, const char *why)
{
    (void)ctx;
    fprintf(stderr, "lvd-crop-export: %s: skipped: %s\n", path, why);
}

static int run(lvd_manifest *unused, void *ctx, lvd_error *err)
{
    (void)unused;
    const lvd_crop_export_opts *o = ctx;
    lvd_crop_export_counts n;
    if (lvd_crop_export(o, &n, err) != 0)
        return -1;
    printf("lvd-crop-export: %u crops of %u photos into %s (%u written, %u unchanged; %u of %u "
           "files skipped)\n",
           n.crops, n.cropped, o->out, n.written, n.crops - n.written, n.skipped, n.photos);
    return 0;
}

int main(int argc, char **argv)
{
    lvd_crop_export_opts o = {
        .per_photo = 20, .side = 28, .min_frac = 0.1, .max_frac = 0.5, .on_skip = on_skip};
    const char *db = NULL;
    const lvd_kit_opt opts[] = {
        LVD_OPT_STR("photos", "DIR", o.photos, "folder of photos (walked recursively)",
                    .required = 1),
        LVD_OPT_STR("out", "DIR", o.out, "output folder (created)", .required = 1),
        LVD_OPT_INT("per-photo", "N", o.per_photo, 1, 999, "crops per photo"),
        LVD_OPT_INT("side", "PX", o.side, 1, 4096, "side of the written crops in pixels"),
        LVD_OPT_NUM("min-frac", "F", o.min_frac, 0.001, 1,
                    "smallest crop side, a fraction of the photo's short side"),
        LVD_OPT_NUM("max-frac", "F", o.max_frac, 0.001, 1,
                    "largest crop side, a fraction of the photo's short side"),
        LVD_OPT_INT("seed", "N", o.seed, 0, INT64_MAX, "seed of the random crops"),
        LVD_OPT_STR("db", "DB", db, "accepted and ignored (lvd-run passes it to every stage)"),
        LVD_OPT_END,
    };
    const lvd_kit_cmd cmd = {"lvd-crop-export", help, opts, run, &o, .db = LVD_KIT_NO_DB};
    return lvd_kit_main(&cmd, argc, argv);
}
