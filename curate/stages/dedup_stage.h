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
 * 3. Search: the pool's embeddings (in image id order) are partitioned into inverted lists and
 *    searched list by list with sgemm (index/index.h, lvd_dedup_ivf_run): what an IVF<nlist>,Flat
 *    index answers with nprobe lists searched per image, computed exactly enough that it does not
 *    depend on batching or row order (nprobe = nlist is an exact search).
 * 4. Incremental: each run saves its partition, every image's lists and its edges (its k best
 *    neighbours above the threshold) beside the manifest, in "<DB>.dedup-m<model id>-r<run
 *    id>.ivf", named by the run that wrote the model's rows of `dedup` (view v_duplicates). A
 *    rerun assigns only the new pool images to the same lists and searches them against every
 *    image stored there (old and new); the old images search only the new images stored in their
 *    lists, merged into their recorded edges under the same top-k rule, so the result equals a
 *    full rerun (--full) over the same partition bitwise, whatever k cuts. A run is full instead
 *    when there is no readable state file, k, threshold or nprobe changed, an earlier image's
 *    embedding is gone or changed, or --full; the partition itself is fitted again (and the run
 *    is full) when the dimension or --nlist changed or the pool outgrew LVD_DEDUP_REFIT_GROWTH x
 *    the images it was fitted on. Decontamination searches the partition with every run.
 * The run is recorded in `runs` (stage 'dedup', counts with the phase times in seconds); all
 * results are written in one transaction, after the state file (written atomically), and older
 * state files of the model are removed once it commits, so a crash leaves the last committed
 * state in force. */
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
    size_t nprobe;        /* lists each image searches (16) */
    int64_t nlist;        /* inverted lists; 0: automatic (about 2 sqrt(pool), a power of two) */
    int full;             /* 1: search every pool image again (over the same partition) */
} lvd_dedup_stage_options;

typedef struct lvd_dedup_stage_counts {
    int64_t pool;         /* pool images with an embedding of the model */
    int64_t new_images;   /* of which processed for the first time by this run */
    int64_t eval;         /* eval images with an embedding */
    int64_t components;   /* components of the pool (singletons included) */
    int64_t duplicates;   /* images removed as duplicates */
    int64_t eval_removed; /* images removed by decontamination */
    int64_t kept;
    int64_t nlist;     /* lists of the partition */
    int nprobe;        /* lists searched per image */
    int incremental;   /* 1: earlier images kept their edges */
    int refitted;      /* 1: this run fitted the partition */
    char why[160];     /* when not incremental: why */
    double seconds[5]; /* read, search, decontaminate, save state, write results */
} lvd_dedup_stage_counts;

/* The eval images' embedding rows, as dedup compares the pool with them. */
extern const lvd_kit_rows lvd_dedup_eval_rows;

/* The state file that run (the run that wrote model_id's dedup rows) left beside the manifest,
 * "<DB>.dedup-m<model id>-r<run id>.ivf", into out; lvd-report reads its edges. Fails when the
 * manifest has no file or the path does not fit. */
int lvd_dedup_state_path(lvd_manifest *m, int64_t model_id, int64_t run, char *out, size_t size,
                         lvd_error *err);

/* k 64, threshold 0.6, eval_threshold 0.45, nprobe 16, automatic nlist. */
void lvd_dedup_stage_defaults(lvd_dedup_stage_options *o);

/* Runs the stage on the manifest m. Fails (nothing written but the failed run) on an unknown
 * model, unreadable embeddings, no pool embedding, or a state file that cannot be written. A state
 * file that cannot be read only makes the run full (counts.why says so). Memory: the pool's and
 * eval embeddings (4 x dim bytes each) plus about 12 x nprobe + 60 bytes per pool image and 150
 * MB of buffers. */
int lvd_dedup_stage_run(lvd_manifest *m, const lvd_dedup_stage_options *o,
                        lvd_dedup_stage_counts *counts, lvd_error *err);

#endif
