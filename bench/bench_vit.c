/* lvd-bench-vit: ViT forward throughput against the machine's sgemm rate.
 *
 * ViT-S/14 (dim 384, 12 blocks, 6 heads, MLP 1536) with random weights at 224x224: images/s at
 * batch 1 and 8 with 1 and 2 threads, the achieved GFLOP/s (counting the multiply-adds of every
 * matrix product) as a fraction of OpenBLAS sgemm on the model's largest product shape
 * ((257 * B) x 384 @ 384 x 1536) with the same threads, and the peak RSS. The sgemm rate is
 * measured two ways: one call threaded by OpenBLAS, and row blocks on OpenMP threads each
 * calling single-threaded OpenBLAS (what the model does). cpu-frac is the same fraction per CPU
 * second of the process instead of per wall-clock second: it stays meaningful on a loaded
 * machine, where the wall-clock figures are not. */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "embed/vit.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* A rate measured both per wall-clock second and per CPU second of the process (the second
 * stays meaningful when other processes load the machine). */
typedef struct rate {
    double wall, cpu;
} rate;

/* Keeps the best of r and the run that did work units in wall and cpu seconds. */
static void rate_best(rate *r, double work, double wall, double cpu)
{
    r->wall = work / wall > r->wall ? work / wall : r->wall;
    r->cpu = work / cpu > r->cpu ? work / cpu : r->cpu;
}

static double peak_rss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

/* Multiply-add FLOPs (2 per MAC) of one image of gh x gw patches. */
static double flops_per_image(const lvd_vit_info *a, int gh, int gw)
{
    double D = a->dim, N = (double)gh * gw, T = 1 + a->n_reg + N;
    double hid = a->ffn_hidden, f1 = a->ffn == LVD_VIT_SWIGLU ? 2 * hid : hid;
    double patch = 2.0 * N * (3.0 * a->patch * a->patch) * D;
    double block = 2.0 * T * D * 3 * D /* qkv */ + 2.0 * 2.0 * T * T * D /* QK^T and AV */ +
                   2.0 * T * D * D /* proj */ + 2.0 * T * D * f1 + 2.0 * T * hid * D;
    return patch + a->depth * block;
}

typedef enum sgemm_mode { SGEMM_OPENBLAS_THREADS, SGEMM_OPENMP_ROWS } sgemm_mode;

/* One C (M, N) = A (M, K) @ B (N, K)^T product on threads threads. */
static void sgemm_once(const float *a, const float *b, float *c, int M, int N, int K, int threads,
                       sgemm_mode mode)
{
    if (mode == SGEMM_OPENBLAS_THREADS) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a, K, b, K, 0.0f, c, N);
        return;
    }
#pragma omp parallel num_threads(threads)
    {
        int nt = omp_get_num_threads(), t = omp_get_thread_num();
        int lo = M * t / nt, hi = M * (t + 1) / nt;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, hi - lo, N, K, 1.0f,
                    a + (size_t)lo * K, K, b, K, 0.0f, c + (size_t)lo * N, N);
    }
}

/* Operands of the sgemm reference product C (M, N) = A (M, K) @ B (N, K)^T. */
typedef struct gemm_case {
    int M, N, K;
    float *a, *b, *c;
} gemm_case;

static gemm_case gemm_alloc(int M, int N, int K)
{
    gemm_case g = {M,
                   N,
                   K,
                   malloc(sizeof(float) * (size_t)M * K),
                   malloc(sizeof(float) * (size_t)N * K),
                   malloc(sizeof(float) * (size_t)M * N)};
    if (!g.a || !g.b || !g.c) {
        fprintf(stderr, "lvd-bench-vit: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < (size_t)M * K; i++) {
        g.a[i] = (float)(i % 13) * 0.01f;
    }
    for (size_t i = 0; i < (size_t)N * K; i++) {
        g.b[i] = (float)(i % 7) * 0.01f;
    }
    return g;
}

/* Times `calls` products (GFLOP/s into best). */
static void sgemm_group(const gemm_case *g, int threads, sgemm_mode mode, int calls, rate *best)
{
    openblas_set_num_threads(mode == SGEMM_OPENBLAS_THREADS ? threads : 1);
    double t0 = now(), c0 = cpu_now();
    for (int k = 0; k < calls; k++) {
        sgemm_once(g->a, g->b, g->c, g->M, g->N, g->K, threads, mode);
    }
    rate_best(best, calls * 2.0 * g->M * g->N * g->K / 1e9, now() - t0, cpu_now() - c0);
    openblas_set_num_threads(1);
}

/* Times one forward batch (images/s into best). */
static void forward_batch(lvd_vit *m, const float *x, float *feat, int B, rate *best)
{
    lvd_error err = {0};
    double t0 = now(), c0 = cpu_now();
    if (lvd_vit_features(m, x, B, 224, 224, LVD_VIT_POOL_CLS, feat, &err) != 0) {
        fprintf(stderr, "lvd-bench-vit: %s\n", err.msg);
        exit(1);
    }
    if (best) {
        rate_best(best, B, now() - t0, cpu_now() - c0);
    }
}

/* One configuration: the sgemm groups (about one forward batch of work each, both threading
 * modes) and forward batches alternate, so that all see the same machine load; best of iters. */
static void run_config(lvd_vit *m, int B, int threads, int iters, double gflop)
{
    int D = lvd_vit_get_info(m)->dim;
    size_t n = (size_t)B * 3 * 224 * 224;
    float *x = malloc(sizeof(float) * n);
    float *feat = malloc(sizeof(float) * (size_t)B * D);
    for (size_t i = 0; x && i < n; i++) {
        x[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
    }
    gemm_case g = gemm_alloc((1 + 256) * B, 4 * D, D);
    int calls = (int)(B * gflop * 1e9 / (2.0 * g.M * g.N * g.K)) + 1;
    lvd_vit_set_threads(m, threads);
    forward_batch(m, x, feat, B, NULL); /* warm-up: buffers, page faults */
    rate blas = {0, 0}, omp = {0, 0}, ips = {0, 0};
    for (int it = 0; it < iters; it++) {
        sgemm_group(&g, threads, SGEMM_OPENBLAS_THREADS, calls, &blas);
        sgemm_group(&g, threads, SGEMM_OPENMP_ROWS, calls, &omp);
        forward_batch(m, x, feat, B, &ips);
    }
    double ref = blas.wall > omp.wall ? blas.wall : omp.wall;
    double ref_cpu = blas.cpu > omp.cpu ? blas.cpu : omp.cpu;
    printf("%-5d %-7d %9.2f %9.1f %11.1f %10.1f %8.1f%% %8.1f%% %7.0f\n", B, threads, ips.wall,
           ips.wall * gflop, blas.wall, omp.wall, 100.0 * ips.wall * gflop / ref,
           100.0 * ips.cpu * gflop / ref_cpu, peak_rss_mb());
    free(g.a);
    free(g.b);
    free(g.c);
    free(x);
    free(feat);
}

int main(int argc, char **argv)
{
    int iters = 3;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            printf("usage: lvd-bench-vit [--iters N]\n"
                   "ViT-S/14 forward at 224x224 (random weights): images/s at batch 1 and 8\n"
                   "with 1 and 2 threads, GFLOP/s as a fraction of the sgemm rate on the\n"
                   "largest product shape, and peak RSS. Best of N timed rounds (default 3).\n");
            return 0;
        }
        if (strcmp(argv[i], "--iters") == 0 && i + 1 < argc) {
            iters = atoi(argv[++i]);
        } else {
            fprintf(stderr, "lvd-bench-vit: unexpected argument %s (see --help)\n", argv[i]);
            return 2;
        }
    }
    if (iters < 1) {
        fprintf(stderr, "lvd-bench-vit: --iters must be at least 1\n");
        return 2;
    }
    lvd_vit_info arch = {.dim = 384, .depth = 12, .patch = 14, .grid = 37, .ffn = LVD_VIT_MLP};
    lvd_vit *m;
    lvd_error err = {0};
    if (lvd_vit_init_random(&arch, 1, &m, &err) != 0) {
        fprintf(stderr, "lvd-bench-vit: %s\n", err.msg);
        return 1;
    }
    const lvd_vit_info *a = lvd_vit_get_info(m);
    double gflop = flops_per_image(a, 16, 16) / 1e9;
    double weights_mb = (double)a->n_params * 4.0 / 1048576.0;
    printf("ViT-S/14 depth %d at 224x224: %.2f GFLOP per image, %.1f M parameters (%.0f MB)\n",
           a->depth, gflop, (double)a->n_params / 1e6, weights_mb);
    printf("%-5s %-7s %9s %9s %11s %10s %9s %9s %7s\n", "batch", "threads", "images/s", "GFLOP/s",
           "sgemm-blas", "sgemm-omp", "fraction", "cpu-frac", "rss-MB");
    static const int configs[][2] = {{1, 1}, {1, 2}, {8, 1}, {8, 2}};
    for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++) {
        run_config(m, configs[i][0], configs[i][1], iters, gflop);
    }
    printf("peak RSS %.0f MB = weights %.0f MB + %.0f MB\n", peak_rss_mb(), weights_mb,
           peak_rss_mb() - weights_mb);
    lvd_vit_free(m);
    return 0;
}
