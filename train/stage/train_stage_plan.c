/* The plan of train/stage/train_stage_internal.h: presets, the resolved module configurations and
 * their JSON form (what a checkpoint and a resuming run must share). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/masks.h"
#include "train/stage/train_stage_internal.h"

typedef struct preset {
    const char *name;
    int dim, depth, heads, patch;
    lvd_vit_ffn ffn;
    int prototypes, hidden, bottleneck;
    int global_size, local_size, local_crops, batch;
    double drop_path;
    const train_recipe *recipe; /* the defaults of the options left at "preset's" */
} preset;

/* ssl_default_config.yaml's: LayerScale 1e-5, momentum 0.992, epochs of 1250 iterations, 10 of
 * lr warm-up and 30 of teacher temperature warm-up, 125,000 iterations, softmax centering. */
static const train_recipe reference = {1e-5f, 0.992, 1250, 10, 30, 125000, "softmax"};
/* The short-budget recipe for 28-pixel images (train/stage/train_stage.h, pipelines/README.md). */
static const train_recipe short_budget = {0.1f, 0.99, 100, 1, 3, 1000, "sinkhorn"};

/* Architectures as dinov2/models/vision_transformer.py; heads, crops and drop path as the
 * reference's training configs (ssl_default_config.yaml, vitg14.yaml), tiny as issue 9's
 * benchmark, fmnist the short-budget recipe. */
static const preset presets[] = {
    {"tiny", 192, 6, 3, 4, LVD_VIT_MLP, 4096, 512, 128, 28, 12, 6, 128, 0.0, &reference},
    {"vits14", 384, 12, 6, 14, LVD_VIT_MLP, 65536, 2048, 256, 224, 98, 8, 64, 0.3, &reference},
    {"vitb14", 768, 12, 12, 14, LVD_VIT_MLP, 65536, 2048, 256, 224, 98, 8, 64, 0.3, &reference},
    {"vitl14", 1024, 24, 16, 14, LVD_VIT_MLP, 65536, 2048, 256, 224, 98, 8, 64, 0.3, &reference},
    {"vitg14", 1536, 40, 24, 14, LVD_VIT_SWIGLU, 131072, 2048, 384, 224, 98, 8, 64, 0.4,
     &reference},
    {"fmnist", 192, 4, 3, 28, LVD_VIT_MLP, 1024, 512, 128, 28, 28, 4, 128, 0.0, &short_budget},
};

static const preset *find_preset(const lvd_train_options *o, const lvd_vit_info *from)
{
    size_t n = sizeof presets / sizeof presets[0];
    for (size_t i = 0; i < n; i++) {
        if (o->arch && strcmp(o->arch, presets[i].name) == 0)
            return &presets[i];
        /* --init: the sizes of the preset of the file's width (patch 14 models: vits14's) */
        if (!o->arch && from && from->dim == presets[i].dim)
            return &presets[i];
    }
    return from && from->patch >= 14 ? &presets[1] : &presets[0];
}

void train_options_recipe(lvd_train_options *o)
{
    const train_recipe *r = find_preset(o, NULL)->recipe;
    if (o->layerscale < 0)
        o->layerscale = r->layerscale;
    if (o->momentum < 0)
        o->momentum = r->momentum;
    if (o->epoch_length <= 0)
        o->epoch_length = r->epoch_length;
    if (o->warmup_epochs < 0)
        o->warmup_epochs = r->warmup_epochs;
    if (o->teacher_temp_warmup_epochs < 0)
        o->teacher_temp_warmup_epochs = r->teacher_temp_warmup_epochs;
    if (o->steps <= 0)
        o->steps = r->steps;
    if (!o->centering)
        o->centering = r->centering;
}

static int pick(int given, int preset_value)
{
    return given > 0 ? given : preset_value;
}

/* The collate's upperbound of masked patches per batch (the student's iBOT row budget). */
static int mask_budget(train_plan *p, lvd_error *err)
{
    const lvd_aug_config *a = &p->loader.aug;
    lvd_mask_gen g;
    lvd_masks mk = {0};
    int grid = a->global_size / p->arch.patch;
    if (lvd_mask_gen_for_crops(&g, a->global_size, p->arch.patch, err) ||
        lvd_masks_alloc(&mk, 2 * p->ssl.batch, grid * grid, err))
        return -1;
    lvd_rng r = lvd_rng_stream(0, 0, 0, 0); /* the bound does not depend on the draws */
    int rc = lvd_masks_collate(&g, &p->loader.mask, &r, &mk, err);
    int64_t ub = mk.upperbound;
    lvd_masks_free(&mk);
    if (rc)
        return -1;
    p->ssl.max_masked = (int)(ub > 0 ? ub : 1);
    return 0;
}

int train_plan_resolve(const lvd_train_options *o, const lvd_vit_info *from, train_plan *p,
                       lvd_error *err)
{
    memset(p, 0, sizeof *p);
    const preset *ps = find_preset(o, from);
    lvd_vit_info *a = &p->arch;
    if (from) {
        *a = *from;
        if (o->heads)
            a->heads = o->heads;
    } else {
        a->dim = pick(o->dim, ps->dim);
        a->depth = pick(o->depth, ps->depth);
        a->patch = pick(o->patch, ps->patch);
        a->n_reg = o->registers;
        a->ffn = o->ffn ? (strcmp(o->ffn, "swiglu") == 0 ? LVD_VIT_SWIGLU : LVD_VIT_MLP) : ps->ffn;
        a->heads = o->heads ? o->heads : o->dim ? o->dim / 64 : ps->heads;
        if (a->heads < 1)
            return lvd_fail(err, "--dim %d is below the head dim 64: give --heads", a->dim);
    }
    if (a->dim % a->heads != 0)
        return lvd_fail(err, "--heads %d does not divide the width %d", a->heads, a->dim);
    int gs = pick(o->global_size, ps->global_size), ls = pick(o->local_size, ps->local_size);
    int nl = o->local_crops >= 0 ? o->local_crops : ps->local_crops;
    if (gs % a->patch != 0)
        return lvd_fail(err, "--global-size %d is not a multiple of the patch %d", gs, a->patch);
    if (nl > 0 && ls % a->patch != 0)
        return lvd_fail(err, "--local-size %d is not a multiple of the patch %d", ls, a->patch);
    if (!from)
        a->grid = gs / a->patch;
    p->layerscale = o->layerscale;

    p->dino = (lvd_head_config){a->dim,
                                pick(o->head_hidden, ps->hidden),
                                pick(o->head_bottleneck, ps->bottleneck),
                                pick(o->prototypes, ps->prototypes),
                                o->head_layers,
                                1};
    p->ibot_separate = o->ibot_separate;
    p->ibot = p->dino;
    if (o->ibot_prototypes)
        p->ibot.out_dim = o->ibot_prototypes;
    if (lvd_head_config_check(&p->dino, err) || lvd_head_config_check(&p->ibot, err))
        return -1;

    int batch = pick(o->batch, ps->batch);
    lvd_ssl_config *c = &p->ssl;
    lvd_ssl_config_default(c, batch, nl, gs, ls);
    c->student_temp = o->student_temp;
    c->center_momentum = o->center_momentum;
    c->sinkhorn = strcmp(o->centering, "sinkhorn") == 0;
    c->dino_weight = o->dino_weight;
    c->ibot_weight = o->ibot_weight;
    c->koleo_weight = o->koleo_weight;
    c->drop_path = o->distill ? 0.0 : o->drop_path >= 0 ? o->drop_path : ps->drop_path;
    c->drop_seed = o->seed;
    c->clip_grad = o->clip_grad;
    c->layerwise_decay = o->layerwise_decay;
    c->patch_embed_lr_mult = o->patch_embed_lr_mult;
    c->threads = o->threads;
    if (batch < 2 && c->koleo_weight > 0)
        return lvd_fail(err, "--batch 1 leaves KoLeo no neighbour: use 2 or more, or "
                             "--koleo-weight 0");

    p->lr_base = o->lr;
    lvd_schedule_config *s = &p->sched;
    lvd_schedule_config_default(s);
    s->epoch_length = o->epoch_length;
    s->total_iterations = o->steps;
    s->lr = strcmp(o->lr_scaling, "sqrt") == 0 ? lvd_lr_sqrt_scaling(o->lr, batch) : o->lr;
    s->min_lr = o->min_lr;
    s->warmup_epochs = o->warmup_epochs;
    s->weight_decay = o->weight_decay;
    s->weight_decay_end = o->weight_decay_end;
    s->momentum_teacher = o->momentum;
    s->final_momentum_teacher = o->momentum_end;
    s->warmup_teacher_temp = o->warmup_teacher_temp;
    s->teacher_temp = o->teacher_temp;
    s->warmup_teacher_temp_epochs = o->teacher_temp_warmup_epochs;
    s->freeze_last_layer_epochs = o->freeze_last_layer_epochs;
    lvd_schedules check;
    if (lvd_schedules_init(&check, s, err))
        return -1;

    lvd_loader_config *l = &p->loader;
    lvd_loader_defaults(l);
    l->model = o->curated;
    l->method = o->method;
    l->dataset = o->dataset;
    for (int i = 0; i < o->sources.n; i++)
        p->sources[i] = o->sources.name[i];
    l->sources = p->sources;
    l->n_sources = o->sources.n;
    l->batch_size = batch;
    l->workers = o->workers;
    l->seed = o->seed;
    l->patch_size = a->patch;
    l->aug.global_size = gs;
    l->aug.local_size = ls;
    l->aug.n_local = nl;
    l->aug.global_scale[0] = (float)o->global_scale[0];
    l->aug.global_scale[1] = (float)o->global_scale[1];
    l->aug.local_scale[0] = (float)o->local_scale[0];
    l->aug.local_scale[1] = (float)o->local_scale[1];
    lvd_aug_set_blur(&l->aug, strcmp(o->blur, "paper") == 0  ? LVD_BLUR_PAPER
                              : strcmp(o->blur, "none") == 0 ? LVD_BLUR_NONE
                                                             : LVD_BLUR_RELEASED);
    l->aug.blur_sigma[0] = (float)o->blur_sigma[0];
    l->aug.blur_sigma[1] = (float)o->blur_sigma[1];
    l->aug.jitter_p = (float)o->jitter_p;
    l->aug.solarize_p = (float)o->solarize_p;
    l->mask.ratio_min = (float)o->mask_ratio[0];
    l->mask.ratio_max = (float)o->mask_ratio[1];
    /* Distillation: no masks (the iBOT loss covers every patch, train/distill.h) unless
     * --ibot-masks. */
    int masks = !o->distill || o->ibot_masks;
    l->mask.probability = masks ? (float)o->mask_probability : 0.0f;
    if (c->ibot_weight > 0 && masks && mask_budget(p, err))
        return -1;
    return 0;
}

static void add_pair(cJSON *j, const char *name, double a, double b)
{
    double v[2] = {a, b};
    cJSON_AddItemToObject(j, name, cJSON_CreateDoubleArray(v, 2));
}

cJSON *train_plan_json(const lvd_train_options *o, const train_plan *p)
{
    cJSON *j = cJSON_CreateObject();
    cJSON *d = cJSON_AddObjectToObject(j, "data");
    if (o->curated) {
        cJSON_AddStringToObject(d, "curated", o->curated);
        cJSON_AddStringToObject(d, "method", o->method ? o->method : "");
        cJSON_AddStringToObject(d, "dataset", o->dataset ? o->dataset : "");
    } else {
        cJSON_AddItemToObject(d, "sources", cJSON_CreateStringArray(o->sources.name, o->sources.n));
    }
    const lvd_vit_info *a = &p->arch;
    cJSON *m = cJSON_AddObjectToObject(j, "arch");
    cJSON_AddNumberToObject(m, "dim", a->dim);
    cJSON_AddNumberToObject(m, "depth", a->depth);
    cJSON_AddNumberToObject(m, "heads", a->heads);
    cJSON_AddNumberToObject(m, "patch", a->patch);
    cJSON_AddNumberToObject(m, "grid", a->grid);
    cJSON_AddNumberToObject(m, "registers", a->n_reg);
    cJSON_AddStringToObject(m, "ffn", a->ffn == LVD_VIT_SWIGLU ? "swiglu" : "mlp");
    cJSON_AddNumberToObject(m, "layerscale", p->layerscale);
    char init[PATH_MAX] = "";
    if (o->init && !realpath(o->init, init))
        snprintf(init, sizeof init, "%s", o->init);
    cJSON_AddStringToObject(m, "init", init);
    if (o->distill) {
        /* The student's heads are the teacher's shape: the teacher is what is recorded. */
        cJSON *t = cJSON_AddObjectToObject(j, "distill");
        char path[PATH_MAX] = "", heads[PATH_MAX] = "";
        if (!realpath(o->teacher, path))
            snprintf(path, sizeof path, "%s", o->teacher);
        if (o->teacher_heads && !realpath(o->teacher_heads, heads))
            snprintf(heads, sizeof heads, "%s", o->teacher_heads);
        cJSON_AddStringToObject(t, "teacher", path);
        cJSON_AddStringToObject(t, "teacher_heads", heads);
        cJSON_AddStringToObject(t, "mode", o->distill_mode);
        cJSON_AddNumberToObject(t, "cls_weight", o->cls_weight);
        cJSON_AddNumberToObject(t, "patch_weight", o->patch_weight);
        cJSON_AddBoolToObject(t, "ibot_masks", o->ibot_masks);
    } else {
        cJSON *h = cJSON_AddObjectToObject(j, "heads");
        cJSON_AddNumberToObject(h, "prototypes", p->dino.out_dim);
        cJSON_AddNumberToObject(h, "hidden", p->dino.hidden_dim);
        cJSON_AddNumberToObject(h, "bottleneck", p->dino.bottleneck_dim);
        cJSON_AddNumberToObject(h, "layers", p->dino.nlayers);
        cJSON_AddBoolToObject(h, "ibot_separate", p->ibot_separate);
        cJSON_AddNumberToObject(h, "ibot_prototypes", p->ibot_separate ? p->ibot.out_dim : 0);
    }
    const lvd_loader_config *l = &p->loader;
    cJSON *c = cJSON_AddObjectToObject(j, "crops");
    cJSON_AddNumberToObject(c, "global_size", l->aug.global_size);
    cJSON_AddNumberToObject(c, "local_size", l->aug.n_local ? l->aug.local_size : 0);
    cJSON_AddNumberToObject(c, "local_crops", l->aug.n_local);
    add_pair(c, "global_scale", o->global_scale[0], o->global_scale[1]);
    add_pair(c, "local_scale", o->local_scale[0], o->local_scale[1]);
    cJSON_AddStringToObject(c, "blur", o->blur);
    add_pair(c, "blur_sigma", o->blur_sigma[0], o->blur_sigma[1]);
    cJSON_AddNumberToObject(c, "jitter", o->jitter_p);
    cJSON_AddNumberToObject(c, "solarize", o->solarize_p);
    add_pair(c, "mask_ratio", o->mask_ratio[0], o->mask_ratio[1]);
    cJSON_AddNumberToObject(c, "mask_probability", o->mask_probability);
    const lvd_ssl_config *s = &p->ssl;
    const lvd_schedule_config *k = &p->sched;
    cJSON *t = cJSON_AddObjectToObject(j, "optim");
    cJSON_AddNumberToObject(t, "batch", s->batch);
    cJSON_AddNumberToObject(t, "steps", (double)o->steps);
    char seed[24]; /* a string: doubles hold 53 bits */
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)o->seed);
    cJSON_AddStringToObject(t, "seed", seed);
    cJSON_AddNumberToObject(t, "lr_base", p->lr_base);
    cJSON_AddStringToObject(t, "lr_scaling", o->lr_scaling);
    cJSON_AddNumberToObject(t, "lr", k->lr);
    cJSON_AddNumberToObject(t, "min_lr", k->min_lr);
    cJSON_AddNumberToObject(t, "epoch_length", (double)k->epoch_length);
    cJSON_AddNumberToObject(t, "warmup_epochs", (double)k->warmup_epochs);
    cJSON_AddNumberToObject(t, "weight_decay", k->weight_decay);
    cJSON_AddNumberToObject(t, "weight_decay_end", k->weight_decay_end);
    cJSON_AddNumberToObject(t, "momentum", k->momentum_teacher);
    cJSON_AddNumberToObject(t, "momentum_end", k->final_momentum_teacher);
    cJSON_AddNumberToObject(t, "teacher_temp", k->teacher_temp);
    cJSON_AddNumberToObject(t, "warmup_teacher_temp", k->warmup_teacher_temp);
    cJSON_AddNumberToObject(t, "teacher_temp_warmup_epochs", (double)k->warmup_teacher_temp_epochs);
    cJSON_AddNumberToObject(t, "freeze_last_layer_epochs", (double)k->freeze_last_layer_epochs);
    cJSON_AddNumberToObject(t, "student_temp", s->student_temp);
    cJSON_AddNumberToObject(t, "center_momentum", s->center_momentum);
    cJSON_AddStringToObject(t, "centering", s->sinkhorn ? "sinkhorn" : "softmax");
    cJSON_AddNumberToObject(t, "dino_weight", s->dino_weight);
    cJSON_AddNumberToObject(t, "ibot_weight", s->ibot_weight);
    cJSON_AddNumberToObject(t, "koleo_weight", s->koleo_weight);
    cJSON_AddNumberToObject(t, "drop_path", s->drop_path);
    cJSON_AddNumberToObject(t, "clip_grad", s->clip_grad);
    cJSON_AddNumberToObject(t, "layerwise_decay", s->layerwise_decay);
    cJSON_AddNumberToObject(t, "patch_embed_lr_mult", s->patch_embed_lr_mult);
    return j;
}

/* Keys the plan gained after checkpoints had been written, with the value every run before used:
 * a checkpoint without one stands for that value, so it still resumes under the defaults. */
static const struct {
    const char *path, *json;
} implied[] = {
    {"crops.blur_sigma", "[0.1,2]"},
    {"crops.jitter", "0.8"},
    {"crops.solarize", "0.2"},
};

/* The value implied[] gives path (owned by the caller), or NULL. */
static cJSON *implied_value(const char *path)
{
    for (size_t i = 0; i < sizeof implied / sizeof implied[0]; i++)
        if (strcmp(implied[i].path, path) == 0)
            return cJSON_Parse(implied[i].json);
    return NULL;
}

/* "group.key" of the first difference between a and b, with both values, into err. */
static int differ(const char *path, const cJSON *a, const cJSON *b, lvd_error *err)
{
    if (cJSON_IsObject(a) && cJSON_IsObject(b)) {
        const cJSON *x;
        cJSON_ArrayForEach(x, b)
        {
            char sub[256];
            snprintf(sub, sizeof sub, "%s%s%s", path, *path ? "." : "", x->string);
            const cJSON *ax = cJSON_GetObjectItemCaseSensitive(a, x->string);
            cJSON *old = ax ? NULL : implied_value(sub);
            int rc = differ(sub, ax ? ax : old, x, err);
            cJSON_Delete(old);
            if (rc)
                return -1;
        }
        cJSON_ArrayForEach(x, a)
        {
            if (!cJSON_GetObjectItemCaseSensitive(b, x->string))
                return lvd_fail(err, "%s%s%s is only in the checkpoint", path, *path ? "." : "",
                                x->string);
        }
        return 0;
    }
    if (a && b && cJSON_Compare(a, b, 1))
        return 0;
    char *ta = a ? cJSON_PrintUnformatted(a) : NULL, *tb = cJSON_PrintUnformatted(b);
    lvd_fail(err, "%s is %s in the checkpoint, %s now", path, ta ? ta : "absent", tb ? tb : "?");
    free(ta);
    free(tb);
    return -1;
}

int train_plan_compare(const cJSON *ckpt, const cJSON *now, lvd_error *err)
{
    return differ("", ckpt, now, err);
}
