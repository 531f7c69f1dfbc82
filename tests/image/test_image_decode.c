/* Decoding of generated images of every supported kind, EXIF orientation, DCT scaling, the pixel
 * limit, failure classes for corrupt, truncated and non-image data, and JPEG encoding. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>
#include <webp/encode.h>

#include "image/image.h"
#include "tests/check.h"
#include "tests/image/imgtest.h"

static double mean_abs_diff(const uint8_t *a, const uint8_t *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += abs((int)a[i] - (int)b[i]);
    return s / (double)n;
}

static int decode(const test_buf *b, const lvd_decode_opts *o, lvd_image *img, lvd_error *err)
{
    return lvd_image_decode(b->data, b->len, o, img, err);
}

/* Decoding fails with class cls; returns the error for further checks. */
static lvd_error expect_fail(const char *what, const uint8_t *buf, size_t len,
                             const lvd_decode_opts *o, const char *cls)
{
    lvd_image img;
    lvd_error err = {0};
    int rc = lvd_image_decode(buf, len, o, &img, &err);
    CHECK_MSG(rc == -1, "%s: decoding succeeded", what);
    CHECK_MSG(err.cls && strcmp(err.cls, cls) == 0, "%s: class %s (%s), expected %s", what,
              err.cls ? err.cls : "none", err.msg, cls);
    CHECK_MSG(img.rgb == NULL, "%s: pixels left after failure", what);
    if (rc == 0)
        lvd_image_free(&img);
    printf("%s: %s\n", what, err.msg);
    return err;
}

static void test_sniff_and_garbage(void)
{
    static const char html[] = "<!DOCTYPE html><html><body>not found</body></html>";
    const uint8_t *h = (const uint8_t *)html;
    CHECK(lvd_image_sniff(h, sizeof html - 1) == LVD_IMG_UNKNOWN);
    CHECK(lvd_image_sniff((const uint8_t *)"\xff\xd8\xff\xe0", 4) == LVD_IMG_JPEG);
    CHECK(lvd_image_sniff((const uint8_t *)"\x89PNG\r\n\x1a\n", 8) == LVD_IMG_PNG);
    CHECK(lvd_image_sniff((const uint8_t *)"RIFF\0\0\0\0WEBPVP8 ", 16) == LVD_IMG_WEBP);
    CHECK(lvd_image_sniff((const uint8_t *)"RIFF\0\0\0\0WAVEfmt ", 16) == LVD_IMG_UNKNOWN);
    CHECK(lvd_image_sniff((const uint8_t *)"\xff\xd8", 2) == LVD_IMG_UNKNOWN);
    CHECK(strcmp(lvd_image_format_ext(LVD_IMG_JPEG), "jpg") == 0);
    CHECK(strcmp(lvd_image_format_ext(LVD_IMG_PNG), "png") == 0);
    CHECK(strcmp(lvd_image_format_ext(LVD_IMG_WEBP), "webp") == 0);
    CHECK(lvd_image_format_ext(LVD_IMG_UNKNOWN) == NULL);
    expect_fail("html", h, sizeof html - 1, NULL, "not_image");
    expect_fail("empty", h, 0, NULL, "not_image");
    lvd_image_info info;
    lvd_error err = {0};
    CHECK(lvd_image_probe(h, sizeof html - 1, &info, &err) == -1);
    CHECK(err.cls && strcmp(err.cls, "not_image") == 0);
    /* A bare signature is an image that cannot be read. */
    expect_fail("jpeg signature only", (const uint8_t *)"\xff\xd8\xff\xe0", 4, NULL, "decode");
    expect_fail("png signature only", (const uint8_t *)"\x89PNG\r\n\x1a\n", 8, NULL, "decode");
    expect_fail("webp signature only", (const uint8_t *)"RIFF\0\0\0\0WEBPVP8 ", 16, NULL, "decode");
}

static void test_jpeg_rgb_probe_truncated(void)
{
    int w = 64, h = 48;
    uint8_t *px = test_pattern(w, h, 3);
    test_jpeg_opts o = {.in_space = JCS_RGB, .file_space = JCS_YCbCr, .quality = 95};
    test_buf b = test_write_jpeg(px, w, h, &o);
    lvd_image_info info;
    lvd_error err;
    CHECK(lvd_image_probe(b.data, b.len, &info, &err) == 0);
    CHECK(info.format == LVD_IMG_JPEG && info.width == w && info.height == h);
    lvd_image img;
    CHECK(decode(&b, NULL, &img, &err) == 0);
    CHECK(img.width == w && img.height == h);
    CHECK_MSG(mean_abs_diff(img.rgb, px, (size_t)w * h * 3) < 3, "baseline jpeg far from source");
    lvd_image_free(&img);
    CHECK(img.rgb == NULL && img.width == 0);

    expect_fail("truncated jpeg", b.data, b.len * 6 / 10, NULL, "decode");
    /* Only the EOI marker missing: libjpeg reads past the end of the data to fill its bit buffer,
     * so this too counts as truncated (as in PIL, which reports the file truncated). */
    CHECK(b.data[b.len - 2] == 0xff && b.data[b.len - 1] == 0xd9);
    expect_fail("jpeg without EOI", b.data, b.len - 2, NULL, "decode");
    /* An EOI marker in the middle of the entropy-coded data. */
    uint8_t *cut = malloc(b.len);
    memcpy(cut, b.data, b.len);
    cut[b.len * 7 / 10] = 0xff;
    cut[b.len * 7 / 10 + 1] = 0xd9;
    expect_fail("jpeg with early EOI", cut, b.len, NULL, "decode");
    free(cut);
    lvd_decode_opts limit = {.max_pixels = (int64_t)w * h - 1};
    expect_fail("jpeg over the pixel limit", b.data, b.len, &limit, "too_many_pixels");
    limit.max_pixels = (int64_t)w * h;
    CHECK(decode(&b, &limit, &img, &err) == 0);
    lvd_image_free(&img);
    free(b.data);
    free(px);
}

static void test_jpeg_gray_progressive(void)
{
    int w = 50, h = 30;
    uint8_t *gray = test_pattern(w, h, 1);
    test_jpeg_opts o = {.in_space = JCS_GRAYSCALE, .file_space = JCS_GRAYSCALE, .quality = 95};
    test_buf b = test_write_jpeg(gray, w, h, &o);
    lvd_image img;
    lvd_error err;
    CHECK(decode(&b, NULL, &img, &err) == 0);
    int gray_ok = 1;
    for (int i = 0; i < w * h; i++)
        gray_ok &= img.rgb[3 * i] == img.rgb[3 * i + 1] && img.rgb[3 * i] == img.rgb[3 * i + 2] &&
                   abs((int)img.rgb[3 * i] - (int)gray[i]) <= 8;
    CHECK_MSG(gray_ok, "grayscale jpeg is not replicated gray close to the source");
    lvd_image_free(&img);
    free(b.data);

    uint8_t *px = test_pattern(w, h, 3);
    test_jpeg_opts base = {.in_space = JCS_RGB, .file_space = JCS_YCbCr, .quality = 90};
    test_jpeg_opts prog = base;
    prog.progressive = 1;
    test_buf bb = test_write_jpeg(px, w, h, &base), bp = test_write_jpeg(px, w, h, &prog);
    lvd_image ib, ip;
    CHECK(decode(&bb, NULL, &ib, &err) == 0);
    CHECK(decode(&bp, NULL, &ip, &err) == 0);
    /* Same coefficients, different scan order: identical pixels. */
    CHECK(ip.width == w && ip.height == h && memcmp(ib.rgb, ip.rgb, (size_t)w * h * 3) == 0);
    expect_fail("truncated progressive jpeg", bp.data, bp.len / 2, NULL, "decode");
    lvd_image_free(&ib);
    lvd_image_free(&ip);
    free(bb.data);
    free(bp.data);
    free(gray);
    free(px);
}

/* A valid grayscale progressive file with 1 + 63 * 10 scans (each AC band sent at Al = 9, then
 * refined bit by bit) is rejected for its scan count; the usual ~10 scans decode. */
static void test_jpeg_scan_limit(void)
{
    enum { BANDS = 63, AL = 9, N = 1 + BANDS * (AL + 1) };
    static jpeg_scan_info scans[N];
    int n = 0;
    scans[n++] = (jpeg_scan_info){.comps_in_scan = 1, .Ss = 0, .Se = 0, .Ah = 0, .Al = 0};
    for (int band = 1; band <= BANDS; band++)
        for (int al = AL; al >= 0; al--)
            scans[n++] = (jpeg_scan_info){
                .comps_in_scan = 1, .Ss = band, .Se = band, .Ah = al == AL ? 0 : al + 1, .Al = al};
    int w = 16, h = 16;
    uint8_t *gray = test_pattern(w, h, 1);
    test_jpeg_opts o = {.in_space = JCS_GRAYSCALE,
                        .file_space = JCS_GRAYSCALE,
                        .quality = 90,
                        .scans = scans,
                        .n_scans = n};
    test_buf b = test_write_jpeg(gray, w, h, &o);
    lvd_error err = expect_fail("jpeg with 631 scans", b.data, b.len, NULL, "decode");
    CHECK_MSG(strstr(err.msg, "scans") != NULL, "631 scans: failed for another reason");
    free(b.data);
    free(gray);
}

/* Uniform CMYK blocks (q 100, so the stored values survive): PIL reads them as Adobe-inverted
 * CMYK and converts with rgb = nk - nk*c/255 (nk = stored k, c = 255 - stored c). */
static void test_jpeg_cmyk(void)
{
    int w = 16, h = 16;
    static const uint8_t stored[4] = {200, 100, 50, 128};
    /* nk = 128; c = 55, 155, 205 -> 128 - round(128*c/255) = 100, 50, 25 */
    static const uint8_t expect[3] = {100, 50, 25};
    uint8_t *px = malloc((size_t)w * h * 4);
    for (int i = 0; i < w * h; i++)
        memcpy(px + 4 * i, stored, 4);
    J_COLOR_SPACE spaces[2] = {JCS_CMYK, JCS_YCCK};
    for (int s = 0; s < 2; s++) {
        test_jpeg_opts o = {.in_space = JCS_CMYK, .file_space = spaces[s], .quality = 100};
        test_buf b = test_write_jpeg(px, w, h, &o);
        lvd_image img;
        lvd_error err;
        CHECK(decode(&b, NULL, &img, &err) == 0);
        int ok = 1;
        for (int i = 0; i < w * h; i++)
            for (int c = 0; c < 3; c++)
                ok &= abs((int)img.rgb[3 * i + c] - expect[c]) <= 1;
        CHECK_MSG(ok, "%s jpeg: got %d,%d,%d, expected 100,50,25", s ? "YCCK" : "CMYK", img.rgb[0],
                  img.rgb[1], img.rgb[2]);
        lvd_image_free(&img);
        free(b.data);
    }
    free(px);
}

static void test_jpeg_dct_scaling(void)
{
    int w = 801, h = 601;
    uint8_t *px = test_pattern(w, h, 3);
    test_jpeg_opts o = {.in_space = JCS_RGB, .file_space = JCS_YCbCr, .quality = 80};
    test_buf b = test_write_jpeg(px, w, h, &o);
    /* hint -> expected size: 1/8 gives 101x76, 1/4 201x151, 1/2 401x301 (rounded up) */
    static const int cases[][3] = {{0, 801, 601},   {76, 101, 76},   {77, 201, 151},
                                   {151, 201, 151}, {152, 401, 301}, {301, 401, 301},
                                   {302, 801, 601}, {5000, 801, 601}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lvd_decode_opts opts = {.min_side_hint = cases[i][0]};
        lvd_image img;
        lvd_error err;
        CHECK(decode(&b, &opts, &img, &err) == 0);
        CHECK_MSG(img.width == cases[i][1] && img.height == cases[i][2],
                  "hint %d: %dx%d, expected %dx%d", cases[i][0], img.width, img.height, cases[i][1],
                  cases[i][2]);
        lvd_image_free(&img);
    }
    free(b.data);
    free(px);
}

/* Paints the three corners distinct colors so that each orientation is identified exactly. */
static void test_jpeg_orientation(void)
{
    int w = 48, h = 32;
    uint8_t *px = malloc((size_t)w * h * 3);
    memset(px, 128, (size_t)w * h * 3);
    for (int y = 0; y < 8; y++)
        for (int x = 0; x < 8; x++) {
            memcpy(px + ((size_t)y * w + x) * 3, "\xff\x00\x00", 3);           /* TL */
            memcpy(px + ((size_t)y * w + (w - 1 - x)) * 3, "\x00\xff\x00", 3); /* TR */
            memcpy(px + ((size_t)(h - 1 - y) * w + x) * 3, "\x00\x00\xff", 3); /* BL */
        }
    /* Where the source's TL, TR and BL corners land, as (x, y) with -1 meaning the last index. */
    static const int land[9][6] = {{0},
                                   {0, 0, -1, 0, 0, -1},
                                   {-1, 0, 0, 0, -1, -1},
                                   {-1, -1, 0, -1, -1, 0},
                                   {0, -1, -1, -1, 0, 0},
                                   {0, 0, 0, -1, -1, 0},
                                   {-1, 0, -1, -1, 0, 0},
                                   {-1, -1, -1, 0, 0, -1},
                                   {0, -1, 0, 0, -1, -1}};
    for (int orient = 1; orient <= 8; orient++) {
        uint8_t exif[64];
        size_t n = test_exif_orientation(exif, orient, orient % 2);
        test_jpeg_opts o = {.in_space = JCS_RGB,
                            .file_space = JCS_YCbCr,
                            .quality = 95,
                            .app1 = exif,
                            .app1_len = n};
        test_buf b = test_write_jpeg(px, w, h, &o);
        lvd_image raw, rot;
        lvd_error err;
        lvd_decode_opts apply = {.apply_orientation = 1};
        CHECK(decode(&b, NULL, &raw, &err) == 0);
        CHECK(raw.width == w && raw.height == h);
        CHECK(decode(&b, &apply, &rot, &err) == 0);
        int ow = orient >= 5 ? h : w, oh = orient >= 5 ? w : h;
        CHECK_MSG(rot.width == ow && rot.height == oh, "orientation %d: %dx%d", orient, rot.width,
                  rot.height);
        if (rot.width == ow && rot.height == oh) {
            const int src[3][2] = {{0, 0}, {w - 1, 0}, {0, h - 1}};
            for (int c = 0; c < 3; c++) {
                int x = land[orient][2 * c] < 0 ? ow - 1 : 0;
                int y = land[orient][2 * c + 1] < 0 ? oh - 1 : 0;
                const uint8_t *a = rot.rgb + ((size_t)y * ow + x) * 3;
                const uint8_t *e = raw.rgb + ((size_t)src[c][1] * w + src[c][0]) * 3;
                CHECK_MSG(memcmp(a, e, 3) == 0, "orientation %d: corner %d misplaced", orient, c);
            }
        }
        lvd_image_free(&raw);
        lvd_image_free(&rot);
        free(b.data);
    }
    free(px);
}

static void test_png_palette(void)
{
    int w = 8, h = 4;
    static const uint8_t pal[4 * 3] = {255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30};
    static const uint8_t trans[2] = {255, 0}; /* entry 1 fully transparent, 2 and 3 opaque */
    /* 4-bit indices, two per byte: pixel i uses entry i % 4 */
    uint8_t idx[8 * 4 / 2];
    for (int i = 0; i < w * h / 2; i++)
        idx[i] = (uint8_t)(((2 * i) % 4) << 4 | ((2 * i + 1) % 4));
    test_png_opts o = {.color_type = PNG_COLOR_TYPE_PALETTE,
                       .depth = 4,
                       .palette_rgb = pal,
                       .n_palette = 4,
                       .trans = trans,
                       .n_trans = 2};
    test_buf b = test_write_png(idx, w, h, &o);
    lvd_image info_img;
    lvd_image_info info;
    lvd_error err;
    CHECK(lvd_image_probe(b.data, b.len, &info, &err) == 0);
    CHECK(info.format == LVD_IMG_PNG && info.width == w && info.height == h);
    lvd_decode_opts drop = {.alpha = LVD_ALPHA_DROP}, white = {.alpha = LVD_ALPHA_ON_WHITE};
    CHECK(decode(&b, &drop, &info_img, &err) == 0);
    int ok = 1;
    for (int i = 0; i < w * h; i++)
        ok &= memcmp(info_img.rgb + 3 * i, pal + 3 * (i % 4), 3) == 0;
    CHECK_MSG(ok, "palette png: colors differ from the palette");
    lvd_image_free(&info_img);
    CHECK(decode(&b, &white, &info_img, &err) == 0);
    CHECK(memcmp(info_img.rgb + 3, "\xff\xff\xff", 3) == 0); /* transparent entry -> white */
    CHECK(memcmp(info_img.rgb, pal, 3) == 0);
    lvd_image_free(&info_img);
    expect_fail("truncated png", b.data, b.len - 20, NULL, "decode");
    free(b.data);
}

static void test_png_16bit_gray_interlaced(void)
{
    int w = 5, h = 3;
    /* 16-bit RGB, big-endian samples: the high byte is kept. */
    uint8_t rgb16[5 * 3 * 6];
    for (int i = 0; i < w * h * 3; i++) {
        rgb16[2 * i] = (uint8_t)(i * 17);
        rgb16[2 * i + 1] = (uint8_t)(255 - i);
    }
    test_png_opts o = {.color_type = PNG_COLOR_TYPE_RGB, .depth = 16};
    test_buf b = test_write_png(rgb16, w, h, &o);
    lvd_image img;
    lvd_error err;
    CHECK(decode(&b, NULL, &img, &err) == 0);
    int ok = img.width == w && img.height == h;
    for (int i = 0; ok && i < w * h * 3; i++)
        ok &= img.rgb[i] == (uint8_t)(i * 17);
    CHECK_MSG(ok, "16-bit png: high bytes not kept");
    lvd_image_free(&img);
    free(b.data);

    /* 16-bit gray, Adam7 interlaced. */
    uint8_t g16[5 * 3 * 2];
    for (int i = 0; i < w * h; i++) {
        g16[2 * i] = (uint8_t)(200 - i * 9);
        g16[2 * i + 1] = 0x80;
    }
    test_png_opts og = {.color_type = PNG_COLOR_TYPE_GRAY, .depth = 16, .interlace = 1};
    b = test_write_png(g16, w, h, &og);
    CHECK(decode(&b, NULL, &img, &err) == 0);
    ok = img.width == w && img.height == h;
    for (int i = 0; ok && i < w * h; i++)
        ok &= img.rgb[3 * i] == g16[2 * i] && img.rgb[3 * i + 1] == g16[2 * i] &&
              img.rgb[3 * i + 2] == g16[2 * i];
    CHECK_MSG(ok, "16-bit interlaced gray png decoded wrong");
    lvd_image_free(&img);
    free(b.data);

    /* 2-bit gray scales by 0x55, as PIL's L;2 unpacker does. */
    uint8_t g2[2] = {0x1b, 0xe4}; /* 0,1,2,3 then 3,2,1,0 */
    test_png_opts o2 = {.color_type = PNG_COLOR_TYPE_GRAY, .depth = 2};
    b = test_write_png(g2, 4, 2, &o2);
    CHECK(decode(&b, NULL, &img, &err) == 0);
    static const uint8_t want[8] = {0, 85, 170, 255, 255, 170, 85, 0};
    ok = img.width == 4 && img.height == 2;
    for (int i = 0; ok && i < 8; i++)
        ok &= img.rgb[3 * i] == want[i] && img.rgb[3 * i + 2] == want[i];
    CHECK_MSG(ok, "2-bit gray png decoded wrong");
    lvd_image_free(&img);
    free(b.data);
}

static void test_png_rgba(void)
{
    /* RGBA pixels with the expected composite over white worked out by hand. */
    static const uint8_t px[4 * 4] = {0, 0, 0, 128, 255, 0, 100, 51, 7, 8, 9, 255, 1, 2, 3, 0};
    static const uint8_t white[4 * 3] = {127, 127, 127, 255, 204, 224, 7, 8, 9, 255, 255, 255};
    test_png_opts o = {.color_type = PNG_COLOR_TYPE_RGB_ALPHA, .depth = 8};
    test_buf b = test_write_png(px, 2, 2, &o);
    lvd_image img;
    lvd_error err;
    lvd_decode_opts drop = {.alpha = LVD_ALPHA_DROP}, on_white = {.alpha = LVD_ALPHA_ON_WHITE};
    CHECK(decode(&b, &drop, &img, &err) == 0);
    int ok = 1;
    for (int i = 0; i < 4; i++)
        ok &= memcmp(img.rgb + 3 * i, px + 4 * i, 3) == 0;
    CHECK_MSG(ok, "RGBA png: alpha not dropped as PIL does");
    lvd_image_free(&img);
    CHECK(decode(&b, &on_white, &img, &err) == 0);
    CHECK_MSG(memcmp(img.rgb, white, sizeof white) == 0, "RGBA png on white: %d %d %d | %d %d %d",
              img.rgb[0], img.rgb[1], img.rgb[2], img.rgb[3], img.rgb[4], img.rgb[5]);
    lvd_image_free(&img);
    free(b.data);
}

static uint32_t crc32_bytes(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
    }
    return ~c;
}

static void be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* A PNG whose IHDR claims 100000 x 100000 and that holds no image data at all: reaching
 * "too_many_pixels" (rather than "decode" for the missing data) shows the header was enough. */
static void test_png_bomb(void)
{
    uint8_t png[8 + 25];
    memcpy(png, "\x89PNG\r\n\x1a\n", 8);
    be32(png + 8, 13);
    memcpy(png + 12, "IHDR", 4);
    be32(png + 16, 100000);
    be32(png + 20, 100000);
    memcpy(png + 24, "\x08\x02\x00\x00\x00", 5); /* 8-bit RGB */
    be32(png + 29, crc32_bytes(png + 12, 17));
    lvd_image_info info;
    lvd_error err;
    CHECK(lvd_image_probe(png, sizeof png, &info, &err) == 0);
    CHECK(info.width == 100000 && info.height == 100000);
    lvd_decode_opts opts = {.max_pixels = 100000000};
    expect_fail("png bomb", png, sizeof png, &opts, "too_many_pixels");
    opts.max_pixels = 0; /* unlimited: now the missing image data is what fails */
    lvd_image img;
    if (lvd_image_decode(png, sizeof png, &opts, &img, &err) == 0)
        lvd_image_free(&img);
    CHECK(err.cls != NULL && strcmp(err.cls, "too_many_pixels") != 0);
}

static void test_webp(void)
{
    int w = 40, h = 24;
    uint8_t *rgb = test_pattern(w, h, 3), *rgba = test_pattern(w, h, 4);
    uint8_t *out = NULL;
    lvd_image img;
    lvd_error err;
    size_t n = WebPEncodeLosslessRGB(rgb, w, h, w * 3, &out);
    CHECK(n > 0);
    lvd_image_info info;
    CHECK(lvd_image_probe(out, n, &info, &err) == 0);
    CHECK(info.format == LVD_IMG_WEBP && info.width == w && info.height == h);
    CHECK(lvd_image_decode(out, n, NULL, &img, &err) == 0);
    CHECK_MSG(img.width == w && memcmp(img.rgb, rgb, (size_t)w * h * 3) == 0,
              "lossless webp not exact");
    lvd_image_free(&img);
    expect_fail("truncated webp", out, n / 2, NULL, "decode");
    WebPFree(out);

    n = WebPEncodeRGB(rgb, w, h, w * 3, 90, &out);
    CHECK(lvd_image_decode(out, n, NULL, &img, &err) == 0);
    CHECK_MSG(img.width == w && mean_abs_diff(img.rgb, rgb, (size_t)w * h * 3) < 4,
              "lossy webp far from the source");
    lvd_image_free(&img);
    WebPFree(out);

    for (int i = 0; i < w * h; i++)
        rgba[4 * i + 3] = (uint8_t)(i % 2 ? 255 : 0);
    n = WebPEncodeLosslessRGBA(rgba, w, h, w * 4, &out);
    lvd_decode_opts drop = {.alpha = LVD_ALPHA_DROP}, white = {.alpha = LVD_ALPHA_ON_WHITE};
    CHECK(lvd_image_decode(out, n, &white, &img, &err) == 0);
    int ok = 1;
    for (int i = 0; i < w * h; i++)
        ok &= i % 2 ? memcmp(img.rgb + 3 * i, rgba + 4 * i, 3) == 0
                    : memcmp(img.rgb + 3 * i, "\xff\xff\xff", 3) == 0;
    CHECK_MSG(ok, "RGBA webp on white wrong");
    lvd_image_free(&img);
    /* libwebp's lossless encoder may rewrite the color of fully transparent pixels, so the
     * dropped-alpha check uses the opaque ones. */
    CHECK(lvd_image_decode(out, n, &drop, &img, &err) == 0);
    ok = 1;
    for (int i = 1; i < w * h; i += 2)
        ok &= memcmp(img.rgb + 3 * i, rgba + 4 * i, 3) == 0;
    CHECK_MSG(ok, "RGBA webp with alpha dropped wrong");
    lvd_image_free(&img);
    WebPFree(out);
    free(rgb);
    free(rgba);
}

static void test_encode(void)
{
    int w = 37, h = 21;
    uint8_t *px = test_pattern(w, h, 3);
    lvd_image src = {w, h, px}, img;
    uint8_t *buf;
    size_t len;
    lvd_error err;
    CHECK(lvd_image_encode_jpeg(&src, 90, &buf, &len, &err) == 0);
    CHECK(lvd_image_sniff(buf, len) == LVD_IMG_JPEG);
    CHECK(lvd_image_decode(buf, len, NULL, &img, &err) == 0);
    CHECK(img.width == w && img.height == h);
    CHECK_MSG(mean_abs_diff(img.rgb, px, (size_t)w * h * 3) < 3, "encoded jpeg far from source");
    lvd_image_free(&img);
    free(buf);
    CHECK(lvd_image_encode_jpeg(&src, 0, &buf, &len, &err) == -1 && buf == NULL);
    CHECK(lvd_image_encode_jpeg(&src, 101, &buf, &len, &err) == -1);
    lvd_image empty = {0, 0, NULL};
    CHECK(lvd_image_encode_jpeg(&empty, 90, &buf, &len, &err) == -1);
    free(px);
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        printf("usage: %s\nDecodes generated JPEG, PNG and WebP images of every kind.\n", argv[0]);
        return strcmp(argv[1], "--help") == 0 ? 0 : 2;
    }
    test_sniff_and_garbage();
    test_jpeg_rgb_probe_truncated();
    test_jpeg_gray_progressive();
    test_jpeg_scan_limit();
    test_jpeg_cmyk();
    test_jpeg_dct_scaling();
    test_jpeg_orientation();
    test_png_palette();
    test_png_16bit_gray_interlaced();
    test_png_rgba();
    test_png_bomb();
    test_webp();
    test_encode();
    return check_finish();
}
