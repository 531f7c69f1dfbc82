/* Per-iteration schedules of self-supervised training, as dinov2/train/train.py builds them
 * (build_schedulers) from dinov2/utils/utils.py's CosineScheduler.
 *
 * A CosineScheduler of total iterations is the concatenation of `freeze` zeros, a warm-up of
 * `warmup` values numpy.linspace(start_warmup, base, warmup) (both ends included) and a cosine
 * of the remaining N = total - warmup - freeze iterations, final + 0.5 * (base - final) *
 * (1 + cos(pi * i / N)) for i = 0..N-1; from iteration `total` on it is `final`. Values are
 * computed on demand in double, with numpy's operation order; nothing is tabulated.
 *
 * The training schedules (lengths in "epochs" of epoch_length iterations, 1250 in the reference
 * regardless of the data set's size): lr warm-up from 0 then cosine to min_lr; weight decay
 * cosine from weight_decay to weight_decay_end; teacher momentum cosine to its final value;
 * teacher temperature linear from warmup_teacher_temp to teacher_temp over its warm-up epochs
 * then constant; the last-layer lr is the lr schedule with its first freeze_last_layer_epochs
 * epochs set to 0 (the reference overwrites those entries, it does not shift the schedule). */
#ifndef LVD_TRAIN_SCHEDULE_H
#define LVD_TRAIN_SCHEDULE_H

#include <stdint.h>

#include "store/error.h"

typedef struct lvd_cosine {
    double base, final, start_warmup;
    int64_t total, warmup, freeze;
    int64_t zero_until; /* iterations below this (and below total) give 0 */
} lvd_cosine;

/* A CosineScheduler(base, final, total, warmup, start_warmup, freeze). Fails (as the reference's
 * assertion) on negative lengths or warmup + freeze > total. */
int lvd_cosine_init(lvd_cosine *s, double base, double final, int64_t total, int64_t warmup,
                    double start_warmup, int64_t freeze, lvd_error *err);

/* The value at iteration it (>= 0): schedule[it], or final from total on. */
double lvd_cosine_at(const lvd_cosine *s, int64_t it);

/* The reference's "sqrt_wrt_1024" scaling rule: base_lr * sqrt(batch / 1024), batch being the
 * total batch over all processes. */
double lvd_lr_sqrt_scaling(double base_lr, int64_t batch);

/* dinov2/configs/ssl_default_config.yaml's optim and teacher entries. */
typedef struct lvd_schedule_config {
    int64_t epoch_length;          /* OFFICIAL_EPOCH_LENGTH: 1250 */
    int64_t epochs;                /* 100 */
    double lr;                     /* peak lr after scaling: 0.004 (base_lr 0.004, batch 1024) */
    double min_lr;                 /* 1e-6 */
    int64_t warmup_epochs;         /* 10 */
    double weight_decay;           /* 0.04 */
    double weight_decay_end;       /* 0.4 */
    double momentum_teacher;       /* 0.992 */
    double final_momentum_teacher; /* 1 */
    double warmup_teacher_temp;    /* 0.04 */
    double teacher_temp;           /* 0.07 */
    int64_t warmup_teacher_temp_epochs; /* 30 */
    int64_t freeze_last_layer_epochs;   /* 1 */
    int64_t total_iterations; /* training length in iterations when > 0 (a run of --steps that
                                 is not a whole number of epochs); 0: epochs * epoch_length */
} lvd_schedule_config;

/* Fills c with the defaults above. */
void lvd_schedule_config_default(lvd_schedule_config *c);

typedef struct lvd_schedules {
    lvd_cosine lr, wd, momentum, teacher_temp, last_layer_lr;
} lvd_schedules;

typedef struct lvd_schedule_values {
    double lr, wd, momentum, teacher_temp, last_layer_lr;
} lvd_schedule_values;

/* build_schedulers: fails on a non-positive epoch length, negative counts, a warm-up longer
 * than training or lengths that overflow. */
int lvd_schedules_init(lvd_schedules *s, const lvd_schedule_config *c, lvd_error *err);

/* Every schedule's value at iteration it (the loop's lr_schedule[iteration], ...). */
void lvd_schedules_at(const lvd_schedules *s, int64_t it, lvd_schedule_values *out);

#endif
