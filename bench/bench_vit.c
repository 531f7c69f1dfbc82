/* lvd-bench-vit: ViT forward throughput against the machine's sgemm rate.
 *
 * ViT-S/14 (dim 384, 12 blocks, 6 heads, MLP 1536) with random weights at 224x224: images/s at
 * batch 1 and 8 with 1 and 2 threads (best and median of the rounds, and the median images per
 * CPU second of the process, img/cpu-s; bench/torch_vit.py times the PyTorch reference model
 * the same way, for the ratio in README), the achieved GFLOP/s
 * (counting the multiply-adds of every matrix product) as a fraction of OpenBLAS sgemm on the
 * model's largest product shapes (fc1: (257 * B) x 384 @ 384 x 1536 and fc2: (257 * B) x 1536 @
 * 1536 x 384, alternately) with the same threads, and the peak RSS. The sgemm rate is measured two
 * ways: one call threaded by OpenBLAS (its thread count is checked after setting it), and row
 * blocks on OpenMP threads each calling single-threaded OpenBLAS (the forward's split of rows); the
 * fraction is taken against the better of the two. Groups of sgemm calls (one forward batch of work
 * each, per mode) are timed before and after every forward batch and every rate is the best over
 * the rounds, so that a disturbance of the shared machine lowers neither the reference nor the
 * forward alone; groups as long as a batch keep short clock boosts from inflating the reference
 * (the machine's sgemm rate was seen swinging between 60 and 105 GFLOP/s per core). cpu-frac is the
 * same fraction per CPU second of the process instead of per wall-clock second: it stays meaningful
 * on a loaded machine, where the wall-clock figures are not. */
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

/* Operands of the sgemm reference products: fc1 c (M, 4K) = a (M, K) @ w (4K, K)^T and fc2
 * a = h (M, 4K) @ w (K, 4K)^T (h is never written, so the values stay bounded). */
typedef struct gemm_case {
    int M, K;
    float *a, *h, *w, *c;
} gemm_case;

static float *filled(size_t n, int period)
{
    float *p = malloc(sizeof(float) * n);
    if (!p) {
        fprintf(stderr, "lvd-bench-vit: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) {
        p[i] = (float)(i % (size_t)period) * 0.01f;
    }
    return p;
}

static gemm_case gemm_alloc(int M, int K)
{
    size_t big = (size_t)M * 4 * K;
    gemm_case g = {M,
                   K,
                   filled((size_t)M * K, 13),
                   filled(big, 11),
                   filled((size_t)4 * K * K, 7),
                   filled(big, 3)};
    return g;
}

/* Sets OpenBLAS to n threads and exits when it does not take them (a build without threading
 * would make the 2-thread reference a 1-thread one). */
static void blas_threads(int n)
{
    openblas_set_num_threads(n);
    if (openblas_get_num_threads() != n) {
        fprintf(stderr, "lvd-bench-vit: OpenBLAS runs %d threads, %d requested\n",
                openblas_get_num_threads(), n);
        exit(1);
    }
}

/* Times `calls` products, fc1 and fc2 shapes alternately (GFLOP/s into best). */
static void sgemm_group(const gemm_case *g, int threads, sgemm_mode mode, int calls, rate *best)
{
    blas_threads(mode == SGEMM_OPENBLAS_THREADS ? threads : 1);
    double t0 = now(), c0 = cpu_now();
    for (int k = 0; k < calls; k++) {
        if (k % 2 == 0) {
            sgemm_once(g->a, g->w, g->c, g->M, 4 * g->K, g->K, threads, mode);
        } else {
            sgemm_once(g->h, g->w, g->a, g->M, g->K, 4 * g->K, threads, mode);
        }
    }
    rate_best(best, calls * 2.0 * g->M * 4.0 * g->K * g->K / 1e9, now() - t0, cpu_now() - c0);
    blas_threads(1);
}

/* Times one group of each sgemm mode. */
static void sgemm_rounds(const gemm_case *g, int threads, int calls, rate *blas, rate *omp)
{
    sgemm_group(g, threads, SGEMM_OPENBLAS_THREADS, calls, blas);
    sgemm_group(g, threads, SGEMM_OPENMP_ROWS, calls, omp);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of v (n), sorted in place. */
static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Times one forward batch (images/s into best); returns its rates. */
static rate forward_batch(lvd_vit *m, const float *x, float *feat, int B, rate *best)
{
    lvd_error err = {0};
    double t0 = now(), c0 = cpu_now();
    if (lvd_vit_features(m, x, B, 224, 224, LVD_VIT_POOL_CLS, feat, &err) != 0) {
        fprintf(stderr, "lvd-bench-vit: %s\n", err.msg);
        exit(1);
    }
    rate r = {B / (now() - t0), B / (cpu_now() - c0)};
    if (best) {
        rate_best(best, B, B / r.wall, B / r.cpu);
    }
    return r;
}

/* One configuration: sgemm groups (both threading modes) and forward batches alternate, so
 * that all see the same machine load; best of iters forward batches and of the groups around
 * them. */
static void run_config(lvd_vit *m, int B, int threads, int iters, double gflop)
{
    int D = lvd_vit_get_info(m)->dim;
    size_t n = (size_t)B * 3 * 224 * 224;
    float *x = malloc(sizeof(float) * n);
    float *feat = malloc(sizeof(float) * (size_t)B * D);
    for (size_t i = 0; x && i < n; i++) {
        x[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
    }
    gemm_case g = gemm_alloc((1 + 256) * B, D);
    int calls = (int)(B * gflop * 1e9 / (2.0 * g.M * 4.0 * g.K * g.K)) + 1;
    lvd_vit_set_threads(m, threads);
    forward_batch(m, x, feat, B, NULL); /* warm-up: buffers, page faults */
    rate blas = {0, 0}, omp = {0, 0}, ips = {0, 0};
    double *each = malloc(sizeof(double) * (size_t)iters);
    double *each_cpu = malloc(sizeof(double) * (size_t)iters);
    if (!x || !feat || !each || !each_cpu) {
        fprintf(stderr, "lvd-bench-vit: out of memory\n");
        exit(1);
    }
    for (int it = 0; it < iters; it++) {
        sgemm_rounds(&g, threads, calls, &blas, &omp);
        rate r = forward_batch(m, x, feat, B, &ips);
        each[it] = r.wall;
        each_cpu[it] = r.cpu;
    }
    sgemm_rounds(&g, threads, calls, &blas, &omp);
    double ref = blas.wall > omp.wall ? blas.wall : omp.wall;
    double ref_cpu = blas.cpu > omp.cpu ? blas.cpu : omp.cpu;
    printf("%-5d %-7d %9.2f %9.2f %9.2f %9.1f %11.1f %10.1f %8.1f%% %8.1f%% %7.0f\n", B, threads,
           ips.wall, median(each, iters), median(each_cpu, iters), ips.wall * gflop, blas.wall,
           omp.wall, 100.0 * ips.wall * gflop / ref, 100.0 * ips.cpu * gflop / ref_cpu,
           peak_rss_mb());
    free(each);
    free(each_cpu);
    free(g.a);
    free(g.h);
    free(g.w);
    free(g.c);
    free(x);
    free(feat);
}

int main(int argc, char **argv)
{
    int iters = 3, only_batch = 0, only_threads = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            printf("usage: lvd-bench-vit [--iters N] [--batch B] [--threads T]\n"
                   "ViT-S/14 forward at 224x224 (random weights): images/s at batch 1 and 8\n"
                   "with 1 and 2 threads (--batch / --threads: only those), GFLOP/s as a\n"
                   "fraction of the sgemm rate on the largest product shapes (fc1, fc2), and\n"
                   "peak RSS. Best of N timed rounds (default 3).\n");
            return 0;
        }
        if (strcmp(argv[i], "--iters") == 0 && i + 1 < argc) {
            iters = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc) {
            only_batch = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            only_threads = atoi(argv[++i]);
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
    printf("%s; sgemm reference: fc1 and fc2 shapes, best of batch-long groups\n",
           openblas_get_config());
    printf("%-5s %-7s %9s %9s %9s %9s %11s %10s %9s %9s %7s\n", "batch", "threads", "images/s",
           "median", "img/cpu-s", "GFLOP/s", "sgemm-blas", "sgemm-omp", "fraction", "cpu-frac",
           "rss-MB");
    static const int configs[][2] = {{1, 1}, {1, 2}, {8, 1}, {8, 2}};
    for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++) {
        if ((only_batch && configs[i][0] != only_batch) ||
            (only_threads && configs[i][1] != only_threads)) {
            continue;
        }
        run_config(m, configs[i][0], configs[i][1], iters, gflop);
    }
    printf("peak RSS %.0f MB = weights %.0f MB + %.0f MB\n", peak_rss_mb(), weights_mb,
           peak_rss_mb() - weights_mb);
    lvd_vit_free(m);
    return 0;
}
