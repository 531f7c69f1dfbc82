/* WebP decoding with libwebp (lossy and lossless, still images only). */
#include <stdlib.h>

#include <webp/decode.h>

#include "image/internal.h"

static const char *status_name(VP8StatusCode st)
{
    switch (st) {
    case VP8_STATUS_OUT_OF_MEMORY:
        return "out of memory";
    case VP8_STATUS_INVALID_PARAM:
        return "invalid parameter";
    case VP8_STATUS_BITSTREAM_ERROR:
        return "corrupt bitstream";
    case VP8_STATUS_UNSUPPORTED_FEATURE:
        return "unsupported feature";
    case VP8_STATUS_NOT_ENOUGH_DATA:
        return "truncated data";
    default:
        return "unknown error";
    }
}

static int read_features(const uint8_t *buf, size_t len, WebPBitstreamFeatures *f, lvd_error *err)
{
    VP8StatusCode st = WebPGetFeatures(buf, len, f);
    if (st != VP8_STATUS_OK)
        return lvd_fail_class(err, "decode", "webp: unreadable header (%s)", status_name(st));
    return 0;
}

int lvd_webp_probe(const uint8_t *buf, size_t len, lvd_image_info *info, lvd_error *err)
{
    WebPBitstreamFeatures f;
    if (read_features(buf, len, &f, err))
        return -1;
    info->format = LVD_IMG_WEBP;
    info->width = f.width;
    info->height = f.height;
    return 0;
}

int lvd_webp_decode(const uint8_t *buf, size_t len, const lvd_decode_opts *opts, lvd_image *out,
                    lvd_error *err)
{
    WebPBitstreamFeatures f;
    if (read_features(buf, len, &f, err))
        return -1;
    if (f.has_animation)
        return lvd_fail_class(err, "decode", "webp: animated WebP is not supported");
    if (lvd_image_check_size("webp", f.width, f.height, opts->max_pixels, err))
        return -1;
    size_t n = (size_t)f.width * (size_t)f.height;
    /* Compositing needs alpha; dropping it is what decoding straight to RGB does. */
    int rgba = f.has_alpha && opts->alpha == LVD_ALPHA_ON_WHITE;
    size_t channels = rgba ? 4 : 3;
    uint8_t *pixels = malloc(n * channels);
    if (!pixels)
        return lvd_fail(err, "webp: out of memory for %dx%d pixels", f.width, f.height);
    size_t size = n * channels;
    int stride = f.width * (int)channels;
    uint8_t *ok = rgba ? WebPDecodeRGBAInto(buf, len, pixels, size, stride)
                       : WebPDecodeRGBInto(buf, len, pixels, size, stride);
    if (!ok) {
        free(pixels);
        return lvd_fail_class(err, "decode", "webp: corrupt or truncated data");
    }
    if (rgba) {
        lvd_image_rgba_to_rgb(pixels, pixels, n, opts->alpha);
        uint8_t *shrunk = realloc(pixels, n * 3);
        if (shrunk)
            pixels = shrunk;
    }
    out->width = f.width;
    out->height = f.height;
    out->rgb = pixels;
    return 0;
}
