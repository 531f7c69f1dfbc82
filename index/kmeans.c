/* The spherical k-means of index/index.h (FAISS) and the assignment to centroids. */
#include "index/internal.h"

#include <faiss/c_api/Clustering_c.h>
#include <faiss/c_api/IndexFlat_c.h>
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
