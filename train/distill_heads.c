/* Head-based distillation (train/distill.h, HEADS): the student's lvd_ssl and the frozen
 * teacher's buffers (lvd_distill_heads_init), and one call (lvd_distill_heads_pass): the iBOT
 * rows, the teacher's targets written into the student trainer's room (train/ssl_student.h),
 * then the student side of lvd_ssl. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "train/distill_internal.h"
#include "train/ssl_student.h"

/* The student's head: the teacher head's shape on the student's width, or the caller's. */
static int student_head(const lvd_head_config *given, const lvd_head *teacher, int dim,
                        const char *what, lvd_head_config *out, lvd_error *err)
{
    *out = teacher->cfg;
    out->in_dim = dim;
    if (given) {
        if (given->in_dim != dim || given->out_dim != teacher->cfg.out_dim) {
            return lvd_fail(err,
                            "distill: the student's %s head maps %d -> %d prototypes; it must "
                            "take the student's %d features and give the teacher's %d",
                            what, given->in_dim, given->out_dim, dim, teacher->cfg.out_dim);
        }
        *out = *given;
    }
    return lvd_head_config_check(out, err);
}

int lvd_distill_heads_init(lvd_distill *d, const lvd_distill_spec *s, lvd_error *err)
{
    const lvd_distill_teacher *T = d->teacher;
    const lvd_ssl_config *c = &d->cfg.ssl;
    d->do_ibot = c->ibot_weight > 0;
    int separate = d->do_ibot && T->ibot_separate;
    lvd_head_config dino, ibot;
    if (student_head(s->dino, &T->dino, d->Ds, "DINO", &dino, err) != 0 ||
        (separate && student_head(s->ibot, &T->ibot, d->Ds, "iBOT", &ibot, err) != 0)) {
        return -1;
    }
    if (lvd_ssl_create_new(&d->cfg.ssl, &s->arch, s->layerscale, &dino, separate ? &ibot : NULL,
                           s->seed, &d->ssl, err) != 0) {
        return lvd_error_prefix(err, "distill: student");
    }
    int all = d->B2 * d->N, M = d->do_ibot ? all : 0;
    if (lvd_head_acts_init(&d->tacts[0], &T->dino.cfg, separate ? d->B2 : d->B2 + M, err) ||
        (separate && lvd_head_acts_init(&d->tacts[1], &T->ibot.cfg, M, err))) {
        return lvd_error_prefix(err, "distill: teacher heads");
    }
    d->t_cls = malloc((size_t)d->B2 * d->Dt * sizeof(float));
    d->t_in = malloc(((size_t)d->B2 + M) * d->Dt * sizeof(float));
    if (!d->t_cls || !d->t_in) {
        return lvd_fail(err, "distill: out of memory for the teacher's tokens");
    }
    return 0;
}

/* The iBOT rows into the room: the batch's masked patches, or every patch with weight 1 / N. */
static int ibot_rows(lvd_distill *d, const lvd_ssl_batch *b, const lvd_ssl_room *r, int *M,
                     lvd_error *err)
{
    *M = 0;
    if (!d->do_ibot) {
        return 0;
    }
    if (b->masks) {
        if (lvd_ibot_masked_rows(b->masks, d->B2, d->N, r->mask_idx, r->mask_w, M, err) != 0) {
            return lvd_error_prefix(err, "distill");
        }
        return 0;
    }
    int all = d->B2 * d->N;
    float w = 1.0f / (float)d->N;
    for (int i = 0; i < all; i++) {
        r->mask_idx[i] = i;
        r->mask_w[i] = w;
    }
    *M = all;
    return 0;
}

/* The teacher's targets of the M iBOT rows into the room (train/ssl.h's step 1 with the frozen
 * teacher): backbone on the global crops, cls rows swapped, heads, centering or Sinkhorn. */
static int teacher_targets(lvd_distill *d, const lvd_ssl_batch *b, double temp, int record,
                           const lvd_ssl_room *r, int M, lvd_error *err)
{
    lvd_distill_teacher *T = d->teacher;
    const lvd_ssl_config *c = &d->cfg.ssl;
    int B = c->batch, B2 = d->B2, Dt = d->Dt, K = r->K, Ki = r->Ki;
    size_t row = (size_t)Dt * sizeof(float);
    float *patches = d->t_in + (size_t)B2 * Dt;
    lvd_vit_outputs o = {.cls = d->t_cls, .patch = M > 0 ? patches : NULL};
    if (lvd_vit_forward(T->backbone, lvd_distill_teacher_input(d, b->global_crops), B2, d->Ht,
                        d->Wt, NULL, &o, err) != 0) {
        return lvd_error_prefix(err, "distill: teacher");
    }
    /* Swapped cls rows: crop 2 of each image first. */
    for (int i = 0; i < B2; i++) {
        memcpy(d->t_in + (size_t)i * Dt, d->t_cls + (size_t)(i < B ? i + B : i - B) * Dt, row);
    }
    /* The rows' patches in place (ascending indices: a row never moves backwards past a later
     * source); every patch (M = 2B N) is already in place. */
    for (int i = 0; M < B2 * d->N && i < M; i++) {
        memmove(patches + (size_t)i * Dt, patches + (size_t)r->mask_idx[i] * Dt, row);
    }
    float *cls_out = r->logits, *patch_out = r->logits + (size_t)B2 * K;
    int rc;
    if (!T->ibot_separate || !d->do_ibot) {
        rc = lvd_head_forward(&T->dino, &d->tacts[0], d->t_in, B2 + M, cls_out, err);
    } else {
        rc = lvd_head_forward(&T->dino, &d->tacts[0], d->t_in, B2, cls_out, err);
        rc = rc ? rc : lvd_head_forward(&T->ibot, &d->tacts[1], patches, M, patch_out, err);
    }
    if (rc != 0) {
        return lvd_error_prefix(err, "distill: teacher head");
    }
    float tt = (float)temp;
    lvd_ssl *ssl = d->ssl;
    lvd_center *cd = lvd_ssl_dino_center(ssl), *ci = lvd_ssl_ibot_center(ssl);
    /* Across ranks (a hook) every rank takes part in the iBOT sums, also one without rows. */
    int ibot_reduced = M > 0 || (c->allreduce && d->do_ibot);
    if (!c->sinkhorn) {
        if (lvd_center_softmax(cd, cls_out, B2, tt, r->dino, err) ||
            (record && lvd_center_update(cd, cls_out, B2, c->allreduce, err))) {
            return lvd_error_prefix(err, "distill: DINO targets");
        }
        if ((M > 0 && lvd_center_softmax(ci, patch_out, M, tt, r->ibot, err)) ||
            (record && ibot_reduced && lvd_center_update(ci, patch_out, M, c->allreduce, err))) {
            return lvd_error_prefix(err, "distill: iBOT targets");
        }
    } else {
        if (lvd_sinkhorn_targets(cls_out, B2, K, tt, 3, c->allreduce, r->dino, err)) {
            return lvd_error_prefix(err, "distill: DINO targets");
        }
        if (ibot_reduced &&
            lvd_sinkhorn_targets(patch_out, M, Ki, tt, 3, c->allreduce, r->ibot, err)) {
            return lvd_error_prefix(err, "distill: iBOT targets");
        }
    }
    return 0;
}

int lvd_distill_heads_pass(lvd_distill *d, const lvd_ssl_batch *b, double temp, int reuse, int grad,
                           int record, lvd_distill_stats *st, lvd_error *err)
{
    lvd_ssl_room r;
    lvd_ssl_get_room(d->ssl, &r);
    /* A training call that fails leaves the centers as they were (train/ssl_student.h). */
    if (record) {
        lvd_ssl_save_centers(d->ssl);
    }
    if (!reuse) {
        int M;
        double t0 = omp_get_wtime();
        if (ibot_rows(d, b, &r, &M, err) != 0 || teacher_targets(d, b, temp, record, &r, M, err)) {
            if (record) {
                lvd_ssl_restore_centers(d->ssl);
            }
            return -1;
        }
        d->n_masked = M;
        st->t_teacher = omp_get_wtime() - t0;
    }
    if (lvd_ssl_student_pass(d->ssl, b, d->n_masked, grad, &st->ssl, err) != 0) {
        if (record) {
            lvd_ssl_restore_centers(d->ssl);
        }
        return lvd_error_prefix(err, "distill");
    }
    st->loss_total = st->ssl.loss_total;
    st->t_student = st->ssl.t_student + st->ssl.t_backward;
    return 0;
}
