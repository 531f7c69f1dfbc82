/* The train_step case replay (train/ssl_case.h): lvd_ssl_case_run reads the case, builds the
 * trainer from its models and metadata, runs the two iterations and writes every output. */
#include "train/ssl_case.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/tensors.h"
#include "train/ssl.h"
#include "train/step_case.h"

/* The outputs being collected: names and data owned here until written. */
typedef struct outputs {
    lvd_tensor *t;
    int n, cap;
    int failed;
} outputs;

static void outputs_free(outputs *o)
{
    for (int i = 0; i < o->n; i++) {
        free((char *)o->t[i].name);
        free((float *)o->t[i].data);
    }
    free(o->t);
}

/* Adds a copy of data (ndim dims of shape) as tensor "<fmt ...>"; failures are remembered. */
static void __attribute__((format(printf, 5, 6)))
emit(outputs *o, const float *data, int ndim, const int64_t *shape, const char *fmt, ...)
{
    if (o->failed) {
        return;
    }
    if (o->n == o->cap) {
        int cap = o->cap ? 2 * o->cap : 64;
        lvd_tensor *t = realloc(o->t, (size_t)cap * sizeof *t);
        if (!t) {
            o->failed = 1;
            return;
        }
        o->t = t;
        o->cap = cap;
    }
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    int64_t numel = 1;
    for (int d = 0; d < ndim; d++) {
        numel *= shape[d];
    }
    float *copy = malloc((size_t)numel * sizeof *copy + sizeof *copy);
    char *nm = strdup(name);
    if (!copy || !nm) {
        free(copy);
        free(nm);
        o->failed = 1;
        return;
    }
    memcpy(copy, data, (size_t)numel * sizeof *copy);
    lvd_tensor *t = &o->t[o->n++];
    memset(t, 0, sizeof *t);
    t->name = nm;
    t->dtype = LVD_F32;
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->numel = numel;
    t->data = copy;
}

static void __attribute__((format(printf, 3, 4)))
emit_scalar(outputs *o, double v, const char *fmt, ...)
{
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    float f = (float)v;
    int64_t one = 1;
    emit(o, &f, 1, &one, "%s", name);
}

/* A part's buffer under "<what>.<part>.<name>" for every tensor. */
static void emit_part(outputs *o, const lvd_ssl_part *p, const float *buf, const char *what)
{
    for (int i = 0; i < p->layout->n; i++) {
        const lvd_param_tensor *x = &p->layout->t[i];
        emit(o, buf + x->offset, x->ndim, x->shape, "%s.%s.%s", what, p->name, x->name);
    }
}

static const lvd_tensor *need(const lvd_tensors *ts, const char *name, int ndim,
                              const int64_t *shape, lvd_error *err)
{
    const lvd_tensor *t = lvd_tensors_find(ts, name);
    if (!t) {
        lvd_fail(err, "no tensor %s", name);
        return NULL;
    }
    int ok = t->ndim == ndim;
    for (int d = 0; ok && d < ndim; d++) {
        ok = shape[d] < 0 || t->shape[d] == shape[d];
    }
    if (!ok) {
        lvd_fail(err, "tensor %s has an unexpected shape", name);
        return NULL;
    }
    return t;
}

static int has_prefix(const lvd_tensors *ts, const char *prefix)
{
    size_t n = strlen(prefix);
    for (size_t i = 0; i < lvd_tensors_count(ts); i++) {
        if (strncmp(lvd_tensors_at(ts, i)->name, prefix, n) == 0) {
            return 1;
        }
    }
    return 0;
}

/* The trainer of the case: models from student_init / teacher_init, the metadata's settings. */
static int make_trainer(lvd_tensors *ts, const lvd_step_case *c, int Hg, int Wg, int Hl, int Wl,
                        int threads, lvd_ssl **out, lvd_error *err)
{
    const lvd_step_backbone *bb = &c->backbone;
    lvd_ssl_models m = {0};
    m.ibot_separate = has_prefix(ts, "student_init.ibot_head.");
    if (lvd_vit_train_load_tensors(ts, "student_init.backbone.", bb->num_heads, &m.student, err) ||
        lvd_vit_train_load_tensors(ts, "teacher_init.backbone.", bb->num_heads, &m.teacher, err) ||
        lvd_head_load_tensors(&m.student_dino, ts, "student_init.dino_head.", err) ||
        lvd_head_load_tensors(&m.teacher_dino, ts, "teacher_init.dino_head.", err) ||
        (m.ibot_separate &&
         (lvd_head_load_tensors(&m.student_ibot, ts, "student_init.ibot_head.", err) ||
          lvd_head_load_tensors(&m.teacher_ibot, ts, "teacher_init.ibot_head.", err)))) {
        lvd_ssl_models_free(&m);
        return -1;
    }
    /* The metadata must describe the models the tensors make (the loaders infer them). */
    const lvd_vit_info *a = lvd_vit_train_info(m.student);
    const char *why = NULL;
    if (a->dim != bb->embed_dim || a->depth != bb->depth || a->patch != bb->patch_size ||
        a->heads != bb->num_heads || a->n_reg != bb->num_register_tokens) {
        why = "backbone metadata does not match the student_init tensors";
    } else if (strcmp(bb->ffn_layer, a->ffn == LVD_VIT_SWIGLU ? "swiglufused" : "mlp") != 0) {
        why = "ffn_layer does not match the tensors";
    } else if (a->pos_antialias != bb->interpolate_antialias ||
               (!a->pos_antialias && bb->interpolate_offset != 0.1) ||
               (a->pos_antialias && bb->interpolate_offset != 0.0)) {
        why = "interpolation settings other than lvd's convention (bicubic with offset 0.1 "
              "without registers, antialiased without offset with registers)";
    } else if (m.student_dino.cfg.in_dim != c->head.in_dim ||
               m.student_dino.cfg.out_dim != c->head.out_dim ||
               m.student_dino.cfg.nlayers != c->head.nlayers ||
               m.student_dino.cfg.hidden_dim != c->head.hidden_dim ||
               m.student_dino.cfg.bottleneck_dim != c->head.bottleneck_dim ||
               c->hyper.K != c->head.out_dim) {
        why = "head metadata does not match the student_init tensors";
    }
    if (why) {
        lvd_ssl_models_free(&m);
        return lvd_fail(err, "%s", why);
    }
    const lvd_step_hyper *h = &c->hyper;
    lvd_ssl_config cfg;
    lvd_ssl_config_default(&cfg, h->batch, h->n_local, Hg, Hl);
    cfg.global_w = Wg;
    cfg.local_w = Wl;
    cfg.student_temp = h->student_temp;
    cfg.center_momentum = h->center_momentum;
    cfg.koleo_weight = h->koleo_weight;
    cfg.clip_grad = h->clip_grad;
    cfg.layerwise_decay = h->layerwise_decay;
    cfg.patch_embed_lr_mult = h->patch_embed_lr_mult;
    cfg.beta1 = h->beta1;
    cfg.beta2 = h->beta2;
    cfg.eps = h->eps;
    cfg.threads = threads;
    return lvd_ssl_create(&cfg, &m, out, err);
}

/* Copies a (1, K) or (1, 1, K) center into c. */
static int set_center(lvd_center *c, const lvd_tensor *t, const char *name, lvd_error *err)
{
    if (t->numel != c->K) {
        return lvd_fail(err, "%s holds %lld values for %d prototypes", name, (long long)t->numel,
                        c->K);
    }
    memcpy(c->center, t->data, (size_t)c->K * sizeof(float));
    return 0;
}

static int replay(lvd_tensors *ts, int threads, outputs *o, lvd_error *err)
{
    lvd_step_case c;
    if (lvd_step_case_read(ts, &c, err) != 0) {
        return -1;
    }
    const lvd_step_hyper *h = &c.hyper;
    if (h->batch < 1 || h->n_local < 0 || h->K < 1) {
        return lvd_fail(err, "hyper: batch %d, n_local %d, K %d", h->batch, h->n_local, h->K);
    }
    int B = h->batch;
    int64_t gshape[4] = {2 * B, 3, -1, -1}, lshape[4] = {(int64_t)h->n_local * B, 3, -1, -1};
    const lvd_tensor *gc = need(ts, "global_crops", 4, gshape, err);
    const lvd_tensor *lc = gc && h->n_local > 0 ? need(ts, "local_crops", 4, lshape, err) : NULL;
    if (!gc || (h->n_local > 0 && !lc)) {
        return -1;
    }
    int Hg = (int)gc->shape[2], Wg = (int)gc->shape[3];
    int Hl = lc ? (int)lc->shape[2] : c.backbone.patch_size;
    int Wl = lc ? (int)lc->shape[3] : c.backbone.patch_size;
    lvd_ssl *t;
    if (make_trainer(ts, &c, Hg, Wg, Hl, Wl, threads, &t, err) != 0) {
        return -1;
    }
    int rc = -1, K = h->K, P = c.backbone.patch_size;
    int N = (Hg / P) * (Wg / P);
    int64_t mshape[2] = {2 * B, N}, any[3] = {-1, -1, -1};
    const lvd_tensor *mk = need(ts, "masks", 2, mshape, err);
    const lvd_tensor *dc = mk ? need(ts, "dino_center_in", 2, any, err) : NULL;
    const lvd_tensor *ic = dc ? need(ts, "ibot_center_in", 3, any, err) : NULL;
    uint8_t *masks = malloc((size_t)2 * B * N);
    if (!ic || !masks || set_center(lvd_ssl_dino_center(t), dc, "dino_center_in", err) ||
        set_center(lvd_ssl_ibot_center(t), ic, "ibot_center_in", err)) {
        if (!masks) {
            lvd_fail(err, "out of memory");
        }
        goto done;
    }
    for (int i = 0; i < 2 * B * N; i++) {
        masks[i] = mk->data[i] != 0.0f;
    }
    lvd_ssl_batch batch = {gc->data, lc ? lc->data : NULL, masks, NULL, NULL, 0};
    lvd_schedule_values s = {h->lr, h->wd, h->momentum, h->teacher_temp, h->last_layer_lr};
    int np = lvd_ssl_n_parts(t);
    for (int it = 0; it < 2; it++) {
        lvd_ssl_stats st;
        if (lvd_ssl_forward_backward(t, &batch, s.teacher_temp, &st, err) != 0) {
            goto done;
        }
        if (it == 0) {
            for (int i = 0; i < np; i++) {
                lvd_ssl_part p = lvd_ssl_get_part(t, i);
                emit_part(o, &p, p.grad, "it0.grad");
            }
        }
        if (lvd_ssl_update(t, &s, &st, err) != 0) {
            goto done;
        }
        char pre[16];
        snprintf(pre, sizeof pre, "it%d", it);
        emit_scalar(o, st.loss_dino_local, "%s.loss.dino_local", pre);
        emit_scalar(o, st.loss_dino_global, "%s.loss.dino_global", pre);
        emit_scalar(o, st.loss_koleo, "%s.loss.koleo", pre);
        emit_scalar(o, st.loss_ibot, "%s.loss.ibot", pre);
        emit_scalar(o, st.loss_total, "%s.loss.total", pre);
        const float *td, *ti;
        int nm;
        lvd_ssl_targets(t, &td, &ti, &nm);
        int64_t dshape[2] = {2 * B, K}, ishape[2] = {nm, K};
        emit(o, td, 2, dshape, "%s.teacher_dino_targets", pre);
        if (ti) {
            emit(o, ti, 2, ishape, "%s.teacher_ibot_targets", pre);
        }
        for (int i = 0; i < np; i++) {
            lvd_ssl_part p = lvd_ssl_get_part(t, i);
            emit_scalar(o, st.grad_norm[i], "%s.grad_norm.%s", pre, p.name);
        }
    }
    for (int i = 0; i < np; i++) {
        lvd_ssl_part p = lvd_ssl_get_part(t, i);
        for (int j = 0; j < p.layout->n; j++) {
            const char *name = p.layout->t[j].name;
            float lr = (float)p.opt->groups[j].lr_mult, wd = (float)p.opt->groups[j].wd_mult;
            int64_t one = 1;
            emit(o, &lr, 1, &one, "lr_multiplier.%s.%s", p.name, name);
            emit(o, &wd, 1, &one, "wd_multiplier.%s.%s", p.name, name);
        }
        emit_part(o, &p, p.student, "student_final");
        emit_part(o, &p, p.teacher, "teacher_final");
    }
    /* The centers after both iterations: the last pending update applied. */
    lvd_ckpt_group groups[LVD_SSL_CKPT_GROUPS];
    lvd_ssl_ckpt_groups(t, groups);
    int64_t cshape[3] = {1, 1, K};
    emit(o, lvd_ssl_dino_center(t)->center, 2, cshape + 1, "dino_center_out");
    emit(o, lvd_ssl_ibot_center(t)->center, 3, cshape, "ibot_center_out");
    rc = 0;
done:
    free(masks);
    lvd_ssl_free(t);
    return rc;
}

int lvd_ssl_case_run(const char *case_path, const char *out_path, int threads, lvd_error *err)
{
    lvd_tensors *ts;
    if (lvd_tensors_open(case_path, &ts, err) != 0) {
        return -1;
    }
    outputs o = {0};
    int rc = replay(ts, threads, &o, err);
    lvd_tensors_close(ts);
    if (rc != 0) {
        outputs_free(&o);
        return lvd_error_prefix(err, "%s", case_path);
    }
    if (o.failed) {
        outputs_free(&o);
        return lvd_fail(err, "%s: out of memory for the outputs", out_path);
    }
    const char *meta[2] = {"note", "written by lvd_ssl_case_run (train/ssl_case.h)"};
    rc = lvd_safetensors_write(out_path, o.t, (size_t)o.n, meta, 1, err);
    outputs_free(&o);
    return rc;
}
