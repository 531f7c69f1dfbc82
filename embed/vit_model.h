/* Internals of the ViT shared by the embed/vit_*.c files: the parameter layout, the activation
 * buffers and the functions that fill them. Not a public API.
 *
 * Parameters are a struct of pointers (lvd_vit_params), pointing either into the mapped tensor
 * file or into one contiguous buffer (random init, gradients later). The canonical order of the
 * tensors is the order of vit_param_descs(): patch_embed.proj.{weight,bias}, cls_token,
 * register_tokens (R > 0 only), mask_token, pos_embed, then per block norm1.{weight,bias},
 * attn.qkv.{weight,bias}, attn.proj.{weight,bias}, ls1.gamma, norm2.{weight,bias},
 * mlp.fc1|w12.{weight,bias}, mlp.fc2|w3.{weight,bias}, ls2.gamma, and last norm.{weight,bias}.
 * Weights of linear layers are (out, in) row-major as in PyTorch. */
#ifndef LVD_EMBED_VIT_MODEL_H
#define LVD_EMBED_VIT_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "embed/vit.h"

typedef struct lvd_vit_block {
    const float *norm1_w, *norm1_b; /* (D) */
    const float *qkv_w, *qkv_b;     /* (3D, D), (3D): rows q, k, v, each head-major */
    const float *proj_w, *proj_b;   /* (D, D), (D) */
    const float *ls1;               /* (D) LayerScale of the attention branch */
    const float *norm2_w, *norm2_b; /* (D) */
    const float *fc1_w, *fc1_b;     /* (F1, D), (F1): F1 = hidden (MLP) or 2 * hidden (w12) */
    const float *fc2_w, *fc2_b;     /* (D, hidden), (D): fc2 or w3 */
    const float *ls2;               /* (D) LayerScale of the FFN branch */
} lvd_vit_block;

typedef struct lvd_vit_params {
    const float *patch_w, *patch_b; /* (D, 3, P, P), (D) */
    const float *cls_token;         /* (D) */
    const float *reg_tokens;        /* (R, D) or NULL */
    const float *mask_token;        /* (D) */
    const float *pos_embed;         /* (1 + G * G, D): cls position first */
    lvd_vit_block *blocks;          /* depth entries */
    const float *norm_w, *norm_b;   /* (D) final LayerNorm */
} lvd_vit_params;

/* Activations of one forward pass of B images, T tokens, reused block after block (inference
 * keeps no per-block copy; a backward pass would allocate depth sets of the per-block buffers).
 * Every buffer is row-major with one row per token, images one after the other; branch first
 * holds the (B, N, D) patch embeddings. */
typedef struct lvd_vit_acts {
    size_t cap_rows; /* token rows (B * T) the buffers hold; grown on demand */
    size_t cap_att;  /* floats att holds */
    float *cols;     /* (B, N, 3 * P * P) im2col patches */
    float *x;        /* (B, T, D) residual stream */
    float *ln;       /* (B, T, D) LayerNorm output feeding the next linear */
    float *qkv;      /* (B, T, 3D) */
    float *atty;     /* (B, T, D) attention output before the projection */
    float *branch;   /* (B, T, D) proj / FFN output before bias and LayerScale */
    float *fch;      /* (B, T, F1) fc1 / w12 output, then GELU / SwiGLU in place */
    float *att;      /* threads * vit_attention_scratch(T): one head's scores per thread */
} lvd_vit_acts;

typedef struct vit_pos_entry {
    int gh, gw;
    float *table; /* (1 + gh * gw, D) */
} vit_pos_entry;

#define VIT_POS_CACHE 8

struct lvd_vit {
    lvd_vit_info info;
    lvd_vit_params p;
    lvd_tensors *owned_file; /* closed by lvd_vit_free when the model opened it */
    float *owned_params;     /* random weights, or the concatenated transformers q/k/v */
    lvd_vit_acts acts;
    vit_pos_entry pos_cache[VIT_POS_CACHE];
    int pos_next; /* cache slot replaced next */
    int threads;
};

/* One parameter tensor: canonical (official) name, shape, and where its pointer goes. */
typedef struct vit_param_desc {
    char name[64];
    int ndim;
    int64_t shape[4];
    const float **dst;
} vit_param_desc;

/* Fills descs (when not NULL) with m's parameter tensors in canonical order and returns their
 * number. m->info must be complete and m->p.blocks allocated. */
size_t vit_param_descs(lvd_vit *m, vit_param_desc *descs);

/* Number of elements of a described tensor. */
int64_t vit_desc_numel(const vit_param_desc *d);

/* Allocates an empty model for info (blocks array, no weights); fills n_params. */
int vit_model_alloc(const lvd_vit_info *info, lvd_vit **out, lvd_error *err);

/* The positional table (1 + gh * gw, D) for a patch grid: the stored one when it matches and is
 * square, else a resized table cached in m. NULL (err filled) when memory runs out. */
const float *vit_pos_embed(lvd_vit *m, int gh, int gw, lvd_error *err);

/* Frees the activation buffers (the struct is left empty, ready to grow again). */
void vit_acts_free(lvd_vit_acts *a);

/* Frees the cached resized positional tables. */
void vit_pos_cache_free(lvd_vit *m);

/* Layers (embed/vit_layers.c). Rows are tokens; every function is threaded with OpenMP over
 * `threads` threads and expects OpenBLAS to be single-threaded. */

/* out (BT, OC) = inp (BT, C) @ w (OC, C)^T + bias (OC, may be NULL); lda is inp's row stride. */
void vit_matmul_forward(float *out, const float *inp, int lda, const float *w, const float *bias,
                        int BT, int C, int OC, int threads);

/* out (N, C) = LayerNorm over each row of inp (N, C); mean and rstd (N) are stored if not NULL. */
void vit_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                           const float *b, int N, int C, float eps, int threads);

/* Floats of attention scratch one thread needs for T tokens: the T x T scores and T sums. */
size_t vit_attention_scratch(int T);

/* Multi-head self-attention of B images: qkv (B, T, 3D) -> out (B, T, D); att is scratch of
 * threads * vit_attention_scratch(T) floats. */
void vit_attention_forward(float *out, float *att, const float *qkv, int B, int T, int D, int heads,
                           int threads);

/* h (BT, hidden) = exact GELU of h + bias (fc1's bias, added here: one pass fewer), in place. */
void vit_gelu_forward(float *h, const float *bias, int BT, int hidden, int threads);

/* h (BT, 2 * hidden): the first half of each row becomes silu(h[:, :hidden] + bias[:hidden]) *
 * (h[:, hidden:] + bias[hidden:]) (w12's bias), in place; the second half is left as scratch. */
void vit_swiglu_forward(float *h, const float *bias, int BT, int hidden, int threads);

/* x (N, C) += ls (C) * (branch (N, C) + bias (C)), row by row: the LayerScale'd residual add,
 * with the bias of the linear layer that produced branch. */
void vit_residual_forward(float *x, const float *branch, const float *bias, const float *ls, int N,
                          int C, int threads);

/* Patch embedding of B images x (B, 3, H, W) with patch P: cols (B, N, 3 * P * P) receives the
 * im2col patches (c, ky, kx order, as the conv weight), emb (B, N, D) the embeddings. */
void vit_patch_embed_forward(float *emb, float *cols, const float *x, int B, int H, int W, int P,
                             const float *w, const float *bias, int D, int threads);

#endif
