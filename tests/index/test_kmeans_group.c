/* k-means shared by a group (index/index.h: lvd_kmeans_lloyd, lvd_kmeans_assign_group, and
 * lvd_hkmeans_fit with a group) against the same fit on one process. Run alone, the group is one
 * process (the shared code paths still run); under `mpirun -np 2` every rank fits both ways and
 * the shared fit must give the one-process centroids within 1e-5 relative (float64 sums; 1e-4
 * with float32 sums) and the same assignments. Clustered synthetic rows (d = 32), with k small
 * enough that training subsamples the rows, and large enough that it does not. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "dist/dist.h"
#include "index/index.h"
#include "tests/check.h"
#include "tests/index/synth.h"

#define D       32
#define N       3000
#define CENTERS 20

static void share(void *ctx, int64_t n, int64_t *begin, int64_t *end)
{
    lvd_dist_share(ctx, n, begin, end);
}

static int sum_f64(void *ctx, double *buf, size_t n, lvd_error *err)
{
    return lvd_dist_sum_f64(ctx, buf, n, err);
}

static int sum_f32(void *ctx, float *buf, size_t n, lvd_error *err)
{
    return lvd_dist_sum_f32(ctx, buf, n, err);
}

/* Rows at cosine 0.8 around CENTERS random unit centers. */
static float *make_rows(void)
{
    float *centers = malloc((size_t)CENTERS * D * sizeof *centers);
    float *x = malloc((size_t)N * D * sizeof *x);
    for (int c = 0; c < CENTERS; c++)
        synth_unit(centers + (size_t)c * D, D, 11, (uint64_t)c);
    for (int i = 0; i < N; i++)
        synth_at_cos(x + (size_t)i * D, centers + (size_t)(i % CENTERS) * D, D, 0.8, 12,
                     (uint64_t)i);
    free(centers);
    return x;
}

/* Largest |a - b| over rows, relative to the row's norm (unit rows: absolute). */
static double max_rel_diff(const float *a, const float *b, int rows)
{
    double worst = 0;
    for (int r = 0; r < rows; r++) {
        double dn = 0, an = 0;
        for (int j = 0; j < D; j++) {
            double e = (double)a[(size_t)r * D + j] - b[(size_t)r * D + j];
            dn += e * e;
            an += (double)a[(size_t)r * D + j] * a[(size_t)r * D + j];
        }
        worst = fmax(worst, sqrt(dn) / fmax(sqrt(an), 1e-30));
    }
    return worst;
}

static void check_flat(const float *x, int k, int float64, const lvd_kmeans_group *one,
                       const lvd_kmeans_group *group, int rank)
{
    lvd_error err;
    float *c1 = malloc((size_t)k * D * sizeof *c1), *c2 = malloc((size_t)k * D * sizeof *c2);
    int32_t *a1 = malloc(N * sizeof *a1), *a2 = malloc(N * sizeof *a2);
    float *s1 = malloc(N * sizeof *s1), *s2 = malloc(N * sizeof *s2);
    CHECK(lvd_kmeans_lloyd(x, N, D, k, 10, 5, float64, one, c1, &err) == 0);
    CHECK(lvd_kmeans_lloyd(x, N, D, k, 10, 5, float64, group, c2, &err) == 0);
    double diff = max_rel_diff(c1, c2, k);
    double tol = float64 ? 1e-5 : 1e-4;
    CHECK_MSG(diff < tol, "k %d float64 %d: centroids differ by %g", k, float64, diff);
    CHECK(lvd_kmeans_assign_group(c1, k, D, x, N, one, a1, s1, &err) == 0);
    CHECK(lvd_kmeans_assign_group(c2, k, D, x, N, group, a2, s2, &err) == 0);
    int64_t moved = 0, used = 0;
    double sim_diff = 0;
    for (int i = 0; i < N; i++) {
        moved += a1[i] != a2[i];
        sim_diff = fmax(sim_diff, fabs((double)s1[i] - s2[i]));
    }
    for (int c = 0; c < k; c++)
        for (int i = 0; i < N; i++)
            if (a1[i] == c) {
                used++;
                break;
            }
    CHECK_MSG(moved == 0, "k %d float64 %d: %lld rows assigned differently", k, float64,
              (long long)moved);
    CHECK(sim_diff < 1e-5);
    CHECK(used == k); /* a real clustering: every centroid holds rows */
    /* No group at all is the one-process group. */
    CHECK(lvd_kmeans_lloyd(x, N, D, k, 10, 5, float64, NULL, c2, &err) == 0);
    CHECK(max_rel_diff(c1, c2, k) == 0);
    if (rank == 0)
        printf("k %d float64 %d: max relative centroid difference %.3g, sims %.3g\n", k, float64,
               diff, sim_diff);
    free(c1);
    free(c2);
    free(a1);
    free(a2);
    free(s1);
    free(s2);
}

static void check_hierarchical(const float *x, const lvd_kmeans_group *one,
                               const lvd_kmeans_group *group, int rank)
{
    lvd_error err;
    const int k[2] = {CENTERS, 4};
    lvd_hkmeans_opts o1 = {8, 3, 1, 20, 1, one}, o2 = o1;
    o2.group = group;
    lvd_hkmeans h1, h2;
    CHECK(lvd_hkmeans_fit(x, N, D, k, 2, &o1, &h1, &err) == 0);
    CHECK(lvd_hkmeans_fit(x, N, D, k, 2, &o2, &h2, &err) == 0);
    double diff = 0;
    int64_t moved = 0;
    for (int l = 0; l < 2; l++) {
        diff = fmax(diff, max_rel_diff(h1.centroids[l], h2.centroids[l], k[l]));
        for (int64_t i = 0; i < (l == 0 ? N : k[0]); i++)
            moved += h1.parent[l][i] != h2.parent[l][i];
    }
    CHECK_MSG(diff < 1e-5, "hierarchical: centroids differ by %g", diff);
    CHECK_MSG(moved == 0, "hierarchical: %lld items assigned differently", (long long)moved);
    if (rank == 0)
        printf("hierarchical (20, 4), resampling, float64: max relative difference %.3g\n", diff);
    lvd_hkmeans_free(&h1);
    lvd_hkmeans_free(&h2);
}

int main(void)
{
    lvd_dist d, alone = {0, 1};
    lvd_error err;
    CHECK(lvd_dist_init(&d, &err) == 0);
    const lvd_kmeans_group group = {&d, share, sum_f64, sum_f32};
    const lvd_kmeans_group one = {&alone, share, sum_f64, sum_f32};
    float *x = make_rows();
    check_flat(x, CENTERS, 1, &one, &group, d.rank);
    check_flat(x, CENTERS, 0, &one, &group, d.rank);
    check_flat(x, 8, 1, &one, &group, d.rank); /* 8 x 256 < N: a training sample */
    check_hierarchical(x, &one, &group, d.rank);
    lvd_error bad;
    CHECK(lvd_kmeans_lloyd(x, 3, D, 4, 10, 5, 1, &group, NULL, &bad) == -1);
    free(x);
    if (d.rank == 0)
        printf("%d rank(s)\n", d.size);
    return check_finish();
}
