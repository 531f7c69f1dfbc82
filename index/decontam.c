/* lvd_decontaminate and lvd_decontaminate_ivf of index/index.h: components near an eval image,
 * through a FAISS range search, or over the partition of a dedup state list by list with sgemm. */
#include "index/internal.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Eval rows per range search: bounds the result buffers FAISS allocates. */
#define DECONTAM_BATCH 1024
/* Rows per sgemm operand of the partition scan. */
#define DECONTAM_BLOCK 2048

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

/* Buffers and inputs of the partition scan. */
typedef struct eval_scan {
    const float *x, *eval;
    const int64_t *root;
    int d;
    float threshold, cut;
    float *q, *m, *s;
    uint8_t *removed;
    float *best;
} eval_scan;

/* The eval rows qids against the pool members mids of one list (both at most a block). */
static void eval_block(eval_scan *e, const int64_t *qids, int64_t nq, const int64_t *mids,
                       int64_t nm)
{
    int d = e->d;
    index_gather(e->q, e->eval, d, qids, nq);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nq, (int)nm, d, 1.0f, e->q, d, e->m,
                d, 0.0f, e->s, (int)nm);
    for (int64_t i = 0; i < nq; i++)
        for (int64_t j = 0; j < nm; j++) {
            if (!(e->s[(size_t)i * nm + j] > e->cut))
                continue;
            float sim = (float)index_dot(e->q + (size_t)i * d, e->m + (size_t)j * d, d);
            if (!(sim > e->threshold))
                continue;
            e->removed[e->root[mids[j]]] = 1;
            if (e->best && sim > e->best[mids[j]])
                e->best[mids[j]] = sim;
        }
}

/* For every list, the eval rows of eval_rows against the pool rows of pool_rows. */
static void eval_lists(eval_scan *e, const index_lists *pool_rows, const index_lists *eval_rows,
                       int64_t nlist)
{
    for (int64_t l = 0; l < nlist; l++) {
        const int64_t *mids = pool_rows->ids + pool_rows->start[l];
        const int64_t *qids = eval_rows->ids + eval_rows->start[l];
        int64_t nm = pool_rows->start[l + 1] - pool_rows->start[l];
        int64_t nq = eval_rows->start[l + 1] - eval_rows->start[l];
        for (int64_t m0 = 0; nq > 0 && m0 < nm; m0 += DECONTAM_BLOCK) {
            int64_t mc = nm - m0 < DECONTAM_BLOCK ? nm - m0 : DECONTAM_BLOCK;
            index_gather(e->m, e->x, e->d, mids + m0, mc);
            for (int64_t q0 = 0; q0 < nq; q0 += DECONTAM_BLOCK)
                eval_block(e, qids + q0, nq - q0 < DECONTAM_BLOCK ? nq - q0 : DECONTAM_BLOCK,
                           mids + m0, mc);
        }
    }
}

int lvd_decontaminate_ivf(const lvd_dedup_state *s, const float *x, const int64_t *root,
                          const float *eval, int64_t n_eval, float threshold, uint8_t *removed,
                          float *best, int64_t *n_removed, lvd_error *err)
{
    int64_t n = s->n;
    *n_removed = 0;
    if (n_eval < 0 || n < 1 || !s->probe)
        return lvd_fail(err, "decontaminate: bad eval count %lld or empty dedup state",
                        (long long)n_eval);
    if (check_roots(root, n, err))
        return -1;
    memset(removed, 0, (size_t)n);
    for (int64_t i = 0; best && i < n; i++)
        best[i] = -INFINITY;
    if (n_eval == 0)
        return 0;
    if (index_check_rows(eval, n_eval, s->d, "eval", err))
        return -1;
    eval_scan e = {.x = x,
                   .eval = eval,
                   .root = root,
                   .d = s->d,
                   .threshold = threshold,
                   .cut = threshold - index_sgemm_margin(s->d),
                   .removed = removed,
                   .best = best};
    index_lists stored = {0}, probing = {0}, eval_stored = {0}, pool_probing = {0};
    int32_t *probe = index_alloc((size_t)n_eval * s->nprobe, sizeof *probe, "eval lists", err);
    e.q = index_alloc((size_t)DECONTAM_BLOCK * s->d, sizeof *e.q, "decontamination blocks", err);
    e.m = index_alloc((size_t)DECONTAM_BLOCK * s->d, sizeof *e.m, "decontamination blocks", err);
    e.s = index_alloc((size_t)DECONTAM_BLOCK * DECONTAM_BLOCK, sizeof *e.s,
                      "decontamination blocks", err);
    int rc = probe && e.q && e.m && e.s ? 0 : -1;
    if (rc == 0)
        rc = index_ivf_assign(s->centroids, s->nlist, s->d, eval, NULL, n_eval, s->nprobe, probe,
                              err);
    if (rc == 0)
        rc = index_ivf_lists(s->probe, n, s->nprobe, 1, s->nlist, NULL, 0, &stored, err);
    if (rc == 0)
        rc = index_ivf_lists(probe, n_eval, s->nprobe, s->nprobe, s->nlist, NULL, 0, &probing, err);
    if (rc == 0)
        rc = index_ivf_lists(probe, n_eval, s->nprobe, 1, s->nlist, NULL, 0, &eval_stored, err);
    if (rc == 0)
        rc = index_ivf_lists(s->probe, n, s->nprobe, s->nprobe, s->nlist, NULL, 0, &pool_probing,
                             err);
    if (rc == 0) {
        /* Both directions, as in the dedup: eval rows meet the pool rows stored in the lists
         * they search, and the pool rows that search the list an eval row is nearest to. */
        eval_lists(&e, &stored, &probing, s->nlist);
        eval_lists(&e, &pool_probing, &eval_stored, s->nlist);
        for (int64_t i = 0; i < n; i++) {
            removed[i] = removed[root[i]];
            *n_removed += removed[i];
        }
    }
    index_ivf_lists_free(&stored);
    index_ivf_lists_free(&probing);
    index_ivf_lists_free(&eval_stored);
    index_ivf_lists_free(&pool_probing);
    free(probe);
    free(e.q);
    free(e.m);
    free(e.s);
    return rc;
}
