/* ViT layer kernels (embed/vit_layers.h), forward only: each a plain function over contiguous
 * row-major buffers (the llm.c style); the training path writes each backward next to them.
 * Large products are single-threaded OpenBLAS sgemm calls on row blocks split over OpenMP
 * threads (faster here than one OpenBLAS-threaded call; see bench/bench_vit.c); the packed
 * products (lvd_vit_gemm) that the training path uses are at the end. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stddef.h>
#include <string.h>

#include "embed/vit_layers.h"
#include "embed/vit_math.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define GEMM_AVX2 1
#endif

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

void lvd_vit_matmul_forward(float *out, const float *inp, int lda, const float *w,
                            const float *bias, int BT, int C, int OC, int threads)
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

VIT_SIMD float lvd_vit_layernorm_row(float *o, const float *x, const float *w, const float *b,
                                     int C, float eps, float *rstd)
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

void lvd_vit_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                               const float *w, const float *b, int N, int C, float eps, int threads)
{
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int i = 0; i < N; i++) {
        float s;
        float m = lvd_vit_layernorm_row(out + (size_t)i * C, inp + (size_t)i * C, w, b, C, eps, &s);
        if (mean) {
            mean[i] = m;
        }
        if (rstd) {
            rstd[i] = s;
        }
    }
}

/* Floats rounded up to whole 64-byte lines: the packed operands that follow stay aligned as
 * lvd_vit_gemm's panel loads require. */
static size_t lines(size_t floats)
{
    return (floats + 15) / 16 * 16;
}

/* One thread's attention scratch for T tokens of width hd: scores (T, T), the scaled queries
 * (T, hd), packed k^T and v, and the T reciprocal row sums, each 64-byte aligned. */
typedef struct att_parts {
    float *s, *q, *kt, *v, *inv;
} att_parts;

/* The sizes of the parts, in the order of att_parts. */
static void att_sizes(int T, int hd, size_t sizes[5])
{
    sizes[0] = lines((size_t)T * T);
    sizes[1] = lines((size_t)T * hd);
    sizes[2] = lines(lvd_vit_gemm_packed_size(T, hd));
    sizes[3] = lines(lvd_vit_gemm_packed_size(hd, T));
    sizes[4] = lines((size_t)T);
}

size_t lvd_vit_attention_scratch(int T, int hd)
{
    size_t z[5];
    att_sizes(T, hd, z);
    return z[0] + z[1] + z[2] + z[3] + z[4];
}

static att_parts att_parts_at(float *base, int T, int hd)
{
    size_t z[5];
    att_sizes(T, hd, z);
    att_parts a = {.s = base, .q = base + z[0]};
    a.kt = a.q + z[1];
    a.v = a.kt + z[2];
    a.inv = a.v + z[3];
    return a;
}

/* q (T, hd) = src rows (stride ld) * scale: the reference scales q before the product. */
VIT_SIMD static void scaled_rows(float *q, const float *src, int ld, int T, int hd, float scale)
{
    for (int i = 0; i < T; i++) {
        for (int d = 0; d < hd; d++) {
            q[(size_t)i * hd + d] = src[(size_t)i * ld + d] * scale;
        }
    }
}

/* Each row of s (T, T) becomes exp(row - max(row)); inv[i] = 1 / sum. Terms more than 60 below
 * the maximum are dropped: they would leave subnormal probabilities, which slow the following
 * product down many times. The normalization is applied to the hd-wide output rows instead of
 * the T-wide probability rows (one pass over T x T fewer). */
VIT_SIMD static void softmax_unnormalized(float *s, float *inv, int T)
{
    for (int i = 0; i < T; i++) {
        float *row = s + (size_t)i * T, mx = row[0], sum = 0.0f;
#pragma omp simd reduction(max : mx)
        for (int j = 1; j < T; j++) {
            mx = row[j] > mx ? row[j] : mx;
        }
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < T; j++) {
            float d = row[j] - mx;
            row[j] = d < -60.0f ? 0.0f : vit_expf(d);
            sum += row[j];
        }
        inv[i] = 1.0f / sum;
    }
}

/* o (T, hd; stride ldo) rows *= inv. */
VIT_SIMD static void normalize_rows(float *o, int ldo, const float *inv, int T, int hd)
{
    for (int i = 0; i < T; i++) {
        for (int d = 0; d < hd; d++) {
            o[(size_t)i * ldo + d] *= inv[i];
        }
    }
}

void lvd_vit_attention_forward(float *out, float *att, const float *qkv, int B, int T, int D,
                               int heads, int threads)
{
    int hd = D / heads, ld = 3 * D;
    float scale = 1.0f / sqrtf((float)hd);
    size_t per = lvd_vit_attention_scratch(T, hd);
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
    for (int bh = 0; bh < B * heads; bh++) {
        att_parts a = att_parts_at(att + (size_t)omp_get_thread_num() * per, T, hd);
        const float *q = qkv + (size_t)(bh / heads) * T * ld + (size_t)(bh % heads) * hd;
        float *o = out + (size_t)(bh / heads) * T * D + (size_t)(bh % heads) * hd;
        scaled_rows(a.q, q, ld, T, hd, scale);
        lvd_vit_gemm_pack_t(a.kt, q + D, T, hd, ld, 1);
        lvd_vit_gemm(a.s, T, a.q, hd, a.kt, NULL, T, T, hd);
        softmax_unnormalized(a.s, a.inv, T);
        lvd_vit_gemm_pack_n(a.v, q + 2 * D, T, hd, ld, 1);
        lvd_vit_gemm(o, D, a.s, T, a.v, NULL, T, hd, T);
        normalize_rows(o, D, a.inv, T, hd);
    }
}

/* h (n) = GELU(h + bias), in place: the fc1 output row is still in cache and fc2 reads it
 * from there (a separate output row costs a third stream). */
VIT_SIMD static void bias_gelu_row(float *h, const float *bias, int n)
{
    for (int j = 0; j < n; j++) {
        h[j] = vit_gelu(h[j] + bias[j]);
    }
}

void lvd_vit_gelu_forward(float *h, const float *bias, int BT, int hidden, int threads)
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
        h[j] = vit_silu(h[j] + bias[j]) * (h[n + j] + bias[n + j]);
    }
}

void lvd_vit_swiglu_forward(float *h, const float *bias, int BT, int hidden, int threads)
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

void lvd_vit_residual_forward(float *x, const float *branch, const float *bias, const float *ls,
                              int N, int C, int threads)
{
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int i = 0; i < N; i++) {
        residual_row(x + (size_t)i * C, branch + (size_t)i * C, bias, ls, C);
    }
}

void lvd_vit_im2col(float *cols, const float *x, int B, int H, int W, int P, int threads)
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
}

void lvd_vit_patch_embed_forward(float *emb, float *cols, const float *x, int B, int H, int W,
                                 int P, const float *w, const float *bias, int D, int threads)
{
    int K = 3 * P * P;
    lvd_vit_im2col(cols, x, B, H, W, P, threads);
    lvd_vit_matmul_forward(emb, cols, K, w, bias, B * (H / P) * (W / P), K, D, threads);
}

void lvd_vit_embed_tokens(float *x, const float *emb, const uint8_t *mask, const float *cls,
                          const float *reg, const float *mask_token, const float *pos, int B, int N,
                          int R, int D, int threads)
{
    int T = 1 + R + N;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int r = 0; r < B * T; r++) {
        int b = r / T;
        int t = r % T;
        float *o = x + (size_t)r * D;
        if (t > 0 && t <= R) {
            memcpy(o, reg + (size_t)(t - 1) * D, sizeof(float) * D);
            continue;
        }
        int n = t == 0 ? -1 : t - 1 - R; /* patch index, -1 for cls */
        const float *src = cls;
        if (n >= 0) {
            src = mask && mask[(size_t)b * N + n] ? mask_token : emb + ((size_t)b * N + n) * D;
        }
        const float *pe = pos + (size_t)(n + 1) * D;
        for (int d = 0; d < D; d++) {
            o[d] = src[d] + pe[d];
        }
    }
}

/* Packed products (lvd_vit_gemm). The weight operand is packed once per call site into panels
 * of 16 columns, each K rows of 16 floats, zero-padded; the activation operand is read in place,
 * six rows at a time, one broadcast per row and k. A 6 x 16 tile lives in 12 AVX2 registers
 * and every element is bias + sum over k in increasing order with one FMA per term, so a row's
 * result does not depend on how the rows are split. */
#define GEMM_NR LVD_VIT_GEMM_PANEL
#define GEMM_MR 6

size_t lvd_vit_gemm_packed_size(int N, int K)
{
    return (size_t)(N + GEMM_NR - 1) / GEMM_NR * GEMM_NR * (size_t)K;
}

/* Panel p of the packed w^T, w (N, K; row stride ld). */
static void pack_t_panel(float *bp, const float *w, int N, int K, int ld, int p)
{
    float *dst = bp + (size_t)p * GEMM_NR * K;
    for (int j = 0; j < GEMM_NR; j++) {
        int n = p * GEMM_NR + j;
        const float *src = w + (size_t)n * ld;
        for (int k = 0; k < K; k++) {
            dst[(size_t)k * GEMM_NR + j] = n < N ? src[k] : 0.0f;
        }
    }
}

/* Panel p of the packed w, w (K, N; row stride ld). */
static void pack_n_panel(float *bp, const float *w, int K, int N, int ld, int p)
{
    float *dst = bp + (size_t)p * GEMM_NR * K;
    int n0 = p * GEMM_NR, nr = N - n0 < GEMM_NR ? N - n0 : GEMM_NR;
    for (int k = 0; k < K && nr == GEMM_NR; k++) { /* a constant size: one vector move a row */
        memcpy(dst + (size_t)k * GEMM_NR, w + (size_t)k * ld + n0, sizeof(float) * GEMM_NR);
    }
    for (int k = 0; k < K && nr < GEMM_NR; k++) {
        float *d = dst + (size_t)k * GEMM_NR;
        memcpy(d, w + (size_t)k * ld + n0, sizeof(float) * (size_t)nr);
        memset(d + nr, 0, sizeof(float) * (size_t)(GEMM_NR - nr));
    }
}

void lvd_vit_gemm_pack_t(float *bp, const float *w, int N, int K, int ld, int threads)
{
    int panels = (N + GEMM_NR - 1) / GEMM_NR;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
    for (int p = 0; p < panels; p++)
        pack_t_panel(bp, w, N, K, ld, p);
}

void lvd_vit_gemm_pack_n(float *bp, const float *w, int K, int N, int ld, int threads)
{
    int panels = (N + GEMM_NR - 1) / GEMM_NR;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
    for (int p = 0; p < panels; p++)
        pack_n_panel(bp, w, K, N, ld, p);
}

#ifdef GEMM_AVX2

/* Where element (i, k) of the a operand is: a (M, K; row stride lda), or a^T stored (K, M;
 * stride lda) when trans. */
#define A_AT(a, lda, trans, i, k)                                                                  \
    ((a) + ((trans) ? (size_t)(k) * (size_t)(lda) + (size_t)(i)                                    \
                    : (size_t)(i) * (size_t)(lda) + (size_t)(k)))

/* One tile of mr <= 6 rows and nr <= 16 columns: c = init + a @ panel, init the bias (16
 * floats, zero-padded) or zero; init NULL: c += a @ panel. */
__attribute__((target("avx2,fma"), always_inline)) static inline void
tile_avx2(int mr, int nr, int K, const float *a, int lda, int trans, const float *b,
          const float *init, float *c, int ldc)
{
    __m256 acc[GEMM_MR][2];
#pragma GCC unroll 6
    for (int i = 0; i < GEMM_MR; i++) {
        const float *ri = init;
        float t[GEMM_NR] = {0}; /* rows past mr are never stored */
        if (!init && i < mr && nr == GEMM_NR) {
            ri = c + (size_t)i * ldc;
        } else if (!init) {
            memcpy(t, c + (size_t)i * ldc, sizeof(float) * (size_t)(i < mr ? nr : 0));
            ri = t;
        }
        acc[i][0] = _mm256_loadu_ps(ri);
        acc[i][1] = _mm256_loadu_ps(ri + 8);
    }
    for (int k = 0; k < K; k++) {
        __m256 w0 = _mm256_load_ps(b), w1 = _mm256_load_ps(b + 8);
        b += GEMM_NR;
#pragma GCC unroll 6
        for (int i = 0; i < GEMM_MR; i++) {
            if (i < mr) {
                __m256 x = _mm256_broadcast_ss(A_AT(a, lda, trans, i, k));
                acc[i][0] = _mm256_fmadd_ps(x, w0, acc[i][0]);
                acc[i][1] = _mm256_fmadd_ps(x, w1, acc[i][1]);
            }
        }
    }
#pragma GCC unroll 6
    for (int i = 0; i < GEMM_MR; i++) {
        if (i >= mr) {
            break;
        }
        float *ci = c + (size_t)i * ldc;
        if (nr == GEMM_NR) {
            _mm256_storeu_ps(ci, acc[i][0]);
            _mm256_storeu_ps(ci + 8, acc[i][1]);
        } else {
            float t[GEMM_NR];
            _mm256_storeu_ps(t, acc[i][0]);
            _mm256_storeu_ps(t + 8, acc[i][1]);
            memcpy(ci, t, sizeof(float) * (size_t)nr);
        }
    }
}

/* The same over two adjacent panels (b, b + 16 K) with AVX-512: mr <= 6 rows, 16 < nr <= 32
 * columns, init 32 floats or NULL. Each element gets the same terms in the same order as
 * tile_avx2, so both give the same bits. */
__attribute__((target("avx512f,avx2,fma"), always_inline)) static inline void
tile_avx512(int mr, int nr, int K, const float *a, int lda, int trans, const float *b,
            const float *init, float *c, int ldc)
{
    const float *b1 = b + (size_t)GEMM_NR * K;
    __mmask16 m1 = (__mmask16)((1u << (nr - GEMM_NR)) - 1u);
    __m512 acc[GEMM_MR][2];
#pragma GCC unroll 6
    for (int i = 0; i < GEMM_MR; i++) {
        if (init) {
            acc[i][0] = _mm512_loadu_ps(init);
            acc[i][1] = _mm512_loadu_ps(init + GEMM_NR);
        } else if (i < mr) {
            acc[i][0] = _mm512_loadu_ps(c + (size_t)i * ldc);
            acc[i][1] = _mm512_maskz_loadu_ps(m1, c + (size_t)i * ldc + GEMM_NR);
        } else {
            acc[i][0] = acc[i][1] = _mm512_setzero_ps(); /* never stored */
        }
    }
    for (int k = 0; k < K; k++) {
        __m512 w0 = _mm512_load_ps(b), w1 = _mm512_load_ps(b1);
        b += GEMM_NR;
        b1 += GEMM_NR;
#pragma GCC unroll 6
        for (int i = 0; i < GEMM_MR; i++) {
            if (i < mr) {
                __m512 x = _mm512_set1_ps(*A_AT(a, lda, trans, i, k));
                acc[i][0] = _mm512_fmadd_ps(x, w0, acc[i][0]);
                acc[i][1] = _mm512_fmadd_ps(x, w1, acc[i][1]);
            }
        }
    }
#pragma GCC unroll 6
    for (int i = 0; i < GEMM_MR; i++) {
        if (i < mr) {
            _mm512_storeu_ps(c + (size_t)i * ldc, acc[i][0]);
            _mm512_mask_storeu_ps(c + (size_t)i * ldc + GEMM_NR, m1, acc[i][1]);
        }
    }
}

/* One tile instance: mr rows and the trans of a fixed, compiled on its own (so that the register
 * allocation of each loop is its own: inlined together they spilled the panel vectors). */
typedef void tile_fn(int nr, int K, const float *a, int lda, const float *b, const float *init,
                     float *c, int ldc);

#define TILE_INSTANCE(kern, tgt, mr, trans)                                                        \
    __attribute__((target(tgt), noinline)) static void kern##_##mr##_##trans(                      \
        int nr, int K, const float *a, int lda, const float *b, const float *init, float *c,       \
        int ldc)                                                                                   \
    {                                                                                              \
        kern(mr, nr, K, a, lda, trans, b, init, c, ldc);                                           \
    }

#define TILE_INSTANCES(kern, tgt, trans)                                                           \
    TILE_INSTANCE(kern, tgt, 1, trans)                                                             \
    TILE_INSTANCE(kern, tgt, 2, trans)                                                             \
    TILE_INSTANCE(kern, tgt, 3, trans)                                                             \
    TILE_INSTANCE(kern, tgt, 4, trans)                                                             \
    TILE_INSTANCE(kern, tgt, 5, trans)                                                             \
    TILE_INSTANCE(kern, tgt, 6, trans)

TILE_INSTANCES(tile_avx2, "avx2,fma", 0)
TILE_INSTANCES(tile_avx2, "avx2,fma", 1)
TILE_INSTANCES(tile_avx512, "avx512f,avx2,fma", 0)
TILE_INSTANCES(tile_avx512, "avx512f,avx2,fma", 1)

/* [trans][mr] */
#define TILE_TABLE(kern)                                                                           \
    {                                                                                              \
        {NULL, kern##_1_0, kern##_2_0, kern##_3_0, kern##_4_0, kern##_5_0, kern##_6_0},            \
            {NULL, kern##_1_1, kern##_2_1, kern##_3_1, kern##_4_1, kern##_5_1, kern##_6_1},        \
    }
static tile_fn *const tiles_avx2[2][GEMM_MR + 1] = TILE_TABLE(tile_avx2);
static tile_fn *const tiles_avx512[2][GEMM_MR + 1] = TILE_TABLE(tile_avx512);

/* The tile loops over the column blocks of wide tiles (two panels, 32 columns; NULL: none)
 * and narrow ones (one panel, for the rest), rows in blocks whose a rows stay in L2 while every
 * panel passes over them. */
static void gemm_tiles(tile_fn *const *wide, tile_fn *const *narrow, float *c, int ldc,
                       const float *a, int lda, int trans, const float *bp, const float *bias,
                       int acc, int M, int N, int K)
{
    int mb = 32768 / (K > 0 ? K : 1) / GEMM_MR * GEMM_MR;
    mb = mb < GEMM_MR ? GEMM_MR : mb;
    for (int i0 = 0; i0 < M; i0 += mb) {
        int ie = M - i0 < mb ? M : i0 + mb;
        for (int n0 = 0; n0 < N;) {
            int w = wide && N - n0 > GEMM_NR ? 2 * GEMM_NR : GEMM_NR;
            int nr = N - n0 < w ? N - n0 : w;
            tile_fn *const *tiles = w > GEMM_NR ? wide : narrow;
            float zb[2 * GEMM_NR] = {0};
            if (bias) {
                memcpy(zb, bias + n0, sizeof(float) * (size_t)nr);
            }
            const float *b = bp + (size_t)n0 * K;
            for (int i = i0; i < ie; i += GEMM_MR) {
                int mr = ie - i < GEMM_MR ? ie - i : GEMM_MR;
                tiles[mr](nr, K, A_AT(a, lda, trans, i, 0), lda, b, acc ? NULL : zb,
                          c + (size_t)i * ldc + n0, ldc);
            }
            n0 += w;
        }
    }
}
#endif

/* The portable product over the same panels, the same order of terms per element. */
static void gemm_generic(float *c, int ldc, const float *a, int lda, int trans, const float *bp,
                         const float *bias, int acc_c, int M, int N, int K)
{
    for (int i = 0; i < M; i++) {
        for (int n0 = 0; n0 < N; n0 += GEMM_NR) {
            int nr = N - n0 < GEMM_NR ? N - n0 : GEMM_NR;
            float acc[GEMM_NR];
            for (int j = 0; j < GEMM_NR; j++) {
                const float *ci = c + (size_t)i * ldc + n0;
                acc[j] = j >= nr ? 0.0f : acc_c ? ci[j] : bias ? bias[n0 + j] : 0.0f;
            }
            const float *b = bp + (size_t)n0 * K;
            for (int k = 0; k < K; k++) {
                float x = trans ? a[(size_t)k * lda + i] : a[(size_t)i * lda + k];
                for (int j = 0; j < GEMM_NR; j++) {
                    acc[j] = fmaf(x, b[(size_t)k * GEMM_NR + j], acc[j]);
                }
            }
            memcpy(c + (size_t)i * ldc + n0, acc, sizeof(float) * (size_t)nr);
        }
    }
}

static void gemm(float *c, int ldc, const float *a, int lda, int trans, const float *bp,
                 const float *bias, int acc, int M, int N, int K)
{
#ifdef GEMM_AVX2
    if (__builtin_cpu_supports("avx512f")) {
        gemm_tiles(tiles_avx512[trans], tiles_avx2[trans], c, ldc, a, lda, trans, bp, bias, acc, M,
                   N, K);
        return;
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        gemm_tiles(NULL, tiles_avx2[trans], c, ldc, a, lda, trans, bp, bias, acc, M, N, K);
        return;
    }
#endif
    gemm_generic(c, ldc, a, lda, trans, bp, bias, acc, M, N, K);
}

void lvd_vit_gemm(float *c, int ldc, const float *a, int lda, const float *bp, const float *bias,
                  int M, int N, int K)
{
    gemm(c, ldc, a, lda, 0, bp, bias, 0, M, N, K);
}

/* Rows of K (tokens) per slice of a weight gradient: a slice of the input, packed, stays in L2
 * while every output row block passes over it. */
#define WG_KC 256

void lvd_vit_linear_forward(float *out, const float *inp, int lda, const float *packed,
                            const float *bias, int BT, int C, int OC, int threads)
{
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        int nt = omp_get_num_threads(), t = omp_get_thread_num();
        int lo = (int)((int64_t)BT * t / nt), hi = (int)((int64_t)BT * (t + 1) / nt);
        if (hi > lo) {
            lvd_vit_gemm(out + (size_t)lo * OC, OC, inp + (size_t)lo * lda, lda, packed, bias,
                         hi - lo, OC, C);
        }
    }
}

size_t lvd_vit_gemm_wgrad_scratch(int C, int OC)
{
    return lvd_vit_gemm_packed_size(C, WG_KC) + (size_t)OC * (size_t)C;
}

void lvd_vit_gemm_wgrad(float *dw, const float *dout, int ldo, const float *inp, int lda, float *ws,
                        int BT, int C, int OC, int threads)
{
    int panels = (C + GEMM_NR - 1) / GEMM_NR;
    float *sum = ws + lvd_vit_gemm_packed_size(C, WG_KC);
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        int nt = omp_get_num_threads(), t = omp_get_thread_num();
        int lo = (int)((int64_t)OC * t / nt), hi = (int)((int64_t)OC * (t + 1) / nt);
        int plo = (int)((int64_t)panels * t / nt), phi = (int)((int64_t)panels * (t + 1) / nt);
        for (int k0 = 0; k0 < BT; k0 += WG_KC) {
            int kc = BT - k0 < WG_KC ? BT - k0 : WG_KC;
            /* The threads pack the slice's panels between them, then each adds its rows. */
            if (phi > plo) {
                int c0 = plo * GEMM_NR, cn = (phi * GEMM_NR < C ? phi * GEMM_NR : C) - c0;
                lvd_vit_gemm_pack_n(ws + (size_t)c0 * kc, inp + (size_t)k0 * lda + c0, kc, cn, lda,
                                    1);
            }
#pragma omp barrier
            if (hi > lo) {
                gemm(sum + (size_t)lo * C, C, dout + (size_t)k0 * ldo + lo, ldo, 1, ws, NULL,
                     k0 > 0, hi - lo, C, kc);
            }
#pragma omp barrier
        }
        /* The sum is added once (as sgemm with beta 1 does): dw's earlier contents do not change
         * how this call's terms round. */
        for (int r = lo; r < hi && BT > 0; r++) {
            add_row(dw + (size_t)r * C, sum + (size_t)r * C, C);
        }
    }
}
