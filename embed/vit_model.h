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
#include "embed/vit_layers.h"

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
 * keeps no per-block copy; the training path, train/vit_train.h, has its own per-block ones).
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
    float *att;      /* threads * vit_attention_scratch(T, hd), 64-byte aligned: one per thread */
} lvd_vit_acts;

/* lvd_vit_gemm-packed copies of one block's linear weights (transposed into panels). */
typedef struct vit_packed_block {
    float *qkv, *proj, *fc1, *fc2;
} vit_packed_block;

/* The packed weights of the linear layers and the patch embedding, in one 64-byte aligned
 * buffer: as many floats as those weights, output widths rounded up to the kernel's 16-column
 * panels (no rounding for the released models), i.e. about the model's size again (ViT-S 84 MB,
 * ViT-g 4.4 GB).
 * Packed by the first forward pass (models that only list or copy their weights never pay for
 * them) and kept until lvd_vit_free; the weights are const, so the copy cannot go stale. */
typedef struct vit_packed {
    float *buf;               /* NULL until the first forward */
    const float *patch;       /* patch_embed.proj (D, 3 * P * P) */
    vit_packed_block *blocks; /* depth entries */
} vit_packed;

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
    vit_packed packed;
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

/* Packs m's weights into m->packed (on threads threads) unless already done; fails (err
 * filled) only when memory runs out. */
int vit_packed_ensure(lvd_vit *m, int threads, lvd_error *err);

/* Frees m->packed (the struct is left empty). */
void vit_packed_free(lvd_vit *m);

/* Frees the cached resized positional tables. */
void vit_pos_cache_free(lvd_vit *m);

#endif
