#include "index/internal.h"

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

/* Clusters level l's items (the rows, or level l - 1's centroids). */
static int fit_level(lvd_hkmeans *h, const float *x, int l, int niter, int seed, lvd_error *err)
{
    const float *items = l == 0 ? x : h->centroids[l - 1];
    int64_t m = l == 0 ? h->n : h->k[l - 1];
    h->centroids[l] = index_alloc((size_t)h->k[l] * h->d, sizeof(float), "centroids", err);
    h->parent[l] = index_alloc((size_t)m, sizeof(int32_t), "cluster assignment", err);
    if (!h->centroids[l] || !h->parent[l])
        return -1;
    if (lvd_kmeans(items, m, h->d, h->k[l], niter, seed + l, h->centroids[l], err))
        return lvd_error_prefix(err, "level %d", l);
    return lvd_kmeans_assign(h->centroids[l], h->k[l], h->d, items, m, h->parent[l],
                             l == 0 ? h->sim : NULL, err);
}

int lvd_hkmeans_fit(const float *x, int64_t n, int d, const int *k, int levels, int niter, int seed,
                    lvd_hkmeans *out, lvd_error *err)
{
    memset(out, 0, sizeof *out);
    if (check_levels(n, k, levels, err))
        return -1;
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
        rc = fit_level(out, x, l, niter, seed, err);
    if (rc)
        lvd_hkmeans_free(out);
    return rc;
}
