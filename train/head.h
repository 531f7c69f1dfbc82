/* The DINO head (dinov2/layers/dino_head.py DINOHead), forward and backward.
 *
 *   x (n, in_dim) -> Linear -> GELU -> [Linear -> GELU] x (nlayers - 2) -> Linear (n, bottleneck)
 *     -> L2 normalize (x / max(||x||, 1e-12), F.normalize) -> weight-normalized Linear, no bias
 *     -> logits (n, K)
 *
 * GELU is the exact erf form. The last layer's weight is W = g * v / ||v|| per output row (torch
 * weight_norm, dim 0, no epsilon), with a trainable magnitude g (K, 1) and direction v (K,
 * bottleneck). With nlayers == 1 the MLP is one Linear in_dim -> bottleneck.
 *
 * Parameters live in one float buffer described by an lvd_param_layout (train/params.h) under the
 * reference's state-dict names and order:
 *   mlp.0.weight (hidden, in_dim), mlp.0.bias (hidden), mlp.2.weight (hidden, hidden), mlp.2.bias,
 *   ..., mlp.{2(nlayers-1)}.weight (bottleneck, hidden), mlp.{2(nlayers-1)}.bias (bottleneck),
 *   last_layer.weight_g (K, 1), last_layer.weight_v (K, bottleneck)
 * (nlayers == 1: mlp.weight, mlp.bias; without MLP biases the .bias entries are absent).
 * Gradients use the same layout in a caller's buffer of layout.total floats.
 *
 * Activations of one forward live in an lvd_head_acts sized for a maximum row count, so one head
 * can run forward on several row sets (cls tokens, masked patch tokens, ...) and then backward on
 * each, accumulating parameter gradients. The backward uses the head's current parameters: do not
 * change them between a forward and its backward.
 *
 * Threads: every call runs on h->threads OpenMP threads (0: omp_get_max_threads()); matrix
 * products are the packed kernel of embed/vit_layers.h (lvd_vit_gemm, lvd_vit_gemm_wgrad) on
 * blocks of output rows split over those threads. Results are bitwise the same for a fixed
 * thread count. A head is used by one thread at a time (it holds the normalized last-layer
 * weight and a gradient scratch). */
#ifndef LVD_TRAIN_HEAD_H
#define LVD_TRAIN_HEAD_H

#include <stddef.h>
#include <stdint.h>

#include "store/error.h"
#include "store/tensors.h"
#include "train/params.h"

#define LVD_HEAD_MAX_LAYERS 16

typedef struct lvd_head_config {
    int in_dim;         /* input features (the backbone's embed dim) */
    int hidden_dim;     /* MLP hidden width (2048 in DINOv2) */
    int bottleneck_dim; /* MLP output width before L2 normalization (256; 384 large) */
    int out_dim;        /* K prototypes (65536; 131072 large) */
    int nlayers;        /* MLP linears, 1..LVD_HEAD_MAX_LAYERS (3 in DINOv2) */
    int mlp_bias;       /* nonzero: the MLP linears have biases (DINOHead's default) */
} lvd_head_config;

typedef struct lvd_head {
    lvd_head_config cfg;
    lvd_param_layout layout; /* names, shapes and offsets of params (and of gradient buffers) */
    float *params;           /* layout.total floats, owned */
    int threads;             /* OpenMP threads per call; 0: omp_get_max_threads() */
    /* Offsets into params of MLP linear i's weight and bias (bias: SIZE_MAX when absent), of
     * weight_g and of weight_v. */
    size_t w_off[LVD_HEAD_MAX_LAYERS];
    size_t b_off[LVD_HEAD_MAX_LAYERS];
    size_t g_off;
    size_t v_off;
    /* Private: the normalized last-layer weight of the current params and its scratch. */
    float *w_last;  /* (K, bottleneck) g * v / ||v||, recomputed by every forward and backward */
    float *v_norm;  /* (K) ||v|| per row */
    float *dw_last; /* (K, bottleneck) backward scratch: d loss / d W */
    float *w_pack;  /* a weight packed for lvd_vit_gemm (embed/vit_layers.h), repacked by every
                       product, or lvd_vit_gemm_wgrad's scratch */
    int w_ready;    /* w_last and v_norm hold the values of the last forward */
} lvd_head;

/* Activations of one forward on up to max_rows rows (all buffers owned). */
typedef struct lvd_head_acts {
    lvd_head_config cfg;
    int max_rows;
    int n;          /* rows of the last forward (-1 before any) */
    float *x;       /* (n, in_dim) copy of the input */
    float *pre;     /* (nlayers - 1, n, hidden) hidden linear outputs before GELU */
    float *act;     /* (nlayers - 1, n, hidden) GELU outputs */
    float *z;       /* (n, bottleneck) MLP output */
    float *z_norm;  /* (n) ||z|| */
    float *u;       /* (n, bottleneck) z / max(||z||, 1e-12) */
    float *d0, *d1; /* (n, max(hidden, bottleneck)) backward scratch */
} lvd_head_acts;

/* Checks a configuration: positive sizes, nlayers in range, buffers within size_t. */
int lvd_head_config_check(const lvd_head_config *cfg, lvd_error *err);

/* Creates a head of this configuration with the reference init: MLP weights truncated normal
 * (std 0.02, bounds +-2), MLP biases 0, weight_v uniform in +-1/sqrt(bottleneck) (nn.Linear's
 * default), weight_g 1. The same seed gives the same parameters. threads is set to 0. */
int lvd_head_init(lvd_head *h, const lvd_head_config *cfg, uint64_t seed, lvd_error *err);

/* Creates a head from the tensors named prefix + reference name (prefix NULL or "" for none, e.g.
 * "dino_head." for a combined file), inferring the configuration from their shapes. Every
 * tensor must be present with a consistent shape; extra tensors are ignored. */
int lvd_head_load_tensors(lvd_head *h, const lvd_tensors *ts, const char *prefix, lvd_error *err);

/* lvd_head_load_tensors on the tensor file at path (safetensors or torch.save state dict). */
int lvd_head_load(lvd_head *h, const char *path, const char *prefix, lvd_error *err);

/* Writes the parameters as a safetensors file (F32, names prefix + reference name, the
 * configuration as JSON metadata "config"), atomically. */
int lvd_head_save(const lvd_head *h, const char *path, const char *prefix, lvd_error *err);

/* Releases a head (a zeroed or freed head is fine). */
void lvd_head_free(lvd_head *h);

/* Allocates activations for up to max_rows (>= 1) rows of heads of configuration cfg. */
int lvd_head_acts_init(lvd_head_acts *a, const lvd_head_config *cfg, int max_rows, lvd_error *err);

/* Releases activations (zeroed or freed is fine). */
void lvd_head_acts_free(lvd_head_acts *a);

/* out (n, K) = head(x (n, in_dim)); 0 <= n <= a->max_rows (n == 0 does nothing). The
 * activations a (made for h's configuration) are overwritten. out must not overlap x. */
int lvd_head_forward(lvd_head *h, lvd_head_acts *a, const float *x, int n, float *out,
                     lvd_error *err);

/* Backward of the last forward stored in a, given dout (n, K) = d loss / d out: adds d loss / d
 * param to grads (h->layout.total floats, same layout as params) and writes d loss / d x to dx
 * (n, in_dim) unless dx is NULL. Fails if a holds no forward of h's configuration. */
int lvd_head_backward(lvd_head *h, const lvd_head_acts *a, const float *dout, float *grads,
                      float *dx, lvd_error *err);

#endif
