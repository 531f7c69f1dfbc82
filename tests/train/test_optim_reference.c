/* The optimizer against the reference's train_step case (../shared/reference): its metadata
 * parses (train/step_case.h); every lr_multiplier.* / wd_multiplier.* equals lvd_param_groups;
 * it0.grad_norm.* equals the clip norm of it0.grad.*; and iteration 0's AdamW step (clipped
 * it0 gradients, the case's lr / wd / betas / eps) followed by the two EMA updates reproduces
 * teacher_final. The case holds no gradients of iteration 1, but teacher_final = m^2 t0 +
 * m (1 - m) s1 + (1 - m) s2 with s2 = student_final, so the student after iteration 0 (s1) is
 * recovered from the case and compared with ours. Also: the teacher backbone exported with
 * lvd_ckpt_export loads as a model (lvd_vit_load). */
#include "embed/vit.h"
#include "tests/train/optim_test.h"
#include "train/checkpoint.h"
#include "train/optim.h"
#include "train/step_case.h"

typedef struct submodule {
    const char *name; /* "backbone", "dino_head" */
    lvd_param_layout layout;
    lvd_param_group *groups;
    float *s0, *t0, *s2, *t2, *grad; /* student/teacher init and final, it0 gradients */
} submodule;

static float *read_group(const lvd_tensors *ts, const char *what, submodule *sm)
{
    char prefix[128];
    snprintf(prefix, sizeof prefix, "%s.%s.", what, sm->name);
    float *buf = malloc(sm->layout.total * sizeof *buf);
    lvd_ckpt_group g = {prefix, &sm->layout, buf};
    lvd_error err;
    CHECK_MSG(lvd_ckpt_read_group(ts, &g, &err) == 0, "%s", err.msg);
    return buf;
}

static float scalar(const lvd_tensors *ts, const char *name)
{
    const lvd_tensor *t = lvd_tensors_find(ts, name);
    CHECK_MSG(t && t->numel == 1, "%s missing", name);
    return t ? t->data[0] : NAN;
}

static void check_hyper(const lvd_step_case *c)
{
    const lvd_step_hyper *h = &c->hyper;
    CHECK(h->lr == 0.002 && h->last_layer_lr == 0.002 && h->wd == 0.04 && h->momentum == 0.99);
    CHECK(h->teacher_temp == 0.05 && h->student_temp == 0.1 && h->center_momentum == 0.9);
    CHECK(h->layerwise_decay == 0.9 && h->patch_embed_lr_mult == 0.2 && h->clip_grad == 3.0);
    CHECK(h->beta1 == 0.9 && h->beta2 == 0.999 && h->eps == 1e-8 && h->koleo_weight == 0.1);
    CHECK(h->n_local == 2 && h->batch == 3 && h->K == 128);
    const lvd_step_backbone *b = &c->backbone;
    CHECK(b->img_size == 16 && b->patch_size == 4 && b->embed_dim == 64 && b->depth == 2);
    CHECK(b->num_heads == 2 && b->mlp_ratio == 4 && b->init_values == 0.1);
    CHECK(strcmp(b->ffn_layer, "mlp") == 0 && b->block_chunks == 0);
    CHECK(b->num_register_tokens == 0 && !b->interpolate_antialias);
    CHECK(b->interpolate_offset == 0.1);
    const lvd_step_head *d = &c->head;
    CHECK(d->in_dim == 64 && d->out_dim == 128 && d->nlayers == 3 && d->hidden_dim == 96 &&
          d->bottleneck_dim == 32);
}

int main(void)
{
    const char *dir = check_reference_dir();
    char path[1024];
    snprintf(path, sizeof path, "%s/train_step.case.safetensors", dir);
    lvd_tensors *ts;
    lvd_error err;
    if (lvd_tensors_open(path, &ts, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    lvd_step_case c;
    CHECK_MSG(lvd_step_case_read(ts, &c, &err) == 0, "%s", err.msg);
    check_hyper(&c);
    const lvd_step_hyper *h = &c.hyper;
    const double m = h->momentum;

    submodule sub[2] = {{.name = "backbone"}, {.name = "dino_head"}};
    int n_mult = 0;
    for (int k = 0; k < 2; k++) {
        submodule *sm = &sub[k];
        char prefix[128];
        snprintf(prefix, sizeof prefix, "student_init.%s.", sm->name);
        CHECK(lvd_ckpt_layout_from(ts, prefix, &sm->layout, &err) == 0);
        sm->groups = malloc((size_t)sm->layout.n * sizeof *sm->groups);
        CHECK(lvd_param_groups(&sm->layout, h->layerwise_decay, h->patch_embed_lr_mult, sm->groups,
                               &err) == 0);
        /* the multipliers: equal as float32, the case's dtype */
        for (int i = 0; i < sm->layout.n; i++) {
            const char *name = sm->layout.t[i].name;
            char key[256];
            snprintf(key, sizeof key, "lr_multiplier.%s.%s", sm->name, name);
            float lr = scalar(ts, key);
            snprintf(key, sizeof key, "wd_multiplier.%s.%s", sm->name, name);
            float wd = scalar(ts, key);
            CHECK_MSG((float)sm->groups[i].lr_mult == lr && (float)sm->groups[i].wd_mult == wd,
                      "%s.%s: lr %.9g vs %.9g, wd %g vs %g", sm->name, name, sm->groups[i].lr_mult,
                      lr, sm->groups[i].wd_mult, wd);
            CHECK(sm->groups[i].is_last_layer == (strncmp(name, "last_layer.", 11) == 0));
            n_mult += 2;
        }
        sm->s0 = read_group(ts, "student_init", sm);
        sm->t0 = read_group(ts, "teacher_init", sm);
        sm->s2 = read_group(ts, "student_final", sm);
        sm->t2 = read_group(ts, "teacher_final", sm);
        sm->grad = read_group(ts, "it0.grad", sm);
    }
    int n_case = 0;
    for (size_t i = 0; i < lvd_tensors_count(ts); i++)
        n_case += strstr(lvd_tensors_at(ts, i)->name, "_multiplier.") != NULL;
    CHECK_MSG(n_mult == n_case && n_case > 0, "%d multipliers checked of %d", n_mult, n_case);

    for (int k = 0; k < 2; k++) {
        submodule *sm = &sub[k];
        const lvd_param_layout *l = &sm->layout;
        lvd_adamw o;
        CHECK(lvd_adamw_init(&o, l, sm->groups, h->beta1, h->beta2, h->eps, &err) == 0);
        /* clipping per submodule: the norm before clipping */
        char key[128];
        snprintf(key, sizeof key, "it0.grad_norm.%s", sm->name);
        double want = scalar(ts, key), norm = lvd_adamw_clip_grad(&o, sm->grad, h->clip_grad);
        CHECK_MSG(fabs(norm - want) <= 1e-5 * want, "%s: norm %.9g vs %.9g", sm->name, norm, want);
        /* iteration 0 */
        float *s1 = malloc(l->total * sizeof *s1), *t = malloc(l->total * sizeof *t);
        memcpy(s1, sm->s0, l->total * sizeof *s1);
        lvd_adamw_update(&o, s1, sm->grad, h->lr, h->wd, h->last_layer_lr);
        memcpy(t, sm->t0, l->total * sizeof *t);
        lvd_ema_update(t, s1, l->total, m, 1);
        lvd_ema_update(t, sm->s2, l->total, m, 1);
        double worst_s = 0, worst_t = 0;
        for (int i = 0; i < l->n; i++) {
            const lvd_param_tensor *x = &l->t[i];
            size_t n = x->numel;
            double *ref = malloc(n * sizeof *ref);
            float *ours = malloc(n * sizeof *ours);
            /* the student's update of iteration 0: ours against the one the case implies */
            for (size_t j = 0; j < n; j++) {
                size_t q = x->offset + j;
                double s1_case =
                    ((double)sm->t2[q] - m * m * sm->t0[q] - (1 - m) * sm->s2[q]) / (m * (1 - m));
                ref[j] = s1_case - sm->s0[q];
                ours[j] = (float)((double)s1[q] - sm->s0[q]);
            }
            double e_s = ot_rel(ours, ref, n);
            /* the recovery divides float rounding of t2 (a few units of 2^-24 of |t0|, |s2|,
             * |t2|) by m (1 - m): on tensors of magnitude ~1 that noise is ~1e-3 of the update,
             * so it is allowed on top of the 1e-3 relative tolerance */
            double noise = 0, scale = 0;
            for (size_t j = 0; j < n; j++) {
                size_t q = x->offset + j;
                double b = 4 * 0x1p-24 * (fabs(sm->t0[q]) + fabs(sm->s2[q]) + fabs(sm->t2[q])) /
                           (m * (1 - m));
                noise += b * b;
                scale += ref[j] * ref[j];
            }
            double allowed_s = 1e-3 + sqrt(noise / scale);
            /* the teacher's update over both iterations (the case's tolerance: 1e-3) */
            for (size_t j = 0; j < n; j++) {
                size_t q = x->offset + j;
                ref[j] = (double)sm->t2[q] - sm->t0[q];
                ours[j] = (float)((double)t[q] - sm->t0[q]);
            }
            double e_t = ot_rel(ours, ref, n);
            CHECK_MSG(e_s < allowed_s && e_t < 1e-3,
                      "%s.%s: student update %.3g (allowed %.3g), teacher %.3g", sm->name, x->name,
                      e_s, allowed_s, e_t);
            worst_s = fmax(worst_s, e_s);
            worst_t = fmax(worst_t, e_t);
            free(ref);
            free(ours);
        }
        printf("%s: grad norm %.7g (case %.7g); worst relative error of the iteration-0 student "
               "update %.2e, of the teacher update %.2e\n",
               sm->name, norm, want, worst_s, worst_t);
        free(s1);
        free(t);
        lvd_adamw_free(&o);
    }

    /* the teacher backbone as a model file under its official names */
    char *tmp = ot_tmpdir();
    char model[1100];
    snprintf(model, sizeof model, "%s/teacher.safetensors", tmp);
    CHECK_MSG(lvd_ckpt_export(model, &sub[0].layout, sub[0].t2, "{\"arch\":\"case\"}", &err) == 0,
              "%s", err.msg);
    lvd_vit *vit;
    CHECK_MSG(lvd_vit_load(model, &vit, &err) == 0, "%s", err.msg);
    if (vit) {
        const lvd_vit_info *info = lvd_vit_get_info(vit);
        CHECK(info->dim == 64 && info->depth == 2 && info->patch == 4 && info->grid == 4);
        CHECK(info->n_reg == 0 && info->ffn == LVD_VIT_MLP &&
              info->n_params == (int64_t)sub[0].layout.total);
        lvd_vit_free(vit);
    }
    check_rmtree(tmp);

    for (int k = 0; k < 2; k++) {
        free(sub[k].groups), free(sub[k].s0), free(sub[k].t0), free(sub[k].s2);
        free(sub[k].t2), free(sub[k].grad);
        lvd_param_layout_free(&sub[k].layout);
    }
    lvd_tensors_close(ts);
    return check_finish();
}
