/* The embedding input of image/image.h: the decoding for embedding (lvd_image_decode_rgb) and
 * torchvision's evaluation transform, Resize(resize) -> CenterCrop(crop) -> ToTensor -> Normalize,
 * with the sizes and rounding torchvision computes and float32 arithmetic as torch does it. */
#include <stdlib.h>

#include "image/internal.h"

int lvd_image_decode_rgb(const uint8_t *buf, size_t len, lvd_image *out, lvd_error *err)
{
    lvd_decode_opts o = {.max_pixels = LVD_IMAGE_MAX_PIXELS, .alpha = LVD_ALPHA_DROP};
    return lvd_image_decode(buf, len, &o, out, err);
}

/* Python's round(k / 2.0) (half to even) for a non-negative integer k. */
static int half_round_even(int k)
{
    int q = k / 2;
    return (k % 2 == 1 && q % 2 == 1) ? q + 1 : q;
}

int lvd_image_resize_center_crop(const lvd_image *img, int resize, int crop, uint8_t *hwc,
                                 lvd_error *err)
{
    if (!img->rgb || img->width <= 0 || img->height <= 0)
        return lvd_fail(err, "preprocess: empty input image");
    if (resize <= 0 || crop <= 0 || crop > resize)
        return lvd_fail(err, "preprocess: invalid sizes resize %d crop %d", resize, crop);
    int w = img->width, h = img->height;
    int short_side = w <= h ? w : h, long_side = w <= h ? h : w;
    /* int(resize * long / short): Python's true division of exact integers, then truncation. */
    double scaled = (double)((int64_t)resize * long_side) / (double)short_side;
    if (scaled > 1 << 30)
        return lvd_fail(err, "preprocess: %dx%d is too elongated to resize", w, h);
    int new_long = (int)scaled;
    int rw = w <= h ? resize : new_long, rh = w <= h ? new_long : resize;
    int top = half_round_even(rh - crop), left = half_round_even(rw - crop);
    return lvd_image_resample_window(img, rw, rh, left, top, crop, crop, hwc, err);
}

int lvd_image_preprocess(const lvd_image *img, int resize, int crop, float *chw, lvd_error *err)
{
    static const float mean[3] = {0.485f, 0.456f, 0.406f};
    static const float std[3] = {0.229f, 0.224f, 0.225f};
    if (crop <= 0)
        return lvd_fail(err, "preprocess: invalid crop %d", crop);
    size_t plane = (size_t)crop * crop;
    uint8_t *px = malloc(plane * 3);
    if (!px)
        return lvd_fail(err, "preprocess: out of memory");
    if (lvd_image_resize_center_crop(img, resize, crop, px, err)) {
        free(px);
        return -1;
    }
    /* ToTensor divides by 255, Normalize subtracts then divides, all in float32. */
    for (size_t i = 0; i < plane; i++) {
        for (int c = 0; c < 3; c++) {
            float x = (float)px[3 * i + c] / 255.0f;
            chw[c * plane + i] = (x - mean[c]) / std[c];
        }
    }
    free(px);
    return 0;
}
