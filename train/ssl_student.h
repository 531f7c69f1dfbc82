/* The student side of the SSL iteration (train/ssl.h), for trainers whose teacher targets come
 * from elsewhere: distillation (train/distill.h) computes the targets with a frozen teacher of
 * its own and hands the student half of lvd_ssl's iteration (student forward, DINO + iBOT +
 * KoLeo losses, backward) and its update (per-part clipping, AdamW, EMA) the rest. lvd_ssl_step
 * itself is lvd_ssl_forward_backward's teacher step followed by exactly these two functions, so
 * both trainers run one implementation of the losses and of the update.
 *
 * In such a trainer the lvd_ssl "teacher" models are only the EMA of the student (its output
 * model): the trainer's own teacher forward is never called, and its centers (lvd_ssl_dino_center,
 * lvd_ssl_ibot_center) are free for the caller's centering of its targets. */
#ifndef LVD_TRAIN_SSL_STUDENT_H
#define LVD_TRAIN_SSL_STUDENT_H

#include "train/ssl.h"

/* The trainer's target buffers, written by the caller before lvd_ssl_student_pass. B, N, K and
 * Ki as in train/ssl.h (N: patches of a student global crop). */
typedef struct lvd_ssl_room {
    float *dino;    /* (2B, K) DINO targets, swapped: crop 2's rows first */
    float *ibot;    /* (max_masked, Ki) iBOT targets in mask-row order; NULL when iBOT is off */
    int *mask_idx;  /* (max_masked) flat patch indices image * N + patch, ascending */
    float *mask_w;  /* (max_masked) each row's weight (1 / patches counted for its image) */
    float *logits;  /* 2B K + max_masked Ki floats the trainer's own teacher step would use for
                       raw head outputs: scratch for the caller's raw teacher outputs */
    int max_masked; /* rows the trainer holds (every patch of the 2B crops when max_masked 0) */
    int N, K, Ki;
} lvd_ssl_room;

/* The buffers of t (valid while t lives). */
void lvd_ssl_get_room(lvd_ssl *t, lvd_ssl_room *r);

/* Steps 2-4 of the iteration on the targets and the first n_masked mask rows the caller wrote
 * into the room: the student on b's global crops (b->masks, unless NULL, as its iBOT mask
 * tokens; the patch rows used by the iBOT loss are the room's, masked or not) and local crops,
 * the losses of train/ssl.h, and with grad nonzero the gradients, so that lvd_ssl_update may
 * follow. grad 0 computes the losses only (the update then refuses until a pass with
 * gradients). b->mask_indices is ignored. Fills the losses, n_masked and the student and
 * backward times of *st (may be NULL). Fails on a bad batch, n_masked outside [0, max_masked],
 * mask rows not ascending within 2B N, or a non-finite loss. */
int lvd_ssl_student_pass(lvd_ssl *t, const lvd_ssl_batch *b, int n_masked, int grad,
                         lvd_ssl_stats *st, lvd_error *err);

/* The centers' state a failed iteration returns them to: lvd_ssl_forward_backward saves it
 * before its teacher step and restores it when the iteration fails (there or in
 * lvd_ssl_update). A trainer writing its own targets saves before it changes the centers
 * (lvd_center_softmax applies, lvd_center_update records) and restores when its step fails;
 * lvd_ssl_student_pass itself never restores, lvd_ssl_update does on a non-finite norm. */
void lvd_ssl_save_centers(lvd_ssl *t);
void lvd_ssl_restore_centers(lvd_ssl *t);

/* Step 5 over n (<= LVD_SSL_MAX_PARTS) parts of any trainer: every part's gradient norm before
 * clipping (into grad_norm[i] unless NULL), clip_grad_norm_ to clip_grad (<= 0: none), AdamW
 * with s's lr, wd and last-layer lr times the parts' groups, then the EMA of every part (teacher
 * = the shadow) with s->momentum on `threads` threads. Fails without changing a parameter when a
 * norm is not finite (the error names the part). */
int lvd_ssl_parts_update(lvd_ssl_part *parts, int n, const lvd_schedule_values *s, double clip_grad,
                         int threads, double *grad_norm, lvd_error *err);

#endif
