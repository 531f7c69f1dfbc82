/* A trainable DINOv2 ViT: parameters and gradients in flat buffers, a forward that keeps what
 * the backward needs, and a backward that accumulates d loss / d parameter.
 *
 * Parameters live in one contiguous float buffer described by an lvd_param_layout
 * (train/params.h) whose tensors carry the official state-dict names in the canonical order of
 * embed/vit.h (lvd_vit_param_table): patch_embed.proj.weight (D, 3, P, P), patch_embed.proj.bias,
 * cls_token (1, 1, D), register_tokens (1, R, D) when R > 0, mask_token (1, D),
 * pos_embed (1, 1 + G * G, D), blocks.I.{norm1, attn.qkv, attn.proj, ls1.gamma, norm2,
 * mlp.fc1|mlp.w12, mlp.fc2|mlp.w3, ls2.gamma}, norm.{weight, bias}; shapes as PyTorch's.
 * Gradients use a second buffer of the same layout; backward passes add into it (+=), so
 * several passes of one step (global crops, local crops) accumulate, and
 * lvd_vit_train_zero_grad clears it. The math is the inference forward's (embed/vit_layers.h
 * kernels): pre-norm blocks with LayerScale, LayerNorm eps 1e-6, attention scale
 * 1 / sqrt(dim / heads), exact erf GELU or fused SwiGLU, positional table resized to the patch
 * grid when it differs from the stored one (bicubic a = -0.75 with scale (out + 0.1) / in
 * without registers; antialiased bicubic a = -0.5 to the exact size with registers); its
 * backward goes through the resize (the transpose of the linear map).
 *
 * Activations belong to a pass (lvd_vit_pass), made once for a shape (B, H, W) and reused step
 * after step: a step may hold several passes at once (student global crops with masks, local
 * crops at another size), each forwarded and then backwarded. A pass made with grad = 0 keeps
 * no per-block activations (one block's worth, reused): forward only, for the EMA teacher.
 * Nothing is allocated by forward or backward.
 *
 * Stochastic depth (student): the batch-subset form of the reference training path. DINOv2
 * passes the crops as a list, so its blocks run NestedTensorBlock.forward_nested, which applies
 * drop_add_residual_stochastic_depth for every rate > 0, separately for each list entry (here:
 * each pass): for every residual branch of every block a random subset of
 * max(int(B * (1 - rate)), 1) images is computed and its residual added with the factor
 * B / subset size; the other images skip the branch. (Block.forward on a plain tensor uses this
 * form only for rate > 0.1 and per-sample DropPath below; that path is not the one training
 * takes and is not implemented.) The subsets are drawn from a splitmix64 stream seeded by the
 * caller, so a seed gives the same subsets on every run; rate 0 computes every image.
 *
 * Threads: OpenMP over rows, images and heads; products per thread on row blocks of all B * T
 * token rows, with embed/vit_layers.h's packed kernel (forward, input gradients, attention; the
 * weights are packed from the parameters by every forward and backward) or single-threaded
 * OpenBLAS sgemm (weight gradients; forward and backward set OpenBLAS to 1 thread and restore
 * the previous count). Results are bitwise the same for a fixed thread count; the column sums
 * (bias, LayerNorm, LayerScale and token gradients) are independent of it. A model and its
 * passes run one call at a time. */
#ifndef LVD_TRAIN_VIT_TRAIN_H
#define LVD_TRAIN_VIT_TRAIN_H

#include <stdint.h>

#include "embed/vit.h"
#include "store/error.h"
#include "store/tensors.h"
#include "train/params.h"

typedef struct lvd_vit_train lvd_vit_train;

/* Creates a model with the DINOv2 from-scratch init (dinov2/models/vision_transformer.py, seeded
 * splitmix64): linear weights and pos_embed trunc_normal_(std 0.02) whose bounds are PyTorch's
 * default absolute +-2 (so in effect normal), linear biases 0, LayerNorm weight 1 and bias 0,
 * LayerScale gammas = layerscale (1e-5 in DINOv2's configs), cls and register tokens normal
 * std 1e-6, mask token 0, and the patch conv left at PyTorch's Conv2d default as the reference
 * does (weight and bias uniform in +-1 / sqrt(3 * P * P)). Reads dim, depth, patch, grid, n_reg,
 * ffn and heads (0: dim / 64, as every DINOv2 model; else it must divide dim) from arch; the rest
 * is derived as lvd_vit_arch_derive does. Gradients start at 0. */
int lvd_vit_train_create(const lvd_vit_info *arch, float layerscale, uint64_t seed,
                         lvd_vit_train **out, lvd_error *err);

/* Creates a model from any checkpoint lvd_vit_load accepts (official .pth, safetensors with
 * official, chunked or transformers names), copying its weights. heads 0: the file's
 * "lvd_vit_heads" metadata when present (lvd_vit_train_save writes it), else dim / 64. */
int lvd_vit_train_load(const char *path, int heads, lvd_vit_train **out, lvd_error *err);

/* Like lvd_vit_train_load from the tensors of ts whose names start with prefix (stripped; the
 * others are ignored), e.g. "student_init.backbone."; ts may be closed afterwards. */
int lvd_vit_train_load_tensors(lvd_tensors *ts, const char *prefix, int heads, lvd_vit_train **out,
                               lvd_error *err);

/* Writes the parameters as an F32 safetensors file with the official names and shapes (and the
 * head count as metadata), which lvd_vit_load and lvd_vit_train_load read as they are. */
int lvd_vit_train_save(const lvd_vit_train *m, const char *path, lvd_error *err);

/* Releases the model. NULL is ok. Passes made for it stay valid for models of the same
 * architecture but must be freed separately. */
void lvd_vit_train_free(lvd_vit_train *m);

/* The complete architecture (heads, ffn_hidden, eps, pos_antialias, n_params). */
const lvd_vit_info *lvd_vit_train_info(const lvd_vit_train *m);

/* The layout of the parameter and gradient buffers (layout.total = n_params floats). */
const lvd_param_layout *lvd_vit_train_layout(const lvd_vit_train *m);

/* The parameter buffer, writable in place (optimizer, EMA): forward reads it on every call. */
float *lvd_vit_train_params(lvd_vit_train *m);

/* The gradient buffer (same layout), accumulated by lvd_vit_train_backward. */
float *lvd_vit_train_grads(lvd_vit_train *m);

/* Sets every gradient to 0. */
void lvd_vit_train_zero_grad(lvd_vit_train *m);

/* Threads used by later calls (<= 0: OpenMP's default). A pass has scratch for the thread count
 * the model had when the pass was made; more threads than that are refused. */
void lvd_vit_train_set_threads(lvd_vit_train *m, int threads);

/* Stochastic depth of one forward: rate in [0, 1] (0: off), and the seed of the subsets. */
typedef struct lvd_vit_drop {
    double rate; /* double, as the reference's Python float: int(B * (1 - rate)) must match */
    uint64_t seed;
} lvd_vit_drop;

/* Outputs of a forward: caller-owned buffers, NULL when not wanted. All are after the final
 * LayerNorm (the pre-norm tokens are in the pass). */
typedef struct lvd_vit_train_outputs {
    float *cls;   /* (B, D) */
    float *reg;   /* (B, R, D); ignored when R = 0 */
    float *patch; /* (B, N, D) */
} lvd_vit_train_outputs;

/* Activations of one shape. Rows are tokens, images one after the other; D = dim, T = 1 + R + N
 * tokens ([cls, reg x R, patches row-major]), F1 = ffn_hidden (MLP) or 2 * ffn_hidden (w12),
 * hid = ffn_hidden, L = depth for a grad pass and 1 for a forward-only one (every block then
 * reuses slice 0). In the per-block buffers of a branch, row j * T + t belongs to the j-th image
 * of that branch's subset (sub), so with stochastic depth only the first nsub * T rows are used.
 * The buffers are the model's business; callers may read them (out is the final-normed tokens,
 * resid + 2 * L * B * T * D the pre-norm ones) but not write them. */
typedef struct lvd_vit_pass {
    int B, H, W;       /* input shape */
    int gh, gw, N, T;  /* patch grid, N = gh * gw patches, T tokens */
    int L;             /* block slices stored */
    int grad;          /* 1: activations kept for lvd_vit_train_backward */
    int threads;       /* threads it has attention scratch for */
    int ready;         /* a forward filled it (a grad pass can be backwarded) */
    lvd_vit_info info; /* the architecture it was made for */
    /* Saved by the forward */
    uint8_t *mask;   /* (B, N) the forward's iBOT mask (1 = mask_token), 0 when none */
    float *cols;     /* (B, N, 3 * P * P) im2col of the input */
    float *pos;      /* (1 + N, D) positional table of the grid (resized when needed) */
    float *resid;    /* (2L + 1, B, T, D) residual stream: [2l] input of block l, [2l + 1]
                        after its attention residual, [2L] last block's output (pre-norm) */
    float *ln1;      /* (L, B, T, D) norm1 output */
    float *ln1_mean; /* (L, B, T) */
    float *ln1_rstd; /* (L, B, T) 1 / sqrt(var + eps) */
    float *qkv;      /* (L, B, T, 3D) q, k, v, each head-major */
    float *lse;      /* (L, B, heads, T) log-sum-exp of each attention row (probabilities
                        are recomputed from it in the backward) */
    float *atty;     /* (L, B, T, D) attention output before the projection */
    float *attn_out; /* (L, B, T, D) projection output with bias, before LayerScale */
    float *ln2;      /* (L, B, T, D) norm2 output */
    float *ln2_mean; /* (L, B, T) */
    float *ln2_rstd; /* (L, B, T) */
    float *fch;      /* (L, B, T, F1) fc1 / w12 output with bias (pre-activation) */
    float *ffn_out;  /* (L, B, T, D) fc2 / w3 output with bias, before LayerScale */
    float *lnf_mean; /* (B, T) final norm */
    float *lnf_rstd; /* (B, T) */
    float *out;      /* (B, T, D) final-normed tokens */
    int *sub;        /* (depth, 2, B) images computing each branch ([l][0] attention,
                        [l][1] FFN), ascending; the first nsub of each are used */
    int *nsub;       /* (depth, 2) */
    int *subpos;     /* (depth, 2, B) each image's index in the subset, -1 when it skips */
    /* Scratch */
    float *emb;     /* (B, N, D) patch embeddings; their gradient in the backward */
    float *act;     /* (B, T, hid) GELU / SwiGLU output (recomputed in the backward) */
    float *wy, *wx; /* (gh, G), (gw, G) resize matrices; NULL when the stored grid is used */
    float *pos_tmp; /* (G * gw, D) */
    float *att;     /* threads * (2 T (T + 1)) attention scratch */
    float *dres;    /* (B, T, D) gradient of the residual stream (grad pass only, as below) */
    float *dln;     /* (B, T, D) gradient of a LayerNorm output */
    float *dbr;     /* (B, T, D) gradient of a branch output */
    float *dqkv;    /* (B, T, 3D) */
    float *datty;   /* (B, T, D) */
    float *dfch;    /* (B, T, F1) */
    float *dtok;    /* (T, D) gradient summed over the images, per token */
    float *wgs;     /* weight-gradient scratch of the packed kernel, for the largest Linear */
    /* Kept rows (lvd_vit_pass_keep) */
    uint8_t *keep; /* (B, T) nonzero: the row's final output is wanted */
    int keep_all;  /* 1: every row is wanted (the default) */
    int *kq;       /* (B * T) the wanted rows as token indices, image by image */
    int *kq_off;   /* (B + 1) image b's are kq[kq_off[b] .. kq_off[b + 1]) */
    int *krow;     /* (B * T) the wanted rows as rows b * T + t */
    int n_keep;    /* kq_off[B] */
    int *iota;     /* (B * T) 0, 1, 2, ...: the identity subset of compact rows */
    int pruned;    /* the last forward ran the last block's branches on the wanted rows only:
                      its per-block buffers past the keys and values, the last residual slot,
                      lnf_mean and lnf_rstd then hold n_keep compact rows */
    float *dcmp;   /* (B, T, D) gradient of the wanted rows' residual stream (grad pass) */
    void *mem;     /* the one allocation holding every buffer */
} lvd_vit_pass;

/* Makes a pass for B images of H x W pixels (positive multiples of the patch) for models of m's
 * architecture; grad 0 makes a forward-only pass. Fails (with the size) when memory runs out. */
int lvd_vit_pass_create(const lvd_vit_train *m, int B, int H, int W, int grad, lvd_vit_pass **out,
                        lvd_error *err);

/* Which final outputs later forwards of p compute: the cls token of every image when cls is
 * nonzero and the patch tokens whose flat indices (image * N + patch) are the n entries of
 * patches (any order, repeats allowed); n < 0 (patches ignored): every token, the default.
 * The last block then runs its queries, projection, FFN and the final norm on the wanted rows
 * only (keys and values on all: the other rows reach the wanted ones only through them), so the
 * wanted outputs are those of the full forward up to float rounding, the other rows of p->out
 * are 0 and the backward ignores their gradients. Applies when the last block drops no image
 * (stochastic depth) and some row is not wanted; otherwise every row is computed. Fails on an
 * index outside the pass. */
int lvd_vit_pass_keep(lvd_vit_pass *p, int cls, const int *patches, int n, lvd_error *err);

/* Releases a pass. NULL is ok. */
void lvd_vit_pass_free(lvd_vit_pass *p);

/* Runs the model on x (B, 3, H, W) of the pass's shape, already normalized. mask is NULL or
 * (B, N) bytes, nonzero = patch embedding replaced by mask_token before positions (iBOT). drop
 * is NULL or the stochastic depth. Fills the requested outputs (out may be NULL) and, in a grad
 * pass, keeps what lvd_vit_train_backward needs; the parameters must not change between the two.
 * Equal to lvd_vit_forward on the same weights up to float rounding when no image is dropped
 * (the same layer kernels; the products here start from the bias rows). Fails on a pass of
 * another architecture, too many threads, or a rate outside [0, 1]. */
int lvd_vit_train_forward(lvd_vit_train *m, lvd_vit_pass *p, const float *x, const uint8_t *mask,
                          const lvd_vit_drop *drop, const lvd_vit_train_outputs *out,
                          lvd_error *err);

/* Adds d loss / d parameter to the gradient buffer, given d loss / d output of the pass's last
 * forward: dcls (B, D), dpatch (B, N, D), dreg (B, R, D), each NULL when zero. Fails on a
 * forward-only pass or one without a forward. Running it twice adds twice. */
int lvd_vit_train_backward(lvd_vit_train *m, lvd_vit_pass *p, const float *dcls,
                           const float *dpatch, const float *dreg, lvd_error *err);

#endif
