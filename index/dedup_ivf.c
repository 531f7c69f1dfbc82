/* lvd_dedup_ivf of index/index.h. Dedup over an inverted-file partition, list by list with sgemm.
 *
 * Debian's libfaiss is built without SIMD, so IndexIVFFlat scans each vector with a scalar loop
 * (fvec_inner_product_ref). Here every list's members meet all the rows that probe the list in one
 * matrix product, which OpenBLAS runs at full speed; the answer is the one IVF search would give
 * with the same centroids: each row's k most similar rows among those stored in its nprobe
 * nearest lists, kept when above the threshold. */
#include "index/internal.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK        2048   /* rows per sgemm operand: the product is BLOCK^2 floats (16 MiB) */
#define QUERY_CHUNK  131072 /* rows whose top-k heaps are held at once */
#define ASSIGN_BATCH 65536  /* rows per centroid search */
#define KMEANS_ITER  10
#define KMEANS_SEED  1234
/* Per row, k-means costs about 400 nlist^2 / n products, assignment nlist and the scan
 * nprobe * n / nlist: near 2 * sqrt(n) lists the sum is smallest for nprobe around 16. */
#define DEDUP_LISTS_PER_SQRT 2.0

/* Rows of list l are ids[start[l] .. start[l + 1]), ascending. */
typedef struct lists {
    int64_t *start;
    int64_t *ids;
} lists;

/* For each query row of a chunk, a min-heap of its best candidates above the threshold. */
typedef struct heaps {
    int k;
    int *count;
    float *sim;
    int64_t *id;
} heaps;

/* Work buffers of one sgemm block. */
typedef struct block {
    float *q, *m, *s;
} block;

static int make_centroids(const float *x, int64_t n, int d, int64_t nlist, float *centroids,
                          lvd_error *err)
{
    int64_t m = 0;
    float *sample = index_sample_rows(x, n, d, nlist * INDEX_TRAIN_ROWS_PER_LIST, &m, err);
    if (!sample)
        return -1;
    int rc = lvd_kmeans(sample, m, d, (int)nlist, KMEANS_ITER, KMEANS_SEED, centroids, err);
    free(sample);
    return rc;
}

/* probe[i * nprobe + j]: the j-th most similar centroid of row i (j = 0 is its own list). */
static int assign_probes(const float *centroids, int64_t nlist, const float *x, int64_t n, int d,
                         int nprobe, int32_t *probe, lvd_error *err)
{
    lvd_index *ix = NULL;
    if (lvd_index_create(&ix, d, "Flat", err))
        return -1;
    int64_t batch = n < ASSIGN_BATCH ? n : ASSIGN_BATCH;
    float *sims = index_alloc((size_t)batch * nprobe, sizeof *sims, "list assignment", err);
    int64_t *ids = index_alloc((size_t)batch * nprobe, sizeof *ids, "list assignment", err);
    int rc = sims && ids ? lvd_index_add(ix, nlist, centroids, err) : -1;
    for (int64_t first = 0; rc == 0 && first < n; first += batch) {
        int64_t m = n - first < batch ? n - first : batch;
        rc = lvd_index_search(ix, m, x + (size_t)first * d, nprobe, 0, sims, ids, err);
        for (size_t e = 0; rc == 0 && e < (size_t)m * nprobe; e++)
            probe[(size_t)first * nprobe + e] = (int32_t)ids[e];
    }
    free(sims);
    free(ids);
    lvd_index_free(ix);
    return rc;
}

/* Lists from the first `use` probes of every row (1: where rows are stored; nprobe: which rows
 * search each list). A counting sort, so ids stay ascending within a list. */
static int build_lists(const int32_t *probe, int64_t n, int nprobe, int use, int64_t nlist,
                       lists *out, lvd_error *err)
{
    out->start = index_alloc((size_t)nlist + 1, sizeof *out->start, "list offsets", err);
    out->ids = index_alloc((size_t)n * use, sizeof *out->ids, "list entries", err);
    int64_t *fill = index_alloc((size_t)nlist, sizeof *fill, "list offsets", err);
    if (!out->start || !out->ids || !fill) {
        free(fill);
        return -1;
    }
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < use; j++)
            out->start[probe[(size_t)i * nprobe + j] + 1]++;
    for (int64_t l = 0; l < nlist; l++)
        out->start[l + 1] += out->start[l];
    memcpy(fill, out->start, (size_t)nlist * sizeof *fill);
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < use; j++)
            out->ids[fill[probe[(size_t)i * nprobe + j]]++] = i;
    free(fill);
    return 0;
}

static void lists_free(lists *l)
{
    free(l->start);
    free(l->ids);
}

/* Offers candidate (sim, id) to heap q: kept when the heap has room or sim beats its minimum. */
static void heap_offer(heaps *h, int64_t q, float sim, int64_t id)
{
    float *s = h->sim + (size_t)q * h->k;
    int64_t *ids = h->id + (size_t)q * h->k;
    int n = h->count[q], i;
    if (n < h->k) {
        for (i = n++; i > 0 && s[(i - 1) / 2] > sim; i = (i - 1) / 2) {
            s[i] = s[(i - 1) / 2];
            ids[i] = ids[(i - 1) / 2];
        }
        h->count[q] = n;
    } else {
        if (!(sim > s[0]))
            return;
        for (i = 0; 2 * i + 1 < n;) {
            int c = 2 * i + 1;
            c += c + 1 < n && s[c + 1] < s[c];
            if (!(s[c] < sim))
                break;
            s[i] = s[c];
            ids[i] = ids[c];
            i = c;
        }
    }
    s[i] = sim;
    ids[i] = id;
}

static void gather(float *dst, const float *x, int d, const int64_t *ids, int64_t count)
{
    for (int64_t i = 0; i < count; i++)
        memcpy(dst + (size_t)i * d, x + (size_t)ids[i] * d, (size_t)d * sizeof *dst);
}

/* Similarities of nq query rows against nm member rows, offered to the query heaps. */
static void scan_block(const block *b, int d, const int64_t *qids, int64_t nq, const int64_t *mids,
                       int64_t nm, int64_t q0, float threshold, heaps *h)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nq, (int)nm, d, 1.0f, b->q, d, b->m,
                d, 0.0f, b->s, (int)nm);
    /* Single-threaded on purpose: OpenBLAS threads run the product, and OpenMP threads spinning
     * between products would fight them for the cores. The scan is cheap next to the product. */
    for (int64_t i = 0; i < nq; i++) {
        const float *row = b->s + (size_t)i * nm;
        for (int64_t j = 0; j < nm; j++)
            if (row[j] > threshold && mids[j] != qids[i])
                heap_offer(h, qids[i] - q0, row[j], mids[j]);
    }
}

/* All members of one list against its probing rows of the current chunk, block by block. */
static void link_list(const float *x, int d, const int64_t *mids, int64_t nm, const int64_t *qids,
                      int64_t nq, int64_t q0, float threshold, block *b, heaps *h)
{
    for (int64_t m0 = 0; m0 < nm; m0 += BLOCK) {
        int64_t mc = nm - m0 < BLOCK ? nm - m0 : BLOCK;
        gather(b->m, x, d, mids + m0, mc);
        for (int64_t i0 = 0; i0 < nq; i0 += BLOCK) {
            int64_t qc = nq - i0 < BLOCK ? nq - i0 : BLOCK;
            gather(b->q, x, d, qids + i0, qc);
            scan_block(b, d, qids + i0, qc, mids + m0, mc, q0, threshold, h);
        }
    }
}

/* One chunk of query rows [q0, q1): every list, then the heaps' edges into c. `cursor` holds,
 * per list, where its probing rows at or after q0 begin (probing ids are ascending). */
static void link_chunk(const float *x, int d, const lists *stored, const lists *probing,
                       int64_t nlist, int64_t *cursor, int64_t q0, int64_t q1,
                       const lvd_dedup_options *opt, block *b, heaps *h, lvd_components *c)
{
    memset(h->count, 0, (size_t)(q1 - q0) * sizeof *h->count);
    for (int64_t l = 0; l < nlist; l++) {
        int64_t from = cursor[l], to = from;
        while (to < probing->start[l + 1] && probing->ids[to] < q1)
            to++;
        cursor[l] = to;
        int64_t nm = stored->start[l + 1] - stored->start[l];
        if (to > from && nm > 0)
            link_list(x, d, stored->ids + stored->start[l], nm, probing->ids + from, to - from, q0,
                      opt->threshold, b, h);
    }
    for (int64_t q = q0; q < q1; q++)
        for (int j = 0; j < h->count[q - q0]; j++)
            lvd_components_union(c, q, h->id[(size_t)(q - q0) * h->k + j]);
}

/* The list-by-list pass once lists exist; allocates the heaps and block buffers. */
static int link_all(const float *x, int64_t n, int d, const lists *stored, const lists *probing,
                    int64_t nlist, const lvd_dedup_options *opt, lvd_components *c, lvd_error *err)
{
    int64_t chunk = n < QUERY_CHUNK ? n : QUERY_CHUNK;
    heaps h = {.k = opt->k};
    block b;
    h.count = index_alloc((size_t)chunk, sizeof *h.count, "dedup heaps", err);
    h.sim = index_alloc((size_t)chunk * opt->k, sizeof *h.sim, "dedup heaps", err);
    h.id = index_alloc((size_t)chunk * opt->k, sizeof *h.id, "dedup heaps", err);
    b.q = index_alloc((size_t)BLOCK * d, sizeof *b.q, "dedup blocks", err);
    b.m = index_alloc((size_t)BLOCK * d, sizeof *b.m, "dedup blocks", err);
    b.s = index_alloc((size_t)BLOCK * BLOCK, sizeof *b.s, "dedup blocks", err);
    int64_t *cursor = index_alloc((size_t)nlist, sizeof *cursor, "list cursors", err);
    int rc = h.count && h.sim && h.id && b.q && b.m && b.s && cursor ? 0 : -1;
    if (rc == 0) {
        memcpy(cursor, probing->start, (size_t)nlist * sizeof *cursor);
        for (int64_t q0 = 0; q0 < n; q0 += chunk)
            link_chunk(x, d, stored, probing, nlist, cursor, q0, q0 + chunk < n ? q0 + chunk : n,
                       opt, &b, &h, c);
    }
    free(h.count);
    free(h.sim);
    free(h.id);
    free(b.q);
    free(b.m);
    free(b.s);
    free(cursor);
    return rc;
}

int lvd_dedup_ivf(const float *x, int64_t n, int d, const lvd_dedup_options *opt, int64_t *root,
                  lvd_error *err)
{
    if (n < 1 || d < 1 || opt->k < 1)
        return lvd_fail(err, "dedup ivf: need n, d, k >= 1 (n %lld, d %d, k %d)", (long long)n, d,
                        opt->k);
    if (index_check_rows(x, n, d, "dedup", err))
        return -1;
    int64_t nlist = opt->nlist > 0 ? opt->nlist : index_choose_nlist(n, DEDUP_LISTS_PER_SQRT);
    if (nlist > n || nlist > INT32_MAX)
        return lvd_fail(err, "dedup ivf: %lld lists for %lld rows", (long long)nlist, (long long)n);
    size_t wanted = opt->nprobe < 1 ? 1 : opt->nprobe;
    int nprobe = (int)(wanted < (size_t)nlist ? wanted : (size_t)nlist);
    float *centroids = index_alloc((size_t)nlist * d, sizeof *centroids, "centroids", err);
    int32_t *probe = index_alloc((size_t)n * nprobe, sizeof *probe, "list assignment", err);
    lists stored = {0}, probing = {0};
    lvd_components c = {0};
    int rc = centroids && probe ? 0 : -1;
    if (rc == 0)
        rc = make_centroids(x, n, d, nlist, centroids, err);
    if (rc == 0)
        rc = assign_probes(centroids, nlist, x, n, d, nprobe, probe, err);
    free(centroids);
    if (rc == 0)
        rc = build_lists(probe, n, nprobe, 1, nlist, &stored, err);
    if (rc == 0)
        rc = build_lists(probe, n, nprobe, nprobe, nlist, &probing, err);
    free(probe);
    if (rc == 0)
        rc = lvd_components_grow(&c, n, err);
    if (rc == 0)
        rc = link_all(x, n, d, &stored, &probing, nlist, opt, &c, err);
    if (rc == 0)
        lvd_components_roots(&c, root);
    lists_free(&stored);
    lists_free(&probing);
    lvd_components_free(&c);
    return rc;
}
