/* The ViT parameter table (names, shapes, destinations) and the model's lifetime. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "embed/vit_model.h"

static void desc_set(vit_param_desc *d, const char *name, const float **dst, int ndim, int64_t s0,
                     int64_t s1, int64_t s2, int64_t s3)
{
    snprintf(d->name, sizeof d->name, "%s", name);
    d->dst = dst;
    d->ndim = ndim;
    d->shape[0] = s0;
    d->shape[1] = s1;
    d->shape[2] = s2;
    d->shape[3] = s3;
}

/* Appends one descriptor when descs is not NULL; returns the next index. */
static size_t add(vit_param_desc *descs, size_t i, const char *name, const float **dst, int ndim,
                  int64_t s0, int64_t s1, int64_t s2, int64_t s3)
{
    if (descs) {
        desc_set(&descs[i], name, dst, ndim, s0, s1, s2, s3);
    }
    return i + 1;
}

static size_t add_block(lvd_vit *m, vit_param_desc *descs, size_t i, int l)
{
    const lvd_vit_info *a = &m->info;
    lvd_vit_block *bl = &m->p.blocks[l];
    int64_t D = a->dim;
    int64_t hid = a->ffn_hidden;
    int swiglu = a->ffn == LVD_VIT_SWIGLU;
    int64_t f1 = swiglu ? 2 * hid : hid;
    const struct {
        const char *suffix;
        const float **dst;
        int ndim;
        int64_t s0, s1;
    } t[] = {
        {"norm1.weight", &bl->norm1_w, 1, D, 0},
        {"norm1.bias", &bl->norm1_b, 1, D, 0},
        {"attn.qkv.weight", &bl->qkv_w, 2, 3 * D, D},
        {"attn.qkv.bias", &bl->qkv_b, 1, 3 * D, 0},
        {"attn.proj.weight", &bl->proj_w, 2, D, D},
        {"attn.proj.bias", &bl->proj_b, 1, D, 0},
        {"ls1.gamma", &bl->ls1, 1, D, 0},
        {"norm2.weight", &bl->norm2_w, 1, D, 0},
        {"norm2.bias", &bl->norm2_b, 1, D, 0},
        {swiglu ? "mlp.w12.weight" : "mlp.fc1.weight", &bl->fc1_w, 2, f1, D},
        {swiglu ? "mlp.w12.bias" : "mlp.fc1.bias", &bl->fc1_b, 1, f1, 0},
        {swiglu ? "mlp.w3.weight" : "mlp.fc2.weight", &bl->fc2_w, 2, D, hid},
        {swiglu ? "mlp.w3.bias" : "mlp.fc2.bias", &bl->fc2_b, 1, D, 0},
        {"ls2.gamma", &bl->ls2, 1, D, 0},
    };
    for (size_t k = 0; k < sizeof t / sizeof t[0]; k++) {
        char name[64];
        snprintf(name, sizeof name, "blocks.%d.%s", l, t[k].suffix);
        i = add(descs, i, name, t[k].dst, t[k].ndim, t[k].s0, t[k].s1, 0, 0);
    }
    return i;
}

size_t vit_param_descs(lvd_vit *m, vit_param_desc *descs)
{
    const lvd_vit_info *a = &m->info;
    lvd_vit_params *p = &m->p;
    int64_t D = a->dim;
    int64_t P = a->patch;
    size_t i = 0;
    i = add(descs, i, "patch_embed.proj.weight", &p->patch_w, 4, D, 3, P, P);
    i = add(descs, i, "patch_embed.proj.bias", &p->patch_b, 1, D, 0, 0, 0);
    i = add(descs, i, "cls_token", &p->cls_token, 3, 1, 1, D, 0);
    if (a->n_reg > 0) {
        i = add(descs, i, "register_tokens", &p->reg_tokens, 3, 1, a->n_reg, D, 0);
    }
    i = add(descs, i, "mask_token", &p->mask_token, 2, 1, D, 0, 0);
    i = add(descs, i, "pos_embed", &p->pos_embed, 3, 1, 1 + (int64_t)a->grid * a->grid, D, 0);
    for (int l = 0; l < a->depth; l++) {
        i = add_block(m, descs, i, l);
    }
    i = add(descs, i, "norm.weight", &p->norm_w, 1, D, 0, 0, 0);
    return add(descs, i, "norm.bias", &p->norm_b, 1, D, 0, 0, 0);
}

int64_t vit_desc_numel(const vit_param_desc *d)
{
    int64_t n = 1;
    for (int k = 0; k < d->ndim; k++) {
        n *= d->shape[k];
    }
    return n;
}

int vit_model_alloc(const lvd_vit_info *info, lvd_vit **out, lvd_error *err)
{
    *out = NULL;
    lvd_vit *m = calloc(1, sizeof *m);
    if (!m) {
        return lvd_fail(err, "vit: out of memory");
    }
    m->info = *info;
    m->p.blocks = calloc((size_t)info->depth, sizeof *m->p.blocks);
    size_t n = m->p.blocks ? vit_param_descs(m, NULL) : 0;
    vit_param_desc *descs = n ? calloc(n, sizeof *descs) : NULL;
    if (!descs) {
        lvd_vit_free(m);
        return lvd_fail(err, "vit: out of memory");
    }
    vit_param_descs(m, descs);
    m->info.n_params = 0;
    for (size_t i = 0; i < n; i++) {
        m->info.n_params += vit_desc_numel(&descs[i]);
    }
    free(descs);
    *out = m;
    return 0;
}

size_t lvd_vit_param_list(lvd_vit *m, lvd_vit_param *table, size_t cap)
{
    size_t n = vit_param_descs(m, NULL);
    vit_param_desc *d = table ? calloc(n, sizeof *d) : NULL;
    if (table && !d) {
        return 0;
    }
    if (d) {
        vit_param_descs(m, d);
    }
    for (size_t i = 0; d && i < n && i < cap; i++) {
        lvd_vit_param *t = &table[i];
        memset(t, 0, sizeof *t);
        snprintf(t->name, sizeof t->name, "%s", d[i].name);
        t->ndim = d[i].ndim;
        memcpy(t->shape, d[i].shape, sizeof t->shape);
        t->data = *d[i].dst;
    }
    free(d);
    return n;
}

size_t lvd_vit_param_table(const lvd_vit_info *info, lvd_vit_param *table, size_t cap)
{
    lvd_vit *m;
    if (vit_model_alloc(info, &m, NULL) != 0) {
        return 0;
    }
    size_t n = lvd_vit_param_list(m, table, cap);
    lvd_vit_free(m);
    return n;
}

const lvd_vit_info *lvd_vit_get_info(const lvd_vit *m)
{
    return &m->info;
}

void lvd_vit_set_threads(lvd_vit *m, int threads)
{
    m->threads = threads;
}

void lvd_vit_free(lvd_vit *m)
{
    if (!m) {
        return;
    }
    vit_acts_free(&m->acts);
    vit_packed_free(m);
    vit_pos_cache_free(m);
    free(m->p.blocks);
    free(m->owned_params);
    lvd_tensors_close(m->owned_file);
    free(m);
}
