/* The inference forward's matrix products on the packed kernel of embed/vit_layers.h
 * (lvd_vit_gemm): the model's packed weights, the linear layers and the attention. OpenBLAS
 * 0.3.21 runs its SSE3 (Prescott) kernels on this machine's CPU, which it does not recognize;
 * the packed AVX2 kernel is faster on every product of the forward, and a weight packed once
 * serves every call instead of being packed again by each sgemm. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "embed/vit_math.h"
#include "embed/vit_model.h"

#define VIT_SIMD __attribute__((target_clones("avx512f", "avx2", "default")))

/* Floats rounded up to a whole number of 64-byte lines, so that every packed operand laid out
 * after another stays aligned as lvd_vit_gemm's panel loads require. */
static size_t lines(size_t floats)
{
    return (floats + 15) / 16 * 16;
}

void vit_packed_free(lvd_vit *m)
{
    free(m->packed.buf);
    free(m->packed.blocks);
    memset(&m->packed, 0, sizeof m->packed);
}

int vit_packed_ensure(lvd_vit *m, int threads, lvd_error *err)
{
    if (m->packed.buf) {
        return 0;
    }
    const lvd_vit_info *in = &m->info;
    int D = in->dim, hid = in->ffn_hidden, f1 = in->ffn == LVD_VIT_SWIGLU ? 2 * hid : hid;
    int K = 3 * in->patch * in->patch;
    size_t patch = lines(lvd_vit_gemm_packed_size(D, K));
    size_t qkv = lines(lvd_vit_gemm_packed_size(3 * D, D));
    size_t proj = lines(lvd_vit_gemm_packed_size(D, D));
    size_t fc1 = lines(lvd_vit_gemm_packed_size(f1, D));
    size_t fc2 = lines(lvd_vit_gemm_packed_size(D, hid));
    size_t total = patch + (size_t)in->depth * (qkv + proj + fc1 + fc2);
    vit_packed *p = &m->packed;
    p->buf = aligned_alloc(64, sizeof(float) * total);
    p->blocks = calloc((size_t)in->depth, sizeof *p->blocks);
    if (!p->buf || !p->blocks) {
        vit_packed_free(m);
        return lvd_fail(err, "vit: out of memory for the packed weights (%zu MB)",
                        total * sizeof(float) >> 20);
    }
    float *next = p->buf;
    p->patch = next;
    lvd_vit_gemm_pack_t(next, m->p.patch_w, D, K, K, threads);
    next += patch;
    for (int l = 0; l < in->depth; l++) {
        const lvd_vit_block *b = &m->p.blocks[l];
        vit_packed_block *k = &p->blocks[l];
        k->qkv = next;
        lvd_vit_gemm_pack_t(next, b->qkv_w, 3 * D, D, D, threads);
        k->proj = next += qkv;
        lvd_vit_gemm_pack_t(next, b->proj_w, D, D, D, threads);
        k->fc1 = next += proj;
        lvd_vit_gemm_pack_t(next, b->fc1_w, f1, D, D, threads);
        k->fc2 = next += fc1;
        lvd_vit_gemm_pack_t(next, b->fc2_w, D, hid, hid, threads);
        next += fc2;
    }
    return 0;
}

void vit_linear_forward(float *out, const float *inp, int lda, const float *packed,
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

size_t vit_attention_scratch(int T, int hd)
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

/* Each row of s (T, T) becomes exp(row - max(row)), terms more than 60 below the maximum
 * dropped (they would be subnormal, as lvd_vit_attention_head documents); inv[i] = 1 / sum. */
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

void vit_attention_forward(float *out, float *att, const float *qkv, int B, int T, int D, int heads,
                           int threads)
{
    int hd = D / heads, ld = 3 * D;
    float scale = 1.0f / sqrtf((float)hd);
    size_t per = vit_attention_scratch(T, hd);
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
