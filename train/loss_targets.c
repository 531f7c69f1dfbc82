/* Teacher targets (train/loss.h): the softmax-centering center (lvd_center_*) and Sinkhorn-Knopp
 * (lvd_sinkhorn_targets). */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "embed/vit_math.h"
#include "train/loss.h"
#include "train/train_simd.h"

#define MAX_K (1 << 24)

static int check_rows(const char *what, int n, int K, float temp, lvd_error *err)
{
    if (n < 1 || K < 1 || K > MAX_K)
        return lvd_fail(err, "%s: bad size %d x %d", what, n, K);
    if (!(temp > 0.0f) || !isfinite(temp))
        return lvd_fail(err, "%s: temperature %g (must be positive)", what, (double)temp);
    return 0;
}

static int reduce(const lvd_allreduce *ar, double *buf, size_t n, int op, lvd_error *err)
{
    if (!ar || !ar->reduce)
        return 0;
    if (ar->reduce(ar->ctx, buf, n, op, err) != 0)
        return lvd_error_prefix(err, "all-reduce");
    return 0;
}

/* Column reductions: each thread takes one contiguous range of columns and runs through the rows
 * in order, so every column is reduced in row order whatever the thread count, and each thread
 * reads long contiguous row segments (narrow column blocks strided by a whole row stall on memory
 * latency: 3x slower). col_range gives thread t of nt its columns [*c0, *c0 + *w). */
static void col_range(int K, int t, int nt, int *c0, int *w)
{
    int lo = (int)((int64_t)K * t / nt), hi = (int)((int64_t)K * (t + 1) / nt);
    *c0 = lo;
    *w = hi - lo;
}

LVD_TRAIN_SIMD static void seg_add(double *acc, const float *row, int w)
{
    for (int c = 0; c < w; c++)
        acc[c] += row[c];
}

/* col (K) = column sums of m (n, K) in double. */
static void column_sums(double *col, const float *m, int n, int K)
{
#pragma omp parallel
    {
        int c0, w;
        col_range(K, omp_get_thread_num(), omp_get_num_threads(), &c0, &w);
        memset(col + c0, 0, (size_t)w * sizeof *col);
        for (int r = 0; w > 0 && r < n; r++)
            seg_add(col + c0, m + (size_t)r * (size_t)K + c0, w);
    }
}

int lvd_center_init(lvd_center *c, int K, float momentum, lvd_error *err)
{
    memset(c, 0, sizeof *c);
    if (K < 1 || K > MAX_K)
        return lvd_fail(err, "center: %d prototypes (1 to %d allowed)", K, MAX_K);
    if (!(momentum >= 0.0f && momentum <= 1.0f))
        return lvd_fail(err, "center: momentum %g (0 to 1 allowed)", (double)momentum);
    c->center = calloc((size_t)K, sizeof *c->center);
    c->pending = calloc((size_t)K + 1, sizeof *c->pending);
    if (!c->center || !c->pending) {
        lvd_center_free(c);
        return lvd_fail(err, "center: out of memory for %d prototypes", K);
    }
    c->K = K;
    c->momentum = momentum;
    return 0;
}

void lvd_center_free(lvd_center *c)
{
    free(c->center);
    free(c->pending);
    memset(c, 0, sizeof *c);
}

void lvd_center_apply(lvd_center *c)
{
    if (!c->has_pending)
        return;
    double m = c->momentum;
    for (int k = 0; k < c->K; k++)
        c->center[k] = (float)(c->center[k] * m + c->pending[k] * (1.0 - m));
    c->has_pending = 0;
}

/* Returns the max of (t - c) over the row. */
LVD_TRAIN_SIMD static float row_max_centered(const float *t, const float *c, int K)
{
    float m = -INFINITY;
    for (int k = 0; k < K; k++) {
        float v = t[k] - c[k];
        m = v > m ? v : m;
    }
    return m;
}

/* out = exp((t - c - m) * inv); returns the sum in double. */
LVD_TRAIN_SIMD static double row_exp_centered(float *out, const float *t, const float *c, float m,
                                              float inv, int K)
{
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (int k = 0; k < K; k++) {
        float e = vit_expf((t[k] - c[k] - m) * inv);
        out[k] = e;
        s += e;
    }
    return s;
}

LVD_TRAIN_SIMD static void row_scale(float *x, float s, int K)
{
    for (int k = 0; k < K; k++)
        x[k] *= s;
}

int lvd_center_softmax(lvd_center *c, const float *t, int n, float temp, float *out, lvd_error *err)
{
    if (check_rows("centered softmax", n, c->K, temp, err) != 0)
        return -1;
    lvd_center_apply(c);
    int K = c->K;
    float inv = 1.0f / temp;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < n; r++) {
        const float *tr = t + (size_t)r * (size_t)K;
        float *o = out + (size_t)r * (size_t)K;
        float m = row_max_centered(tr, c->center, K);
        double s = row_exp_centered(o, tr, c->center, m, inv, K);
        row_scale(o, (float)(1.0 / s), K);
    }
    return 0;
}

int lvd_center_update(lvd_center *c, const float *t, int n, const lvd_allreduce *ar, lvd_error *err)
{
    if (n < 0 || (n == 0 && !ar))
        return lvd_fail(err, "center update: %d rows", n);
    int K = c->K;
    if (n == 0) {
        /* A rank without rows: the update its peers' softmax applied, applied here too. */
        lvd_center_apply(c);
        memset(c->pending, 0, (size_t)K * sizeof *c->pending);
    } else {
        column_sums(c->pending, t, n, K);
        for (int k = 0; k < K; k++)
            c->pending[k] /= n;
    }
    /* The last entry counts the ranks with rows: the sum of their means over it is their mean. */
    c->pending[K] = n > 0;
    if (reduce(ar, c->pending, (size_t)K + 1, LVD_REDUCE_SUM, err) != 0)
        return lvd_error_prefix(err, "center update");
    if (c->pending[K] == 0)
        return 0;
    for (int k = 0; k < K; k++)
        c->pending[k] /= c->pending[K];
    c->has_pending = 1;
    return 0;
}

/* The Sinkhorn-Knopp iterations run in the log domain: log Q[b, k] = t[b, k] / temp + alpha[k] +
 * beta[b], each normalization a log-sum-exp with its own maximum, so that no exp overflows or
 * underflows whatever the logits (the reference's float32 exp(t / temp) overflows above 88). The
 * reference's first step, Q /= sum(Q), is a global factor that the first prototype normalization
 * cancels. Exponents are formed in double; exp runs in float (vit_expf) and sums in double. */

/* Returns max_k (t[k] * inv + a[k]). */
LVD_TRAIN_SIMD static double row_max_shifted(const float *t, double inv, const double *a, int K)
{
    double m = -INFINITY;
    for (int k = 0; k < K; k++) {
        double v = t[k] * inv + a[k];
        m = v > m ? v : m;
    }
    return m;
}

/* Returns sum_k exp(t[k] * inv + a[k] - m). */
LVD_TRAIN_SIMD static double row_sum_shifted(const float *t, double inv, const double *a, double m,
                                             int K)
{
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (int k = 0; k < K; k++)
        s += vit_expf((float)(t[k] * inv + a[k] - m));
    return s;
}

/* out = exp(t * inv + a + c). */
LVD_TRAIN_SIMD static void row_exp_shifted(float *out, const float *t, double inv, const double *a,
                                           double c, int K)
{
    for (int k = 0; k < K; k++)
        out[k] = vit_expf((float)(t[k] * inv + a[k] + c));
}

/* m (w) = max(m, row * inv + beta). */
LVD_TRAIN_SIMD static void seg_max(double *m, const float *row, double inv, double beta, int w)
{
    for (int c = 0; c < w; c++) {
        double v = row[c] * inv + beta;
        m[c] = v > m[c] ? v : m[c];
    }
}

/* s (w) += exp(row * inv + beta - m). */
LVD_TRAIN_SIMD static void seg_sum_exp(double *s, const float *row, double inv, double beta,
                                       const double *m, int w)
{
    for (int c = 0; c < w; c++)
        s[c] += vit_expf((float)(row[c] * inv + beta - m[c]));
}

/* For each column k of t (n, K): mx[k] = max_b (t[b, k] * inv + beta[b]) and sm[k] = sum_b
 * exp(t[b, k] * inv + beta[b] - mx[k]), rows in order; with a hook the maximum, then the sums
 * over ranks. */
static int column_lse(double *mx, double *sm, const float *t, double inv, const double *beta, int n,
                      int K, const lvd_allreduce *ar, lvd_error *err)
{
#pragma omp parallel
    {
        int c0, w;
        col_range(K, omp_get_thread_num(), omp_get_num_threads(), &c0, &w);
        for (int c = 0; c < w; c++)
            mx[c0 + c] = -INFINITY;
        for (int r = 0; w > 0 && r < n; r++)
            seg_max(mx + c0, t + (size_t)r * (size_t)K + c0, inv, beta[r], w);
    }
    if (reduce(ar, mx, (size_t)K, LVD_REDUCE_MAX, err) != 0)
        return -1;
#pragma omp parallel
    {
        int c0, w;
        col_range(K, omp_get_thread_num(), omp_get_num_threads(), &c0, &w);
        memset(sm + c0, 0, (size_t)w * sizeof *sm);
        for (int r = 0; w > 0 && r < n; r++)
            seg_sum_exp(sm + c0, t + (size_t)r * (size_t)K + c0, inv, beta[r], mx + c0, w);
    }
    return reduce(ar, sm, (size_t)K, LVD_REDUCE_SUM, err);
}

int lvd_sinkhorn_targets(const float *t, int n, int K, float temp, int n_iter,
                         const lvd_allreduce *ar, float *out, lvd_error *err)
{
    /* With a hook a rank may hold no rows (its peers do): it takes part in the sums. */
    if (check_rows("sinkhorn", n == 0 && ar ? 1 : n, K, temp, err) != 0)
        return -1;
    if (n_iter < 1 || n_iter > 1000)
        return lvd_fail(err, "sinkhorn: %d iterations (1 to 1000 allowed)", n_iter);
    size_t bad = 0;
    while (bad < (size_t)n * (size_t)K && isfinite(t[bad]))
        bad++;
    double *alpha = malloc((size_t)K * sizeof *alpha);
    double *mx = malloc((size_t)K * sizeof *mx);
    double *sm = malloc((size_t)K * sizeof *sm);
    double *beta = calloc((size_t)n + 1, sizeof *beta);
    int rc = -1;
    if (!alpha || !mx || !sm || !beta) {
        lvd_fail(err, "sinkhorn: out of memory for %d x %d", n, K);
        goto done;
    }
    /* B: the sample count over ranks, reduced with the count of ranks holding a non-finite
     * output, so that every rank fails together (none is left waiting in a later sum). */
    double Bn[2] = {n, bad < (size_t)n * (size_t)K};
    if (reduce(ar, Bn, 2, LVD_REDUCE_SUM, err) != 0)
        goto done;
    if (Bn[1] > 0) {
        if (bad < (size_t)n * (size_t)K)
            lvd_fail(err, "sinkhorn: teacher output is not finite (row %zu)", bad / (size_t)K);
        else
            lvd_fail(err, "sinkhorn: teacher output of another rank is not finite");
        goto done;
    }
    double B = Bn[0];
    double inv = 1.0 / (double)temp, logK = log((double)K), logB = log(B);
    for (int it = 0; it < n_iter; it++) {
        /* Each prototype's total weight becomes 1 / K ... */
        if (column_lse(mx, sm, t, inv, beta, n, K, ar, err) != 0)
            goto done;
        for (int k = 0; k < K; k++)
            alpha[k] = -(mx[k] + log(sm[k])) - logK;
            /* ... then each sample's total weight 1 / B. */
#pragma omp parallel for schedule(static)
        for (int r = 0; r < n; r++) {
            const float *row = t + (size_t)r * (size_t)K;
            double m = row_max_shifted(row, inv, alpha, K);
            beta[r] = -(m + log(row_sum_shifted(row, inv, alpha, m, K))) - logB;
        }
    }
    /* Q *= B: each sample's row sums to 1. */
#pragma omp parallel for schedule(static)
    for (int r = 0; r < n; r++)
        row_exp_shifted(out + (size_t)r * (size_t)K, t + (size_t)r * (size_t)K, inv, alpha,
                        beta[r] + logB, K);
    rc = 0;
done:
    free(alpha);
    free(mx);
    free(sm);
    free(beta);
    return rc;
}
