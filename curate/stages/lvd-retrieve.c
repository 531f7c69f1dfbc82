/* lvd-retrieve: the curated set from the seed sources and the kept pool
 * (curate/stages/retrieve_stage.h, curate/stages/hkmeans_stage.h). */
#include <stdio.h>

#include "curate/stages/hkmeans_stage.h"
#include "curate/stages/index_stage.h"
#include "curate/stages/kmeans_group.h"
#include "curate/stages/retrieve_stage.h"
#include "kit/kit.h"

static const char help[] =
    "--db DB --model NAME [options]\n"
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
    "Under mpirun or srun (a build with MPI), the ranks share the k-means work (each assigns and\n"
    "sums its share of the rows; the centroids do not depend on the number of ranks); rank 0\n"
    "alone opens the manifest and does the rest.";

/* Both modes' options; --clusters is a count or, with --hierarchical, a list. Options of one
 * mode only start at 0 ("not given"). */
typedef struct cli {
    const char *db;
    lvd_retrieve_stage_options r;
    lvd_hkmeans_stage_options h;
    int hierarchical, levels, per_seed;
    int64_t sample_size;
    const char *clusters;
} cli;

/* Checks the mode's options, reads --clusters as that mode wants it and shares what both modes
 * take. */
static int check(void *ctx, lvd_error *err)
{
    cli *a = ctx;
    a->h.model = a->r.model;
    a->h.niter = a->r.niter;
    a->h.seed = a->r.seed;
    a->h.redo = a->r.redo;
    if (!a->hierarchical) {
        if (a->levels || a->h.target || a->h.resample || a->sample_size)
            return lvd_fail(err, "--levels, --target, --resample and --sample-size need "
                                 "--hierarchical");
        if (a->h.float64 && !a->clusters)
            return lvd_fail(err, "--float64 needs --clusters or --hierarchical");
        a->r.float64 = a->h.float64;
        const lvd_kit_opt count = LVD_OPT_INT("clusters", "K", a->r.clusters, 1, 1 << 24, "");
        if (a->clusters && lvd_kit_set(&count, a->clusters, err))
            return -1;
        a->r.per_seed = a->per_seed ? a->per_seed : a->r.clusters == 0 ? 4 : 0;
        return 0;
    }
    if (a->per_seed || a->r.seed_source)
        return lvd_fail(err, "--per-seed and --seed-source do not apply to --hierarchical");
    if (!a->clusters || !a->h.target)
        return lvd_fail(err, "--hierarchical needs --clusters K1,K2,... and --target N");
    if (lvd_hkmeans_parse_clusters(a->clusters, a->h.k, LVD_HKMEANS_MAX_LEVELS, &a->h.levels, err))
        return -1;
    if (a->levels && a->levels != a->h.levels)
        return lvd_fail(err, "--levels %d but --clusters '%s' gives %d", a->levels, a->clusters,
                        a->h.levels);
    if (a->sample_size)
        a->h.sample_size = a->sample_size;
    return 0;
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

static int run(lvd_manifest *m, void *ctx, lvd_error *err)
{
    cli *a = ctx;
    return a->hierarchical ? run_hierarchical(m, &a->h, err) : run_seeded(m, &a->r, err);
}

int main(int argc, char **argv)
{
    cli a = {0};
    lvd_retrieve_stage_options *r = &a.r;
    lvd_hkmeans_stage_options *h = &a.h;
    lvd_retrieve_stage_defaults(r);
    lvd_hkmeans_stage_defaults(h);
    const lvd_kit_opt opts[] = {
        LVD_OPT_DB(a.db),
        LVD_OPT_MODEL(r->model, "registered model whose embeddings are used"),
        LVD_OPT_STR("seed-source", "NAME", r->seed_source,
                    "only this seed source; only its curated rows are replaced"),
        LVD_OPT_INT("per-seed", "N", a.per_seed, 1, 1 << 20,
                    "sample-based: pool images per seed image", .def = ""),
        LVD_OPT_STR("clusters", "K", a.clusters,
                    "cluster-based: k-means clusters of the kept pool"),
        LVD_OPT_INT("min-seeds", "S", r->min_seeds, 0, INT64_MAX,
                    "seeds a cluster must exceed to contribute"),
        LVD_OPT_INT("per-cluster", "M", r->per_cluster, 1, INT64_MAX,
                    "images a contributing cluster gives"),
        LVD_OPT_INT("cap", "C", r->cap, 1, INT64_MAX, "cluster-based images per seed source",
                    .def = "no cap"),
        LVD_OPT_INT("niter", "N", r->niter, 1, 1000, "k-means iterations"),
        LVD_OPT_INT("seed", "S", r->seed, 0, 1 << 30, "k-means seed of the first run"),
        LVD_OPT_INT("redo", "R", r->redo, 1, 1000,
                    "k-means runs (seeds S, S+1, ...), the best kept;\n"
                    "hierarchical: whole fits, the best over all levels kept"),
        LVD_OPT_FLAG("hierarchical", a.hierarchical, 1,
                     "hierarchical k-means with balanced sampling (needs --clusters\n"
                     "K1,K2,... non-increasing, one per level, and --target)"),
        LVD_OPT_INT("levels", "L", a.levels, 1, LVD_HKMEANS_MAX_LEVELS,
                    "levels; must match the --clusters list", .def = "its length"),
        LVD_OPT_INT("target", "N", h->target, 1, INT64_MAX, "hierarchical: images to sample",
                    .def = ""),
        LVD_OPT_STR("name", "NAME", h->name, "hierarchical: dataset name of the picks"),
        LVD_OPT_INT("resample", "R", h->resample, 0, 1000,
                    "hierarchical: resampling steps per level: k-means again\n"
                    "on the --sample-size images closest to each centroid, then reassign"),
        LVD_OPT_INT("sample-size", "S", a.sample_size, 1, INT64_MAX,
                    "hierarchical: images per cluster in a resampling step", .def = "10"),
        LVD_OPT_FLAG("float64", h->float64, 1,
                     "k-means centroid sums (and their sums across MPI ranks)\nin float64"),
        LVD_OPT_SEARCH_INDEX(r->factory, r->memory_budget, r->nprobe),
        LVD_OPT_END,
    };
    const lvd_kit_cmd cmd = {"lvd-retrieve",      help,          opts, run, &a,
                             .db = LVD_KIT_WRITE, .check = check};
    /* Under mpirun: rank 0 runs the command, the other ranks share its k-means and nothing else
     * (curate/stages/kmeans_group.h); rank 0 ends them however the command ends. */
    stage_kgroup kg;
    lvd_error err;
    if (stage_kgroup_init(&kg, &err))
        return lvd_kit_fail("lvd-retrieve", &err);
    if (kg.dist.rank != 0)
        return lvd_retrieve_stage_follow(&err) ? lvd_kit_fail("lvd-retrieve", &err) : 0;
    int status = lvd_kit_main(&cmd, argc, argv);
    stage_kjob_end(&kg);
    return status;
}
