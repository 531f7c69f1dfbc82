/* The multi-crop transform of train/augment.h: configuration, RandomResizedCrop's parameters and
 * the per-crop pipeline (crop, resize, flip, colour, blur, solarize, normalize). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/augment.h"

void lvd_aug_defaults(lvd_aug_config *c)
{
    memset(c, 0, sizeof *c);
    c->global_size = 224;
    c->local_size = 96;
    c->n_local = 8;
    c->global_scale[0] = 0.32f;
    c->global_scale[1] = 1.0f;
    c->local_scale[0] = 0.05f;
    c->local_scale[1] = 0.32f;
    c->ratio[0] = 3.0 / 4.0;
    c->ratio[1] = 4.0 / 3.0;
    c->flip_p = 0.5f;
    c->jitter_p = 0.8f;
    c->brightness = 0.4f;
    c->contrast = 0.4f;
    c->saturation = 0.2f;
    c->hue = 0.1f;
    c->gray_p = 0.2f;
    lvd_aug_set_blur(c, LVD_BLUR_RELEASED);
    c->blur_sigma[0] = 0.1f;
    c->blur_sigma[1] = 2.0f;
    c->blur_kernel = 9;
    c->solarize_p = 0.2f;
    c->solarize_threshold = 128;
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    memcpy(c->mean, mean, sizeof mean);
    memcpy(c->std, std, sizeof std);
}

void lvd_aug_set_blur(lvd_aug_config *c, lvd_blur_mode mode)
{
    /* The reference asks GaussianBlur(p=1.0), (p=0.1), (p=0.5) and passes 1 - p to RandomApply. */
    const float asked[3] = {1.0f, 0.1f, 0.5f};
    for (int i = 0; i < 3; i++)
        c->blur_p[i] = mode == LVD_BLUR_NONE    ? 0.0f
                       : mode == LVD_BLUR_PAPER ? asked[i]
                                                : 1.0f - asked[i];
}

static int bad_p(float p)
{
    return !(p >= 0.0f && p <= 1.0f);
}

int lvd_aug_check(const lvd_aug_config *c, lvd_error *err)
{
    if (c->global_size < 1 || c->local_size < 1 || c->n_local < 0 || c->n_local > 64)
        return lvd_fail(err, "augment: bad crop sizes (global %d, local %d x %d)", c->global_size,
                        c->n_local, c->local_size);
    if (!(c->global_scale[0] > 0.0f && c->global_scale[0] <= c->global_scale[1]) ||
        !(c->local_scale[0] > 0.0f && c->local_scale[0] <= c->local_scale[1]))
        return lvd_fail(err, "augment: crop scale ranges must satisfy 0 < min <= max");
    if (!(c->ratio[0] > 0.0 && c->ratio[0] <= c->ratio[1]))
        return lvd_fail(err, "augment: aspect ratio range must satisfy 0 < min <= max");
    if (bad_p(c->flip_p) || bad_p(c->jitter_p) || bad_p(c->gray_p) || bad_p(c->solarize_p) ||
        bad_p(c->blur_p[0]) || bad_p(c->blur_p[1]) || bad_p(c->blur_p[2]))
        return lvd_fail(err, "augment: probabilities must lie in [0, 1]");
    if (!(c->brightness >= 0.0f && c->contrast >= 0.0f && c->saturation >= 0.0f && c->hue >= 0.0f &&
          c->hue <= 0.5f))
        return lvd_fail(err, "augment: jitter strengths must be >= 0 (hue <= 0.5)");
    if (c->blur_kernel < 1 || c->blur_kernel > LVD_BLUR_MAX_KERNEL || c->blur_kernel % 2 == 0 ||
        !(c->blur_sigma[0] > 0.0f && c->blur_sigma[0] <= c->blur_sigma[1]))
        return lvd_fail(err, "augment: blur kernel must be odd in 1..%d with 0 < sigma min <= max",
                        LVD_BLUR_MAX_KERNEL);
    int half = c->blur_kernel / 2;
    if (((c->blur_p[0] > 0.0f || c->blur_p[1] > 0.0f) && c->global_size <= half) ||
        (c->blur_p[2] > 0.0f && c->n_local > 0 && c->local_size <= half))
        return lvd_fail(err, "augment: a blurred crop needs sides above %d (kernel %d)", half,
                        c->blur_kernel);
    for (int i = 0; i < 3; i++)
        if (!(c->std[i] != 0.0f))
            return lvd_fail(err, "augment: std must not be 0");
    return 0;
}

lvd_crop_box lvd_rrc_params(lvd_rng *r, int width, int height, const float scale[2],
                            const double ratio[2])
{
    double area = (double)height * (double)width;
    /* torch.log(torch.tensor(ratio)): float32. */
    float lr0 = logf((float)ratio[0]), lr1 = logf((float)ratio[1]);
    for (int attempt = 0; attempt < 10; attempt++) {
        double target = area * (double)lvd_rng_uniformf(r, scale[0], scale[1]);
        double aspect = (double)expf(lvd_rng_uniformf(r, lr0, lr1));
        /* Python's round() is half to even, as nearbyint is in the default rounding mode. */
        double wf = nearbyint(sqrt(target * aspect)), hf = nearbyint(sqrt(target / aspect));
        if (wf > 0 && wf <= width && hf > 0 && hf <= height) {
            int w = (int)wf, h = (int)hf;
            int top = (int)lvd_rng_below(r, (uint64_t)(height - h + 1));
            int left = (int)lvd_rng_below(r, (uint64_t)(width - w + 1));
            return (lvd_crop_box){top, left, h, w};
        }
    }
    /* The fallback: the largest centred crop with the aspect ratio clamped to the range. */
    double in_ratio = (double)width / (double)height;
    int w = width, h = height;
    if (in_ratio < ratio[0])
        h = (int)nearbyint((double)w / ratio[0]);
    else if (in_ratio > ratio[1])
        w = (int)nearbyint((double)h * ratio[1]);
    return (lvd_crop_box){(height - h) / 2, (width - w) / 2, h, w};
}

struct lvd_augmenter {
    lvd_aug_config c;
    uint8_t *crop; /* the cropped box before resizing */
    size_t crop_cap;
    uint8_t *px; /* one crop at its final size */
    float *tmp;  /* the blur's intermediate rows */
};

int lvd_augmenter_new(const lvd_aug_config *c, lvd_augmenter **out, lvd_error *err)
{
    *out = NULL;
    if (lvd_aug_check(c, err))
        return -1;
    lvd_augmenter *a = calloc(1, sizeof *a);
    if (!a)
        return lvd_fail(err, "augment: out of memory");
    a->c = *c;
    int side = c->global_size > c->local_size ? c->global_size : c->local_size;
    size_t px = (size_t)side * side * 3;
    a->px = malloc(px);
    a->tmp = malloc(lvd_gaussian_blur_tmp(side, side, c->blur_kernel) * sizeof *a->tmp);
    if (!a->px || !a->tmp) {
        lvd_augmenter_free(a);
        return lvd_fail(err, "augment: out of memory for %dx%d crops", side, side);
    }
    *out = a;
    return 0;
}

void lvd_augmenter_free(lvd_augmenter *a)
{
    if (!a)
        return;
    free(a->crop);
    free(a->px);
    free(a->tmp);
    free(a);
}

/* torch.randperm(4) as a Fisher-Yates shuffle. */
static void randperm4(lvd_rng *r, int *order)
{
    for (int i = 0; i < 4; i++)
        order[i] = i;
    for (int i = 3; i > 0; i--) {
        int j = (int)lvd_rng_below(r, (uint64_t)i + 1);
        int t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

/* ColorJitter: factors from [max(0, 1 - s), 1 + s] (hue [-s, s]); a strength of 0 is skipped
 * without a draw, as torchvision stores None for it. */
static void color_jitter(const lvd_aug_config *c, lvd_rng *r, uint8_t *px, size_t n,
                         lvd_crop_record *rec)
{
    randperm4(r, rec->order);
    const float s[4] = {c->brightness, c->contrast, c->saturation, c->hue};
    for (int i = 0; i < 4; i++) {
        rec->factors[i] = i == 3 ? 0.0f : 1.0f;
        if (s[i] > 0.0f)
            rec->factors[i] = i == 3 ? lvd_rng_uniformf(r, -s[i], s[i])
                                     : lvd_rng_uniformf(r, fmaxf(0.0f, 1.0f - s[i]), 1.0f + s[i]);
    }
    for (int k = 0; k < 4; k++) {
        int op = rec->order[k];
        if (!(s[op] > 0.0f))
            continue;
        float f = rec->factors[op];
        if (op == 0)
            lvd_adjust_brightness(px, n, f);
        else if (op == 1)
            lvd_adjust_contrast(px, n, f);
        else if (op == 2)
            lvd_adjust_saturation(px, n, f);
        else
            lvd_adjust_hue(px, n, f);
    }
}

/* Copies the box out of img (unless it is the whole image) and resizes it to side x side into
 * a->px. */
static int crop_resize(lvd_augmenter *a, const lvd_image *img, lvd_crop_box b, int side,
                       lvd_error *err)
{
    lvd_image src = *img;
    if (b.width != img->width || b.height != img->height) {
        size_t need = (size_t)b.width * b.height * 3;
        if (need > a->crop_cap) {
            uint8_t *p = realloc(a->crop, need);
            if (!p)
                return lvd_fail(err, "augment: out of memory for a %dx%d crop", b.width, b.height);
            a->crop = p;
            a->crop_cap = need;
        }
        size_t row = (size_t)b.width * 3;
        for (int y = 0; y < b.height; y++)
            memcpy(a->crop + (size_t)y * row,
                   img->rgb + ((size_t)(b.top + y) * img->width + b.left) * 3, row);
        src = (lvd_image){b.width, b.height, a->crop};
    }
    lvd_image out;
    if (lvd_image_resize(&src, side, side, &out, err))
        return -1;
    memcpy(a->px, out.rgb, (size_t)side * side * 3);
    lvd_image_free(&out);
    return 0;
}

/* RandomApply's test (applied unless p < u), except that p 0 never applies. */
static int applies(float p, float u)
{
    return p > 0.0f && !(p < u);
}

/* kind 0: global crop 1, 1: global crop 2, 2: a local crop. */
static int one_crop(lvd_augmenter *a, const lvd_image *img, lvd_rng *r, int kind, float *chw,
                    lvd_crop_record *rec, lvd_error *err)
{
    const lvd_aug_config *c = &a->c;
    int side = kind < 2 ? c->global_size : c->local_size;
    size_t n = (size_t)side * side;
    memset(rec, 0, sizeof *rec);
    rec->box = lvd_rrc_params(r, img->width, img->height,
                              kind < 2 ? c->global_scale : c->local_scale, c->ratio);
    if (crop_resize(a, img, rec->box, side, err))
        return -1;
    /* RandomHorizontalFlip, RandomGrayscale, RandomSolarize apply when rand < p; RandomApply
     * (ColorJitter, the reference's GaussianBlur) applies unless p < rand, here never at p 0
     * (augment.h); the test's draw is made whatever p is. */
    if (lvd_rng_uniformf(r, 0.0f, 1.0f) < c->flip_p) {
        rec->flipped = 1;
        lvd_hflip(a->px, side, side);
    }
    if (applies(c->jitter_p, lvd_rng_uniformf(r, 0.0f, 1.0f))) {
        rec->jittered = 1;
        color_jitter(c, r, a->px, n, rec);
    }
    if (lvd_rng_uniformf(r, 0.0f, 1.0f) < c->gray_p) {
        rec->gray = 1;
        lvd_grayscale(a->px, n);
    }
    if (applies(c->blur_p[kind], lvd_rng_uniformf(r, 0.0f, 1.0f))) {
        rec->blur_sigma = lvd_rng_uniformf(r, c->blur_sigma[0], c->blur_sigma[1]);
        lvd_gaussian_blur(a->px, side, side, c->blur_kernel, rec->blur_sigma, a->tmp);
    }
    if (kind == 1 && lvd_rng_uniformf(r, 0.0f, 1.0f) < c->solarize_p) {
        rec->solarized = 1;
        lvd_solarize(a->px, n, c->solarize_threshold);
    }
    lvd_normalize_chw(a->px, n, c->mean, c->std, chw);
    return 0;
}

int lvd_augment(lvd_augmenter *a, const lvd_image *img, const lvd_rng *rng, float *const *global,
                float *const *local, lvd_crop_record *rec, lvd_error *err)
{
    if (!img->rgb || img->width <= 0 || img->height <= 0)
        return lvd_fail(err, "augment: empty image");
    for (int k = 0; k < 2 + a->c.n_local; k++) {
        lvd_rng r = lvd_rng_split(rng, (uint64_t)k);
        lvd_crop_record scratch;
        int kind = k < 2 ? k : 2;
        float *out = k < 2 ? global[k] : local[k - 2];
        if (one_crop(a, img, &r, kind, out, rec ? &rec[k] : &scratch, err))
            return -1;
    }
    return 0;
}
