/* lvd-dedup: near-duplicate removal and decontamination of the pool (curate/dedup_stage.h). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "curate/dedup_stage.h"
#include "curate/dedup_stage_calibrate_cli.h"
#include "curate/stages_cli.h"

static const char usage[] =
    "usage: lvd-dedup --db DB --model NAME [options]\n"
    "\n"
    "Removes near-duplicates within the pool sources and decontaminates the pool against the\n"
    "eval sources, using the model's embeddings. Pool images linked by a cosine similarity\n"
    "above the threshold among their k nearest neighbours form components; each component\n"
    "keeps its image with the lowest id. A component holding an image above the eval\n"
    "threshold to any eval image is removed whole. Reruns search only new pool images\n"
    "(the result equals a full rerun over the same partition; state file beside DB).\n"
    "Results: view v_duplicates.\n"
    "\n"
    "  --db DB                manifest database\n"
    "  --model NAME           registered model whose embeddings are used\n"
    "  -k K                   neighbours searched per image (default 64)\n"
    "  --threshold T          duplicate similarity threshold (default 0.6)\n"
    "  --eval-threshold T     contamination similarity threshold (default 0.45)\n"
    "  --nprobe N             inverted lists each image searches (default 16)\n"
    "  --nlist N              inverted lists (default: about 2 sqrt(pool), a power of two)\n"
    "  --full                 search every pool image again\n"
    "  --calibrate            instead, measure copy detection to choose --threshold (the\n"
    "                         options of lvd-calibrate; see lvd-dedup --calibrate --help)\n"
    "  --help                 this text\n"
    "\n"
    "Exit status 0 on success, 1 on failure, 2 on bad usage.\n";

static int parse(int argc, char **argv, const char **db, lvd_dedup_stage_options *o, lvd_error *err)
{
    static const struct option longs[] = {{"db", required_argument, 0, 'd'},
                                          {"model", required_argument, 0, 'm'},
                                          {"threshold", required_argument, 0, 't'},
                                          {"eval-threshold", required_argument, 0, 'e'},
                                          {"nlist", required_argument, 0, 'l'},
                                          {"nprobe", required_argument, 0, 'p'},
                                          {"full", no_argument, 0, 'F'},
                                          {"help", no_argument, 0, 'h'},
                                          {0, 0, 0, 0}};
    int c;
    int64_t v;
    while ((c = getopt_long(argc, argv, "k:", longs, NULL)) != -1) {
        switch (c) {
        case 'd':
            *db = optarg;
            break;
        case 'm':
            o->model = optarg;
            break;
        case 'k':
            if (lvd_cli_int("-k", optarg, 1, 4096, &v, err))
                return -1;
            o->k = (int)v;
            break;
        case 't':
            if (lvd_cli_float("--threshold", optarg, -1, 1, &o->threshold, err))
                return -1;
            break;
        case 'e':
            if (lvd_cli_float("--eval-threshold", optarg, -1, 1, &o->eval_threshold, err))
                return -1;
            break;
        case 'l':
            if (lvd_cli_int("--nlist", optarg, 1, INT32_MAX, &v, err))
                return -1;
            o->nlist = v;
            break;
        case 'p':
            if (lvd_cli_int("--nprobe", optarg, 1, 1 << 20, &v, err))
                return -1;
            o->nprobe = (size_t)v;
            break;
        case 'F':
            o->full = 1;
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
    if (!*db || !o->model)
        return lvd_fail(err, "--db and --model are required");
    return 0;
}

/* lvd-dedup --calibrate ...: lvd-calibrate with the other options. */
static int calibrate(int argc, char **argv)
{
    int n = 0;
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "--calibrate") != 0)
            argv[n++] = argv[i];
    argv[n] = NULL;
    return lvd_calibrate_cli("lvd-dedup --calibrate", n, argv);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "--calibrate") == 0)
            return calibrate(argc, argv);
    const char *db = NULL;
    lvd_dedup_stage_options o;
    lvd_dedup_stage_defaults(&o);
    lvd_error err;
    int p = parse(argc, argv, &db, &o, &err);
    if (p == 1)
        return 0;
    if (p)
        return lvd_cli_usage_fail("lvd-dedup", err.msg);
    lvd_manifest *m;
    if (lvd_cli_open("lvd-dedup", db, &m))
        return 1;
    lvd_dedup_stage_counts c;
    int rc = lvd_dedup_stage_run(m, &o, &c, &err);
    lvd_manifest_close(m);
    if (rc)
        return lvd_cli_fail("lvd-dedup", &err);
    printf("pool %lld (searched %lld, %s), eval %lld, IVF%lld nprobe %d: %lld components, "
           "%lld duplicates, %lld removed by eval, %lld kept\n",
           (long long)c.pool, (long long)c.new_images, c.incremental ? "incremental" : "full",
           (long long)c.eval, (long long)c.nlist, c.nprobe, (long long)c.components,
           (long long)c.duplicates, (long long)c.eval_removed, (long long)c.kept);
    return 0;
}
