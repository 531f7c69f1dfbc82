/* Loading a ViT from a tensor collection: architecture from shapes, then every tensor matched
 * to the parameter table by its official name, checked, and bound in place. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "embed/vit_keys.h"
#include "embed/vit_model.h"

/* A tensor of the file under its official name. */
typedef struct entry {
    char name[128];
    int part; /* 0, 1, 2: transformers query, key, value; else -1 */
    const lvd_tensor *t;
} entry;

/* The file tensors bound to one parameter: whole (part -1) or the three q/k/v parts. */
typedef struct binding {
    const lvd_tensor *whole;
    const lvd_tensor *parts[3];
} binding;

static const char *shape_str(int ndim, const int64_t *shape, char *buf, size_t cap)
{
    size_t len = (size_t)snprintf(buf, cap, "(");
    for (int k = 0; k < ndim && len < cap; k++) {
        len += (size_t)snprintf(buf + len, cap - len, k ? ", %lld" : "%lld", (long long)shape[k]);
    }
    if (len < cap) {
        snprintf(buf + len, cap - len, ")");
    }
    return buf;
}

static int shape_equal(const lvd_tensor *t, int ndim, const int64_t *shape)
{
    if (t->ndim != ndim) {
        return 0;
    }
    for (int k = 0; k < ndim; k++) {
        if (t->shape[k] != shape[k]) {
            return 0;
        }
    }
    return 1;
}

static int fail_shape(lvd_error *err, const lvd_tensor *t, int ndim, const int64_t *want)
{
    char got[96], exp[96];
    return lvd_fail(err, "tensor %s has shape %s, expected %s", t->name,
                    shape_str(t->ndim, t->shape, got, sizeof got),
                    shape_str(ndim, want, exp, sizeof exp));
}

static const lvd_tensor *find_entry(const entry *e, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (e[i].part < 0 && strcmp(e[i].name, name) == 0) {
            return e[i].t;
        }
    }
    return NULL;
}

/* Dim D, patch P, grid G and registers R from the embedding tensors. */
static int infer_embedding(const entry *e, size_t n, lvd_vit_info *a, lvd_error *err)
{
    const lvd_tensor *pw = find_entry(e, n, "patch_embed.proj.weight");
    if (!pw) {
        return lvd_fail(err, "missing tensor patch_embed.proj.weight (D, 3, P, P)");
    }
    if (pw->ndim != 4 || pw->shape[1] != 3 || pw->shape[2] != pw->shape[3] || pw->shape[2] < 1 ||
        pw->shape[0] < 64 || pw->shape[0] % 64 != 0 || pw->shape[0] > 65536) {
        char got[96];
        return lvd_fail(err,
                        "tensor %s has shape %s, expected (D, 3, P, P) with D a multiple of the "
                        "head dim 64",
                        pw->name, shape_str(pw->ndim, pw->shape, got, sizeof got));
    }
    a->dim = (int)pw->shape[0];
    a->heads = a->dim / 64;
    a->patch = (int)pw->shape[2];
    const lvd_tensor *pos = find_entry(e, n, "pos_embed");
    if (!pos) {
        return lvd_fail(err, "missing tensor pos_embed (1, 1 + G * G, %d)", a->dim);
    }
    int64_t np = pos->ndim == 3 ? pos->shape[1] - 1 : 0;
    int64_t g = 1;
    while (g * g < np) {
        g++;
    }
    if (np < 1 || g * g != np) {
        char got[96];
        return lvd_fail(err, "tensor %s has shape %s, expected (1, 1 + G * G, %d)", pos->name,
                        shape_str(pos->ndim, pos->shape, got, sizeof got), a->dim);
    }
    a->grid = (int)g;
    const lvd_tensor *reg = find_entry(e, n, "register_tokens");
    a->n_reg = reg && reg->ndim == 3 ? (int)reg->shape[1] : 0;
    if (reg && a->n_reg < 1) {
        char got[96];
        return lvd_fail(err, "tensor %s has shape %s, expected (1, R, %d)", reg->name,
                        shape_str(reg->ndim, reg->shape, got, sizeof got), a->dim);
    }
    a->pos_antialias = a->n_reg > 0;
    return 0;
}

/* Depth from the block indices and the FFN kind from block 0. */
static int infer_blocks(const entry *e, size_t n, lvd_vit_info *a, lvd_error *err)
{
    a->depth = 0;
    for (size_t i = 0; i < n; i++) {
        int b = vit_block_index(e[i].name);
        a->depth = b + 1 > a->depth ? b + 1 : a->depth;
    }
    if (a->depth == 0) {
        return lvd_fail(err, "no transformer block tensors (blocks.0.*) found");
    }
    const lvd_tensor *w12 = find_entry(e, n, "blocks.0.mlp.w12.weight");
    const lvd_tensor *fc1 = find_entry(e, n, "blocks.0.mlp.fc1.weight");
    const lvd_tensor *f = w12 ? w12 : fc1;
    if (!f) {
        return lvd_fail(err, "missing tensor blocks.0.mlp.fc1.weight (or mlp.w12.weight)");
    }
    if (f->ndim != 2 || f->shape[0] < 1 || f->shape[0] > (1 << 24)) {
        char got[96];
        return lvd_fail(err, "tensor %s has shape %s, expected (hidden, %d)", f->name,
                        shape_str(f->ndim, f->shape, got, sizeof got), a->dim);
    }
    a->ffn = w12 ? LVD_VIT_SWIGLU : LVD_VIT_MLP;
    a->ffn_hidden = (int)(w12 ? f->shape[0] / 2 : f->shape[0]);
    return 0;
}

static int find_desc(const vit_param_desc *d, size_t nd, const char *name, size_t *idx)
{
    for (size_t i = 0; i < nd; i++) {
        if (strcmp(d[i].name, name) == 0) {
            *idx = i;
            return 0;
        }
    }
    return -1;
}

/* Assigns every file tensor to its parameter, checking names and shapes. */
static int match(const entry *e, size_t n, const vit_param_desc *d, size_t nd, binding *bind,
                 lvd_error *err)
{
    for (size_t i = 0; i < n; i++) {
        size_t k;
        if (find_desc(d, nd, e[i].name, &k) != 0) {
            char got[96];
            return lvd_fail(err, "unexpected tensor %s %s (not part of this architecture)",
                            e[i].t->name, shape_str(e[i].t->ndim, e[i].t->shape, got, sizeof got));
        }
        int64_t want[4];
        memcpy(want, d[k].shape, sizeof want);
        const lvd_tensor **slot = &bind[k].whole;
        if (e[i].part >= 0) {
            want[0] /= 3;
            slot = &bind[k].parts[e[i].part];
        }
        if (!shape_equal(e[i].t, d[k].ndim, want)) {
            return fail_shape(err, e[i].t, d[k].ndim, want);
        }
        int taken = bind[k].whole || bind[k].parts[0] || bind[k].parts[1] || bind[k].parts[2];
        if (e[i].part < 0 ? taken : (*slot || bind[k].whole)) {
            return lvd_fail(err, "tensor %s duplicates %s", e[i].t->name, d[k].name);
        }
        *slot = e[i].t;
    }
    return 0;
}

/* Checks that every parameter is present (whole, or all three q/k/v parts). */
static int check_complete(const vit_param_desc *d, size_t nd, const binding *bind, lvd_error *err)
{
    static const char *part_names[3] = {"query", "key", "value"};
    for (size_t k = 0; k < nd; k++) {
        const binding *b = &bind[k];
        int nparts = !!b->parts[0] + !!b->parts[1] + !!b->parts[2];
        char exp[96];
        if (!b->whole && nparts == 0) {
            return lvd_fail(err, "missing tensor %s %s", d[k].name,
                            shape_str(d[k].ndim, d[k].shape, exp, sizeof exp));
        }
        for (int p = 0; !b->whole && p < 3; p++) {
            if (!b->parts[p]) {
                return lvd_fail(err, "missing tensor: the %s part of %s (split query/key/value)",
                                part_names[p], d[k].name);
            }
        }
    }
    return 0;
}

/* Points every parameter at its data; q/k/v parts are concatenated into m->owned_params. */
static int bind_params(lvd_vit *m, const vit_param_desc *d, size_t nd, const binding *bind,
                       lvd_error *err)
{
    size_t owned = 0;
    for (size_t k = 0; k < nd; k++) {
        owned += bind[k].whole ? 0 : (size_t)vit_desc_numel(&d[k]);
    }
    if (owned) {
        m->owned_params = malloc(owned * sizeof(float));
        if (!m->owned_params) {
            return lvd_fail(err, "out of memory concatenating query/key/value");
        }
    }
    float *next = m->owned_params;
    for (size_t k = 0; k < nd; k++) {
        if (bind[k].whole) {
            *d[k].dst = bind[k].whole->data;
            continue;
        }
        size_t third = (size_t)vit_desc_numel(&d[k]) / 3;
        for (int p = 0; p < 3; p++) {
            memcpy(next + p * third, bind[k].parts[p]->data, third * sizeof(float));
        }
        *d[k].dst = next;
        next += 3 * third;
    }
    return 0;
}

/* Loads from the tensors of ts under prefix; e has room for all of them. */
static int load_entries(lvd_tensors *ts, const char *prefix, entry *e, lvd_vit **out,
                        lvd_error *err)
{
    size_t plen = strlen(prefix);
    size_t n = 0;
    for (size_t i = 0; i < lvd_tensors_count(ts); i++) {
        const lvd_tensor *t = lvd_tensors_at(ts, i);
        if (strncmp(t->name, prefix, plen) != 0) {
            continue;
        }
        e[n].t = t;
        vit_canonical_name(t->name + plen, e[n].name, sizeof e[n].name, &e[n].part);
        n++;
    }
    lvd_vit_info a = {0};
    a.eps = 1e-6f;
    if (infer_embedding(e, n, &a, err) != 0 || infer_blocks(e, n, &a, err) != 0) {
        return -1;
    }
    lvd_vit *m;
    if (vit_model_alloc(&a, &m, err) != 0) {
        return -1;
    }
    size_t nd = vit_param_descs(m, NULL);
    vit_param_desc *d = calloc(nd, sizeof *d);
    binding *bind = calloc(nd, sizeof *bind);
    int rc = d && bind ? 0 : lvd_fail(err, "out of memory");
    if (rc == 0) {
        vit_param_descs(m, d);
        rc = match(e, n, d, nd, bind, err);
    }
    if (rc == 0) {
        rc = check_complete(d, nd, bind, err);
    }
    if (rc == 0) {
        rc = bind_params(m, d, nd, bind, err);
    }
    free(d);
    free(bind);
    if (rc != 0) {
        lvd_vit_free(m);
        return -1;
    }
    *out = m;
    return 0;
}

int lvd_vit_load_tensors_prefix(lvd_tensors *ts, const char *prefix, lvd_vit **out, lvd_error *err)
{
    *out = NULL;
    size_t n = lvd_tensors_count(ts);
    entry *e = calloc(n ? n : 1, sizeof *e);
    if (!e) {
        return lvd_fail(err, "out of memory");
    }
    int rc = load_entries(ts, prefix, e, out, err);
    free(e);
    return rc;
}

int lvd_vit_load_tensors(lvd_tensors *ts, lvd_vit **out, lvd_error *err)
{
    return lvd_vit_load_tensors_prefix(ts, "", out, err);
}

int lvd_vit_load(const char *path, lvd_vit **out, lvd_error *err)
{
    *out = NULL;
    lvd_tensors *ts;
    if (lvd_tensors_open(path, &ts, err) != 0) {
        return -1;
    }
    if (lvd_vit_load_tensors(ts, out, err) != 0) {
        lvd_tensors_close(ts);
        return lvd_error_prefix(err, "%s", path);
    }
    (*out)->owned_file = ts;
    return 0;
}
