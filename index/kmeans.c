/* The spherical k-means of index/index.h: FAISS (lvd_kmeans), Lloyd passes shared by a group of
 * processes (lvd_kmeans_lloyd, lvd_kmeans_assign_group), and the assignment to centroids. */
#include "index/internal.h"

#include <faiss/c_api/Clustering_c.h>
#include <faiss/c_api/IndexFlat_c.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Runs FAISS's Clustering with an inner-product assignment index and copies the centroids. */
static int run_clustering(FaissClustering *cl, const float *x, int64_t n, int d, int k,
                          float *centroids, lvd_error *err)
{
    FaissIndexFlatIP *ip = NULL;
    if (faiss_IndexFlatIP_new_with(&ip, d))
        return index_faiss_fail(err, "k-means");
    int rc = 0;
    if (faiss_Clustering_train(cl, n, x, ip)) {
        rc = index_faiss_fail(err, "k-means");
    } else {
        float *c;
        size_t size;
        faiss_Clustering_centroids(cl, &c, &size);
        if (size != (size_t)k * d)
            rc = lvd_fail(err, "k-means: FAISS returned %zu centroid values, expected %zu", size,
                          (size_t)k * d);
        else
            memcpy(centroids, c, size * sizeof *c);
    }
    faiss_Index_free(ip);
    return rc;
}

int lvd_kmeans(const float *x, int64_t n, int d, int k, int niter, int seed, float *centroids,
               lvd_error *err)
{
    if (d < 1 || k < 1 || niter < 1 || n < k)
        return lvd_fail(err,
                        "k-means: need d, k, niter >= 1 and n >= k (n %lld, d %d, k %d, niter %d)",
                        (long long)n, d, k, niter);
    if (index_check_rows(x, n, d, "k-means", err))
        return -1;
    FaissClusteringParameters cp;
    faiss_ClusteringParameters_init(&cp);
    cp.niter = niter;
    cp.seed = seed;
    cp.spherical = 1;
    cp.min_points_per_centroid = 1;
    FaissClustering *cl = NULL;
    if (faiss_Clustering_new_with_params(&cl, d, k, &cp))
        return index_faiss_fail(err, "k-means");
    int rc = run_clustering(cl, x, n, d, k, centroids, err);
    faiss_Clustering_free(cl);
    return rc;
}

int lvd_kmeans_assign(const float *centroids, int k, int d, const float *x, int64_t n,
                      int32_t *cluster, float *sim, lvd_error *err)
{
    lvd_index *index = NULL;
    if (lvd_index_create(&index, d, "Flat", err))
        return -1;
    float *s = index_alloc((size_t)n, sizeof *s, "k-means assignment", err);
    int64_t *ids = index_alloc((size_t)n, sizeof *ids, "k-means assignment", err);
    int rc = -1;
    if (s && ids && lvd_index_add(index, k, centroids, err) == 0 &&
        lvd_index_search(index, n, x, 1, 0, s, ids, err) == 0) {
        for (int64_t i = 0; i < n; i++) {
            cluster[i] = (int32_t)ids[i];
            if (sim)
                sim[i] = s[i];
        }
        rc = 0;
    }
    free(s);
    free(ids);
    lvd_index_free(index);
    return rc;
}

/* ---- lvd_kmeans_lloyd / lvd_kmeans_assign_group: k-means shared by a group ---------------- */

/* FAISS's cap on training rows per centroid. */
#define LLOYD_MAX_PER_CENTROID 256

static void share_of(const lvd_kmeans_group *g, int64_t n, int64_t *begin, int64_t *end)
{
    if (g) {
        g->share(g->ctx, n, begin, end);
    } else {
        *begin = 0;
        *end = n;
    }
}

/* splitmix64: the same stream on every process and platform. */
static uint64_t next_random(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The first m entries of a permutation of 0 .. n - 1 drawn from seed (partial Fisher-Yates). */
static int64_t *pick_rows(int64_t n, int64_t m, uint64_t seed, lvd_error *err)
{
    int64_t *p = index_alloc((size_t)n, sizeof *p, "k-means sample", err);
    if (!p)
        return NULL;
    for (int64_t i = 0; i < n; i++)
        p[i] = i;
    uint64_t s = seed;
    for (int64_t i = 0; i < m; i++) {
        int64_t j = i + (int64_t)(next_random(&s) % (uint64_t)(n - i));
        int64_t t = p[i];
        p[i] = p[j];
        p[j] = t;
    }
    return p;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The training rows: all of x, or a seeded sample of m rows in row order (*owned to free). */
static const float *training_rows(const float *x, int64_t n, int d, int64_t m, int seed,
                                  float **owned, lvd_error *err)
{
    *owned = NULL;
    if (m == n)
        return x;
    int64_t *p = pick_rows(n, m, (uint64_t)seed, err);
    float *t = p ? index_alloc((size_t)m, (size_t)d * sizeof *t, "k-means sample", err) : NULL;
    if (t) {
        qsort(p, (size_t)m, sizeof *p, cmp_i64);
        for (int64_t i = 0; i < m; i++)
            memcpy(t + (size_t)i * d, x + (size_t)p[i] * d, (size_t)d * sizeof *t);
    }
    free(p);
    *owned = t;
    return t;
}

/* Centroid c = sum / |sum| unless the cluster is empty (count 0) or its sum is 0. */
static void set_centroid(float *centroid, const double *sum, double count, int d)
{
    double n2 = 0;
    for (int j = 0; j < d; j++)
        n2 += sum[j] * sum[j];
    if (count == 0 || n2 == 0)
        return;
    double inv = 1.0 / sqrt(n2);
    for (int j = 0; j < d; j++)
        centroid[j] = (float)(sum[j] * inv);
}

/* Sums and counts of this process's rows (train[b .. e) with clusters cl) added across the
 * group: k x d sums then k counts, written as float64 into sum. Without float64 each process's
 * sums are rounded to float32 and added in float32, with or without a group. */
static int cluster_sums(const float *train, int64_t b, int64_t e, int d, int k, const int32_t *cl,
                        int float64, const lvd_kmeans_group *g, double *sum, float *sum32,
                        lvd_error *err)
{
    size_t len = (size_t)k * d + (size_t)k;
    memset(sum, 0, len * sizeof *sum);
    for (int64_t i = b; i < e; i++) {
        double *s = sum + (size_t)cl[i - b] * d;
        const float *r = train + (size_t)i * d;
        for (int j = 0; j < d; j++)
            s[j] += r[j];
        sum[(size_t)k * d + (size_t)cl[i - b]] += 1;
    }
    if (float64)
        return g ? g->sum_f64(g->ctx, sum, len, err) : 0;
    for (size_t i = 0; i < len; i++)
        sum32[i] = (float)sum[i];
    if (g && g->sum_f32(g->ctx, sum32, len, err))
        return -1;
    for (size_t i = 0; i < len; i++)
        sum[i] = sum32[i];
    return 0;
}

int index_lloyd_passes(const float *train, int64_t m, int d, int k, int niter, int float64,
                       const lvd_kmeans_group *g, float *centroids, lvd_error *err)
{
    int64_t b, e;
    share_of(g, m, &b, &e);
    size_t len = (size_t)k * d + (size_t)k;
    int32_t *cl = index_alloc((size_t)(e - b) + 1, sizeof *cl, "k-means", err);
    double *sum = index_alloc(len, sizeof *sum, "k-means", err);
    float *sum32 = index_alloc(len, sizeof *sum32, "k-means", err);
    int rc = cl && sum && sum32 ? 0 : -1;
    for (int it = 0; rc == 0 && it < niter; it++) {
        if (e > b)
            rc = lvd_kmeans_assign(centroids, k, d, train + (size_t)b * d, e - b, cl, NULL, err);
        if (rc == 0)
            rc = cluster_sums(train, b, e, d, k, cl, float64, g, sum, sum32, err);
        for (int c = 0; rc == 0 && c < k; c++)
            set_centroid(centroids + (size_t)c * d, sum + (size_t)c * d, sum[(size_t)k * d + c], d);
    }
    free(cl);
    free(sum);
    free(sum32);
    return rc;
}

int lvd_kmeans_lloyd(const float *x, int64_t n, int d, int k, int niter, int seed, int float64,
                     const lvd_kmeans_group *g, float *centroids, lvd_error *err)
{
    if (d < 1 || k < 1 || niter < 1 || n < k)
        return lvd_fail(err,
                        "k-means: need d, k, niter >= 1 and n >= k (n %lld, d %d, k %d, niter %d)",
                        (long long)n, d, k, niter);
    if (index_check_rows(x, n, d, "k-means", err))
        return -1;
    int64_t cap = (int64_t)k * LLOYD_MAX_PER_CENTROID, m = n < cap ? n : cap;
    float *owned;
    const float *train = training_rows(x, n, d, m, seed, &owned, err);
    if (!train)
        return -1;
    int64_t *start = pick_rows(m, k, (uint64_t)seed + 1, err);
    int rc = start ? 0 : -1;
    for (int c = 0; rc == 0 && c < k; c++) {
        float *cen = centroids + (size_t)c * d;
        memcpy(cen, train + (size_t)start[c] * d, (size_t)d * sizeof *cen);
        double n2 = 0;
        for (int j = 0; j < d; j++)
            n2 += (double)cen[j] * cen[j];
        for (int j = 0; n2 > 0 && j < d; j++)
            cen[j] = (float)(cen[j] / sqrt(n2));
    }
    free(start);
    if (rc == 0)
        rc = index_lloyd_passes(train, m, d, k, niter, float64, g, centroids, err);
    free(owned);
    return rc;
}

int lvd_kmeans_assign_group(const float *centroids, int k, int d, const float *x, int64_t n,
                            const lvd_kmeans_group *g, int32_t *cluster, float *sim, lvd_error *err)
{
    if (!g)
        return lvd_kmeans_assign(centroids, k, d, x, n, cluster, sim, err);
    int64_t b, e;
    share_of(g, n, &b, &e);
    /* Every process fills its rows and zeros elsewhere; the sums are then everyone's rows. */
    double *all = index_alloc((size_t)n + 1, sizeof *all, "k-means assignment", err);
    float *sims = index_alloc((size_t)n + 1, sizeof *sims, "k-means assignment", err);
    int rc = all && sims ? 0 : -1;
    if (rc == 0) {
        memset(all, 0, (size_t)n * sizeof *all);
        memset(sims, 0, (size_t)n * sizeof *sims);
    }
    if (rc == 0 && e > b)
        rc = lvd_kmeans_assign(centroids, k, d, x + (size_t)b * d, e - b, cluster + b, sims + b,
                               err);
    for (int64_t i = b; rc == 0 && i < e; i++)
        all[i] = cluster[i];
    if (rc == 0)
        rc = g->sum_f64(g->ctx, all, (size_t)n, err);
    if (rc == 0 && sim)
        rc = g->sum_f32(g->ctx, sims, (size_t)n, err);
    for (int64_t i = 0; rc == 0 && i < n; i++) {
        cluster[i] = (int32_t)all[i];
        if (sim)
            sim[i] = sims[i];
    }
    free(all);
    free(sims);
    return rc;
}
