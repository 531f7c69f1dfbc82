/* The SSL iteration (train/ssl.h): lvd_ssl_forward_backward (teacher targets, student forward,
 * losses, backward), lvd_ssl_update (clipping, AdamW, EMA) and lvd_ssl_step, in the order of
 * SSLMetaArch.forward_backward and the train.py loop; and the student side they are built from,
 * public in train/ssl_student.h (lvd_ssl_get_room, lvd_ssl_student_pass, lvd_ssl_parts_update,
 * lvd_ssl_save_centers, lvd_ssl_restore_centers). */
#include <math.h>
#include <string.h>
#include <time.h>

#include "train/ssl_internal.h"
#include "train/ssl_student.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The masked patches of the batch into t->mask_idx / mask_w / n_masked: the collate's
 * bookkeeping when given (checked against the masks' range), else derived from the masks. */
static int mask_rows(lvd_ssl *t, const lvd_ssl_batch *b, lvd_error *err)
{
    int rows = 2 * t->cfg.batch, all = rows * t->N;
    t->n_masked = 0;
    if (!t->do_ibot || !b->masks) {
        return 0;
    }
    if (!b->mask_indices) {
        if (lvd_ibot_masked_rows(b->masks, rows, t->N, t->mask_idx, t->mask_w, &t->n_masked, err) !=
            0) {
            return lvd_error_prefix(err, "ssl");
        }
    } else {
        if (b->n_masked < 0 || b->n_masked > all || !b->masks_weight) {
            return lvd_fail(err, "ssl: %d mask indices given for %d patches (with weights)",
                            b->n_masked, all);
        }
        for (int i = 0; i < b->n_masked; i++) {
            int k = b->mask_indices[i];
            if (k < 0 || k >= all || (i > 0 && k <= b->mask_indices[i - 1]) || !b->masks[k]) {
                return lvd_fail(err, "ssl: mask index %d (%d) is not an ascending masked patch", i,
                                k);
            }
        }
        memcpy(t->mask_idx, b->mask_indices, (size_t)b->n_masked * sizeof *t->mask_idx);
        memcpy(t->mask_w, b->masks_weight, (size_t)b->n_masked * sizeof *t->mask_w);
        t->n_masked = b->n_masked;
    }
    if (t->n_masked > t->max_masked) {
        return lvd_fail(err, "ssl: %d masked patches, more than the %d the trainer holds",
                        t->n_masked, t->max_masked);
    }
    return 0;
}

/* Rows of the final-normed tokens of a pass: row 0 of image i is its cls token. */
static const float *token(const lvd_vit_pass *p, int image, int tok)
{
    return p->out + ((size_t)image * p->T + tok) * p->info.dim;
}

/* dst row r = the patch token of flat masked index idx[r] of pass p. */
static void gather_patches(float *dst, const lvd_vit_pass *p, const int *idx, int n, int R,
                           int threads)
{
    size_t D = (size_t)p->info.dim;
    int N = p->N;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int r = 0; r < n; r++) {
        memcpy(dst + (size_t)r * D, token(p, idx[r] / N, 1 + R + idx[r] % N), D * sizeof(float));
    }
}

/* dst = src (center, pending update and its flag; same K). */
static void copy_center(lvd_center *dst, const lvd_center *src)
{
    memcpy(dst->center, src->center, (size_t)src->K * sizeof *src->center);
    memcpy(dst->pending, src->pending, ((size_t)src->K + 1) * sizeof *src->pending);
    dst->has_pending = src->has_pending;
}

void lvd_ssl_save_centers(lvd_ssl *t)
{
    copy_center(&t->saved[0], &t->cdino);
    copy_center(&t->saved[1], &t->cibot);
}

/* The centers as before the last forward_backward (its teacher step applied and recorded
 * updates): a failed iteration leaves no trace in them. */
void lvd_ssl_restore_centers(lvd_ssl *t)
{
    copy_center(&t->cdino, &t->saved[0]);
    copy_center(&t->cibot, &t->saved[1]);
}

static int threads_of(const lvd_ssl *t)
{
    return t->cfg.threads > 0 ? t->cfg.threads : 1;
}

/* Step 1: the teacher's targets into t_dino (2B, K) and t_ibot (n_masked, Ki). */
static int teacher(lvd_ssl *t, const lvd_ssl_batch *b, double temp, lvd_error *err)
{
    const lvd_ssl_config *c = &t->cfg;
    int B = c->batch, D = t->D, M = t->n_masked, K = t->K, Ki = t->Ki, th = threads_of(t);
    /* Only the cls tokens and the masked patches are read below. */
    if (lvd_vit_pass_keep(t->tpass, 1, t->mask_idx, M, err) ||
        lvd_vit_train_forward(t->teacher, t->tpass, b->global_crops, NULL, NULL, NULL, err)) {
        return lvd_error_prefix(err, "ssl: teacher");
    }
    /* Swapped cls rows: crop 2 of each image first. */
    for (int r = 0; r < 2 * B; r++) {
        memcpy(t->t_in + (size_t)r * D, token(t->tpass, r < B ? r + B : r - B, 0),
               (size_t)D * sizeof(float));
    }
    gather_patches(t->t_in + (size_t)2 * B * D, t->tpass, t->mask_idx, M, t->R, th);
    float *cls_out = t->t_logits, *patch_out = t->t_logits + (size_t)2 * B * K;
    if (!t->separate) {
        if (lvd_head_forward(&t->tdino, &t->tacts[0], t->t_in, 2 * B + M, cls_out, err)) {
            return lvd_error_prefix(err, "ssl: teacher head");
        }
    } else if (lvd_head_forward(&t->tdino, &t->tacts[0], t->t_in, 2 * B, cls_out, err) ||
               (M > 0 && lvd_head_forward(&t->tibot, &t->tacts[1], t->t_in + (size_t)2 * B * D, M,
                                          patch_out, err))) {
        return lvd_error_prefix(err, "ssl: teacher head");
    }
    float tt = (float)temp;
    /* Across ranks (a hook) every rank takes part in the iBOT sums, also one without rows. */
    int ibot_reduced = M > 0 || (c->allreduce && t->do_ibot);
    if (!c->sinkhorn) {
        /* Softmax centering: the pending update applied before use, this batch's recorded after. */
        if (lvd_center_softmax(&t->cdino, cls_out, 2 * B, tt, t->t_dino, err) ||
            lvd_center_update(&t->cdino, cls_out, 2 * B, c->allreduce, err)) {
            return lvd_error_prefix(err, "ssl: DINO targets");
        }
        if ((M > 0 && lvd_center_softmax(&t->cibot, patch_out, M, tt, t->t_ibot, err)) ||
            (ibot_reduced && lvd_center_update(&t->cibot, patch_out, M, c->allreduce, err))) {
            return lvd_error_prefix(err, "ssl: iBOT targets");
        }
    } else {
        if (lvd_sinkhorn_targets(cls_out, 2 * B, K, tt, 3, c->allreduce, t->t_dino, err)) {
            return lvd_error_prefix(err, "ssl: DINO targets");
        }
        if (ibot_reduced &&
            lvd_sinkhorn_targets(patch_out, M, Ki, tt, 3, c->allreduce, t->t_ibot, err)) {
            return lvd_error_prefix(err, "ssl: iBOT targets");
        }
    }
    return 0;
}

/* Stochastic-depth seed of one pass of the current step. */
static uint64_t drop_seed(const lvd_ssl *t, int pass)
{
    uint64_t z = t->cfg.drop_seed ^ ((uint64_t)t->step * 0x9e3779b97f4a7c15ULL) ^
                 ((uint64_t)(pass + 1) * 0xbf58476d1ce4e5b9ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Step 2: student backbones and heads; s_in holds [local cls, global cls, masked patches] and
 * s_logits their head outputs. */
static int student(lvd_ssl *t, const lvd_ssl_batch *b, lvd_error *err)
{
    const lvd_ssl_config *c = &t->cfg;
    int B = c->batch, D = t->D, M = t->n_masked, nl = c->n_local * B, th = threads_of(t);
    lvd_vit_drop dg = {c->drop_path, drop_seed(t, 0)}, dl = {c->drop_path, drop_seed(t, 1)};
    /* Only the cls tokens and the masked patches are read below. */
    if (lvd_vit_pass_keep(t->sglobal, 1, t->mask_idx, M, err) ||
        (nl > 0 && lvd_vit_pass_keep(t->slocal, 1, NULL, 0, err)) ||
        lvd_vit_train_forward(t->student, t->sglobal, b->global_crops, b->masks, &dg, NULL, err) ||
        (nl > 0 &&
         lvd_vit_train_forward(t->student, t->slocal, b->local_crops, NULL, &dl, NULL, err))) {
        return lvd_error_prefix(err, "ssl: student");
    }
    for (int r = 0; r < nl; r++) {
        memcpy(t->s_in + (size_t)r * D, token(t->slocal, r, 0), (size_t)D * sizeof(float));
    }
    for (int r = 0; r < 2 * B; r++) {
        memcpy(t->s_in + (size_t)(nl + r) * D, token(t->sglobal, r, 0), (size_t)D * sizeof(float));
    }
    gather_patches(t->s_in + (size_t)t->n_cls * D, t->sglobal, t->mask_idx, M, t->R, th);
    float *patch_out = t->s_logits + (size_t)t->n_cls * t->K;
    if (!t->separate) {
        if (lvd_head_forward(&t->sdino, &t->sacts[0], t->s_in, t->n_cls + M, t->s_logits, err)) {
            return lvd_error_prefix(err, "ssl: student head");
        }
    } else if (lvd_head_forward(&t->sdino, &t->sacts[0], t->s_in, t->n_cls, t->s_logits, err) ||
               (M > 0 && lvd_head_forward(&t->sibot, &t->sacts[1], t->s_in + (size_t)t->n_cls * D,
                                          M, patch_out, err))) {
        return lvd_error_prefix(err, "ssl: student head");
    }
    return 0;
}

/* Step 3 without KoLeo: the cross-entropy terms, each writing its gradient over its student
 * logits (s_logits becomes d loss / d logits). */
static int losses(lvd_ssl *t, lvd_ssl_stats *st, lvd_error *err)
{
    const lvd_ssl_config *c = &t->cfg;
    int B = c->batch, K = t->K, nl = c->n_local;
    double terms = 2.0 + (2 * nl > 1 ? 2 * nl : 1), loss;
    float temp = (float)c->student_temp;
    const float *both[2] = {t->t_dino, t->t_dino + (size_t)B * K};
    st->loss_dino_local = 0.0;
    for (int j = 0; j < nl; j++) {
        float *s = t->s_logits + (size_t)j * B * K;
        if (lvd_dino_loss(s, both, 2, B, K, temp, c->dino_weight / terms, &loss, s, err)) {
            return lvd_error_prefix(err, "ssl: local DINO loss");
        }
        st->loss_dino_local += loss;
    }
    float *s = t->s_logits + (size_t)nl * B * K;
    const float *swapped[1] = {t->t_dino};
    if (lvd_dino_loss(s, swapped, 1, 2 * B, K, temp, 2.0 * c->dino_weight / terms, &loss, s, err)) {
        return lvd_error_prefix(err, "ssl: global DINO loss");
    }
    st->loss_dino_global = loss / c->dino_weight;
    st->loss_dino_local /= c->dino_weight;
    st->loss_ibot = 0.0;
    if (t->n_masked > 0) {
        s = t->s_logits + (size_t)t->n_cls * K;
        if (lvd_ibot_loss(s, t->t_ibot, t->mask_w, t->n_masked, t->Ki, temp, 2 * B,
                          2.0 * 0.5 * c->ibot_weight, &loss, s, err)) {
            return lvd_error_prefix(err, "ssl: iBOT loss");
        }
        st->loss_ibot = loss / c->ibot_weight;
    }
    return 0;
}

/* Step 4's head part: the student heads' gradients (set) and d s_in into s_dx. */
static int head_backward(lvd_ssl *t, lvd_error *err)
{
    for (int i = 0; i < 1 + t->separate; i++) {
        lvd_head *h = i ? &t->sibot : &t->sdino;
        memset(t->head_grad[i], 0, h->layout.total * sizeof(float));
    }
    float *dpatch_rows = t->s_dx + (size_t)t->n_cls * t->D;
    if (!t->separate) {
        if (lvd_head_backward(&t->sdino, &t->sacts[0], t->s_logits, t->head_grad[0], t->s_dx,
                              err)) {
            return lvd_error_prefix(err, "ssl: student head");
        }
    } else if (lvd_head_backward(&t->sdino, &t->sacts[0], t->s_logits, t->head_grad[0], t->s_dx,
                                 err) ||
               (t->n_masked > 0 &&
                lvd_head_backward(&t->sibot, &t->sacts[1], t->s_logits + (size_t)t->n_cls * t->K,
                                  t->head_grad[1], dpatch_rows, err))) {
        return lvd_error_prefix(err, "ssl: student head");
    }
    return 0;
}

/* Step 4 and KoLeo: head backward (d s_in into s_dx), KoLeo's gradient added to the global cls
 * rows, then the backbone backward of both passes; grad 0: the KoLeo loss and the total only. */
static int backward(lvd_ssl *t, int grad, lvd_ssl_stats *st, lvd_error *err)
{
    const lvd_ssl_config *c = &t->cfg;
    int B = c->batch, D = t->D, M = t->n_masked, nl = c->n_local * B, th = threads_of(t);
    if (grad) {
        lvd_vit_train_zero_grad(t->student);
        if (head_backward(t, err) != 0) {
            return -1;
        }
    }
    /* KoLeo on each global crop's backbone cls tokens (not across the two crops of an image). */
    st->loss_koleo = 0.0;
    if (t->do_koleo) {
        for (int k = 0; k < 2; k++) {
            size_t off = (size_t)(nl + k * B) * D;
            double loss;
            if (lvd_koleo_loss(t->s_in + off, B, D, c->koleo_weight, &loss,
                               grad ? t->s_dx + off : NULL, err)) {
                return lvd_error_prefix(err, "ssl: KoLeo loss");
            }
            st->loss_koleo += loss;
        }
    }
    st->loss_total = c->dino_weight * (st->loss_dino_local + st->loss_dino_global) +
                     st->loss_koleo + c->ibot_weight * st->loss_ibot;
    if (!isfinite(st->loss_total)) {
        return lvd_fail(err, "ssl: loss is %g (dino local %g, global %g, koleo %g, ibot %g)",
                        st->loss_total, st->loss_dino_local, st->loss_dino_global, st->loss_koleo,
                        st->loss_ibot);
    }
    if (!grad) {
        return 0;
    }
    const float *dpatch = NULL;
    if (M > 0) {
        const float *dpatch_rows = t->s_dx + (size_t)t->n_cls * D;
        memset(t->s_dpatch, 0, (size_t)2 * B * t->N * D * sizeof(float));
#pragma omp parallel for num_threads(th) schedule(static)
        for (int r = 0; r < M; r++) {
            memcpy(t->s_dpatch + (size_t)t->mask_idx[r] * D, dpatch_rows + (size_t)r * D,
                   (size_t)D * sizeof(float));
        }
        dpatch = t->s_dpatch;
    }
    if (lvd_vit_train_backward(t->student, t->sglobal, t->s_dx + (size_t)nl * D, dpatch, NULL,
                               err) ||
        (nl > 0 && lvd_vit_train_backward(t->student, t->slocal, t->s_dx, NULL, NULL, err))) {
        return lvd_error_prefix(err, "ssl: student backward");
    }
    return 0;
}

/* Steps 2-4 on the targets and the t->n_masked mask rows in the trainer's buffers. */
static int student_side(lvd_ssl *t, const lvd_ssl_batch *b, int grad, lvd_ssl_stats *st,
                        lvd_error *err)
{
    double t1 = now();
    if (student(t, b, err) != 0 || losses(t, st, err) != 0) {
        return -1;
    }
    double t2 = now();
    if (backward(t, grad, st, err) != 0) {
        return -1;
    }
    st->t_student = t2 - t1;
    st->t_backward = now() - t2;
    t->ready = grad != 0;
    return 0;
}

static int check_batch(const lvd_ssl *t, const lvd_ssl_batch *b, lvd_error *err)
{
    if (!t || !b || !b->global_crops || (t->cfg.n_local > 0 && !b->local_crops)) {
        return lvd_fail(err, "ssl: a trainer and a batch with its crops are needed");
    }
    return 0;
}

int lvd_ssl_forward_backward(lvd_ssl *t, const lvd_ssl_batch *b, double teacher_temp,
                             lvd_ssl_stats *st, lvd_error *err)
{
    lvd_ssl_stats local;
    if (!st) {
        st = &local;
    }
    memset(st, 0, sizeof *st);
    if (check_batch(t, b, err) != 0) {
        return -1;
    }
    if (!(teacher_temp > 0)) {
        return lvd_fail(err, "ssl: teacher temperature %g", teacher_temp);
    }
    t->ready = 0;
    if (mask_rows(t, b, err) != 0) {
        return -1;
    }
    st->n_masked = t->n_masked;
    lvd_ssl_save_centers(t);
    double t0 = now();
    if (teacher(t, b, teacher_temp, err) != 0) {
        lvd_ssl_restore_centers(t);
        return -1;
    }
    st->t_teacher = now() - t0;
    if (student_side(t, b, 1, st, err) != 0) {
        lvd_ssl_restore_centers(t);
        return -1;
    }
    return 0;
}

void lvd_ssl_get_room(lvd_ssl *t, lvd_ssl_room *r)
{
    r->dino = t->t_dino;
    r->ibot = t->do_ibot ? t->t_ibot : NULL;
    r->mask_idx = t->mask_idx;
    r->mask_w = t->mask_w;
    r->logits = t->t_logits;
    r->max_masked = t->max_masked;
    r->N = t->N;
    r->K = t->K;
    r->Ki = t->Ki;
}

int lvd_ssl_student_pass(lvd_ssl *t, const lvd_ssl_batch *b, int n_masked, int grad,
                         lvd_ssl_stats *st, lvd_error *err)
{
    lvd_ssl_stats local;
    if (!st) {
        st = &local;
    }
    memset(st, 0, sizeof *st);
    if (check_batch(t, b, err) != 0) {
        return -1;
    }
    t->ready = 0;
    if (n_masked < 0 || n_masked > t->max_masked) {
        return lvd_fail(err, "ssl: %d mask rows for a trainer holding %d", n_masked, t->max_masked);
    }
    int all = 2 * t->cfg.batch * t->N;
    for (int i = 0; i < n_masked; i++) {
        int k = t->mask_idx[i];
        if (k < 0 || k >= all || (i > 0 && k <= t->mask_idx[i - 1])) {
            return lvd_fail(err, "ssl: mask row %d (patch %d) is not ascending within %d patches",
                            i, k, all);
        }
    }
    t->n_masked = n_masked;
    st->n_masked = n_masked;
    return student_side(t, b, grad, st, err);
}

int lvd_ssl_parts_update(lvd_ssl_part *parts, int n, const lvd_schedule_values *s, double clip_grad,
                         int threads, double *grad_norm, lvd_error *err)
{
    if (n < 0 || n > LVD_SSL_MAX_PARTS || !s) {
        return lvd_fail(err, "update of %d parts (at most %d, with schedule values)", n,
                        LVD_SSL_MAX_PARTS);
    }
    /* clip_grad_norm_ per student part; every norm checked before any parameter moves. */
    double norm[LVD_SSL_MAX_PARTS];
    for (int i = 0; i < n; i++) {
        norm[i] = lvd_adamw_clip_grad(parts[i].opt, parts[i].grad, clip_grad);
        if (grad_norm) {
            grad_norm[i] = norm[i];
        }
    }
    for (int i = 0; i < n; i++) {
        if (!isfinite(norm[i])) {
            return lvd_fail(err, "gradient norm of the %s is %g", parts[i].name, norm[i]);
        }
    }
    for (int i = 0; i < n; i++) {
        lvd_adamw_update(parts[i].opt, parts[i].student, parts[i].grad, s->lr, s->wd,
                         s->last_layer_lr);
    }
    for (int i = 0; i < n; i++) {
        lvd_ema_update(parts[i].teacher, parts[i].student, parts[i].layout->total, s->momentum,
                       threads);
    }
    return 0;
}

int lvd_ssl_update(lvd_ssl *t, const lvd_schedule_values *s, lvd_ssl_stats *st, lvd_error *err)
{
    if (!t || !s) {
        return lvd_fail(err, "ssl: update without a trainer or schedule values");
    }
    if (!t->ready) {
        return lvd_fail(err, "ssl: update before a forward_backward");
    }
    double t0 = now();
    if (lvd_ssl_parts_update(t->parts, t->n_parts, s, t->cfg.clip_grad, t->cfg.threads,
                             st ? st->grad_norm : NULL, err) != 0) {
        lvd_ssl_restore_centers(t);
        t->ready = 0;
        return lvd_error_prefix(err, "ssl");
    }
    t->step++;
    t->ready = 0;
    if (st) {
        st->t_update = now() - t0;
    }
    return 0;
}

int lvd_ssl_step(lvd_ssl *t, const lvd_ssl_batch *b, const lvd_schedule_values *s,
                 lvd_ssl_stats *st, lvd_error *err)
{
    if (!s) {
        return lvd_fail(err, "ssl: step without schedule values");
    }
    if (lvd_ssl_forward_backward(t, b, s->teacher_temp, st, err) != 0) {
        return -1;
    }
    return lvd_ssl_update(t, s, st, err);
}
