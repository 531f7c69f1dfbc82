/* Format sniffing and dispatch to the per-format decoders, plus the helpers they share. */
#include "image/image.h"

#include <stdlib.h>
#include <string.h>

#include "image/internal.h"

lvd_image_format lvd_image_sniff(const uint8_t *buf, size_t len)
{
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (!buf)
        return LVD_IMG_UNKNOWN;
    if (len >= 3 && buf[0] == 0xff && buf[1] == 0xd8 && buf[2] == 0xff)
        return LVD_IMG_JPEG;
    if (len >= 8 && memcmp(buf, png_sig, 8) == 0)
        return LVD_IMG_PNG;
    if (len >= 12 && memcmp(buf, "RIFF", 4) == 0 && memcmp(buf + 8, "WEBP", 4) == 0)
        return LVD_IMG_WEBP;
    return LVD_IMG_UNKNOWN;
}

const char *lvd_image_format_ext(lvd_image_format fmt)
{
    switch (fmt) {
    case LVD_IMG_JPEG:
        return "jpg";
    case LVD_IMG_PNG:
        return "png";
    case LVD_IMG_WEBP:
        return "webp";
    default:
        return NULL;
    }
}

static int fail_not_image(const uint8_t *buf, size_t len, lvd_error *err)
{
    if (len == 0 || !buf)
        return lvd_fail_class(err, "not_image", "image: empty data");
    return lvd_fail_class(err, "not_image",
                          "image: no JPEG, PNG or WebP signature (first byte 0x%02x, %zu bytes)",
                          buf[0], len);
}

int lvd_image_probe(const uint8_t *buf, size_t len, lvd_image_info *info, lvd_error *err)
{
    memset(info, 0, sizeof *info);
    switch (lvd_image_sniff(buf, len)) {
    case LVD_IMG_JPEG:
        return lvd_jpeg_probe(buf, len, info, err);
    case LVD_IMG_PNG:
        return lvd_png_probe(buf, len, info, err);
    case LVD_IMG_WEBP:
        return lvd_webp_probe(buf, len, info, err);
    default:
        return fail_not_image(buf, len, err);
    }
}

int lvd_image_decode(const uint8_t *buf, size_t len, const lvd_decode_opts *opts, lvd_image *out,
                     lvd_error *err)
{
    static const lvd_decode_opts defaults = {0};
    if (!opts)
        opts = &defaults;
    memset(out, 0, sizeof *out);
    switch (lvd_image_sniff(buf, len)) {
    case LVD_IMG_JPEG:
        return lvd_jpeg_decode(buf, len, opts, out, err);
    case LVD_IMG_PNG:
        return lvd_png_decode(buf, len, opts, out, err);
    case LVD_IMG_WEBP:
        return lvd_webp_decode(buf, len, opts, out, err);
    default:
        return fail_not_image(buf, len, err);
    }
}

void lvd_image_free(lvd_image *img)
{
    if (!img)
        return;
    free(img->rgb);
    memset(img, 0, sizeof *img);
}

int lvd_image_check_size(const char *what, int64_t width, int64_t height, int64_t max_pixels,
                         lvd_error *err)
{
    if (width <= 0 || height <= 0)
        return lvd_fail_class(err, "decode", "%s: invalid dimensions %lldx%lld", what,
                              (long long)width, (long long)height);
    /* Both sides fit in 31 bits in every supported format, so the product cannot overflow. */
    int64_t pixels = width * height;
    if (max_pixels > 0 && pixels > max_pixels)
        return lvd_fail_class(
            err, "too_many_pixels", "%s: %lldx%lld is %lld pixels, above the limit of %lld", what,
            (long long)width, (long long)height, (long long)pixels, (long long)max_pixels);
    if (width > INT32_MAX / 4 || (uint64_t)pixels > SIZE_MAX / 4)
        return lvd_fail_class(err, "decode", "%s: %lldx%lld is too large to address", what,
                              (long long)width, (long long)height);
    return 0;
}

void lvd_image_rgba_to_rgb(uint8_t *dst, const uint8_t *src, size_t n, lvd_alpha_mode alpha)
{
    /* Each pixel is read whole before it is written: in place, dst overlaps the source pixel. */
    for (size_t i = 0; i < n; i++, src += 4, dst += 3) {
        unsigned a = src[3];
        if (alpha == LVD_ALPHA_ON_WHITE && a != 255) {
            /* c*a/255 + 255*(1-a/255), rounded to nearest. */
            unsigned bg = 255u * (255u - a);
            uint8_t r = (uint8_t)((src[0] * a + bg + 127u) / 255u);
            uint8_t g = (uint8_t)((src[1] * a + bg + 127u) / 255u);
            uint8_t b = (uint8_t)((src[2] * a + bg + 127u) / 255u);
            dst[0] = r;
            dst[1] = g;
            dst[2] = b;
        } else {
            uint8_t r = src[0], g = src[1], b = src[2];
            dst[0] = r;
            dst[1] = g;
            dst[2] = b;
        }
    }
}
