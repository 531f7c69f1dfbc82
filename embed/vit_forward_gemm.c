/* The inference forward's linear layers on the packed kernel of embed/vit_layers.h
 * (lvd_vit_gemm) and the model's packed weights (the attention, on the same kernel, is
 * lvd_vit_attention_forward). OpenBLAS 0.3.21 runs its SSE3 (Prescott) kernels on this
 * machine's CPU, which it does not recognize; the packed kernel is faster on every product of
 * the forward, and a weight packed once serves every call instead of being packed again by each
 * sgemm. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "embed/vit_model.h"

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
