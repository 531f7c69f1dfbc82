/* The retrieval core of index/index.h: nearest pool images and cluster picks. */
#include "index/internal.h"

#include <stdlib.h>
#include <string.h>

int lvd_retrieve_nearest(const lvd_index *pool, const float *seeds, int64_t n_seeds, int per_seed,
                         int64_t batch, uint32_t *hits, int64_t *n_retrieved, lvd_error *err)
{
    int64_t n = lvd_index_count(pool);
    *n_retrieved = 0;
    if (per_seed < 1 || n_seeds < 0)
        return lvd_fail(err, "retrieve nearest: need per_seed >= 1 (got %d) and a seed count",
                        per_seed);
    memset(hits, 0, (size_t)n * sizeof *hits);
    if (batch <= 0 || batch > n_seeds)
        batch = n_seeds ? n_seeds : 1;
    size_t d = (size_t)lvd_index_dim(pool);
    float *sims = index_alloc((size_t)batch * per_seed, sizeof *sims, "retrieval results", err);
    int64_t *ids = index_alloc((size_t)batch * per_seed, sizeof *ids, "retrieval results", err);
    int rc = sims && ids ? 0 : -1;
    for (int64_t start = 0; rc == 0 && start < n_seeds; start += batch) {
        int64_t m = n_seeds - start < batch ? n_seeds - start : batch;
        rc = lvd_index_search(pool, m, seeds + (size_t)start * d, per_seed, 0, sims, ids, err);
        for (size_t j = 0; rc == 0 && j < (size_t)m * per_seed; j++)
            if (ids[j] >= 0 && hits[ids[j]]++ == 0)
                (*n_retrieved)++;
    }
    free(sims);
    free(ids);
    return rc;
}

/* Most similar to the centroid first; equal similarity: lowest id first. */
static int member_cmp(const void *pa, const void *pb)
{
    const index_member *a = pa, *b = pb;
    if (a->sim != b->sim)
        return a->sim > b->sim ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

void index_sort_members(index_member *m, size_t n)
{
    qsort(m, n, sizeof *m, member_cmp);
}

static int check_clusters(const int32_t *cluster, int64_t n, int k, const char *what,
                          lvd_error *err)
{
    for (int64_t i = 0; i < n; i++)
        if (cluster[i] < 0 || cluster[i] >= k)
            return lvd_fail(err, "retrieve clusters: %s %lld is in cluster %d, outside 0 .. %d",
                            what, (long long)i, cluster[i], k - 1);
    return 0;
}

/* Counts, for each cluster, the rows of `cluster` that fall in it (counts has k entries). */
static void count_clusters(const int32_t *cluster, int64_t n, int64_t *counts, int k)
{
    memset(counts, 0, (size_t)k * sizeof *counts);
    for (int64_t i = 0; i < n; i++)
        counts[cluster[i]]++;
}

/* Groups the pool rows of eligible clusters (start[c] .. start[c + 1] in members), sorts each
 * group and selects its first per_cluster rows. */
static void select_members(int k, const int32_t *pool_cluster, const float *pool_sim,
                           int64_t n_pool, const int64_t *seeds_in, int64_t min_seeds,
                           int64_t per_cluster, int64_t *start, index_member *members,
                           uint8_t *selected, int64_t *n_selected)
{
    for (int c = 0; c < k; c++)
        start[c + 1] += start[c];
    int64_t *fill = start + k + 1; /* k write cursors after the k + 1 offsets */
    memcpy(fill, start, (size_t)k * sizeof *fill);
    for (int64_t i = 0; i < n_pool; i++) {
        int c = pool_cluster[i];
        if (seeds_in[c] > min_seeds)
            members[fill[c]++] = (index_member){pool_sim[i], i};
    }
    for (int c = 0; c < k; c++) {
        int64_t size = start[c + 1] - start[c];
        index_sort_members(members + start[c], (size_t)size);
        for (int64_t j = 0; j < size && j < per_cluster; j++) {
            selected[members[start[c] + j].id] = 1;
            (*n_selected)++;
        }
    }
}

/* Picks the rows once the per-cluster counts are known; allocates the member array. */
static int pick_rows(int k, const int32_t *pool_cluster, const float *pool_sim, int64_t n_pool,
                     const int64_t *seeds_in, const int64_t *pool_in, int64_t min_seeds,
                     int64_t per_cluster, int64_t *start, uint8_t *selected, int64_t *n_selected,
                     lvd_error *err)
{
    int64_t eligible = 0;
    for (int c = 0; c < k; c++)
        if (seeds_in[c] > min_seeds) {
            start[c + 1] = pool_in[c];
            eligible += pool_in[c];
        }
    index_member *members = index_alloc((size_t)eligible, sizeof *members, "cluster members", err);
    if (!members)
        return -1;
    select_members(k, pool_cluster, pool_sim, n_pool, seeds_in, min_seeds, per_cluster, start,
                   members, selected, n_selected);
    free(members);
    return 0;
}

int lvd_retrieve_clusters(int k, const int32_t *pool_cluster, const float *pool_sim, int64_t n_pool,
                          const int32_t *seed_cluster, int64_t n_seeds, int64_t min_seeds,
                          int64_t per_cluster, uint8_t *selected, int64_t *n_selected,
                          lvd_error *err)
{
    *n_selected = 0;
    if (k < 1 || n_pool < 0 || n_seeds < 0 || per_cluster < 0)
        return lvd_fail(err, "retrieve clusters: need k >= 1 and non-negative counts");
    if (check_clusters(pool_cluster, n_pool, k, "pool row", err) ||
        check_clusters(seed_cluster, n_seeds, k, "seed", err))
        return -1;
    memset(selected, 0, (size_t)n_pool);
    int64_t *seeds_in = index_alloc((size_t)k, sizeof *seeds_in, "cluster counts", err);
    int64_t *pool_in = index_alloc((size_t)k, sizeof *pool_in, "cluster counts", err);
    int64_t *start = index_alloc(2 * (size_t)k + 1, sizeof *start, "cluster offsets", err);
    int rc = -1;
    if (seeds_in && pool_in && start) {
        count_clusters(seed_cluster, n_seeds, seeds_in, k);
        count_clusters(pool_cluster, n_pool, pool_in, k);
        rc = pick_rows(k, pool_cluster, pool_sim, n_pool, seeds_in, pool_in, min_seeds, per_cluster,
                       start, selected, n_selected, err);
    }
    free(seeds_in);
    free(pool_in);
    free(start);
    return rc;
}
