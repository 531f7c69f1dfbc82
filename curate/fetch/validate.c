/* lvd_validate of curate/fetch/validate.h: content sniffing, header checks, decoding and re-encoding. */
#include "curate/fetch/validate.h"

#include <math.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

/* Image-module failures without a class (out of memory, ...) count as decode failures. */
static int fail_decode(lvd_error *err)
{
    if (err && !err->cls)
        err->cls = "decode";
    return -1;
}

static int hash(lvd_stored *out, lvd_error *err)
{
    static const char hex[] = "0123456789abcdef";
    unsigned int n = 0;
    if (EVP_Digest(out->data, out->len, out->sha256, &n, EVP_sha256(), NULL) != 1 || n != 32)
        return lvd_fail(err, "sha256 failed");
    for (int i = 0; i < 32; i++) {
        out->sha256_hex[2 * i] = hex[out->sha256[i] >> 4];
        out->sha256_hex[2 * i + 1] = hex[out->sha256[i] & 15];
    }
    out->sha256_hex[64] = '\0';
    return 0;
}

static int check_size(const lvd_image_info *info, const lvd_validate_opts *o, lvd_error *err)
{
    int64_t pixels = (int64_t)info->width * info->height;
    if (o->max_pixels > 0 && pixels > o->max_pixels)
        return lvd_fail_class(err, "too_many_pixels", "%dx%d is more than %lld pixels", info->width,
                              info->height, (long long)o->max_pixels);
    int lo = info->width < info->height ? info->width : info->height;
    int hi = info->width < info->height ? info->height : info->width;
    if (lo < 1 || lo < o->min_side)
        return lvd_fail_class(err, "too_small", "%dx%d: short side below %d", info->width,
                              info->height, o->min_side);
    if (o->max_aspect > 0 && (double)hi / lo > o->max_aspect)
        return lvd_fail_class(err, "bad_aspect", "%dx%d: aspect ratio above %g", info->width,
                              info->height, o->max_aspect);
    return 0;
}

/* Resizes img (decoded, possibly DCT-scaled) so that the long side is max_side, with the short
 * side taken from the full-size dimensions, and encodes it as JPEG into out. */
static int shrink(const lvd_image *img, const lvd_image_info *info, const lvd_validate_opts *o,
                  lvd_stored *out, lvd_error *err)
{
    int lo = info->width < info->height ? info->width : info->height;
    int hi = info->width < info->height ? info->height : info->width;
    int short_side = (int)lround((double)lo * o->max_side / hi);
    if (short_side < 1)
        short_side = 1;
    int wide =
        img->width > img->height || (img->width == img->height && info->width >= info->height);
    int w = wide ? o->max_side : short_side;
    int h = wide ? short_side : o->max_side;
    lvd_image small = {0};
    if (lvd_image_resize(img, w, h, &small, err) != 0)
        return fail_decode(err);
    int rc = lvd_image_encode_jpeg(&small, o->quality, &out->data, &out->len, err);
    lvd_image_free(&small);
    if (rc != 0)
        return fail_decode(err);
    out->format = LVD_IMG_JPEG;
    out->width = w;
    out->height = h;
    return 0;
}

int lvd_validate(uint8_t *body, size_t len, const lvd_validate_opts *opts, lvd_stored *out,
                 lvd_error *err)
{
    memset(out, 0, sizeof *out);
    lvd_image_info info;
    if (lvd_image_sniff(body, len) == LVD_IMG_UNKNOWN)
        return lvd_fail_class(err, "not_image", "no known image signature (%zu bytes)", len);
    if (lvd_image_probe(body, len, &info, err) != 0)
        return fail_decode(err);
    if (check_size(&info, opts, err) != 0)
        return -1;
    int resize =
        opts->max_side > 0 && (info.width > opts->max_side || info.height > opts->max_side);
    lvd_decode_opts dopts = {
        .max_pixels = opts->max_pixels,
        .alpha = LVD_ALPHA_ON_WHITE,
        .apply_orientation = 1,
        .min_side_hint = 0,
    };
    if (resize) {
        int lo = info.width < info.height ? info.width : info.height;
        int hi = info.width < info.height ? info.height : info.width;
        dopts.min_side_hint = (int)ceil((double)lo * opts->max_side / hi);
    }
    lvd_image img = {0};
    if (lvd_image_decode(body, len, &dopts, &img, err) != 0)
        return fail_decode(err);
    int rc = 0;
    if (resize) {
        rc = shrink(&img, &info, opts, out, err);
    } else {
        out->data = body;
        out->len = len;
        out->format = info.format;
        out->width = img.width;
        out->height = img.height;
    }
    lvd_image_free(&img);
    if (rc == 0 && hash(out, err) != 0)
        rc = -1;
    if (rc != 0) {
        if (out->data == body)
            out->data = NULL;
        lvd_stored_free(out);
        return -1;
    }
    if (out->data != body)
        free(body);
    return 0;
}

void lvd_stored_free(lvd_stored *out)
{
    free(out->data);
    memset(out, 0, sizeof *out);
}
