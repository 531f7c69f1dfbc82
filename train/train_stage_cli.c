/* The command side of train/train_stage.h: defaults, the option parsers, the check and
 * lvd_train_main (the --config INI file, read with curate/pipeline.h's loader). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "curate/pipeline.h"
#include "train/train_stage_internal.h"

void lvd_train_options_default(lvd_train_options *o)
{
    *o = (lvd_train_options){
        .layerscale = 1e-5f,
        .drop_path = -1,
        .head_layers = 3,
        .local_crops = -1,
        .global_scale = {0.32, 1.0},
        .local_scale = {0.05, 0.32},
        .blur = "released",
        .mask_ratio = {0.1, 0.5},
        .mask_probability = 0.5,
        .lr = 0.004,
        .lr_scaling = "sqrt",
        .min_lr = 1e-6,
        .epoch_length = 1250,
        .warmup_epochs = 10,
        .weight_decay = 0.04,
        .weight_decay_end = 0.4,
        .momentum = 0.992,
        .momentum_end = 1.0,
        .teacher_temp = 0.07,
        .warmup_teacher_temp = 0.04,
        .teacher_temp_warmup_epochs = 30,
        .freeze_last_layer_epochs = 1,
        .student_temp = 0.1,
        .center_momentum = 0.9,
        .centering = "softmax",
        .dino_weight = 1.0,
        .ibot_weight = 1.0,
        .koleo_weight = 0.1,
        .clip_grad = 3.0,
        .layerwise_decay = 0.9,
        .patch_embed_lr_mult = 0.2,
        .steps = 125000,
        .workers = 2,
        .ckpt_every = 500,
        .log_every = 10,
    };
}

int lvd_train_source_opt(const lvd_kit_opt *o, const char *value, lvd_error *err)
{
    lvd_train_sources *s = o->dest;
    if (s->replace) {
        s->n = 0;
        s->replace = 0;
    }
    if (!*value)
        return lvd_fail(err, "empty source name");
    if (s->n == LVD_TRAIN_MAX_SOURCES)
        return lvd_fail(err, "more than %d sources", LVD_TRAIN_MAX_SOURCES);
    s->name[s->n++] = value;
    return 0;
}

int lvd_train_pair_opt(const lvd_kit_opt *o, const char *value, lvd_error *err)
{
    double *d = o->dest, v[2];
    const char *comma = strchr(value, ',');
    char first[64];
    if (!comma || (size_t)(comma - value) >= sizeof first)
        return lvd_fail(err, "'%s' is not two numbers A,B", value);
    snprintf(first, sizeof first, "%.*s", (int)(comma - value), value);
    if (lvd_kit_number(o, first, &v[0], err) || lvd_kit_number(o, comma + 1, &v[1], err))
        return -1;
    if (v[0] > v[1])
        return lvd_fail(err, "'%s': A is above B", value);
    d[0] = v[0];
    d[1] = v[1];
    return 0;
}

static int one_of(const char *v, const char *const *names)
{
    for (; *names; names++)
        if (strcmp(v, *names) == 0)
            return 1;
    return 0;
}

int lvd_train_check(void *ctx, lvd_error *err)
{
    const lvd_train_options *o = ctx;
    static const char *const presets[] = {"tiny", "vits14", "vitb14", "vitl14", "vitg14", NULL};
    static const char *const ffns[] = {"mlp", "swiglu", NULL};
    static const char *const blurs[] = {"released", "paper", NULL};
    static const char *const rules[] = {"sqrt", "none", NULL};
    static const char *const centerings[] = {"softmax", "sinkhorn", NULL};
    if (!o->db)
        return lvd_fail(err, "--db is required");
    if (!o->out)
        return lvd_fail(err, "--out is required");
    if (!o->curated && o->sources.n == 0)
        return lvd_fail(err, "--curated MODEL or --source NAME is required");
    if (o->curated && o->sources.n > 0)
        return lvd_fail(err, "--curated and --source exclude each other");
    if (!o->curated && (o->method || o->dataset))
        return lvd_fail(err, "--%s needs --curated", o->method ? "method" : "dataset");
    if (o->arch && !one_of(o->arch, presets))
        return lvd_fail(err, "--arch: unknown preset '%s' (tiny, vits14, vitb14, vitl14, vitg14)",
                        o->arch);
    if (o->ffn && !one_of(o->ffn, ffns))
        return lvd_fail(err, "--ffn: '%s' is not mlp or swiglu", o->ffn);
    if (!one_of(o->blur, blurs))
        return lvd_fail(err, "--blur: '%s' is not released or paper", o->blur);
    if (!one_of(o->lr_scaling, rules))
        return lvd_fail(err, "--lr-scaling: '%s' is not sqrt or none", o->lr_scaling);
    if (!one_of(o->centering, centerings))
        return lvd_fail(err, "--centering: '%s' is not softmax or sinkhorn", o->centering);
    if (o->ibot_prototypes && !o->ibot_separate)
        return lvd_fail(err, "--ibot-prototypes needs --ibot-separate-head");
    if (o->init) {
        const char *given = o->arch        ? "arch"
                            : o->dim       ? "dim"
                            : o->depth     ? "depth"
                            : o->patch     ? "patch"
                            : o->registers ? "registers"
                            : o->ffn       ? "ffn"
                                           : NULL;
        if (given)
            return lvd_fail(err, "--init takes the architecture from %s: drop --%s", o->init,
                            given);
        return 0; /* the sizes are checked against the file's architecture by the run */
    }
    train_plan p;
    return train_plan_resolve(o, NULL, &p, err);
}

/* --config's value in argv, or NULL (also when --help asks for the text). */
static const char *config_arg(int argc, char **argv)
{
    const char *path = NULL;
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "--help") == 0)
            return NULL;
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            path = argv[++i];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            path = argv[i] + 9;
    }
    return path;
}

static const lvd_kit_opt *find_opt(const lvd_kit_cmd *cmd, const char *name)
{
    for (const lvd_kit_opt *o = cmd->opts; o->kind != LVD_KIT_END; o++)
        if (strcmp(o->name, name) == 0)
            return o;
    return NULL;
}

/* Applies the [pipeline] db and the [train] options of p to cmd's table. */
static int apply_config(const lvd_kit_cmd *cmd, const lvd_pipeline *p, lvd_error *err)
{
    const lvd_pipeline_step *s = NULL;
    for (size_t i = 0; i < p->n_steps; i++) {
        if (strcmp(p->steps[i].stage, "train") != 0)
            continue;
        if (s)
            return lvd_fail(err, "%s:%d: a second train section [%s] (keep one)", p->path,
                            p->steps[i].line, p->steps[i].id);
        s = &p->steps[i];
    }
    if (!s)
        return lvd_fail(err, "%s: no [train] section", p->path);
    if (s->n_args > 0)
        return lvd_fail(err, "%s:%d: [%s]: lvd-train takes no args", p->path, s->line, s->id);
    const lvd_kit_opt *db = find_opt(cmd, "db");
    if (p->db && db && lvd_kit_set(db, p->db, err))
        return lvd_error_prefix(err, "%s", p->path);
    for (size_t i = 0; i < s->n_opts; i++) {
        const char *key = s->opts[i].key, *value = s->opts[i].value;
        const lvd_kit_opt *o = find_opt(cmd, key + (key[1] == '-' ? 2 : 1));
        if (!o || strcmp(o->name, "config") == 0)
            return lvd_fail(err, "%s:%d: [%s]: %s: %s", p->path, s->line, s->id, key,
                            o ? "not allowed in a config file" : "unknown option");
        if (o->kind == LVD_KIT_FLAG && value)
            return lvd_fail(err, "%s:%d: [%s]: %s: takes no value", p->path, s->line, s->id, key);
        if (o->kind != LVD_KIT_FLAG && !value)
            return lvd_fail(err, "%s:%d: [%s]: %s: missing value", p->path, s->line, s->id, key);
        if (lvd_kit_set(o, value, err))
            return lvd_error_prefix(err, "%s:%d: [%s]", p->path, s->line, s->id);
    }
    /* A --source on the command line replaces the file's list. */
    for (const lvd_kit_opt *o = cmd->opts; o->kind != LVD_KIT_END; o++)
        if (o->kind == LVD_KIT_FN && o->fn == lvd_train_source_opt) {
            lvd_train_sources *src = o->dest;
            src->replace = src->n > 0;
        }
    return 0;
}

int lvd_train_main(const lvd_kit_cmd *cmd, int argc, char **argv)
{
    const char *path = config_arg(argc, argv);
    lvd_pipeline *p = NULL;
    if (path) {
        lvd_error err;
        if (lvd_pipeline_load(path, &p, &err) || apply_config(cmd, p, &err)) {
            lvd_pipeline_free(p);
            return lvd_kit_usage_error(cmd->name, err.msg);
        }
    }
    int rc = lvd_kit_main(cmd, argc, argv);
    lvd_pipeline_free(p); /* the options point into it until here */
    return rc;
}
