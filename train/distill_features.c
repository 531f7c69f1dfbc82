/* Feature-level distillation (train/distill.h, FEATURES): the student, its EMA, the projection
 * and their optimizers (lvd_distill_features_init), and one call (lvd_distill_features_pass):
 * teacher and student tokens of the global crops, the projection, the cosine loss and its
 * backward. The update is lvd_ssl_parts_update over the two parts (train/distill.c). */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "embed/vit_layers.h"
#include "embed/vit_rng.h"
#include "train/distill_internal.h"
#include "train/vit_train_internal.h" /* vt_matmul_backward: the projection is a Linear */

/* One part's AdamW with the parameter groups of the configuration. */
static int part_optimizer(lvd_adamw *o, const lvd_param_layout *l, const lvd_ssl_config *c,
                          int threads, lvd_error *err)
{
    lvd_param_group *groups = malloc((size_t)(l->n ? l->n : 1) * sizeof *groups);
    if (!groups) {
        return lvd_fail(err, "distill: out of memory for the parameter groups");
    }
    int rc = lvd_param_groups(l, c->layerwise_decay, c->patch_embed_lr_mult, groups, err);
    rc = rc ? rc : lvd_adamw_init(o, l, groups, c->beta1, c->beta2, c->eps, err);
    free(groups);
    o->threads = threads;
    return rc;
}

/* proj.weight and proj.bias with nn.Linear's default init, U(-1/sqrt(Ds), 1/sqrt(Ds)). */
static int init_projection(lvd_distill *d, uint64_t seed, lvd_error *err)
{
    int64_t w[2] = {d->Dt, d->Ds}, bias[1] = {d->Dt};
    if (lvd_param_layout_add(&d->proj_layout, "proj.weight", 2, w, err) ||
        lvd_param_layout_add(&d->proj_layout, "proj.bias", 1, bias, err)) {
        return lvd_error_prefix(err, "distill");
    }
    size_t n = d->proj_layout.total;
    d->proj = malloc(n * sizeof(float));
    d->proj_ema = malloc(n * sizeof(float));
    d->proj_grad = calloc(n, sizeof(float));
    if (!d->proj || !d->proj_ema || !d->proj_grad) {
        return lvd_fail(err, "distill: out of memory for the projection");
    }
    lvd_rng rng = {seed};
    double bound = 1.0 / sqrt((double)d->Ds);
    for (size_t i = 0; i < n; i++) {
        d->proj[i] = (float)((2.0 * lvd_rng_uniform(&rng) - 1.0) * bound);
    }
    memcpy(d->proj_ema, d->proj, n * sizeof(float));
    return 0;
}

int lvd_distill_features_init(lvd_distill *d, const lvd_distill_spec *s, lvd_error *err)
{
    const lvd_ssl_config *c = &d->cfg.ssl;
    if (lvd_vit_train_create(&s->arch, s->layerscale, s->seed, &d->student, err) ||
        lvd_vit_train_create(&s->arch, s->layerscale, s->seed, &d->ema, err)) {
        return lvd_error_prefix(err, "distill: student");
    }
    const lvd_param_layout *l = lvd_vit_train_layout(d->student);
    memcpy(lvd_vit_train_params(d->ema), lvd_vit_train_params(d->student),
           l->total * sizeof(float));
    lvd_vit_train_set_threads(d->student, d->threads);
    lvd_vit_train_set_threads(d->ema, d->threads);
    if (lvd_vit_pass_create(d->student, d->B2, d->Hs, d->Ws, 1, &d->pass, err) != 0) {
        return lvd_error_prefix(err, "distill: student");
    }
    if (init_projection(d, s->seed + 1, err) != 0 ||
        part_optimizer(&d->opt[0], l, c, d->threads, err) != 0 ||
        part_optimizer(&d->opt[1], &d->proj_layout, c, d->threads, err) != 0) {
        return -1;
    }
    d->parts[0] = (lvd_ssl_part){"backbone",
                                 l,
                                 lvd_vit_train_params(d->student),
                                 lvd_vit_train_params(d->ema),
                                 lvd_vit_train_grads(d->student),
                                 &d->opt[0]};
    d->parts[1] =
        (lvd_ssl_part){"proj", &d->proj_layout, d->proj, d->proj_ema, d->proj_grad, &d->opt[1]};
    size_t rows = (size_t)d->B2 * (1 + d->N);
    d->xs = malloc(rows * d->Ds * sizeof(float));
    d->dx = malloc(rows * d->Ds * sizeof(float));
    d->tf = malloc(rows * d->Dt * sizeof(float));
    d->y = malloc(rows * d->Dt * sizeof(float));
    d->row_loss = malloc(rows * sizeof(double));
    if (!d->xs || !d->dx || !d->tf || !d->y || !d->row_loss) {
        return lvd_fail(err, "distill: out of memory for the token buffers of batch %d",
                        d->cfg.ssl.batch);
    }
    return 0;
}

/* Row r: row_loss = 1 - cos(y, t) and, with grad, y becomes w * d(1 - cos) / dy. Sums in
 * double, one row per thread iteration. */
static void cosine_rows(double *row_loss, float *y, const float *t, int rows, int D, int B2,
                        double w_cls, double w_patch, int grad, int threads)
{
    const double eps = 1e-8;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int r = 0; r < rows; r++) {
        float *yr = y + (size_t)r * D;
        const float *tr = t + (size_t)r * D;
        double yt = 0.0, yy = 0.0, tt = 0.0;
        for (int j = 0; j < D; j++) {
            yt += (double)yr[j] * tr[j];
            yy += (double)yr[j] * yr[j];
            tt += (double)tr[j] * tr[j];
        }
        double ny = sqrt(yy), nt = sqrt(tt);
        double dy = ny > eps ? ny : eps, dt = nt > eps ? nt : eps;
        double cosv = yt / (dy * dt);
        row_loss[r] = 1.0 - cosv;
        if (grad) {
            /* d cos / dy = t / (|y| |t|) - cos y / |y|^2 (the second term only where |y| > eps,
             * the clamp being constant below it). */
            double w = r < B2 ? w_cls : w_patch;
            double a = -w / (dy * dt), bcoef = ny > eps ? w * cosv / (yy) : 0.0;
            for (int j = 0; j < D; j++) {
                yr[j] = (float)(a * tr[j] + bcoef * yr[j]);
            }
        }
    }
}

int lvd_distill_features_pass(lvd_distill *d, const lvd_ssl_batch *b, int reuse, int grad,
                              lvd_distill_stats *st, lvd_error *err)
{
    int B2 = d->B2, N = d->N, Ds = d->Ds, Dt = d->Dt, th = d->threads;
    int rows = B2 * (1 + N);
    double t0 = omp_get_wtime();
    if (!reuse) {
        lvd_vit_outputs o = {.cls = d->tf, .patch = d->tf + (size_t)B2 * Dt};
        if (lvd_vit_forward(d->teacher->backbone, lvd_distill_teacher_input(d, b->global_crops), B2,
                            d->Ht, d->Wt, NULL, &o, err) != 0) {
            return lvd_error_prefix(err, "distill: teacher");
        }
    }
    double t1 = omp_get_wtime();
    lvd_vit_train_outputs so = {.cls = d->xs, .patch = d->xs + (size_t)B2 * Ds};
    if (lvd_vit_train_forward(d->student, d->pass, b->global_crops, NULL, NULL, &so, err) != 0) {
        return lvd_error_prefix(err, "distill: student");
    }
    const float *W = d->proj, *bias = d->proj + (size_t)Dt * Ds;
    int blas_threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
    lvd_vit_matmul_forward(d->y, d->xs, Ds, W, bias, rows, Ds, Dt, th);
    double wc = d->cfg.cls_weight / B2, wp = d->cfg.patch_weight / ((double)B2 * N);
    cosine_rows(d->row_loss, d->y, d->tf, rows, Dt, B2, wc, wp, grad, th);
    double lc = 0.0, lp = 0.0;
    for (int r = 0; r < rows; r++) {
        *(r < B2 ? &lc : &lp) += d->row_loss[r];
    }
    st->loss_cls = lc / B2;
    st->loss_patch = lp / ((double)B2 * N);
    st->loss_total = d->cfg.cls_weight * st->loss_cls + d->cfg.patch_weight * st->loss_patch;
    if (!isfinite(st->loss_total)) {
        openblas_set_num_threads(blas_threads);
        return lvd_fail(err, "distill: loss is %g (cls %g, patch %g)", st->loss_total, st->loss_cls,
                        st->loss_patch);
    }
    if (grad) {
        lvd_vit_train_zero_grad(d->student);
        memset(d->proj_grad, 0, d->proj_layout.total * sizeof(float));
        vt_matmul_backward(d->dx, Ds, d->proj_grad, d->proj_grad + (size_t)Dt * Ds, d->y, Dt, d->xs,
                           Ds, W, rows, Ds, Dt, th);
    }
    openblas_set_num_threads(blas_threads);
    if (grad && lvd_vit_train_backward(d->student, d->pass, d->dx, d->dx + (size_t)B2 * Ds, NULL,
                                       err) != 0) {
        return lvd_error_prefix(err, "distill: student backward");
    }
    st->t_teacher = t1 - t0;
    st->t_student = omp_get_wtime() - t1;
    return 0;
}
