/* lvd-export: the curated set as WebDataset shards plus a JSONL manifest (curate/export.h). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "curate/export.h"
#include "curate/stages_cli.h"

static const char usage[] =
    "usage: lvd-export --db DB --out DIR [options]\n"
    "\n"
    "Writes the curated set (view v_curated, made by lvd-retrieve) as WebDataset tar shards\n"
    "DIR/curated-NNNNNN.tar, copying each image and its .json from the fetch shards under the\n"
    "key <image id, 10 digits>, plus DIR/manifest.jsonl: one line per curated row with key,\n"
    "image_id, url, dataset, method, similarity, seed_image_id, rank, cluster and model.\n"
    "\n"
    "  --db DB             manifest database\n"
    "  --out DIR           output folder (created when absent)\n"
    "  --model NAME        export only this model's curated set (default: every model's)\n"
    "  --shard-size MB     shard size bound in MiB (default 256)\n"
    "  --help              this text\n"
    "\n"
    "Exit status 0 on success, 1 on failure, 2 on bad usage.\n";

static int parse(int argc, char **argv, const char **db, lvd_export_options *o, lvd_error *err)
{
    static const struct option longs[] = {
        {"db", required_argument, 0, 'd'},    {"out", required_argument, 0, 'o'},
        {"model", required_argument, 0, 'm'}, {"shard-size", required_argument, 0, 's'},
        {"help", no_argument, 0, 'h'},        {0, 0, 0, 0}};
    int c;
    int64_t v;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (c) {
        case 'd':
            *db = optarg;
            break;
        case 'o':
            o->out_dir = optarg;
            break;
        case 'm':
            o->model = optarg;
            break;
        case 's':
            if (lvd_cli_int("--shard-size", optarg, 1, (int64_t)1 << 30, &v, err))
                return -1;
            o->shard_bytes = (uint64_t)v << 20;
            break;
        case 'h':
            fputs(usage, stdout);
            return 1;
        default:
            return lvd_fail(err, "unknown option");
        }
    }
    if (optind < argc)
        return lvd_fail(err, "unexpected argument '%s'", argv[optind]);
    if (!*db || !o->out_dir)
        return lvd_fail(err, "--db and --out are required");
    return 0;
}

int main(int argc, char **argv)
{
    const char *db = NULL;
    lvd_export_options o = {NULL, NULL, (uint64_t)256 << 20};
    lvd_error err;
    int p = parse(argc, argv, &db, &o, &err);
    if (p == 1)
        return 0;
    if (p)
        return lvd_cli_usage_fail("lvd-export", err.msg);
    lvd_manifest *m;
    if (lvd_cli_open("lvd-export", db, &m))
        return 1;
    lvd_export_counts c;
    int rc = lvd_export_run(m, &o, &c, &err);
    lvd_manifest_close(m);
    if (rc)
        return lvd_cli_fail("lvd-export", &err);
    printf("%lld images (%lld manifest lines) in %lld shards, %lld members\n", (long long)c.images,
           (long long)c.rows, (long long)c.shards, (long long)c.members);
    return 0;
}
