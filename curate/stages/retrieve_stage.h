/* The retrieval stage (lvd-retrieve): builds the curated set from the seed sources and the kept
 * pool images of one model (those lvd-dedup kept: v_duplicates.kept = 1), SPEC section 4.
 *
 * - 'seed' rows: every seed image (with an embedding of the model) is itself in the curated set.
 * - sample-based ('knn', per_seed > 0): the per_seed nearest kept pool images of every seed
 *   image, rank 1 the nearest; a pool image retrieved by several seeds is a collision (counted;
 *   it gets one row per seed).
 * - cluster-based ('cluster', clusters > 0): spherical k-means of the kept pool (Lloyd passes,
 *   lvd_kmeans_lloyd, fixed seeds; the best of `redo` runs by total similarity to the nearest
 *   centroid; shared by the ranks under mpirun, see kmeans_group.h); for each seed
 *   source, every cluster holding more than min_seeds of its seed images contributes its
 *   per_cluster images nearest the centroid (rank 1 the nearest; ties: lowest image id); when a
 *   source's picks exceed cap (0: no cap), the ones of lowest rank are kept, clusters taking
 *   turns (rank, then similarity, then image id).
 * Rows go to `curated` (view v_curated(image_id, dataset, method, seed_image_id, rank,
 * similarity, cluster, model)), dataset = the seed source's name. A run replaces every curated
 * row of the model in one transaction, or with seed_source only that source's rows (so each seed
 * source can get its own method and N, as the paper does), and is recorded in `runs` (stage
 * 'retrieve'). Rows of method 'hkmeans' (curate/stages/hkmeans_stage.h) are left as they are. */
#ifndef LVD_CURATE_STAGES_RETRIEVE_STAGE_H
#define LVD_CURATE_STAGES_RETRIEVE_STAGE_H

#include <stddef.h>
#include <stdint.h>

#include "store/error.h"
#include "store/manifest.h"

typedef struct lvd_retrieve_stage_options {
    const char *model;
    const char *seed_source; /* NULL: every seed source; else only this one (see above) */
    int per_seed;            /* sample-based neighbours per seed; 0: off */
    int clusters;            /* k-means clusters; 0: off */
    int64_t min_seeds;       /* a cluster contributes when it holds more seeds than this (3) */
    int64_t per_cluster;     /* images a contributing cluster gives (100) */
    int64_t cap;             /* cluster picks per seed source; 0: unlimited */
    int niter;               /* k-means iterations (20) */
    int seed;                /* k-means seed of the first run (1234) */
    int redo;                /* k-means runs (seeds seed, seed + 1, ...); the best is kept (3) */
    int float64;             /* 1: k-means sums (and their sums across ranks) in float64 */
    const char *factory;     /* index for the sample-based search; NULL: lvd_index_choose */
    size_t memory_budget;    /* LVD_STAGE_MEMORY_BUDGET */
    size_t nprobe;           /* 16 */
} lvd_retrieve_stage_options;

typedef struct lvd_retrieve_stage_counts {
    int64_t pool;       /* kept pool images */
    int64_t seeds;      /* seed images */
    int64_t knn_rows;   /* 'knn' rows */
    int64_t knn_images; /* distinct pool images retrieved by seeds */
    int64_t collisions; /* pool images retrieved by more than one seed */
    int64_t cluster_rows;
    int64_t clusters_used; /* (seed source, cluster) pairs that contributed */
    int64_t curated;       /* distinct images in the curated set */
} lvd_retrieve_stage_counts;

/* Sample-based with per_seed 4 and no clustering; min_seeds 3, per_cluster 100, niter 20,
 * seed 1234, redo 3, automatic index with 4 GiB, nprobe 16. */
void lvd_retrieve_stage_defaults(lvd_retrieve_stage_options *o);

/* Runs the stage. Fails on an unknown model or seed source, no kept pool image ("run lvd-dedup
 * first"), no seed image, more clusters than kept pool images, or an index error. */
int lvd_retrieve_stage_run(lvd_manifest *m, const lvd_retrieve_stage_options *o,
                           lvd_retrieve_stage_counts *counts, lvd_error *err);

/* The ranks other than 0 of a group (`mpirun -np N lvd-retrieve ...`,
 * curate/stages/kmeans_group.h): take part in the k-means fits rank 0 shares, --clusters or
 * --hierarchical, until rank 0 ends (stage_kjob_end). They open no manifest. */
int lvd_retrieve_stage_follow(lvd_error *err);

#endif
