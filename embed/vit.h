/* DINOv2 vision transformer: inference (forward pass) for every official layout.
 *
 * A model is loaded from a tensor file (safetensors, torch.save .pth; any format store/tensors.h
 * reads) or created with random weights. The architecture is inferred from tensor shapes alone:
 * dim and patch size from `patch_embed.proj.weight` (D, 3, P, P), depth from the block indices,
 * heads = dim / 64 (head dim 64 in every DINOv2 model), positional grid G from `pos_embed`
 * (1, 1 + G*G, D), registers R from `register_tokens` (1, R, D), MLP (`mlp.fc1`) or fused SwiGLU
 * (`mlp.w12`, hidden = rows / 2). LayerNorm eps is 1e-6 (the DINOv2 default; files carry no config,
 * the transformers files included). Accepted key names: official (`blocks.I.attn.qkv.weight`),
 * chunked (`blocks.C.I.*`) and transformers `Dinov2Model` (`encoder.layer.I.*`, optionally under a
 * `dinov2.` prefix; query/key/value are concatenated into qkv). Every tensor must be present with
 * its exact shape and no other tensor may be present; errors name the tensor and both shapes.
 * Weights are used in place from the opened collection (for F32 safetensors: the mapped file),
 * never copied, except transformers q/k/v, which are concatenated. The first forward pass packs
 * the linear and patch-embedding weights once for the matrix kernel (embed/vit_layers.h,
 * lvd_vit_gemm) into a buffer about as large as the model (ViT-S 84 MB, ViT-g 4.4 GB), kept until
 * lvd_vit_free; a model that never runs a forward does not allocate it.
 *
 * Forward (per image, B images at once): patch embedding; optional iBOT mask replacing masked
 * patch embeddings by `mask_token` before positions; cls; positional embedding resized to the
 * patch grid when it differs from the stored one or the input is not square (no registers: bicubic
 * a = -0.75 with scale factor (out + 0.1) / in; registers: antialiased bicubic a = -0.5 to the
 * exact size; each resized table is cached per grid); registers after cls without positions;
 * pre-norm blocks with LayerScale, erf GELU (not the tanh form; erf to 5e-7) or fused SwiGLU;
 * final LayerNorm. Token order:
 * [cls, reg x R, patches row-major], T = 1 + R + (H/P) * (W/P).
 *
 * Threads: a model runs one forward at a time (it owns its scratch buffers and positional cache).
 * Inside, whole images are split over OpenMP threads when the batch divides evenly (or holds 4+
 * images per thread), else the rows, heads and elements of each layer are. The forward makes no
 * OpenBLAS call, and an image's outputs are bitwise the same in any batch and on any thread
 * count: every row, and every image and head of the attention, is computed on its own. On a
 * machine shared with other busy processes, run with OMP_WAIT_POLICY=passive: spinning threads
 * then cost more than they save. */
#ifndef LVD_EMBED_VIT_H
#define LVD_EMBED_VIT_H

#include <stdint.h>

#include "store/error.h"
#include "store/tensors.h"

typedef enum lvd_vit_ffn {
    LVD_VIT_MLP,    /* fc1 -> exact GELU -> fc2 */
    LVD_VIT_SWIGLU, /* w12 -> silu(first half) * second half -> w3 */
} lvd_vit_ffn;

typedef struct lvd_vit_info {
    int dim;           /* embedding width D */
    int depth;         /* number of blocks */
    int heads;         /* attention heads, dim / 64 */
    int patch;         /* patch side P in pixels */
    int grid;          /* side G of the stored positional grid */
    int n_reg;         /* register tokens R (0 or 4 in released models) */
    lvd_vit_ffn ffn;   /* feed-forward kind */
    int ffn_hidden;    /* hidden width (for SwiGLU: of each half of w12) */
    int pos_antialias; /* 1: antialiased resize (register models), 0: bicubic with 0.1 offset */
    float eps;         /* LayerNorm eps (1e-6) */
    int64_t n_params;  /* number of scalar parameters */
} lvd_vit_info;

typedef struct lvd_vit lvd_vit;

/* Outputs of one forward pass over B images of N = (H/P) * (W/P) patches: each pointer is a
 * caller-owned buffer or NULL when not wanted. All are after the final LayerNorm except prenorm. */
typedef struct lvd_vit_outputs {
    float *cls;         /* (B, D) */
    float *reg;         /* (B, R, D); ignored when R = 0 */
    float *patch;       /* (B, N, D) */
    float *prenorm;     /* (B, T, D): tokens before the final norm */
    int n_inter;        /* number of last blocks whose outputs are wanted (0..depth) */
    float *inter_cls;   /* (n_inter, B, D); J = 0 is the earliest of the last n_inter blocks */
    float *inter_patch; /* (n_inter, B, N, D) */
} lvd_vit_outputs;

typedef enum lvd_vit_pool {
    LVD_VIT_POOL_CLS,           /* features = cls token (D values) */
    LVD_VIT_POOL_CLS_MEANPATCH, /* features = [cls, mean of patch tokens] (2 * D values) */
} lvd_vit_pool;

/* One parameter tensor: official state-dict name, PyTorch shape, float32 data. */
typedef struct lvd_vit_param {
    char name[64];
    int ndim;
    int64_t shape[4];
    const float *data; /* NULL in a table made from an architecture alone */
} lvd_vit_param;

/* Opens the tensor file at path and loads the model from it; the file stays mapped until
 * lvd_vit_free. On failure *out is NULL and err names the file and the problem. */
int lvd_vit_load(const char *path, lvd_vit **out, lvd_error *err);

/* Loads the model from an opened collection, which the model borrows: ts must outlive it. */
int lvd_vit_load_tensors(lvd_tensors *ts, lvd_vit **out, lvd_error *err);

/* Like lvd_vit_load_tensors, from the tensors whose names start with prefix (stripped before
 * the key handling; the others are ignored), e.g. "student.backbone." in a training file. */
int lvd_vit_load_tensors_prefix(lvd_tensors *ts, const char *prefix, lvd_vit **out, lvd_error *err);

/* Completes an architecture the way lvd_vit_init_random does (below) without creating a model:
 * out = arch with heads, ffn_hidden, eps, pos_antialias and n_params derived. Fails on an
 * unsupported architecture. */
int lvd_vit_arch_derive(const lvd_vit_info *arch, lvd_vit_info *out, lvd_error *err);

/* The parameter tensors of a complete architecture (as lvd_vit_arch_derive gives) in the
 * canonical order: patch_embed.proj.{weight,bias}, cls_token, register_tokens (R > 0),
 * mask_token, pos_embed, per block norm1, attn.qkv, attn.proj, ls1.gamma, norm2, mlp.fc1|w12,
 * mlp.fc2|w3, ls2.gamma, and norm.{weight,bias}. Writes min(cap, count) entries (data NULL) into
 * table (NULL: none) and returns the count, 0 when memory runs out. */
size_t lvd_vit_param_table(const lvd_vit_info *info, lvd_vit_param *table, size_t cap);

/* The same table for a model, with data pointing at its weights (valid until lvd_vit_free). */
size_t lvd_vit_param_list(lvd_vit *m, lvd_vit_param *table, size_t cap);

/* Creates a model with random weights (DINOv2 init: linear and conv weights and pos_embed
 * truncated normal std 0.02 cut at 2 std, biases 0, LayerNorm 1 and 0, cls and register tokens
 * normal std 1e-6, mask token 0, LayerScale 1e-5), deterministic for a seed. Reads dim, depth,
 * patch, grid, n_reg and ffn from arch; heads, ffn_hidden (4 * dim, or the SwiGLU rule
 * (int(4 * dim * 2 / 3) + 7) / 8 * 8), eps and pos_antialias (n_reg > 0) are derived. */
int lvd_vit_init_random(const lvd_vit_info *arch, uint64_t seed, lvd_vit **out, lvd_error *err);

/* The model's architecture. */
const lvd_vit_info *lvd_vit_get_info(const lvd_vit *m);

/* Sets the number of threads used by later forward passes (<= 0: OpenMP's default). */
void lvd_vit_set_threads(lvd_vit *m, int threads);

/* Runs the model on x (B, 3, H, W) float32, already normalized; H and W must be positive
 * multiples of the patch size. mask is NULL or (B, N) bytes, nonzero = patch replaced by
 * mask_token (iBOT). Fills the outputs requested in out (NULL: none). Fails (with a message) on
 * bad sizes or when memory runs out; the model stays usable. Scratch memory grows to the
 * largest batch seen and is kept until lvd_vit_free. */
int lvd_vit_forward(lvd_vit *m, const float *x, int B, int H, int W, const uint8_t *mask,
                    const lvd_vit_outputs *out, lvd_error *err);

/* Number of feature values per image for a pooling mode (D or 2 * D). */
int lvd_vit_feature_dim(const lvd_vit *m, lvd_vit_pool pool);

/* Image features for a batch: out is (B, lvd_vit_feature_dim(m, pool)), not L2-normalized. */
int lvd_vit_features(lvd_vit *m, const float *x, int B, int H, int W, lvd_vit_pool pool, float *out,
                     lvd_error *err);

/* Releases the model (and the file it opened, if any). NULL is ok. */
void lvd_vit_free(lvd_vit *m);

#endif
