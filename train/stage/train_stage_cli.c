/* The command side of train/stage/train_stage.h: defaults, the option parsers, the check,
 * lvd_train_main (the --config INI file, read with curate/pipeline.h's loader) and
 * lvd_train_command, the executables' main. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "curate/pipeline/pipeline.h"
#include "train/stage/train_stage_internal.h"

void lvd_train_options_default(lvd_train_options *o)
{
    *o = (lvd_train_options){
        .layerscale = -1, /* -1, 0 or NULL below: the preset's (train_options_recipe) */
        .drop_path = -1,
        .head_layers = 3,
        .local_crops = -1,
        .global_scale = {0.32, 1.0},
        .local_scale = {0.05, 0.32},
        .blur = "released",
        .blur_sigma = {0.1, 2.0},
        .jitter_p = 0.8,
        .solarize_p = 0.2,
        .mask_ratio = {0.1, 0.5},
        .mask_probability = 0.5,
        .lr = 0.004,
        .lr_scaling = "sqrt",
        .min_lr = 1e-6,
        .warmup_epochs = -1,
        .weight_decay = 0.04,
        .weight_decay_end = 0.4,
        .momentum = -1,
        .momentum_end = 1.0,
        .teacher_temp = 0.07,
        .warmup_teacher_temp = 0.04,
        .teacher_temp_warmup_epochs = -1,
        .freeze_last_layer_epochs = 1,
        .student_temp = 0.1,
        .center_momentum = 0.9,
        .dino_weight = 1.0,
        .ibot_weight = 1.0,
        .koleo_weight = 0.1,
        .clip_grad = 3.0,
        .layerwise_decay = 0.9,
        .patch_embed_lr_mult = 0.2,
        .workers = 2,
        .ckpt_every = 500,
        .log_every = 10,
        .distill_mode = "auto",
        .cls_weight = 0.5,
        .patch_weight = 0.5,
        .eval_k = 20,
        .eval_pool = "cls",
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
    lvd_train_options *o = ctx;
    static const char *const presets[] = {"tiny",   "vits14", "vitb14", "vitl14",
                                          "vitg14", "fmnist", NULL};
    static const char *const ffns[] = {"mlp", "swiglu", NULL};
    static const char *const blurs[] = {"released", "paper", "none", NULL};
    static const char *const rules[] = {"sqrt", "none", NULL};
    static const char *const centerings[] = {"softmax", "sinkhorn", NULL};
    if (!o->db)
        return lvd_fail(err, "--db is required");
    if (o->distill && !o->teacher)
        return lvd_fail(err, "--teacher is required");
    if (!o->out)
        return lvd_fail(err, "--out is required");
    if (!o->curated && o->sources.n == 0)
        return lvd_fail(err, "--curated MODEL or --source NAME is required");
    if (o->curated && o->sources.n > 0)
        return lvd_fail(err, "--curated and --source exclude each other");
    if (!o->curated && (o->method || o->dataset))
        return lvd_fail(err, "--%s needs --curated", o->method ? "method" : "dataset");
    if (o->arch && !one_of(o->arch, presets))
        return lvd_fail(err,
                        "--arch: unknown preset '%s' (tiny, vits14, vitb14, vitl14, vitg14, "
                        "fmnist)",
                        o->arch);
    train_options_recipe(o);
    if (o->ffn && !one_of(o->ffn, ffns))
        return lvd_fail(err, "--ffn: '%s' is not mlp or swiglu", o->ffn);
    if (!one_of(o->blur, blurs))
        return lvd_fail(err, "--blur: '%s' is not released, paper or none", o->blur);
    if (!(o->blur_sigma[0] > 0))
        return lvd_fail(err, "--blur-sigma: the range must start above 0");
    if (!one_of(o->lr_scaling, rules))
        return lvd_fail(err, "--lr-scaling: '%s' is not sqrt or none", o->lr_scaling);
    if (!one_of(o->centering, centerings))
        return lvd_fail(err, "--centering: '%s' is not softmax or sinkhorn", o->centering);
    if (o->distill) {
        static const char *const modes[] = {"auto", "heads", "features", NULL};
        if (!one_of(o->distill_mode, modes))
            return lvd_fail(err, "--distill-mode: '%s' is not auto, heads or features",
                            o->distill_mode);
        if (!(o->cls_weight + o->patch_weight > 0))
            return lvd_fail(err, "--cls-weight and --patch-weight are both 0");
    }
    if (!o->eval_train != !o->eval_test)
        return lvd_fail(err, "--eval-train and --eval-test go together");
    if (!o->eval_train && (o->eval_every || o->eval_limit || o->eval_test_limit))
        return lvd_fail(err, "--eval-every and --eval-limit need --eval-train and --eval-test");
    if (strcmp(o->eval_pool, "cls") != 0 && strcmp(o->eval_pool, "cls+mean") != 0)
        return lvd_fail(err, "--eval-pool: '%s' is not cls or cls+mean", o->eval_pool);
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

/* Appends n entries of src to opts at *at. */
static void append(lvd_kit_opt *opts, int *at, const lvd_kit_opt *src, int n)
{
    memcpy(opts + *at, src, (size_t)n * sizeof *src);
    *at += n;
}

void lvd_train_option_table(lvd_train_options *o, int distill, lvd_kit_opt *opts)
{
    const lvd_kit_opt data[] = {
        LVD_OPT_STR("db", "DB", o->db, "manifest database (required)"),
        LVD_OPT_STR("config", "FILE", o->config,
                    distill ? "INI file of options ([distill] section)"
                            : "INI file of options ([train] section)"),
        LVD_OPT_STR("curated", "MODEL", o->curated, "train on the curated set of this model"),
        LVD_OPT_STR("method", "M", o->method, "... only its rows of method M (seed, knn, ...)",
                    .def = "all"),
        LVD_OPT_STR("dataset", "D", o->dataset, "... only its rows of dataset D", .def = "all"),
        LVD_OPT_FN("source", "NAME", o->sources, lvd_train_source_opt,
                   "train on the 'ok' images of this source (repeatable)"),
        LVD_OPT_STR("arch", "PRESET", o->arch, "tiny, vits14, vitb14, vitl14, vitg14 or fmnist",
                    .def = distill ? "tiny" : "tiny, or --init's"),
        LVD_OPT_INT("dim", "D", o->dim, 8, 8192, "embedding width", .def = "preset's"),
        LVD_OPT_INT("depth", "L", o->depth, 1, 256, "blocks", .def = "preset's"),
        LVD_OPT_INT("heads", "H", o->heads, 1, 1024, "attention heads", .def = "dim / 64"),
        LVD_OPT_INT("patch", "P", o->patch, 1, 64, "patch side in pixels", .def = "preset's"),
        LVD_OPT_INT("registers", "R", o->registers, 0, 64, "register tokens"),
        LVD_OPT_STR("ffn", "KIND", o->ffn, "mlp or swiglu", .def = "preset's"),
        LVD_OPT_NUM("layerscale", "X", o->layerscale, 0, 10, "LayerScale init", .zero = 1,
                    .def = "preset's: fmnist 0.1, others 1e-5"),
    };
    const lvd_kit_opt pretrain[] = {
        LVD_OPT_NUM("drop-path", "RATE", o->drop_path, 0, 1, "student stochastic depth rate",
                    .def = "preset's: tiny 0, ViT 0.3, ViT-g 0.4"),
        LVD_OPT_STR("init", "FILE", o->init, "start the backbone from this checkpoint"),
        LVD_OPT_INT("prototypes", "K", o->prototypes, 1, 1 << 20, "DINO head prototypes",
                    .def = "preset's"),
        LVD_OPT_INT("head-hidden", "N", o->head_hidden, 1, 1 << 16, "head MLP hidden width",
                    .def = "preset's"),
        LVD_OPT_INT("head-bottleneck", "N", o->head_bottleneck, 1, 1 << 16, "head bottleneck",
                    .def = "preset's"),
        LVD_OPT_INT("head-layers", "N", o->head_layers, 1, 16, "head MLP linears"),
        LVD_OPT_FLAG("ibot-separate-head", o->ibot_separate, 1,
                     "a separate iBOT head (default: the DINO head)"),
        LVD_OPT_INT("ibot-prototypes", "K", o->ibot_prototypes, 1, 1 << 20, "its prototypes",
                    .def = "--prototypes"),
    };
    const lvd_kit_opt teacher[] = {
        LVD_OPT_STR("teacher", "PATH", o->teacher,
                    "the frozen teacher: a folder of lvd-train or lvd-distill,\n"
                    "a training checkpoint or any backbone lvd loads (required)"),
        LVD_OPT_STR("teacher-heads", "FILE", o->teacher_heads,
                    "its heads (dino_head.*, ibot_head.*)", .def = "the folder's"),
        LVD_OPT_STR("distill-mode", "MODE", o->distill_mode,
                    "heads (the teacher's head targets), features (cls and\n"
                    "patch regression through a projection) or auto (heads when\n"
                    "the teacher has them)"),
        LVD_OPT_NUM("cls-weight", "W", o->cls_weight, 0, 1e6, "features: weight of the cls term",
                    .zero = 1),
        LVD_OPT_NUM("patch-weight", "W", o->patch_weight, 0, 1e6,
                    "features: weight of the patch term", .zero = 1),
        LVD_OPT_FLAG("ibot-masks", o->ibot_masks, 1,
                     "heads: iBOT on the masked patches of --mask-ratio and\n"
                     "--mask-probability, seen as mask tokens (default: every\n"
                     "patch, unmasked: the paper's distillation)"),
    };
    const lvd_kit_opt crops[] = {
        LVD_OPT_INT("global-size", "PX", o->global_size, 1, 4096, "global crop side",
                    .def = "preset's"),
        LVD_OPT_INT("local-size", "PX", o->local_size, 1, 4096, "local crop side",
                    .def = "preset's"),
        LVD_OPT_INT("local-crops", "N", o->local_crops, 0, 64, "local crops per image",
                    .def = "preset's"),
        LVD_OPT_FN("global-scale", "A,B", o->global_scale, lvd_train_pair_opt,
                   "global crop area share range", .lo = 0, .hi = 1, .def = "0.32,1"),
        LVD_OPT_FN("local-scale", "A,B", o->local_scale, lvd_train_pair_opt,
                   "local crop area share range", .lo = 0, .hi = 1, .def = "0.05,0.32"),
        LVD_OPT_STR("blur", "MODE", o->blur,
                    "released (blur p 0, 0.9, 0.5: what the reference does),\n"
                    "paper (1, 0.1, 0.5) or none"),
        LVD_OPT_FN("blur-sigma", "A,B", o->blur_sigma, lvd_train_pair_opt,
                   "Gaussian blur sigma range (kernel 9)", .lo = 0, .hi = 100, .def = "0.1,2"),
        LVD_OPT_NUM("jitter", "P", o->jitter_p, 0, 1, "ColorJitter probability", .zero = 1),
        LVD_OPT_NUM("solarize", "P", o->solarize_p, 0, 1,
                    "solarization probability (second global crop)", .zero = 1),
    };
    const lvd_kit_opt masks[] = {
        LVD_OPT_FN("mask-ratio", "A,B", o->mask_ratio, lvd_train_pair_opt,
                   "iBOT masked share range", .lo = 0, .hi = 1, .def = "0.1,0.5"),
        LVD_OPT_NUM("mask-probability", "P", o->mask_probability, 0, 1,
                    "share of global crops masked", .zero = 1),
    };
    const lvd_kit_opt rest[] = {
        LVD_OPT_INT("batch", "B", o->batch, 1, 1 << 20, "images per step", .def = "preset's"),
        LVD_OPT_NUM("lr", "LR", o->lr, 0, 1e30, "base lr", .zero = 1),
        LVD_OPT_STR("lr-scaling", "RULE", o->lr_scaling,
                    "sqrt (lr = base x sqrt(batch / 1024)) or none"),
        LVD_OPT_NUM("min-lr", "LR", o->min_lr, 0, 1e30, "final lr", .zero = 1),
        LVD_OPT_INT("epoch-length", "N", o->epoch_length, 1, INT64_MAX,
                    "iterations of an \"epoch\" (the schedules' unit)",
                    .def = "preset's: fmnist 100, others 1250"),
        LVD_OPT_INT("warmup-epochs", "E", o->warmup_epochs, 0, INT64_MAX, "lr warm-up",
                    .def = "preset's: fmnist 1, others 10"),
        LVD_OPT_NUM("weight-decay", "WD", o->weight_decay, 0, 1e6, "weight decay at the start",
                    .zero = 1),
        LVD_OPT_NUM("weight-decay-end", "WD", o->weight_decay_end, 0, 1e6, "... at the end",
                    .zero = 1),
        LVD_OPT_NUM("momentum", "M", o->momentum, 0, 1,
                    distill ? "EMA momentum (the output model) at the start"
                            : "teacher EMA momentum at the start",
                    .zero = 1, .def = "preset's: fmnist 0.99, others 0.992"),
        LVD_OPT_NUM("momentum-end", "M", o->momentum_end, 0, 1, "... at the end", .zero = 1),
        LVD_OPT_NUM("teacher-temp", "T", o->teacher_temp, 1e-6, 100, "teacher temperature"),
        LVD_OPT_NUM("warmup-teacher-temp", "T", o->warmup_teacher_temp, 1e-6, 100,
                    "... at the start of its warm-up"),
        LVD_OPT_INT("teacher-temp-warmup-epochs", "E", o->teacher_temp_warmup_epochs, 0, INT64_MAX,
                    "teacher temperature warm-up", .def = "preset's: fmnist 3, others 30"),
        LVD_OPT_INT("freeze-last-layer-epochs", "E", o->freeze_last_layer_epochs, 0, INT64_MAX,
                    "epochs the heads' last layer is frozen"),
        LVD_OPT_NUM("student-temp", "T", o->student_temp, 1e-6, 100, "student temperature"),
        LVD_OPT_NUM("center-momentum", "M", o->center_momentum, 0, 1, "DINO / iBOT center EMA",
                    .zero = 1),
        LVD_OPT_STR("centering", "MODE", o->centering, "softmax or sinkhorn (Sinkhorn-Knopp)",
                    .def = "preset's: fmnist sinkhorn, others softmax"),
        LVD_OPT_NUM("dino-weight", "W", o->dino_weight, 1e-9, 1e6, "DINO loss weight"),
        LVD_OPT_NUM("ibot-weight", "W", o->ibot_weight, 0, 1e6, "iBOT loss weight; 0: off",
                    .zero = 1),
        LVD_OPT_NUM("koleo-weight", "W", o->koleo_weight, 0, 1e6, "KoLeo weight; 0: off",
                    .zero = 1),
        LVD_OPT_NUM("clip-grad", "N", o->clip_grad, 0, 1e30, "gradient clip norm; 0: none",
                    .zero = 1),
        LVD_OPT_NUM("layerwise-decay", "X", o->layerwise_decay, 0, 1, "layer-wise lr decay",
                    .zero = 1),
        LVD_OPT_NUM("patch-embed-lr-mult", "X", o->patch_embed_lr_mult, 0, 1e6,
                    "lr multiplier of the patch embedding", .zero = 1),
        LVD_OPT_INT("steps", "N", o->steps, 1, (int64_t)1 << 40, "training iterations",
                    .def = "preset's: fmnist 1000, others 125000"),
        LVD_OPT_INT("stop-at", "K", o->stop_at, 1, (int64_t)1 << 40,
                    "stop after step K; the schedules still span --steps", .def = "--steps"),
        LVD_OPT_NUM("minutes", "M", o->minutes, 0, 1e9,
                    "wall-clock budget: no step starts after M minutes\n"
                    "(0: none)",
                    .zero = 1),
        LVD_OPT_INT("seed", "S", o->seed, 0, INT64_MAX, "seed of the init, crops and masks"),
        LVD_OPT_INT("threads", "N", o->threads, 0, 1024, "compute threads (0: one per CPU)",
                    .zero = 1),
        LVD_OPT_INT("workers", "N", o->workers, 1, 256, "loader threads"),
        LVD_OPT_STR("out", "DIR", o->out, "output folder (required; created)"),
        LVD_OPT_INT("ckpt-every", "N", o->ckpt_every, 1, INT64_MAX, "steps between checkpoints"),
        LVD_OPT_INT("log-every", "N", o->log_every, 1, INT64_MAX,
                    "steps between metric writes and progress lines"),
        LVD_OPT_FLAG("resume", o->resume, 1, "resume from DIR's checkpoint (required to exist)"),
        LVD_OPT_FLAG("export-every", o->export_every, 1, "export the teacher at every checkpoint"),
        LVD_OPT_STR("register", "NAME", o->register_name,
                    distill ? "register the final output backbone as model NAME"
                            : "register the final teacher backbone as model NAME"),
        LVD_OPT_FLAG("no-progress", o->no_progress, 1, "no progress lines on stderr"),
        LVD_OPT_STR("eval-train", "SOURCE", o->eval_train,
                    "k-NN of the EMA teacher during training: the labelled\n"
                    "bank (train/eval/eval.h's protocol, rows in v_train_evals)"),
        LVD_OPT_STR("eval-test", "SOURCE", o->eval_test, "... its labelled test images"),
        LVD_OPT_INT("eval-every", "N", o->eval_every, 0, INT64_MAX,
                    "... every N steps and at the end (0: at the end only)", .zero = 1),
        LVD_OPT_INT("eval-k", "K", o->eval_k, 1, 100000, "... neighbours"),
        LVD_OPT_INT("eval-limit", "N", o->eval_limit, 0, INT64_MAX,
                    "... a sample of N bank images only (0: all)", .zero = 1),
        LVD_OPT_INT("eval-test-limit", "N", o->eval_test_limit, 0, INT64_MAX,
                    "... a sample of N test images only (0: all)", .zero = 1),
        LVD_OPT_STR("eval-pool", "P", o->eval_pool,
                    "... features: cls, or cls+mean (cls and mean patch token)"),
        LVD_OPT_END,
    };
#define COUNT(a) (sizeof a / sizeof a[0])
    _Static_assert(COUNT(data) + COUNT(pretrain) + COUNT(teacher) + COUNT(crops) + COUNT(masks) +
                           COUNT(rest) <=
                       LVD_TRAIN_MAX_OPTS,
                   "LVD_TRAIN_MAX_OPTS is too small");
#define APPEND(a) append(opts, &n, a, (int)COUNT(a))
    int n = 0;
    APPEND(data);
    if (distill)
        APPEND(teacher);
    else
        APPEND(pretrain);
    APPEND(crops);
    APPEND(masks);
    APPEND(rest);
#undef APPEND
#undef COUNT
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

/* Applies the [pipeline] db and the options of p's section of the command (lvd-train: [train],
 * lvd-distill: [distill]) to cmd's table. */
static int apply_config(const lvd_kit_cmd *cmd, const lvd_pipeline *p, lvd_error *err)
{
    const char *stage = strncmp(cmd->name, "lvd-", 4) == 0 ? cmd->name + 4 : cmd->name;
    const lvd_pipeline_step *s = NULL;
    for (size_t i = 0; i < p->n_steps; i++) {
        if (strcmp(p->steps[i].stage, stage) != 0)
            continue;
        if (s)
            return lvd_fail(err, "%s:%d: a second %s section [%s] (keep one)", p->path,
                            p->steps[i].line, stage, p->steps[i].id);
        s = &p->steps[i];
    }
    if (!s)
        return lvd_fail(err, "%s: no [%s] section", p->path, stage);
    if (s->n_args > 0)
        return lvd_fail(err, "%s:%d: [%s]: %s takes no args", p->path, s->line, s->id, cmd->name);
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
    /* Data-parallel runs: ranks other than the lead never open the manifest for writing (their
     * loaders read it themselves), so that one process writes it. */
    lvd_dist d;
    lvd_error err;
    if (lvd_dist_init(&d, &err)) {
        lvd_pipeline_free(p);
        return lvd_kit_fail(cmd->name, &err);
    }
    lvd_kit_cmd c = *cmd;
    if (d.rank != 0)
        c.db = LVD_KIT_NO_DB;
    int rc = lvd_kit_main(&c, argc, argv);
    lvd_pipeline_free(p); /* the options point into it until here */
    return rc;
}

int lvd_train_command(const char *name, const char *help, const char *footer, int distill, int argc,
                      char **argv)
{
    lvd_train_options o;
    lvd_train_options_default(&o);
    o.distill = distill;
    lvd_kit_opt opts[LVD_TRAIN_MAX_OPTS];
    lvd_train_option_table(&o, distill, opts);
    const lvd_kit_cmd cmd = {name,
                             help,
                             opts,
                             lvd_train_run,
                             &o,
                             .db = LVD_KIT_WRITE,
                             .check = lvd_train_check,
                             .footer = footer};
    return lvd_train_main(&cmd, argc, argv);
}
