/* lvd-report: an HTML report of a model's dedup and retrieval results (curate/export_report.h). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "curate/export_report.h"
#include "curate/stages_cli.h"

static const char usage[] =
    "usage: lvd-report --db DB --model NAME --out FILE.html [options]\n"
    "\n"
    "Writes one self-contained HTML file: the dedup counts (v_duplicates), the curated set by\n"
    "dataset and method (v_curated), and galleries of the largest duplicate components and of\n"
    "the components removed by decontamination, with thumbnails read from the fetch shards.\n"
    "\n"
    "  --db DB            manifest database\n"
    "  --model NAME       model whose results are shown (after lvd-dedup)\n"
    "  --out FILE         HTML file to write\n"
    "  --groups N         components per gallery (default 20)\n"
    "  --per-group N      images shown per component (default 12)\n"
    "  --thumb PX         thumbnail size (default 128)\n"
    "  --help             this text\n"
    "\n"
    "Exit status 0 on success, 1 on failure, 2 on bad usage.\n";

static int parse(int argc, char **argv, const char **db, lvd_report_options *o, lvd_error *err)
{
    static const struct option longs[] = {{"db", required_argument, 0, 'd'},
                                          {"model", required_argument, 0, 'm'},
                                          {"out", required_argument, 0, 'o'},
                                          {"groups", required_argument, 0, 'g'},
                                          {"per-group", required_argument, 0, 'p'},
                                          {"thumb", required_argument, 0, 't'},
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
        case 'o':
            o->out = optarg;
            break;
        case 'g':
            rc = lvd_cli_int("--groups", optarg, 1, 100000, &v, err);
            o->groups = (int)v;
            break;
        case 'p':
            rc = lvd_cli_int("--per-group", optarg, 1, 100000, &v, err);
            o->per_group = (int)v;
            break;
        case 't':
            rc = lvd_cli_int("--thumb", optarg, 8, 1024, &v, err);
            o->thumb = (int)v;
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
    if (!*db || !o->model || !o->out)
        return lvd_fail(err, "--db, --model and --out are required");
    return 0;
}

int main(int argc, char **argv)
{
    const char *db = NULL;
    lvd_report_options o;
    lvd_report_defaults(&o);
    lvd_error err;
    int p = parse(argc, argv, &db, &o, &err);
    if (p == 1)
        return 0;
    if (p)
        return lvd_cli_usage_fail("lvd-report", err.msg);
    lvd_manifest *m;
    if (lvd_cli_open("lvd-report", db, &m))
        return 1;
    lvd_report_counts c;
    int rc = lvd_report_run(m, &o, &c, &err);
    lvd_manifest_close(m);
    if (rc)
        return lvd_cli_fail("lvd-report", &err);
    printf("%s: %lld components, %lld images (%lld with thumbnails)\n", o.out, (long long)c.groups,
           (long long)c.tiles, (long long)c.thumbs);
    return 0;
}
