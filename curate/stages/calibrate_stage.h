/* Threshold calibration for lvd-dedup (lvd-calibrate, lvd-dedup --calibrate): how well a model's
 * similarity tells planted copies of pool images from distinct images, measured on the pool.
 *
 * A sample of pool images (evenly spaced by image id among those with an embedding of the model)
 * is read from the fetch shards and five copies of each are made: a horizontal flip, a JPEG
 * re-encode at quality 40, a center crop keeping 80% of each side, a downscale to half of each
 * side and a slight color change (red +8% + 6, blue -8%). The copies are embedded as lvd-embed
 * embeds (the model needs weights) and compared with the image's stored embedding.
 *
 * Copy detection at threshold t (LVD_CALIBRATE_THRESHOLDS values, 0.30 to 0.95 by 0.05, then
 * 0.99): a (copy, its original) pair is a true positive when its similarity is > t; recall = TP /
 * copies. False positives are the ordered pairs (sampled image, other pool image) and (copy,
 * pool image other than its original) above t, counted over every pool embedding of the model
 * (sgemm, blocks of pool rows); precision = TP / (TP + FP), NaN when nothing is above t. Pool
 * images that are themselves copies of each other count as false positives. Each sampled
 * image's most similar other pool image gives nearest_other; the suggested threshold is the
 * midpoint between the 5th percentile of the copy similarities and the 95th percentile of
 * nearest_other when the first is higher, else the copies' 5th percentile (separable = 0). A run
 * of stage 'calibrate' records every figure as its counts. Memory: sample x 6 x dim floats plus
 * sample x 6 x 4096 floats of similarities. */
#ifndef LVD_CURATE_STAGES_CALIBRATE_STAGE_H
#define LVD_CURATE_STAGES_CALIBRATE_STAGE_H

#include <stdint.h>

#include "store/error.h"
#include "store/manifest.h"

#define LVD_CALIBRATE_VARIANTS   5
#define LVD_CALIBRATE_THRESHOLDS 15

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

/* Copy detection at one threshold. */
typedef struct lvd_calibrate_point {
    double threshold;
    int64_t tp;       /* (copy, original) pairs above the threshold */
    int64_t fp_pool;  /* (sampled image, other pool image) pairs above it */
    int64_t fp_copy;  /* (copy, pool image not its original) pairs above it */
    double precision; /* tp / (tp + fp_pool + fp_copy); NaN when that is 0 / 0 */
    double recall;    /* tp / copies */
    double recall_by_kind[LVD_CALIBRATE_VARIANTS];
} lvd_calibrate_point;

typedef struct lvd_calibrate_result {
    lvd_sim_stats copies[LVD_CALIBRATE_VARIANTS]; /* flip, jpeg40, crop80, half, color */
    lvd_sim_stats all_copies;
    lvd_sim_stats nearest_other;
    double threshold;
    int separable;
    lvd_calibrate_point points[LVD_CALIBRATE_THRESHOLDS]; /* ascending thresholds */
} lvd_calibrate_result;

/* "flip", "jpeg40", "crop80", "half", "color". */
const char *lvd_calibrate_variant_name(int v);

/* Threshold i (0 .. LVD_CALIBRATE_THRESHOLDS - 1) of the detection table. */
double lvd_calibrate_threshold(int i);

/* sample 100, resize 256, crop 224. */
void lvd_calibrate_defaults(lvd_calibrate_options *o);

/* Measures and records. Fails on an unknown or external model, fewer than 2 pool images with
 * embeddings, or when no sampled image can be read and decoded. */
int lvd_calibrate_run(lvd_manifest *m, const lvd_calibrate_options *o, lvd_calibrate_result *res,
                      lvd_error *err);

#endif
