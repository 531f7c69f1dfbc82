/* PIL-style bicubic resizing: a hand-computed case, invariants (constant images stay constant,
 * same size is a copy), torchvision's resize and center-crop arithmetic, argument checks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image/image.h"
#include "tests/check.h"
#include "tests/image/imgtest.h"

/* 4x1 -> 2x1: scale 2, support 4. Output 0 is centered at 1.0 and reads inputs 0..3 with
 * bicubic weights at distances 0.25, 0.25, 0.75, 1.25 (0.8671875, 0.8671875, 0.2265625,
 * -0.0703125; sum 1.890625): (100*0.8671875 + 200*0.2265625 - 250*0.0703125) / 1.890625
 * = 60.537..., rounded to 61. Output 1 mirrors it: inputs 3..0 = 250, 200, 100, 0 weighted the
 * same way give (250*0.8671875 + 200*0.8671875 + 100*0.2265625) / 1.890625 = 218.39..., so
 * 218. */
static void test_hand_computed(void)
{
    uint8_t px[4 * 3];
    const uint8_t v[4] = {0, 100, 200, 250};
    for (int i = 0; i < 4; i++)
        memset(px + 3 * i, v[i], 3);
    lvd_image in = {4, 1, px}, out;
    lvd_error err;
    CHECK(lvd_image_resize(&in, 2, 1, &out, &err) == 0);
    CHECK(out.width == 2 && out.height == 1);
    CHECK_MSG(out.rgb[0] == 61 && out.rgb[3] == 218, "got %d and %d, expected 61 and 218",
              out.rgb[0], out.rgb[3]);
    lvd_image_free(&out);
}

static void test_constant_and_identity(void)
{
    int w = 37, h = 23;
    uint8_t *px = malloc((size_t)w * h * 3);
    for (int i = 0; i < w * h; i++)
        memcpy(px + 3 * i, "\x00\x80\xff", 3);
    lvd_image in = {w, h, px}, out;
    lvd_error err;
    static const int sizes[][2] = {{1, 1}, {5, 3}, {36, 23}, {37, 7}, {100, 51}, {256, 256}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        CHECK(lvd_image_resize(&in, sizes[s][0], sizes[s][1], &out, &err) == 0);
        int ok = out.width == sizes[s][0] && out.height == sizes[s][1];
        for (int i = 0; ok && i < out.width * out.height; i++)
            ok &= memcmp(out.rgb + 3 * i, "\x00\x80\xff", 3) == 0;
        CHECK_MSG(ok, "constant image not constant at %dx%d", sizes[s][0], sizes[s][1]);
        lvd_image_free(&out);
    }
    free(px);

    px = test_pattern(w, h, 3);
    in.rgb = px;
    CHECK(lvd_image_resize(&in, w, h, &out, &err) == 0);
    CHECK(memcmp(out.rgb, px, (size_t)w * h * 3) == 0);
    lvd_image_free(&out);
    /* Only the height changes and every source row is the same: each output row is that row. */
    for (int y = 1; y < h; y++)
        memcpy(px + (size_t)y * w * 3, px, (size_t)w * 3);
    CHECK(lvd_image_resize(&in, w, 11, &out, &err) == 0);
    int rows_ok = out.width == w && out.height == 11;
    for (int y = 0; rows_ok && y < 11; y++)
        rows_ok &= memcmp(out.rgb + (size_t)y * w * 3, px, (size_t)w * 3) == 0;
    CHECK_MSG(rows_ok, "height-only resize changed the rows");
    lvd_image_free(&out);
    free(px);
}

/* Resize(256) + CenterCrop(224) of an image whose short side is already 256: torchvision does
 * not resample, so the crop is a copy; offsets use Python's round() (half to even). */
static void test_center_crop_offsets(void)
{
    /* (w, h) -> expected (left, top): (301 - 224) / 2 = 38.5 -> 38; (299 - 224) / 2 = 37.5 -> 38;
     * (256 - 224) / 2 = 16 */
    static const int cases[][4] = {{256, 301, 16, 38}, {299, 256, 38, 16}, {256, 256, 16, 16}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int w = cases[c][0], h = cases[c][1];
        uint8_t *px = test_pattern(w, h, 3);
        lvd_image in = {w, h, px};
        uint8_t *crop = malloc(224 * 224 * 3);
        lvd_error err;
        CHECK(lvd_image_resize_center_crop(&in, 256, 224, crop, &err) == 0);
        int ok = 1;
        for (int y = 0; y < 224; y++)
            ok &= memcmp(crop + (size_t)y * 224 * 3,
                         px + ((size_t)(y + cases[c][3]) * w + cases[c][2]) * 3, 224 * 3) == 0;
        CHECK_MSG(ok, "%dx%d: crop not taken at (%d, %d)", w, h, cases[c][2], cases[c][3]);
        free(crop);
        free(px);
    }
}

/* The cropped window computed alone equals the same window of the full resize:
 * 300x500 -> 256x426 (int(256 * 500 / 300) = 426), crop at left 16, top round(101.0) = 101. */
static void test_window_matches_full_resize(void)
{
    int w = 300, h = 500;
    uint8_t *px = test_pattern(w, h, 3);
    lvd_image in = {w, h, px}, full;
    lvd_error err;
    CHECK(lvd_image_resize(&in, 256, 426, &full, &err) == 0);
    uint8_t *crop = malloc(224 * 224 * 3);
    CHECK(lvd_image_resize_center_crop(&in, 256, 224, crop, &err) == 0);
    int ok = 1;
    for (int y = 0; y < 224; y++)
        ok &= memcmp(crop + (size_t)y * 224 * 3, full.rgb + ((size_t)(y + 101) * 256 + 16) * 3,
                     224 * 3) == 0;
    CHECK_MSG(ok, "center crop differs from the crop of the full resize");

    float *chw = malloc(sizeof(float) * 3 * 224 * 224);
    CHECK(lvd_image_preprocess(&in, 256, 224, chw, &err) == 0);
    /* ToTensor + Normalize of the first pixel, channel by channel. */
    static const float mean[3] = {0.485f, 0.456f, 0.406f}, sd[3] = {0.229f, 0.224f, 0.225f};
    for (int c = 0; c < 3; c++)
        CHECK(chw[c * 224 * 224] == ((float)crop[c] / 255.0f - mean[c]) / sd[c]);
    free(chw);
    free(crop);
    lvd_image_free(&full);
    free(px);
}

static void test_bad_arguments(void)
{
    uint8_t px[3] = {1, 2, 3};
    lvd_image in = {1, 1, px}, out;
    lvd_error err;
    CHECK(lvd_image_resize(&in, 0, 5, &out, &err) == -1 && out.rgb == NULL);
    CHECK(lvd_image_resize(&in, 5, -1, &out, &err) == -1);
    lvd_image empty = {0, 0, NULL};
    CHECK(lvd_image_resize(&empty, 5, 5, &out, &err) == -1);
    uint8_t crop[3 * 4];
    CHECK(lvd_image_resize_center_crop(&in, 1, 2, crop, &err) == -1);
    CHECK(lvd_image_resize_center_crop(&in, 2, 2, crop, &err) == 0);
    CHECK(memcmp(crop, "\x01\x02\x03\x01\x02\x03\x01\x02\x03\x01\x02\x03", 12) == 0);
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        printf("usage: %s\nChecks PIL-style bicubic resizing and the preprocessing crop.\n",
               argv[0]);
        return strcmp(argv[1], "--help") == 0 ? 0 : 2;
    }
    test_hand_computed();
    test_constant_and_identity();
    test_center_crop_offsets();
    test_window_matches_full_resize();
    test_bad_arguments();
    return check_finish();
}
