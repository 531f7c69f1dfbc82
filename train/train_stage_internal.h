/* Shared pieces of the pretraining stage (train/train_stage.h): the resolved plan, the state
 * files of the output folder and the metrics log. Not for use outside train/train_stage*.c. */
#ifndef LVD_TRAIN_TRAIN_STAGE_INTERNAL_H
#define LVD_TRAIN_TRAIN_STAGE_INTERNAL_H

#include <limits.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "store/manifest.h"
#include "train/head.h"
#include "train/loader.h"
#include "train/schedule.h"
#include "train/ssl.h"
#include "train/train_stage.h"

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

/* 0 when a and b are equal; else -1 with err naming the first differing key and both values. */
int train_plan_compare(const cJSON *ckpt, const cJSON *now, lvd_error *err);

/* Saves the trainer's state at step with plan and train_id into f->ckpt (atomically), after
 * checking that every parameter is finite. */
int train_ckpt_save(const train_files *f, lvd_ssl *t, const cJSON *plan, int64_t train_id,
                    uint64_t seed, lvd_error *err);

/* Loads f->ckpt into the trainer (made for the same plan) and sets its step. */
int train_ckpt_load(const train_files *f, lvd_ssl *t, int64_t *step, lvd_error *err);

/* Writes the teacher backbone and the teacher heads files. */
int train_export(const train_files *f, lvd_ssl *t, const cJSON *plan, lvd_error *err);

/* The metrics of one step, as train_steps stores them. */
typedef struct train_row {
    int64_t step; /* 1-based */
    lvd_ssl_stats st;
    lvd_schedule_values sv;
    double seconds, images_per_s;
} train_row;

/* Rows waiting for their transaction. */
typedef struct train_log {
    lvd_manifest *m;
    int64_t train_id, run_id;
    int n_parts;
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

/* "1h02m", "3m20s", "12s" into buf. */
void train_format_seconds(double s, char *buf, size_t size);

#endif
