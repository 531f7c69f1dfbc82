/* lvd-bench-vit-train: training throughput of the ViT (train/vit_train.h).
 *
 * ViT-S/14 (dim 384, 12 blocks) at 224x224 with the DINOv2 init: per batch, the student's
 * forward (grad pass, iBOT-style mask on a third of the patches, stochastic depth as given),
 * its backward, and the teacher's forward-only pass; images/s, GFLOP/s (multiply-adds of every
 * product counted twice, dropped branches not counted; the backward is counted as twice its
 * forward, not counting its recomputed attention scores), and the peak memory. Best of --iters
 * batches, per wall-clock and per CPU second (the second stays meaningful on a loaded machine). On
 * a shared machine set OMP_WAIT_POLICY=passive. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "train/vit_train.h"

static double now(int cpu)
{
    struct timespec t;
    clock_gettime(cpu ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void die(const char *msg)
{
    fprintf(stderr, "lvd-bench-vit-train: %s\n", msg);
    exit(1);
}

int main(int argc, char **argv)
{
    int B = 8, threads = 0, iters = 3;
    double rate = 0.0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            printf("usage: lvd-bench-vit-train [--batch B] [--threads T] [--iters N] "
                   "[--drop RATE]\nViT-S/14 224x224 student forward + backward and teacher "
                   "forward: images/s, GFLOP/s, memory\n");
            return 0;
        }
        if (i + 1 >= argc) {
            die("missing value (see --help)");
        }
        if (strcmp(argv[i], "--batch") == 0) {
            B = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--threads") == 0) {
            threads = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--iters") == 0) {
            iters = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--drop") == 0) {
            rate = atof(argv[++i]);
        } else {
            die("unexpected argument (see --help)");
        }
    }
    if (B < 1 || iters < 1) {
        die("--batch and --iters must be at least 1");
    }
    lvd_vit_info arch = {.dim = 384, .depth = 12, .patch = 14, .grid = 37, .ffn = LVD_VIT_MLP};
    lvd_error err = {0};
    lvd_vit_train *m;
    lvd_vit_pass *student, *teacher;
    if (lvd_vit_train_create(&arch, 1e-5f, 1, &m, &err) != 0) {
        die(err.msg);
    }
    lvd_vit_train_set_threads(m, threads);
    if (lvd_vit_pass_create(m, B, 224, 224, 1, &student, &err) != 0 ||
        lvd_vit_pass_create(m, B, 224, 224, 0, &teacher, &err) != 0) {
        die(err.msg);
    }
    const lvd_vit_info *a = lvd_vit_train_info(m);
    int D = a->dim, N = 256, T = 257;
    size_t nx = (size_t)B * 3 * 224 * 224;
    float *x = malloc(sizeof(float) * nx);
    float *dcls = malloc(sizeof(float) * B * D), *dpatch = malloc(sizeof(float) * B * N * D);
    uint8_t *mask = malloc((size_t)B * N);
    if (!x || !dcls || !dpatch || !mask) {
        die("out of memory");
    }
    for (size_t i = 0; i < nx; i++) {
        x[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
    }
    for (int i = 0; i < B * D; i++) {
        dcls[i] = 1e-3f * (float)(i % 7 - 3);
    }
    for (int i = 0; i < B * N * D; i++) {
        dpatch[i] = 1e-4f * (float)(i % 5 - 2);
    }
    for (int i = 0; i < B * N; i++) {
        mask[i] = i % 3 == 0;
    }
    /* With stochastic depth each branch runs on max(int(B * (1 - rate)), 1) images. */
    int keep = rate > 0.0 ? (int)((double)B * (1.0 - rate)) : B;
    keep = keep < 1 ? 1 : keep;
    double Dd = D, Td = T, hid = a->ffn_hidden;
    double block = 2.0 * Td * Dd * (4 * Dd + 2 * hid) + 4.0 * Td * Td * Dd;
    double gflop = (2.0 * N * 588 * Dd + a->depth * block * keep / B) / 1e9;
    double gflop_teacher = (2.0 * N * 588 * Dd + a->depth * block) / 1e9;
    double best[3][2] = {{0}};
    for (int it = 0; it <= iters; it++) {
        double t[4][2];
        lvd_vit_drop drop = {rate, (uint64_t)it};
        t[0][0] = now(0), t[0][1] = now(1);
        if (lvd_vit_train_forward(m, student, x, mask, &drop, NULL, &err) != 0) {
            die(err.msg);
        }
        t[1][0] = now(0), t[1][1] = now(1);
        if (lvd_vit_train_backward(m, student, dcls, dpatch, NULL, &err) != 0) {
            die(err.msg);
        }
        t[2][0] = now(0), t[2][1] = now(1);
        if (lvd_vit_train_forward(m, teacher, x, NULL, NULL, NULL, &err) != 0) {
            die(err.msg);
        }
        t[3][0] = now(0), t[3][1] = now(1);
        for (int k = 0; it > 0 && k < 3; k++) { /* iteration 0 warms up */
            for (int c = 0; c < 2; c++) {
                double r = B / (t[k + 1][c] - t[k][c]);
                best[k][c] = r > best[k][c] ? r : best[k][c];
            }
        }
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("ViT-S/14 224x224, batch %d, drop %.2f (%d of %d images per branch): %.2f GFLOP per "
           "image forward (%.2f without drop)\n",
           B, rate, keep, B, gflop, gflop_teacher);
    printf("%-18s %10s %10s %12s\n", "", "images/s", "GFLOP/s", "GFLOP/cpu-s");
    const char *names[3] = {"student forward", "student backward", "teacher forward"};
    double work[3] = {gflop, 2.0 * gflop, gflop_teacher};
    for (int k = 0; k < 3; k++) {
        printf("%-18s %10.2f %10.1f %12.1f\n", names[k], best[k][0], best[k][0] * work[k],
               best[k][1] * work[k]);
    }
    double step = 1.0 / (1.0 / best[0][0] + 1.0 / best[1][0] + 1.0 / best[2][0]);
    printf("forward + backward + teacher: %.2f images/s; peak RSS %.0f MB\n", step,
           (double)ru.ru_maxrss / 1024.0);
    free(x);
    free(dcls);
    free(dpatch);
    free(mask);
    lvd_vit_pass_free(student);
    lvd_vit_pass_free(teacher);
    lvd_vit_train_free(m);
    return 0;
}
