/* Shared pieces of the pretraining stage (train/stage/train_stage.h): the resolved plan, the state
 * files of the output folder and the metrics log. Not for use outside train/train_stage*.c. */
#ifndef LVD_TRAIN_TRAIN_STAGE_INTERNAL_H
#define LVD_TRAIN_TRAIN_STAGE_INTERNAL_H

#include <limits.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "dist/dist.h"
#include "store/manifest.h"
#include "train/distill.h"
#include "train/head.h"
#include "train/loader.h"
#include "train/schedule.h"
#include "train/ssl.h"
#include "train/stage/train_stage.h"

/* Data-parallel runs (train/stage/train_stage_dist.c, train/ssl_dist.h): the process group and the
 * all-reduce hook of its trainer. Rank 0 (the lead) alone writes the manifest, the checkpoint
 * and the export; in a group of one every call below returns at once. */
typedef struct train_dist {
    lvd_dist d;
    lvd_allreduce hook;
} train_dist;

/* What the stage trains: pretraining's lvd_ssl (lvd-train) or distillation's lvd_distill of a
 * frozen teacher (lvd-distill, o->teacher set); the loop, checkpoints, export and metrics go
 * through these calls (train/stage/train_stage_model.c), the same for both. */
typedef struct train_model {
    lvd_ssl *ssl;                /* pretraining */
    lvd_distill *distill;        /* distillation */
    lvd_distill_teacher teacher; /* distillation: its frozen teacher */
    int keep_masks;              /* distillation: the batches' iBOT masks are used */
    const train_dist *dist;      /* the group whose gradients a step averages (NULL: none) */
} train_model;

/* lvd-train's or lvd-distill's name (the first word of its messages) and run stage. */
const char *train_program(const lvd_train_options *o);
const char *train_stage_name(const lvd_train_options *o);

/* The model's step on a loader batch: lvd_ssl_step, or lvd_distill_step on the crops without
 * masks (train/distill.h: iBOT on every patch) unless keep_masks. Fills st as lvd_ssl_step does (in
 * feature distillation: loss_total and the grad norms of the backbone and the projection) and, in
 * feature distillation, *loss_cls and *loss_patch (else 0). */
int train_model_step(train_model *m, const lvd_ssl_batch *b, const lvd_schedule_values *sv,
                     lvd_ssl_stats *st, double *loss_cls, double *loss_patch, lvd_error *err);

/* Checkpoint groups (room for LVD_SSL_CKPT_GROUPS), step, parts, the output model (the EMA
 * teacher of pretraining, the EMA student of distillation), and whether it is a feature
 * distillation (no head losses, parts "backbone" and "proj"). */
int train_model_groups(train_model *m, lvd_ckpt_group *g);
int64_t train_model_get_step(const train_model *m);
void train_model_set_step(train_model *m, int64_t step);
int train_model_n_parts(const train_model *m);
lvd_ssl_part train_model_get_part(train_model *m, int i);
lvd_vit_train *train_model_output(train_model *m);
int train_model_features(const train_model *m);
void train_model_free(train_model *m);

/* The options resolved into the configurations of the modules (presets applied). */
typedef struct train_plan {
    lvd_vit_info arch; /* dim, depth, heads, patch, grid, n_reg, ffn (derived fields unset) */
    float layerscale;
    lvd_head_config dino, ibot; /* ibot used when ibot_separate */
    int ibot_separate;
    lvd_ssl_config ssl;
    lvd_schedule_config sched;
    lvd_loader_config loader; /* selection, crops, masks, batch, seed; db set by the run */
    const char *sources[LVD_TRAIN_MAX_SOURCES];
    double lr_base; /* before scaling */
} train_plan;

/* The training defaults a preset gives the options left at "preset's" (the sentinels of
 * lvd_train_options_default). */
typedef struct train_recipe {
    float layerscale;
    double momentum;
    int64_t epoch_length, warmup_epochs, teacher_temp_warmup_epochs, steps;
    const char *centering;
} train_recipe;

/* Fills the options left at "preset's" from the recipe of o's preset (--arch; without it, and
 * with --init, tiny's: the reference's). */
void train_options_recipe(lvd_train_options *o);

/* Applies the presets to o (and the architecture of arch_from, the --init model, when not NULL)
 * and fills p. Fails on sizes that do not fit together, naming the options. */
int train_plan_resolve(const lvd_train_options *o, const lvd_vit_info *arch_from, train_plan *p,
                       lvd_error *err);

/* The options that shape the training, resolved (a JSON object): what a checkpoint must share
 * with a run resuming from it. */
cJSON *train_plan_json(const lvd_train_options *o, const train_plan *p);

/* The output folder's files. */
typedef struct train_files {
    char dir[PATH_MAX]; /* absolute */
    char ckpt[PATH_MAX + 32], backbone[PATH_MAX + 32], heads[PATH_MAX + 32];
} train_files;

int train_files_init(train_files *f, const char *out, lvd_error *err);

/* What a checkpoint says about itself, read from its metadata without loading the tensors. */
typedef struct train_ckpt_info {
    int64_t step;
    int64_t train_id;
    cJSON *plan; /* its "plan" object (owned) */
} train_ckpt_info;

/* Reads path's checkpoint metadata; *found 0 when the file does not exist. */
int train_ckpt_info_read(const char *path, train_ckpt_info *info, int *found, lvd_error *err);
void train_ckpt_info_free(train_ckpt_info *info);

/* 0 when a and b are equal; else -1 with err naming the first differing key and both values. A
 * key the plan gained later (train_stage_plan.c's implied[]) missing in ckpt is its old value. */
int train_plan_compare(const cJSON *ckpt, const cJSON *now, lvd_error *err);

/* Saves the trainer's state at step with plan and train_id into f->ckpt (atomically), after
 * checking that every parameter is finite. */
int train_ckpt_save(const train_files *f, train_model *t, const cJSON *plan, int64_t train_id,
                    uint64_t seed, lvd_error *err);

/* Loads f->ckpt into the trainer (made for the same plan) and sets its step. */
int train_ckpt_load(const train_files *f, train_model *t, int64_t *step, lvd_error *err);

/* Writes the output model's backbone (teacher_backbone.safetensors) and, when it has heads, the
 * heads file. */
int train_export(const train_files *f, train_model *t, const cJSON *plan, lvd_error *err);

/* The metrics of one step, as train_steps stores them. */
typedef struct train_row {
    int64_t step; /* 1-based */
    lvd_ssl_stats st;
    double loss_cls, loss_patch; /* feature distillation */
    lvd_schedule_values sv;
    double seconds, images_per_s;
} train_row;

/* Rows waiting for their transaction. */
typedef struct train_log {
    lvd_manifest *m;
    int64_t train_id, run_id;
    int n_parts;
    int features; /* feature distillation: no head loss terms, part 1 the projection */
    train_row *rows;
    int64_t n, cap;
} train_log;

int train_log_init(train_log *l, lvd_manifest *m, int64_t train_id, int64_t run_id, int n_parts,
                   int64_t cap, lvd_error *err);
void train_log_free(train_log *l);

/* Deletes the training's rows past step (a resumption replaces them). */
int train_log_truncate(train_log *l, int64_t step, lvd_error *err);

/* Queues a row; writes the queue when it holds cap rows. */
int train_log_add(train_log *l, const train_row *r, lvd_error *err);

/* Writes the queued rows in one transaction. */
int train_log_flush(train_log *l, lvd_error *err);

/* ---- Data-parallel runs (train/stage/train_stage_dist.c) ---- */

/* Joins the launcher's group (a group of one without one). */
int train_dist_init(train_dist *t, lvd_error *err);

/* The plan of one rank (after train_plan_json: the plan a checkpoint records stays the global
 * one): batch B / N (B must split evenly), the loader's share of every batch, the iBOT row budget
 * of the share, the hook in the trainer's configuration, and the stochastic-depth seed of the
 * rank (each rank draws its own subsets, as the reference's ranks do). */
int train_dist_plan(train_dist *t, train_plan *p, lvd_error *err);

/* A collective verdict on rc (this rank's 0 / -1): -1 on every rank when any rank failed (err: this
 * rank's own error, or that another rank failed), else 0. */
int train_dist_agree(const train_dist *t, int rc, lvd_error *err);

/* The lead's values of n bytes at buf on every rank. */
int train_dist_bcast(const train_dist *t, void *buf, size_t n, lvd_error *err);

/* The largest of the ranks' stop reasons (0: none), so that every rank stops at the same step;
 * *failed set when a rank's loader failed (err: which). One all-reduce per step. */
int train_dist_gate(const train_dist *t, int reason, int loader_failed, int *agreed,
                    lvd_error *err);

/* After every rank's forward_backward (rc its result): the verdict, the losses averaged over the
 * ranks and the gradients averaged (train/ssl_dist.h's lvd_ssl_dist_reduce); returns rc when m
 * has no group of several. */
int train_dist_reduce(train_model *m, int rc, lvd_ssl_stats *st, double *loss_cls,
                      double *loss_patch, lvd_error *err);

/* The lead's training state on every rank (after the lead alone read a checkpoint), then a
 * check that every rank holds it bitwise. */
int train_dist_sync(const train_dist *t, train_model *m, lvd_error *err);

/* Whether the ranks hold bitwise the same training state (before a checkpoint). */
int train_dist_same(const train_dist *t, train_model *m, lvd_error *err);

/* "1h02m", "3m20s", "12s" into buf. */
void train_format_seconds(double s, char *buf, size_t size);

#endif
