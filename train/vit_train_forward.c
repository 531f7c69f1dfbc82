/* The trainable ViT's forward (lvd_vit_train_forward of train/vit_train.h): token preparation,
 * blocks with stochastic-depth subsets, final norm, and the activations the backward reads. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "embed/vit_layers.h"
#include "embed/vit_rng.h"
#include "train/vit_train_internal.h"

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* Draws the image subset of every branch (all images when rate is 0): the first
 * max(int(B * (1 - rate)), 1) of a random permutation, sorted. */
static void draw_subsets(lvd_vit_pass *p, double rate, uint64_t seed)
{
    int B = p->B;
    int keep = B;
    if (rate > 0.0) {
        keep = (int)((double)B * (1.0 - rate));
        keep = keep < 1 ? 1 : keep;
    }
    lvd_rng r = {seed};
    for (int i = 0; i < 2 * p->info.depth; i++) {
        int *sub = p->sub + (size_t)i * B, *pos = p->subpos + (size_t)i * B;
        for (int b = 0; b < B; b++) {
            sub[b] = b;
        }
        for (int b = 0; keep < B && b < keep; b++) {
            /* Partial Fisher-Yates: sub[b] becomes a uniform pick among the rest. */
            int j = b + lvd_rng_below(&r, B - b);
            int t = sub[b];
            sub[b] = sub[j];
            sub[j] = t;
        }
        qsort(sub, (size_t)keep, sizeof *sub, cmp_int);
        p->nsub[i] = keep;
        for (int b = 0; b < B; b++) {
            pos[b] = -1;
        }
        for (int j = 0; j < keep; j++) {
            pos[sub[j]] = j;
        }
    }
}

/* Slice l of a per-block buffer of `per` floats per slice (slice 0 in a forward-only pass). */
static float *slice(const lvd_vit_pass *p, float *buf, int l, size_t per)
{
    return buf ? buf + (size_t)(p->grad ? l : 0) * per : NULL;
}

/* Residual stream slot s (0 .. 2 depth), one shared slot in a forward-only pass. */
static float *resid(const lvd_vit_pass *p, int s)
{
    return p->resid + (size_t)(p->grad ? s : 0) * p->B * p->T * p->info.dim;
}

/* The positional table of the pass's grid into p->pos (a copy of the stored one, or resized). */
static void positions(const lvd_vit_train *m, lvd_vit_pass *p)
{
    int D = m->info.dim, G = m->info.grid;
    if (!p->wy) {
        memcpy(p->pos, m->p.pos, sizeof(float) * (1 + (size_t)p->N) * D);
        return;
    }
    memcpy(p->pos, m->p.pos, sizeof(float) * D);
    lvd_vit_pos_resize(p->pos + D, p->pos_tmp, m->p.pos + D, G, p->gh, p->gw, D, p->wy, p->wx);
}

static void block_forward(const lvd_vit_train *m, lvd_vit_pass *p, int l, int threads)
{
    const lvd_vit_info *in = &m->info;
    const vt_block *bl = &m->p.blocks[l];
    const vt_packed *pk = &m->packed[l];
    int B = p->B, T = p->T, D = in->dim, hid = in->ffn_hidden;
    int swiglu = in->ffn == LVD_VIT_SWIGLU, f1 = swiglu ? 2 * hid : hid;
    size_t btd = (size_t)B * T * D, bt = (size_t)B * T;
    float *x0 = resid(p, 2 * l), *x1 = resid(p, 2 * l + 1), *x2 = resid(p, 2 * l + 2);

    /* Attention branch on its subset. */
    const int *sub = p->sub + (size_t)(2 * l) * B;
    int n = p->nsub[2 * l], rows = n * T;
    float *ln1 = slice(p, p->ln1, l, btd), *qkv = slice(p, p->qkv, l, 3 * btd);
    float *atty = slice(p, p->atty, l, btd), *ao = slice(p, p->attn_out, l, btd);
    vt_layernorm_forward_sub(ln1, slice(p, p->ln1_mean, l, bt), slice(p, p->ln1_rstd, l, bt), x0,
                             sub, n, T, bl->norm1_w, bl->norm1_b, D, in->eps, threads);
    lvd_vit_linear_forward(qkv, ln1, D, pk->qkv_t, bl->qkv_b, rows, D, 3 * D, threads);
    vt_attention_forward(atty, slice(p, p->lse, l, bt * in->heads), p->att, qkv, NULL, NULL, n, T,
                         D, in->heads, threads);
    lvd_vit_linear_forward(ao, atty, D, pk->proj_t, bl->proj_b, rows, D, D, threads);
    vt_residual_forward_sub(x1, x0, ao, bl->ls1, (float)B / (float)n,
                            p->subpos + (size_t)(2 * l) * B, B, T, D, threads);

    /* FFN branch on its subset. */
    sub = p->sub + (size_t)(2 * l + 1) * B;
    n = p->nsub[2 * l + 1];
    rows = n * T;
    float *ln2 = slice(p, p->ln2, l, btd), *fch = slice(p, p->fch, l, bt * f1);
    float *fo = slice(p, p->ffn_out, l, btd);
    vt_layernorm_forward_sub(ln2, slice(p, p->ln2_mean, l, bt), slice(p, p->ln2_rstd, l, bt), x1,
                             sub, n, T, bl->norm2_w, bl->norm2_b, D, in->eps, threads);
    lvd_vit_linear_forward(fch, ln2, D, pk->fc1_t, bl->fc1_b, rows, D, f1, threads);
    vt_ffn_act_forward(p->act, fch, rows, hid, swiglu, threads);
    lvd_vit_linear_forward(fo, p->act, hid, pk->fc2_t, bl->fc2_b, rows, hid, D, threads);
    vt_residual_forward_sub(x2, x1, fo, bl->ls2, (float)B / (float)n,
                            p->subpos + (size_t)(2 * l + 1) * B, B, T, D, threads);
}

/* The last block l on the wanted rows only (p->pruned): norm1 and qkv on every row (keys and
 * values), then queries, projection, residual, norm2, FFN and residual on the n_keep compact
 * rows, into slot 2l + 1 and 2l + 2 (a grad pass) or the free ln1 buffer (forward-only). */
static void block_forward_kept(const lvd_vit_train *m, lvd_vit_pass *p, int l, int threads)
{
    const lvd_vit_info *in = &m->info;
    const vt_block *bl = &m->p.blocks[l];
    const vt_packed *pk = &m->packed[l];
    int B = p->B, T = p->T, D = in->dim, hid = in->ffn_hidden, n = p->n_keep;
    int swiglu = in->ffn == LVD_VIT_SWIGLU, f1 = swiglu ? 2 * hid : hid;
    size_t btd = (size_t)B * T * D, bt = (size_t)B * T;
    float *x0 = resid(p, 2 * l);
    float *ln1 = slice(p, p->ln1, l, btd), *qkv = slice(p, p->qkv, l, 3 * btd);
    float *x1 = p->grad ? resid(p, 2 * l + 1) : ln1, *x2 = p->grad ? resid(p, 2 * l + 2) : ln1;
    float *atty = slice(p, p->atty, l, btd), *ao = slice(p, p->attn_out, l, btd);
    vt_layernorm_forward_sub(ln1, slice(p, p->ln1_mean, l, bt), slice(p, p->ln1_rstd, l, bt), x0,
                             p->sub + (size_t)(2 * l) * B, B, T, bl->norm1_w, bl->norm1_b, D,
                             in->eps, threads);
    lvd_vit_linear_forward(qkv, ln1, D, pk->qkv_t, bl->qkv_b, B * T, D, 3 * D, threads);
    vt_attention_forward(atty, slice(p, p->lse, l, bt * in->heads), p->att, qkv, p->kq, p->kq_off,
                         B, T, D, in->heads, threads);
    lvd_vit_linear_forward(ao, atty, D, pk->proj_t, bl->proj_b, n, D, D, threads);
    vt_residual_forward_rows(x1, x0, ao, bl->ls1, p->krow, n, D, threads);
    float *ln2 = slice(p, p->ln2, l, btd), *fch = slice(p, p->fch, l, bt * f1);
    float *fo = slice(p, p->ffn_out, l, btd);
    vt_layernorm_forward_sub(ln2, slice(p, p->ln2_mean, l, bt), slice(p, p->ln2_rstd, l, bt), x1,
                             p->iota, n, 1, bl->norm2_w, bl->norm2_b, D, in->eps, threads);
    lvd_vit_linear_forward(fch, ln2, D, pk->fc1_t, bl->fc1_b, n, D, f1, threads);
    vt_ffn_act_forward(p->act, fch, n, hid, swiglu, threads);
    lvd_vit_linear_forward(fo, p->act, hid, pk->fc2_t, bl->fc2_b, n, hid, D, threads);
    vt_residual_forward_sub(x2, x1, fo, bl->ls2, 1.0f, p->iota, n, 1, D, threads);
}

/* The final norm of the compact rows x (n_keep, D) into their rows of p->out (the others 0). */
static void final_norm_kept(const lvd_vit_train *m, lvd_vit_pass *p, const float *x, int threads)
{
    int D = m->info.dim;
    memset(p->out, 0, sizeof(float) * (size_t)p->B * p->T * D);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int j = 0; j < p->n_keep; j++) {
        float s;
        p->lnf_mean[j] = lvd_vit_layernorm_row(p->out + (size_t)p->krow[j] * D, x + (size_t)j * D,
                                               m->p.norm_w, m->p.norm_b, D, m->info.eps, &s);
        p->lnf_rstd[j] = s;
    }
}

/* Tokens [t0, t0 + count) of every image of src (B, T, D) into dst (B, count, D). */
static void copy_tokens(float *dst, const float *src, int B, int T, int t0, int count, int D)
{
    for (int b = 0; b < B; b++) {
        memcpy(dst + (size_t)b * count * D, src + ((size_t)b * T + t0) * D,
               sizeof(float) * (size_t)count * D);
    }
}

int lvd_vit_train_forward(lvd_vit_train *m, lvd_vit_pass *p, const float *x, const uint8_t *mask,
                          const lvd_vit_drop *drop, const lvd_vit_train_outputs *out,
                          lvd_error *err)
{
    if (!m || !p || !x) {
        return lvd_fail(err, "vit: forward without a model, pass or input");
    }
    if (vt_check_pass(m, p, err) != 0) {
        return -1;
    }
    double rate = drop ? drop->rate : 0.0;
    if (!(rate >= 0.0 && rate <= 1.0)) {
        return lvd_fail(err, "vit: drop-path rate %g outside [0, 1]", rate);
    }
    const lvd_vit_info *in = &m->info;
    int B = p->B, N = p->N, T = p->T, D = in->dim, R = in->n_reg;
    int threads = vt_threads(m);
    p->ready = 0;
    draw_subsets(p, rate, drop ? drop->seed : 0);
    for (size_t i = 0; i < (size_t)B * N; i++) {
        p->mask[i] = mask && mask[i] ? 1 : 0;
    }
    int blas_threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
    positions(m, p);
    vt_pack_forward(m, threads);
    int K = 3 * in->patch * in->patch;
    lvd_vit_im2col(p->cols, x, B, p->H, p->W, in->patch, threads);
    lvd_vit_linear_forward(p->emb, p->cols, K, m->patch_t, m->p.patch_b, B * N, K, D, threads);
    lvd_vit_embed_tokens(resid(p, 0), p->emb, p->mask, m->p.cls, m->p.reg, m->p.mask_token, p->pos,
                         B, N, R, D, threads);
    int last = in->depth - 1;
    p->pruned = in->depth > 0 && !p->keep_all && p->n_keep < B * T && p->nsub[2 * last] == B &&
                p->nsub[2 * last + 1] == B;
    for (int l = 0; l < in->depth; l++) {
        if (l == last && p->pruned) {
            block_forward_kept(m, p, l, threads);
        } else {
            block_forward(m, p, l, threads);
        }
    }
    if (p->pruned) {
        final_norm_kept(m, p, p->grad ? resid(p, 2 * in->depth) : p->ln1, threads);
    } else {
        lvd_vit_layernorm_forward(p->out, p->lnf_mean, p->lnf_rstd, resid(p, 2 * in->depth),
                                  m->p.norm_w, m->p.norm_b, B * T, D, in->eps, threads);
    }
    openblas_set_num_threads(blas_threads);
    if (out && out->cls) {
        copy_tokens(out->cls, p->out, B, T, 0, 1, D);
    }
    if (out && out->reg && R > 0) {
        copy_tokens(out->reg, p->out, B, T, 1, R, D);
    }
    if (out && out->patch) {
        copy_tokens(out->patch, p->out, B, T, 1 + R, N, D);
    }
    p->ready = 1;
    return 0;
}
