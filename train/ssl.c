/* The SSL trainer's life cycle (train/ssl.h): configuration defaults, creation from models or
 * from scratch with every buffer of the batch shape, parts, checkpoint groups, accessors. The
 * iteration itself is in train/ssl_step.c. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "train/ssl_internal.h"

void lvd_ssl_config_default(lvd_ssl_config *c, int batch, int n_local, int global_size,
                            int local_size)
{
    memset(c, 0, sizeof *c);
    c->batch = batch;
    c->n_local = n_local;
    c->global_h = c->global_w = global_size;
    c->local_h = c->local_w = local_size;
    c->student_temp = 0.1;
    c->center_momentum = 0.9;
    c->dino_weight = 1.0;
    c->ibot_weight = 1.0;
    c->koleo_weight = 0.1;
    c->clip_grad = 3.0;
    c->layerwise_decay = 0.9;
    c->patch_embed_lr_mult = 0.2;
    c->beta1 = 0.9;
    c->beta2 = 0.999;
    c->eps = 1e-8;
}

void lvd_ssl_models_free(lvd_ssl_models *m)
{
    lvd_vit_train_free(m->student);
    lvd_vit_train_free(m->teacher);
    lvd_head_free(&m->student_dino);
    lvd_head_free(&m->teacher_dino);
    lvd_head_free(&m->student_ibot);
    lvd_head_free(&m->teacher_ibot);
    memset(m, 0, sizeof *m);
}

void lvd_ssl_free(lvd_ssl *t)
{
    if (!t) {
        return;
    }
    lvd_vit_train_free(t->student);
    lvd_vit_train_free(t->teacher);
    lvd_head_free(&t->sdino);
    lvd_head_free(&t->tdino);
    lvd_head_free(&t->sibot);
    lvd_head_free(&t->tibot);
    for (int i = 0; i < LVD_SSL_MAX_PARTS; i++) {
        lvd_adamw_free(&t->opt[i]);
    }
    for (int i = 0; i < 2; i++) {
        free(t->head_grad[i]);
        lvd_param_layout_free(&t->center_layout[i]);
        lvd_head_acts_free(&t->tacts[i]);
        lvd_head_acts_free(&t->sacts[i]);
    }
    lvd_center_free(&t->cdino);
    lvd_center_free(&t->cibot);
    lvd_center_free(&t->saved[0]);
    lvd_center_free(&t->saved[1]);
    lvd_vit_pass_free(t->tpass);
    lvd_vit_pass_free(t->sglobal);
    lvd_vit_pass_free(t->slocal);
    free(t->t_in);
    free(t->t_logits);
    free(t->t_dino);
    free(t->t_ibot);
    free(t->s_in);
    free(t->s_logits);
    free(t->s_dx);
    free(t->s_dpatch);
    free(t->mask_idx);
    free(t->mask_w);
    free(t);
}

static int check_config(const lvd_ssl_config *c, int patch, lvd_error *err)
{
    if (c->batch < 1 || c->n_local < 0) {
        return lvd_fail(err, "ssl: batch %d and %d local crops (need a batch >= 1, local >= 0)",
                        c->batch, c->n_local);
    }
    if (c->global_h < patch || c->global_w < patch || c->global_h % patch || c->global_w % patch) {
        return lvd_fail(err, "ssl: global crops %dx%d are not positive multiples of the patch %d",
                        c->global_h, c->global_w, patch);
    }
    if (c->n_local > 0 &&
        (c->local_h < patch || c->local_w < patch || c->local_h % patch || c->local_w % patch)) {
        return lvd_fail(err, "ssl: local crops %dx%d are not positive multiples of the patch %d",
                        c->local_h, c->local_w, patch);
    }
    if (!(c->student_temp > 0) || !(c->center_momentum >= 0 && c->center_momentum <= 1)) {
        return lvd_fail(err, "ssl: student temperature %g or center momentum %g out of range",
                        c->student_temp, c->center_momentum);
    }
    if (!(c->dino_weight > 0) || !(c->ibot_weight >= 0) || !(c->koleo_weight >= 0)) {
        return lvd_fail(err, "ssl: loss weights dino %g (> 0), ibot %g, koleo %g (>= 0)",
                        c->dino_weight, c->ibot_weight, c->koleo_weight);
    }
    if (!(c->drop_path >= 0 && c->drop_path <= 1)) {
        return lvd_fail(err, "ssl: drop-path rate %g outside [0, 1]", c->drop_path);
    }
    if (!(c->beta1 >= 0 && c->beta1 < 1) || !(c->beta2 >= 0 && c->beta2 < 1) || !(c->eps > 0)) {
        return lvd_fail(err, "ssl: AdamW betas %g, %g or eps %g out of range", c->beta1, c->beta2,
                        c->eps);
    }
    return 0;
}

static int same_arch(const lvd_vit_info *a, const lvd_vit_info *b)
{
    return a->dim == b->dim && a->depth == b->depth && a->heads == b->heads &&
           a->patch == b->patch && a->grid == b->grid && a->n_reg == b->n_reg && a->ffn == b->ffn &&
           a->ffn_hidden == b->ffn_hidden && a->pos_antialias == b->pos_antialias &&
           a->n_params == b->n_params;
}

static int same_head(const lvd_head_config *a, const lvd_head_config *b)
{
    return a->in_dim == b->in_dim && a->hidden_dim == b->hidden_dim &&
           a->bottleneck_dim == b->bottleneck_dim && a->out_dim == b->out_dim &&
           a->nlayers == b->nlayers && !a->mlp_bias == !b->mlp_bias;
}

/* n floats, or NULL with *bad set when n overflows or memory runs out. */
static float *floats(double n, int *bad)
{
    if (n > (double)(SIZE_MAX / 8)) {
        *bad = 1;
        return NULL;
    }
    float *p = malloc((size_t)n * sizeof(float) + sizeof(float));
    *bad |= p == NULL;
    return p;
}

static int center_layout(lvd_param_layout *l, int K, lvd_error *err)
{
    int64_t shape[2] = {1, K};
    return lvd_param_layout_add(l, "center", 2, shape, err);
}

static void add_part(lvd_ssl *t, const char *name, const lvd_param_layout *l, float *s, float *te,
                     float *g)
{
    lvd_ssl_part *p = &t->parts[t->n_parts];
    p->name = name;
    p->layout = l;
    p->student = s;
    p->teacher = te;
    p->grad = g;
    p->opt = &t->opt[t->n_parts];
    t->n_parts++;
}

static int init_parts(lvd_ssl *t, lvd_error *err)
{
    add_part(t, "backbone", lvd_vit_train_layout(t->student), lvd_vit_train_params(t->student),
             lvd_vit_train_params(t->teacher), lvd_vit_train_grads(t->student));
    int bad = 0;
    t->head_grad[0] = floats((double)t->sdino.layout.total, &bad);
    if (t->separate) {
        t->head_grad[1] = floats((double)t->sibot.layout.total, &bad);
    }
    if (bad) {
        return lvd_fail(err, "ssl: out of memory for the head gradients");
    }
    add_part(t, "dino_head", &t->sdino.layout, t->sdino.params, t->tdino.params, t->head_grad[0]);
    if (t->separate) {
        add_part(t, "ibot_head", &t->sibot.layout, t->sibot.params, t->tibot.params,
                 t->head_grad[1]);
    }
    const lvd_ssl_config *c = &t->cfg;
    for (int i = 0; i < t->n_parts; i++) {
        const lvd_param_layout *l = t->parts[i].layout;
        lvd_param_group *groups = malloc((size_t)(l->n ? l->n : 1) * sizeof *groups);
        if (!groups) {
            return lvd_fail(err, "ssl: out of memory for the parameter groups");
        }
        int rc = lvd_param_groups(l, c->layerwise_decay, c->patch_embed_lr_mult, groups, err);
        rc = rc ? rc : lvd_adamw_init(&t->opt[i], l, groups, c->beta1, c->beta2, c->eps, err);
        free(groups);
        if (rc != 0) {
            return lvd_error_prefix(err, "ssl: %s", t->parts[i].name);
        }
        t->opt[i].threads = c->threads;
    }
    return 0;
}

static int init_buffers(lvd_ssl *t, lvd_error *err)
{
    const lvd_ssl_config *c = &t->cfg;
    int B = c->batch;
    if ((double)2 * B * t->N > INT32_MAX / 4 || (double)c->n_local * B > INT32_MAX / 4) {
        return lvd_fail(err, "ssl: batch %d too large", B);
    }
    int all = 2 * B * t->N;
    if (c->max_masked < 0 || c->max_masked > all) {
        return lvd_fail(err, "ssl: max_masked %d outside [0, %d]", c->max_masked, all);
    }
    t->max_masked = t->do_ibot ? (c->max_masked ? c->max_masked : all) : 0;
    t->n_cls = (c->n_local + 2) * B;
    int M = t->max_masked, D = t->D, K = t->K, Ki = t->Ki;
    if (lvd_vit_pass_create(t->teacher, 2 * B, c->global_h, c->global_w, 0, &t->tpass, err) ||
        lvd_vit_pass_create(t->student, 2 * B, c->global_h, c->global_w, 1, &t->sglobal, err) ||
        (c->n_local > 0 && lvd_vit_pass_create(t->student, c->n_local * B, c->local_h, c->local_w,
                                               1, &t->slocal, err))) {
        return lvd_error_prefix(err, "ssl");
    }
    /* Shared head: one row set [cls, patches] per model; separate: cls rows and patch rows. */
    int t_rows = t->separate ? 2 * B : 2 * B + M, s_rows = t->separate ? t->n_cls : t->n_cls + M;
    if (lvd_head_acts_init(&t->tacts[0], &t->tdino.cfg, t_rows, err) ||
        lvd_head_acts_init(&t->sacts[0], &t->sdino.cfg, s_rows, err) ||
        (t->separate && M > 0 &&
         (lvd_head_acts_init(&t->tacts[1], &t->tibot.cfg, M, err) ||
          lvd_head_acts_init(&t->sacts[1], &t->sibot.cfg, M, err)))) {
        return lvd_error_prefix(err, "ssl");
    }
    int bad = 0;
    t->t_in = floats(((double)2 * B + M) * D, &bad);
    t->t_logits = floats((double)2 * B * K + (double)M * Ki, &bad);
    t->t_dino = floats((double)2 * B * K, &bad);
    t->t_ibot = floats((double)M * Ki, &bad);
    t->s_in = floats(((double)t->n_cls + M) * D, &bad);
    t->s_logits = floats((double)t->n_cls * K + (double)M * Ki, &bad);
    t->s_dx = floats(((double)t->n_cls + M) * D, &bad);
    t->s_dpatch = floats((double)all * D, &bad);
    t->mask_idx = malloc((size_t)all * sizeof *t->mask_idx + sizeof(int));
    t->mask_w = floats((double)all, &bad);
    if (bad || !t->mask_idx) {
        return lvd_fail(err, "ssl: out of memory for the step buffers of batch %d", B);
    }
    float mom = (float)c->center_momentum;
    if (lvd_center_init(&t->cdino, K, mom, err) || lvd_center_init(&t->cibot, Ki, mom, err) ||
        lvd_center_init(&t->saved[0], K, mom, err) || lvd_center_init(&t->saved[1], Ki, mom, err) ||
        center_layout(&t->center_layout[0], K, err) ||
        center_layout(&t->center_layout[1], Ki, err)) {
        return lvd_error_prefix(err, "ssl");
    }
    return 0;
}

int lvd_ssl_create(const lvd_ssl_config *cfg, lvd_ssl_models *models, lvd_ssl **out, lvd_error *err)
{
    *out = NULL;
    if (!cfg || !models || !models->student || !models->teacher) {
        if (models) {
            lvd_ssl_models_free(models);
        }
        return lvd_fail(err, "ssl: a configuration, student and teacher are needed");
    }
    /* A copy: the models are freed on the failures below. */
    lvd_vit_info arch = *lvd_vit_train_info(models->student);
    const lvd_vit_info *a = &arch;
    if (check_config(cfg, a->patch, err) != 0) {
        lvd_ssl_models_free(models);
        return -1;
    }
    if (!same_arch(a, lvd_vit_train_info(models->teacher))) {
        lvd_ssl_models_free(models);
        return lvd_fail(err, "ssl: student and teacher backbones differ in architecture");
    }
    if (!same_head(&models->student_dino.cfg, &models->teacher_dino.cfg) ||
        !models->student_dino.params || !models->teacher_dino.params ||
        models->student_dino.cfg.in_dim != a->dim) {
        lvd_ssl_models_free(models);
        return lvd_fail(err,
                        "ssl: the DINO heads must match each other and take the backbone's "
                        "%d features",
                        a->dim);
    }
    if (models->ibot_separate &&
        (!same_head(&models->student_ibot.cfg, &models->teacher_ibot.cfg) ||
         !models->student_ibot.params || !models->teacher_ibot.params ||
         models->student_ibot.cfg.in_dim != a->dim)) {
        lvd_ssl_models_free(models);
        return lvd_fail(err,
                        "ssl: the iBOT heads must match each other and take the backbone's "
                        "%d features",
                        a->dim);
    }
    lvd_ssl *t = calloc(1, sizeof *t);
    if (!t) {
        lvd_ssl_models_free(models);
        return lvd_fail(err, "ssl: out of memory");
    }
    t->cfg = *cfg;
    t->student = models->student;
    t->teacher = models->teacher;
    t->sdino = models->student_dino;
    t->tdino = models->teacher_dino;
    t->separate = models->ibot_separate != 0;
    if (t->separate) {
        t->sibot = models->student_ibot;
        t->tibot = models->teacher_ibot;
    } else {
        lvd_head_free(&models->student_ibot);
        lvd_head_free(&models->teacher_ibot);
    }
    memset(models, 0, sizeof *models);
    t->do_ibot = cfg->ibot_weight > 0;
    t->do_koleo = cfg->koleo_weight > 0;
    t->D = a->dim;
    t->R = a->n_reg;
    t->N = (cfg->global_h / a->patch) * (cfg->global_w / a->patch);
    t->K = t->sdino.cfg.out_dim;
    t->Ki = t->separate ? t->sibot.cfg.out_dim : t->K;
    lvd_vit_train_set_threads(t->student, cfg->threads);
    lvd_vit_train_set_threads(t->teacher, cfg->threads);
    t->sdino.threads = t->tdino.threads = t->sibot.threads = t->tibot.threads =
        cfg->threads > 0 ? cfg->threads : 0;
    if (init_parts(t, err) != 0 || init_buffers(t, err) != 0) {
        lvd_ssl_free(t);
        return -1;
    }
    *out = t;
    return 0;
}

int lvd_ssl_create_new(const lvd_ssl_config *cfg, const lvd_vit_info *arch, float layerscale,
                       const lvd_head_config *dino, const lvd_head_config *ibot, uint64_t seed,
                       lvd_ssl **out, lvd_error *err)
{
    *out = NULL;
    if (!arch || !dino) {
        return lvd_fail(err, "ssl: an architecture and a DINO head configuration are needed");
    }
    lvd_ssl_models m = {0};
    m.ibot_separate = ibot != NULL;
    /* The students from the seed, each teacher a copy of its student. */
    if (lvd_vit_train_create(arch, layerscale, seed, &m.student, err) ||
        lvd_vit_train_create(arch, layerscale, seed, &m.teacher, err) ||
        lvd_head_init(&m.student_dino, dino, seed + 1, err) ||
        lvd_head_init(&m.teacher_dino, dino, seed + 1, err) ||
        (ibot && (lvd_head_init(&m.student_ibot, ibot, seed + 2, err) ||
                  lvd_head_init(&m.teacher_ibot, ibot, seed + 2, err)))) {
        lvd_ssl_models_free(&m);
        return lvd_error_prefix(err, "ssl");
    }
    memcpy(lvd_vit_train_params(m.teacher), lvd_vit_train_params(m.student),
           lvd_vit_train_layout(m.student)->total * sizeof(float));
    memcpy(m.teacher_dino.params, m.student_dino.params,
           m.student_dino.layout.total * sizeof(float));
    if (ibot) {
        memcpy(m.teacher_ibot.params, m.student_ibot.params,
               m.student_ibot.layout.total * sizeof(float));
    }
    return lvd_ssl_create(cfg, &m, out, err);
}

const lvd_ssl_config *lvd_ssl_get_config(const lvd_ssl *t)
{
    return &t->cfg;
}

lvd_vit_train *lvd_ssl_student(lvd_ssl *t)
{
    return t->student;
}

lvd_vit_train *lvd_ssl_teacher(lvd_ssl *t)
{
    return t->teacher;
}

lvd_center *lvd_ssl_dino_center(lvd_ssl *t)
{
    return &t->cdino;
}

lvd_center *lvd_ssl_ibot_center(lvd_ssl *t)
{
    return &t->cibot;
}

void lvd_ssl_targets(const lvd_ssl *t, const float **dino, const float **ibot, int *n_masked)
{
    if (dino) {
        *dino = t->t_dino;
    }
    if (ibot) {
        *ibot = t->do_ibot ? t->t_ibot : NULL;
    }
    if (n_masked) {
        *n_masked = t->n_masked;
    }
}

int64_t lvd_ssl_get_step(const lvd_ssl *t)
{
    return t->step;
}

void lvd_ssl_set_step(lvd_ssl *t, int64_t step)
{
    t->step = step;
    for (int i = 0; i < t->n_parts; i++) {
        t->opt[i].step = step;
    }
}

int lvd_ssl_n_parts(const lvd_ssl *t)
{
    return t->n_parts;
}

lvd_ssl_part lvd_ssl_get_part(lvd_ssl *t, int i)
{
    return t->parts[i];
}

int lvd_ssl_ckpt_groups(lvd_ssl *t, lvd_ckpt_group *groups)
{
    /* Prefixes are static strings: "<what>.<part>." for every pair. */
    static const char *const prefix[4][LVD_SSL_MAX_PARTS] = {
        {"student.backbone.", "student.dino_head.", "student.ibot_head."},
        {"teacher.backbone.", "teacher.dino_head.", "teacher.ibot_head."},
        {"adamw_m.backbone.", "adamw_m.dino_head.", "adamw_m.ibot_head."},
        {"adamw_v.backbone.", "adamw_v.dino_head.", "adamw_v.ibot_head."},
    };
    int n = 0;
    for (int i = 0; i < t->n_parts; i++) {
        lvd_ssl_part *p = &t->parts[i];
        float *data[4] = {p->student, p->teacher, p->opt->m, p->opt->v};
        for (int k = 0; k < 4; k++) {
            groups[n++] = (lvd_ckpt_group){prefix[k][i], p->layout, data[k]};
        }
    }
    lvd_center_apply(&t->cdino);
    lvd_center_apply(&t->cibot);
    groups[n++] = (lvd_ckpt_group){"dino_center.", &t->center_layout[0], t->cdino.center};
    groups[n++] = (lvd_ckpt_group){"ibot_center.", &t->center_layout[1], t->cibot.center};
    return n;
}
