/* A ViT with random weights (the DINOv2 from-scratch init), all parameters in one contiguous
 * buffer in the canonical order of vit_param_descs(). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "embed/vit_model.h"
#include "embed/vit_rng.h"

/* Normal with std, redrawn outside +-2 std. */
static float trunc_normal(lvd_rng *r, double std)
{
    double v;
    do {
        v = lvd_rng_normal(r);
    } while (v < -2.0 || v > 2.0);
    return (float)(v * std);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s);
    size_t k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

typedef enum init_kind {
    INIT_ZERO,
    INIT_ONE,
    INIT_LAYERSCALE,
    INIT_TOKEN,
    INIT_TRUNC_NORMAL
} init_kind;

static init_kind kind_of(const char *name)
{
    if (ends_with(name, ".bias") || strcmp(name, "mask_token") == 0) {
        return INIT_ZERO;
    }
    if (ends_with(name, "norm1.weight") || ends_with(name, "norm2.weight") ||
        strcmp(name, "norm.weight") == 0) {
        return INIT_ONE;
    }
    if (ends_with(name, ".gamma")) {
        return INIT_LAYERSCALE;
    }
    if (strcmp(name, "cls_token") == 0 || strcmp(name, "register_tokens") == 0) {
        return INIT_TOKEN;
    }
    return INIT_TRUNC_NORMAL; /* linear and conv weights, pos_embed */
}

static void fill(const vit_param_desc *d, float *data, lvd_rng *r)
{
    int64_t n = vit_desc_numel(d);
    init_kind kind = kind_of(d->name);
    for (int64_t i = 0; i < n; i++) {
        switch (kind) {
        case INIT_ZERO:
            data[i] = 0.0f;
            break;
        case INIT_ONE:
            data[i] = 1.0f;
            break;
        case INIT_LAYERSCALE:
            data[i] = 1e-5f;
            break;
        case INIT_TOKEN:
            data[i] = (float)(lvd_rng_normal(r) * 1e-6);
            break;
        case INIT_TRUNC_NORMAL:
            data[i] = trunc_normal(r, 0.02);
            break;
        }
    }
}

int lvd_vit_arch_derive(const lvd_vit_info *arch, lvd_vit_info *out, lvd_error *err)
{
    const lvd_vit_info *a = arch;
    if (a->dim < 64 || a->dim % 64 != 0 || a->dim > 65536 || a->depth < 1 || a->depth > 1000 ||
        a->patch < 1 || a->patch > 1024 || a->grid < 1 || a->grid > 1024 || a->n_reg < 0 ||
        a->n_reg > 1024 || (a->ffn != LVD_VIT_MLP && a->ffn != LVD_VIT_SWIGLU)) {
        return lvd_fail(err,
                        "vit: unsupported architecture dim %d depth %d patch %d grid %d "
                        "registers %d (dim must be a positive multiple of 64)",
                        a->dim, a->depth, a->patch, a->grid, a->n_reg);
    }
    lvd_vit_info d = *arch;
    d.heads = d.dim / 64;
    d.ffn_hidden = d.ffn == LVD_VIT_SWIGLU ? (4 * d.dim * 2 / 3 + 7) / 8 * 8 : 4 * d.dim;
    d.eps = 1e-6f;
    d.pos_antialias = d.n_reg > 0;
    lvd_vit *m;
    if (vit_model_alloc(&d, &m, err) != 0) {
        return -1;
    }
    *out = m->info;
    lvd_vit_free(m);
    return 0;
}

int lvd_vit_init_random(const lvd_vit_info *arch, uint64_t seed, lvd_vit **out, lvd_error *err)
{
    *out = NULL;
    lvd_vit_info a;
    if (lvd_vit_arch_derive(arch, &a, err) != 0) {
        return -1;
    }
    lvd_vit *m;
    if (vit_model_alloc(&a, &m, err) != 0) {
        return -1;
    }
    size_t nd = vit_param_descs(m, NULL);
    vit_param_desc *d = calloc(nd, sizeof *d);
    m->owned_params = malloc(sizeof(float) * (size_t)m->info.n_params);
    if (!d || !m->owned_params) {
        long long n = (long long)m->info.n_params;
        free(d);
        lvd_vit_free(m);
        return lvd_fail(err, "vit: out of memory for %lld parameters", n);
    }
    vit_param_descs(m, d);
    lvd_rng r = {seed};
    float *next = m->owned_params;
    for (size_t i = 0; i < nd; i++) {
        fill(&d[i], next, &r);
        *d[i].dst = next;
        next += vit_desc_numel(&d[i]);
    }
    free(d);
    *out = m;
    return 0;
}
