/* lvd-train: DINOv2 self-supervised pretraining on the manifest's images (train/train_stage.h). */
#include "kit/kit.h"
#include "train/train_stage.h"

static const char about[] =
    "Pretrains a ViT with DINOv2's objective (DINO + iBOT + KoLeo, EMA teacher) on the curated\n"
    "set of a model or on the images of sources, and writes into DIR: checkpoint.safetensors\n"
    "(the whole training state, atomically every --ckpt-every steps and at the end),\n"
    "teacher_backbone.safetensors (the teacher's backbone under official key names, for\n"
    "lvd-model add, lvd-embed and lvd-vit) and teacher_heads.safetensors (its heads).\n"
    "\n"
    "Presets: tiny (dim 192, depth 6, 3 heads, patch 4; for 28-px images: crops 28 x 2 and\n"
    "12 x 6, head 4096 prototypes, hidden 512, bottleneck 128, batch 128), vits14, vitb14,\n"
    "vitl14 (crops 224 x 2 and 98 x 8, head 65536 / 2048 / 256, batch 64) and vitg14 (SwiGLU,\n"
    "head 131072 / 2048 / 384). Explicit sizes override the preset's; --init takes the\n"
    "architecture and the weights of any checkpoint lvd loads. The other defaults are\n"
    "dinov2/configs/ssl_default_config.yaml's. lvd-embed and lvd-vit take head dim 64 only.\n"
    "\n"
    "The schedules span --steps even when --minutes or --stop-at ends the run first; it saves\n"
    "its checkpoint and exports the teacher, and the same command run again (without\n"
    "--stop-at, or with a later one) continues from the checkpoint: any stop and resume\n"
    "gives bitwise the parameters of one uninterrupted run (for the same --threads). A run\n"
    "resumes automatically when DIR holds a checkpoint of the same options and images, and\n"
    "refuses one of other options. Per-step metrics go to the manifest (view\n"
    "v_train_steps), the run to v_runs. Options can come from an INI file (--config): its\n"
    "[train] section, in lvd-run's format; the command line wins.";

static const char footer[] =
    "Exit status 0 on success (also when --minutes stops the run), 1 on failure (a\n"
    "non-finite loss keeps the last checkpoint), 2 on bad usage, 130 after a clean stop on\n"
    "SIGINT or SIGTERM (checkpoint saved, run marked interrupted).";

int main(int argc, char **argv)
{
    lvd_train_options o;
    lvd_train_options_default(&o);
    const lvd_kit_opt opts[] = {
        LVD_OPT_STR("db", "DB", o.db, "manifest database (required)"),
        LVD_OPT_STR("config", "FILE", o.config, "INI file of options ([train] section)"),
        LVD_OPT_STR("curated", "MODEL", o.curated, "train on the curated set of this model"),
        LVD_OPT_STR("method", "M", o.method, "... only its rows of method M (seed, knn, ...)",
                    .def = "all"),
        LVD_OPT_STR("dataset", "D", o.dataset, "... only its rows of dataset D", .def = "all"),
        LVD_OPT_FN("source", "NAME", o.sources, lvd_train_source_opt,
                   "train on the 'ok' images of this source (repeatable)"),
        LVD_OPT_STR("arch", "PRESET", o.arch, "tiny, vits14, vitb14, vitl14 or vitg14",
                    .def = "tiny, or --init's"),
        LVD_OPT_INT("dim", "D", o.dim, 8, 8192, "embedding width", .def = "preset's"),
        LVD_OPT_INT("depth", "L", o.depth, 1, 256, "blocks", .def = "preset's"),
        LVD_OPT_INT("heads", "H", o.heads, 1, 1024, "attention heads", .def = "dim / 64"),
        LVD_OPT_INT("patch", "P", o.patch, 1, 64, "patch side in pixels", .def = "preset's"),
        LVD_OPT_INT("registers", "R", o.registers, 0, 64, "register tokens"),
        LVD_OPT_STR("ffn", "KIND", o.ffn, "mlp or swiglu", .def = "preset's"),
        LVD_OPT_NUM("layerscale", "X", o.layerscale, 0, 10, "LayerScale init", .zero = 1),
        LVD_OPT_NUM("drop-path", "RATE", o.drop_path, 0, 1, "student stochastic depth rate"),
        LVD_OPT_STR("init", "FILE", o.init, "start the backbone from this checkpoint"),
        LVD_OPT_INT("prototypes", "K", o.prototypes, 1, 1 << 20, "DINO head prototypes",
                    .def = "preset's"),
        LVD_OPT_INT("head-hidden", "N", o.head_hidden, 1, 1 << 16, "head MLP hidden width",
                    .def = "preset's"),
        LVD_OPT_INT("head-bottleneck", "N", o.head_bottleneck, 1, 1 << 16, "head bottleneck",
                    .def = "preset's"),
        LVD_OPT_INT("head-layers", "N", o.head_layers, 1, 16, "head MLP linears"),
        LVD_OPT_FLAG("ibot-separate-head", o.ibot_separate, 1,
                     "a separate iBOT head (default: the DINO head)"),
        LVD_OPT_INT("ibot-prototypes", "K", o.ibot_prototypes, 1, 1 << 20, "its prototypes",
                    .def = "--prototypes"),
        LVD_OPT_INT("global-size", "PX", o.global_size, 1, 4096, "global crop side",
                    .def = "preset's"),
        LVD_OPT_INT("local-size", "PX", o.local_size, 1, 4096, "local crop side",
                    .def = "preset's"),
        LVD_OPT_INT("local-crops", "N", o.local_crops, 0, 64, "local crops per image",
                    .def = "preset's"),
        LVD_OPT_FN("global-scale", "A,B", o.global_scale, lvd_train_pair_opt,
                   "global crop area share range", .lo = 0, .hi = 1, .def = "0.32,1"),
        LVD_OPT_FN("local-scale", "A,B", o.local_scale, lvd_train_pair_opt,
                   "local crop area share range", .lo = 0, .hi = 1, .def = "0.05,0.32"),
        LVD_OPT_STR("blur", "MODE", o.blur,
                    "released (blur p 0, 0.9, 0.5: what the reference does) or\n"
                    "paper (1, 0.1, 0.5)"),
        LVD_OPT_FN("mask-ratio", "A,B", o.mask_ratio, lvd_train_pair_opt, "iBOT masked share range",
                   .lo = 0, .hi = 1, .def = "0.1,0.5"),
        LVD_OPT_NUM("mask-probability", "P", o.mask_probability, 0, 1,
                    "share of global crops masked", .zero = 1),
        LVD_OPT_INT("batch", "B", o.batch, 1, 1 << 20, "images per step", .def = "preset's"),
        LVD_OPT_NUM("lr", "LR", o.lr, 0, 1e30, "base lr", .zero = 1),
        LVD_OPT_STR("lr-scaling", "RULE", o.lr_scaling,
                    "sqrt (lr = base x sqrt(batch / 1024)) or none"),
        LVD_OPT_NUM("min-lr", "LR", o.min_lr, 0, 1e30, "final lr", .zero = 1),
        LVD_OPT_INT("epoch-length", "N", o.epoch_length, 1, INT64_MAX,
                    "iterations of an \"epoch\" (the schedules' unit)"),
        LVD_OPT_INT("warmup-epochs", "E", o.warmup_epochs, 0, INT64_MAX, "lr warm-up"),
        LVD_OPT_NUM("weight-decay", "WD", o.weight_decay, 0, 1e6, "weight decay at the start",
                    .zero = 1),
        LVD_OPT_NUM("weight-decay-end", "WD", o.weight_decay_end, 0, 1e6, "... at the end",
                    .zero = 1),
        LVD_OPT_NUM("momentum", "M", o.momentum, 0, 1, "teacher EMA momentum at the start",
                    .zero = 1),
        LVD_OPT_NUM("momentum-end", "M", o.momentum_end, 0, 1, "... at the end", .zero = 1),
        LVD_OPT_NUM("teacher-temp", "T", o.teacher_temp, 1e-6, 100, "teacher temperature"),
        LVD_OPT_NUM("warmup-teacher-temp", "T", o.warmup_teacher_temp, 1e-6, 100,
                    "... at the start of its warm-up"),
        LVD_OPT_INT("teacher-temp-warmup-epochs", "E", o.teacher_temp_warmup_epochs, 0, INT64_MAX,
                    "teacher temperature warm-up"),
        LVD_OPT_INT("freeze-last-layer-epochs", "E", o.freeze_last_layer_epochs, 0, INT64_MAX,
                    "epochs the heads' last layer is frozen"),
        LVD_OPT_NUM("student-temp", "T", o.student_temp, 1e-6, 100, "student temperature"),
        LVD_OPT_NUM("center-momentum", "M", o.center_momentum, 0, 1, "DINO / iBOT center EMA",
                    .zero = 1),
        LVD_OPT_STR("centering", "MODE", o.centering, "softmax or sinkhorn (Sinkhorn-Knopp)"),
        LVD_OPT_NUM("dino-weight", "W", o.dino_weight, 1e-9, 1e6, "DINO loss weight"),
        LVD_OPT_NUM("ibot-weight", "W", o.ibot_weight, 0, 1e6, "iBOT loss weight; 0: off",
                    .zero = 1),
        LVD_OPT_NUM("koleo-weight", "W", o.koleo_weight, 0, 1e6, "KoLeo weight; 0: off", .zero = 1),
        LVD_OPT_NUM("clip-grad", "N", o.clip_grad, 0, 1e30, "gradient clip norm; 0: none",
                    .zero = 1),
        LVD_OPT_NUM("layerwise-decay", "X", o.layerwise_decay, 0, 1, "layer-wise lr decay",
                    .zero = 1),
        LVD_OPT_NUM("patch-embed-lr-mult", "X", o.patch_embed_lr_mult, 0, 1e6,
                    "lr multiplier of the patch embedding", .zero = 1),
        LVD_OPT_INT("steps", "N", o.steps, 1, (int64_t)1 << 40, "training iterations"),
        LVD_OPT_INT("stop-at", "K", o.stop_at, 1, (int64_t)1 << 40,
                    "stop after step K; the schedules still span --steps", .def = "--steps"),
        LVD_OPT_NUM("minutes", "M", o.minutes, 0, 1e9,
                    "wall-clock budget; the run stops after the step that\n"
                    "exceeds it (0: none)",
                    .zero = 1),
        LVD_OPT_INT("seed", "S", o.seed, 0, INT64_MAX, "seed of the init, crops and masks"),
        LVD_OPT_INT("threads", "N", o.threads, 0, 1024, "compute threads (0: one per CPU)",
                    .zero = 1),
        LVD_OPT_INT("workers", "N", o.workers, 1, 256, "loader threads"),
        LVD_OPT_STR("out", "DIR", o.out, "output folder (required; created)"),
        LVD_OPT_INT("ckpt-every", "N", o.ckpt_every, 1, INT64_MAX, "steps between checkpoints"),
        LVD_OPT_INT("log-every", "N", o.log_every, 1, INT64_MAX,
                    "steps between metric writes and progress lines"),
        LVD_OPT_FLAG("resume", o.resume, 1, "resume from DIR's checkpoint (required to exist)"),
        LVD_OPT_FLAG("export-every", o.export_every, 1, "export the teacher at every checkpoint"),
        LVD_OPT_STR("register", "NAME", o.register_name,
                    "register the final teacher backbone as model NAME"),
        LVD_OPT_FLAG("no-progress", o.no_progress, 1, "no progress lines on stderr"),
        LVD_OPT_END,
    };
    const lvd_kit_cmd cmd = {.name = "lvd-train",
                             .usage = "--db DB (--curated MODEL | --source NAME...) --out DIR "
                                      "[options]\n[--config FILE.ini] [options]",
                             .about = about,
                             .opts = opts,
                             .footer = footer,
                             .check = lvd_train_check,
                             .db = &o.db,
                             .mode = LVD_MANIFEST_WRITE,
                             .run = lvd_train_run,
                             .ctx = &o};
    return lvd_train_main(&cmd, argc, argv);
}
