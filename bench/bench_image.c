/* lvd-bench-image: decode + preprocess rate for a 500x375 JPEG (a typical web image).
 * Usage: lvd-bench-image [--iters N] [--photo PATH]. The JPEG is made by resizing the photo
 * (default: a mate-backgrounds picture; a synthetic pattern when it is absent) and encoding it
 * at quality 90. Reports, for each stage run single-threaded, images/s of wall time and the CPU
 * time per image (steadier than wall time on a shared machine). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench_util.h"
#include "image/image.h"

/* The source picture: the photo when readable, else a deterministic noisy gradient. */
static int load_source(const char *photo, lvd_image *img, lvd_error *err)
{
    size_t len = 0;
    uint8_t *buf = bench_read_all(photo, &len);
    if (buf) {
        int rc = lvd_image_decode(buf, len, NULL, img, err);
        free(buf);
        return rc;
    }
    fprintf(stderr, "note: %s unreadable, using a synthetic image\n", photo);
    img->width = 1000;
    img->height = 750;
    img->rgb = malloc((size_t)img->width * img->height * 3);
    if (!img->rgb)
        return lvd_fail(err, "out of memory");
    uint32_t s = 12345;
    for (size_t i = 0; i < (size_t)img->width * img->height * 3; i++) {
        s = s * 1103515245u + 12345u;
        img->rgb[i] = (uint8_t)((i / 3 % img->width) / 4 + (s >> 28));
    }
    return 0;
}

typedef struct stage {
    const char *name;
    int hint; /* min_side_hint for decoding */
    int preprocess;
} stage;

static int run_stage(const stage *st, const uint8_t *jpg, size_t len, int iters, lvd_error *err)
{
    float *chw = malloc(sizeof(float) * 3 * 224 * 224);
    if (!chw)
        return lvd_fail(err, "out of memory");
    lvd_decode_opts opts = {.min_side_hint = st->hint};
    double t0 = bench_clock_s(CLOCK_MONOTONIC), c0 = bench_clock_s(CLOCK_PROCESS_CPUTIME_ID);
    for (int i = 0; i < iters; i++) {
        lvd_image img;
        if (lvd_image_decode(jpg, len, &opts, &img, err) != 0 ||
            (st->preprocess && lvd_image_preprocess(&img, 256, 224, chw, err) != 0)) {
            free(chw);
            return -1;
        }
        lvd_image_free(&img);
    }
    double dt = bench_clock_s(CLOCK_MONOTONIC) - t0,
           dc = bench_clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
    printf("%-32s %8.1f images/s wall  %7.3f ms CPU each\n", st->name, iters / dt,
           1e3 * dc / iters);
    free(chw);
    return 0;
}

int main(int argc, char **argv)
{
    int iters = 200;
    const char *photo = "/usr/share/backgrounds/mate/nature/FreshFlower.jpg";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            printf("usage: %s [--iters N] [--photo PATH]\n"
                   "Measures JPEG decode and 256/224 preprocessing rates on a 500x375 JPEG.\n",
                   argv[0]);
            return 0;
        } else if (strcmp(argv[i], "--iters") == 0 && i + 1 < argc) {
            iters = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--photo") == 0 && i + 1 < argc) {
            photo = argv[++i];
        } else {
            fprintf(stderr, "lvd-bench-image: unknown argument %s (see --help)\n", argv[i]);
            return 2;
        }
    }
    if (iters <= 0) {
        fprintf(stderr, "lvd-bench-image: --iters must be positive\n");
        return 2;
    }
    lvd_error err;
    lvd_image src, small;
    uint8_t *jpg = NULL;
    size_t len = 0;
    if (load_source(photo, &src, &err) || lvd_image_resize(&src, 500, 375, &small, &err) ||
        lvd_image_encode_jpeg(&small, 90, &jpg, &len, &err)) {
        fprintf(stderr, "lvd-bench-image: %s\n", err.msg);
        return 1;
    }
    lvd_image_free(&src);
    printf("500x375 JPEG, %zu bytes, %d iterations\n", len, iters);
    const stage stages[] = {
        {"decode (full size, PIL-exact)", 0, 0},
        {"decode + preprocess 256/224", 0, 1},
        {"decode at 1/2 by DCT (hint 150)", 150, 0},
    };
    int rc = 0;
    for (size_t i = 0; i < sizeof stages / sizeof stages[0] && rc == 0; i++)
        rc = run_stage(&stages[i], jpg, len, iters, &err);
    if (rc != 0)
        fprintf(stderr, "lvd-bench-image: %s\n", err.msg);
    lvd_image_free(&small);
    free(jpg);
    return rc ? 1 : 0;
}
