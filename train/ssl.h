/* One DINOv2 self-supervised training iteration (DINO + iBOT + KoLeo) over a student and an EMA
 * teacher, as dinov2/train/ssl_meta_arch.py (forward_backward, update_teacher) and
 * dinov2/train/train.py (the loop body) compose it.
 *
 * A trainer (lvd_ssl) owns the student and teacher backbones (train/vit_train.h), their DINO
 * heads and optionally separate iBOT heads (train/head.h), the students' gradients, one AdamW per
 * student part with the reference's parameter groups (train/optim.h), the DINO and iBOT centers
 * (train/loss.h) and every buffer one iteration needs for its batch shape, all allocated at
 * creation: a step allocates nothing of its own (the loss functions of train/loss.h keep small
 * per-call scratch of a few rows).
 *
 * One iteration (lvd_ssl_step = lvd_ssl_forward_backward, then lvd_ssl_update):
 *  1. teacher: backbone on the 2B global crops (no mask, no drop path); cls outputs of the two
 *     crops swapped (crop 2's rows first, so each student crop meets the other crop's target);
 *     head on [swapped cls (2B), masked patch tokens (n_masked)] (shared head), or the DINO head
 *     on the cls rows and the iBOT head on the patches (separate head); targets by softmax
 *     centering (the pending center update of the previous iteration applied first, the update of
 *     this iteration's raw head outputs recorded after use: the lazy centers) or by Sinkhorn-Knopp
 *     (3 iterations), at the scheduled teacher temperature.
 *  2. student: backbone on the masked global crops and on the local crops (stochastic depth per
 *     pass), DINO head on [local cls (n_local B), global cls (2B), masked patches] at once (the
 *     patches through the iBOT head when separate).
 *  3. loss, with D = 2 + max(2 n_local, 1) loss terms (n_global_crops_loss_terms 2 +
 *     n_local_crops_loss_terms):
 *       dino_local  = sum over local crops j and teacher crops t of CE(t, s_j) / D
 *       dino_global = 2 * CE(swapped teacher, global student rows) / D
 *       koleo       = koleo_weight * (KoLeo(cls of crop 1) + KoLeo(cls of crop 2)), on the
 *                     student backbone's cls tokens
 *       ibot        = 2 * 0.5 * iBOT(masked patches; weight 1 / masked patches of the image,
 *                     divided by the 2B images)
 *       total       = dino_weight * (dino_local + dino_global) + koleo + ibot_weight * ibot
 *     (CE: mean over rows of -sum_k t log_softmax(s / student_temp)). The reference's loss_dict
 *     displays koleo / 2 and ibot / 2; the values here are the terms of the total.
 *  4. backward into the student heads and backbone (gradients set, not accumulated).
 *  5. (update) per student part: the gradient norm (before clipping), clip_grad_norm_ to
 *     clip_grad, AdamW with lr / wd / last-layer lr of the schedule times the parameter groups'
 *     multipliers; then the EMA teacher update of every part with the scheduled momentum.
 *
 * Batch layout (what the data loader's collate produces): global crops crop-major (2B, 3, Hg, Wg)
 * (rows 0..B-1 are crop 1 of each image), local crops crop-major (n_local B, 3, Hl, Wl), masks
 * (2B, N) bytes (N = (Hg / P) * (Wg / P), nonzero = patch replaced by the mask token). The mask
 * bookkeeping (mask_indices_list, masks_weight) is derived from the masks unless given.
 *
 * Parts: the trainer's parameters are listed as parts "backbone", "dino_head" and (separate iBOT
 * head) "ibot_head", each a layout (the submodule's own state-dict names) with its student,
 * teacher, gradient and AdamW buffers; lvd_ssl_ckpt_groups joins them under prefixes for
 * train/checkpoint.h ("student.backbone.", "teacher.dino_head.", "adamw_m.backbone.", ...).
 *
 * Steps 2-5 are public in train/ssl_student.h for trainers with targets of their own
 * (distillation, train/distill.h).
 *
 * Threads: cfg.threads OpenMP threads for the backbones and heads (the loss functions use the
 * default team, omp_get_max_threads()). Results are bitwise the same for a fixed thread count. A
 * trainer runs one call at a time. */
#ifndef LVD_TRAIN_SSL_H
#define LVD_TRAIN_SSL_H

#include <stdint.h>

#include "store/error.h"
#include "train/checkpoint.h"
#include "train/head.h"
#include "train/loss.h"
#include "train/optim.h"
#include "train/params.h"
#include "train/schedule.h"
#include "train/vit_train.h"

#define LVD_SSL_MAX_PARTS 3

typedef struct lvd_ssl_config {
    int batch;              /* B images per step (per process) */
    int n_local;            /* local crops per image, >= 0 (8 in DINOv2) */
    int global_h, global_w; /* global crop size in pixels, multiples of the patch (224) */
    int local_h, local_w;   /* local crop size (96); ignored when n_local is 0 */
    int max_masked;         /* masked patches a batch may hold at most (the collate's
                               upperbound); 0: every patch of the 2B global crops */
    double student_temp;    /* 0.1 */
    double center_momentum; /* 0.9 */
    int sinkhorn;           /* 0: softmax centering ("centering"), 1: Sinkhorn-Knopp */
    double dino_weight;     /* dino.loss_weight, > 0 (1.0) */
    double ibot_weight;     /* ibot.loss_weight (1.0); 0 turns iBOT off */
    double koleo_weight;    /* dino.koleo_loss_weight (0.1); 0 turns KoLeo off */
    double drop_path;       /* student stochastic-depth rate in [0, 1] (0.1 .. 0.4) */
    uint64_t drop_seed;     /* seeds the stochastic-depth subsets with the step number */
    double clip_grad;       /* optim.clip_grad (3.0); <= 0: no clipping (norms still measured) */
    double layerwise_decay; /* optim.layerwise_decay (0.9) */
    double patch_embed_lr_mult;     /* optim.patch_embed_lr_mult (0.2) */
    double beta1, beta2, eps;       /* AdamW (0.9, 0.999, 1e-8) */
    int threads;                    /* OpenMP threads; <= 0: OpenMP's default */
    const lvd_allreduce *allreduce; /* cross-process sums of the targets and centers; NULL: one
                                       process (gradients are the caller's to reduce between
                                       lvd_ssl_forward_backward and lvd_ssl_update) */
} lvd_ssl_config;

/* The DINOv2 defaults above for batch B, n_local local crops and the crop sizes; max_masked 0,
 * drop_path 0, threads 0. */
void lvd_ssl_config_default(lvd_ssl_config *c, int batch, int n_local, int global_size,
                            int local_size);

/* The models a trainer starts from. Student and teacher backbones share one architecture, as do
 * the student and teacher heads of a kind; the DINO head's in_dim is the backbone's dim. */
typedef struct lvd_ssl_models {
    lvd_vit_train *student, *teacher;
    lvd_head student_dino, teacher_dino;
    int ibot_separate; /* nonzero: student_ibot / teacher_ibot are the iBOT heads */
    lvd_head student_ibot, teacher_ibot;
} lvd_ssl_models;

/* Frees every model of m (NULL or zeroed members are fine) and zeroes m. */
void lvd_ssl_models_free(lvd_ssl_models *m);

typedef struct lvd_ssl lvd_ssl;

/* Makes a trainer from models (always consumed: owned by the trainer on success, freed on
 * failure; *models is zeroed either way) with centers at 0 and AdamW at step 0. Fails on an
 * invalid configuration, mismatched models or no memory (the error names what). */
int lvd_ssl_create(const lvd_ssl_config *cfg, lvd_ssl_models *models, lvd_ssl **out,
                   lvd_error *err);

/* Makes a trainer from scratch: a student backbone of arch (lvd_vit_train_create with
 * layerscale and seed), DINO head dino (and iBOT head ibot unless NULL) with the reference init,
 * and teachers equal to the students (prepare_for_distributed_training copies them). */
int lvd_ssl_create_new(const lvd_ssl_config *cfg, const lvd_vit_info *arch, float layerscale,
                       const lvd_head_config *dino, const lvd_head_config *ibot, uint64_t seed,
                       lvd_ssl **out, lvd_error *err);

/* Releases the trainer and everything it owns. NULL is ok. */
void lvd_ssl_free(lvd_ssl *t);

/* The configuration in use (copied at creation). */
const lvd_ssl_config *lvd_ssl_get_config(const lvd_ssl *t);

/* The models, owned by the trainer (e.g. for lvd_vit_train_save of the teacher backbone). */
lvd_vit_train *lvd_ssl_student(lvd_ssl *t);
lvd_vit_train *lvd_ssl_teacher(lvd_ssl *t);

/* The DINO and iBOT centers (ibot: the center of the iBOT targets, K of the head that makes
 * them); their `center` arrays may be set to restore a state. */
lvd_center *lvd_ssl_dino_center(lvd_ssl *t);
lvd_center *lvd_ssl_ibot_center(lvd_ssl *t);

/* One batch. B, n_local and the crop sizes are the configuration's. */
typedef struct lvd_ssl_batch {
    const float *global_crops; /* (2B, 3, Hg, Wg), crop-major, normalized */
    const float *local_crops;  /* (n_local B, 3, Hl, Wl), crop-major; NULL when n_local is 0 */
    const uint8_t *masks;      /* (2B, N) nonzero = masked; NULL: nothing masked */
    /* Optional bookkeeping of the collate, derived from masks when mask_indices is NULL: */
    const int *mask_indices;   /* (n_masked) flat indices image * N + patch, ascending */
    const float *masks_weight; /* (n_masked) 1 / masked patches of the index's image */
    int n_masked;
} lvd_ssl_batch;

/* What an iteration reports. Times are wall seconds of the phases of the last call. */
typedef struct lvd_ssl_stats {
    double loss_dino_local, loss_dino_global, loss_koleo, loss_ibot, loss_total; /* see above */
    int n_masked;                        /* masked patches of the batch */
    double grad_norm[LVD_SSL_MAX_PARTS]; /* per part, before clipping (lvd_ssl_update) */
    double t_teacher, t_student, t_backward, t_update;
} lvd_ssl_stats;

/* Steps 1-4 of the iteration: teacher targets, student forward, losses, gradients (set in every
 * part's grad buffer, unclipped), centers' pending updates. Fills the losses, n_masked and the
 * times of *st (may be NULL). Fails on a bad batch (indices that are not ascending masked
 * patches, more masked patches than max_masked) or a non-finite loss, leaving the centers as
 * they were; the parameters are never changed here. A batch without masked patches has no iBOT
 * term and leaves the iBOT center alone (the reference's mean over no rows would be NaN). */
int lvd_ssl_forward_backward(lvd_ssl *t, const lvd_ssl_batch *b, double teacher_temp,
                             lvd_ssl_stats *st, lvd_error *err);

/* Step 5: per part gradient norm (st->grad_norm), clipping, AdamW (lr, wd, last_layer_lr of s),
 * then the EMA of every teacher part with s->momentum; the trainer's step count advances. Fails
 * when a gradient norm is not finite, without changing a parameter and with the centers as
 * before the forward_backward: a failed iteration leaves the training state as it was. */
int lvd_ssl_update(lvd_ssl *t, const lvd_schedule_values *s, lvd_ssl_stats *st, lvd_error *err);

/* The whole iteration: lvd_ssl_forward_backward at s->teacher_temp, then lvd_ssl_update. */
int lvd_ssl_step(lvd_ssl *t, const lvd_ssl_batch *b, const lvd_schedule_values *s,
                 lvd_ssl_stats *st, lvd_error *err);

/* The teacher targets of the last forward_backward, valid until the next one: dino (2B, K) in
 * the swapped order (crop 2's rows first), ibot (n_masked, K_ibot) in mask-index order (NULL
 * when iBOT is off). */
void lvd_ssl_targets(const lvd_ssl *t, const float **dino, const float **ibot, int *n_masked);

/* Iterations done (AdamW's step count); the stochastic-depth seed of a step derives from it. */
int64_t lvd_ssl_get_step(const lvd_ssl *t);

/* Sets the iterations done (a restored checkpoint's step) in the trainer and every AdamW. */
void lvd_ssl_set_step(lvd_ssl *t, int64_t step);

/* One trainable part: its layout (names without prefix) and the trainer's buffers in it. */
typedef struct lvd_ssl_part {
    const char *name; /* "backbone", "dino_head", "ibot_head" */
    const lvd_param_layout *layout;
    float *student, *teacher, *grad; /* layout->total floats each */
    lvd_adamw *opt;                  /* moments m, v and the parameter groups */
} lvd_ssl_part;

/* The number of parts (2, or 3 with a separate iBOT head) and part i (0 <= i < that). */
int lvd_ssl_n_parts(const lvd_ssl *t);
lvd_ssl_part lvd_ssl_get_part(lvd_ssl *t, int i);

/* The groups of a checkpoint of the whole training state into groups (room for
 * LVD_SSL_CKPT_GROUPS): for every part "student.<part>.", "teacher.<part>.", "adamw_m.<part>.",
 * "adamw_v.<part>.", then "dino_center." and "ibot_center." (one tensor "center" (1, K) each);
 * returns their count. Applies pending center updates first (the same value the next step
 * would compute), so the buffers hold the whole state; the step count goes in
 * lvd_ckpt_state.step. The groups point into the trainer: valid while it lives. */
#define LVD_SSL_CKPT_GROUPS (4 * LVD_SSL_MAX_PARTS + 2)
int lvd_ssl_ckpt_groups(lvd_ssl *t, lvd_ckpt_group *groups);

#endif
