/* The training data loader: images from the manifest's tar shards, augmented into multi-crop
 * batches (train/augment.h) with iBOT masks (train/masks.h) by worker threads ahead of the step.
 *
 * Selection (at open, one read of the manifest): the curated set of a model (distinct image ids
 * of its v_curated rows, optionally of one method and one dataset) or every 'ok' image of a list
 * of sources; in image id order. Each selected image's stored bytes are read once from its shard
 * (store/shard.h's lvd_shard_read, one pass per shard) into memory, so the encoded set
 * must fit in RAM (Fashion-MNIST: about 20 MB; the reference caches its dataset too). An image
 * whose member is missing or whose shard cannot be read is left out and counted.
 *
 * Order: epoch e visits every image once in a permutation drawn from lvd_rng_stream(seed, e, 0,
 * LVD_STREAM_ORDER); batches of batch_size consecutive positions, the incomplete last one dropped
 * (drop_last, as the reference); step s is batch s % steps_per_epoch of epoch s / steps_per_epoch.
 * The crops of the sample at (epoch e, position p) draw from lvd_rng_stream(seed, e, p,
 * LVD_STREAM_CROPS) and a batch's masks from lvd_rng_stream(seed, e, batch, LVD_STREAM_MASKS), so
 * a batch is bitwise the same for any number of workers.
 *
 * Undecodable images: an image that fails to decode is marked bad and counted, and its sample
 * takes instead the image whose index is drawn from lvd_rng_stream(seed, e, p, LVD_STREAM_SUBST +
 * k) for attempt k = 0, 1, ... (same crop stream); the rule depends only on which images are bad (a
 * property of the data), so batches stay deterministic. After 64 failed attempts the step fails (a
 * set that is essentially all corrupt). Nothing else about a bad image is fatal.
 *
 * Memory: the ring's batches (each 12 * B * (2 * global_size^2 + n_local * local_size^2) bytes of
 * crops: 134 MB for the reference's B = 64 at 224 / 96), each worker's augmenter and permutation
 * are allocated at open; after
 * that a batch allocates nothing of its own (image/'s decoder and resizer still use short-lived
 * buffers per image). Workers fill the ring in step order: a slot is refilled as soon as the
 * consumer moves past it. lvd_loader_close stops the workers (a worker finishes its current sample
 * first) and frees everything. One consumer thread calls next. */
#ifndef LVD_TRAIN_LOADER_H
#define LVD_TRAIN_LOADER_H

#include <stdint.h>

#include "store/error.h"
#include "train/augment.h"
#include "train/masks.h"

/* The last word of the loader's lvd_rng_stream keys. */
enum { LVD_STREAM_CROPS = 0, LVD_STREAM_MASKS = 1, LVD_STREAM_ORDER = 2, LVD_STREAM_SUBST = 3 };

typedef struct lvd_loader_config {
    const char *db;             /* manifest path */
    const char *model;          /* curated set of this model (v_curated.model); NULL: sources */
    const char *method;         /* with model: only rows of this method; NULL: all */
    const char *dataset;        /* with model: only rows of this dataset; NULL: all */
    const char *const *sources; /* without model: the 'ok' images of these sources */
    int n_sources;
    int batch_size; /* images per batch (B) */
    int workers;    /* threads (>= 1) */
    int ring;       /* batches prepared ahead (>= 1; 0: 2 * workers) */
    uint64_t seed;
    int64_t start_step; /* first step to produce (to resume a run) */
    int patch_size;     /* mask grid: global_size / patch_size square */
    lvd_aug_config aug;
    lvd_mask_opts mask;
    int64_t max_pixels; /* decode limit per image (0: PIL's 89478485) */
    /* Data-parallel training (train/ssl_dist.h): this process's share of every batch, the
     * images at positions [share_offset, share_offset + share_size) of the batch_size the order
     * and the masks are drawn for; share_size 0: the whole batch. See lvd_batch. */
    int share_offset, share_size;
} lvd_loader_config;

/* Defaults: lvd_aug_defaults, lvd_mask_opts_defaults, patch 14, batch 64, 2 workers, seed 0. The
 * selection (db and model or sources) is left to the caller. */
void lvd_loader_defaults(lvd_loader_config *c);

/* One batch, crop-major: rows g * B + i hold crop g of image i. With a share (share_size S of a
 * batch of batch_size): B = S, and image i is image share_offset + i of the whole batch: the same
 * crops (its crop stream is keyed by its position in the epoch), the same image id and the same
 * masks (those of the whole batch's collate, rows of the share, with their weights; n_masked and
 * n_masked_crops count the share's, upperbound is the whole batch's), so the shares of ranks
 * 0 .. N-1 put together are bitwise the batch of one process. */
typedef struct lvd_batch {
    int64_t step;
    int64_t epoch;
    int64_t index;  /* batch within its epoch */
    int batch_size; /* B */
    int n_local;
    int global_size, local_size;
    float *global_crops; /* (2B, 3, global_size, global_size) */
    float *local_crops;  /* (n_local * B, 3, local_size, local_size) */
    int64_t *image_ids;  /* (B) manifest ids of the images used */
    lvd_masks masks;     /* (2B, N) masks of the global crops, indices, weights */
    int replaced;        /* samples of this batch that stand in for an undecodable image */
} lvd_batch;

typedef struct lvd_loader_stats {
    int64_t images;   /* usable images (selected and read) */
    int64_t missing;  /* selected images without a readable shard member */
    int64_t bad;      /* distinct images found undecodable so far */
    int64_t replaced; /* samples so far that stood in for an undecodable image */
    int64_t steps_per_epoch;
    int64_t bytes; /* encoded bytes held in memory */
} lvd_loader_stats;

typedef struct lvd_loader lvd_loader;

/* Reads the selection and its bytes, allocates the ring and starts the workers. Fails on a bad
 * configuration, an unreadable manifest, an unknown model or source, or fewer usable images than
 * one batch. */
int lvd_loader_open(const lvd_loader_config *c, lvd_loader **out, lvd_error *err);

/* Waits for the next step's batch and returns it (owned by the loader, valid until the next call
 * of lvd_loader_next or lvd_loader_close; the call hands the previous batch back to the workers).
 * Fails when a worker failed (out of memory, or an all-bad set): err says why. */
int lvd_loader_next(lvd_loader *l, const lvd_batch **batch, lvd_error *err);

void lvd_loader_stats_get(lvd_loader *l, lvd_loader_stats *st);

/* Manifest ids of the usable images in id order (n = stats.images); owned by the loader. */
const int64_t *lvd_loader_image_ids(const lvd_loader *l);

/* Stops the workers and frees everything (NULL allowed). */
void lvd_loader_close(lvd_loader *l);

#endif
