/* lvd_decontaminate of index/index.h: components near an eval image. */
#include "index/internal.h"

#include <string.h>

/* Eval rows per range search: bounds the result buffers FAISS allocates. */
#define DECONTAM_BATCH 1024

/* A root array is valid when every entry names an in-range root that is its own root. */
static int check_roots(const int64_t *root, int64_t n, lvd_error *err)
{
    for (int64_t i = 0; i < n; i++)
        if (root[i] < 0 || root[i] >= n || root[root[i]] != root[i])
            return lvd_fail(err, "decontaminate: root[%lld] = %lld is not a component root",
                            (long long)i, (long long)root[i]);
    return 0;
}

/* Marks the root of every pool row that one batch of eval rows hits. */
static int mark_hits(const lvd_index *pool, const int64_t *root, const float *eval, int64_t m,
                     float threshold, uint8_t *removed, lvd_error *err)
{
    lvd_range_result r;
    if (lvd_index_range_search(pool, m, eval, threshold, &r, err))
        return -1;
    for (size_t h = 0; h < r.lims[m]; h++)
        if (r.ids[h] >= 0)
            removed[root[r.ids[h]]] = 1;
    lvd_range_result_free(&r);
    return 0;
}

int lvd_decontaminate(const lvd_index *pool, const int64_t *root, const float *eval, int64_t n_eval,
                      float threshold, uint8_t *removed, int64_t *n_removed, lvd_error *err)
{
    int64_t n = lvd_index_count(pool);
    *n_removed = 0;
    if (n_eval < 0 || n < 0)
        return lvd_fail(err, "decontaminate: bad eval count %lld", (long long)n_eval);
    if (check_roots(root, n, err))
        return -1;
    memset(removed, 0, (size_t)n);
    size_t d = (size_t)lvd_index_dim(pool);
    for (int64_t start = 0; start < n_eval; start += DECONTAM_BATCH) {
        int64_t m = n_eval - start < DECONTAM_BATCH ? n_eval - start : DECONTAM_BATCH;
        if (mark_hits(pool, root, eval + (size_t)start * d, m, threshold, removed, err))
            return -1;
    }
    /* Roots come first in id order (root[i] <= i), so one ascending pass spreads the marks. */
    for (int64_t i = 0; i < n; i++) {
        removed[i] = removed[root[i]];
        *n_removed += removed[i];
    }
    return 0;
}
