/* lvd_calibrate_cli of curate/stages/calibrate_cli.h: the options table, the run and the
 * printed figures. */
#include "curate/stages/calibrate_cli.h"

#include <math.h>
#include <stdio.h>

#include "curate/stages/calibrate_stage.h"
#include "kit/kit.h"

static const char help[] =
    "--db DB --model NAME [options]\n"
    "\n"
    "Samples pool images (evenly spaced by id), makes five copies of each (horizontal flip,\n"
    "JPEG quality 40, center crop of 80%, half size, slight color change), embeds them with\n"
    "the model as lvd-embed does and compares them with the stored embedding and with every\n"
    "other pool image. Prints the similarity quantiles, a suggested lvd-dedup --threshold and\n"
    "copy detection at thresholds 0.30 .. 0.95 (by 0.05) and 0.99: a copy is detected when its\n"
    "similarity to its original is > t (recall, overall and per copy kind); a false positive\n"
    "is a sampled image or copy above t to another pool image (precision = TP / (TP + FP); '-'\n"
    "when nothing is above t). Copies already in the pool count as false positives. The\n"
    "figures are recorded as the run's counts (v_runs, stage 'calibrate'). The model needs\n"
    "weights (not an imported, external one).";

static int check(void *ctx, lvd_error *err)
{
    const lvd_calibrate_options *o = ctx;
    if (o->crop > o->resize)
        return lvd_fail(err, "--crop %d is larger than --resize %d", o->crop, o->resize);
    return 0;
}

static void print_table(const lvd_calibrate_result *r)
{
    printf("\n%9s %9s %9s %9s %9s", "threshold", "precision", "recall", "tp", "fp");
    for (int v = 0; v < LVD_CALIBRATE_VARIANTS; v++)
        printf(" %8s", lvd_calibrate_variant_name(v));
    printf("\n");
    for (int i = 0; i < LVD_CALIBRATE_THRESHOLDS; i++) {
        const lvd_calibrate_point *pt = &r->points[i];
        if (isnan(pt->precision))
            printf("%9.2f %9s", pt->threshold, "-");
        else
            printf("%9.2f %9.4f", pt->threshold, pt->precision);
        printf(" %9.4f %9lld %9lld", pt->recall, (long long)pt->tp,
               (long long)(pt->fp_pool + pt->fp_copy));
        for (int v = 0; v < LVD_CALIBRATE_VARIANTS; v++)
            printf(" %8.4f", pt->recall_by_kind[v]);
        printf("\n");
    }
}

static void print_stats(const char *name, const lvd_sim_stats *s)
{
    printf("%-22s %6lld %8.4f %8.4f %8.4f %8.4f %8.4f\n", name, (long long)s->n, s->min, s->p5,
           s->median, s->p95, s->max);
}

static int run(lvd_manifest *m, void *ctx, lvd_error *err)
{
    lvd_calibrate_result r;
    if (lvd_calibrate_run(m, ctx, &r, err))
        return -1;
    printf("%-22s %6s %8s %8s %8s %8s %8s\n", "similarity", "n", "min", "p5", "median", "p95",
           "max");
    for (int v = 0; v < LVD_CALIBRATE_VARIANTS; v++)
        print_stats(lvd_calibrate_variant_name(v), &r.copies[v]);
    print_stats("all copies", &r.all_copies);
    print_stats("nearest other image", &r.nearest_other);
    if (r.separable)
        printf("suggested --threshold %.4f (copies p5 %.4f > nearest other p95 %.4f)\n",
               r.threshold, r.all_copies.p5, r.nearest_other.p95);
    else
        printf("suggested --threshold %.4f (copies p5); warning: copies and distinct images "
               "overlap (nearest other p95 %.4f)\n",
               r.threshold, r.nearest_other.p95);
    print_table(&r);
    return 0;
}

int lvd_calibrate_cli(const char *prog, int argc, char **argv)
{
    const char *db = NULL;
    lvd_calibrate_options o;
    lvd_calibrate_defaults(&o);
    const lvd_kit_opt opts[] = {
        LVD_OPT_DB(db),
        LVD_OPT_MODEL(o.model, "registered model with embeddings of the pool"),
        LVD_OPT_INT("sample", "N", o.sample, 1, 1000000, "pool images sampled"),
        LVD_OPT_INT("resize", "S", o.resize, 1, 16384, "short side before the crop, as lvd-embed"),
        LVD_OPT_INT("crop", "C", o.crop, 1, 16384, "crop side, as lvd-embed"),
        LVD_OPT_END,
    };
    const lvd_kit_cmd cmd = {prog, help, opts, run, &o, .db = LVD_KIT_WRITE, .check = check};
    return lvd_kit_main(&cmd, argc, argv);
}
