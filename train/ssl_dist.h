/* Data-parallel training over a process group (dist/dist.h): the pieces lvd-train and lvd-distill
 * run on every rank so that N ranks, each holding its share of the global batch, train as the
 * reference's DDP / FSDP does (dinov2/train/train.py with dinov2/loss/).
 *
 * Semantics (the reference's, and where they coincide with one process on the global batch):
 *  - Each rank runs the trainer (train/ssl.h, train/distill.h) configured for its local batch
 *    b = B / N (B the global batch, N ranks): every loss is normalized by the local batch (DINO's
 *    mean over the 2b rows, iBOT's division by the 2b images, the feature losses' means), and the
 *    gradients are averaged over the ranks (lvd_ssl_dist_reduce: sum, then times 1 / N). With
 *    equal shares that is the global-batch gradient up to the order of float additions.
 *  - Teacher targets go through the trainer's lvd_allreduce hook (lvd_ssl_dist_hook): the DINO
 *    center's batch mean is the mean of per-rank means (equal to the global mean with equal
 *    shares), Sinkhorn-Knopp's row count and per-prototype sums are global (the same targets as
 *    one process). The iBOT center is the mean of per-rank means over the masked patches
 *    (iBOTPatchLoss.reduce_center_update divides the all-reduced sum of per-rank means by the
 *    world size), which differs from one process's mean when the ranks hold different numbers
 *    of masked patches; a rank without masked patches takes part without contributing.
 *  - KoLeo is per rank (each rank's nearest neighbours among its own b cls tokens), and the
 *    stochastic-depth subsets are drawn per rank from its own local crops (the reference's
 *    drop_add_residual_stochastic_depth on each rank's tensors): both differ from one process on
 *    the global batch; equal to it when the KoLeo weight and the drop-path rate are 0.
 *  - Clipping, AdamW and the EMA run after the reduction on identical gradients, so every rank
 *    holds the same parameters (lvd_ssl_dist_same checks it).
 * In a group of one every call below is a no-op (the trainer runs exactly as without it). */
#ifndef LVD_TRAIN_SSL_DIST_H
#define LVD_TRAIN_SSL_DIST_H

#include <stdint.h>

#include "dist/dist.h"
#include "train/checkpoint.h"
#include "train/loss.h"
#include "train/ssl.h"

/* The all-reduce hook of train/loss.h over group d (borrowed: it must outlive the hook): sums
 * and maxima of doubles across the ranks. A group of one gives a hook that returns at once. */
void lvd_ssl_dist_hook(const lvd_dist *d, lvd_allreduce *ar);

/* The values a step reports, averaged over the ranks (the reference's logged loss_dict is the
 * all-reduced mean); n_masked is summed. */
#define LVD_SSL_DIST_EXTRA 2
typedef struct lvd_ssl_dist_report {
    lvd_ssl_stats *st;                /* losses and n_masked */
    double extra[LVD_SSL_DIST_EXTRA]; /* further losses (feature distillation: cls, patch) */
} lvd_ssl_dist_report;

/* After every rank's forward_backward: one sum of the ranks' status and losses (failed: this
 * rank's forward_backward failed, err then holding why), then each part's gradient summed over
 * the ranks (one lvd_dist_sum_f32 per part) and scaled by 1 / N. Returns -1 on every rank when
 * any rank failed (err: this rank's error, or which ranks failed elsewhere), before the gradient
 * sums; else 0 with rep's values averaged. A collective: every rank calls it once per step. */
int lvd_ssl_dist_reduce(const lvd_dist *d, lvd_ssl_part *parts, int n_parts, int failed,
                        lvd_ssl_dist_report *rep, lvd_error *err);

/* Copies rank 0's groups (every tensor: a whole training state of lvd_ssl_ckpt_groups or
 * lvd_distill_ckpt_groups) and *step to every rank: after rank 0 alone read a checkpoint. */
int lvd_ssl_dist_bcast(const lvd_dist *d, const lvd_ckpt_group *g, int n_groups, int64_t *step,
                       lvd_error *err);

/* Fails on every rank (naming the first differing rank) unless every rank's groups hold
 * bitwise rank 0's values: a hash of the bits, broadcast and compared. */
int lvd_ssl_dist_same(const lvd_dist *d, const lvd_ckpt_group *g, int n_groups, lvd_error *err);

#endif
