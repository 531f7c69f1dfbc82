/* lvd-bench-augment: DINOv2 multi-crop augmentation rate (train/augment.h) on one thread.
 * Usage: lvd-bench-augment [--iters N] [--photo PATH].
 * Two configurations: 2 global crops of 28 and 6 local crops of 12 from a 28x28 grayscale PNG
 * (Fashion-MNIST's shape), and the reference's 2 x 224 + 8 x 96 from a 500x375 JPEG (the photo
 * resized, quality 90; a synthetic pattern when the photo is absent). For each: images/s of
 * augmentation alone (decoded image given) and of decode + augmentation, from wall time and from
 * CPU time (steadier on a shared machine). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench_util.h"
#include "curate/mnist/mnist_png.h"
#include "train/augment.h"

/* Encoded test inputs: a 28x28 gray PNG, and the photo (or a pattern) as a 500x375 JPEG. */
static int make_inputs(const char *photo, uint8_t **png, size_t *png_len, uint8_t **jpg,
                       size_t *jpg_len, lvd_error *err)
{
    uint8_t gray[28 * 28];
    for (int i = 0; i < 28 * 28; i++)
        gray[i] = (uint8_t)((i % 28) * 9 + (i / 28) * 5);
    if (lvd_png_encode_gray(gray, 28, 28, png, png_len, err))
        return -1;
    lvd_image src = {0}, small;
    size_t len = 0;
    uint8_t *buf = bench_read_all(photo, &len);
    int rc = buf ? lvd_image_decode(buf, len, NULL, &src, err) : -1;
    free(buf);
    if (rc) {
        fprintf(stderr, "note: %s unreadable, using a synthetic image\n", photo);
        src = (lvd_image){1000, 750, malloc((size_t)1000 * 750 * 3)};
        if (!src.rgb)
            return lvd_fail(err, "out of memory");
        for (size_t i = 0; i < (size_t)1000 * 750 * 3; i++)
            src.rgb[i] = (uint8_t)((i / 3 % 1000) / 4 + (i * 2654435761u >> 28));
    }
    rc = lvd_image_resize(&src, 500, 375, &small, err);
    lvd_image_free(&src);
    if (rc == 0)
        rc = lvd_image_encode_jpeg(&small, 90, jpg, jpg_len, err);
    lvd_image_free(&small);
    return rc;
}

static int run(const char *name, const lvd_aug_config *c, const uint8_t *enc, size_t len, int iters,
               lvd_error *err)
{
    lvd_augmenter *a;
    if (lvd_augmenter_new(c, &a, err))
        return -1;
    size_t gn = (size_t)3 * c->global_size * c->global_size;
    size_t ln = (size_t)3 * c->local_size * c->local_size;
    float *buf = malloc((2 * gn + (size_t)c->n_local * ln) * sizeof *buf);
    float *g[2] = {buf, buf + gn}, *l[64];
    for (int k = 0; k < c->n_local; k++)
        l[k] = buf + 2 * gn + (size_t)k * ln;
    lvd_image img;
    int rc = lvd_image_decode(enc, len, NULL, &img, err);
    for (int pass = 0; rc == 0 && pass < 2; pass++) {
        double t0 = bench_clock_s(CLOCK_MONOTONIC), c0 = bench_clock_s(CLOCK_PROCESS_CPUTIME_ID);
        for (int i = 0; rc == 0 && i < iters; i++) {
            lvd_rng r = lvd_rng_stream(1, 0, (uint64_t)i, 0);
            lvd_image dec = img;
            if (pass == 1)
                rc = lvd_image_decode(enc, len, NULL, &dec, err);
            if (rc == 0)
                rc = lvd_augment(a, &dec, &r, g, l, NULL, err);
            if (pass == 1)
                lvd_image_free(&dec);
        }
        double wall = bench_clock_s(CLOCK_MONOTONIC) - t0,
               cpu = bench_clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
        if (rc == 0)
            printf("%-34s %-18s %9.1f images/s wall, %9.1f images/s CPU (%.3f ms CPU/image)\n",
                   name, pass ? "decode + augment" : "augment", iters / wall, iters / cpu,
                   1e3 * cpu / iters);
    }
    lvd_image_free(&img);
    free(buf);
    lvd_augmenter_free(a);
    return rc;
}

int main(int argc, char **argv)
{
    int iters = 0;
    const char *photo = "/usr/share/backgrounds/mate/nature/Dune.jpg";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--iters") == 0 && i + 1 < argc)
            iters = atoi(argv[++i]);
        else if (strcmp(argv[i], "--photo") == 0 && i + 1 < argc)
            photo = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--iters N] [--photo PATH]\n", argv[0]);
            return 2;
        }
    }
    lvd_error err;
    uint8_t *png, *jpg;
    size_t png_len, jpg_len;
    if (make_inputs(photo, &png, &png_len, &jpg, &jpg_len, &err)) {
        fprintf(stderr, "lvd-bench-augment: %s\n", err.msg);
        return 1;
    }
    lvd_aug_config small, full;
    lvd_aug_defaults(&small);
    small.global_size = 28;
    small.local_size = 12;
    small.n_local = 6;
    lvd_aug_defaults(&full);
    int rc = run("28x28 PNG -> 2 x 28 + 6 x 12", &small, png, png_len, iters ? iters : 20000, &err);
    if (rc == 0)
        rc = run("500x375 JPEG -> 2 x 224 + 8 x 96", &full, jpg, jpg_len, iters ? iters / 50 : 300,
                 &err);
    if (rc)
        fprintf(stderr, "lvd-bench-augment: %s\n", err.msg);
    free(png);
    free(jpg);
    return rc ? 1 : 0;
}
