/* lvd-bench-head: DINO head forward + backward time and GFLOP/s (train/head.h), and the losses on
 * its output (Sinkhorn targets, DINO cross-entropy with its gradient).
 *
 * Usage: lvd-bench-head [--rows N] [--in D] [--hidden H] [--bottleneck B] [--k K] [--threads T]
 *                       [--reps R]
 * Defaults: 3000 rows, 192 -> 512 -> 512 -> 128 -> 4096, 2 threads, 5 repetitions. Every figure
 * is the best over the repetitions (wall clock), with the CPU seconds of that repetition; the
 * GFLOP/s count the multiply-adds of the matrix products (forward 2 n (D H + H H + H B + B K),
 * backward twice that less the input gradient of the first layer, which is computed too). */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "train/head.h"
#include "train/loss.h"

static double now(clockid_t c)
{
    struct timespec t;
    clock_gettime(c, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv)
{
    lvd_head_config c = {.in_dim = 192,
                         .hidden_dim = 512,
                         .bottleneck_dim = 128,
                         .out_dim = 4096,
                         .nlayers = 3,
                         .mlp_bias = 1};
    int rows = 3000, threads = 2, reps = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        int v = atoi(argv[i + 1]);
        if (strcmp(argv[i], "--rows") == 0)
            rows = v;
        else if (strcmp(argv[i], "--in") == 0)
            c.in_dim = v;
        else if (strcmp(argv[i], "--hidden") == 0)
            c.hidden_dim = v;
        else if (strcmp(argv[i], "--bottleneck") == 0)
            c.bottleneck_dim = v;
        else if (strcmp(argv[i], "--k") == 0)
            c.out_dim = v;
        else if (strcmp(argv[i], "--threads") == 0)
            threads = v;
        else if (strcmp(argv[i], "--reps") == 0)
            reps = v;
        else {
            fprintf(stderr, "lvd-bench-head: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    lvd_error err;
    lvd_head h;
    lvd_head_acts a;
    if (lvd_head_init(&h, &c, 1, &err) != 0 || lvd_head_acts_init(&a, &c, rows, &err) != 0) {
        fprintf(stderr, "lvd-bench-head: %s\n", err.msg);
        return 1;
    }
    h.threads = threads;
    omp_set_num_threads(threads);
    size_t nk = (size_t)rows * (size_t)c.out_dim;
    float *x = malloc(sizeof(float) * (size_t)rows * (size_t)c.in_dim);
    float *out = malloc(sizeof(float) * nk), *q = malloc(sizeof(float) * nk);
    float *dx = malloc(sizeof(float) * (size_t)rows * (size_t)c.in_dim);
    float *g = calloc(h.layout.total, sizeof *g);
    if (!x || !out || !q || !dx || !g) {
        fprintf(stderr, "lvd-bench-head: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < (size_t)rows * (size_t)c.in_dim; i++)
        x[i] = (float)((double)((i * 2654435761u) % 1000) / 500.0 - 1.0);
    double fwd_flop =
        2.0 * rows *
        ((double)c.in_dim * c.hidden_dim + (double)c.hidden_dim * c.hidden_dim +
         (double)c.hidden_dim * c.bottleneck_dim + (double)c.bottleneck_dim * c.out_dim);
    double best[4] = {1e30, 1e30, 1e30, 1e30}, cpu[4] = {0};
    for (int r = 0; r < reps; r++) {
        double t0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
        if (lvd_head_forward(&h, &a, x, rows, out, &err) != 0) {
            fprintf(stderr, "lvd-bench-head: %s\n", err.msg);
            return 1;
        }
        double t1 = now(CLOCK_MONOTONIC), c1 = now(CLOCK_PROCESS_CPUTIME_ID);
        /* Teacher targets from the same logits, then the loss gradient in place. */
        lvd_sinkhorn_targets(out, rows, c.out_dim, 0.07f, 3, NULL, q, &err);
        double t2 = now(CLOCK_MONOTONIC), c2 = now(CLOCK_PROCESS_CPUTIME_ID);
        const float *tp[1] = {q};
        double loss;
        lvd_dino_loss(out, tp, 1, rows, c.out_dim, 0.1f, 1.0, &loss, out, &err);
        double t3 = now(CLOCK_MONOTONIC), c3 = now(CLOCK_PROCESS_CPUTIME_ID);
        if (lvd_head_backward(&h, &a, out, g, dx, &err) != 0) {
            fprintf(stderr, "lvd-bench-head: %s\n", err.msg);
            return 1;
        }
        double t4 = now(CLOCK_MONOTONIC), c4 = now(CLOCK_PROCESS_CPUTIME_ID);
        double w[4] = {t1 - t0, t2 - t1, t3 - t2, t4 - t3},
               p[4] = {c1 - c0, c2 - c1, c3 - c2, c4 - c3};
        for (int k = 0; k < 4; k++)
            if (w[k] < best[k]) {
                best[k] = w[k];
                cpu[k] = p[k];
            }
    }
    printf("head %d -> %d x%d -> %d -> %d, %d rows, %d threads, OpenBLAS %s\n", c.in_dim,
           c.hidden_dim, c.nlayers - 1, c.bottleneck_dim, c.out_dim, rows, threads,
           openblas_get_config());
    const char *what[4] = {"head forward", "sinkhorn targets", "dino loss + gradient",
                           "head backward"};
    double flop[4] = {fwd_flop, 0.0, 0.0, 2.0 * fwd_flop};
    for (int k = 0; k < 4; k++) {
        printf("  %-22s %8.1f ms  cpu %8.1f ms", what[k], 1e3 * best[k], 1e3 * cpu[k]);
        if (flop[k] > 0.0)
            printf("  %6.1f GFLOP/s", flop[k] / best[k] * 1e-9);
        printf("\n");
    }
    printf("  %-22s %8.1f ms\n", "forward + backward", 1e3 * (best[0] + best[3]));
    free(x);
    free(out);
    free(q);
    free(dx);
    free(g);
    lvd_head_acts_free(&a);
    lvd_head_free(&h);
    return 0;
}
