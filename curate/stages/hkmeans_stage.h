/* Hierarchical k-means curation (lvd-retrieve --hierarchical), after Vo et al. 2024: the kept
 * pool images of one model (v_duplicates.kept = 1) are clustered level by level
 * (lvd_hkmeans_fit: level 0 clusters the images, level l the centroids of level l - 1) and a
 * target number of them is sampled balanced across the top-level clusters
 * (lvd_hkmeans_sample); the best of several fits is kept (see redo). The picks become `curated`
 * rows of method 'hkmeans' whose dataset is the run's name (v_curated.dataset; cluster = top-level
 * cluster, similarity = to the level-0 centroid, rank = position by that similarity within the
 * top-level cluster), and the cluster of every kept image at every level goes to table `hkmeans`
 * (view v_hkmeans(image_id, model, dataset, level, cluster, run_id)). A run replaces the rows of
 * its (model, name) in one transaction and is recorded in `runs` (stage 'hkmeans'). The paper's
 * resampling steps and float64 centroid sums are options (lvd_hkmeans_opts). Every k-means is
 * lvd_kmeans_lloyd shared by the process group (one process, or the ranks of `mpirun -np N
 * lvd-retrieve --hierarchical`, curate/stages/kmeans_group.h), so the fit does not depend on
 * the number of ranks. */
#ifndef LVD_CURATE_STAGES_HKMEANS_STAGE_H
#define LVD_CURATE_STAGES_HKMEANS_STAGE_H

#include <stdint.h>

#include "store/error.h"
#include "store/manifest.h"

#define LVD_HKMEANS_MAX_LEVELS 8

typedef struct lvd_hkmeans_stage_options {
    const char *model;
    const char *name;              /* dataset name of the picks ("hkmeans") */
    int levels;                    /* 1 .. LVD_HKMEANS_MAX_LEVELS */
    int k[LVD_HKMEANS_MAX_LEVELS]; /* clusters per level, non-increasing */
    int64_t target;                /* images to pick */
    int niter;                     /* k-means iterations per level (20) */
    int seed;                      /* seed of level 0; level l uses seed + l (1234) */
    int redo;                      /* fits (seeds seed + r * LVD_HKMEANS_MAX_LEVELS); the one
                                      of highest total similarity of the rows to their
                                      centroid over all levels is kept (3) */
    int resample;                  /* resampling steps per level (0) */
    int64_t sample_size;           /* items per cluster in a resampling step (10) */
    int float64;                   /* 1: float64 centroid sums (0) */
} lvd_hkmeans_stage_options;

typedef struct lvd_hkmeans_stage_counts {
    int64_t pool;    /* kept pool images clustered */
    int64_t picked;  /* curated rows written */
    int64_t top_min; /* fewest picks of a top-level cluster */
    int64_t top_max; /* most picks of a top-level cluster */
} lvd_hkmeans_stage_counts;

/* name "hkmeans", levels 0 (to be set), target 0 (to be set), niter 20, seed 1234, redo 3,
 * resample 0, sample_size 10, float64 0. */
void lvd_hkmeans_stage_defaults(lvd_hkmeans_stage_options *o);

/* Parses "K1,K2,..." (positive integers) into k, writing the count to *levels. Fails on an
 * empty item, a non-number, a value out of 1 .. 2^24 or more than max items. */
int lvd_hkmeans_parse_clusters(const char *s, int *k, int max, int *levels, lvd_error *err);

/* Runs the stage. Fails on invalid options (levels vs k, target < 1, resample < 0,
 * sample_size < 1), an unknown model, a name that is a source's name, no kept pool image
 * ("run lvd-dedup first"), more level-0 clusters than kept images, or a k-means error. */
int lvd_hkmeans_stage_run(lvd_manifest *m, const lvd_hkmeans_stage_options *o,
                          lvd_hkmeans_stage_counts *counts, lvd_error *err);

struct stage_kjob;
struct lvd_kmeans_group;

/* A rank other than 0 of a group: its part of the fits of rank 0's --hierarchical job
 * (curate/stages/kmeans_group.h; called by lvd_retrieve_stage_follow). */
int lvd_hkmeans_stage_follow(const struct stage_kjob *job, const float *x,
                             const struct lvd_kmeans_group *g, lvd_error *err);

#endif
