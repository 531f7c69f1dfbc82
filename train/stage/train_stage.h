/* The pretraining stage (lvd-train): DINOv2 self-supervised training (train/ssl.h) of a ViT on
 * images of the manifest (train/loader.h), with checkpoints, resumption, metrics in the manifest
 * and the teacher exported as a model lvd-model, lvd-embed and lvd-vit load.
 *
 * Inputs: the curated set of a registered model (--curated MODEL [--method M] [--dataset D]: the
 * distinct images of its v_curated rows) or the 'ok' images of one or more sources (--source
 * NAME, repeatable). Options may come from an INI file (--config FILE) in lvd-run's format
 * (curate/pipeline.h): a [train] section whose `key = value` lines are `--key value` (a bare key a
 * flag, ${VAR} from the environment), and [pipeline] db = DB; other sections are ignored, so a
 * pipeline file serves as it is. Options on the command line override the file's (a --source
 * given there replaces the file's list).
 *
 * Architecture: a preset (--arch tiny: dim 192, depth 6, 3 heads, patch 4, for 28-px images such
 * as Fashion-MNIST, the configuration of issue 9's benchmark; vits14, vitb14, vitl14, vitg14 as
 * the DINOv2 models, vitg14 with fused SwiGLU) or explicit --dim --depth --heads --patch
 * (overriding the preset's), or the backbone of any checkpoint lvd_vit_load reads (--init FILE:
 * its weights and architecture). The positional grid is global size / patch. Presets also set
 * head sizes, crop sizes and the batch: tiny 4096 prototypes, hidden 512, bottleneck 128, crops
 * 28 x 2 and 12 x 6, batch 128; ViT-S/B/L 65536 / 2048 / 256, crops 224 x 2 and 98 x 8, batch 64;
 * ViT-g 131072 / 2048 / 384. Everything else defaults to dinov2/configs/ssl_default_config.yaml,
 * except with --arch fmnist, the short-budget recipe for 28-px images (pipelines/README.md):
 * dim 192, depth 4, 3 heads, patch 28 (one patch token: fewer tokens learned faster at this
 * budget), 1024 prototypes, hidden 512, bottleneck 128, crops 28 x 2 and 28 x 4, batch 128, and as
 * defaults of the options left unset LayerScale init 0.1, Sinkhorn-Knopp centering, teacher
 * momentum 0.99, epochs of 100 steps with 1 epoch of lr warm-up and 3 of teacher temperature
 * warm-up, and 1000 steps (about 7 minutes of a 2-core machine; k-NN top-1 85.55 / 85.94 / 86.04
 * / 86.20 / 86.19 % after 200 ... 1000 steps on Fashion-MNIST).
 *
 * Length: --steps N iterations; the schedules (lr warm-up and cosine, weight decay, teacher
 * momentum, teacher temperature, last-layer freeze, in "epochs" of --epoch-length iterations)
 * always span the N steps, also when a wall-clock budget (--minutes M) ends the run earlier: the
 * run then saves its checkpoint and exports the teacher, and rerunning the same command continues
 * where it stopped, so the result is the same as one uninterrupted run. --stop-at K stops the same
 * way after step K (a deterministic partial run).
 *
 * Output folder (--out DIR, locked while a run writes into it):
 *   checkpoint.safetensors       the whole training state (lvd_ssl_ckpt_groups: student, teacher,
 *                                heads, AdamW moments, centers; step; the seed as RNG state, the
 *                                loader being a pure function of seed and step; the options),
 *                                written atomically every --ckpt-every steps and at the end
 *   teacher_backbone.safetensors the EMA teacher's backbone, official key names (lvd_vit_load)
 *   teacher_heads.safetensors    the teacher's DINO head ("dino_head.*") and separate iBOT head
 *                                ("ibot_head.*"), for distillation (lvd_head_load_tensors)
 * A rerun finding checkpoint.safetensors resumes from it when the options that shape the
 * training are the same (everything but --minutes, --stop-at, --ckpt-every, --log-every, --threads,
 * --workers, --register, --export-every, --no-progress and --resume) and the selected images are
 * the same; otherwise it refuses, naming the first difference. --resume requires a checkpoint.
 * Resuming gives bitwise the parameters of an uninterrupted run for the same --threads (another
 * thread count gives a valid continuation, not bitwise the same one).
 *
 * Manifest: one run of stage "train" per invocation (v_runs; status ok, failed or interrupted;
 * params hold the options, out and the step resumed from; counts the steps done). Per step a row
 * of train_steps (view v_train_steps, store/MANIFEST.md) keyed by the training (train_id: the run
 * that started it, kept across resumptions) and the step (1-based); rows are written in one
 * transaction every --log-every steps and before every checkpoint, and on resumption the rows past
 * the checkpoint's step are replaced. --register NAME records the final teacher backbone as a model
 * (embed/model_registry.h, features cls); it is done once the run reaches --steps.
 *
 * k-NN during training: --eval-train BANK --eval-test TEST scores the output model (the EMA
 * teacher) with train/eval/eval.h's k-NN protocol (lvd_knn_probe: cls or, with --eval-pool
 * cls+mean, cls and mean patch token, L2-normalized, k = --eval-k neighbours weighted by exp(cosine
 * / 0.07)) every --eval-every steps and at the end of every run that trained (not after a signal or
 * an error), on the labelled 'ok' images of both sources (or --eval-limit /
 * --eval-test-limit of them: a sample spread over each, lvd_eval_split by image id with seed 0),
 * read from the shards at the global crop size (resize = crop = --global-size). One row of
 * train_evals (view v_train_evals) per evaluation: the step, `seconds` (the training's wall time up
 * to that step, the sum of its steps' seconds, without the time spent evaluating, also across
 * resumptions), top-1 / top-5 in percent; rows past the checkpoint are replaced on resumption as
 * those of train_steps. The evaluation changes nothing in the training (bitwise), its time does not
 * count against
 * --minutes, and its options are no part of what a resumption must share.
 *
 * Failures: a non-finite loss or gradient stops the run with an error naming the step; the last
 * checkpoint (never written from non-finite parameters) is kept. SIGINT or SIGTERM ends the run
 * after the current step with a checkpoint, the run marked interrupted (exit status 130).
 *
 * Several processes (train/ssl_dist.h, dist/dist.h): started by an MPI launcher (`mpirun -np N
 * lvd-train ...`, srun), the stage runs data-parallel. --batch is the global batch B (a multiple
 * of N, checked): rank r trains on images [r B / N, (r + 1) B / N) of every batch (the loader's
 * share: the crops and masks one process would use), the plan and lr scaling are those of B, the
 * losses and gradients are averaged over the ranks, KoLeo and stochastic depth are per rank and
 * the iBOT center is the mean of per-rank means (the reference's DDP semantics). Rank 0 (the
 * lead) alone locks --out, reads and writes the checkpoint (its state is broadcast to the
 * others; a rerun under mpirun resumes from it), exports and writes the manifest (the run with
 * params.ranks, the train_steps rows with the ranks' mean losses, --register); the other ranks
 * never open it for writing (their loaders read it). Stops (--minutes, signals) and failures
 * are agreed on by all ranks each step, so they stop at the same step; every checkpoint first
 * checks that the ranks hold bitwise the same state.
 *
 * Distillation (lvd-distill, train/distill.h): the same stage with --teacher PATH (a folder of
 * lvd-train or lvd-distill, a training checkpoint or any backbone lvd_vit_load reads; heads from
 * --teacher-heads or the folder) trains a new student of the architecture options (no --init,
 * no head options: its heads take the teacher's shape and prototype counts) with
 * train/distill.h's losses (--distill-mode auto: heads when the teacher has them, else
 * features), no stochastic depth, no iBOT masks (the iBOT loss covers every patch; --ibot-masks:
 * the mask options' masked patches, seen as mask tokens, as in pretraining). Everything
 * else is as above: the schedules (the EMA of the student with the momentum schedule is the
 * output model), the output folder (teacher_backbone.safetensors is then that output model,
 * teacher_heads.safetensors its EMA heads, absent in feature mode, so that a distilled model can
 * be a teacher again), checkpoints of train/distill.h's groups and resumption (the plan records
 * the teacher's path, mode and weights), runs of stage "distill", rows of train_steps (feature
 * mode: loss_total and grad_norm_backbone, the head columns NULL) and --register. */
#ifndef LVD_TRAIN_TRAIN_STAGE_H
#define LVD_TRAIN_TRAIN_STAGE_H

#include <stdint.h>

#include "kit/kit.h"
#include "store/error.h"
#include "store/manifest.h"

#define LVD_TRAIN_MAX_SOURCES 64

/* --source values: the file's list is replaced by the first one on the command line. */
typedef struct lvd_train_sources {
    const char *name[LVD_TRAIN_MAX_SOURCES];
    int n;
    int replace; /* the next --source starts a new list */
} lvd_train_sources;

/* The options of lvd-train. Zero (or -1 where noted) means "from the preset" for the sizes. */
typedef struct lvd_train_options {
    /* data */
    const char *db, *config;
    const char *curated, *method, *dataset; /* the curated set of a model */
    lvd_train_sources sources;
    /* architecture */
    const char *arch; /* preset name; NULL: tiny, or the --init file's */
    int dim, depth, heads, patch, registers;
    const char *ffn; /* "mlp" or "swiglu"; NULL: the preset's */
    float layerscale;
    double drop_path;
    const char *init;
    /* heads */
    int prototypes, head_hidden, head_bottleneck, head_layers;
    int ibot_separate, ibot_prototypes; /* ibot_prototypes 0: as the DINO head */
    /* crops and masks */
    int global_size, local_size, local_crops; /* local_crops -1: the preset's */
    double global_scale[2], local_scale[2];
    const char *blur;            /* "released", "paper" or "none" */
    double blur_sigma[2];        /* Gaussian blur sigma range */
    double jitter_p, solarize_p; /* ColorJitter and solarization probabilities */
    double mask_ratio[2], mask_probability;
    /* optimization */
    int batch;
    double lr;              /* base lr */
    const char *lr_scaling; /* "sqrt" (sqrt_wrt_1024) or "none" */
    double min_lr;
    int64_t epoch_length, warmup_epochs;
    double weight_decay, weight_decay_end, momentum, momentum_end;
    double teacher_temp, warmup_teacher_temp;
    int64_t teacher_temp_warmup_epochs, freeze_last_layer_epochs;
    double student_temp, center_momentum;
    const char *centering; /* "softmax" or "sinkhorn" */
    double dino_weight, ibot_weight, koleo_weight;
    double clip_grad, layerwise_decay, patch_embed_lr_mult;
    /* distillation (lvd-distill sets distill; 0: pretraining) */
    int distill;
    const char *teacher, *teacher_heads; /* lvd_distill_teacher_load's path and heads_path */
    const char *distill_mode;            /* "auto", "heads" or "features" */
    double cls_weight, patch_weight;     /* feature distillation loss weights */
    int ibot_masks; /* head distillation: iBOT on the loader's masked patches (student sees mask
                       tokens, DINOv3's form) instead of every patch unmasked */
    /* run */
    int64_t steps;
    int64_t stop_at; /* stop after this step (0: --steps); the schedules span --steps */
    double minutes;  /* 0: no budget */
    uint64_t seed;
    int threads, workers;
    const char *out;
    int64_t ckpt_every, log_every;
    int resume, export_every, no_progress;
    const char *register_name;
    /* k-NN of the EMA teacher during training (pretraining only; not part of the plan) */
    const char *eval_train, *eval_test;  /* bank and test sources; both or neither */
    int64_t eval_every;                  /* steps between evaluations (0: only at the end) */
    int eval_k;                          /* neighbours */
    int64_t eval_limit, eval_test_limit; /* N images of each (a spread sample); 0: all */
    const char *eval_pool;               /* "cls" or "cls+mean" */
} lvd_train_options;

/* The defaults --help shows. */
void lvd_train_options_default(lvd_train_options *o);

/* An LVD_KIT_FN parser appending a --source value to the lvd_train_sources at o->dest. */
int lvd_train_source_opt(const lvd_kit_opt *o, const char *value, lvd_error *err);

/* An LVD_KIT_FN parser of "A,B" (two numbers in [o->lo, o->hi], A <= B) into the double[2] at
 * o->dest. */
int lvd_train_pair_opt(const lvd_kit_opt *o, const char *value, lvd_error *err);

/* The command's check (a failure is bad usage): --db, --out and one input given, names of
 * presets and modes known, sizes consistent. ctx is the lvd_train_options. */
int lvd_train_check(void *ctx, lvd_error *err);

/* The command's run: the stage as described above on the opened manifest m. Returns 0, -1 with
 * err filled, or 130 after a clean stop on a signal (the message already printed). */
int lvd_train_run(lvd_manifest *m, void *ctx, lvd_error *err);

/* The option table of lvd-train (distill 0) or lvd-distill (distill 1: the teacher options, no
 * --init, head or drop-path options) over o, ending with LVD_OPT_END, into opts (room for
 * LVD_TRAIN_MAX_OPTS entries). */
#define LVD_TRAIN_MAX_OPTS 96
void lvd_train_option_table(lvd_train_options *o, int distill, lvd_kit_opt *opts);

/* lvd_kit_main with --config: when argv holds --config FILE (and not --help), the file's [train]
 * options are applied to cmd's table first. Returns the exit status. */
int lvd_train_main(const lvd_kit_cmd *cmd, int argc, char **argv);

/* The main of lvd-train (distill 0) and lvd-distill (distill 1), which differ only in these
 * arguments: the defaults, that command's option table and lvd_train_main, with help and footer
 * for --help. Returns the exit status. */
int lvd_train_command(const char *name, const char *help, const char *footer, int distill, int argc,
                      char **argv);

#endif
