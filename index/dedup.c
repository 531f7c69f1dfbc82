/* The dedup links of index/index.h: neighbours above the threshold joined into components. */
#include "index/internal.h"

#include <stdlib.h>

void lvd_dedup_options_default(lvd_dedup_options *opt)
{
    opt->k = 64;
    opt->threshold = 0.6f;
    opt->nprobe = 16;
    opt->batch = 16384;
    opt->nlist = 0;
}

/* Unions query row qid with each of its k neighbours above the threshold. */
static void link_row(lvd_components *c, int64_t qid, const float *sims, const int64_t *ids, int k,
                     float threshold)
{
    for (int j = 0; j < k; j++)
        if (ids[j] >= 0 && ids[j] != qid && sims[j] > threshold)
            lvd_components_union(c, qid, ids[j]);
}

int lvd_dedup_link(const lvd_index *index, const float *x, int64_t first, int64_t count,
                   const lvd_dedup_options *opt, lvd_components *c, lvd_error *err)
{
    int64_t total = lvd_index_count(index);
    if (opt->k < 1 || opt->batch < 1)
        return lvd_fail(err, "dedup: need k >= 1 and batch >= 1 (k %d, batch %lld)", opt->k,
                        (long long)opt->batch);
    if (first < 0 || count < 0 || first + count > total)
        return lvd_fail(err, "dedup: rows %lld .. %lld are not all in the index (%lld rows)",
                        (long long)first, (long long)(first + count), (long long)total);
    if (lvd_components_grow(c, total, err))
        return -1;
    int64_t batch = count < opt->batch ? count : opt->batch;
    float *sims = index_alloc((size_t)batch * opt->k, sizeof *sims, "dedup neighbours", err);
    int64_t *ids = index_alloc((size_t)batch * opt->k, sizeof *ids, "dedup neighbours", err);
    int rc = sims && ids ? 0 : -1;
    for (int64_t start = 0; rc == 0 && start < count; start += batch) {
        int64_t m = count - start < batch ? count - start : batch;
        const float *q = x + (size_t)start * lvd_index_dim(index);
        rc = lvd_index_search(index, m, q, opt->k, 0, sims, ids, err);
        for (int64_t i = 0; rc == 0 && i < m; i++)
            link_row(c, first + start + i, sims + (size_t)i * opt->k, ids + (size_t)i * opt->k,
                     opt->k, opt->threshold);
    }
    free(sims);
    free(ids);
    return rc;
}

/* Builds, trains and fills the index for the whole-matrix dedup. */
static int build_index(lvd_index **out, const float *x, int64_t n, int d, const char *factory,
                       size_t memory_budget, const lvd_dedup_options *opt, lvd_error *err)
{
    char chosen[64];
    if (!factory) {
        if (lvd_index_choose(n, d, memory_budget, chosen, sizeof chosen, err))
            return -1;
        factory = chosen;
    }
    if (lvd_index_create(out, d, factory, err))
        return -1;
    size_t nlist = lvd_index_nlist(*out);
    size_t nprobe = opt->nprobe < nlist ? opt->nprobe : nlist;
    if (lvd_index_train_sample(*out, x, n, err) || lvd_index_add(*out, n, x, err) ||
        (nlist && lvd_index_set_nprobe(*out, nprobe, err))) {
        lvd_index_free(*out);
        *out = NULL;
        return -1;
    }
    return 0;
}

int lvd_dedup(const float *x, int64_t n, int d, const char *factory, size_t memory_budget,
              const lvd_dedup_options *opt, int64_t *root, lvd_error *err)
{
    lvd_index *index = NULL;
    if (build_index(&index, x, n, d, factory, memory_budget, opt, err))
        return -1;
    lvd_components c = {0};
    int rc = lvd_dedup_link(index, x, 0, n, opt, &c, err);
    if (rc == 0)
        lvd_components_roots(&c, root);
    lvd_components_free(&c);
    lvd_index_free(index);
    return rc;
}
