/* The ViT forward pass: token preparation, the blocks, the final norm and the outputs. */
#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "embed/vit_model.h"

void vit_acts_free(lvd_vit_acts *a)
{
    free(a->cols);
    free(a->x);
    free(a->ln);
    free(a->qkv);
    free(a->atty);
    free(a->branch);
    free(a->fch);
    free(a->fch_act);
    free(a->att);
    memset(a, 0, sizeof *a);
}

/* Grows the activation buffers to rows token rows and `threads` attention scratch of T x T. */
static int acts_ensure(lvd_vit *m, size_t rows, size_t T, int threads, lvd_error *err)
{
    lvd_vit_acts *a = &m->acts;
    const lvd_vit_info *in = &m->info;
    size_t att = (size_t)threads * T * T;
    if (rows <= a->cap_rows && att <= a->cap_att) {
        return 0;
    }
    vit_acts_free(a);
    size_t D = (size_t)in->dim;
    size_t f1 = (size_t)in->ffn_hidden * (in->ffn == LVD_VIT_SWIGLU ? 2 : 1);
    size_t k = 3 * (size_t)in->patch * (size_t)in->patch;
    a->cols = malloc(sizeof(float) * rows * k);
    a->x = malloc(sizeof(float) * rows * D);
    a->ln = malloc(sizeof(float) * rows * D);
    a->qkv = malloc(sizeof(float) * rows * 3 * D);
    a->atty = malloc(sizeof(float) * rows * D);
    a->branch = malloc(sizeof(float) * rows * D);
    a->fch = malloc(sizeof(float) * rows * f1);
    a->fch_act = malloc(sizeof(float) * rows * (size_t)in->ffn_hidden);
    a->att = malloc(sizeof(float) * att);
    if (!a->cols || !a->x || !a->ln || !a->qkv || !a->atty || !a->branch || !a->fch ||
        !a->fch_act || !a->att) {
        vit_acts_free(a);
        return lvd_fail(err, "vit: out of memory for %zu tokens", rows);
    }
    a->cap_rows = rows;
    a->cap_att = att;
    return 0;
}

/* x (B, T, D) = [cls + pos0, registers, (patch or mask_token) + pos] per image. */
static void embed_tokens(const lvd_vit *m, const float *pos, const float *emb, const uint8_t *mask,
                         int B, int N, int threads, float *x)
{
    const lvd_vit_params *p = &m->p;
    int D = m->info.dim;
    int R = m->info.n_reg;
    int T = 1 + R + N;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int r = 0; r < B * T; r++) {
        int b = r / T;
        int t = r % T;
        float *o = x + (size_t)r * D;
        if (t > 0 && t <= R) {
            memcpy(o, p->reg_tokens + (size_t)(t - 1) * D, sizeof(float) * D);
            continue;
        }
        int n = t == 0 ? -1 : t - 1 - R; /* patch index, -1 for cls */
        const float *src = p->cls_token;
        if (n >= 0) {
            src = mask && mask[(size_t)b * N + n] ? p->mask_token : emb + ((size_t)b * N + n) * D;
        }
        const float *pe = pos + (size_t)(n + 1) * D;
        for (int d = 0; d < D; d++) {
            o[d] = src[d] + pe[d];
        }
    }
}

static void block_forward(const lvd_vit *m, const lvd_vit_block *bl, lvd_vit_acts *a, int B, int T,
                          int threads)
{
    const lvd_vit_info *in = &m->info;
    int D = in->dim;
    int BT = B * T;
    int hid = in->ffn_hidden;
    int swiglu = in->ffn == LVD_VIT_SWIGLU;
    vit_layernorm_forward(a->ln, NULL, NULL, a->x, bl->norm1_w, bl->norm1_b, BT, D, in->eps,
                          threads);
    vit_matmul_forward(a->qkv, a->ln, D, bl->qkv_w, bl->qkv_b, BT, D, 3 * D, threads);
    vit_attention_forward(a->atty, a->att, a->qkv, B, T, D, in->heads, threads);
    vit_matmul_forward(a->branch, a->atty, D, bl->proj_w, bl->proj_b, BT, D, D, threads);
    vit_residual_forward(a->x, a->branch, bl->ls1, BT, D, threads);
    vit_layernorm_forward(a->ln, NULL, NULL, a->x, bl->norm2_w, bl->norm2_b, BT, D, in->eps,
                          threads);
    vit_matmul_forward(a->fch, a->ln, D, bl->fc1_w, bl->fc1_b, BT, D, swiglu ? 2 * hid : hid,
                       threads);
    if (swiglu) {
        vit_swiglu_forward(a->fch_act, a->fch, BT, hid, threads);
    } else {
        vit_gelu_forward(a->fch_act, a->fch, (size_t)BT * hid, threads);
    }
    vit_matmul_forward(a->branch, a->fch_act, hid, bl->fc2_w, bl->fc2_b, BT, hid, D, threads);
    vit_residual_forward(a->x, a->branch, bl->ls2, BT, D, threads);
}

/* dst (B, count, D) = tokens [t0, t0 + count) of each image of src (B, T, D). */
static void copy_tokens(float *dst, const float *src, int B, int T, int t0, int count, int D)
{
    for (int b = 0; b < B; b++) {
        memcpy(dst + (size_t)b * count * D, src + ((size_t)b * T + t0) * D,
               sizeof(float) * (size_t)count * D);
    }
}

/* Final LayerNorm of every token of the residual stream into acts.ln. */
static void final_norm(const lvd_vit *m, int BT, int threads)
{
    vit_layernorm_forward(m->acts.ln, NULL, NULL, m->acts.x, m->p.norm_w, m->p.norm_b, BT,
                          m->info.dim, m->info.eps, threads);
}

static int check_sizes(const lvd_vit *m, int B, int H, int W, const lvd_vit_outputs *out,
                       lvd_error *err)
{
    int P = m->info.patch;
    if (B < 1 || H < P || W < P || H % P != 0 || W % P != 0) {
        return lvd_fail(err, "vit: input %dx%dx%d: sides must be positive multiples of %d", B, H, W,
                        P);
    }
    if ((int64_t)B * (H / P) * (W / P) > (1 << 24)) {
        return lvd_fail(err, "vit: input %dx%dx%d has too many patches", B, H, W);
    }
    if (out && (out->n_inter < 0 || out->n_inter > m->info.depth)) {
        return lvd_fail(err, "vit: %d intermediate blocks requested of %d", out->n_inter,
                        m->info.depth);
    }
    return 0;
}

/* The forward pass; leaves the final-normed tokens (B, T, D) in m->acts.ln. */
static void run_blocks(lvd_vit *m, int B, int T, int N, const lvd_vit_outputs *out, int threads)
{
    const lvd_vit_info *in = &m->info;
    int D = in->dim;
    int t0 = 1 + in->n_reg;
    int n_inter = out ? out->n_inter : 0;
    for (int l = 0; l < in->depth; l++) {
        block_forward(m, &m->p.blocks[l], &m->acts, B, T, threads);
        int j = l - (in->depth - n_inter);
        if (j >= 0 && (out->inter_cls || out->inter_patch)) {
            final_norm(m, B * T, threads);
            if (out->inter_cls) {
                copy_tokens(out->inter_cls + (size_t)j * B * D, m->acts.ln, B, T, 0, 1, D);
            }
            if (out->inter_patch) {
                copy_tokens(out->inter_patch + (size_t)j * B * N * D, m->acts.ln, B, T, t0, N, D);
            }
        }
    }
    if (out && out->prenorm) {
        memcpy(out->prenorm, m->acts.x, sizeof(float) * (size_t)B * T * D);
    }
    final_norm(m, B * T, threads);
}

static void write_outputs(const lvd_vit *m, int B, int T, int N, const lvd_vit_outputs *out)
{
    int D = m->info.dim;
    int R = m->info.n_reg;
    if (out->cls) {
        copy_tokens(out->cls, m->acts.ln, B, T, 0, 1, D);
    }
    if (out->reg && R > 0) {
        copy_tokens(out->reg, m->acts.ln, B, T, 1, R, D);
    }
    if (out->patch) {
        copy_tokens(out->patch, m->acts.ln, B, T, 1 + R, N, D);
    }
}

/* Runs the model; on success the final-normed tokens are in m->acts.ln and *T_out is T. */
static int forward(lvd_vit *m, const float *x, int B, int H, int W, const uint8_t *mask,
                   const lvd_vit_outputs *out, int *T_out, lvd_error *err)
{
    if (check_sizes(m, B, H, W, out, err) != 0) {
        return -1;
    }
    const lvd_vit_info *in = &m->info;
    int gh = H / in->patch;
    int gw = W / in->patch;
    int N = gh * gw;
    int T = 1 + in->n_reg + N;
    int threads = m->threads > 0 ? m->threads : omp_get_max_threads();
    const float *pos = vit_pos_embed(m, gh, gw, err);
    if (!pos || acts_ensure(m, (size_t)B * T, (size_t)T, threads, err) != 0) {
        return -1;
    }
    /* Threads come from OpenMP; each OpenBLAS call runs on the calling thread. */
    int blas_threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
    lvd_vit_acts *a = &m->acts;
    vit_patch_embed_forward(a->branch, a->cols, x, B, H, W, in->patch, m->p.patch_w, m->p.patch_b,
                            in->dim, threads);
    embed_tokens(m, pos, a->branch, mask, B, N, threads, a->x);
    run_blocks(m, B, T, N, out, threads);
    openblas_set_num_threads(blas_threads);
    *T_out = T;
    return 0;
}

int lvd_vit_forward(lvd_vit *m, const float *x, int B, int H, int W, const uint8_t *mask,
                    const lvd_vit_outputs *out, lvd_error *err)
{
    int T;
    if (forward(m, x, B, H, W, mask, out, &T, err) != 0) {
        return -1;
    }
    write_outputs(m, B, T, T - 1 - m->info.n_reg, out);
    return 0;
}

int lvd_vit_feature_dim(const lvd_vit *m, lvd_vit_pool pool)
{
    return pool == LVD_VIT_POOL_CLS_MEANPATCH ? 2 * m->info.dim : m->info.dim;
}

int lvd_vit_features(lvd_vit *m, const float *x, int B, int H, int W, lvd_vit_pool pool, float *out,
                     lvd_error *err)
{
    int T;
    if (forward(m, x, B, H, W, NULL, NULL, &T, err) != 0) {
        return -1;
    }
    int D = m->info.dim;
    int t0 = 1 + m->info.n_reg;
    int N = T - t0;
    int F = lvd_vit_feature_dim(m, pool);
    for (int b = 0; b < B; b++) {
        const float *tok = m->acts.ln + (size_t)b * T * D;
        float *f = out + (size_t)b * F;
        memcpy(f, tok, sizeof(float) * D);
        if (pool != LVD_VIT_POOL_CLS_MEANPATCH) {
            continue;
        }
        float *mean = f + D;
        memset(mean, 0, sizeof(float) * D);
        for (int n = 0; n < N; n++) {
            const float *row = tok + (size_t)(t0 + n) * D;
            for (int d = 0; d < D; d++) {
                mean[d] += row[d];
            }
        }
        for (int d = 0; d < D; d++) {
            mean[d] /= (float)N;
        }
    }
    return 0;
}
