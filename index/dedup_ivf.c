/* lvd_dedup_ivf and lvd_dedup_ivf_run of index/index.h ("Dedup over an inverted-file partition"):
 * dedup list by list with sgemm, incremental; also the partition helpers of internal.h.
 *
 * Debian's libfaiss is built without SIMD, so IndexIVFFlat scans each vector with a scalar loop
 * (fvec_inner_product_ref). Here every list's members meet all the rows that probe the list in one
 * matrix product, which OpenBLAS runs at full speed; pairs near a cut are re-scored with index_dot
 * so that the answer does not depend on how rows were batched, which is what lets a later run
 * extend an earlier one and still equal a run over everything. */
#include "index/internal.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK        2048   /* rows per sgemm operand: the product is BLOCK^2 floats (16 MiB) */
#define QUERY_CHUNK  131072 /* rows whose top-k heaps are held at once */
#define ASSIGN_BATCH 4096   /* rows per centroid product */
#define KMEANS_ITER  10
#define KMEANS_SEED  1234
/* Per row, k-means costs about 400 nlist^2 / n products, assignment nlist and the scan
 * nprobe * n / nlist: near 2 * sqrt(n) lists the sum is smallest for nprobe around 16. */
#define DEDUP_LISTS_PER_SQRT 2.0

double index_dot(const float *a, const float *b, int d)
{
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    int j = 0;
    for (; j + 4 <= d; j += 4) {
        s0 += (double)a[j] * b[j];
        s1 += (double)a[j + 1] * b[j + 1];
        s2 += (double)a[j + 2] * b[j + 2];
        s3 += (double)a[j + 3] * b[j + 3];
    }
    for (; j < d; j++)
        s0 += (double)a[j] * b[j];
    return (s0 + s1) + (s2 + s3);
}

float index_sgemm_margin(int d)
{
    return (float)(2.0 * d / 16777216.0) + 1e-6f;
}

void index_gather(float *dst, const float *x, int d, const int64_t *ids, int64_t count)
{
    for (int64_t i = 0; i < count; i++)
        memcpy(dst + (size_t)i * d, x + (size_t)ids[i] * d, (size_t)d * sizeof *dst);
}

/* ---- Assignment ---------------------------------------------------------------------------- */

typedef struct candidate {
    double sim;
    int32_t list;
} candidate;

static int cmp_candidate(const void *a, const void *b)
{
    const candidate *x = a, *y = b;
    if (x->sim != y->sim)
        return x->sim > y->sim ? -1 : 1;
    return (x->list > y->list) - (x->list < y->list);
}

/* Inserts v into the min-heap top (the nprobe largest values seen; *count of them so far). */
static void top_offer(float *top, int *count, int cap, float v)
{
    int n = *count, i;
    if (n < cap) {
        for (i = n++; i > 0 && top[(i - 1) / 2] > v; i = (i - 1) / 2)
            top[i] = top[(i - 1) / 2];
        *count = n;
    } else {
        if (!(v > top[0]))
            return;
        for (i = 0; 2 * i + 1 < n;) {
            int c = 2 * i + 1;
            c += c + 1 < n && top[c + 1] < top[c];
            if (!(top[c] < v))
                break;
            top[i] = top[c];
            i = c;
        }
    }
    top[i] = v;
}

/* The nprobe lists of one row from its sgemm similarities s (nlist values): every list within the
 * margin of the nprobe-th value is re-scored exactly, then ranked. */
static void select_probes(const float *s, int64_t nlist, const float *row, const float *centroids,
                          int d, int nprobe, float margin, float *top, candidate *cand,
                          int32_t *probe)
{
    int count = 0;
    for (int64_t l = 0; l < nlist; l++)
        top_offer(top, &count, nprobe, s[l]);
    float cut = top[0] - margin;
    int64_t m = 0;
    for (int64_t l = 0; l < nlist; l++)
        if (s[l] >= cut)
            cand[m++] = (candidate){index_dot(row, centroids + (size_t)l * d, d), (int32_t)l};
    qsort(cand, (size_t)m, sizeof *cand, cmp_candidate);
    for (int j = 0; j < nprobe; j++)
        probe[j] = cand[j].list;
}

int index_ivf_assign(const float *centroids, int64_t nlist, int d, const float *x,
                     const int64_t *rows, int64_t n, int nprobe, int32_t *probe, lvd_error *err)
{
    if (n == 0)
        return 0;
    int64_t batch = n < ASSIGN_BATCH ? n : ASSIGN_BATCH;
    float *q = rows ? index_alloc((size_t)batch * d, sizeof *q, "list assignment", err) : NULL;
    float *s = index_alloc((size_t)batch * nlist, sizeof *s, "list assignment", err);
    float *top = index_alloc((size_t)nprobe, sizeof *top, "list assignment", err);
    candidate *cand = index_alloc((size_t)nlist, sizeof *cand, "list assignment", err);
    int rc = s && top && cand && (q || !rows) ? 0 : -1;
    float margin = index_sgemm_margin(d);
    for (int64_t first = 0; rc == 0 && first < n; first += batch) {
        int64_t m = n - first < batch ? n - first : batch;
        const float *qb = x + (size_t)first * d;
        if (rows) {
            index_gather(q, x, d, rows + first, m);
            qb = q;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)nlist, d, 1.0f, qb, d,
                    centroids, d, 0.0f, s, (int)nlist);
        for (int64_t r = 0; r < m; r++)
            select_probes(s + (size_t)r * nlist, nlist, qb + (size_t)r * d, centroids, d, nprobe,
                          margin, top, cand, probe + (size_t)(first + r) * nprobe);
    }
    free(q);
    free(s);
    free(top);
    free(cand);
    return rc;
}

/* A counting sort, so ids stay ascending within a list. */
int index_ivf_lists(const int32_t *probe, int64_t n, int nprobe, int use, int64_t nlist,
                    const uint8_t *sel, uint8_t want, index_lists *out, lvd_error *err)
{
    int64_t rows = 0;
    for (int64_t i = 0; i < n; i++)
        rows += !sel || sel[i] == want;
    out->start = index_alloc((size_t)nlist + 1, sizeof *out->start, "list offsets", err);
    out->ids = index_alloc((size_t)rows * use, sizeof *out->ids, "list entries", err);
    int64_t *fill = index_alloc((size_t)nlist, sizeof *fill, "list offsets", err);
    if (!out->start || !out->ids || !fill) {
        free(fill);
        index_ivf_lists_free(out);
        return -1;
    }
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < use && (!sel || sel[i] == want); j++)
            out->start[probe[(size_t)i * nprobe + j] + 1]++;
    for (int64_t l = 0; l < nlist; l++)
        out->start[l + 1] += out->start[l];
    memcpy(fill, out->start, (size_t)nlist * sizeof *fill);
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < use && (!sel || sel[i] == want); j++)
            out->ids[fill[probe[(size_t)i * nprobe + j]]++] = i;
    free(fill);
    return 0;
}

void index_ivf_lists_free(index_lists *l)
{
    free(l->start);
    free(l->ids);
    l->start = NULL;
    l->ids = NULL;
}

/* ---- Top-k heaps ----------------------------------------------------------------------------- */

/* For each row of a chunk, a heap of its best candidates above the threshold: the root is the
 * worst, where (sim, key) pairs are ordered by sim, equal sims by lower key being better. */
typedef struct heaps {
    int k;
    const int64_t *key;
    int *count;
    float *sim;
    int64_t *row;
} heaps;

static int worse(const int64_t *key, float sa, int64_t ra, float sb, int64_t rb)
{
    return sa < sb || (sa == sb && key[ra] > key[rb]);
}

static void heap_offer(heaps *h, int64_t q, float sim, int64_t row)
{
    float *s = h->sim + (size_t)q * h->k;
    int64_t *r = h->row + (size_t)q * h->k;
    int n = h->count[q], i;
    if (n < h->k) {
        for (i = n++; i > 0 && worse(h->key, sim, row, s[(i - 1) / 2], r[(i - 1) / 2]);
             i = (i - 1) / 2) {
            s[i] = s[(i - 1) / 2];
            r[i] = r[(i - 1) / 2];
        }
        h->count[q] = n;
    } else {
        if (!worse(h->key, s[0], r[0], sim, row))
            return;
        for (i = 0; 2 * i + 1 < n;) {
            int c = 2 * i + 1;
            if (c + 1 < n && worse(h->key, s[c + 1], r[c + 1], s[c], r[c]))
                c++;
            if (!worse(h->key, s[c], r[c], sim, row))
                break;
            s[i] = s[c];
            r[i] = r[c];
            i = c;
        }
    }
    s[i] = sim;
    r[i] = row;
}

/* ---- The list-by-list scan ------------------------------------------------------------------- */

/* Work buffers of one sgemm block. */
typedef struct block {
    float *q, *m, *s;
} block;

/* Everything the scan of one run reads. New rows search every row stored in their lists; old
 * rows (those that kept their edges from the previous state) only the new rows stored there. */
typedef struct scan {
    const float *x;
    int d;
    int64_t n, nlist;
    float threshold, margin;
    index_lists stored_all, stored_new, probing_new, probing_old;
    int64_t *cur_new, *cur_old; /* per list: where its probing rows of the current chunk begin */
    block b;
    heaps h;
} scan;

/* Similarities of nq query rows against nm member rows, offered to the query heaps. */
static void scan_block(scan *sc, const int64_t *qids, int64_t nq, const int64_t *mids, int64_t nm,
                       int64_t q0)
{
    const block *b = &sc->b;
    int d = sc->d;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nq, (int)nm, d, 1.0f, b->q, d, b->m,
                d, 0.0f, b->s, (int)nm);
    /* Single-threaded on purpose: OpenBLAS threads run the product, and OpenMP threads spinning
     * between products would fight them for the cores. The scan is cheap next to the product. */
    float cut = sc->threshold - sc->margin;
    for (int64_t i = 0; i < nq; i++) {
        const float *srow = b->s + (size_t)i * nm;
        for (int64_t j = 0; j < nm; j++) {
            if (!(srow[j] > cut) || mids[j] == qids[i])
                continue;
            float sim = (float)index_dot(b->q + (size_t)i * d, b->m + (size_t)j * d, d);
            if (sim > sc->threshold)
                heap_offer(&sc->h, qids[i] - q0, sim, mids[j]);
        }
    }
}

/* All members of one list against its probing rows of the current chunk, block by block. */
static void scan_list(scan *sc, const int64_t *mids, int64_t nm, const int64_t *qids, int64_t nq,
                      int64_t q0)
{
    for (int64_t m0 = 0; m0 < nm; m0 += BLOCK) {
        int64_t mc = nm - m0 < BLOCK ? nm - m0 : BLOCK;
        index_gather(sc->b.m, sc->x, sc->d, mids + m0, mc);
        for (int64_t i0 = 0; i0 < nq; i0 += BLOCK) {
            int64_t qc = nq - i0 < BLOCK ? nq - i0 : BLOCK;
            index_gather(sc->b.q, sc->x, sc->d, qids + i0, qc);
            scan_block(sc, qids + i0, qc, mids + m0, mc, q0);
        }
    }
}

/* The probing rows of list l below q1 (advancing the list's cursor) against its members. */
static void scan_probers(scan *sc, const index_lists *probing, int64_t *cursor,
                         const index_lists *stored, int64_t l, int64_t q0, int64_t q1)
{
    int64_t from = cursor[l], to = from;
    while (to < probing->start[l + 1] && probing->ids[to] < q1)
        to++;
    cursor[l] = to;
    int64_t nm = stored->start[l + 1] - stored->start[l];
    if (to > from && nm > 0)
        scan_list(sc, stored->ids + stored->start[l], nm, probing->ids + from, to - from, q0);
}

/* ---- One run --------------------------------------------------------------------------------- */

static int64_t find_key(const int64_t *key, int64_t n, int64_t k)
{
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (key[mid] < k)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && key[lo] == k ? lo : -1;
}

/* A heap entry on its way to the edge list. */
typedef struct pair {
    float sim;
    int64_t key, row;
} pair;

static int cmp_pair(const void *a, const void *b)
{
    const pair *x = a, *y = b;
    if (x->sim != y->sim)
        return x->sim > y->sim ? -1 : 1;
    return (x->key > y->key) - (x->key < y->key);
}

/* Edges collected in row order (the state's edge arrays while they grow). */
typedef struct edges {
    int64_t *start, *key;
    float *sim;
    int64_t n, cap;
} edges;

static int edges_reserve(edges *e, int64_t more, lvd_error *err)
{
    if (e->n + more <= e->cap)
        return 0;
    int64_t cap = e->cap ? e->cap : 1024;
    while (cap < e->n + more)
        cap *= 2;
    int64_t *k = realloc(e->key, (size_t)cap * sizeof *k);
    if (k)
        e->key = k;
    float *s = k ? realloc(e->sim, (size_t)cap * sizeof *s) : NULL;
    if (s)
        e->sim = s;
    if (!k || !s)
        return lvd_fail(err, "dedup: out of memory for %lld edges", (long long)cap);
    e->cap = cap;
    return 0;
}

/* Moves the heaps of rows [q0, q1) into the edge list (best first) and the components. */
static int flush_chunk(scan *sc, const int64_t *key, int64_t q0, int64_t q1, pair *p, edges *e,
                       lvd_components *c, lvd_error *err)
{
    heaps *h = &sc->h;
    for (int64_t q = q0; q < q1; q++) {
        int n = h->count[q - q0];
        if (edges_reserve(e, n, err))
            return -1;
        for (int j = 0; j < n; j++) {
            int64_t r = h->row[(size_t)(q - q0) * h->k + j];
            p[j] = (pair){h->sim[(size_t)(q - q0) * h->k + j], key[r], r};
        }
        qsort(p, (size_t)n, sizeof *p, cmp_pair);
        for (int j = 0; j < n; j++) {
            e->key[e->n] = p[j].key;
            e->sim[e->n++] = p[j].sim;
            lvd_components_union(c, q, p[j].row);
        }
        e->start[q + 1] = e->n;
    }
    return 0;
}

/* Offers the recorded edges of row q (row pi of prev) to its heap. */
static int seed_heap(scan *sc, const lvd_dedup_state *prev, int64_t pi, const int64_t *key,
                     int64_t q, int64_t q0, lvd_error *err)
{
    for (int64_t e = prev->edge_start[pi]; e < prev->edge_start[pi + 1]; e++) {
        int64_t r = find_key(key, sc->n, prev->edge_key[e]);
        if (r < 0)
            return lvd_fail(err, "dedup state: an edge of key %lld names key %lld, not a row",
                            (long long)prev->key[pi], (long long)prev->edge_key[e]);
        heap_offer(&sc->h, q - q0, prev->edge_sim[e], r);
    }
    return 0;
}

static int scan_alloc(scan *sc, int k, int64_t chunk, lvd_error *err)
{
    sc->h.k = k;
    sc->h.count = index_alloc((size_t)chunk, sizeof *sc->h.count, "dedup heaps", err);
    sc->h.sim = index_alloc((size_t)chunk * k, sizeof *sc->h.sim, "dedup heaps", err);
    sc->h.row = index_alloc((size_t)chunk * k, sizeof *sc->h.row, "dedup heaps", err);
    sc->b.q = index_alloc((size_t)BLOCK * sc->d, sizeof *sc->b.q, "dedup blocks", err);
    sc->b.m = index_alloc((size_t)BLOCK * sc->d, sizeof *sc->b.m, "dedup blocks", err);
    sc->b.s = index_alloc((size_t)BLOCK * BLOCK, sizeof *sc->b.s, "dedup blocks", err);
    sc->cur_new = index_alloc((size_t)sc->nlist, sizeof *sc->cur_new, "list cursors", err);
    sc->cur_old = index_alloc((size_t)sc->nlist, sizeof *sc->cur_old, "list cursors", err);
    return sc->h.count && sc->h.sim && sc->h.row && sc->b.q && sc->b.m && sc->b.s && sc->cur_new &&
                   sc->cur_old
               ? 0
               : -1;
}

static void scan_free(scan *sc)
{
    free(sc->h.count);
    free(sc->h.sim);
    free(sc->h.row);
    free(sc->b.q);
    free(sc->b.m);
    free(sc->b.s);
    free(sc->cur_new);
    free(sc->cur_old);
    index_ivf_lists_free(&sc->stored_all);
    index_ivf_lists_free(&sc->stored_new);
    index_ivf_lists_free(&sc->probing_new);
    index_ivf_lists_free(&sc->probing_old);
}

/* The chunked scan of every row: old rows (prev_row[i] >= 0 when incremental) start from their
 * recorded edges and meet only new members. */
static int link_all(scan *sc, const int64_t *key, const lvd_dedup_state *prev,
                    const int64_t *prev_row, edges *e, lvd_components *c, lvd_error *err)
{
    int64_t chunk = sc->n < QUERY_CHUNK ? sc->n : QUERY_CHUNK;
    pair *p = index_alloc((size_t)sc->h.k, sizeof *p, "dedup edges", err);
    if (!p)
        return -1;
    int rc = 0;
    memcpy(sc->cur_new, sc->probing_new.start, (size_t)sc->nlist * sizeof *sc->cur_new);
    if (prev_row)
        memcpy(sc->cur_old, sc->probing_old.start, (size_t)sc->nlist * sizeof *sc->cur_old);
    for (int64_t q0 = 0; rc == 0 && q0 < sc->n; q0 += chunk) {
        int64_t q1 = q0 + chunk < sc->n ? q0 + chunk : sc->n;
        memset(sc->h.count, 0, (size_t)(q1 - q0) * sizeof *sc->h.count);
        for (int64_t q = q0; prev_row && rc == 0 && q < q1; q++)
            if (prev_row[q] >= 0)
                rc = seed_heap(sc, prev, prev_row[q], key, q, q0, err);
        for (int64_t l = 0; rc == 0 && l < sc->nlist; l++) {
            scan_probers(sc, &sc->probing_new, sc->cur_new, &sc->stored_all, l, q0, q1);
            if (prev_row)
                scan_probers(sc, &sc->probing_old, sc->cur_old, &sc->stored_new, l, q0, q1);
        }
        if (rc == 0)
            rc = flush_chunk(sc, key, q0, q1, p, e, c, err);
    }
    free(p);
    return rc;
}

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

/* A 64-bit hash of a row's float bytes (FNV-1a over 32-bit words, then a splitmix finish). */
static uint64_t row_hash(const float *row, int d)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (int j = 0; j < d; j++) {
        uint32_t w;
        memcpy(&w, row + j, sizeof w);
        h = (h ^ w) * 0x100000001b3ull;
    }
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
    return h ^ (h >> 31);
}

/* Keeps prev's centroids (1) or says why not (0). */
static int keep_partition(const lvd_dedup_state *prev, int64_t n, int d,
                          const lvd_dedup_options *opt, lvd_dedup_run_info *info)
{
    if (!prev || prev->n == 0)
        snprintf(info->why, sizeof info->why, "no previous state");
    else if (prev->d != d || (opt->nlist > 0 && opt->nlist != prev->nlist))
        snprintf(info->why, sizeof info->why, "the partition differs (dimension or nlist)");
    else if (n > LVD_DEDUP_REFIT_GROWTH * prev->trained_rows)
        snprintf(info->why, sizeof info->why,
                 "%lld rows are more than %d x the %lld the partition was fitted on", (long long)n,
                 LVD_DEDUP_REFIT_GROWTH, (long long)prev->trained_rows);
    else
        return 1;
    return 0;
}

/* prev_row[i]: the row of prev with key[i] and the same hash, else -1; returns how many rows of
 * prev found themselves (a merge of the two ascending key lists). */
static int64_t match_rows(const lvd_dedup_state *prev, const int64_t *key, const uint64_t *hash,
                          int64_t n, int64_t *prev_row)
{
    int64_t matched = 0, pi = 0;
    for (int64_t i = 0; i < n; i++) {
        while (pi < prev->n && prev->key[pi] < key[i])
            pi++;
        prev_row[i] =
            pi < prev->n && prev->key[pi] == key[i] && prev->hash[pi] == hash[i] ? pi : -1;
        matched += prev_row[i] >= 0;
    }
    return matched;
}

static int check_input(const float *x, const int64_t *key, int64_t n, int d,
                       const lvd_dedup_options *opt, lvd_error *err)
{
    if (n < 1 || d < 1 || opt->k < 1)
        return lvd_fail(err, "dedup ivf: need n, d, k >= 1 (n %lld, d %d, k %d)", (long long)n, d,
                        opt->k);
    for (int64_t i = 1; i < n; i++)
        if (key[i] <= key[i - 1])
            return lvd_fail(err,
                            "dedup ivf: keys must be strictly ascending (row %lld: %lld after "
                            "%lld)",
                            (long long)i, (long long)key[i], (long long)key[i - 1]);
    return index_check_rows(x, n, d, "dedup", err);
}

/* The partition of out: prev's centroids or new ones (nlist chosen or given). */
static int partition(const float *x, int64_t n, int d, const lvd_dedup_options *opt,
                     const lvd_dedup_state *prev, int keep, lvd_dedup_state *out,
                     lvd_dedup_run_info *info, lvd_error *err)
{
    out->nlist = keep             ? prev->nlist
                 : opt->nlist > 0 ? opt->nlist
                                  : index_choose_nlist(n, DEDUP_LISTS_PER_SQRT);
    if (out->nlist > n || out->nlist > INT32_MAX)
        return lvd_fail(err, "dedup ivf: %lld lists for %lld rows", (long long)out->nlist,
                        (long long)n);
    out->centroids = index_alloc((size_t)out->nlist * d, sizeof *out->centroids, "centroids", err);
    if (!out->centroids)
        return -1;
    info->retrained = !keep;
    if (keep) {
        memcpy(out->centroids, prev->centroids, (size_t)out->nlist * d * sizeof *out->centroids);
        out->trained_rows = prev->trained_rows;
        return 0;
    }
    out->trained_rows = n;
    return make_centroids(x, n, d, out->nlist, out->centroids, err);
}

/* Every row's lists: copied from prev where the row and the partition are the same, else
 * assigned. */
static int probes(const float *x, int64_t n, int d, const lvd_dedup_state *prev, int keep,
                  const int64_t *prev_row, lvd_dedup_state *out, lvd_error *err)
{
    int np = out->nprobe;
    int copy = keep && prev->nprobe == np;
    int64_t *need = index_alloc((size_t)n, sizeof *need, "list assignment", err);
    out->probe = index_alloc((size_t)n * np, sizeof *out->probe, "list assignment", err);
    if (!need || !out->probe) {
        free(need);
        return -1;
    }
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        if (copy && prev_row[i] >= 0)
            memcpy(out->probe + (size_t)i * np, prev->probe + (size_t)prev_row[i] * np,
                   (size_t)np * sizeof *out->probe);
        else
            need[m++] = i;
    }
    int32_t *fresh = index_alloc((size_t)m * np, sizeof *fresh, "list assignment", err);
    int rc =
        fresh ? index_ivf_assign(out->centroids, out->nlist, d, x, need, m, np, fresh, err) : -1;
    for (int64_t r = 0; rc == 0 && r < m; r++)
        memcpy(out->probe + (size_t)need[r] * np, fresh + (size_t)r * np,
               (size_t)np * sizeof *fresh);
    free(fresh);
    free(need);
    return rc;
}

/* Lists of the scan: new rows probe everything stored; old rows probe only new members. */
static int scan_lists(scan *sc, const lvd_dedup_state *out, const uint8_t *is_new, int incremental,
                      lvd_error *err)
{
    int np = out->nprobe;
    if (index_ivf_lists(out->probe, sc->n, np, 1, sc->nlist, NULL, 0, &sc->stored_all, err) ||
        index_ivf_lists(out->probe, sc->n, np, np, sc->nlist, incremental ? is_new : NULL, 1,
                        &sc->probing_new, err))
        return -1;
    if (!incremental)
        return 0;
    return index_ivf_lists(out->probe, sc->n, np, 1, sc->nlist, is_new, 1, &sc->stored_new, err) ||
                   index_ivf_lists(out->probe, sc->n, np, np, sc->nlist, is_new, 0,
                                   &sc->probing_old, err)
               ? -1
               : 0;
}

/* Decides whether the run extends prev: fills prev_row (or frees it) and info. */
static int64_t *plan(const lvd_dedup_state *prev, int keep, int full, const lvd_dedup_state *out,
                     const uint64_t *hash, lvd_dedup_run_info *info, int *incremental,
                     lvd_error *err)
{
    *incremental = 0;
    if (!keep)
        return NULL;
    int64_t *prev_row = index_alloc((size_t)out->n, sizeof *prev_row, "dedup rows", err);
    if (!prev_row)
        return NULL;
    int64_t matched = match_rows(prev, out->key, hash, out->n, prev_row);
    if (full)
        snprintf(info->why, sizeof info->why, "a full run was asked for");
    else if (prev->k != out->k || prev->threshold != out->threshold || prev->nprobe != out->nprobe)
        snprintf(info->why, sizeof info->why, "k, threshold or nprobe changed");
    else if (matched < prev->n)
        snprintf(info->why, sizeof info->why, "%lld earlier rows are gone or changed",
                 (long long)(prev->n - matched));
    else
        *incremental = 1;
    return prev_row;
}

int lvd_dedup_ivf_run(const float *x, const int64_t *key, int64_t n, int d,
                      const lvd_dedup_options *opt, const lvd_dedup_state *prev, int full,
                      lvd_dedup_state *out, int64_t *root, lvd_dedup_run_info *info, lvd_error *err)
{
    lvd_dedup_run_info local;
    if (!info)
        info = &local;
    memset(info, 0, sizeof *info);
    memset(out, 0, sizeof *out);
    if (check_input(x, key, n, d, opt, err))
        return -1;
    *out = (lvd_dedup_state){.d = d, .k = opt->k, .threshold = opt->threshold, .n = n};
    out->key = index_alloc((size_t)n, sizeof *out->key, "dedup keys", err);
    out->hash = index_alloc((size_t)n, sizeof *out->hash, "dedup keys", err);
    edges e = {.start = index_alloc((size_t)n + 1, sizeof *e.start, "dedup edges", err)};
    uint8_t *is_new = index_alloc((size_t)n, 1, "dedup rows", err);
    int64_t *prev_row = NULL;
    scan sc = {
        .x = x, .d = d, .n = n, .threshold = opt->threshold, .margin = index_sgemm_margin(d)};
    lvd_components c = {0};
    int keep = keep_partition(prev, n, d, opt, info), incremental = 0;
    int rc = out->key && out->hash && e.start && is_new ? 0 : -1;
    if (rc == 0) {
        memcpy(out->key, key, (size_t)n * sizeof *key);
        for (int64_t i = 0; i < n; i++)
            out->hash[i] = row_hash(x + (size_t)i * d, d);
        rc = partition(x, n, d, opt, prev, keep, out, info, err);
    }
    if (rc == 0) {
        size_t want = opt->nprobe < 1 ? 1 : opt->nprobe;
        out->nprobe = (int)(want < (size_t)out->nlist ? want : (size_t)out->nlist);
        sc.nlist = out->nlist;
        prev_row = plan(prev, keep, full, out, out->hash, info, &incremental, err);
        if (keep && !prev_row)
            rc = -1;
    }
    for (int64_t i = 0; rc == 0 && i < n; i++) {
        is_new[i] = !incremental || prev_row[i] < 0;
        info->new_rows += is_new[i];
    }
    info->incremental = incremental;
    if (rc == 0)
        rc = probes(x, n, d, prev, keep, prev_row, out, err);
    if (rc == 0)
        rc = scan_lists(&sc, out, is_new, incremental, err);
    if (rc == 0)
        rc = scan_alloc(&sc, opt->k, n < QUERY_CHUNK ? n : QUERY_CHUNK, err);
    sc.h.key = key;
    if (rc == 0)
        rc = lvd_components_grow(&c, n, err);
    if (rc == 0)
        rc = link_all(&sc, key, prev, incremental ? prev_row : NULL, &e, &c, err);
    if (rc == 0) {
        lvd_components_roots(&c, root);
        out->edge_start = e.start;
        out->edge_key = e.key;
        out->edge_sim = e.sim;
        e = (edges){0};
    }
    scan_free(&sc);
    lvd_components_free(&c);
    free(is_new);
    free(prev_row);
    free(e.start);
    free(e.key);
    free(e.sim);
    if (rc)
        lvd_dedup_state_free(out);
    return rc;
}

int lvd_dedup_ivf(const float *x, int64_t n, int d, const lvd_dedup_options *opt, int64_t *root,
                  lvd_error *err)
{
    int64_t *key = index_alloc((size_t)(n > 0 ? n : 1), sizeof *key, "dedup keys", err);
    if (!key)
        return -1;
    for (int64_t i = 0; i < n; i++)
        key[i] = i;
    lvd_dedup_state s;
    int rc = lvd_dedup_ivf_run(x, key, n, d, opt, NULL, 0, &s, root, NULL, err);
    lvd_dedup_state_free(&s);
    free(key);
    return rc;
}
