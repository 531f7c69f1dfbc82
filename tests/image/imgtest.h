/* Writers for the image tests: build JPEG, PNG and WebP files of each kind in memory with the
 * same libraries, so every decoder path can be exercised without fixture files. Test-only code:
 * library errors abort the test. */
#ifndef LVD_TESTS_IMAGE_IMGTEST_H
#define LVD_TESTS_IMAGE_IMGTEST_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h> /* jpeglib.h needs FILE */

#include <jpeglib.h>

typedef struct test_buf {
    uint8_t *data;
    size_t len;
} test_buf;

/* A w x h image with `comps` interleaved channels: smooth gradients plus distinct corners. */
uint8_t *test_pattern(int w, int h, int comps);

typedef struct test_jpeg_opts {
    J_COLOR_SPACE in_space;   /* JCS_RGB (3 comps), JCS_GRAYSCALE (1) or JCS_CMYK (4) */
    J_COLOR_SPACE file_space; /* as stored: JCS_YCbCr, JCS_GRAYSCALE, JCS_CMYK or JCS_YCCK */
    int quality;
    int progressive;
    const jpeg_scan_info *scans; /* optional progressive scan script (n_scans entries) */
    int n_scans;
    const uint8_t *app1; /* optional APP1 payload (an Exif block) */
    size_t app1_len;
} test_jpeg_opts;

test_buf test_write_jpeg(const uint8_t *px, int w, int h, const test_jpeg_opts *o);

typedef struct test_png_opts {
    int color_type;             /* PNG_COLOR_TYPE_* */
    int depth;                  /* bits per sample */
    int interlace;              /* 1: Adam7 */
    const uint8_t *palette_rgb; /* n_palette * 3 bytes for palette images */
    int n_palette;
    const uint8_t *trans; /* tRNS alpha per palette entry (n_trans of them), or NULL */
    int n_trans;
} test_png_opts;

/* px holds samples in the PNG's own layout (packed for depth < 8, big-endian for 16). */
test_buf test_write_png(const uint8_t *px, int w, int h, const test_png_opts *o);

/* An APP1 Exif payload holding only IFD0 with an Orientation tag. */
size_t test_exif_orientation(uint8_t *buf, int orientation, int big_endian);

#endif
