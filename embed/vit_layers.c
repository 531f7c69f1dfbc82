/* ViT layers, forward only: each a plain function over contiguous row-major buffers (the
 * llm.c style), so that a backward pass can be written next to each one. Large products are
 * single-threaded OpenBLAS sgemm calls on row blocks split over OpenMP threads (faster here than
 * one OpenBLAS-threaded call; see bench/bench_vit.c). */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stddef.h>
#include <string.h>

#include "embed/vit_math.h"
#include "embed/vit_model.h"

/* Element-wise kernels are compiled for AVX-512, AVX2 and baseline x86-64 and picked at load
 * time: the 16-wide version runs GELU 3x faster than the default SSE2 build. */
#define VIT_SIMD __attribute__((target_clones("avx512f", "avx2", "default")))

/* row (n) += bias (n). */
VIT_SIMD static void add_row(float *row, const float *bias, int n)
{
    for (int j = 0; j < n; j++) {
        row[j] += bias[j];
    }
}

void vit_matmul_forward(float *out, const float *inp, int lda, const float *w, const float *bias,
                        int BT, int C, int OC, int threads)
{
#pragma omp parallel num_threads(threads)
    {
        int nt = omp_get_num_threads();
        int t = omp_get_thread_num();
        int lo = (int)((int64_t)BT * t / nt);
        int hi = (int)((int64_t)BT * (t + 1) / nt);
        if (hi > lo) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, hi - lo, OC, C, 1.0f,
                        inp + (size_t)lo * lda, lda, w, C, 0.0f, out + (size_t)lo * OC, OC);
        }
        for (int r = lo; bias && r < hi; r++) {
            add_row(out + (size_t)r * OC, bias, OC);
        }
    }
}

/* o (C) = LayerNorm of x (C); returns the mean, stores 1 / std in *rstd. */
VIT_SIMD static float layernorm_row(float *o, const float *x, const float *w, const float *b, int C,
                                    float eps, float *rstd)
{
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < C; j++) {
        sum += x[j];
    }
    float m = sum / (float)C;
    float var = 0.0f;
#pragma omp simd reduction(+ : var)
    for (int j = 0; j < C; j++) {
        float d = x[j] - m;
        var += d * d;
    }
    float s = 1.0f / sqrtf(var / (float)C + eps);
    for (int j = 0; j < C; j++) {
        o[j] = (x[j] - m) * s * w[j] + b[j];
    }
    *rstd = s;
    return m;
}

void vit_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                           const float *b, int N, int C, float eps, int threads)
{
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int i = 0; i < N; i++) {
        float s;
        float m = layernorm_row(out + (size_t)i * C, inp + (size_t)i * C, w, b, C, eps, &s);
        if (mean) {
            mean[i] = m;
        }
        if (rstd) {
            rstd[i] = s;
        }
    }
}

/* row (n) = exp(row - max(row)) in place; returns 1 / sum of the new row. The normalization is
 * left to the caller, which applies it to the 64-wide attention output row instead of the
 * T-wide probability row (one pass over T x T fewer). */
VIT_SIMD static float softmax_exp_row(float *row, int n)
{
    float mx = row[0];
#pragma omp simd reduction(max : mx)
    for (int j = 1; j < n; j++) {
        mx = row[j] > mx ? row[j] : mx;
    }
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < n; j++) {
        /* Terms below e^-60 of the largest are dropped: they would leave subnormal
         * probabilities, which make the following sgemm ~40x slower. */
        float d = row[j] - mx;
        row[j] = d < -60.0f ? 0.0f : vit_expf(d);
        sum += row[j];
    }
    return 1.0f / sum;
}

/* row (n) *= s. */
VIT_SIMD static void scale_row(float *row, float s, int n)
{
    for (int j = 0; j < n; j++) {
        row[j] *= s;
    }
}

size_t vit_attention_scratch(int T)
{
    return (size_t)T * (size_t)(T + 1);
}

void vit_attention_forward(float *out, float *att, const float *qkv, int B, int T, int D, int heads,
                           int threads)
{
    int hd = D / heads;
    int ld = 3 * D;
    float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int bh = 0; bh < B * heads; bh++) {
        int b = bh / heads;
        int h = bh % heads;
        float *s = att + (size_t)omp_get_thread_num() * vit_attention_scratch(T);
        float *inv = s + (size_t)T * T;
        const float *q = qkv + (size_t)b * T * ld + (size_t)h * hd;
        const float *k = q + D;
        const float *v = q + 2 * D;
        float *o = out + (size_t)b * T * D + (size_t)h * hd;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, scale, q, ld, k, ld, 0.0f, s,
                    T);
        for (int i = 0; i < T; i++) {
            inv[i] = softmax_exp_row(s + (size_t)i * T, T);
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1.0f, s, T, v, ld, 0.0f, o,
                    D);
        for (int i = 0; i < T; i++) {
            scale_row(o + (size_t)i * D, inv[i], hd);
        }
    }
}

/* h (n) = GELU(h + bias), in place: the fc1 output row is still in cache and fc2 reads it
 * from there (a separate output row costs a third stream). */
VIT_SIMD static void bias_gelu_row(float *h, const float *bias, int n)
{
    const float inv_sqrt2 = 0.70710678118654752f;
    for (int j = 0; j < n; j++) {
        float x = h[j] + bias[j];
        h[j] = 0.5f * x * (1.0f + vit_erff(x * inv_sqrt2));
    }
}

void vit_gelu_forward(float *h, const float *bias, int BT, int hidden, int threads)
{
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int r = 0; r < BT; r++) {
        bias_gelu_row(h + (size_t)r * hidden, bias, hidden);
    }
}

/* h[:n] = silu(h[:n] + bias[:n]) * (h[n:] + bias[n:]), in place. */
VIT_SIMD static void bias_swiglu_row(float *h, const float *bias, int n)
{
    for (int j = 0; j < n; j++) {
        float a = h[j] + bias[j];
        h[j] = a / (1.0f + vit_expf(-a)) * (h[n + j] + bias[n + j]);
    }
}

void vit_swiglu_forward(float *h, const float *bias, int BT, int hidden, int threads)
{
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int r = 0; r < BT; r++) {
        bias_swiglu_row(h + (size_t)r * 2 * hidden, bias, hidden);
    }
}

/* x (n) += ls * (branch + bias). */
VIT_SIMD static void residual_row(float *x, const float *branch, const float *bias, const float *ls,
                                  int n)
{
    for (int j = 0; j < n; j++) {
        x[j] += ls[j] * (branch[j] + bias[j]);
    }
}

void vit_residual_forward(float *x, const float *branch, const float *bias, const float *ls, int N,
                          int C, int threads)
{
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int i = 0; i < N; i++) {
        residual_row(x + (size_t)i * C, branch + (size_t)i * C, bias, ls, C);
    }
}

void vit_patch_embed_forward(float *emb, float *cols, const float *x, int B, int H, int W, int P,
                             const float *w, const float *bias, int D, int threads)
{
    int gh = H / P;
    int gw = W / P;
    int K = 3 * P * P;
    int rows = B * gh * gw;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int r = 0; r < rows; r++) {
        int b = r / (gh * gw);
        int py = r / gw % gh;
        int px = r % gw;
        float *dst = cols + (size_t)r * K;
        for (int c = 0; c < 3; c++) {
            for (int ky = 0; ky < P; ky++) {
                const float *src =
                    x + (((size_t)b * 3 + c) * H + (size_t)py * P + ky) * W + (size_t)px * P;
                memcpy(dst + (c * P + ky) * P, src, sizeof(float) * (size_t)P);
            }
        }
    }
    vit_matmul_forward(emb, cols, K, w, bias, rows, K, D, threads);
}
