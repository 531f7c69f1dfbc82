/* The trainable ViT's parameters (train/vit_train.h): layout from the architecture, the
 * reference init, loading from checkpoints, saving, and the accessors. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "embed/vit_layers.h"
#include "embed/vit_rng.h"
#include "train/vit_train_internal.h"

int vt_threads(const lvd_vit_train *m)
{
    return m->threads > 0 ? m->threads : omp_get_max_threads();
}

/* The tensor named name in buf (laid out as m->layout); every name looked up exists. */
static float *tensor_at(const lvd_vit_train *m, float *buf, const char *name)
{
    const lvd_param_tensor *t = lvd_param_layout_find(&m->layout, name);
    return t ? buf + t->offset : NULL;
}

/* Points v's fields at the tensors of buf. */
static void resolve(lvd_vit_train *m, float *buf, vt_tensors *v)
{
    int swiglu = m->info.ffn == LVD_VIT_SWIGLU;
    v->patch_w = tensor_at(m, buf, "patch_embed.proj.weight");
    v->patch_b = tensor_at(m, buf, "patch_embed.proj.bias");
    v->cls = tensor_at(m, buf, "cls_token");
    v->reg = m->info.n_reg > 0 ? tensor_at(m, buf, "register_tokens") : NULL;
    v->mask_token = tensor_at(m, buf, "mask_token");
    v->pos = tensor_at(m, buf, "pos_embed");
    v->norm_w = tensor_at(m, buf, "norm.weight");
    v->norm_b = tensor_at(m, buf, "norm.bias");
    for (int l = 0; l < m->info.depth; l++) {
        vt_block *b = &v->blocks[l];
        const struct {
            const char *suffix;
            float **dst;
        } t[] = {
            {"norm1.weight", &b->norm1_w},
            {"norm1.bias", &b->norm1_b},
            {"attn.qkv.weight", &b->qkv_w},
            {"attn.qkv.bias", &b->qkv_b},
            {"attn.proj.weight", &b->proj_w},
            {"attn.proj.bias", &b->proj_b},
            {"ls1.gamma", &b->ls1},
            {"norm2.weight", &b->norm2_w},
            {"norm2.bias", &b->norm2_b},
            {swiglu ? "mlp.w12.weight" : "mlp.fc1.weight", &b->fc1_w},
            {swiglu ? "mlp.w12.bias" : "mlp.fc1.bias", &b->fc1_b},
            {swiglu ? "mlp.w3.weight" : "mlp.fc2.weight", &b->fc2_w},
            {swiglu ? "mlp.w3.bias" : "mlp.fc2.bias", &b->fc2_b},
            {"ls2.gamma", &b->ls2},
        };
        for (size_t k = 0; k < sizeof t / sizeof t[0]; k++) {
            char name[LVD_PARAM_NAME_MAX];
            snprintf(name, sizeof name, "blocks.%d.%s", l, t[k].suffix);
            *t[k].dst = tensor_at(m, buf, name);
        }
    }
}

/* The architecture of arch with heads set: 0 keeps dim / 64, else it must divide dim. */
static int set_heads(lvd_vit_info *info, int heads, lvd_error *err)
{
    if (heads < 0 || (heads > 0 && info->dim % heads != 0)) {
        return lvd_fail(err, "vit: %d heads do not divide dim %d", heads, info->dim);
    }
    if (heads > 0) {
        info->heads = heads;
    }
    return 0;
}

/* An empty model of a complete architecture: layout, zeroed buffers, resolved pointers. */
static int model_alloc(const lvd_vit_info *info, lvd_vit_train **out, lvd_error *err)
{
    *out = NULL;
    lvd_vit_train *m = calloc(1, sizeof *m);
    size_t n = lvd_vit_param_table(info, NULL, 0);
    lvd_vit_param *table = n ? calloc(n, sizeof *table) : NULL;
    if (!m || !table) {
        free(m);
        free(table);
        return lvd_fail(err, "vit: out of memory");
    }
    m->info = *info;
    lvd_vit_param_table(info, table, n);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = lvd_param_layout_add(&m->layout, table[i].name, table[i].ndim, table[i].shape, err);
    }
    free(table);
    int D = info->dim, hid = info->ffn_hidden, f1 = info->ffn == LVD_VIT_SWIGLU ? 2 * hid : hid;
    size_t sz[4] = {lvd_vit_gemm_packed_size(3 * D, D), lvd_vit_gemm_packed_size(D, D),
                    lvd_vit_gemm_packed_size(f1, D), lvd_vit_gemm_packed_size(D, hid)};
    size_t szn[4] = {lvd_vit_gemm_packed_size(D, 3 * D), lvd_vit_gemm_packed_size(D, D),
                     lvd_vit_gemm_packed_size(D, f1), lvd_vit_gemm_packed_size(hid, D)};
    size_t per = 0, patch = lvd_vit_gemm_packed_size(D, 3 * info->patch * info->patch);
    for (int i = 0; i < 4; i++) {
        per += sz[i] + szn[i];
    }
    m->packed = calloc((size_t)info->depth, sizeof(vt_packed));
    m->pack = aligned_alloc(64, (per * (size_t)info->depth + patch) * sizeof(float) / 64 * 64 + 64);
    if (m->packed && m->pack) {
        float *next = m->pack;
        m->patch_t = next;
        next += patch;
        for (int l = 0; l < info->depth; l++) {
            float **t[8] = {&m->packed[l].qkv_t, &m->packed[l].proj_t, &m->packed[l].fc1_t,
                            &m->packed[l].fc2_t, &m->packed[l].qkv_n,  &m->packed[l].proj_n,
                            &m->packed[l].fc1_n, &m->packed[l].fc2_n};
            for (int i = 0; i < 8; i++) {
                *t[i] = next;
                next += i < 4 ? sz[i] : szn[i - 4];
            }
        }
    }
    m->p.blocks = calloc((size_t)info->depth, sizeof(vt_block));
    m->g.blocks = calloc((size_t)info->depth, sizeof(vt_block));
    if (rc == 0) {
        m->params = calloc(m->layout.total ? m->layout.total : 1, sizeof(float));
        m->grads = calloc(m->layout.total ? m->layout.total : 1, sizeof(float));
    }
    if (rc == 0 &&
        (!m->p.blocks || !m->g.blocks || !m->params || !m->grads || !m->packed || !m->pack)) {
        rc = lvd_fail(err, "vit: out of memory for %zu parameters", m->layout.total);
    }
    if (rc != 0) {
        lvd_vit_train_free(m);
        return -1;
    }
    m->info.n_params = (int64_t)m->layout.total;
    resolve(m, m->params, &m->p);
    resolve(m, m->grads, &m->g);
    *out = m;
    return 0;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* torch.nn.init.trunc_normal_(std=0.02): normal redrawn outside the absolute bounds [-2, 2]. */
static float trunc_normal(lvd_rng *r)
{
    double v;
    do {
        v = lvd_rng_normal(r) * 0.02;
    } while (v < -2.0 || v > 2.0);
    return (float)v;
}

/* Fills tensor t (data) with its init, as the reference initializes it. */
static void init_tensor(const lvd_vit_train *m, const lvd_param_tensor *t, float *data,
                        float layerscale, lvd_rng *r)
{
    const char *name = t->name;
    double bound = 1.0 / sqrt(3.0 * m->info.patch * m->info.patch); /* Conv2d default */
    for (size_t i = 0; i < t->numel; i++) {
        float v;
        if (strncmp(name, "patch_embed.", 12) == 0) {
            v = (float)((2.0 * lvd_rng_uniform(r) - 1.0) * bound);
        } else if (strcmp(name, "cls_token") == 0 || strcmp(name, "register_tokens") == 0) {
            v = (float)(lvd_rng_normal(r) * 1e-6);
        } else if (strcmp(name, "mask_token") == 0 || ends_with(name, ".bias")) {
            v = 0.0f;
        } else if (ends_with(name, "norm1.weight") || ends_with(name, "norm2.weight") ||
                   strcmp(name, "norm.weight") == 0) {
            v = 1.0f;
        } else if (ends_with(name, ".gamma")) {
            v = layerscale;
        } else {
            v = trunc_normal(r); /* pos_embed and linear weights */
        }
        data[i] = v;
    }
}

int lvd_vit_train_create(const lvd_vit_info *arch, float layerscale, uint64_t seed,
                         lvd_vit_train **out, lvd_error *err)
{
    *out = NULL;
    lvd_vit_info info;
    if (lvd_vit_arch_derive(arch, &info, err) != 0 || set_heads(&info, arch->heads, err) != 0) {
        return -1;
    }
    if (!isfinite(layerscale)) {
        return lvd_fail(err, "vit: LayerScale init %g is not finite", layerscale);
    }
    lvd_vit_train *m;
    if (model_alloc(&info, &m, err) != 0) {
        return -1;
    }
    lvd_rng r = {seed};
    for (int i = 0; i < m->layout.n; i++) {
        const lvd_param_tensor *t = &m->layout.t[i];
        init_tensor(m, t, m->params + t->offset, layerscale, &r);
    }
    *out = m;
    return 0;
}

int lvd_vit_train_load_tensors(lvd_tensors *ts, const char *prefix, int heads, lvd_vit_train **out,
                               lvd_error *err)
{
    *out = NULL;
    lvd_vit *src;
    if (lvd_vit_load_tensors_prefix(ts, prefix, &src, err) != 0) {
        return -1;
    }
    lvd_vit_info info = *lvd_vit_get_info(src);
    const char *meta = lvd_tensors_metadata(ts, "lvd_vit_heads");
    if (heads == 0 && meta) {
        heads = atoi(meta);
        if (heads <= 0) {
            lvd_vit_free(src);
            return lvd_fail(err, "vit: bad lvd_vit_heads metadata \"%s\"", meta);
        }
    }
    lvd_vit_train *m = NULL;
    size_t n = lvd_vit_param_list(src, NULL, 0);
    lvd_vit_param *table = calloc(n ? n : 1, sizeof *table);
    int rc = table ? 0 : lvd_fail(err, "vit: out of memory");
    if (rc == 0) {
        rc = set_heads(&info, heads, err);
    }
    if (rc == 0) {
        rc = model_alloc(&info, &m, err);
    }
    if (rc == 0) {
        lvd_vit_param_list(src, table, n);
        for (size_t i = 0; rc == 0 && i < n; i++) {
            /* The same table orders both: tensor i of the model is entry i of the layout. */
            const lvd_param_tensor *t = &m->layout.t[i];
            if (strcmp(t->name, table[i].name) != 0) {
                rc = lvd_fail(err, "vit: tensor %s where %s was expected", table[i].name, t->name);
            } else {
                memcpy(m->params + t->offset, table[i].data, sizeof(float) * t->numel);
            }
        }
    }
    free(table);
    lvd_vit_free(src);
    if (rc != 0) {
        lvd_vit_train_free(m);
        return -1;
    }
    *out = m;
    return 0;
}

int lvd_vit_train_load(const char *path, int heads, lvd_vit_train **out, lvd_error *err)
{
    *out = NULL;
    lvd_tensors *ts;
    if (lvd_tensors_open(path, &ts, err) != 0) {
        return -1;
    }
    int rc = lvd_vit_train_load_tensors(ts, "", heads, out, err);
    lvd_tensors_close(ts);
    return rc != 0 ? lvd_error_prefix(err, "%s", path) : 0;
}

int lvd_vit_train_save(const lvd_vit_train *m, const char *path, lvd_error *err)
{
    const lvd_param_layout *l = &m->layout;
    lvd_tensor *t = calloc((size_t)l->n, sizeof *t);
    if (!t) {
        return lvd_fail(err, "%s: out of memory", path);
    }
    for (int i = 0; i < l->n; i++) {
        t[i].name = l->t[i].name;
        t[i].dtype = LVD_F32;
        t[i].ndim = l->t[i].ndim;
        memcpy(t[i].shape, l->t[i].shape, sizeof(int64_t) * (size_t)l->t[i].ndim);
        t[i].numel = (int64_t)l->t[i].numel;
        t[i].data = m->params + l->t[i].offset;
    }
    char heads[16];
    snprintf(heads, sizeof heads, "%d", m->info.heads);
    const char *meta[2] = {"lvd_vit_heads", heads};
    int rc = lvd_safetensors_write(path, t, (size_t)l->n, meta, 1, err);
    free(t);
    return rc;
}

void lvd_vit_train_free(lvd_vit_train *m)
{
    if (!m) {
        return;
    }
    lvd_param_layout_free(&m->layout);
    free(m->params);
    free(m->grads);
    free(m->p.blocks);
    free(m->g.blocks);
    free(m->packed);
    free(m->pack);
    free(m);
}

const lvd_vit_info *lvd_vit_train_info(const lvd_vit_train *m)
{
    return &m->info;
}

const lvd_param_layout *lvd_vit_train_layout(const lvd_vit_train *m)
{
    return &m->layout;
}

float *lvd_vit_train_params(lvd_vit_train *m)
{
    return m->params;
}

float *lvd_vit_train_grads(lvd_vit_train *m)
{
    return m->grads;
}

void lvd_vit_train_zero_grad(lvd_vit_train *m)
{
    memset(m->grads, 0, sizeof(float) * m->layout.total);
}

void lvd_vit_train_set_threads(lvd_vit_train *m, int threads)
{
    m->threads = threads;
}
