/* DINOv2's multi-crop augmentation (dinov2/data/augmentations.py, DataAugmentationDINO) on 8-bit
 * RGB images, with the torchvision transforms it composes applied the way they act on PIL images.
 *
 * Per image: 2 global crops and n_local local crops. Each crop: RandomResizedCrop (torchvision's
 * get_params: 10 attempts of an area share uniform in `scale` and an aspect ratio log-uniform in
 * `ratio`, then the centre-crop fallback), resized with image/'s PIL bicubic, which is antialiased
 * (the filter support widens by the downscale factor) exactly as PIL's Image.resize is, so
 * torchvision's antialias flag does not matter for PIL input; horizontal flip p 0.5; ColorJitter
 * (brightness 0.4, contrast 0.4, saturation 0.2, hue 0.1; the four in a random order) with p 0.8;
 * grayscale p 0.2; Gaussian blur (kernel 9, sigma uniform in [0.1, 2]); solarize (threshold 128,
 * p 0.2) on the second global crop only; ToTensor and Normalize (ImageNet mean and std) into
 * float CHW.
 *
 * Blur probabilities. The reference wraps torchvision's GaussianBlur in RandomApply with
 * p = 1 - p_asked ("keep_p"), believing RandomApply's p to be the chance of keeping the input; it
 * is the chance of applying the transform. So the released models were trained with blur applied
 * with probability 0.0 on global crop 1, 0.9 on global crop 2 and 0.5 on local crops: that is
 * LVD_BLUR_RELEASED, the default. LVD_BLUR_PAPER gives the intended 1.0, 0.1 and 0.5, LVD_BLUR_NONE
 * none (the kernel and sigma range of the reference are sized for 224-px crops: on a 14-px crop a
 * sigma of 2 erases what a small image holds). A probability of 0 never applies a transform; the
 * reference's RandomApply would on a draw of exactly 0 (chance 2^-24), the one place we differ.
 *
 * Colour operations follow Pillow to the level: brightness, contrast and saturation are
 * Image.blend with the float factor and truncation (clipped when extrapolating); contrast blends
 * towards int(mean of the L image + 0.5); L is Pillow's (19595 R + 38470 G + 7471 B + 2^15) >> 16;
 * hue goes through Pillow's RGB -> HSV -> RGB with the hue byte shifted by (int)(factor * 255)
 * modulo 256; solarize inverts values >= threshold. The blur is torchvision's tensor blur on the
 * uint8 image (float32 kernel exp(-x^2 / 2 sigma^2) normalized to sum 1, reflect padding, rounding
 * half to even), applied as two 1-D passes: equal to torchvision's 2-D convolution up to float
 * rounding, so within one level.
 *
 * Randomness comes from lvd_rng, a counter-based generator: a stream is a pure function of its
 * key, so an image's crops depend on (seed, epoch, position) only, never on threads or timing. The
 * draws mirror the reference's (float32 uniforms where torch draws float32) but are not torch's
 * random numbers. Grayscale inputs (Fashion-MNIST) arrive as RGB with equal channels: image/
 * decodes them the way PIL's convert("RGB") does. */
#ifndef LVD_TRAIN_AUGMENT_H
#define LVD_TRAIN_AUGMENT_H

#include <stddef.h>
#include <stdint.h>

#include "image/image.h"
#include "store/error.h"

/* ---- Counter-based random numbers ---- */

/* Draw i of a stream is mix(key + i * golden): SplitMix64 started at a hashed key, so any draw is
 * a pure function of (key, i). Streams with hashed keys overlap with negligible probability. */
typedef struct lvd_rng {
    uint64_t key;
    uint64_t ctr; /* draws taken so far */
} lvd_rng;

/* The stream named by (seed, a, b, c), e.g. (seed, epoch, position, purpose). */
lvd_rng lvd_rng_stream(uint64_t seed, uint64_t a, uint64_t b, uint64_t c);

/* Sub-stream i of r (r's own position does not matter). */
lvd_rng lvd_rng_split(const lvd_rng *r, uint64_t i);

uint64_t lvd_rng_u64(lvd_rng *r);

/* Uniform double in [0, 1) (53 bits), like Python's random.random(). */
double lvd_rng_uniform(lvd_rng *r);

/* Uniform float32 in [lo, hi), as torch's uniform_ computes it: lo + u * (hi - lo), u in [0, 1)
 * with 24 bits. */
float lvd_rng_uniformf(lvd_rng *r, float lo, float hi);

/* Uniform integer in [0, n) without bias (n >= 1). */
uint64_t lvd_rng_below(lvd_rng *r, uint64_t n);

/* ---- Configuration ---- */

typedef enum lvd_blur_mode {
    LVD_BLUR_RELEASED =
        0,          /* what the reference code does: global 1: 0.0, global 2: 0.9, local 0.5 */
    LVD_BLUR_PAPER, /* what it meant: global 1: 1.0, global 2: 0.1, local 0.5 */
    LVD_BLUR_NONE,  /* never */
} lvd_blur_mode;

typedef struct lvd_aug_config {
    int global_size;       /* global crop side (224) */
    int local_size;        /* local crop side (96; 98 for patch 14) */
    int n_local;           /* local crops per image (8; 0 allowed) */
    float global_scale[2]; /* RandomResizedCrop area share (0.32, 1.0) */
    float local_scale[2];  /* (0.05, 0.32) */
    double ratio[2];       /* aspect ratio range, sampled log-uniform (3/4, 4/3) */
    float flip_p;          /* 0.5 */
    float jitter_p;        /* ColorJitter applied with this probability (0.8) */
    float brightness, contrast, saturation, hue; /* 0.4, 0.4, 0.2, 0.1 */
    float gray_p;                                /* 0.2 */
    float blur_p[3];        /* applied with probability: global 1, global 2, local (see top) */
    float blur_sigma[2];    /* (0.1, 2.0) */
    int blur_kernel;        /* odd side of the kernel (9) */
    float solarize_p;       /* on global crop 2 only (0.2) */
    int solarize_threshold; /* 128 */
    float mean[3], std[3];  /* ImageNet: (0.485, 0.456, 0.406), (0.229, 0.224, 0.225) */
} lvd_aug_config;

/* The reference's settings (DataAugmentationDINO with ssl_default_config.yaml): global 224, 8
 * local crops of 96, the released blur probabilities. */
void lvd_aug_defaults(lvd_aug_config *c);

/* Sets blur_p to the released (default) or the paper's probabilities, or to 0. */
void lvd_aug_set_blur(lvd_aug_config *c, lvd_blur_mode mode);

/* Fails on sizes < 1, a crop with blur possible but a side not above blur_kernel / 2 (reflect
 * padding needs it, as in torch), probabilities outside [0, 1], empty or inverted ranges, a hue
 * above 0.5, or std 0. */
int lvd_aug_check(const lvd_aug_config *c, lvd_error *err);

/* ---- The pieces (8-bit RGB, interleaved, n pixels), exposed for tests ---- */

typedef struct lvd_crop_box {
    int top, left, height, width;
} lvd_crop_box;

/* torchvision RandomResizedCrop.get_params for an image of width x height. */
lvd_crop_box lvd_rrc_params(lvd_rng *r, int width, int height, const float scale[2],
                            const double ratio[2]);

/* Pillow's L value of one RGB pixel. */
uint8_t lvd_rgb_luma(const uint8_t *rgb);

/* Pillow's RGB -> HSV and HSV -> RGB of one pixel (3 bytes each). */
void lvd_rgb_to_hsv(const uint8_t *rgb, uint8_t *hsv);
void lvd_hsv_to_rgb(const uint8_t *hsv, uint8_t *rgb);

void lvd_adjust_brightness(uint8_t *rgb, size_t n, float factor);
void lvd_adjust_contrast(uint8_t *rgb, size_t n, float factor);
void lvd_adjust_saturation(uint8_t *rgb, size_t n, float factor);
void lvd_adjust_hue(uint8_t *rgb, size_t n, float factor); /* factor in [-0.5, 0.5] */
void lvd_grayscale(uint8_t *rgb, size_t n);                /* L replicated in all 3 channels */
void lvd_solarize(uint8_t *rgb, size_t n, int threshold);
void lvd_hflip(uint8_t *rgb, int width, int height);

/* torchvision's normalized 1-D Gaussian kernel of ksize (odd) taps for sigma, in float32. */
void lvd_gaussian_kernel(int ksize, float sigma, float *k);

#define LVD_BLUR_MAX_KERNEL 63

/* Floats of scratch lvd_gaussian_blur needs. */
size_t lvd_gaussian_blur_tmp(int width, int height, int ksize);

/* Blurs the width x height image in place (both sides > ksize / 2, ksize odd, at most
 * LVD_BLUR_MAX_KERNEL). tmp holds lvd_gaussian_blur_tmp(width, height, ksize) floats. */
void lvd_gaussian_blur(uint8_t *rgb, int width, int height, int ksize, float sigma, float *tmp);

/* ToTensor + Normalize: n pixels of interleaved RGB to 3 planes of n floats. */
void lvd_normalize_chw(const uint8_t *rgb, size_t n, const float mean[3], const float std[3],
                       float *chw);

/* ---- The whole multi-crop transform ---- */

/* What was drawn for one crop (for tests and debugging). */
typedef struct lvd_crop_record {
    lvd_crop_box box;
    int flipped;
    int jittered;     /* ColorJitter applied */
    int order[4];     /* order of 0 brightness, 1 contrast, 2 saturation, 3 hue when jittered */
    float factors[4]; /* brightness, contrast, saturation, hue factors when jittered */
    int gray;
    float blur_sigma; /* 0 when not blurred */
    int solarized;
} lvd_crop_record;

/* Per-thread scratch for lvd_augment (grows with the largest image seen, then stays). */
typedef struct lvd_augmenter lvd_augmenter;

/* Checks c (lvd_aug_check) and makes an augmenter using a copy of it. */
int lvd_augmenter_new(const lvd_aug_config *c, lvd_augmenter **out, lvd_error *err);

void lvd_augmenter_free(lvd_augmenter *a);

/* The crops of img: crop k (0, 1 global, then 2 .. 1 + n_local local) draws from
 * lvd_rng_split(rng, k). Global crop g goes to global[g] (3 * global_size^2 floats, CHW), local
 * crop l to local[l] (3 * local_size^2 floats). rec, when not NULL, receives 2 + n_local records.
 * Fails only on an empty image or out of memory. */
int lvd_augment(lvd_augmenter *a, const lvd_image *img, const lvd_rng *rng, float *const *global,
                float *const *local, lvd_crop_record *rec, lvd_error *err);

#endif
