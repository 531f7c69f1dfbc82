#include "curate/dedup_stage_calibrate_cli.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "curate/dedup_stage_calibrate.h"
#include "curate/stages_cli.h"

static const char usage[] =
    "usage: lvd-calibrate --db DB --model NAME [options]\n"
    "       lvd-dedup --calibrate --db DB --model NAME [options]\n"
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
    "weights (not an imported, external one).\n"
    "\n"
    "  --db DB          manifest database\n"
    "  --model NAME     registered model with embeddings of the pool\n"
    "  --sample N       pool images sampled (default 100)\n"
    "  --resize S       short side before the crop, as lvd-embed (default 256)\n"
    "  --crop C         crop side, as lvd-embed (default 224)\n"
    "  --help           this text\n"
    "\n"
    "Exit status 0 on success, 1 on failure, 2 on bad usage.\n";

static int parse(int argc, char **argv, const char **db, lvd_calibrate_options *o, lvd_error *err)
{
    static const struct option longs[] = {{"db", required_argument, 0, 'd'},
                                          {"model", required_argument, 0, 'm'},
                                          {"sample", required_argument, 0, 's'},
                                          {"resize", required_argument, 0, 'r'},
                                          {"crop", required_argument, 0, 'c'},
                                          {"help", no_argument, 0, 'h'},
                                          {0, 0, 0, 0}};
    int c, rc;
    int64_t v = 0;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        rc = 0;
        switch (c) {
        case 'd':
            *db = optarg;
            break;
        case 'm':
            o->model = optarg;
            break;
        case 's':
            rc = lvd_cli_int("--sample", optarg, 1, 1000000, &v, err);
            o->sample = (int)v;
            break;
        case 'r':
            rc = lvd_cli_int("--resize", optarg, 1, 16384, &v, err);
            o->resize = (int)v;
            break;
        case 'c':
            rc = lvd_cli_int("--crop", optarg, 1, 16384, &v, err);
            o->crop = (int)v;
            break;
        case 'h':
            fputs(usage, stdout);
            return 1;
        default:
            return lvd_fail(err, "unknown option");
        }
        if (rc)
            return -1;
    }
    if (optind < argc)
        return lvd_fail(err, "unexpected argument '%s'", argv[optind]);
    if (!*db || !o->model)
        return lvd_fail(err, "--db and --model are required");
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

int lvd_calibrate_cli(const char *prog, int argc, char **argv)
{
    const char *db = NULL;
    lvd_calibrate_options o;
    lvd_calibrate_defaults(&o);
    lvd_error err;
    int p = parse(argc, argv, &db, &o, &err);
    if (p == 1)
        return 0;
    if (p)
        return lvd_cli_usage_fail(prog, err.msg);
    lvd_manifest *m;
    if (lvd_cli_open(prog, db, &m))
        return 1;
    lvd_calibrate_result r;
    int rc = lvd_calibrate_run(m, &o, &r, &err);
    lvd_manifest_close(m);
    if (rc)
        return lvd_cli_fail(prog, &err);
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
