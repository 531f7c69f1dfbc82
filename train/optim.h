/* Optimization of one parameter layout (train/params.h): the reference's parameter groups
 * (per-tensor lr / wd multipliers and the last-layer flag), AdamW, gradient clipping by norm and
 * the EMA teacher update.
 *
 * One layout is one submodule of the reference (the student's backbone, DINO head or iBOT
 * head): its tensor names are the submodule's own state-dict keys without a prefix
 * ("blocks.0.attn.qkv.weight", "last_layer.weight_g"), exactly the names the reference's
 * get_params_groups_with_decay sees, since SSLMetaArch.get_params_groups calls it once per
 * student submodule. A training run holds one lvd_adamw per submodule; clipping is per
 * submodule too (train.py clips each student submodule separately), the EMA covers all.
 *
 * Numerics follow torch: AdamW's per-element update runs in float32 with scalars computed in
 * double (as Python floats) and rounded to float once, in torch.optim.AdamW's order. Norms
 * accumulate in double over fixed chunks summed in a fixed order, so every result is bitwise the
 * same for any thread count (OpenMP threads over fixed chunks of the buffer). */
#ifndef LVD_TRAIN_OPTIM_H
#define LVD_TRAIN_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "store/error.h"
#include "train/params.h"

/* --- Parameter groups (dinov2/utils/param_groups.py) --- */

typedef struct lvd_param_group {
    double lr_mult;    /* layer-wise decay (x patch-embed multiplier for patch_embed tensors) */
    double wd_mult;    /* 0 for names ending ".bias" or holding "norm" or "gamma", else 1 */
    int is_last_layer; /* the name holds "last_layer": its lr follows the last-layer schedule */
    int layer_id;      /* 0 (tokens, patch embed), I + 1 (block I), depth + 1 (the rest) */
} lvd_param_group;

/* get_vit_lr_decay_rate: lr_decay_rate ** (num_layers + 1 - layer_id), with layer_id as the
 * reference derives it from the name (tokens, pos_embed, patch_embed: 0; "blocks.I." or, when
 * chunked, "blocks.C.I.": I + 1; anything else num_layers + 1). Stores layer_id when non-NULL.
 * Fails (naming the tensor) where the reference's int() would raise: a non-numeric block index. */
int lvd_vit_lr_decay_rate(const char *name, double lr_decay_rate, int num_layers,
                          int force_is_backbone, int chunked_blocks, double *rate, int *layer_id,
                          lvd_error *err);

/* get_params_groups_with_decay over a submodule's layout: out[i] for tensor i. The number of
 * blocks is taken from the names as the model attribute would give it: 1 + the largest block
 * index I of "blocks.I.*" or "blocks.C.I.*" (chunked: two numeric parts), 0 without blocks (a
 * head: every lr multiplier 1). Fails on a malformed block index. */
int lvd_param_groups(const lvd_param_layout *l, double lr_decay_rate, double patch_embed_lr_mult,
                     lvd_param_group *out, lvd_error *err);

/* --- AdamW (torch.optim.AdamW, amsgrad off, not maximizing) --- */

typedef struct lvd_adamw_chunk {
    int tensor;   /* index into the layout */
    size_t start; /* first float of the chunk in the buffer */
    size_t len;
} lvd_adamw_chunk;

typedef struct lvd_adamw {
    const lvd_param_layout *layout; /* borrowed: must outlive the optimizer */
    lvd_param_group *groups;        /* layout->n entries (copied at init) */
    float *m, *v;                   /* first and second moments, layout->total floats each */
    int64_t step;                   /* updates done so far (torch's per-parameter "step") */
    double beta1, beta2, eps;       /* defaults 0.9, 0.999, 1e-8 */
    int threads;                    /* OpenMP threads for the loops; <= 0: OpenMP's default */
    /* internal: fixed chunks of the buffer and their partial sums (no allocation per step) */
    lvd_adamw_chunk *chunks;
    int n_chunks;
    double *partial;
} lvd_adamw;

/* Creates the optimizer of one layout with zero moments and step 0. groups (layout->n entries,
 * from lvd_param_groups) is copied; NULL means every multiplier 1 and no last layer. */
int lvd_adamw_init(lvd_adamw *o, const lvd_param_layout *l, const lvd_param_group *groups,
                   double beta1, double beta2, double eps, lvd_error *err);

/* Releases the buffers and zeroes o (a zeroed lvd_adamw may be freed). */
void lvd_adamw_free(lvd_adamw *o);

/* One AdamW update of params with grads (both layout->total floats), as apply_optim_scheduler
 * and torch.optim.AdamW do it: for tensor i, lr_i = (last layer ? last_layer_lr : lr) *
 * lr_mult, wd_i = wd * wd_mult; step += 1; then per element
 *   p *= 1 - lr_i * wd_i; m = lerp(m, g, 1 - beta1); v = v * beta2 + (1 - beta2) * g * g;
 *   p += -(lr_i / (1 - beta1^step)) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps).
 * A last layer under a zero last_layer_lr (the reference's freeze) keeps its values while its
 * moments still advance, as in the reference. */
void lvd_adamw_update(lvd_adamw *o, float *params, const float *grads, double lr, double wd,
                      double last_layer_lr);

/* torch.nn.utils.clip_grad_norm_ over the layout's gradient buffer (the reference clips each
 * student submodule on its own): returns the L2 norm before clipping and, when max_norm /
 * (norm + 1e-6) < 1, scales every gradient by that factor. max_norm <= 0 only measures. A
 * non-finite norm is returned unchanged and the gradients are left as they are: the caller
 * stops (the reference aborts on a NaN loss). */
double lvd_adamw_clip_grad(lvd_adamw *o, float *grads, double max_norm);

/* The EMA teacher update over n floats (one layout's buffer): teacher = teacher * m + student *
 * (1 - m), as torch._foreach_mul_ then _foreach_add_(alpha = 1 - m) in float32. threads <= 0:
 * OpenMP's default. */
void lvd_ema_update(float *teacher, const float *student, size_t n, double momentum, int threads);

#endif
