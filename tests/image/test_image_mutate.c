/* Robustness: thousands of deterministic mutations (byte flips, truncations, splices) of valid
 * JPEG, progressive JPEG, PNG and WebP files. Every decode must either succeed with a sane image
 * or fail with a class and a zeroed output; run under ASan/UBSan this also proves no memory
 * error on corrupt input. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>
#include <webp/encode.h>

#include "image/image.h"
#include "tests/check.h"
#include "tests/image/imgtest.h"

enum { MUTATIONS_PER_FILE = 1500 };

static uint32_t next_rand(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* One mutated copy of src: a few random bytes changed, sometimes truncated. */
static size_t mutate(const uint8_t *src, size_t len, uint8_t *dst, uint32_t *seed)
{
    memcpy(dst, src, len);
    int flips = 1 + (int)(next_rand(seed) % 4);
    for (int i = 0; i < flips; i++)
        dst[next_rand(seed) % len] = (uint8_t)next_rand(seed);
    if (next_rand(seed) % 4 == 0)
        return 1 + next_rand(seed) % len;
    return len;
}

static void hammer(const char *what, const test_buf *b, uint32_t seed)
{
    uint8_t *buf = malloc(b->len);
    int ok = 0, failed = 0, unclassified = 0, insane = 0;
    lvd_decode_opts opts = {.max_pixels = 1 << 22, .apply_orientation = 1};
    for (int i = 0; i < MUTATIONS_PER_FILE; i++) {
        size_t n = mutate(b->data, b->len, buf, &seed);
        opts.alpha = i % 2 ? LVD_ALPHA_ON_WHITE : LVD_ALPHA_DROP;
        opts.min_side_hint = i % 3 == 0 ? 8 : 0;
        lvd_image img;
        lvd_error err = {0};
        if (lvd_image_decode(buf, n, &opts, &img, &err) == 0) {
            ok++;
            insane += !img.rgb || img.width <= 0 || img.height <= 0 ||
                      (int64_t)img.width * img.height > opts.max_pixels;
            lvd_image_free(&img);
        } else {
            failed++;
            unclassified += err.cls == NULL;
            insane += img.rgb != NULL || img.width != 0;
        }
        lvd_image_info info;
        (void)lvd_image_probe(buf, n, &info, &err);
    }
    printf("%s: %d decoded, %d rejected\n", what, ok, failed);
    CHECK_MSG(unclassified == 0, "%s: %d failures without a class", what, unclassified);
    CHECK_MSG(insane == 0, "%s: %d results with inconsistent output", what, insane);
    free(buf);
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        printf("usage: %s\nDecodes mutated JPEG, PNG and WebP files; none may crash.\n", argv[0]);
        return strcmp(argv[1], "--help") == 0 ? 0 : 2;
    }
    int w = 40, h = 30;
    uint8_t *rgb = test_pattern(w, h, 3), *rgba = test_pattern(w, h, 4);
    uint8_t exif[64];
    size_t exif_len = test_exif_orientation(exif, 6, 1);
    test_jpeg_opts jo = {.in_space = JCS_RGB,
                         .file_space = JCS_YCbCr,
                         .quality = 85,
                         .app1 = exif,
                         .app1_len = exif_len};
    test_buf jpeg = test_write_jpeg(rgb, w, h, &jo);
    jo.progressive = 1;
    test_buf prog = test_write_jpeg(rgb, w, h, &jo);
    test_png_opts po = {.color_type = PNG_COLOR_TYPE_RGB_ALPHA, .depth = 8, .interlace = 1};
    test_buf png = test_write_png(rgba, w, h, &po);
    test_buf webp = {NULL, 0};
    webp.len = WebPEncodeRGBA(rgba, w, h, w * 4, 80, &webp.data);
    test_buf webpll = {NULL, 0};
    webpll.len = WebPEncodeLosslessRGB(rgb, w, h, w * 3, &webpll.data);
    hammer("jpeg", &jpeg, 1);
    hammer("progressive jpeg", &prog, 2);
    hammer("png", &png, 3);
    hammer("webp lossy", &webp, 4);
    hammer("webp lossless", &webpll, 5);
    free(jpeg.data);
    free(prog.data);
    free(png.data);
    WebPFree(webp.data);
    WebPFree(webpll.data);
    free(rgb);
    free(rgba);
    return check_finish();
}
