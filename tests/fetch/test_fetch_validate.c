/* Content validation of fetched bytes: classes, resize with aspect kept, EXIF orientation applied
 * when re-encoding, alpha composited on white, originals kept byte for byte, sha256. */
#include <openssl/evp.h>
#include <stdlib.h>
#include <zlib.h>

#include "curate/fetch/validate.h"
#include "tests/check.h"

static uint8_t *gradient_jpeg(int w, int h, size_t *len)
{
    lvd_image img = {w, h, malloc((size_t)w * h * 3)};
    for (int i = 0; i < w * h; i++) {
        img.rgb[3 * i] = (uint8_t)(i % w * 255 / w);
        img.rgb[3 * i + 1] = (uint8_t)(i / w * 255 / h);
        img.rgb[3 * i + 2] = 128;
    }
    uint8_t *out;
    lvd_error err;
    if (lvd_image_encode_jpeg(&img, 90, &out, len, &err) != 0)
        exit(1);
    lvd_image_free(&img);
    return out;
}

static void put_be(uint8_t *p, uint32_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

/* The JPEG with an Exif APP1 segment holding only Orientation = orient, right after SOI. */
static uint8_t *with_orientation(const uint8_t *jpg, size_t len, int orient, size_t *out_len)
{
    uint8_t app1[2 + 2 + 6 + 8 + 2 + 12 + 4] = {0xFF, 0xE1};
    put_be(app1 + 2, sizeof app1 - 2, 2);
    memcpy(app1 + 4, "Exif\0\0MM\0*", 10);
    put_be(app1 + 14, 8, 4);
    put_be(app1 + 18, 1, 2);
    put_be(app1 + 20, 0x0112, 2);
    put_be(app1 + 22, 3, 2);
    put_be(app1 + 24, 1, 4);
    put_be(app1 + 28, (uint32_t)orient, 2);
    *out_len = len + sizeof app1;
    uint8_t *out = malloc(*out_len);
    memcpy(out, jpg, 2);
    memcpy(out + 2, app1, sizeof app1);
    memcpy(out + 2 + sizeof app1, jpg + 2, len - 2);
    return out;
}

static size_t png_chunk(uint8_t *p, const char *type, const uint8_t *data, uint32_t n)
{
    put_be(p, n, 4);
    memcpy(p + 4, type, 4);
    if (n)
        memcpy(p + 8, data, n);
    put_be(p + 8 + n, (uint32_t)crc32(0, p + 4, n + 4), 4);
    return 12 + n;
}

/* An RGBA PNG of w x h, every pixel (r, g, b, a); with_data 0 gives only the header chunks. */
static uint8_t *rgba_png(uint32_t w, uint32_t h, const uint8_t px[4], int with_data, size_t *len)
{
    size_t raw_len = with_data ? (size_t)h * (1 + 4 * w) : 0;
    uint8_t *raw = malloc(raw_len + 1);
    for (size_t y = 0; y < (with_data ? h : 0); y++) {
        uint8_t *row = raw + y * (1 + 4 * w);
        row[0] = 0;
        for (size_t x = 0; x < w; x++)
            memcpy(row + 1 + 4 * x, px, 4);
    }
    uLongf zlen = compressBound(raw_len);
    uint8_t *z = malloc(zlen);
    compress(z, &zlen, raw, raw_len);
    uint8_t *out = malloc(8 + 25 + 12 + zlen + 12);
    memcpy(out, "\x89PNG\r\n\x1a\n", 8);
    uint8_t ihdr[13] = {0};
    put_be(ihdr, w, 4);
    put_be(ihdr + 4, h, 4);
    ihdr[8] = 8;
    ihdr[9] = 6;
    size_t n = 8 + png_chunk(out + 8, "IHDR", ihdr, 13);
    if (with_data)
        n += png_chunk(out + n, "IDAT", z, (uint32_t)zlen);
    n += png_chunk(out + n, "IEND", NULL, 0);
    free(raw);
    free(z);
    *len = n;
    return out;
}

static const lvd_validate_opts opts = {
    .max_pixels = 1000000, .min_side = 32, .max_aspect = 4.0, .max_side = 200, .quality = 90};

/* Validates a copy of buf; returns the class ("ok" on success) and fills out. */
static const char *validate(const uint8_t *buf, size_t len, const lvd_validate_opts *o,
                            lvd_stored *out)
{
    uint8_t *copy = malloc(len ? len : 1);
    memcpy(copy, buf, len);
    lvd_error err;
    lvd_error_clear(&err);
    if (lvd_validate(copy, len, o, out, &err) == 0)
        return "ok";
    free(copy);
    return err.cls ? err.cls : "<none>";
}

static void check_class(const uint8_t *buf, size_t len, const lvd_validate_opts *o,
                        const char *want)
{
    lvd_stored out;
    const char *got = validate(buf, len, o, &out);
    CHECK_MSG(strcmp(got, want) == 0, "got %s, want %s", got, want);
    if (strcmp(got, "ok") == 0)
        lvd_stored_free(&out);
}

int main(void)
{
    size_t jlen, olen;
    uint8_t *jpg = gradient_jpeg(400, 200, &jlen);
    uint8_t *rotated = with_orientation(jpg, jlen, 6, &olen);
    lvd_stored out;
    lvd_image img;
    lvd_error err;

    /* Larger than max_side: resized to fit (aspect kept), orientation applied, JPEG. */
    CHECK(strcmp(validate(rotated, olen, &opts, &out), "ok") == 0);
    CHECK_MSG(out.width == 100 && out.height == 200, "%dx%d", out.width, out.height);
    CHECK(out.format == LVD_IMG_JPEG);
    CHECK(lvd_image_decode(out.data, out.len, NULL, &img, &err) == 0 && img.width == 100 &&
          img.height == 200);
    lvd_image_free(&img);
    uint8_t md[32];
    unsigned int mdlen = 0;
    EVP_Digest(out.data, out.len, md, &mdlen, EVP_sha256(), NULL);
    CHECK(mdlen == 32 && memcmp(md, out.sha256, 32) == 0);
    char hex[65];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    CHECK(strcmp(hex, out.sha256_hex) == 0);
    lvd_stored_free(&out);

    /* max_side 0 keeps the original bytes; dimensions are reported with orientation applied. */
    lvd_validate_opts keep = opts;
    keep.max_side = 0;
    CHECK(strcmp(validate(rotated, olen, &keep, &out), "ok") == 0);
    CHECK(out.len == olen && memcmp(out.data, rotated, olen) == 0);
    CHECK_MSG(out.width == 200 && out.height == 400, "%dx%d", out.width, out.height);
    lvd_stored_free(&out);

    /* Transparent pixels are composited on white. */
    size_t plen;
    const uint8_t clear[4] = {0, 0, 0, 0};
    uint8_t *png = rgba_png(300, 300, clear, 1, &plen);
    CHECK(strcmp(validate(png, plen, &opts, &out), "ok") == 0);
    CHECK(out.format == LVD_IMG_JPEG && out.width == 200 && out.height == 200);
    CHECK(lvd_image_decode(out.data, out.len, NULL, &img, &err) == 0);
    int white = 1;
    for (int i = 0; img.rgb && i < img.width * img.height * 3; i++)
        white &= img.rgb[i] >= 250;
    CHECK_MSG(white, "transparent PNG not composited on white");
    lvd_image_free(&img);
    lvd_stored_free(&out);
    free(png);

    /* Rejections, each with its class. */
    const uint8_t grey[4] = {90, 90, 90, 255};
    png = rgba_png(100000, 100000, grey, 0, &plen);
    check_class(png, plen, &opts, "too_many_pixels");
    free(png);
    png = rgba_png(10, 10, grey, 1, &plen);
    check_class(png, plen, &opts, "too_small");
    free(png);
    png = rgba_png(400, 40, grey, 1, &plen);
    check_class(png, plen, &opts, "bad_aspect");
    free(png);
    check_class(jpg, jlen / 2, &opts, "decode");
    check_class((const uint8_t *)"<html>hello</html>", 18, &opts, "not_image");
    check_class((const uint8_t *)"", 0, &opts, "not_image");

    free(jpg);
    free(rotated);
    return check_finish();
}
