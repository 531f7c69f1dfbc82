/* lvd-retrieve: the curated set from the seed sources and the kept pool
 * (curate/retrieve_stage.h). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "curate/retrieve_stage.h"
#include "curate/stages_cli.h"

static const char usage[] =
    "usage: lvd-retrieve --db DB --model NAME [options]\n"
    "\n"
    "Builds the curated set: every seed image, plus pool images that lvd-dedup kept, found by\n"
    "their similarity to the seed sources (the model's embeddings). Sample-based: the N nearest\n"
    "kept pool images of every seed image. Cluster-based: k-means of the kept pool; a cluster\n"
    "holding more than --min-seeds images of a seed source gives that source up to\n"
    "--per-cluster images nearest its centroid. Each method runs when its option is given; with\n"
    "neither, sample-based with N = 4. A run replaces the model's curated set (view v_curated),\n"
    "or with --seed-source the rows of that source only.\n"
    "\n"
    "  --db DB              manifest database\n"
    "  --model NAME         registered model whose embeddings are used\n"
    "  --seed-source NAME   only this seed source; only its curated rows are replaced\n"
    "  --per-seed N         sample-based: pool images per seed image\n"
    "  --clusters K         cluster-based: k-means clusters of the kept pool\n"
    "  --min-seeds S        seeds a cluster must exceed to contribute (default 3)\n"
    "  --per-cluster M      images a contributing cluster gives (default 100)\n"
    "  --cap C              cluster-based images per seed source (default: no cap)\n"
    "  --niter N            k-means iterations (default 20)\n"
    "  --seed S             k-means seed of the first run (default 1234)\n"
    "  --redo R             k-means runs (seeds S, S+1, ...), the best kept (default 3)\n"
    "  --factory STRING     FAISS index for the sample-based search (default: from the count)\n"
    "  --memory-budget MB   index memory budget when no factory is given (default 4096)\n"
    "  --nprobe N           lists searched by IVF indexes (default 16)\n"
    "  --help               this text\n"
    "\n"
    "Exit status 0 on success, 1 on failure, 2 on bad usage.\n";

static int int_opt(const char *name, int64_t lo, int64_t hi, int64_t *out, lvd_error *err)
{
    return lvd_cli_int(name, optarg, lo, hi, out, err);
}

static int parse(int argc, char **argv, const char **db, lvd_retrieve_stage_options *o,
                 lvd_error *err)
{
    static const struct option longs[] = {{"db", required_argument, 0, 'd'},
                                          {"model", required_argument, 0, 'm'},
                                          {"seed-source", required_argument, 0, 'D'},
                                          {"per-seed", required_argument, 0, 'n'},
                                          {"clusters", required_argument, 0, 'k'},
                                          {"min-seeds", required_argument, 0, 's'},
                                          {"per-cluster", required_argument, 0, 'c'},
                                          {"cap", required_argument, 0, 'C'},
                                          {"niter", required_argument, 0, 'i'},
                                          {"seed", required_argument, 0, 'S'},
                                          {"redo", required_argument, 0, 'R'},
                                          {"factory", required_argument, 0, 'f'},
                                          {"memory-budget", required_argument, 0, 'b'},
                                          {"nprobe", required_argument, 0, 'p'},
                                          {"help", no_argument, 0, 'h'},
                                          {0, 0, 0, 0}};
    int c, per_seed_given = 0;
    int64_t v = 0;
    o->per_seed = 0;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        int rc = 0;
        switch (c) {
        case 'd':
            *db = optarg;
            break;
        case 'm':
            o->model = optarg;
            break;
        case 'D':
            o->seed_source = optarg;
            break;
        case 'n':
            rc = int_opt("--per-seed", 1, 1 << 20, &v, err);
            o->per_seed = (int)v;
            per_seed_given = 1;
            break;
        case 'k':
            rc = int_opt("--clusters", 1, 1 << 24, &v, err);
            o->clusters = (int)v;
            break;
        case 's':
            rc = int_opt("--min-seeds", 0, INT64_MAX, &o->min_seeds, err);
            break;
        case 'c':
            rc = int_opt("--per-cluster", 1, INT64_MAX, &o->per_cluster, err);
            break;
        case 'C':
            rc = int_opt("--cap", 1, INT64_MAX, &o->cap, err);
            break;
        case 'i':
            rc = int_opt("--niter", 1, 1000, &v, err);
            o->niter = (int)v;
            break;
        case 'S':
            rc = int_opt("--seed", 0, 1 << 30, &v, err);
            o->seed = (int)v;
            break;
        case 'R':
            rc = int_opt("--redo", 1, 1000, &v, err);
            o->redo = (int)v;
            break;
        case 'f':
            o->factory = optarg;
            break;
        case 'b':
            rc = int_opt("--memory-budget", 1, (int64_t)1 << 30, &v, err);
            o->memory_budget = (size_t)v << 20;
            break;
        case 'p':
            rc = int_opt("--nprobe", 1, 1 << 20, &v, err);
            o->nprobe = (size_t)v;
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
    if (!per_seed_given && o->clusters == 0)
        o->per_seed = 4;
    return 0;
}

int main(int argc, char **argv)
{
    const char *db = NULL;
    lvd_retrieve_stage_options o;
    lvd_retrieve_stage_defaults(&o);
    lvd_error err;
    int p = parse(argc, argv, &db, &o, &err);
    if (p == 1)
        return 0;
    if (p)
        return lvd_cli_usage_fail("lvd-retrieve", err.msg);
    lvd_manifest *m;
    if (lvd_cli_open("lvd-retrieve", db, &m))
        return 1;
    lvd_retrieve_stage_counts c;
    int rc = lvd_retrieve_stage_run(m, &o, &c, &err);
    lvd_manifest_close(m);
    if (rc)
        return lvd_cli_fail("lvd-retrieve", &err);
    printf("kept pool %lld, seeds %lld: knn %lld rows (%lld images, %lld collisions), cluster "
           "%lld rows from %lld clusters; curated set %lld images\n",
           (long long)c.pool, (long long)c.seeds, (long long)c.knn_rows, (long long)c.knn_images,
           (long long)c.collisions, (long long)c.cluster_rows, (long long)c.clusters_used,
           (long long)c.curated);
    return 0;
}
