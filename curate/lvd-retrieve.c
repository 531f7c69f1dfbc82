/* lvd-retrieve: the curated set from the seed sources and the kept pool
 * (curate/retrieve_stage.h). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "curate/hkmeans_stage.h"
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
    "With --hierarchical, instead: hierarchical k-means of the kept pool (Vo et al. 2024; level\n"
    "0 clusters the images, each next level the centroids of the one below) and a sample of\n"
    "--target images balanced across the top-level clusters. The picks are curated rows of\n"
    "method 'hkmeans' and dataset --name; each image's cluster per level is in view v_hkmeans.\n"
    "A run replaces the rows of its model and name only (other methods keep theirs, and a\n"
    "seed-based run keeps the 'hkmeans' rows).\n"
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
    "  --redo R             k-means runs (seeds S, S+1, ...), the best kept (default 3);\n"
    "                       hierarchical: whole fits, the best over all levels kept\n"
    "  --hierarchical       hierarchical k-means with balanced sampling (needs --clusters\n"
    "                       K1,K2,... non-increasing, one per level, and --target)\n"
    "  --levels L           levels; must match the --clusters list (default: its length)\n"
    "  --target N           hierarchical: images to sample\n"
    "  --name NAME          hierarchical: dataset name of the picks (default hkmeans)\n"
    "  --resample R         hierarchical: resampling steps per level (default 0): k-means again\n"
    "                       on the --sample-size images closest to each centroid, then reassign\n"
    "  --sample-size S      hierarchical: images per cluster in a resampling step (default 10)\n"
    "  --float64            hierarchical: centroid sums in float64 (Lloyd passes after FAISS)\n"
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

/* Both modes' options; --clusters is a count or, with --hierarchical, a list. */
typedef struct cli {
    const char *db;
    lvd_retrieve_stage_options r;
    lvd_hkmeans_stage_options h;
    int hierarchical, levels, per_seed_given, sample_size_given;
    const char *clusters;
} cli;

static int parse_option(int c, cli *a, lvd_error *err)
{
    int64_t v = 0;
    int rc = 0;
    switch (c) {
    case 'd':
        a->db = optarg;
        break;
    case 'm':
        a->r.model = a->h.model = optarg;
        break;
    case 'D':
        a->r.seed_source = optarg;
        break;
    case 'n':
        rc = int_opt("--per-seed", 1, 1 << 20, &v, err);
        a->r.per_seed = (int)v;
        a->per_seed_given = 1;
        break;
    case 'k':
        a->clusters = optarg;
        break;
    case 's':
        return int_opt("--min-seeds", 0, INT64_MAX, &a->r.min_seeds, err);
    case 'c':
        return int_opt("--per-cluster", 1, INT64_MAX, &a->r.per_cluster, err);
    case 'C':
        return int_opt("--cap", 1, INT64_MAX, &a->r.cap, err);
    case 'i':
        rc = int_opt("--niter", 1, 1000, &v, err);
        a->r.niter = a->h.niter = (int)v;
        break;
    case 'S':
        rc = int_opt("--seed", 0, 1 << 30, &v, err);
        a->r.seed = a->h.seed = (int)v;
        break;
    case 'R':
        rc = int_opt("--redo", 1, 1000, &v, err);
        a->r.redo = a->h.redo = (int)v;
        break;
    case 'f':
        a->r.factory = optarg;
        break;
    case 'b':
        rc = int_opt("--memory-budget", 1, (int64_t)1 << 30, &v, err);
        a->r.memory_budget = (size_t)v << 20;
        break;
    case 'p':
        rc = int_opt("--nprobe", 1, 1 << 20, &v, err);
        a->r.nprobe = (size_t)v;
        break;
    case 'H':
        a->hierarchical = 1;
        break;
    case 'L':
        rc = int_opt("--levels", 1, LVD_HKMEANS_MAX_LEVELS, &v, err);
        a->levels = (int)v;
        break;
    case 't':
        return int_opt("--target", 1, INT64_MAX, &a->h.target, err);
    case 'N':
        a->h.name = optarg;
        break;
    case 'X':
        rc = int_opt("--resample", 0, 1000, &v, err);
        a->h.resample = (int)v;
        break;
    case 'Z':
        a->sample_size_given = 1;
        return int_opt("--sample-size", 1, INT64_MAX, &a->h.sample_size, err);
    case 'F':
        a->h.float64 = 1;
        break;
    default:
        return lvd_fail(err, "unknown option");
    }
    return rc;
}

/* Checks the mode's required options and reads --clusters as that mode wants it. */
static int finish(cli *a, lvd_error *err)
{
    if (!a->db || !a->r.model)
        return lvd_fail(err, "--db and --model are required");
    if (!a->hierarchical) {
        if (a->levels || a->h.target || a->h.resample || a->h.float64 || a->sample_size_given)
            return lvd_fail(err, "--levels, --target, --resample, --sample-size and --float64 "
                                 "need --hierarchical");
        int64_t v = 0;
        if (a->clusters && lvd_cli_int("--clusters", a->clusters, 1, 1 << 24, &v, err))
            return -1;
        a->r.clusters = (int)v;
        if (!a->per_seed_given && a->r.clusters == 0)
            a->r.per_seed = 4;
        return 0;
    }
    if (a->per_seed_given || a->r.seed_source)
        return lvd_fail(err, "--per-seed and --seed-source do not apply to --hierarchical");
    if (!a->clusters || !a->h.target)
        return lvd_fail(err, "--hierarchical needs --clusters K1,K2,... and --target N");
    if (lvd_hkmeans_parse_clusters(a->clusters, a->h.k, LVD_HKMEANS_MAX_LEVELS, &a->h.levels, err))
        return -1;
    if (a->levels && a->levels != a->h.levels)
        return lvd_fail(err, "--levels %d but --clusters '%s' gives %d", a->levels, a->clusters,
                        a->h.levels);
    return 0;
}

/* 0: parsed, 1: --help printed, -1: bad usage. */
static int parse(int argc, char **argv, cli *a, lvd_error *err)
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
                                          {"hierarchical", no_argument, 0, 'H'},
                                          {"levels", required_argument, 0, 'L'},
                                          {"target", required_argument, 0, 't'},
                                          {"name", required_argument, 0, 'N'},
                                          {"resample", required_argument, 0, 'X'},
                                          {"sample-size", required_argument, 0, 'Z'},
                                          {"float64", no_argument, 0, 'F'},
                                          {"help", no_argument, 0, 'h'},
                                          {0, 0, 0, 0}};
    int c;
    a->r.per_seed = 0;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        if (c == 'h') {
            fputs(usage, stdout);
            return 1;
        }
        if (parse_option(c, a, err))
            return -1;
    }
    if (optind < argc)
        return lvd_fail(err, "unexpected argument '%s'", argv[optind]);
    return finish(a, err);
}

static int run_hierarchical(lvd_manifest *m, const lvd_hkmeans_stage_options *o, lvd_error *err)
{
    lvd_hkmeans_stage_counts c;
    if (lvd_hkmeans_stage_run(m, o, &c, err))
        return -1;
    printf("kept pool %lld: hierarchical k-means, %lld images picked as '%s' (%lld to %lld per "
           "top-level cluster)\n",
           (long long)c.pool, (long long)c.picked, o->name, (long long)c.top_min,
           (long long)c.top_max);
    return 0;
}

static int run_seeded(lvd_manifest *m, const lvd_retrieve_stage_options *o, lvd_error *err)
{
    lvd_retrieve_stage_counts c;
    if (lvd_retrieve_stage_run(m, o, &c, err))
        return -1;
    printf("kept pool %lld, seeds %lld: knn %lld rows (%lld images, %lld collisions), cluster "
           "%lld rows from %lld clusters; curated set %lld images\n",
           (long long)c.pool, (long long)c.seeds, (long long)c.knn_rows, (long long)c.knn_images,
           (long long)c.collisions, (long long)c.cluster_rows, (long long)c.clusters_used,
           (long long)c.curated);
    return 0;
}

int main(int argc, char **argv)
{
    cli a = {0};
    lvd_retrieve_stage_defaults(&a.r);
    lvd_hkmeans_stage_defaults(&a.h);
    lvd_error err;
    int p = parse(argc, argv, &a, &err);
    if (p == 1)
        return 0;
    if (p)
        return lvd_cli_usage_fail("lvd-retrieve", err.msg);
    lvd_manifest *m;
    if (lvd_cli_open("lvd-retrieve", a.db, &m))
        return 1;
    int rc = a.hierarchical ? run_hierarchical(m, &a.h, &err) : run_seeded(m, &a.r, &err);
    lvd_manifest_close(m);
    return rc ? lvd_cli_fail("lvd-retrieve", &err) : 0;
}
