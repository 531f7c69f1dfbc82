/* The trainable ViT's backward (lvd_vit_train_backward of train/vit_train.h): final norm, the
 * blocks in reverse (each branch on its stochastic-depth subset), then the token preparation:
 * cls, registers, mask token, positional table (through the resize) and patch embedding. */
#include <cblas.h>
#include <string.h>

#include "embed/vit_layers.h"
#include "train/vit_train_internal.h"

/* Slice l of a per-block buffer of `per` floats per slice. */
static float *slice(float *buf, int l, size_t per)
{
    return buf + (size_t)l * per;
}

/* Residual stream slot s. */
static float *resid(const lvd_vit_pass *p, int s)
{
    return p->resid + (size_t)s * p->B * p->T * p->info.dim;
}

/* dres = gradient of the last block's output, from the output gradients through the final
 * norm. */
static void final_norm_backward(lvd_vit_train *m, lvd_vit_pass *p, const float *dcls,
                                const float *dpatch, const float *dreg, int threads)
{
    int B = p->B, T = p->T, N = p->N, D = m->info.dim, R = m->info.n_reg;
    float *dy = p->dln;
    memset(dy, 0, sizeof(float) * (size_t)B * T * D);
    for (int b = 0; b < B; b++) {
        float *row = dy + (size_t)b * T * D;
        if (dcls) {
            memcpy(row, dcls + (size_t)b * D, sizeof(float) * D);
        }
        if (dreg && R > 0) {
            memcpy(row + D, dreg + (size_t)b * R * D, sizeof(float) * (size_t)R * D);
        }
        if (dpatch) {
            memcpy(row + (size_t)(1 + R) * D, dpatch + (size_t)b * N * D,
                   sizeof(float) * (size_t)N * D);
        }
    }
    memset(p->dres, 0, sizeof(float) * (size_t)B * T * D);
    vt_layernorm_backward_sub(p->dres, m->g.norm_w, m->g.norm_b, dy, resid(p, 2 * m->info.depth),
                              p->lnf_mean, p->lnf_rstd, m->p.norm_w, NULL, B, T, D, threads);
}

/* The pruned forward's final norm: dcmp (n_keep, D) = gradient of the wanted rows of the last
 * block's output, from their output gradients. */
static void final_norm_backward_kept(lvd_vit_train *m, lvd_vit_pass *p, const float *dcls,
                                     const float *dpatch, const float *dreg, int threads)
{
    int T = p->T, N = p->N, D = m->info.dim, R = m->info.n_reg, n = p->n_keep;
    float *dy = p->dln;
    for (int j = 0; j < n; j++) {
        int b = p->krow[j] / T, t = p->krow[j] % T;
        const float *src = NULL;
        if (t == 0) {
            src = dcls ? dcls + (size_t)b * D : NULL;
        } else if (t <= R) {
            src = dreg ? dreg + ((size_t)b * R + t - 1) * D : NULL;
        } else {
            src = dpatch ? dpatch + ((size_t)b * N + t - 1 - R) * D : NULL;
        }
        if (src) {
            memcpy(dy + (size_t)j * D, src, sizeof(float) * D);
        } else {
            memset(dy + (size_t)j * D, 0, sizeof(float) * D);
        }
    }
    memset(p->dcmp, 0, sizeof(float) * (size_t)n * D);
    vt_layernorm_backward_sub(p->dcmp, m->g.norm_w, m->g.norm_b, dy, resid(p, 2 * m->info.depth),
                              p->lnf_mean, p->lnf_rstd, m->p.norm_w, p->iota, n, 1, D, threads);
}

/* Backward of block_forward_kept (train/vit_train_forward.c): dcmp holds the gradient of the
 * wanted rows of the block's output; dres receives that of the block's input (every row). */
static void block_backward_kept(lvd_vit_train *m, lvd_vit_pass *p, int l, int threads)
{
    const lvd_vit_info *in = &m->info;
    const vt_block *bl = &m->p.blocks[l];
    vt_block *gb = &m->g.blocks[l];
    const vt_packed *pk = &m->packed[l];
    int B = p->B, T = p->T, D = in->dim, hid = in->ffn_hidden, n = p->n_keep;
    int swiglu = in->ffn == LVD_VIT_SWIGLU, f1 = swiglu ? 2 * hid : hid;
    size_t btd = (size_t)B * T * D, bt = (size_t)B * T;
    float *fch = slice(p->fch, l, bt * f1), *x1 = resid(p, 2 * l + 1);
    vt_residual_backward_sub(p->dbr, gb->ls2, p->dcmp, slice(p->ffn_out, l, btd), bl->ls2, 1.0f,
                             p->iota, n, 1, D, threads);
    /* fc2's input gradient first, so that one pass recomputes the activation and applies its
     * derivative; then fc2's weight gradient from the recomputed activation. */
    vt_matmul_backward_packed(p->dfch, f1, NULL, NULL, p->dbr, D, p->act, hid, pk->fc2_n, NULL, n,
                              hid, D, threads);
    vt_ffn_act_both(p->act, p->dfch, fch, n, hid, swiglu, threads);
    vt_matmul_backward_packed(NULL, 0, gb->fc2_w, gb->fc2_b, p->dbr, D, p->act, hid, NULL, p->wgs,
                              n, hid, D, threads);
    vt_matmul_backward_packed(p->dln, D, gb->fc1_w, gb->fc1_b, p->dfch, f1, slice(p->ln2, l, btd),
                              D, pk->fc1_n, p->wgs, n, D, f1, threads);
    vt_layernorm_backward_sub(p->dcmp, gb->norm2_w, gb->norm2_b, p->dln, x1,
                              slice(p->ln2_mean, l, bt), slice(p->ln2_rstd, l, bt), bl->norm2_w,
                              p->iota, n, 1, D, threads);

    float *qkv = slice(p->qkv, l, 3 * btd), *atty = slice(p->atty, l, btd);
    vt_residual_backward_sub(p->dbr, gb->ls1, p->dcmp, slice(p->attn_out, l, btd), bl->ls1, 1.0f,
                             p->iota, n, 1, D, threads);
    vt_matmul_backward_packed(p->datty, D, gb->proj_w, gb->proj_b, p->dbr, D, atty, D, pk->proj_n,
                              p->wgs, n, D, D, threads);
    /* Rows that are no query get no q gradient. */
    memset(p->dqkv, 0, sizeof(float) * 3 * btd);
    vt_attention_backward(p->dqkv, p->datty, qkv, atty, slice(p->lse, l, bt * in->heads), p->att,
                          p->kq, p->kq_off, B, T, D, in->heads, threads);
    vt_matmul_backward_packed(p->dln, D, gb->qkv_w, gb->qkv_b, p->dqkv, 3 * D,
                              slice(p->ln1, l, btd), D, pk->qkv_n, p->wgs, B * T, D, 3 * D,
                              threads);
    /* The residual path carries the wanted rows' gradient to the block input. */
    memset(p->dres, 0, sizeof(float) * btd);
    for (int j = 0; j < n; j++) {
        memcpy(p->dres + (size_t)p->krow[j] * D, p->dcmp + (size_t)j * D, sizeof(float) * D);
    }
    vt_layernorm_backward_sub(p->dres, gb->norm1_w, gb->norm1_b, p->dln, resid(p, 2 * l),
                              slice(p->ln1_mean, l, bt), slice(p->ln1_rstd, l, bt), bl->norm1_w,
                              p->sub + (size_t)(2 * l) * B, B, T, D, threads);
}

/* dres: gradient of block l's output on entry, of its input on return. */
static void block_backward(lvd_vit_train *m, lvd_vit_pass *p, int l, int threads)
{
    const lvd_vit_info *in = &m->info;
    const vt_block *bl = &m->p.blocks[l];
    vt_block *gb = &m->g.blocks[l];
    const vt_packed *pk = &m->packed[l];
    int B = p->B, T = p->T, D = in->dim, hid = in->ffn_hidden;
    int swiglu = in->ffn == LVD_VIT_SWIGLU, f1 = swiglu ? 2 * hid : hid;
    size_t btd = (size_t)B * T * D, bt = (size_t)B * T;

    /* FFN branch: x2 = x1 + scale * ls2 * ffn(norm2(x1)) on its subset. */
    const int *sub = p->sub + (size_t)(2 * l + 1) * B;
    int n = p->nsub[2 * l + 1], rows = n * T;
    float scale = (float)B / (float)n;
    float *fch = slice(p->fch, l, bt * f1);
    vt_residual_backward_sub(p->dbr, gb->ls2, p->dres, slice(p->ffn_out, l, btd), bl->ls2, scale,
                             sub, n, T, D, threads);
    /* fc2's input gradient first, so that one pass recomputes the activation and applies its
     * derivative; then fc2's weight gradient from the recomputed activation. */
    vt_matmul_backward_packed(p->dfch, f1, NULL, NULL, p->dbr, D, p->act, hid, pk->fc2_n, NULL,
                              rows, hid, D, threads);
    vt_ffn_act_both(p->act, p->dfch, fch, rows, hid, swiglu, threads);
    vt_matmul_backward_packed(NULL, 0, gb->fc2_w, gb->fc2_b, p->dbr, D, p->act, hid, NULL, p->wgs,
                              rows, hid, D, threads);
    vt_matmul_backward_packed(p->dln, D, gb->fc1_w, gb->fc1_b, p->dfch, f1, slice(p->ln2, l, btd),
                              D, pk->fc1_n, p->wgs, rows, D, f1, threads);
    vt_layernorm_backward_sub(p->dres, gb->norm2_w, gb->norm2_b, p->dln, resid(p, 2 * l + 1),
                              slice(p->ln2_mean, l, bt), slice(p->ln2_rstd, l, bt), bl->norm2_w,
                              sub, n, T, D, threads);

    /* Attention branch: x1 = x0 + scale * ls1 * proj(attn(norm1(x0))) on its subset. */
    sub = p->sub + (size_t)(2 * l) * B;
    n = p->nsub[2 * l];
    rows = n * T;
    scale = (float)B / (float)n;
    float *qkv = slice(p->qkv, l, 3 * btd), *atty = slice(p->atty, l, btd);
    vt_residual_backward_sub(p->dbr, gb->ls1, p->dres, slice(p->attn_out, l, btd), bl->ls1, scale,
                             sub, n, T, D, threads);
    vt_matmul_backward_packed(p->datty, D, gb->proj_w, gb->proj_b, p->dbr, D, atty, D, pk->proj_n,
                              p->wgs, rows, D, D, threads);
    vt_attention_backward(p->dqkv, p->datty, qkv, atty, slice(p->lse, l, bt * in->heads), p->att,
                          NULL, NULL, n, T, D, in->heads, threads);
    vt_matmul_backward_packed(p->dln, D, gb->qkv_w, gb->qkv_b, p->dqkv, 3 * D,
                              slice(p->ln1, l, btd), D, pk->qkv_n, p->wgs, rows, D, 3 * D, threads);
    vt_layernorm_backward_sub(p->dres, gb->norm1_w, gb->norm1_b, p->dln, resid(p, 2 * l),
                              slice(p->ln1_mean, l, bt), slice(p->ln1_rstd, l, bt), bl->norm1_w,
                              sub, n, T, D, threads);
}

/* acc (n) += x (n). */
static void add_vec(float *acc, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        acc[i] += x[i];
    }
}

/* From dres, the gradient of the tokens entering block 0: cls, registers, positions (through
 * the resize), mask token and patch embedding. */
static void tokens_backward(lvd_vit_train *m, lvd_vit_pass *p, int threads)
{
    const lvd_vit_info *in = &m->info;
    int B = p->B, T = p->T, N = p->N, D = in->dim, R = in->n_reg, G = in->grid;
    float *dtok = p->dtok;
    vt_sum_images(dtok, p->dres, B, T, D, threads);
    add_vec(m->g.cls, dtok, (size_t)D);
    if (R > 0) {
        add_vec(m->g.reg, dtok + D, (size_t)R * D);
    }
    /* The positional gradient (1 + N, D): cls row, then the patch rows (dtok after the
     * registers), moved next to it. */
    float *dpos = dtok + (size_t)R * D;
    memmove(dpos, dtok, sizeof(float) * D);
    add_vec(m->g.pos, dpos, (size_t)D);
    if (p->wy) {
        lvd_vit_pos_resize_backward(m->g.pos + D, p->pos_tmp, dpos + D, G, p->gh, p->gw, D, p->wy,
                                    p->wx);
    } else {
        add_vec(m->g.pos + D, dpos + D, (size_t)N * D);
    }
    /* Patch embeddings: the gradient of unmasked patches; masked ones go to the mask token. */
    float *demb = p->emb;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int r = 0; r < B * N; r++) {
        const float *src = p->dres + ((size_t)(r / N) * T + 1 + R + r % N) * D;
        float *dst = demb + (size_t)r * D;
        if (p->mask[r]) {
            memset(dst, 0, sizeof(float) * D);
        } else {
            memcpy(dst, src, sizeof(float) * D);
        }
    }
    for (int r = 0; r < B * N; r++) {
        if (p->mask[r]) {
            add_vec(m->g.mask_token, p->dres + ((size_t)(r / N) * T + 1 + R + r % N) * D,
                    (size_t)D);
        }
    }
    int K = 3 * in->patch * in->patch;
    vt_matmul_backward(NULL, 0, m->g.patch_w, m->g.patch_b, demb, D, p->cols, K, NULL, B * N, K, D,
                       threads);
}

int lvd_vit_train_backward(lvd_vit_train *m, lvd_vit_pass *p, const float *dcls,
                           const float *dpatch, const float *dreg, lvd_error *err)
{
    if (!m || !p) {
        return lvd_fail(err, "vit: backward without a model or pass");
    }
    if (vt_check_pass(m, p, err) != 0) {
        return -1;
    }
    if (!p->grad) {
        return lvd_fail(err, "vit: backward on a forward-only pass");
    }
    if (!p->ready) {
        return lvd_fail(err, "vit: backward before a forward on this pass");
    }
    int threads = vt_threads(m);
    int blas_threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
    vt_pack_backward(m, threads);
    if (p->pruned) {
        final_norm_backward_kept(m, p, dcls, dpatch, dreg, threads);
    } else {
        final_norm_backward(m, p, dcls, dpatch, dreg, threads);
    }
    for (int l = m->info.depth - 1; l >= 0; l--) {
        if (l == m->info.depth - 1 && p->pruned) {
            block_backward_kept(m, p, l, threads);
        } else {
            block_backward(m, p, l, threads);
        }
    }
    tokens_backward(m, p, threads);
    openblas_set_num_threads(blas_threads);
    return 0;
}
