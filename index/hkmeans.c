/* lvd_hkmeans_fit of index/index.h: hierarchical k-means, level by level (FAISS, or Lloyd passes
 * shared by a group of processes). */
#include "index/internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void lvd_hkmeans_free(lvd_hkmeans *h)
{
    if (!h)
        return;
    for (int l = 0; l < h->levels; l++) {
        free(h->centroids ? h->centroids[l] : NULL);
        free(h->parent ? h->parent[l] : NULL);
    }
    free(h->k);
    free(h->centroids);
    free(h->parent);
    free(h->sim);
    memset(h, 0, sizeof *h);
}

static int check_levels(int64_t n, const int *k, int levels, lvd_error *err)
{
    if (levels < 1 || !k)
        return lvd_fail(err, "hierarchical k-means: need at least one level");
    for (int l = 0; l < levels; l++)
        if (k[l] < 1 || k[l] > (l == 0 ? n : k[l - 1]))
            return lvd_fail(err,
                            "hierarchical k-means: level %d asks for %d clusters of %lld items", l,
                            k[l], (long long)(l == 0 ? n : k[l - 1]));
    return 0;
}

/* One k-means run of the level: shared by the group when there is one, else FAISS, then the
 * float64 refinement when asked. */
static int cluster_items(const float *x, int64_t m, int d, int k, const lvd_hkmeans_opts *opt,
                         int seed, float *centroids, lvd_error *err)
{
    if (opt->group)
        return lvd_kmeans_lloyd(x, m, d, k, opt->niter, seed, opt->float64, opt->group, centroids,
                                err);
    if (lvd_kmeans(x, m, d, k, opt->niter, seed, centroids, err))
        return -1;
    return opt->float64 ? index_lloyd_passes(x, m, d, k, opt->niter, 1, NULL, centroids, err) : 0;
}

/* An item's place when sampling: its cluster, its similarity to the centroid, its index. */
typedef struct ranked {
    int32_t cluster;
    float sim;
    int64_t item;
} ranked;

/* By cluster, then most similar first, then lowest index: a total order. */
static int ranked_cmp(const void *pa, const void *pb)
{
    const ranked *a = pa, *b = pb;
    if (a->cluster != b->cluster)
        return a->cluster < b->cluster ? -1 : 1;
    if (a->sim != b->sim)
        return a->sim > b->sim ? -1 : 1;
    return (a->item > b->item) - (a->item < b->item);
}

/* One resampling step of level l over its m items (whose current cluster and sim are given):
 * k-means on the sample_size items closest to each centroid, then every item reassigned. Sets
 * *done when the sample is smaller than the number of clusters. */
static int resample_step(lvd_hkmeans *h, const float *items, int64_t m, int l, float *sim,
                         const lvd_hkmeans_opts *opt, int step, int *done, lvd_error *err)
{
    const int d = h->d, k = h->k[l];
    ranked *order = index_alloc((size_t)m, sizeof *order, "resampling", err);
    float *sample = index_alloc((size_t)m, (size_t)d * sizeof(float), "resampling", err);
    int rc = order && sample ? 0 : -1;
    int64_t ns = 0;
    if (rc == 0) {
        for (int64_t i = 0; i < m; i++)
            order[i] = (ranked){h->parent[l][i], sim[i], i};
        qsort(order, (size_t)m, sizeof *order, ranked_cmp);
        int64_t taken = 0;
        for (int64_t i = 0; i < m; i++) {
            taken = i > 0 && order[i].cluster == order[i - 1].cluster ? taken + 1 : 0;
            if (taken < opt->sample_size)
                memcpy(sample + (size_t)ns++ * d, items + (size_t)order[i].item * d,
                       (size_t)d * sizeof(float));
        }
        *done = ns < k;
    }
    if (rc == 0 && !*done)
        rc = cluster_items(sample, ns, d, k, opt, opt->seed + l + 1000 * (step + 1),
                           h->centroids[l], err);
    if (rc == 0 && !*done)
        rc = lvd_kmeans_assign_group(h->centroids[l], k, d, items, m, opt->group, h->parent[l], sim,
                                     err);
    free(order);
    free(sample);
    return rc;
}

/* Clusters level l's items (the rows, or level l - 1's centroids). */
static int fit_level(lvd_hkmeans *h, const float *x, int l, const lvd_hkmeans_opts *opt,
                     lvd_error *err)
{
    const float *items = l == 0 ? x : h->centroids[l - 1];
    int64_t m = l == 0 ? h->n : h->k[l - 1];
    h->centroids[l] = index_alloc((size_t)h->k[l] * h->d, sizeof(float), "centroids", err);
    h->parent[l] = index_alloc((size_t)m, sizeof(int32_t), "cluster assignment", err);
    float *sim = l == 0 ? h->sim : index_alloc((size_t)m, sizeof *sim, "similarities", err);
    int rc = h->centroids[l] && h->parent[l] && sim ? 0 : -1;
    if (rc == 0)
        rc = cluster_items(items, m, h->d, h->k[l], opt, opt->seed + l, h->centroids[l], err);
    if (rc == 0)
        rc = lvd_kmeans_assign_group(h->centroids[l], h->k[l], h->d, items, m, opt->group,
                                     h->parent[l], sim, err);
    int done = 0;
    for (int step = 0; rc == 0 && !done && step < opt->resample; step++)
        rc = resample_step(h, items, m, l, sim, opt, step, &done, err);
    if (sim != h->sim)
        free(sim);
    return rc ? lvd_error_prefix(err, "level %d", l) : 0;
}

int lvd_hkmeans_fit(const float *x, int64_t n, int d, const int *k, int levels,
                    const lvd_hkmeans_opts *opt, lvd_hkmeans *out, lvd_error *err)
{
    memset(out, 0, sizeof *out);
    if (check_levels(n, k, levels, err))
        return -1;
    if (opt->niter < 1 || opt->resample < 0 || (opt->resample > 0 && opt->sample_size < 1))
        return lvd_fail(err, "hierarchical k-means: need niter >= 1, resample >= 0 and, with "
                             "resampling, sample_size >= 1");
    out->d = d;
    out->n = n;
    out->k = index_alloc((size_t)levels, sizeof *out->k, "levels", err);
    out->centroids = index_alloc((size_t)levels, sizeof *out->centroids, "levels", err);
    out->parent = index_alloc((size_t)levels, sizeof *out->parent, "levels", err);
    out->sim = index_alloc((size_t)n, sizeof *out->sim, "row similarities", err);
    int rc = out->k && out->centroids && out->parent && out->sim ? 0 : -1;
    if (rc == 0) {
        out->levels = levels;
        memcpy(out->k, k, (size_t)levels * sizeof *k);
    }
    for (int l = 0; rc == 0 && l < levels; l++)
        rc = fit_level(out, x, l, opt, err);
    if (rc)
        lvd_hkmeans_free(out);
    return rc;
}
