/* Passes of the trainable ViT (train/vit_train.h): every activation and scratch buffer of one
 * shape in one allocation, laid out once. */
#include <stdlib.h>
#include <string.h>

#include "embed/vit_layers.h"
#include "train/vit_train_internal.h"

/* One buffer of the pass: where its pointer goes and its size. */
typedef struct slot {
    void **ptr;
    double count; /* elements (double: sizes are checked before any size_t product) */
    size_t elem;  /* bytes per element */
} slot;

#define ALIGN 64

int vt_check_pass(const lvd_vit_train *m, const lvd_vit_pass *p, lvd_error *err)
{
    const lvd_vit_info *a = &m->info, *b = &p->info;
    if (a->dim != b->dim || a->depth != b->depth || a->heads != b->heads || a->patch != b->patch ||
        a->grid != b->grid || a->n_reg != b->n_reg || a->ffn != b->ffn ||
        a->ffn_hidden != b->ffn_hidden || a->pos_antialias != b->pos_antialias) {
        return lvd_fail(err, "vit: the pass was made for another architecture");
    }
    if (vt_threads(m) > p->threads) {
        return lvd_fail(err,
                        "vit: %d threads, but the pass has scratch for %d (make it after "
                        "lvd_vit_train_set_threads)",
                        vt_threads(m), p->threads);
    }
    return 0;
}

int lvd_vit_pass_create(const lvd_vit_train *m, int B, int H, int W, int grad, lvd_vit_pass **out,
                        lvd_error *err)
{
    *out = NULL;
    if (!m) {
        return lvd_fail(err, "vit: pass without a model");
    }
    const lvd_vit_info *a = &m->info;
    int P = a->patch;
    if (B < 1 || H < P || W < P || H % P != 0 || W % P != 0) {
        return lvd_fail(err, "vit: input %dx%dx%d: sides must be positive multiples of %d", B, H, W,
                        P);
    }
    if ((int64_t)B * (H / P) * (W / P) > (1 << 24) || B > (1 << 20) ||
        (int64_t)(H / P) * (W / P) > (1 << 16)) {
        return lvd_fail(err, "vit: input %dx%dx%d has too many patches", B, H, W);
    }
    lvd_vit_pass *p = calloc(1, sizeof *p);
    if (!p) {
        return lvd_fail(err, "vit: out of memory");
    }
    p->B = B;
    p->H = H;
    p->W = W;
    p->gh = H / P;
    p->gw = W / P;
    p->N = p->gh * p->gw;
    p->T = 1 + a->n_reg + p->N;
    p->grad = grad != 0;
    p->L = p->grad ? a->depth : 1;
    p->threads = vt_threads(m);
    p->info = *a;
    int G = a->grid, resized = p->gh != G || p->gw != G;
    double D = a->dim, T = p->T, N = p->N, L = p->L, BT = (double)B * T;
    double hid = a->ffn_hidden, F1 = a->ffn == LVD_VIT_SWIGLU ? 2 * hid : hid;
    double K = 3.0 * P * P, depth = a->depth, g = p->grad;
    int d = a->dim, f1 = (int)F1;
    size_t wq = lvd_vit_gemm_wgrad_scratch(d, 3 * d), w1 = lvd_vit_gemm_wgrad_scratch(d, f1);
    size_t w2 = lvd_vit_gemm_wgrad_scratch(a->ffn_hidden, d), wgs = wq > w1 ? wq : w1;
    wgs = wgs > w2 ? wgs : w2; /* the projection's (d, d) is the smallest */
    slot s[] = {
        {(void **)&p->mask, B * N, 1},
        {(void **)&p->cols, B * N * K, sizeof(float)},
        {(void **)&p->pos, (1 + N) * D, sizeof(float)},
        {(void **)&p->resid, (g ? 2 * L + 1 : 1) * BT * D, sizeof(float)},
        {(void **)&p->ln1, L * BT * D, sizeof(float)},
        {(void **)&p->ln1_mean, L * BT, sizeof(float)},
        {(void **)&p->ln1_rstd, L * BT, sizeof(float)},
        {(void **)&p->qkv, L * BT * 3 * D, sizeof(float)},
        {(void **)&p->lse, g * L * BT * a->heads, sizeof(float)},
        {(void **)&p->atty, L * BT * D, sizeof(float)},
        {(void **)&p->attn_out, L * BT * D, sizeof(float)},
        {(void **)&p->ln2, L * BT * D, sizeof(float)},
        {(void **)&p->ln2_mean, L * BT, sizeof(float)},
        {(void **)&p->ln2_rstd, L * BT, sizeof(float)},
        {(void **)&p->fch, L * BT * F1, sizeof(float)},
        {(void **)&p->ffn_out, L * BT * D, sizeof(float)},
        {(void **)&p->lnf_mean, BT, sizeof(float)},
        {(void **)&p->lnf_rstd, BT, sizeof(float)},
        {(void **)&p->out, BT * D, sizeof(float)},
        {(void **)&p->sub, depth * 2 * B, sizeof(int)},
        {(void **)&p->nsub, depth * 2, sizeof(int)},
        {(void **)&p->subpos, depth * 2 * B, sizeof(int)},
        {(void **)&p->emb, B * N * D, sizeof(float)},
        {(void **)&p->act, BT * hid, sizeof(float)},
        {(void **)&p->wy, resized * p->gh * G, sizeof(float)},
        {(void **)&p->wx, resized * p->gw * G, sizeof(float)},
        {(void **)&p->pos_tmp, resized * G * p->gw * D, sizeof(float)},
        {(void **)&p->att,
         (double)p->threads * (double)vt_attention_scratch(p->T, a->dim / a->heads), sizeof(float)},
        {(void **)&p->dres, g * BT * D, sizeof(float)},
        {(void **)&p->dln, g * BT * D, sizeof(float)},
        {(void **)&p->dbr, g * BT * D, sizeof(float)},
        {(void **)&p->dqkv, g * BT * 3 * D, sizeof(float)},
        {(void **)&p->datty, g * BT * D, sizeof(float)},
        {(void **)&p->dfch, g * BT * F1, sizeof(float)},
        {(void **)&p->dtok, g * T * D, sizeof(float)},
        {(void **)&p->wgs, g * (double)wgs, sizeof(float)},
        {(void **)&p->keep, BT, 1},
        {(void **)&p->kq, BT, sizeof(int)},
        {(void **)&p->kq_off, B + 1.0, sizeof(int)},
        {(void **)&p->krow, BT, sizeof(int)},
        {(void **)&p->iota, BT, sizeof(int)},
        {(void **)&p->dcmp, g * BT * D, sizeof(float)},
    };
    size_t n = sizeof s / sizeof s[0];
    double total = 0.0;
    for (size_t i = 0; i < n; i++) {
        total += s[i].count * (double)s[i].elem + ALIGN;
    }
    if (total > 0.25 * (double)SIZE_MAX) {
        free(p);
        return lvd_fail(err, "vit: a pass of %dx%dx%d needs %.3g GB", B, H, W, total / 1e9);
    }
    p->mem = aligned_alloc(ALIGN, ((size_t)total + ALIGN - 1) / ALIGN * ALIGN);
    if (!p->mem) {
        free(p);
        return lvd_fail(err, "vit: out of memory for a pass of %dx%dx%d (%.3g GB)", B, H, W,
                        total / 1e9);
    }
    char *next = p->mem;
    for (size_t i = 0; i < n; i++) {
        size_t bytes = (size_t)s[i].count * s[i].elem;
        *s[i].ptr = bytes ? next : NULL;
        next += (bytes + ALIGN - 1) / ALIGN * ALIGN;
    }
    memset(p->mask, 0, (size_t)B * p->N);
    p->keep_all = 1;
    for (int r = 0; r < B * p->T; r++) {
        p->iota[r] = r;
    }
    if (resized) {
        lvd_vit_pos_axis_matrix(p->wy, G, p->gh, a->pos_antialias);
        lvd_vit_pos_axis_matrix(p->wx, G, p->gw, a->pos_antialias);
    }
    *out = p;
    return 0;
}

int lvd_vit_pass_keep(lvd_vit_pass *p, int cls, const int *patches, int n, lvd_error *err)
{
    if (!p) {
        return lvd_fail(err, "vit: keep without a pass");
    }
    int B = p->B, N = p->N, T = p->T, R = p->info.n_reg;
    for (int i = 0; i < n; i++) {
        if (!patches || patches[i] < 0 || patches[i] >= B * N) {
            return lvd_fail(err, "vit: kept patch %d outside the %d x %d patches of the pass",
                            patches ? patches[i] : -1, B, N);
        }
    }
    p->keep_all = n < 0;
    if (p->keep_all) {
        return 0;
    }
    memset(p->keep, 0, (size_t)B * T);
    for (int b = 0; cls && b < B; b++) {
        p->keep[(size_t)b * T] = 1;
    }
    for (int i = 0; i < n; i++) {
        p->keep[(size_t)(patches[i] / N) * T + 1 + R + patches[i] % N] = 1;
    }
    int k = 0;
    for (int b = 0; b < B; b++) {
        p->kq_off[b] = k;
        for (int t = 0; t < T; t++) {
            if (p->keep[(size_t)b * T + t]) {
                p->kq[k] = t;
                p->krow[k++] = b * T + t;
            }
        }
    }
    p->kq_off[B] = k;
    p->n_keep = k;
    return 0;
}

void lvd_vit_pass_free(lvd_vit_pass *p)
{
    if (!p) {
        return;
    }
    free(p->mem);
    free(p);
}
