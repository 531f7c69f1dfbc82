/* lvd-report: static HTML pages about a manifest's curation results (curate/export_report.h). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "curate/export_report.h"
#include "curate/stages_cli.h"

static const char usage[] =
    "usage: lvd-report --db DB --out DIR [options]\n"
    "\n"
    "Writes static HTML pages into DIR, with thumbnails under DIR/thumbs/ read from the fetch\n"
    "shards: index.html (images by source and status, embeddings per model, indexes, dedup\n"
    "kept / duplicate / eval, curated rows by dataset and method, the last runs), and the\n"
    "galleries of one model: duplicates.html (largest duplicate components),\n"
    "decontaminated.html (removed components with the eval image each matched),\n"
    "neighbours.html (each seed's retrieved neighbours) and clusters.html (samples per\n"
    "cluster). Files are replaced atomically; open DIR/index.html in a browser.\n"
    "\n"
    "  --db DB            manifest database\n"
    "  --out DIR          folder to write (created when absent)\n"
    "  --model NAME       model whose galleries are shown (default: the only model)\n"
    "  --groups N         components, seeds or clusters per gallery (default 20)\n"
    "  --per-group N      images shown per group (default 12)\n"
    "  --thumb PX         thumbnail size (default 128)\n"
    "  --runs N           runs listed on the index page (default 20)\n"
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
                                          {"runs", required_argument, 0, 'r'},
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
        case 'r':
            rc = lvd_cli_int("--runs", optarg, 0, 100000, &v, err);
            o->runs = (int)v;
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
    if (!*db || !o->out)
        return lvd_fail(err, "--db and --out are required");
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
    printf("%s/index.html: %lld groups, %lld images shown, %lld thumbnails\n", o.out,
           (long long)c.groups, (long long)c.tiles, (long long)c.thumbs);
    return 0;
}
