/* The embed stage: image embeddings of a registered model (embed/model_registry.h) for the
 * images of a manifest, and the import of embeddings computed elsewhere.
 *
 * Embedding (lvd_embed_run) reads every 'ok' image that has neither an embedding nor a recorded
 * failure for the model from its tar shard (shards are the source of truth), decodes it like PIL
 * Image.open(...).convert("RGB") (alpha dropped, EXIF orientation NOT applied, full size),
 * applies the reference eval transform (lvd_image_preprocess: resize short side, center crop,
 * normalize; default 256 / 224) and runs the ViT. A producer thread decodes and preprocesses the
 * next batch while the ViT (OpenMP inside) runs the current one; at most 2 ready batches wait.
 *
 * Output: one float32 .npy per input shard and run, "<out>/<model>/<shard>.r<run>.npy", rows in
 * shard member order, L2-normalized unless asked otherwise, written through the streaming appender
 * (memory does not grow with the number of images). After the file is renamed into place, its
 * rows (embedding_files, embeddings) and the shard's decode failures (embedding_failures) are
 * recorded in ONE transaction. A crash before that commit leaves an unrecorded file, deleted by
 * the next run (it takes a lock on the manifest first); its images are simply embedded again. So a
 * rerun after kill -9 gives no duplicate and no missing row.
 *
 * Images that fail to decode or preprocess are recorded in embedding_failures (view
 * v_embedding_failures) with the error line, counted and logged; later runs of the same model skip
 * them unless asked to retry them. A shard that cannot be read stops the run with an error naming
 * it.
 *
 * Under an MPI launcher (`mpirun -np N lvd-embed`, `srun`; dist/dist.h) the run is shared: rank 0
 * alone opens the manifest (stage lock, recovery, run record, plan) and is its only writer; the
 * ranks embed disjoint shares of the ordered pending list, whole shards each, writing their own
 * files, and rank 0 records every file in the per-shard transaction above. The result equals a
 * one-process run: the same rows bitwise, the same files, rows and failures (file ids and the
 * order of the commits aside). A rank's failure stops every rank after the current shard (the
 * run fails naming the rank; what was recorded stays); a killed MPI run is recovered as above by
 * any next run. See embed_stage_dist.c. Import refuses to run as several ranks.
 *
 * Import (lvd_embed_import) attaches the rows of a (rows, dim) float32 .npy to existing images
 * listed one per line (an image id, or a url) in a text file. */
#ifndef LVD_CURATE_STAGES_EMBED_STAGE_H
#define LVD_CURATE_STAGES_EMBED_STAGE_H

#include <stdint.h>
#include <stdio.h>

#include "embed/model_registry.h"
#include "store/error.h"

typedef struct lvd_embed_opts {
    const char *db;        /* manifest */
    const char *model;     /* registered model name */
    const char *source;    /* only this source's images; NULL: all sources */
    const char *out_dir;   /* NULL: "embeddings" beside the manifest */
    int batch;             /* images per forward pass (>= 1) */
    int threads;           /* ViT threads; <= 0: OpenMP's default */
    int features;          /* -1: the model's registered mode; else an lvd_model_features */
    int64_t limit;         /* at most this many images this run; 0: no limit */
    int resize, crop;      /* eval transform sizes (crop a multiple of the patch) */
    int normalize;         /* 1: L2-normalize rows */
    int retry_failed;      /* 1: also images with a recorded failure (cleared on success) */
    int progress;          /* 1: progress line (terminal), 0: periodic log lines */
    double log_interval_s; /* seconds between log lines */
    FILE *log;             /* progress and summary; NULL: silent */
} lvd_embed_opts;

typedef struct lvd_embed_summary {
    int64_t run_id;
    int64_t todo;       /* images this run set out to embed */
    int64_t embedded;   /* rows written */
    int64_t failed;     /* images that failed to decode (recorded) */
    int64_t files;      /* .npy files written */
    double seconds;     /* wall clock from the start of the work to the last commit */
    double cpu_seconds; /* CPU time of the process (all threads) over the same interval */
} lvd_embed_summary;

/* Defaults: batch 32, all threads, the model's features, no limit, 256 / 224, normalized, log
 * lines every 10 s on stderr. db and model must be set by the caller. */
void lvd_embed_opts_init(lvd_embed_opts *o);

/* Runs the embed stage (recorded in runs as stage "embed"). Fails without embedding anything on a
 * bad option, an unknown model, a weights file whose sha256 changed, or a crop that is not a
 * multiple of the model's patch size; fails midway (recording what was complete) when a shard or
 * the output cannot be read or written. */
int lvd_embed_run(const lvd_embed_opts *o, lvd_embed_summary *sum, lvd_error *err);

typedef struct lvd_import_opts {
    const char *db, *model, *out_dir; /* out_dir as in lvd_embed_opts */
    const char *npy;                  /* (rows, dim) float32 */
    const char *ids;                  /* text file: one image id or url a line */
    const char *source;               /* urls are looked up in this source; NULL: any source */
    FILE *log;
} lvd_import_opts;

/* Imports embeddings (recorded in runs as stage "embed-import"). The model is registered as
 * external (dim from the file) when unknown; a known model must have the file's dim. Every line
 * must name exactly one existing image without an embedding of this model, each at most once,
 * and the file must have one row per line; errors name the line. The .npy is copied atomically to
 * "<out>/<model>/<name>.r<run>.npy", or used in place when it already lies in that folder. */
int lvd_embed_import(const lvd_import_opts *o, int64_t *rows, lvd_error *err);

#endif
