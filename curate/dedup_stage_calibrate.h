/* Threshold calibration for lvd-dedup (lvd-calibrate): how similar a model finds copies of an
 * image compared with distinct images, measured on the pool itself.
 *
 * A sample of pool images (evenly spaced by image id among those with an embedding of the model)
 * is read from the fetch shards and three copies of each are made: a horizontal flip, a JPEG
 * re-encode at quality 40 and a center crop keeping 80% of each side. The copies are embedded
 * as lvd-embed embeds (the model needs weights) and compared with the image's stored embedding;
 * each sampled image's nearest other pool image (exact search over the model's pool embeddings)
 * gives the distinct-image side. The suggested threshold is the midpoint between the 5th
 * percentile of the copy similarities and the 95th percentile of the nearest-other ones when
 * the first is higher, else the copies' 5th percentile (separable = 0). A run of stage
 * 'calibrate' records the figures as its counts. */
#ifndef LVD_CURATE_DEDUP_STAGE_CALIBRATE_H
#define LVD_CURATE_DEDUP_STAGE_CALIBRATE_H

#include <stdint.h>

#include "store/error.h"
#include "store/manifest.h"

#define LVD_CALIBRATE_VARIANTS 3

typedef struct lvd_calibrate_options {
    const char *model;
    int sample;       /* pool images sampled (100) */
    int resize, crop; /* eval transform, as lvd-embed (256 / 224) */
} lvd_calibrate_options;

/* Quantiles of one set of similarities. */
typedef struct lvd_sim_stats {
    int64_t n;
    double min, p5, median, p95, max;
} lvd_sim_stats;

typedef struct lvd_calibrate_result {
    lvd_sim_stats copies[LVD_CALIBRATE_VARIANTS]; /* flip, jpeg40, crop80 */
    lvd_sim_stats all_copies;
    lvd_sim_stats nearest_other;
    double threshold;
    int separable;
} lvd_calibrate_result;

/* "flip", "jpeg40", "crop80". */
const char *lvd_calibrate_variant_name(int v);

/* sample 100, resize 256, crop 224. */
void lvd_calibrate_defaults(lvd_calibrate_options *o);

/* Measures and records. Fails on an unknown or external model, fewer than 2 pool images with
 * embeddings, or when no sampled image can be read and decoded. */
int lvd_calibrate_run(lvd_manifest *m, const lvd_calibrate_options *o, lvd_calibrate_result *res,
                      lvd_error *err);

#endif
