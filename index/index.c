/* The FAISS index wrapper of index/index.h: create, train, add, search. */
#include "index/internal.h"

#include <faiss/c_api/IndexIVF_c.h>
#include <faiss/c_api/IndexPreTransform_c.h>
#include <faiss/c_api/impl/AuxIndexStructures_c.h>
#include <faiss/c_api/index_factory_c.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int lvd_index_create(lvd_index **out, int d, const char *factory, lvd_error *err)
{
    *out = NULL;
    if (d < 1 || !factory || !*factory)
        return lvd_fail(err, "index create: need d >= 1 and a factory string (d = %d)", d);
    lvd_index *index = index_alloc(1, sizeof *index, "the index", err);
    if (!index)
        return -1;
    if (faiss_index_factory(&index->faiss, d, factory, METRIC_INNER_PRODUCT)) {
        free(index);
        index_faiss_fail(err, "index create");
        return lvd_error_prefix(err, "factory string \"%s\"", factory);
    }
    index->d = d;
    *out = index;
    return 0;
}

void lvd_index_free(lvd_index *index)
{
    if (!index)
        return;
    faiss_Index_free(index->faiss);
    free(index);
}

int lvd_index_dim(const lvd_index *index)
{
    return index->d;
}

int64_t lvd_index_count(const lvd_index *index)
{
    return faiss_Index_ntotal(index->faiss);
}

int lvd_index_is_trained(const lvd_index *index)
{
    return faiss_Index_is_trained(index->faiss);
}

void *lvd_index_faiss(lvd_index *index)
{
    return index->faiss;
}

/* The inverted-file index inside f: f itself, or the index behind a pre-transform (OPQ, PCA). */
static FaissIndexIVF *find_ivf(FaissIndex *f)
{
    FaissIndexIVF *ivf = faiss_IndexIVF_cast(f);
    if (ivf)
        return ivf;
    FaissIndexPreTransform *pre = faiss_IndexPreTransform_cast(f);
    return pre ? find_ivf(faiss_IndexPreTransform_index(pre)) : NULL;
}

size_t lvd_index_nlist(const lvd_index *index)
{
    FaissIndexIVF *ivf = find_ivf(index->faiss);
    return ivf ? faiss_IndexIVF_nlist(ivf) : 0;
}

int lvd_index_set_nprobe(lvd_index *index, size_t nprobe, lvd_error *err)
{
    FaissIndexIVF *ivf = find_ivf(index->faiss);
    if (!ivf)
        return lvd_fail(err, "index nprobe: the index has no inverted lists (not IVF)");
    size_t nlist = faiss_IndexIVF_nlist(ivf);
    if (nprobe < 1 || nprobe > nlist)
        return lvd_fail(err, "index nprobe: %zu is outside 1 .. %zu (the number of lists)", nprobe,
                        nlist);
    faiss_IndexIVF_set_nprobe(ivf, nprobe);
    return 0;
}

int lvd_index_train(lvd_index *index, int64_t n, const float *x, lvd_error *err)
{
    if (index_check_rows(x, n, index->d, "training", err))
        return -1;
    if (faiss_Index_train(index->faiss, n, x))
        return index_faiss_fail(err, "index train");
    return 0;
}

int lvd_index_add(lvd_index *index, int64_t n, const float *x, lvd_error *err)
{
    if (!lvd_index_is_trained(index))
        return lvd_fail(err, "index add: the index is not trained (call lvd_index_train first)");
    if (index_check_rows(x, n, index->d, "added", err))
        return -1;
    if (faiss_Index_add(index->faiss, n, x))
        return index_faiss_fail(err, "index add");
    return 0;
}

int lvd_index_search(const lvd_index *index, int64_t nq, const float *q, int k, int64_t batch,
                     float *sims, int64_t *ids, lvd_error *err)
{
    if (k < 1)
        return lvd_fail(err, "index search: k = %d, need k >= 1", k);
    if (index_check_rows(q, nq, index->d, "query", err))
        return -1;
    if (batch <= 0)
        batch = nq;
    for (int64_t start = 0; start < nq; start += batch) {
        int64_t m = nq - start < batch ? nq - start : batch;
        size_t off = (size_t)start * k;
        if (faiss_Index_search(index->faiss, m, q + (size_t)start * index->d, k, sims + off,
                               ids + off))
            return index_faiss_fail(err, "index search");
    }
    /* FAISS leaves a large negative distance in empty slots; make it unambiguous. */
    for (size_t i = 0; i < (size_t)nq * k; i++)
        if (ids[i] < 0)
            sims[i] = -INFINITY;
    return 0;
}

/* Copies FAISS's range result into malloc'd arrays owned by out. */
static int copy_range_result(FaissRangeSearchResult *r, int64_t nq, lvd_range_result *out,
                             lvd_error *err)
{
    size_t *lims;
    idx_t *labels;
    float *dist;
    faiss_RangeSearchResult_lims(r, &lims);
    faiss_RangeSearchResult_labels(r, &labels, &dist);
    size_t total = lims[nq];
    out->nq = nq;
    out->lims = index_alloc((size_t)nq + 1, sizeof *out->lims, "range search limits", err);
    out->ids = index_alloc(total, sizeof *out->ids, "range search ids", err);
    out->sims = index_alloc(total, sizeof *out->sims, "range search similarities", err);
    if (!out->lims || !out->ids || !out->sims) {
        lvd_range_result_free(out);
        return -1;
    }
    memcpy(out->lims, lims, ((size_t)nq + 1) * sizeof *lims);
    memcpy(out->ids, labels, total * sizeof *labels);
    memcpy(out->sims, dist, total * sizeof *dist);
    return 0;
}

int lvd_index_range_search(const lvd_index *index, int64_t nq, const float *q, float min_sim,
                           lvd_range_result *out, lvd_error *err)
{
    memset(out, 0, sizeof *out);
    if (index_check_rows(q, nq, index->d, "query", err))
        return -1;
    FaissRangeSearchResult *r = NULL;
    if (faiss_RangeSearchResult_new(&r, nq))
        return index_faiss_fail(err, "range search");
    int rc = 0;
    if (faiss_Index_range_search(index->faiss, nq, q, min_sim, r))
        rc = index_faiss_fail(err, "range search");
    else
        rc = copy_range_result(r, nq, out, err);
    faiss_RangeSearchResult_free(r);
    return rc;
}

void lvd_range_result_free(lvd_range_result *r)
{
    if (!r)
        return;
    free(r->lims);
    free(r->ids);
    free(r->sims);
    memset(r, 0, sizeof *r);
}
