/* The dedup stage (lvd-dedup): near-duplicate removal within the pool sources and
 * decontamination against the eval sources, on one model's embeddings (SPEC section 4).
 *
 * 1. Components: pool images whose embeddings have cosine similarity > threshold among each
 *    other's k nearest neighbours are linked; linked images form components (union-find). The
 *    member with the lowest image id is kept, the others get reason 'duplicate' and their
 *    similarity to the kept member.
 * 2. Decontamination: a component holding an image with similarity > eval_threshold to any eval
 *    image is removed whole (every member reason 'eval', similarity = the component's highest
 *    similarity to an eval image). It is recomputed on every run, so new eval images apply to
 *    the whole pool.
 * 3. Incremental: the table `dedup` records every pool image processed (view v_duplicates). A
 *    rerun rebuilds the old components from it and searches neighbours only for the new pool
 *    images (against old and new). That equals a full rerun when the index is exact and no
 *    image has k or more neighbours above the threshold (see lvd_dedup_link); a run whose k or
 *    threshold differ from the last successful run of the model, or --full, reprocesses all.
 * The run is recorded in `runs` (stage 'dedup'); all results are written in one transaction. */
#ifndef LVD_CURATE_STAGES_DEDUP_STAGE_H
#define LVD_CURATE_STAGES_DEDUP_STAGE_H

#include <stddef.h>
#include <stdint.h>

#include "kit/kit.h"
#include "store/error.h"
#include "store/manifest.h"

typedef struct lvd_dedup_stage_options {
    const char *model;
    int k;                /* neighbours searched per image (64) */
    float threshold;      /* duplicate edge: similarity > threshold (0.6) */
    float eval_threshold; /* contamination: similarity > eval_threshold (0.45) */
    const char *factory;  /* FAISS factory string, NULL: lvd_index_choose */
    size_t memory_budget; /* bytes for the index when factory is NULL (4 GiB) */
    size_t nprobe;        /* lists searched by IVF indexes (16) */
    int full;             /* 1: reprocess every pool image */
} lvd_dedup_stage_options;

typedef struct lvd_dedup_stage_counts {
    int64_t pool;         /* pool images with an embedding of the model */
    int64_t new_images;   /* of which processed for the first time by this run */
    int64_t eval;         /* eval images with an embedding */
    int64_t components;   /* components of the pool (singletons included) */
    int64_t duplicates;   /* images removed as duplicates */
    int64_t eval_removed; /* images removed by decontamination */
    int64_t kept;
    char factory[128]; /* index used */
} lvd_dedup_stage_counts;

/* The eval images' embedding rows, as dedup compares the pool with them. */
extern const lvd_kit_rows lvd_dedup_eval_rows;

/* k 64, threshold 0.6, eval_threshold 0.45, automatic index with 4 GiB, nprobe 16. */
void lvd_dedup_stage_defaults(lvd_dedup_stage_options *o);

/* Runs the stage on the manifest m. Fails (nothing written but the failed run) on an unknown
 * model, unreadable embeddings or an index error. */
int lvd_dedup_stage_run(lvd_manifest *m, const lvd_dedup_stage_options *o,
                        lvd_dedup_stage_counts *counts, lvd_error *err);

#endif
