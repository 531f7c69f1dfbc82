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
            float *row = out + (size_t)r * OC;
            for (int j = 0; j < OC; j++) {
                row[j] += bias[j];
            }
        }
    }
}

void vit_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                           const float *b, int N, int C, float eps, int threads)
{
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int i = 0; i < N; i++) {
        const float *x = inp + (size_t)i * C;
        float *o = out + (size_t)i * C;
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
        if (mean) {
            mean[i] = m;
        }
        if (rstd) {
            rstd[i] = s;
        }
    }
}

/* In place softmax of each of the n rows of s (n, n). */
static void softmax_rows(float *s, int n)
{
    for (int i = 0; i < n; i++) {
        float *row = s + (size_t)i * n;
        float mx = row[0];
        for (int j = 1; j < n; j++) {
            mx = row[j] > mx ? row[j] : mx;
        }
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < n; j++) {
            row[j] = vit_expf(row[j] - mx);
            sum += row[j];
        }
        float inv = 1.0f / sum;
        for (int j = 0; j < n; j++) {
            row[j] *= inv;
        }
    }
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
        float *s = att + (size_t)omp_get_thread_num() * T * T;
        const float *q = qkv + (size_t)b * T * ld + (size_t)h * hd;
        const float *k = q + D;
        const float *v = q + 2 * D;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, scale, q, ld, k, ld, 0.0f, s,
                    T);
        softmax_rows(s, T);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1.0f, s, T, v, ld, 0.0f,
                    out + (size_t)b * T * D + (size_t)h * hd, D);
    }
}

void vit_gelu_forward(float *out, const float *inp, size_t n, int threads)
{
    const float inv_sqrt2 = 0.70710678118654752f;
#pragma omp parallel for simd num_threads(threads) schedule(static)
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + vit_erff(x * inv_sqrt2));
    }
}

void vit_swiglu_forward(float *out, const float *inp, int BT, int hidden, int threads)
{
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int r = 0; r < BT; r++) {
        const float *a = inp + (size_t)r * 2 * hidden;
        const float *g = a + hidden;
        float *o = out + (size_t)r * hidden;
        for (int j = 0; j < hidden; j++) {
            o[j] = a[j] / (1.0f + vit_expf(-a[j])) * g[j];
        }
    }
}

void vit_residual_forward(float *x, const float *branch, const float *ls, int N, int C, int threads)
{
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int i = 0; i < N; i++) {
        float *row = x + (size_t)i * C;
        const float *br = branch + (size_t)i * C;
        for (int j = 0; j < C; j++) {
            row[j] += ls[j] * br[j];
        }
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
