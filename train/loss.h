/* The self-supervised losses of DINOv2 (dinov2/loss/): teacher targets (softmax centering with a
 * lazily updated EMA center, Sinkhorn-Knopp), the DINO cross-entropy, the iBOT masked-patch loss
 * and the KoLeo regularizer, each with its gradient.
 *
 * Rows are samples, columns the K prototypes; all buffers are row-major float32. Losses are
 * returned as double (each row's term is summed in double, the rows in order), so the same input
 * gives the same bits whatever the OpenMP thread count. Element-wise work runs on the default
 * OpenMP team (omp_get_max_threads()).
 *
 * Gradients: the cross-entropy losses WRITE d loss / d student logits into ds (overwriting it; ds
 * may be the student logits themselves, to reuse that memory), since in the DINOv2 step every
 * student row appears in exactly one loss call. KoLeo ADDS its gradient into dx (its input, the
 * backbone's cls tokens, also receives the head's gradient). Teacher targets carry no gradient.
 *
 * Multi-process training: the reference all-reduces a few sums across ranks (Sinkhorn's sums,
 * the center's batch mean). Those places call an lvd_allreduce hook when one is given; NULL means
 * one process (world size 1). */
#ifndef LVD_TRAIN_LOSS_H
#define LVD_TRAIN_LOSS_H

#include <stddef.h>
#include <stdint.h>

#include "store/error.h"

#define LVD_REDUCE_SUM 0
#define LVD_REDUCE_MAX 1

/* buf (n doubles) becomes, on every rank, the element-wise sum (op LVD_REDUCE_SUM) or maximum
 * (LVD_REDUCE_MAX) of the buffers of all ranks; returns 0, or -1 with err filled. */
typedef struct lvd_allreduce {
    int (*reduce)(void *ctx, double *buf, size_t n, int op, lvd_error *err);
    void *ctx;
} lvd_allreduce;

/* ---- Teacher targets by softmax centering (DINOLoss / iBOTPatchLoss centering) ----
 *
 * The reference computes the center update from the current teacher output right after using
 * the center (update_center) and applies it only before the next use (apply_center_update):
 *   targets = softmax((t - center) / temp)            [lvd_center_softmax: applies a pending
 *                                                      update first]
 *   pending = mean of the rows of t                   [lvd_center_update]
 *   center = center * momentum + pending * (1 - momentum)   [lvd_center_apply]
 * DINO and iBOT keep separate centers. With a hook, the pending mean is the mean over ranks of
 * each rank's row mean (the reference's sum / (rows * world size) for equal row counts, and its
 * mean of per-rank means for the iBOT patches). */
typedef struct lvd_center {
    int K;
    float momentum;  /* 0.9 in DINOv2 */
    float *center;   /* (K) the current center, owned; set it to restore a checkpoint */
    double *pending; /* (K + 1) the batch mean waiting to be applied, private */
    int has_pending; /* nonzero while an update waits */
} lvd_center;

/* A center of K prototypes, all zero (the reference's initial buffer), no pending update. */
int lvd_center_init(lvd_center *c, int K, float momentum, lvd_error *err);

/* Releases the center (zeroed or freed is fine). */
void lvd_center_free(lvd_center *c);

/* Applies a pending update to center, if any (apply_center_update). */
void lvd_center_apply(lvd_center *c);

/* Applies a pending update, then out (n, K) = row softmax((t (n, K) - center) / temp)
 * (softmax_center_teacher). n >= 1, temp > 0; out may be t. */
int lvd_center_softmax(lvd_center *c, const float *t, int n, float temp, float *out,
                       lvd_error *err);

/* Records the row mean of t (n, K), n >= 1, as the pending update (reduce_center_update),
 * replacing one not yet applied. ar: the all-reduce hook, NULL for one process. With a hook n may
 * be 0 (a rank whose share of the batch has no masked patch): the rank applies a pending update
 * (as its peers' lvd_center_softmax did) and contributes nothing; the update is the mean of the
 * other ranks' means, none when no rank has rows (the reference's mean over no rows is NaN). */
int lvd_center_update(lvd_center *c, const float *t, int n, const lvd_allreduce *ar,
                      lvd_error *err);

/* ---- Teacher targets by Sinkhorn-Knopp (sinkhorn_knopp_teacher) ----
 *
 * Q = exp(t / temp) as a K x B matrix (B = total rows over ranks), Q /= sum(Q), then n_iter times:
 * each prototype's row divided by its sum and by K, each sample's column divided by its sum and
 * by B; finally Q *= B, so that out (n, K) holds one assignment per row (rows sum to 1). Computed
 * in the log domain (log Q = t / temp + a prototype and a sample offset, each normalization a
 * log-sum-exp): the same values, without the reference's float32 overflow where t / temp > 88
 * (which makes its result NaN). DINOv2 uses n_iter 3; n_iter >= 1 (the first normalization
 * makes the sum(Q) step a no-op). out may be t. ar: the all-reduce hook (the row count, and per
 * iteration the per-prototype maxima and sums go through it), NULL for one process. With a hook
 * n may be 0 (the rank takes part in the sums), and a non-finite output on any rank fails every
 * rank at the first sum. */
int lvd_sinkhorn_targets(const float *t, int n, int K, float temp, int n_iter,
                         const lvd_allreduce *ar, float *out, lvd_error *err);

/* ---- DINO cross-entropy (DINOLoss.forward, one student crop) ----
 *
 * loss = -scale * sum_j mean_b sum_k t[j][b, k] * log_softmax(s[b, :] / temp)_k
 * for one student crop s (n, K) against n_t >= 1 teacher target crops t[j] (n, K each).
 * DINOLoss.forward's total is the sum of these over the student crops. With D = 2 +
 * max(2 * n_local, 1) loss terms, the DINOv2 step calls it once per local crop with both teacher
 * crops (scale 1 / D) and once on all 2B global rows against the swapped teacher rows (scale
 * 2 / D). Student temperature 0.1. *loss receives the loss; ds (n, K), unless NULL, receives
 * d loss / d s (written; ds may be s but must not overlap the targets). */
int lvd_dino_loss(const float *s, const float *const *t, int n_t, int n, int K, float temp,
                  double scale, double *loss, float *ds, lvd_error *err);

/* ---- iBOT masked-patch loss (iBOTPatchLoss.forward_masked) ----
 *
 * loss = -scale / n_images * sum_i weight[i] * sum_k t[i, k] * log_softmax(s[i, :] / temp)_k
 * over the n >= 0 masked patch rows s, t (n, K), weight[i] = 1 / (masked patches of row i's image)
 * (lvd_ibot_masked_rows). n_images >= 1 is the number of mask rows (images of the global crops,
 * masked or not). ds as for lvd_dino_loss. The DINOv2 step uses scale 2 * 0.5 = 1. */
int lvd_ibot_loss(const float *s, const float *t, const float *weight, int n, int K, float temp,
                  int n_images, double scale, double *loss, float *ds, lvd_error *err);

/* From masks (n_images, n_patches; nonzero = masked, the collated_masks), the flat indices
 * image * n_patches + patch of the masked patches in row-major order (mask_indices_list) into idx
 * and their weights 1 / max(1, masked patches of that image) (masks_weight) into weight (both
 * sized for n_images * n_patches; weight may be NULL); *n_masked receives their count. */
int lvd_ibot_masked_rows(const uint8_t *masks, int n_images, int n_patches, int *idx, float *weight,
                         int *n_masked, lvd_error *err);

/* ---- KoLeo regularizer (KoLeoLoss.forward) ----
 *
 * y_i = x_i / max(||x_i||, 1e-8); nn(i) = argmax_{j != i} y_i . y_j (the first on ties; the
 * diagonal counts as -1, so n == 1 pairs a row with itself);
 * loss = -scale * mean_i log(||y_i - y_nn(i) + 1e-8|| + 1e-8)  (torch's PairwiseDistance adds its
 * eps to the difference). x (n, d), n >= 1. *loss receives the loss; dx (n, d), unless NULL, gets
 * d loss / d x ADDED (the neighbour choice is piecewise constant and carries no gradient). The
 * DINOv2 step calls it on each global crop's B student cls tokens with scale 0.1. */
int lvd_koleo_loss(const float *x, int n, int d, double scale, double *loss, float *dx,
                   lvd_error *err);

#endif
