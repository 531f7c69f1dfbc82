/* The k-NN classifier of train/eval/eval.h: blocked exact neighbours (sgemm + one heap per test
 * row), the reference's softmax voting, top-1 / top-5 accuracy. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "train/eval/eval.h"

void lvd_knn_opts_default(lvd_knn_opts *o)
{
    memset(o, 0, sizeof *o);
    static const int ks[] = {10, 20, 100, 200};
    o->n_ks = 4;
    memcpy(o->ks, ks, sizeof ks);
    o->temperature = 0.07f;
    o->query_chunk = 1024;
    o->bank_chunk = 8192;
}

/* (sa, ia) ranks below (sb, ib): lower similarity, or equal with a higher row. */
static inline int worse(float sa, int64_t ia, float sb, int64_t ib)
{
    return sa < sb || (sa == sb && ia > ib);
}

/* A heap of at most K entries with the worst at the root. */
typedef struct heap {
    float *s;
    int64_t *id;
    int n;
} heap;

static void heap_sift_down(heap *h, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = i, n = h->n;
        if (l < n && worse(h->s[l], h->id[l], h->s[w], h->id[w]))
            w = l;
        if (r < n && worse(h->s[r], h->id[r], h->s[w], h->id[w]))
            w = r;
        if (w == i)
            return;
        float ts = h->s[i];
        int64_t ti = h->id[i];
        h->s[i] = h->s[w];
        h->id[i] = h->id[w];
        h->s[w] = ts;
        h->id[w] = ti;
        i = w;
    }
}

static void heap_push(heap *h, int K, float s, int64_t id)
{
    if (h->n < K) {
        int i = h->n++;
        while (i > 0) {
            int p = (i - 1) / 2;
            if (!worse(s, id, h->s[p], h->id[p]))
                break;
            h->s[i] = h->s[p];
            h->id[i] = h->id[p];
            i = p;
        }
        h->s[i] = s;
        h->id[i] = id;
    } else if (worse(h->s[0], h->id[0], s, id)) {
        h->s[0] = s;
        h->id[0] = id;
        heap_sift_down(h, 0);
    }
}

static int check_opts(const lvd_knn_opts *o, lvd_error *err)
{
    if (o->n_ks < 1 || o->n_ks > LVD_KNN_MAX_KS)
        return lvd_fail(err, "k-NN: 1 to %d values of k, not %d", LVD_KNN_MAX_KS, o->n_ks);
    for (int i = 0; i < o->n_ks; i++)
        if (o->ks[i] < 1)
            return lvd_fail(err, "k-NN: k must be at least 1, not %d", o->ks[i]);
    if (!(o->temperature > 0) || !isfinite(o->temperature))
        return lvd_fail(err, "k-NN: the temperature must be positive");
    if (o->query_chunk < 1 || o->bank_chunk < 1)
        return lvd_fail(err, "k-NN: chunk sizes must be at least 1");
    return 0;
}

static int check_unit(const float *x, int64_t n, int dim, const char *what, lvd_error *err)
{
    for (int64_t i = 0; i < n; i++) {
        double s = 0.0;
        for (int j = 0; j < dim; j++)
            s += (double)x[(size_t)i * dim + j] * x[(size_t)i * dim + j];
        if (!(fabs(s - 1.0) <= 1e-3))
            return lvd_fail(err, "k-NN: %s row %lld is not a unit vector (squared norm %g)", what,
                            (long long)i, s);
    }
    return 0;
}

/* A float32 dot product of two vectors of norm at most 1.0005 (rows pass check_unit) errs by at
 * most dim * 2^-24 * 1.001 whatever the summation order (sgemm's blocking varies with the block
 * shape). A row of the true top K is therefore within twice that of the K-th float similarity:
 * every row within this margin is kept as a candidate and re-ranked exactly. */
static double sim_margin(int dim)
{
    return 2.1 * dim / 16777216.0;
}

/* The exact similarity: a double-precision dot product in index order. */
static double dot_exact(const float *a, const float *b, int dim)
{
    double s = 0.0;
    for (int j = 0; j < dim; j++)
        s += (double)a[j] * b[j];
    return s;
}

/* Rows of one test row outside its heap whose float similarity is within the margin of the
 * heap's worst: the candidates the re-ranking also needs. */
typedef struct near_list {
    float *s;
    int64_t *id;
    int n, cap;
} near_list;

/* Drops entries below floor, then makes room for one more; -1 without memory. */
static int near_room(near_list *l, float floor)
{
    if (l->n < l->cap)
        return 0;
    int n = 0;
    for (int i = 0; i < l->n; i++)
        if (l->s[i] >= floor) {
            l->s[n] = l->s[i];
            l->id[n++] = l->id[i];
        }
    l->n = n;
    if (n < l->cap && n <= l->cap / 2)
        return 0;
    int cap = l->cap ? 2 * l->cap : 64;
    float *s = realloc(l->s, (size_t)cap * sizeof *s);
    if (s)
        l->s = s;
    int64_t *id = s ? realloc(l->id, (size_t)cap * sizeof *id) : NULL;
    if (id)
        l->id = id;
    if (!s || !id)
        return n < l->cap ? 0 : -1;
    l->cap = cap;
    return 0;
}

static int near_add(near_list *l, float s, int64_t id, float floor)
{
    if (near_room(l, floor))
        return -1;
    l->s[l->n] = s;
    l->id[l->n++] = id;
    return 0;
}

/* Feeds one block of float similarities (bank rows b0 ..) to a test row's heap and near list. */
static int feed_row(heap *h, near_list *l, int K, const float *row, int64_t nb, int64_t b0,
                    float margin)
{
    for (int64_t j = 0; j < nb; j++) {
        float s = row[j];
        int64_t id = b0 + j;
        if (h->n < K) {
            heap_push(h, K, s, id);
            continue;
        }
        float worst = h->s[0];
        if (worse(worst, h->id[0], s, id)) {
            int64_t out = h->id[0];
            heap_push(h, K, s, id);
            if (worst >= h->s[0] - margin && near_add(l, worst, out, h->s[0] - margin))
                return -1;
        } else if (s >= worst - margin && near_add(l, s, id, worst - margin)) {
            return -1;
        }
    }
    return 0;
}

/* A candidate with its exact similarity. */
typedef struct cand {
    double s;
    int64_t id;
} cand;

static int cmp_cand(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->s != y->s)
        return x->s > y->s ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* Work buffers of one query chunk. */
typedef struct knn_work {
    int64_t qc, bc;
    int K;
    float *block; /* (qc, bc) float similarities */
    float *hs;    /* (qc, K) heaps */
    int64_t *hid;
    near_list *near; /* qc */
    cand **cands;    /* per thread */
    int *cand_cap;
    int threads;
} knn_work;

static void work_free(knn_work *w)
{
    free(w->block);
    free(w->hs);
    free(w->hid);
    for (int64_t i = 0; w->near && i < w->qc; i++) {
        free(w->near[i].s);
        free(w->near[i].id);
    }
    free(w->near);
    for (int t = 0; w->cands && t < w->threads; t++)
        free(w->cands[t]);
    free(w->cands);
    free(w->cand_cap);
    memset(w, 0, sizeof *w);
}

static int work_alloc(knn_work *w, int64_t n_bank, int64_t nq, int K, const lvd_knn_opts *o,
                      lvd_error *err)
{
    memset(w, 0, sizeof *w);
    w->qc = o->query_chunk < nq ? o->query_chunk : nq;
    w->bc = o->bank_chunk < n_bank ? o->bank_chunk : n_bank;
    w->K = K;
    w->threads = omp_get_max_threads();
    w->block = malloc((size_t)w->qc * (size_t)w->bc * sizeof *w->block);
    w->hs = malloc((size_t)w->qc * K * sizeof *w->hs);
    w->hid = malloc((size_t)w->qc * K * sizeof *w->hid);
    w->near = calloc((size_t)w->qc, sizeof *w->near);
    w->cands = calloc((size_t)w->threads, sizeof *w->cands);
    w->cand_cap = calloc((size_t)w->threads, sizeof *w->cand_cap);
    if (!w->block || !w->hs || !w->hid || !w->near || !w->cands || !w->cand_cap) {
        int64_t qc = w->qc, bc = w->bc;
        work_free(w);
        return lvd_fail(err, "k-NN: out of memory for blocks of %lld x %lld rows", (long long)qc,
                        (long long)bc);
    }
    return 0;
}

/* The exact top K of test row q from its heap and near list: every candidate re-scored in
 * double precision, sorted by (sim desc, row asc). */
static int rerank(knn_work *w, heap *h, near_list *l, const float *bank, const float *q, int dim,
                  float margin, double *sims, int64_t *ids)
{
    int t = omp_get_thread_num(), K = w->K;
    float floor = h->s[0] - margin;
    if (w->cand_cap[t] < K + l->n) {
        cand *c = realloc(w->cands[t], (size_t)(K + l->n) * sizeof *c);
        if (!c)
            return -1;
        w->cands[t] = c;
        w->cand_cap[t] = K + l->n;
    }
    cand *c = w->cands[t];
    int n = 0;
    for (int j = 0; j < h->n; j++)
        c[n++] = (cand){0, h->id[j]};
    for (int j = 0; j < l->n; j++)
        if (l->s[j] >= floor)
            c[n++] = (cand){0, l->id[j]};
    for (int j = 0; j < n; j++)
        c[j].s = dot_exact(q, bank + (size_t)c[j].id * dim, dim);
    qsort(c, (size_t)n, sizeof *c, cmp_cand);
    for (int j = 0; j < K; j++) {
        sims[j] = c[j].s;
        ids[j] = c[j].id;
    }
    return 0;
}

/* Neighbours of nq <= w->qc test rows. */
static int neighbours_chunk(knn_work *w, const float *bank, int64_t n_bank, const float *q,
                            int64_t nq, int dim, double *sims, int64_t *ids, lvd_error *err)
{
    int K = w->K, failed = 0;
    float margin = (float)sim_margin(dim);
    for (int64_t i = 0; i < nq; i++)
        w->near[i].n = 0;
    for (int64_t b0 = 0; b0 < n_bank; b0 += w->bc) {
        int64_t nb = n_bank - b0 < w->bc ? n_bank - b0 : w->bc;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nq, (int)nb, dim, 1.0f, q, dim,
                    bank + (size_t)b0 * dim, dim, 0.0f, w->block, (int)nb);
#pragma omp parallel for schedule(static) reduction(| : failed)
        for (int64_t i = 0; i < nq; i++) {
            /* The heap holds the min(b0, K) best rows of the blocks before. */
            heap h = {w->hs + (size_t)i * K, w->hid + (size_t)i * K, b0 < K ? (int)b0 : K};
            failed |= feed_row(&h, &w->near[i], K, w->block + (size_t)i * nb, nb, b0, margin);
        }
    }
#pragma omp parallel for schedule(static) reduction(| : failed)
    for (int64_t i = 0; i < nq; i++) {
        heap h = {w->hs + (size_t)i * K, w->hid + (size_t)i * K, K};
        failed |= rerank(w, &h, &w->near[i], bank, q + (size_t)i * dim, dim, margin,
                         sims + (size_t)i * K, ids + (size_t)i * K) != 0;
    }
    return failed ? lvd_fail(err, "k-NN: out of memory for the candidate neighbours") : 0;
}

int lvd_knn_neighbours(const float *bank, int64_t n_bank, const float *q, int64_t nq, int dim,
                       int K, const lvd_knn_opts *o, double *sims, int64_t *ids, lvd_error *err)
{
    if (check_opts(o, err))
        return -1;
    if (n_bank < 1 || nq < 0 || dim < 1 || K < 1 || K > n_bank || dim > INT32_MAX / 2)
        return lvd_fail(err, "k-NN: bad sizes (bank %lld, queries %lld, dim %d, K %d)",
                        (long long)n_bank, (long long)nq, dim, K);
    if (nq == 0)
        return 0;
    if (check_unit(bank, n_bank, dim, "bank", err) || check_unit(q, nq, dim, "query", err))
        return -1;
    knn_work w;
    if (work_alloc(&w, n_bank, nq, K, o, err))
        return -1;
    int rc = 0;
    for (int64_t q0 = 0; q0 < nq && rc == 0; q0 += w.qc) {
        int64_t n = nq - q0 < w.qc ? nq - q0 : w.qc;
        rc = neighbours_chunk(&w, bank, n_bank, q + (size_t)q0 * dim, n, dim, sims + (size_t)q0 * K,
                              ids + (size_t)q0 * K, err);
    }
    work_free(&w);
    return rc;
}

/* exp(sims[j] / T) up to a factor that cancels in the softmax: sims are descending, so
 * subtracting sims[0] keeps every term in (0, 1]. */
static inline double knn_exp(const double *sims, int j, double temperature)
{
    return exp((sims[j] - sims[0]) / temperature);
}

/* The softmax denominator over the K neighbours. */
static double knn_denominator(const double *sims, int K, double temperature)
{
    double sum = 0.0;
    for (int j = 0; j < K; j++)
        sum += knn_exp(sims, j, temperature);
    return sum;
}

void lvd_knn_vote(const double *sims, const int32_t *labels, int K, int k, double temperature,
                  int n_classes, double *scores)
{
    double sum = knn_denominator(sims, K, temperature);
    memset(scores, 0, (size_t)n_classes * sizeof *scores);
    for (int j = 0; j < k && j < K; j++)
        scores[labels[j]] += knn_exp(sims, j, temperature) / sum;
}

void lvd_knn_top5(const double *scores, int n_classes, int32_t top[5])
{
    int n = 0;
    for (int r = 0; r < 5; r++)
        top[r] = -1;
    for (int c = 0; c < n_classes; c++) {
        /* Strictly better than the 5th: an equal score of a later class loses. */
        if (n == 5 && !(scores[c] > scores[top[4]]))
            continue;
        int r = n < 5 ? n++ : 4;
        while (r > 0 && scores[c] > scores[top[r - 1]]) {
            top[r] = top[r - 1];
            r--;
        }
        top[r] = c;
    }
}

static int check_labels(const int32_t *y, int64_t n, int n_classes, const char *what,
                        lvd_error *err)
{
    for (int64_t i = 0; i < n; i++)
        if (y[i] < 0 || y[i] >= n_classes)
            return lvd_fail(err, "k-NN: %s row %lld has label %d, outside 0 .. %d", what,
                            (long long)i, y[i], n_classes - 1);
    return 0;
}

/* Scores the neighbours of n test rows for every k (sorted ascending in order[]): accumulating
 * the votes neighbour by neighbour gives each k's scores as lvd_knn_vote does. */
static void score_chunk(const double *sims, const int64_t *ids, const int32_t *bank_labels,
                        const int32_t *test_labels, int64_t n, int K, int n_classes,
                        const lvd_knn_opts *o, const int *order, const int *k_used, double *scratch,
                        int64_t *c1, int64_t *c5, int32_t *pred)
{
#pragma omp parallel
    {
        int t = omp_get_thread_num();
        double *scores = scratch + (size_t)t * n_classes;
#pragma omp for schedule(static)
        for (int64_t i = 0; i < n; i++) {
            const double *s = sims + (size_t)i * K;
            const int64_t *id = ids + (size_t)i * K;
            double sum = knn_denominator(s, K, o->temperature);
            memset(scores, 0, (size_t)n_classes * sizeof *scores);
            int j = 0;
            for (int qi = 0; qi < o->n_ks; qi++) {
                int q = order[qi];
                for (; j < k_used[q]; j++)
                    scores[bank_labels[id[j]]] += knn_exp(s, j, o->temperature) / sum;
                int32_t top[5];
                lvd_knn_top5(scores, n_classes, top);
                int32_t y = test_labels[i];
                int hit5 = 0;
                for (int r = 0; r < 5; r++)
                    hit5 |= top[r] == y;
                c1[(size_t)i * o->n_ks + q] = top[0] == y;
                c5[(size_t)i * o->n_ks + q] = hit5;
                if (pred)
                    memcpy(pred + ((size_t)i * o->n_ks + q) * 5, top, sizeof top);
            }
        }
    }
}

int lvd_knn_eval(const float *bank, const int32_t *bank_labels, int64_t n_bank, const float *test,
                 const int32_t *test_labels, int64_t n_test, int dim, int n_classes,
                 const lvd_knn_opts *o, lvd_knn_result *res, int32_t *pred, lvd_error *err)
{
    if (check_opts(o, err))
        return -1;
    if (n_bank < 1 || n_test < 1 || dim < 1 || n_classes < 1)
        return lvd_fail(err, "k-NN: bad sizes (bank %lld, test %lld, dim %d, classes %d)",
                        (long long)n_bank, (long long)n_test, dim, n_classes);
    if (check_labels(bank_labels, n_bank, n_classes, "bank", err) ||
        check_labels(test_labels, n_test, n_classes, "test", err) ||
        check_unit(bank, n_bank, dim, "bank", err) || check_unit(test, n_test, dim, "test", err))
        return -1;
    int K = 0, k_used[LVD_KNN_MAX_KS], order[LVD_KNN_MAX_KS];
    for (int q = 0; q < o->n_ks; q++) {
        k_used[q] = o->ks[q] < n_bank ? o->ks[q] : (int)n_bank;
        K = k_used[q] > K ? k_used[q] : K;
        int r = q; /* insertion sort of the k indices by k_used */
        while (r > 0 && k_used[order[r - 1]] > k_used[q]) {
            order[r] = order[r - 1];
            r--;
        }
        order[r] = q;
    }
    int threads = omp_get_max_threads();
    knn_work w;
    if (work_alloc(&w, n_bank, n_test, K, o, err))
        return -1;
    int64_t qc = w.qc;
    double *sims = malloc((size_t)qc * K * sizeof *sims);
    int64_t *ids = malloc((size_t)qc * K * sizeof *ids);
    int64_t *c1 = malloc((size_t)qc * o->n_ks * sizeof *c1);
    int64_t *c5 = malloc((size_t)qc * o->n_ks * sizeof *c5);
    double *scratch = malloc((size_t)threads * n_classes * sizeof *scratch);
    int rc = 0;
    if (!sims || !ids || !c1 || !c5 || !scratch)
        rc = lvd_fail(err, "k-NN: out of memory for %d classes", n_classes);
    for (int q = 0; q < o->n_ks; q++)
        res[q] = (lvd_knn_result){.k = o->ks[q], .k_used = k_used[q], .n = n_test};
    for (int64_t q0 = 0; q0 < n_test && rc == 0; q0 += qc) {
        int64_t n = n_test - q0 < qc ? n_test - q0 : qc;
        if (neighbours_chunk(&w, bank, n_bank, test + (size_t)q0 * dim, n, dim, sims, ids, err)) {
            rc = -1;
            break;
        }
        score_chunk(sims, ids, bank_labels, test_labels + q0, n, K, n_classes, o, order, k_used,
                    scratch, c1, c5, pred ? pred + (size_t)q0 * o->n_ks * 5 : NULL);
        for (int64_t i = 0; i < n; i++)
            for (int q = 0; q < o->n_ks; q++) {
                res[q].correct1 += c1[(size_t)i * o->n_ks + q];
                res[q].correct5 += c5[(size_t)i * o->n_ks + q];
            }
    }
    for (int q = 0; q < o->n_ks; q++) {
        res[q].top1 = 100.0 * (double)res[q].correct1 / (double)n_test;
        res[q].top5 = 100.0 * (double)res[q].correct5 / (double)n_test;
    }
    work_free(&w);
    free(sims);
    free(ids);
    free(c1);
    free(c5);
    free(scratch);
    return rc;
}
