/* The DINO head (train/head.h): configuration checks, the parameter layout, the reference init,
 * loading and saving, activation buffers. The passes are in head_pass.c. */
#include "embed/vit_layers.h"
#include "train/head.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DIM (1 << 24)

int lvd_head_config_check(const lvd_head_config *c, lvd_error *err)
{
    if (c->nlayers < 1 || c->nlayers > LVD_HEAD_MAX_LAYERS)
        return lvd_fail(err, "dino head: %d MLP layers (1 to %d allowed)", c->nlayers,
                        LVD_HEAD_MAX_LAYERS);
    if (c->in_dim < 1 || c->in_dim > MAX_DIM || c->bottleneck_dim < 1 ||
        c->bottleneck_dim > MAX_DIM || c->out_dim < 1 || c->out_dim > MAX_DIM ||
        (c->nlayers > 1 && (c->hidden_dim < 1 || c->hidden_dim > MAX_DIM)))
        return lvd_fail(err,
                        "dino head: bad sizes in %d hidden %d bottleneck %d prototypes %d "
                        "(each 1 to %d)",
                        c->in_dim, c->hidden_dim, c->bottleneck_dim, c->out_dim, MAX_DIM);
    return 0;
}

/* Name of MLP linear i of n ("mlp.0", ... or "mlp" for a single linear). */
static void linear_name(char *buf, size_t size, int i, int n)
{
    if (n == 1)
        snprintf(buf, size, "mlp");
    else
        snprintf(buf, size, "mlp.%d", 2 * i);
}

/* Output and input widths of MLP linear i. */
static void linear_dims(const lvd_head_config *c, int i, int *out, int *in)
{
    *in = i == 0 ? c->in_dim : c->hidden_dim;
    *out = i == c->nlayers - 1 ? c->bottleneck_dim : c->hidden_dim;
}

static int add(lvd_param_layout *l, const char *name, int ndim, int64_t d0, int64_t d1, size_t *off,
               lvd_error *err)
{
    int64_t shape[2] = {d0, d1};
    if (lvd_param_layout_add(l, name, ndim, shape, err) != 0)
        return lvd_error_prefix(err, "dino head");
    *off = l->t[l->n - 1].offset;
    return 0;
}

static int build_layout(lvd_head *h, lvd_error *err)
{
    const lvd_head_config *c = &h->cfg;
    char base[32], name[64];
    for (int i = 0; i < c->nlayers; i++) {
        int o, in;
        linear_dims(c, i, &o, &in);
        linear_name(base, sizeof base, i, c->nlayers);
        snprintf(name, sizeof name, "%s.weight", base);
        if (add(&h->layout, name, 2, o, in, &h->w_off[i], err) != 0)
            return -1;
        h->b_off[i] = SIZE_MAX;
        snprintf(name, sizeof name, "%s.bias", base);
        if (c->mlp_bias && add(&h->layout, name, 1, o, 0, &h->b_off[i], err) != 0)
            return -1;
    }
    if (add(&h->layout, "last_layer.weight_g", 2, c->out_dim, 1, &h->g_off, err) != 0 ||
        add(&h->layout, "last_layer.weight_v", 2, c->out_dim, c->bottleneck_dim, &h->v_off, err) !=
            0)
        return -1;
    return 0;
}

/* Floats of w_pack: the largest packed weight (both forms, every linear) and weight-gradient
 * scratch (lvd_vit_gemm_wgrad) of the largest linear input. */
static size_t pack_floats(const lvd_head_config *c)
{
    size_t most = 0;
    for (int i = 0; i <= c->nlayers; i++) {
        int o = c->out_dim, in = c->bottleneck_dim; /* i == nlayers: the last layer */
        if (i < c->nlayers)
            linear_dims(c, i, &o, &in);
        size_t n[3] = {lvd_vit_gemm_packed_size(o, in), lvd_vit_gemm_packed_size(in, o),
                       lvd_vit_gemm_wgrad_scratch(in, o)};
        for (int j = 0; j < 3; j++)
            most = n[j] > most ? n[j] : most;
    }
    return most;
}

/* Allocates h for cfg with zeroed parameters. */
static int create(lvd_head *h, const lvd_head_config *cfg, lvd_error *err)
{
    memset(h, 0, sizeof *h);
    if (lvd_head_config_check(cfg, err) != 0)
        return -1;
    h->cfg = *cfg;
    h->cfg.mlp_bias = cfg->mlp_bias != 0;
    if (cfg->nlayers == 1)
        h->cfg.hidden_dim = 0;
    if (build_layout(h, err) != 0) {
        lvd_head_free(h);
        return -1;
    }
    size_t kb = (size_t)cfg->out_dim * (size_t)cfg->bottleneck_dim;
    h->params = calloc(h->layout.total, sizeof *h->params);
    h->w_last = malloc(kb * sizeof *h->w_last);
    h->dw_last = malloc(kb * sizeof *h->dw_last);
    h->v_norm = malloc((size_t)cfg->out_dim * sizeof *h->v_norm);
    size_t pack = pack_floats(&h->cfg);
    h->w_pack = aligned_alloc(64, (pack * sizeof(float) + 63) / 64 * 64);
    if (!h->params || !h->w_last || !h->dw_last || !h->v_norm || !h->w_pack) {
        lvd_head_free(h);
        return lvd_fail(err, "dino head: out of memory for %zu parameters", h->layout.total);
    }
    return 0;
}

void lvd_head_free(lvd_head *h)
{
    lvd_param_layout_free(&h->layout);
    free(h->params);
    free(h->w_last);
    free(h->dw_last);
    free(h->v_norm);
    free(h->w_pack);
    memset(h, 0, sizeof *h);
}

/* splitmix64 and Box-Muller: a small seeded generator for the init (the ViT's is private to
 * embed/vit_init.c). */
static uint64_t next_u64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double uniform01(uint64_t *s) /* in (0, 1) */
{
    return ((double)(next_u64(s) >> 11) + 0.5) / 9007199254740992.0;
}

static double normal(uint64_t *s)
{
    double u = uniform01(s);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * uniform01(s));
}

int lvd_head_init(lvd_head *h, const lvd_head_config *cfg, uint64_t seed, lvd_error *err)
{
    if (create(h, cfg, err) != 0)
        return -1;
    uint64_t s = seed;
    for (int i = 0; i < h->cfg.nlayers; i++) {
        int o, in;
        linear_dims(&h->cfg, i, &o, &in);
        float *w = h->params + h->w_off[i];
        /* trunc_normal_(std=0.02) truncates at the absolute bounds a=-2, b=2. */
        for (size_t j = 0; j < (size_t)o * (size_t)in; j++) {
            double v;
            do {
                v = 0.02 * normal(&s);
            } while (v < -2.0 || v > 2.0);
            w[j] = (float)v;
        }
    }
    /* nn.Linear's kaiming_uniform_(a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in)); weight_norm
     * then sets g = ||v|| and DINOHead fills g with 1. */
    size_t kb = (size_t)h->cfg.out_dim * (size_t)h->cfg.bottleneck_dim;
    double bound = 1.0 / sqrt((double)h->cfg.bottleneck_dim);
    float *v = h->params + h->v_off;
    for (size_t j = 0; j < kb; j++)
        v[j] = (float)(bound * (2.0 * uniform01(&s) - 1.0));
    for (int k = 0; k < h->cfg.out_dim; k++)
        h->params[h->g_off + (size_t)k] = 1.0f;
    return 0;
}

static const lvd_tensor *find(const lvd_tensors *ts, const char *prefix, const char *name)
{
    char full[LVD_PARAM_NAME_MAX + 256];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    return lvd_tensors_find(ts, full);
}

/* Rows of a 2-D tensor (or -1), its columns in *cols. */
static int64_t dims2(const lvd_tensor *t, int64_t *cols)
{
    if (!t || t->ndim != 2)
        return -1;
    *cols = t->shape[1];
    return t->shape[0];
}

static int infer_config(const lvd_tensors *ts, const char *prefix, lvd_head_config *c,
                        lvd_error *err)
{
    memset(c, 0, sizeof *c);
    int64_t cols, rows;
    const lvd_tensor *v = find(ts, prefix, "last_layer.weight_v");
    if ((rows = dims2(v, &cols)) < 0)
        return lvd_fail(err, "dino head: no 2-D %slast_layer.weight_v", prefix);
    c->out_dim = (int)(rows > MAX_DIM ? -1 : rows);
    c->bottleneck_dim = (int)(cols > MAX_DIM ? -1 : cols);
    const lvd_tensor *single = find(ts, prefix, "mlp.weight");
    if (single) {
        c->nlayers = 1;
        if ((rows = dims2(single, &cols)) < 0)
            return lvd_fail(err, "dino head: %smlp.weight is not 2-D", prefix);
        c->in_dim = (int)(cols > MAX_DIM ? -1 : cols);
        c->mlp_bias = find(ts, prefix, "mlp.bias") != NULL;
        return lvd_head_config_check(c, err);
    }
    char name[32];
    while (c->nlayers < LVD_HEAD_MAX_LAYERS) {
        snprintf(name, sizeof name, "mlp.%d.weight", 2 * c->nlayers);
        if (!find(ts, prefix, name))
            break;
        c->nlayers++;
    }
    if (c->nlayers < 2)
        return lvd_fail(err, "dino head: no %smlp.weight nor %smlp.0.weight and %smlp.2.weight",
                        prefix, prefix, prefix);
    if ((rows = dims2(find(ts, prefix, "mlp.0.weight"), &cols)) < 0)
        return lvd_fail(err, "dino head: %smlp.0.weight is not 2-D", prefix);
    c->in_dim = (int)(cols > MAX_DIM ? -1 : cols);
    c->hidden_dim = (int)(rows > MAX_DIM ? -1 : rows);
    c->mlp_bias = find(ts, prefix, "mlp.0.bias") != NULL;
    return lvd_head_config_check(c, err);
}

int lvd_head_load_tensors(lvd_head *h, const lvd_tensors *ts, const char *prefix, lvd_error *err)
{
    memset(h, 0, sizeof *h);
    prefix = prefix ? prefix : "";
    lvd_head_config cfg;
    if (infer_config(ts, prefix, &cfg, err) != 0 || create(h, &cfg, err) != 0)
        return -1;
    for (int i = 0; i < h->layout.n; i++) {
        const lvd_param_tensor *p = &h->layout.t[i];
        const lvd_tensor *t = find(ts, prefix, p->name);
        /* weight_g may be stored as (K) or (K, 1): same data. */
        int ok = t && t->numel == (int64_t)p->numel &&
                 (t->ndim == p->ndim || strcmp(p->name, "last_layer.weight_g") == 0);
        for (int d = 0; ok && d < p->ndim && t->ndim == p->ndim; d++)
            ok = t->shape[d] == p->shape[d];
        if (!ok) {
            lvd_fail(err, "dino head: %s%s missing or not of the shape of the others", prefix,
                     p->name);
            lvd_head_free(h);
            return -1;
        }
        memcpy(h->params + p->offset, t->data, p->numel * sizeof(float));
    }
    return 0;
}

int lvd_head_load(lvd_head *h, const char *path, const char *prefix, lvd_error *err)
{
    memset(h, 0, sizeof *h);
    lvd_tensors *ts;
    if (lvd_tensors_open(path, &ts, err) != 0)
        return -1;
    int rc = lvd_head_load_tensors(h, ts, prefix, err);
    lvd_tensors_close(ts);
    if (rc != 0)
        return lvd_error_prefix(err, "%s", path);
    return 0;
}

int lvd_head_save(const lvd_head *h, const char *path, const char *prefix, lvd_error *err)
{
    prefix = prefix ? prefix : "";
    int n = h->layout.n;
    lvd_tensor *t = calloc((size_t)n, sizeof *t);
    char(*names)[LVD_PARAM_NAME_MAX + 256] = calloc((size_t)n, sizeof *names);
    if (!t || !names) {
        free(t);
        free(names);
        return lvd_fail(err, "%s: out of memory", path);
    }
    for (int i = 0; i < n; i++) {
        const lvd_param_tensor *p = &h->layout.t[i];
        snprintf(names[i], sizeof names[i], "%s%s", prefix, p->name);
        t[i].name = names[i];
        t[i].dtype = LVD_F32;
        t[i].ndim = p->ndim;
        memcpy(t[i].shape, p->shape, (size_t)p->ndim * sizeof p->shape[0]);
        t[i].numel = (int64_t)p->numel;
        t[i].data = h->params + p->offset;
    }
    char config[256];
    const lvd_head_config *c = &h->cfg;
    snprintf(config, sizeof config,
             "{\"in_dim\": %d, \"out_dim\": %d, \"nlayers\": %d, \"hidden_dim\": %d, "
             "\"bottleneck_dim\": %d, \"mlp_bias\": %s}",
             c->in_dim, c->out_dim, c->nlayers, c->hidden_dim, c->bottleneck_dim,
             c->mlp_bias ? "true" : "false");
    const char *meta[2] = {"config", config};
    int rc = lvd_safetensors_write(path, t, (size_t)n, meta, 1, err);
    free(t);
    free(names);
    return rc;
}

int lvd_head_acts_init(lvd_head_acts *a, const lvd_head_config *cfg, int max_rows, lvd_error *err)
{
    memset(a, 0, sizeof *a);
    if (lvd_head_config_check(cfg, err) != 0)
        return -1;
    if (max_rows < 1 || max_rows > MAX_DIM)
        return lvd_fail(err, "dino head: activations for %d rows (1 to %d allowed)", max_rows,
                        MAX_DIM);
    a->cfg = *cfg;
    a->cfg.mlp_bias = cfg->mlp_bias != 0;
    if (cfg->nlayers == 1)
        a->cfg.hidden_dim = 0;
    a->max_rows = max_rows;
    a->n = -1;
    size_t r = (size_t)max_rows, H = (size_t)a->cfg.hidden_dim, nh = (size_t)(cfg->nlayers - 1);
    size_t B = (size_t)cfg->bottleneck_dim;
    size_t wide = H > B ? H : B;
    a->x = malloc(r * (size_t)cfg->in_dim * sizeof(float));
    a->pre = nh ? malloc(nh * r * H * sizeof(float)) : NULL;
    a->act = nh ? malloc(nh * r * H * sizeof(float)) : NULL;
    a->z = malloc(r * B * sizeof(float));
    a->z_norm = malloc(r * sizeof(float));
    a->u = malloc(r * B * sizeof(float));
    a->d0 = malloc(r * wide * sizeof(float));
    a->d1 = malloc(r * wide * sizeof(float));
    if (!a->x || (nh && (!a->pre || !a->act)) || !a->z || !a->z_norm || !a->u || !a->d0 || !a->d1) {
        lvd_head_acts_free(a);
        return lvd_fail(err, "dino head: out of memory for activations of %d rows", max_rows);
    }
    return 0;
}

void lvd_head_acts_free(lvd_head_acts *a)
{
    free(a->x);
    free(a->pre);
    free(a->act);
    free(a->z);
    free(a->z_norm);
    free(a->u);
    free(a->d0);
    free(a->d1);
    memset(a, 0, sizeof *a);
}
