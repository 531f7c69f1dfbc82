/* Distillation (train/distill.h): teacher files (lvd_distill_teacher_load, heads save), the
 * configuration, creation and release of a trainer, its accessors and checkpoint groups, the
 * mode-independent step entry points and the teacher's input resize. The per-mode passes are
 * in train/distill_heads.c and train/distill_features.c. */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "embed/vit_layers.h"
#include "train/distill_internal.h"
#include "train/ssl_student.h"

void lvd_distill_config_default(lvd_distill_config *c, int batch, int n_local, int global_size,
                                int local_size)
{
    memset(c, 0, sizeof *c);
    c->mode = LVD_DISTILL_AUTO;
    lvd_ssl_config_default(&c->ssl, batch, n_local, global_size, local_size);
    c->cls_weight = 0.5;
    c->patch_weight = 0.5;
}

/* ---- Teacher files ---- */

void lvd_distill_teacher_free(lvd_distill_teacher *t)
{
    if (!t) {
        return;
    }
    lvd_vit_free(t->backbone);
    lvd_tensors_close(t->file);
    lvd_head_free(&t->dino);
    lvd_head_free(&t->ibot);
    memset(t, 0, sizeof *t);
}

static int has_head(const lvd_tensors *ts, const char *prefix)
{
    char name[256];
    snprintf(name, sizeof name, "%slast_layer.weight_g", prefix);
    return lvd_tensors_find(ts, name) != NULL;
}

/* The heads of ts under base ("" or "teacher."): "<base>dino_head." and "<base>ibot_head.". */
static int load_heads(lvd_distill_teacher *t, const lvd_tensors *ts, const char *base,
                      const char *path, lvd_error *err)
{
    char dino[64], ibot[64];
    snprintf(dino, sizeof dino, "%sdino_head.", base);
    snprintf(ibot, sizeof ibot, "%sibot_head.", base);
    if (!has_head(ts, dino)) {
        return lvd_fail(err, "%s: no DINO head (tensors %s*)", path, dino);
    }
    if (lvd_head_load_tensors(&t->dino, ts, dino, err) != 0) {
        return lvd_error_prefix(err, "%s", path);
    }
    if (has_head(ts, ibot)) {
        if (lvd_head_load_tensors(&t->ibot, ts, ibot, err) != 0) {
            return lvd_error_prefix(err, "%s", path);
        }
        t->ibot_separate = 1;
    }
    t->has_heads = 1;
    return 0;
}

static int load_heads_file(lvd_distill_teacher *t, const char *path, lvd_error *err)
{
    lvd_tensors *ts;
    if (lvd_tensors_open(path, &ts, err) != 0) {
        return -1;
    }
    int rc = load_heads(t, ts, has_head(ts, "teacher.dino_head.") ? "teacher." : "", path, err);
    lvd_tensors_close(ts);
    return rc;
}

/* The backbone's head count as lvd_vit_train_save recorded it must be lvd_vit's dim / 64. */
static int check_heads_meta(const lvd_distill_teacher *t, const char *path, lvd_error *err)
{
    const char *meta = lvd_tensors_metadata(t->file, "lvd_vit_heads");
    const lvd_vit_info *a = lvd_vit_get_info(t->backbone);
    if (meta && atoi(meta) != a->heads) {
        return lvd_fail(err,
                        "%s: the backbone has %s attention heads of width %d; the inference "
                        "forward needs heads of width 64 (%d heads)",
                        path, meta, a->dim / (atoi(meta) > 0 ? atoi(meta) : 1), a->heads);
    }
    return 0;
}

int lvd_distill_teacher_load(const char *path, const char *heads_path, lvd_distill_teacher *t,
                             lvd_error *err)
{
    memset(t, 0, sizeof *t);
    if (!path) {
        return lvd_fail(err, "distill: no teacher path");
    }
    char bb[4096], hd[4096];
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        if ((size_t)snprintf(bb, sizeof bb, "%s/%s", path, LVD_DISTILL_TEACHER_BACKBONE) >=
                sizeof bb ||
            (size_t)snprintf(hd, sizeof hd, "%s/%s", path, LVD_DISTILL_TEACHER_HEADS) >=
                sizeof hd) {
            return lvd_fail(err, "%s: path too long", path);
        }
        path = bb;
        if (!heads_path && access(hd, F_OK) == 0) {
            heads_path = hd;
        }
    }
    if (lvd_tensors_open(path, &t->file, err) != 0) {
        return -1;
    }
    int ckpt = lvd_tensors_find(t->file, "teacher.backbone.patch_embed.proj.weight") != NULL;
    int rc = ckpt ? lvd_vit_load_tensors_prefix(t->file, "teacher.backbone.", &t->backbone, err)
                  : lvd_vit_load_tensors(t->file, &t->backbone, err);
    if (rc != 0) {
        lvd_error_prefix(err, "%s", path);
    }
    rc = rc ? rc : check_heads_meta(t, path, err);
    if (rc == 0 && heads_path) {
        rc = load_heads_file(t, heads_path, err);
    } else if (rc == 0 && ckpt && has_head(t->file, "teacher.dino_head.")) {
        rc = load_heads(t, t->file, "teacher.", path, err);
    }
    int dim = rc == 0 ? lvd_vit_get_info(t->backbone)->dim : 0;
    if (rc == 0 && t->has_heads &&
        (t->dino.cfg.in_dim != dim || (t->ibot_separate && t->ibot.cfg.in_dim != dim))) {
        rc = lvd_fail(err, "%s: the teacher's heads take %d features, its backbone gives %d",
                      heads_path ? heads_path : path, t->dino.cfg.in_dim, dim);
    }
    if (rc != 0) {
        lvd_distill_teacher_free(t);
    }
    return rc;
}

int lvd_distill_heads_save(const char *path, const lvd_head *dino, const lvd_head *ibot,
                           lvd_error *err)
{
    if (!dino || !dino->params || (ibot && !ibot->params)) {
        return lvd_fail(err, "%s: no DINO head to save", path);
    }
    /* lvd_ckpt_save only reads the group buffers. */
    lvd_ckpt_group g[2] = {
        {"dino_head.", &dino->layout, (float *)dino->params},
        {"ibot_head.", ibot ? &ibot->layout : NULL, ibot ? (float *)ibot->params : NULL}};
    lvd_ckpt_state st = {0};
    return lvd_ckpt_save(path, g, ibot ? 2 : 1, &st, err);
}

/* ---- The teacher's input ---- */

const float *lvd_distill_teacher_input(lvd_distill *d, const float *x)
{
    if (!d->t_x) {
        return x;
    }
    int Hs = d->Hs, Ws = d->Ws, Ht = d->Ht, Wt = d->Wt, planes = d->B2 * 3;
    int blas_threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
    /* Each plane: Wy (Ht, Hs) X (Hs, Ws) Wx^T (Ws, Wt). */
#pragma omp parallel for num_threads(d->threads) schedule(static)
    for (int p = 0; p < planes; p++) {
        float *tmp = d->rs_tmp + (size_t)omp_get_thread_num() * Ht * Ws;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Ht, Ws, Hs, 1.0f, d->wy, Hs,
                    x + (size_t)p * Hs * Ws, Ws, 0.0f, tmp, Ws);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Ht, Wt, Ws, 1.0f, tmp, Ws, d->wx, Ws,
                    0.0f, d->t_x + (size_t)p * Ht * Wt, Wt);
    }
    openblas_set_num_threads(blas_threads);
    return d->t_x;
}

static int init_resize(lvd_distill *d, lvd_error *err)
{
    if (d->Ht == d->Hs && d->Wt == d->Ws) {
        return 0;
    }
    d->t_x = malloc((size_t)d->B2 * 3 * d->Ht * d->Wt * sizeof(float));
    d->wy = malloc((size_t)d->Ht * d->Hs * sizeof(float));
    d->wx = malloc((size_t)d->Wt * d->Ws * sizeof(float));
    d->rs_tmp = malloc((size_t)d->threads * d->Ht * d->Ws * sizeof(float));
    if (!d->t_x || !d->wy || !d->wx || !d->rs_tmp) {
        return lvd_fail(err, "distill: out of memory for the teacher's %dx%d input", d->Ht, d->Wt);
    }
    lvd_vit_pos_axis_matrix(d->wy, d->Hs, d->Ht, 1);
    lvd_vit_pos_axis_matrix(d->wx, d->Ws, d->Wt, 1);
    return 0;
}

/* ---- Trainer ---- */

void lvd_distill_free(lvd_distill *d)
{
    if (!d) {
        return;
    }
    free(d->t_x);
    free(d->wy);
    free(d->wx);
    free(d->rs_tmp);
    lvd_ssl_free(d->ssl);
    for (int i = 0; i < 2; i++) {
        lvd_head_acts_free(&d->tacts[i]);
        lvd_adamw_free(&d->opt[i]);
    }
    free(d->t_cls);
    free(d->t_in);
    lvd_vit_train_free(d->student);
    lvd_vit_train_free(d->ema);
    lvd_vit_pass_free(d->pass);
    lvd_param_layout_free(&d->proj_layout);
    free(d->proj);
    free(d->proj_ema);
    free(d->proj_grad);
    free(d->xs);
    free(d->tf);
    free(d->y);
    free(d->dx);
    free(d->row_loss);
    free(d);
}

int lvd_distill_create(const lvd_distill_config *cfg, lvd_distill_teacher *teacher,
                       const lvd_distill_spec *student, lvd_distill **out, lvd_error *err)
{
    *out = NULL;
    if (!cfg || !teacher || !teacher->backbone || !student) {
        return lvd_fail(err, "distill: a configuration, a teacher and a student are needed");
    }
    const lvd_ssl_config *c = &cfg->ssl;
    if (c->drop_path != 0.0) {
        return lvd_fail(err, "distill: no stochastic depth in distillation (drop_path %g)",
                        c->drop_path);
    }
    lvd_distill_mode mode = cfg->mode;
    if (mode == LVD_DISTILL_AUTO) {
        mode = teacher->has_heads ? LVD_DISTILL_HEADS : LVD_DISTILL_FEATURES;
    }
    if (mode != LVD_DISTILL_HEADS && mode != LVD_DISTILL_FEATURES) {
        return lvd_fail(err, "distill: unknown mode %d", (int)cfg->mode);
    }
    if (mode == LVD_DISTILL_HEADS && !teacher->has_heads) {
        return lvd_fail(err, "distill: head distillation needs a teacher with a DINO head "
                             "(use the feature mode for a backbone alone)");
    }
    if (mode == LVD_DISTILL_FEATURES && (!(cfg->cls_weight >= 0) || !(cfg->patch_weight >= 0) ||
                                         !(cfg->cls_weight + cfg->patch_weight > 0))) {
        return lvd_fail(err, "distill: feature loss weights cls %g, patch %g (>= 0, not both 0)",
                        cfg->cls_weight, cfg->patch_weight);
    }
    int P = student->arch.patch;
    if (c->batch < 1 || P < 1 || c->global_h < P || c->global_w < P || c->global_h % P ||
        c->global_w % P) {
        return lvd_fail(err,
                        "distill: batch %d, global crops %dx%d: need a batch >= 1 and crops "
                        "that are positive multiples of the student's patch %d",
                        c->batch, c->global_h, c->global_w, P);
    }
    const lvd_vit_info *ta = lvd_vit_get_info(teacher->backbone);
    if ((double)c->batch * 2 * (c->global_h / P) * (c->global_w / P) * ta->dim > INT32_MAX / 4) {
        return lvd_fail(err, "distill: batch %d too large", c->batch);
    }
    lvd_distill *d = calloc(1, sizeof *d);
    if (!d) {
        return lvd_fail(err, "distill: out of memory");
    }
    d->cfg = *cfg;
    d->cfg.mode = mode;
    d->cfg.ssl.max_masked = 0;
    d->mode = mode;
    d->teacher = teacher;
    d->threads = c->threads > 0 ? c->threads : omp_get_max_threads();
    d->B2 = 2 * c->batch;
    d->Hs = c->global_h;
    d->Ws = c->global_w;
    d->Ht = c->global_h / P * ta->patch;
    d->Wt = c->global_w / P * ta->patch;
    d->N = (c->global_h / P) * (c->global_w / P);
    d->Ds = student->arch.dim;
    d->Dt = ta->dim;
    lvd_vit_set_threads(teacher->backbone, d->threads);
    teacher->dino.threads = teacher->ibot.threads = d->threads;
    int rc = init_resize(d, err);
    if (rc == 0) {
        rc = mode == LVD_DISTILL_HEADS ? lvd_distill_heads_init(d, student, err)
                                       : lvd_distill_features_init(d, student, err);
    }
    if (rc != 0) {
        lvd_distill_free(d);
        return -1;
    }
    *out = d;
    return 0;
}

lvd_distill_mode lvd_distill_get_mode(const lvd_distill *d)
{
    return d->mode;
}

const lvd_distill_config *lvd_distill_get_config(const lvd_distill *d)
{
    return &d->cfg;
}

lvd_vit_train *lvd_distill_student(lvd_distill *d)
{
    return d->ssl ? lvd_ssl_student(d->ssl) : d->student;
}

lvd_vit_train *lvd_distill_output(lvd_distill *d)
{
    return d->ssl ? lvd_ssl_teacher(d->ssl) : d->ema;
}

lvd_ssl *lvd_distill_ssl(lvd_distill *d)
{
    return d->ssl;
}

int lvd_distill_n_parts(const lvd_distill *d)
{
    return d->ssl ? lvd_ssl_n_parts(d->ssl) : 2;
}

lvd_ssl_part lvd_distill_get_part(lvd_distill *d, int i)
{
    return d->ssl ? lvd_ssl_get_part(d->ssl, i) : d->parts[i];
}

int64_t lvd_distill_get_step(const lvd_distill *d)
{
    return d->ssl ? lvd_ssl_get_step(d->ssl) : d->step;
}

void lvd_distill_set_step(lvd_distill *d, int64_t step)
{
    if (d->ssl) {
        lvd_ssl_set_step(d->ssl, step);
        return;
    }
    d->step = step;
    for (int i = 0; i < 2; i++) {
        d->opt[i].step = step;
    }
}

int lvd_distill_ckpt_groups(lvd_distill *d, lvd_ckpt_group *groups)
{
    if (d->ssl) {
        return lvd_ssl_ckpt_groups(d->ssl, groups);
    }
    static const char *const prefix[4][2] = {
        {"student.backbone.", "student.proj."},
        {"teacher.backbone.", "teacher.proj."},
        {"adamw_m.backbone.", "adamw_m.proj."},
        {"adamw_v.backbone.", "adamw_v.proj."},
    };
    int n = 0;
    for (int i = 0; i < 2; i++) {
        lvd_ssl_part *p = &d->parts[i];
        float *data[4] = {p->student, p->teacher, p->opt->m, p->opt->v};
        for (int k = 0; k < 4; k++) {
            groups[n++] = (lvd_ckpt_group){prefix[k][i], p->layout, data[k]};
        }
    }
    return n;
}

/* ---- Steps ---- */

static int pass(lvd_distill *d, const lvd_ssl_batch *b, double temp, int reuse, int grad,
                int record, lvd_distill_stats *st, lvd_error *err)
{
    lvd_distill_stats local;
    if (!st) {
        st = &local;
    }
    memset(st, 0, sizeof *st);
    if (!d || !b || !b->global_crops) {
        return lvd_fail(err, "distill: a trainer and a batch with its global crops are needed");
    }
    if (!reuse && !(temp > 0)) {
        return lvd_fail(err, "distill: teacher temperature %g", temp);
    }
    if (reuse && !d->have_targets) {
        return lvd_fail(err, "distill: no teacher targets of an earlier call to reuse");
    }
    d->ready = 0;
    d->have_targets = d->have_targets && reuse;
    int rc = d->mode == LVD_DISTILL_HEADS
                 ? lvd_distill_heads_pass(d, b, temp, reuse, grad, record, st, err)
                 : lvd_distill_features_pass(d, b, reuse, grad, st, err);
    d->ready = rc == 0 && grad;
    d->have_targets = d->have_targets || (rc == 0 && !reuse);
    return rc;
}

int lvd_distill_forward_backward(lvd_distill *d, const lvd_ssl_batch *b, double teacher_temp,
                                 lvd_distill_stats *st, lvd_error *err)
{
    return pass(d, b, teacher_temp, 0, 1, 1, st, err);
}

int lvd_distill_loss(lvd_distill *d, const lvd_ssl_batch *b, double teacher_temp,
                     lvd_distill_stats *st, lvd_error *err)
{
    return pass(d, b, teacher_temp, 0, 0, 0, st, err);
}

int lvd_distill_student_loss(lvd_distill *d, const lvd_ssl_batch *b, lvd_distill_stats *st,
                             lvd_error *err)
{
    return pass(d, b, 0.0, 1, 0, 0, st, err);
}

int lvd_distill_update(lvd_distill *d, const lvd_schedule_values *s, lvd_distill_stats *st,
                       lvd_error *err)
{
    if (!d || !s) {
        return lvd_fail(err, "distill: update without a trainer or schedule values");
    }
    if (!d->ready) {
        return lvd_fail(err, "distill: update before a forward_backward");
    }
    double norm[LVD_SSL_MAX_PARTS] = {0}, t0 = omp_get_wtime();
    int rc;
    if (d->ssl) {
        lvd_ssl_stats ss = {0};
        rc = lvd_ssl_update(d->ssl, s, &ss, err);
        memcpy(norm, ss.grad_norm, sizeof norm);
    } else {
        rc = lvd_ssl_parts_update(d->parts, 2, s, d->cfg.ssl.clip_grad, d->threads, norm, err);
        if (rc != 0) {
            lvd_error_prefix(err, "distill");
        } else {
            d->step++;
        }
    }
    if (st) {
        memcpy(st->grad_norm, norm, sizeof norm);
        st->t_update = omp_get_wtime() - t0;
    }
    if (rc == 0) {
        d->ready = 0;
    }
    return rc;
}

int lvd_distill_step(lvd_distill *d, const lvd_ssl_batch *b, const lvd_schedule_values *s,
                     lvd_distill_stats *st, lvd_error *err)
{
    if (!s) {
        return lvd_fail(err, "distill: step without schedule values");
    }
    if (lvd_distill_forward_backward(d, b, s->teacher_temp, st, err) != 0) {
        return -1;
    }
    return lvd_distill_update(d, s, st, err);
}
