/* The ViT forward pass: token preparation, the blocks, the final norm and the outputs. The
 * matrix products run on the model's packed weights (embed/vit_forward_gemm.c). */
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
    free(a->att);
    memset(a, 0, sizeof *a);
}

/* Grows the activation buffers to rows token rows and `threads` attention scratches for T. */
static int acts_ensure(lvd_vit *m, size_t rows, size_t T, int threads, lvd_error *err)
{
    lvd_vit_acts *a = &m->acts;
    const lvd_vit_info *in = &m->info;
    size_t att = (size_t)threads * lvd_vit_attention_scratch((int)T, in->dim / in->heads);
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
    a->att = aligned_alloc(64, sizeof(float) * att);
    if (!a->cols || !a->x || !a->ln || !a->qkv || !a->atty || !a->branch || !a->fch || !a->att) {
        vit_acts_free(a);
        return lvd_fail(err, "vit: out of memory for %zu tokens", rows);
    }
    a->cap_rows = rows;
    a->cap_att = att;
    return 0;
}

/* branch (BT, D) = fc2(act(fc1(ln))), without fc2's bias. */
static void ffn_forward(const lvd_vit *m, const lvd_vit_block *bl, const vit_packed_block *pk,
                        lvd_vit_acts *a, int BT, int threads)
{
    const lvd_vit_info *in = &m->info;
    int D = in->dim;
    int hid = in->ffn_hidden;
    int f1 = in->ffn == LVD_VIT_SWIGLU ? 2 * hid : hid;
    lvd_vit_linear_forward(a->fch, a->ln, D, pk->fc1, NULL, BT, D, f1, threads);
    if (in->ffn == LVD_VIT_SWIGLU) {
        lvd_vit_swiglu_forward(a->fch, bl->fc1_b, BT, hid, threads);
    } else {
        lvd_vit_gelu_forward(a->fch, bl->fc1_b, BT, hid, threads);
    }
    lvd_vit_linear_forward(a->branch, a->fch, f1, pk->fc2, NULL, BT, hid, D, threads);
}

static void block_forward(const lvd_vit *m, int l, lvd_vit_acts *a, int B, int T, int threads)
{
    const lvd_vit_info *in = &m->info;
    const lvd_vit_block *bl = &m->p.blocks[l];
    const vit_packed_block *pk = &m->packed.blocks[l];
    int D = in->dim;
    int BT = B * T;
    lvd_vit_layernorm_forward(a->ln, NULL, NULL, a->x, bl->norm1_w, bl->norm1_b, BT, D, in->eps,
                              threads);
    lvd_vit_linear_forward(a->qkv, a->ln, D, pk->qkv, bl->qkv_b, BT, D, 3 * D, threads);
    lvd_vit_attention_forward(a->atty, a->att, a->qkv, B, T, D, in->heads, threads);
    lvd_vit_linear_forward(a->branch, a->atty, D, pk->proj, NULL, BT, D, D, threads);
    lvd_vit_residual_forward(a->x, a->branch, bl->proj_b, bl->ls1, BT, D, threads);
    lvd_vit_layernorm_forward(a->ln, NULL, NULL, a->x, bl->norm2_w, bl->norm2_b, BT, D, in->eps,
                              threads);
    ffn_forward(m, bl, pk, a, BT, threads);
    lvd_vit_residual_forward(a->x, a->branch, bl->fc2_b, bl->ls2, BT, D, threads);
}

/* One forward call: inputs, sizes and requested outputs. */
typedef struct fwd {
    const float *x;             /* (B, 3, H, W) */
    const uint8_t *mask;        /* (B, N) or NULL */
    const float *pos;           /* (1 + N, D) positional table for the grid */
    const lvd_vit_outputs *out; /* or NULL */
    int B, H, W, N, T;
} fwd;

/* Tokens [t0, t0 + count) of the nb images of src (nb, T, D) into dst (B, count, D) from image
 * b0 on. */
static void copy_tokens(float *dst, const float *src, int b0, int nb, int T, int t0, int count,
                        int D)
{
    for (int b = 0; b < nb; b++) {
        memcpy(dst + (size_t)(b0 + b) * count * D, src + ((size_t)b * T + t0) * D,
               sizeof(float) * (size_t)count * D);
    }
}

/* Final LayerNorm of rows tokens of the residual stream v->x into v->ln. */
static void final_norm(const lvd_vit *m, lvd_vit_acts *v, int rows, int threads)
{
    lvd_vit_layernorm_forward(v->ln, NULL, NULL, v->x, m->p.norm_w, m->p.norm_b, rows, m->info.dim,
                              m->info.eps, threads);
}

/* The activation buffers from image b0 on (the model's buffers, offset), with att as the
 * attention scratch. */
static lvd_vit_acts acts_view(const lvd_vit *m, const fwd *f, int b0, float *att)
{
    const lvd_vit_info *in = &m->info;
    const lvd_vit_acts *a = &m->acts;
    size_t r = (size_t)b0 * f->T;
    size_t D = (size_t)in->dim;
    size_t hid = (size_t)in->ffn_hidden;
    size_t f1 = in->ffn == LVD_VIT_SWIGLU ? 2 * hid : hid;
    lvd_vit_acts v = *a;
    v.cols = a->cols + (size_t)b0 * f->N * 3 * in->patch * in->patch;
    v.x = a->x + r * D;
    v.ln = a->ln + r * D;
    v.qkv = a->qkv + r * 3 * D;
    v.atty = a->atty + r * D;
    v.branch = a->branch + r * D;
    v.fch = a->fch + r * f1;
    v.att = att;
    return v;
}

/* Runs images [b0, b0 + nb) through the model on `threads` threads, writing the intermediate
 * and pre-norm outputs; the final-normed tokens land in the model's ln buffer. att is
 * attention scratch for `threads` threads. */
static void forward_images(const lvd_vit *m, const fwd *f, int b0, int nb, int threads, float *att)
{
    const lvd_vit_info *in = &m->info;
    const lvd_vit_outputs *out = f->out;
    int D = in->dim, T = f->T, N = f->N, t0 = 1 + in->n_reg;
    lvd_vit_acts v = acts_view(m, f, b0, att);
    const float *x = f->x + (size_t)b0 * 3 * f->H * f->W;
    int K = 3 * in->patch * in->patch;
    lvd_vit_im2col(v.cols, x, nb, f->H, f->W, in->patch, threads);
    lvd_vit_linear_forward(v.branch, v.cols, K, m->packed.patch, m->p.patch_b, nb * N, K, D,
                           threads);
    lvd_vit_embed_tokens(v.x, v.branch, f->mask ? f->mask + (size_t)b0 * N : NULL, m->p.cls_token,
                         m->p.reg_tokens, m->p.mask_token, f->pos, nb, N, in->n_reg, D, threads);
    int n_inter = out ? out->n_inter : 0;
    for (int l = 0; l < in->depth; l++) {
        block_forward(m, l, &v, nb, T, threads);
        int j = l - (in->depth - n_inter);
        if (j < 0 || (!out->inter_cls && !out->inter_patch)) {
            continue;
        }
        final_norm(m, &v, nb * T, threads);
        if (out->inter_cls) {
            copy_tokens(out->inter_cls + (size_t)j * f->B * D, v.ln, b0, nb, T, 0, 1, D);
        }
        if (out->inter_patch) {
            copy_tokens(out->inter_patch + (size_t)j * f->B * N * D, v.ln, b0, nb, T, t0, N, D);
        }
    }
    if (out && out->prenorm) {
        copy_tokens(out->prenorm, v.x, b0, nb, T, 0, T, D);
    }
    final_norm(m, &v, nb * T, threads);
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

static void write_outputs(const lvd_vit *m, int B, int T, int N, const lvd_vit_outputs *out)
{
    int D = m->info.dim;
    int R = m->info.n_reg;
    if (out->cls) {
        copy_tokens(out->cls, m->acts.ln, 0, B, T, 0, 1, D);
    }
    if (out->reg && R > 0) {
        copy_tokens(out->reg, m->acts.ln, 0, B, T, 1, R, D);
    }
    if (out->patch) {
        copy_tokens(out->patch, m->acts.ln, 0, B, T, 1 + R, N, D);
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
    fwd f = {.x = x, .mask = mask, .out = out, .B = B, .H = H, .W = W};
    int gh = H / in->patch;
    int gw = W / in->patch;
    f.N = gh * gw;
    f.T = 1 + in->n_reg + f.N;
    int threads = m->threads > 0 ? m->threads : omp_get_max_threads();
    f.pos = vit_pos_embed(m, gh, gw, err);
    if (!f.pos || acts_ensure(m, (size_t)B * f.T, (size_t)f.T, threads, err) != 0 ||
        vit_packed_ensure(m, threads, err) != 0) {
        return -1;
    }
    int hd = in->dim / in->heads;
    if (threads > 1 && (B % threads == 0 || B >= 4 * threads)) {
        /* Whole images per thread: no synchronization inside the forward. */
#pragma omp parallel num_threads(threads)
        {
            int nt = omp_get_num_threads(), t = omp_get_thread_num();
            int b0 = B * t / nt, b1 = B * (t + 1) / nt;
            if (b1 > b0) {
                forward_images(m, &f, b0, b1 - b0, 1,
                               m->acts.att + (size_t)t * lvd_vit_attention_scratch(f.T, hd));
            }
        }
    } else {
        /* Few images: rows, heads and elements of each layer split over the threads. */
        forward_images(m, &f, 0, B, threads, m->acts.att);
    }
    *T_out = f.T;
    return 0;
}

int lvd_vit_forward(lvd_vit *m, const float *x, int B, int H, int W, const uint8_t *mask,
                    const lvd_vit_outputs *out, lvd_error *err)
{
    int T;
    if (forward(m, x, B, H, W, mask, out, &T, err) != 0) {
        return -1;
    }
    if (out) {
        write_outputs(m, B, T, T - 1 - m->info.n_reg, out);
    }
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
