/* Training kernels of the ViT (train/vit_train_internal.h): the backward of each layer, and the
 * forward variants that keep what the backward needs or run on a subset of images (stochastic
 * depth). Forward products, input gradients and attention run on the packed kernel of
 * embed/vit_layers.h (weights packed once per call, activations read in place), split by rows
 * over the OpenMP threads; weight gradients too (lvd_vit_gemm_wgrad, blocks of output rows, so
 * no thread reduces another's partial sums). Column sums (bias, LayerNorm,
 * LayerScale gradients) are split by column blocks and add rows in order, so they do not depend on
 * the thread count. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "embed/vit_layers.h"
#include "embed/vit_math.h"
#include "train/vit_train_internal.h"

#define VT_SIMD __attribute__((target_clones("avx512f", "avx2", "default")))

/* Columns of one block of a column sum. Each thread sums its own range of columns, every row
 * in order, in blocks of up to COLS: long contiguous runs per row (one call per row and block),
 * and each column's sum is the same sequence of additions whatever the block and thread
 * count. */
#define COLS 512

/* [lo, hi) of n items for thread t of nt. */
static void split(int n, int t, int nt, int *lo, int *hi)
{
    *lo = (int)((int64_t)n * t / nt);
    *hi = (int)((int64_t)n * (t + 1) / nt);
}

/* acc (n) += row (n). */
VT_SIMD static void add_to(float *acc, const float *row, int n)
{
    for (int j = 0; j < n; j++) {
        acc[j] += row[j];
    }
}

/* The backward of a Linear with w as stored (w) or packed (wn, used when not NULL); the weight
 * gradient on the packed kernel when ws is not NULL, else on sgemm. */
static void matmul_backward(float *dinp, int ldi, float *dw, float *db, const float *dout, int ldo,
                            const float *inp, int lda, const float *w, const float *wn, float *ws,
                            int BT, int C, int OC, int threads)
{
    if (dw && ws) {
        lvd_vit_gemm_wgrad(dw, dout, ldo, inp, lda, ws, BT, C, OC, threads);
    }
#pragma omp parallel num_threads(threads)
    {
        int nt = omp_get_num_threads(), t = omp_get_thread_num(), lo, hi;
        split(BT, t, nt, &lo, &hi);
        if (dinp && wn && hi > lo) {
            lvd_vit_gemm(dinp + (size_t)lo * ldi, ldi, dout + (size_t)lo * ldo, ldo, wn, NULL,
                         hi - lo, C, OC);
        } else if (dinp && hi > lo) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, hi - lo, C, OC, 1.0f,
                        dout + (size_t)lo * ldo, ldo, w, C, 0.0f, dinp + (size_t)lo * ldi, ldi);
        }
        split(OC, t, nt, &lo, &hi);
        if (dw && !ws && hi > lo) {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, hi - lo, C, BT, 1.0f, dout + lo,
                        ldo, inp, lda, 1.0f, dw + (size_t)lo * C, C);
        }
        if (db && hi > lo) {
            float acc[COLS];
            for (int c0 = lo; c0 < hi; c0 += COLS) {
                int nc = hi - c0 < COLS ? hi - c0 : COLS;
                memset(acc, 0, sizeof acc);
                for (int r = 0; r < BT; r++) {
                    add_to(acc, dout + (size_t)r * ldo + c0, nc);
                }
                add_to(db + c0, acc, nc);
            }
        }
    }
}

void vt_matmul_backward(float *dinp, int ldi, float *dw, float *db, const float *dout, int ldo,
                        const float *inp, int lda, const float *w, int BT, int C, int OC,
                        int threads)
{
    matmul_backward(dinp, ldi, dw, db, dout, ldo, inp, lda, w, NULL, NULL, BT, C, OC, threads);
}

void vt_matmul_backward_packed(float *dinp, int ldi, float *dw, float *db, const float *dout,
                               int ldo, const float *inp, int lda, const float *wn, float *ws,
                               int BT, int C, int OC, int threads)
{
    matmul_backward(dinp, ldi, dw, db, dout, ldo, inp, lda, NULL, wn, ws, BT, C, OC, threads);
}

void vt_pack_forward(lvd_vit_train *m, int threads)
{
    const lvd_vit_info *in = &m->info;
    int D = in->dim, hid = in->ffn_hidden, f1 = in->ffn == LVD_VIT_SWIGLU ? 2 * hid : hid;
    int K = 3 * in->patch * in->patch;
    lvd_vit_gemm_pack_t(m->patch_t, m->p.patch_w, D, K, K, threads);
    for (int l = 0; l < in->depth; l++) {
        const vt_block *b = &m->p.blocks[l];
        vt_packed *k = &m->packed[l];
        lvd_vit_gemm_pack_t(k->qkv_t, b->qkv_w, 3 * D, D, D, threads);
        lvd_vit_gemm_pack_t(k->proj_t, b->proj_w, D, D, D, threads);
        lvd_vit_gemm_pack_t(k->fc1_t, b->fc1_w, f1, D, D, threads);
        lvd_vit_gemm_pack_t(k->fc2_t, b->fc2_w, D, hid, hid, threads);
    }
}

void vt_pack_backward(lvd_vit_train *m, int threads)
{
    const lvd_vit_info *in = &m->info;
    int D = in->dim, hid = in->ffn_hidden, f1 = in->ffn == LVD_VIT_SWIGLU ? 2 * hid : hid;
    for (int l = 0; l < in->depth; l++) {
        const vt_block *b = &m->p.blocks[l];
        vt_packed *k = &m->packed[l];
        lvd_vit_gemm_pack_n(k->qkv_n, b->qkv_w, 3 * D, D, D, threads);
        lvd_vit_gemm_pack_n(k->proj_n, b->proj_w, D, D, D, threads);
        lvd_vit_gemm_pack_n(k->fc1_n, b->fc1_w, f1, D, D, threads);
        lvd_vit_gemm_pack_n(k->fc2_n, b->fc2_w, D, hid, hid, threads);
    }
}

void vt_layernorm_forward_sub(float *out, float *mean, float *rstd, const float *x, const int *sub,
                              int n, int T, const float *w, const float *b, int C, float eps,
                              int threads)
{
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int r = 0; r < n * T; r++) {
        size_t src = (size_t)sub[r / T] * T + r % T;
        float s;
        mean[r] = lvd_vit_layernorm_row(out + (size_t)r * C, x + src * C, w, b, C, eps, &s);
        rstd[r] = s;
    }
}

/* dx (C) += the LayerNorm input gradient of one row. */
VT_SIMD static void layernorm_backward_row(float *dx, const float *dy, const float *x, float mean,
                                           float rstd, const float *w, int C)
{
    float sum_g = 0.0f, sum_gx = 0.0f;
#pragma omp simd reduction(+ : sum_g, sum_gx)
    for (int j = 0; j < C; j++) {
        float g = dy[j] * w[j];
        sum_g += g;
        sum_gx += g * (x[j] - mean) * rstd;
    }
    float mg = sum_g / (float)C, mgx = sum_gx / (float)C;
    for (int j = 0; j < C; j++) {
        float xhat = (x[j] - mean) * rstd;
        dx[j] += rstd * (dy[j] * w[j] - mg - xhat * mgx);
    }
}

/* dw (n) += dy * xhat, db (n) += dy over one row's block of n columns. */
VT_SIMD static void layernorm_param_row(float *dw, float *db, const float *dy, const float *x,
                                        float mean, float rstd, int n)
{
    for (int j = 0; j < n; j++) {
        dw[j] += dy[j] * ((x[j] - mean) * rstd);
        db[j] += dy[j];
    }
}

void vt_layernorm_backward_sub(float *dx, float *dw, float *db, const float *dout, const float *x,
                               const float *mean, const float *rstd, const float *w, const int *sub,
                               int n, int T, int C, int threads)
{
#pragma omp parallel num_threads(threads)
    {
#pragma omp for schedule(static)
        for (int r = 0; r < n * T; r++) {
            size_t src = (size_t)(sub ? sub[r / T] : r / T) * T + r % T;
            layernorm_backward_row(dx + src * C, dout + (size_t)r * C, x + src * C, mean[r],
                                   rstd[r], w, C);
        }
        int nt = omp_get_num_threads(), t = omp_get_thread_num(), lo, hi;
        split(C, t, nt, &lo, &hi);
        for (int c0 = lo; c0 < hi; c0 += COLS) {
            int nc = hi - c0 < COLS ? hi - c0 : COLS;
            float aw[COLS] = {0}, ab[COLS] = {0};
            for (int r = 0; r < n * T; r++) {
                size_t src = (size_t)(sub ? sub[r / T] : r / T) * T + r % T;
                layernorm_param_row(aw, ab, dout + (size_t)r * C + c0, x + src * C + c0, mean[r],
                                    rstd[r], nc);
            }
            add_to(dw + c0, aw, nc);
            add_to(db + c0, ab, nc);
        }
    }
}

/* o (n) = x + scale * ls (n) * y. */
VT_SIMD static void scaled_add_row(float *o, const float *x, float scale, const float *ls,
                                   const float *y, int n)
{
    for (int j = 0; j < n; j++) {
        o[j] = x[j] + scale * ls[j] * y[j];
    }
}

void vt_residual_forward_sub(float *out, const float *in, const float *y, const float *ls,
                             float scale, const int *pos, int B, int T, int C, int threads)
{
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int r = 0; r < B * T; r++) {
        int j = pos[r / T];
        float *o = out + (size_t)r * C;
        const float *x = in + (size_t)r * C;
        if (j >= 0) {
            scaled_add_row(o, x, scale, ls, y + ((size_t)j * T + r % T) * C, C);
        } else if (o != x) {
            memcpy(o, x, sizeof(float) * C);
        }
    }
}

void vt_residual_forward_rows(float *out, const float *in, const float *y, const float *ls,
                              const int *rows, int n, int C, int threads)
{
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int j = 0; j < n; j++) {
        scaled_add_row(out + (size_t)j * C, in + (size_t)rows[j] * C, 1.0f, ls, y + (size_t)j * C,
                       C);
    }
}

/* dy (n) = scale * ls (n) * g. */
VT_SIMD static void residual_backward_row(float *dy, float scale, const float *ls, const float *g,
                                          int n)
{
    for (int j = 0; j < n; j++) {
        dy[j] = scale * ls[j] * g[j];
    }
}

/* acc (n) += g * y. */
VT_SIMD static void mul_add_row(float *acc, const float *g, const float *y, int n)
{
    for (int j = 0; j < n; j++) {
        acc[j] += g[j] * y[j];
    }
}

void vt_residual_backward_sub(float *dy, float *dls, const float *dout, const float *y,
                              const float *ls, float scale, const int *sub, int n, int T, int C,
                              int threads)
{
#pragma omp parallel num_threads(threads)
    {
#pragma omp for schedule(static)
        for (int r = 0; r < n * T; r++) {
            size_t src = (size_t)sub[r / T] * T + r % T;
            residual_backward_row(dy + (size_t)r * C, scale, ls, dout + src * C, C);
        }
        int nt = omp_get_num_threads(), t = omp_get_thread_num(), lo, hi;
        split(C, t, nt, &lo, &hi);
        for (int c0 = lo; c0 < hi; c0 += COLS) {
            int nc = hi - c0 < COLS ? hi - c0 : COLS;
            float acc[COLS] = {0};
            for (int r = 0; r < n * T; r++) {
                size_t src = (size_t)sub[r / T] * T + r % T;
                mul_add_row(acc, dout + src * C + c0, y + (size_t)r * C + c0, nc);
            }
            for (int c = 0; c < nc; c++) {
                dls[c0 + c] += scale * acc[c];
            }
        }
    }
}

VT_SIMD static void gelu_row(float *a, const float *h, int n)
{
    for (int j = 0; j < n; j++) {
        a[j] = vit_gelu(h[j]);
    }
}

VT_SIMD static void swiglu_row(float *a, const float *h, int n)
{
    for (int j = 0; j < n; j++) {
        a[j] = vit_silu(h[j]) * h[n + j];
    }
}

void vt_ffn_act_forward(float *act, const float *h, int BT, int hid, int swiglu, int threads)
{
    int f1 = swiglu ? 2 * hid : hid;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int r = 0; r < BT; r++) {
        if (swiglu) {
            swiglu_row(act + (size_t)r * hid, h + (size_t)r * f1, hid);
        } else {
            gelu_row(act + (size_t)r * hid, h + (size_t)r * f1, hid);
        }
    }
}

/* act (n) = GELU(h) and d (n) *= GELU'(h) = Phi(h) + h phi(h) (the exact erf GELU), one erf and
 * one exp per element. */
VT_SIMD static void gelu_both_row(float *act, float *d, const float *h, int n)
{
    const float inv_sqrt2 = 0.70710678118654752f, inv_sqrt_2pi = 0.39894228040143268f;
    for (int j = 0; j < n; j++) {
        float x = h[j];
        float cdf = 0.5f * (1.0f + vit_erff(x * inv_sqrt2));
        act[j] = x * cdf;
        d[j] *= cdf + x * (inv_sqrt_2pi * vit_expf(-0.5f * x * x));
    }
}

/* act (n) = silu(h1) * h2, and d[:n] = d a * h2 * silu'(h1), d[n:] = d a * silu(h1) with d a in
 * d[:n] on entry; one exp per element. */
VT_SIMD static void swiglu_both_row(float *act, float *d, const float *h, int n)
{
    for (int j = 0; j < n; j++) {
        float x = h[j];
        float e = 1.0f + vit_expf(-x), sig = 1.0f / e;
        float da = d[j];
        act[j] = x / e * h[n + j]; /* vit_silu's rounding, as the forward */
        d[j] = da * h[n + j] * sig * (1.0f + x * (1.0f - sig));
        d[n + j] = da * x * sig;
    }
}

void vt_ffn_act_both(float *act, float *dh, const float *h, int BT, int hid, int swiglu,
                     int threads)
{
    int f1 = swiglu ? 2 * hid : hid;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int r = 0; r < BT; r++) {
        if (swiglu) {
            swiglu_both_row(act + (size_t)r * hid, dh + (size_t)r * f1, h + (size_t)r * f1, hid);
        } else {
            gelu_both_row(act + (size_t)r * hid, dh + (size_t)r * f1, h + (size_t)r * f1, hid);
        }
    }
}

size_t vt_attention_scratch(int T, int hd)
{
    size_t tt = (size_t)T * (size_t)T, tm = (size_t)T * (size_t)(T > hd ? T : hd);
    size_t pk = lvd_vit_gemm_packed_size(T, hd), pn = lvd_vit_gemm_packed_size(hd, T);
    size_t n = 2 * (pk > pn ? pk : pn) + 2 * tt + 3 * tm + 2 * (size_t)T;
    return (n + 15) / 16 * 16; /* keeps every thread's packs 64-byte aligned */
}

/* The per-thread scratch: two packed operands first (aligned), two T x T matrices, three of
 * T x max(T, hd) (gathered queries, transposes, query gradients) and two rows. */
typedef struct att_scratch {
    float *pa, *pb, *s, *ds, *st, *x, *y, *r0, *r1;
} att_scratch;

static att_scratch att_parts(float *att, int T, int hd)
{
    size_t pk = lvd_vit_gemm_packed_size(T, hd), pn = lvd_vit_gemm_packed_size(hd, T);
    size_t big = pk > pn ? pk : pn, tt = (size_t)T * (size_t)T;
    size_t tm = (size_t)T * (size_t)(T > hd ? T : hd);
    float *base = att + (size_t)omp_get_thread_num() * vt_attention_scratch(T, hd);
    float *m = base + 2 * big + 2 * tt;
    att_scratch a = {base,   base + big, base + 2 * big, base + 2 * big + tt, m,
                     m + tm, m + 2 * tm, m + 3 * tm,     m + 3 * tm + T};
    return a;
}

/* rows (n, T) of s: row i = exp(row i - max), its sum inverted into inv[i], lse[qi[i]] (lse
 * may be NULL) = max + log(sum); terms below e^-60 of the max count as 0 (as the inference
 * forward). */
VT_SIMD static void softmax_rows(float *s, float *inv, float *lse, const int *qi, int n, int T)
{
    for (int i = 0; i < n; i++) {
        float *row = s + (size_t)i * T;
        float mx = row[0];
        for (int j = 1; j < T; j++) {
            mx = row[j] > mx ? row[j] : mx;
        }
        float sum = 0.0f;
        for (int j = 0; j < T; j++) {
            float d = row[j] - mx;
            row[j] = d < -60.0f ? 0.0f : vit_expf(d);
            sum += row[j];
        }
        inv[i] = 1.0f / sum;
        if (lse) {
            lse[qi ? qi[i] : i] = mx + logf(sum);
        }
    }
}

/* row (n) = src * s. */
VT_SIMD static void scaled_copy(float *row, const float *src, float s, int n)
{
    for (int j = 0; j < n; j++) {
        row[j] = src[j] * s;
    }
}

/* dst (n, m) = src (m, n)^T. */
static void transpose(float *dst, const float *src, int m, int n)
{
    for (int i = 0; i < m; i++) {
        for (int j = 0; j < n; j++) {
            dst[(size_t)j * m + i] = src[(size_t)i * n + j];
        }
    }
}

/* dst (m, hd) = scale * rows qi[i] (all T when qi is NULL) of q (stride ld). */
static void gather_queries(float *dst, const float *q, int ld, const int *qi, int m, int hd,
                           float scale)
{
    for (int i = 0; i < m; i++) {
        scaled_copy(dst + (size_t)i * hd, q + (size_t)(qi ? qi[i] : i) * ld, scale, hd);
    }
}

/* One image and head, for the m queries qi (NULL: all T, m = T): o (m, hd; stride ldo) =
 * softmax(q k^T / sqrt(hd)) v with the packed products (the operands are small: packing them
 * costs T * hd, the products T * T * hd). */
static void attention_head(float *o, int ldo, const float *q, const float *k, const float *v,
                           int ld, int T, int hd, float *lse, const int *qi, int m,
                           const att_scratch *a)
{
    /* Scores from q scaled as the reference scales them (q * scale before the product). */
    gather_queries(a->st, q, ld, qi, m, hd, 1.0f / sqrtf((float)hd));
    lvd_vit_gemm_pack_t(a->pa, k, T, hd, ld, 1);
    lvd_vit_gemm(a->s, T, a->st, hd, a->pa, NULL, m, T, hd);
    softmax_rows(a->s, a->r0, lse, qi, m, T);
    lvd_vit_gemm_pack_n(a->pb, v, T, hd, ld, 1);
    lvd_vit_gemm(o, ldo, a->s, T, a->pb, NULL, m, hd, T);
    for (int i = 0; i < m; i++) {
        scaled_copy(o + (size_t)i * ldo, o + (size_t)i * ldo, a->r0[i], hd);
    }
}

/* Image b's queries: its m rows of the list q (token indices) from q_off[b], or all T. */
static const int *queries(const int *q, const int *q_off, int b, int T, int *m)
{
    *m = q ? q_off[b + 1] - q_off[b] : T;
    return q ? q + q_off[b] : NULL;
}

void vt_attention_forward(float *atty, float *lse, float *att, const float *qkv, const int *q,
                          const int *q_off, int n, int T, int D, int heads, int threads)
{
    int hd = D / heads;
    int ld = 3 * D;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int bh = 0; bh < n * heads; bh++) {
        int b = bh / heads, h = bh % heads, m;
        const int *qi = queries(q, q_off, b, T, &m);
        if (m == 0) {
            continue;
        }
        att_scratch a = att_parts(att, T, hd);
        const float *qb = qkv + (size_t)b * T * ld + (size_t)h * hd;
        size_t row0 = q ? (size_t)q_off[b] : (size_t)b * T;
        attention_head(atty + row0 * D + (size_t)h * hd, D, qb, qb + D, qb + 2 * D, ld, T, hd,
                       lse ? lse + (size_t)bh * T : NULL, qi, m, &a);
    }
}

/* p (n) = exp(s - lse), with the forward's cutoff of negligible terms. */
VT_SIMD static void probs_row(float *p, float lse, int n)
{
    for (int j = 0; j < n; j++) {
        float d = p[j] - lse;
        p[j] = d < -60.0f ? 0.0f : vit_expf(d);
    }
}

/* ds (n) = scale * p * (dp - dot). */
VT_SIMD static void softmax_backward_row(float *ds, const float *p, float dot, float scale, int n)
{
    for (int j = 0; j < n; j++) {
        ds[j] = scale * (p[j] * (ds[j] - dot));
    }
}

VT_SIMD static float dot_row(const float *a, const float *b, int n)
{
    float s = 0.0f;
    for (int j = 0; j < n; j++) {
        s += a[j] * b[j];
    }
    return s;
}

/* One image and head, for the m queries qi (NULL: all T): dq (rows qi), dk, dv (T, hd; row
 * stride ld) from dout and o (m, hd; stride ldo), the forward's q, k, v (stride ld) and lse
 * (T). The probabilities are recomputed from lse; every product is a packed one (operands
 * gathered or transposed into scratch where the product wants rows). dq rows of other queries
 * are left alone. */
static void attention_head_backward(float *dq, float *dk, float *dv, const float *dout,
                                    const float *q, const float *k, const float *v, int ld,
                                    const float *o, int ldo, const float *lse, const int *qi, int m,
                                    int T, int hd, const att_scratch *a)
{
    float scale = 1.0f / sqrtf((float)hd);
    float *p = a->s, *dp = a->ds;
    gather_queries(a->st, q, ld, qi, m, hd, scale);
    lvd_vit_gemm_pack_t(a->pa, k, T, hd, ld, 1);
    lvd_vit_gemm(p, T, a->st, hd, a->pa, NULL, m, T, hd);
    for (int i = 0; i < m; i++) {
        probs_row(p + (size_t)i * T, lse[qi ? qi[i] : i], T);
    }
    /* dv = p^T dout */
    transpose(a->st, p, m, T);
    lvd_vit_gemm_pack_n(a->pb, dout, m, hd, ldo, 1);
    lvd_vit_gemm(dv, ld, a->st, m, a->pb, NULL, T, hd, m);
    /* dp = dout v^T, then ds = scale * p * (dp - rowdot(dout, o)) */
    lvd_vit_gemm_pack_t(a->pa, v, T, hd, ld, 1);
    lvd_vit_gemm(dp, T, dout, ldo, a->pa, NULL, m, T, hd);
    for (int i = 0; i < m; i++) {
        float dot = dot_row(dout + (size_t)i * ldo, o + (size_t)i * ldo, hd);
        softmax_backward_row(dp + (size_t)i * T, p + (size_t)i * T, dot, scale, T);
    }
    /* dq = ds k (into the query rows), dk = ds^T q */
    lvd_vit_gemm_pack_n(a->pb, k, T, hd, ld, 1);
    lvd_vit_gemm(a->x, hd, dp, T, a->pb, NULL, m, hd, T);
    for (int i = 0; i < m; i++) {
        memcpy(dq + (size_t)(qi ? qi[i] : i) * ld, a->x + (size_t)i * hd, sizeof(float) * hd);
    }
    transpose(a->st, dp, m, T);
    gather_queries(a->y, q, ld, qi, m, hd, 1.0f);
    lvd_vit_gemm_pack_n(a->pb, a->y, m, hd, hd, 1);
    lvd_vit_gemm(dk, ld, a->st, m, a->pb, NULL, T, hd, m);
}

void vt_attention_backward(float *dqkv, const float *datty, const float *qkv, const float *atty,
                           const float *lse, float *att, const int *q, const int *q_off, int n,
                           int T, int D, int heads, int threads)
{
    int hd = D / heads;
    int ld = 3 * D;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int bh = 0; bh < n * heads; bh++) {
        int b = bh / heads, h = bh % heads, m;
        const int *qi = queries(q, q_off, b, T, &m);
        size_t qo = (size_t)b * T * ld + (size_t)h * hd;
        if (m == 0) {
            /* No query of this image is wanted: its keys and values get no gradient. */
            for (int t = 0; t < T; t++) {
                memset(dqkv + qo + (size_t)t * ld + D, 0, sizeof(float) * hd);
                memset(dqkv + qo + (size_t)t * ld + 2 * D, 0, sizeof(float) * hd);
            }
            continue;
        }
        att_scratch a = att_parts(att, T, hd);
        size_t oo = (q ? (size_t)q_off[b] : (size_t)b * T) * D + (size_t)h * hd;
        attention_head_backward(dqkv + qo, dqkv + qo + D, dqkv + qo + 2 * D, datty + oo, qkv + qo,
                                qkv + qo + D, qkv + qo + 2 * D, ld, atty + oo, D,
                                lse + (size_t)bh * T, qi, m, T, hd, &a);
    }
}

void vt_sum_images(float *out, const float *x, int B, int T, int C, int threads)
{
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int t = 0; t < T; t++) {
        float *o = out + (size_t)t * C;
        memset(o, 0, sizeof(float) * C);
        for (int b = 0; b < B; b++) {
            add_to(o, x + ((size_t)b * T + t) * C, C);
        }
    }
}
