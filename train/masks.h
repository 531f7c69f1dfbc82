/* iBOT block masks: dinov2/data/masking.py (MaskingGenerator) and the mask half of
 * dinov2/data/collate.py (collate_data_and_cast), with randomness from lvd_rng (train/augment.h).
 *
 * Generator: a mask of height x width patches grows block by block until it holds the requested
 * count. A block: up to 10 attempts of an area uniform in [min_patches, budget] (budget = what is
 * still missing, capped at max_patches) and an aspect ratio log-uniform in [min_aspect,
 * 1 / min_aspect]; h = round(sqrt(area * aspect)), w = round(sqrt(area / aspect)) (half to even,
 * as Python rounds); it must be strictly smaller than the grid; its top-left corner is uniform; it
 * is kept when it adds between 1 and budget new patches. The loop stops early when a block adds
 * nothing in 10 attempts, so a mask may hold fewer patches than asked, never more.
 *
 * Collate (per batch of n_crops = n_global * B global crops): int(n_crops * probability) crops
 * get masks, crop i of them with a target of int(N * uniform(p_i, p_{i+1})) patches where p =
 * linspace(ratio_min, ratio_max, n_masked_crops + 1) in float32 (stratified ratios); the others
 * get empty masks; then the list is shuffled (Fisher-Yates, as random.shuffle). Outputs are the
 * masks (n_crops, N), the flat indices of the masked patches (mask_indices_list, row-major over
 * (crop, patch)), per masked patch the weight 1 / (masked patches of its crop) (masks_weight), the
 * number of masked patches and the reference's `upperbound` (sum of int(N * p_{i+1})).
 *
 * As train.py builds it: the grid is global_size / patch_size square and max_patches is Python's
 * 0.5 * S // p * S // p, i.e. floor(floor(0.5 * S / p) * S / p) with S the global crop size (128
 * of 256 patches for 224 / 14; 21 of 49 for 28 / 4). */
#ifndef LVD_TRAIN_MASKS_H
#define LVD_TRAIN_MASKS_H

#include <stdint.h>

#include "store/error.h"
#include "train/augment.h"

typedef struct lvd_mask_gen {
    int height, width;  /* patch grid */
    int min_patches;    /* smallest block area drawn (4) */
    double max_patches; /* largest block area drawn */
    double log_aspect[2];
} lvd_mask_gen;

/* MaskingGenerator(input_size=(height, width), max_num_patches=max_patches), min_num_patches 4,
 * min_aspect 0.3. Fails on a grid side < 1 or max_patches < 1. */
int lvd_mask_gen_init(lvd_mask_gen *g, int height, int width, double max_patches, lvd_error *err);

/* The generator train.py makes for global crops of side global_size and patches of patch_size
 * (grid global_size / patch_size, max_patches as above). */
int lvd_mask_gen_for_crops(lvd_mask_gen *g, int global_size, int patch_size, lvd_error *err);

/* MaskingGenerator._mask: adds one block of at most budget new patches to mask (height * width
 * bytes); returns how many it newly masked, 0 when 10 attempts found none. The drawn area is at
 * least min_patches (or budget when smaller); the rounded rectangle can be one patch smaller
 * (target 4 with aspect 2 rounds to 3 x 1), as in the reference. */
int lvd_mask_add_block(const lvd_mask_gen *g, lvd_rng *r, uint8_t *mask, double budget);

/* Fills mask (height * width bytes, row-major, 1 = masked) with up to n masked patches; returns
 * how many are masked. n <= 0 gives an empty mask. */
int lvd_mask_generate(const lvd_mask_gen *g, lvd_rng *r, int n, uint8_t *mask);

typedef struct lvd_mask_opts {
    float ratio_min, ratio_max; /* mask_ratio_min_max (0.1, 0.5) */
    float probability;          /* mask_sample_probability (0.5) */
} lvd_mask_opts;

/* The reference's ibot settings: (0.1, 0.5) and 0.5. */
void lvd_mask_opts_defaults(lvd_mask_opts *o);

/* One batch's masks. Buffers are preallocated by lvd_masks_alloc for n_crops x n_tokens and
 * reused for every batch. */
typedef struct lvd_masks {
    int n_crops, n_tokens;
    uint8_t *masks;     /* (n_crops, n_tokens) collated_masks */
    int64_t *indices;   /* (n_masked) mask_indices_list: crop * n_tokens + patch, ascending */
    float *weights;     /* (n_masked) masks_weight: 1 / (masked patches of that crop) */
    int64_t n_masked;   /* n_masked_patches */
    int64_t upperbound; /* the reference's upperbound */
    int n_masked_crops; /* crops given a non-empty target */
} lvd_masks;

int lvd_masks_alloc(lvd_masks *m, int n_crops, int n_tokens, lvd_error *err);

void lvd_masks_free(lvd_masks *m);

/* collate_data_and_cast's masks for m->n_crops crops (g's grid must have m->n_tokens patches).
 * Fails on bad options (ratios outside [0, 1] or inverted, probability outside [0, 1]) or a grid
 * mismatch. */
int lvd_masks_collate(const lvd_mask_gen *g, const lvd_mask_opts *o, lvd_rng *r, lvd_masks *m,
                      lvd_error *err);

#endif
