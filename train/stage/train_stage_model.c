/* The trained model of train/stage/train_stage_internal.h (train_model): one set of calls over
 * pretraining's lvd_ssl and distillation's lvd_distill, so that lvd-train and lvd-distill share
 * the stage's loop, checkpoints, export and metrics. */
#include <string.h>

#include "train/stage/train_stage_internal.h"

const char *train_program(const lvd_train_options *o)
{
    return o->distill ? "lvd-distill" : "lvd-train";
}

const char *train_stage_name(const lvd_train_options *o)
{
    return o->distill ? "distill" : "train";
}

int train_model_step(train_model *m, const lvd_ssl_batch *b, const lvd_schedule_values *sv,
                     lvd_ssl_stats *st, double *loss_cls, double *loss_patch, lvd_error *err)
{
    *loss_cls = *loss_patch = 0.0;
    /* forward_backward, the ranks' gradients averaged (train_dist_reduce; nothing to do on one
     * process), update: lvd_ssl_step and lvd_distill_step with the reduction between. */
    lvd_distill_stats ds;
    int rc;
    if (m->ssl) {
        rc = lvd_ssl_forward_backward(m->ssl, b, sv->teacher_temp, st, err);
    } else {
        lvd_ssl_batch nb = *b;
        nb.masks = m->keep_masks ? b->masks : NULL;
        nb.mask_indices = NULL;
        rc = lvd_distill_forward_backward(m->distill, &nb, sv->teacher_temp, &ds, err);
        if (rc == 0 && train_model_features(m)) {
            memset(st, 0, sizeof *st);
            st->loss_total = ds.loss_total;
            st->t_teacher = ds.t_teacher;
            st->t_student = ds.t_student;
            *loss_cls = ds.loss_cls;
            *loss_patch = ds.loss_patch;
        } else if (rc == 0) {
            *st = ds.ssl;
            st->t_teacher = ds.t_teacher;
        }
    }
    if (train_dist_reduce(m, rc, st, loss_cls, loss_patch, err))
        return -1;
    if (m->ssl)
        return lvd_ssl_update(m->ssl, sv, st, err);
    if (lvd_distill_update(m->distill, sv, &ds, err))
        return -1;
    memcpy(st->grad_norm, ds.grad_norm, sizeof st->grad_norm);
    st->t_update = ds.t_update;
    return 0;
}

int train_model_groups(train_model *m, lvd_ckpt_group *g)
{
    return m->ssl ? lvd_ssl_ckpt_groups(m->ssl, g) : lvd_distill_ckpt_groups(m->distill, g);
}

int64_t train_model_get_step(const train_model *m)
{
    return m->ssl ? lvd_ssl_get_step(m->ssl) : lvd_distill_get_step(m->distill);
}

void train_model_set_step(train_model *m, int64_t step)
{
    if (m->ssl)
        lvd_ssl_set_step(m->ssl, step);
    else
        lvd_distill_set_step(m->distill, step);
}

int train_model_n_parts(const train_model *m)
{
    return m->ssl ? lvd_ssl_n_parts(m->ssl) : lvd_distill_n_parts(m->distill);
}

lvd_ssl_part train_model_get_part(train_model *m, int i)
{
    return m->ssl ? lvd_ssl_get_part(m->ssl, i) : lvd_distill_get_part(m->distill, i);
}

lvd_vit_train *train_model_output(train_model *m)
{
    return m->ssl ? lvd_ssl_teacher(m->ssl) : lvd_distill_output(m->distill);
}

int train_model_features(const train_model *m)
{
    return m->distill && lvd_distill_get_mode(m->distill) == LVD_DISTILL_FEATURES;
}

void train_model_free(train_model *m)
{
    lvd_ssl_free(m->ssl);
    lvd_distill_free(m->distill);
    lvd_distill_teacher_free(&m->teacher);
    m->ssl = NULL;
    m->distill = NULL;
}
