/* Internals of the trainable ViT shared by the train/vit_train*.c files: the model struct, the
 * parameter pointers into a flat buffer, and the backward kernels. Not a public API. */
#ifndef LVD_TRAIN_VIT_TRAIN_INTERNAL_H
#define LVD_TRAIN_VIT_TRAIN_INTERNAL_H

#include <stddef.h>

#include "train/vit_train.h"

/* One block's tensors in a flat buffer (parameters or gradients). */
typedef struct vt_block {
    float *norm1_w, *norm1_b; /* (D) */
    float *qkv_w, *qkv_b;     /* (3D, D), (3D) */
    float *proj_w, *proj_b;   /* (D, D), (D) */
    float *ls1;               /* (D) */
    float *norm2_w, *norm2_b; /* (D) */
    float *fc1_w, *fc1_b;     /* (F1, D), (F1) */
    float *fc2_w, *fc2_b;     /* (D, hid), (D) */
    float *ls2;               /* (D) */
} vt_block;

typedef struct vt_tensors {
    float *patch_w, *patch_b; /* (D, 3, P, P), (D) */
    float *cls;               /* (D) */
    float *reg;               /* (R, D) or NULL */
    float *mask_token;        /* (D) */
    float *pos;               /* (1 + G * G, D) */
    vt_block *blocks;         /* depth entries */
    float *norm_w, *norm_b;   /* (D) */
} vt_tensors;

/* One block's linear weights packed for lvd_vit_gemm (embed/vit_layers.h): t = the weight
 * transposed (forward products), n = as stored (input gradients). */
typedef struct vt_packed {
    float *qkv_t, *proj_t, *fc1_t, *fc2_t;
    float *qkv_n, *proj_n, *fc1_n, *fc2_n;
} vt_packed;

struct lvd_vit_train {
    lvd_vit_info info;
    lvd_param_layout layout;
    float *params;     /* layout.total */
    float *grads;      /* layout.total */
    vt_tensors p;      /* into params */
    vt_tensors g;      /* into grads */
    vt_packed *packed; /* depth entries, into pack: refreshed from params by every forward (t)
                          and backward (n), which may follow optimizer steps */
    float *patch_t;    /* the patch embedding weight packed (forward) */
    float *pack;
    int threads;
};

/* The thread count calls of m use. */
int vt_threads(const lvd_vit_train *m);

/* Fails unless p was made for m's architecture and has scratch for m's threads. */
int vt_check_pass(const lvd_vit_train *m, const lvd_vit_pass *p, lvd_error *err);

/* Kernels (train/vit_train_layers.c), OpenMP over `threads`, OpenBLAS single-threaded. */

/* Packs the forward (t) or backward (n) forms of every block's linear weights from m->params. */
void vt_pack_forward(lvd_vit_train *m, int threads);
void vt_pack_backward(lvd_vit_train *m, int threads);

/* Backward of out (BT, OC; row stride ldo) = inp (BT, C; stride lda) @ w (OC, C)^T + bias:
 * dinp (BT, C; stride ldi) = dout @ w when dinp is not NULL (overwritten), dw (OC, C) +=
 * dout^T @ inp, db (OC) += column sums of dout when db is not NULL. */
void vt_matmul_backward(float *dinp, int ldi, float *dw, float *db, const float *dout, int ldo,
                        const float *inp, int lda, const float *w, int BT, int C, int OC,
                        int threads);

/* vt_matmul_backward with w packed by lvd_vit_gemm_pack_n (wn) for the input gradient and the
 * weight gradient on the packed kernel in ws (lvd_vit_gemm_wgrad_scratch(C, OC) floats; NULL when
 * dw is NULL). */
void vt_matmul_backward_packed(float *dinp, int ldi, float *dw, float *db, const float *dout,
                               int ldo, const float *inp, int lda, const float *wn, float *ws,
                               int BT, int C, int OC, int threads);

/* LayerNorm over a subset of images: for j < n, t < T, row j * T + t of out (mean, rstd) is the
 * norm of row sub[j] * T + t of x. */
void vt_layernorm_forward_sub(float *out, float *mean, float *rstd, const float *x, const int *sub,
                              int n, int T, const float *w, const float *b, int C, float eps,
                              int threads);

/* Backward of vt_layernorm_forward_sub given dout (n * T, C): dx rows sub[j] * T + t +=, dw and
 * db (C) += the column sums of dout * xhat and dout. sub NULL: the identity (n images). */
void vt_layernorm_backward_sub(float *dx, float *dw, float *db, const float *dout, const float *x,
                               const float *mean, const float *rstd, const float *w, const int *sub,
                               int n, int T, int C, int threads);

/* out (B, T, C) = in + the scattered residual: row t of image b gets scale * ls (C) * y (row
 * pos[b] * T + t of y), for every image b with pos[b] >= 0 (its index in the subset); rows of
 * the other images are copied (out may equal in). */
void vt_residual_forward_sub(float *out, const float *in, const float *y, const float *ls,
                             float scale, const int *pos, int B, int T, int C, int threads);

/* out (n, C): row j = in row rows[j] + ls * y row j (the residual of compact rows). */
void vt_residual_forward_rows(float *out, const float *in, const float *y, const float *ls,
                              const int *rows, int n, int C, int threads);

/* Backward of vt_residual_forward_sub for the branch: dy (n * T, C) = scale * ls * dout rows of
 * the subset, dls (C) += scale * column sums of dout (subset rows) * y. */
void vt_residual_backward_sub(float *dy, float *dls, const float *dout, const float *y,
                              const float *ls, float scale, const int *sub, int n, int T, int C,
                              int threads);

/* act (BT, hid) = GELU(h) (ffn MLP, h (BT, hid)) or silu(h[:, :hid]) * h[:, hid:] (SwiGLU,
 * h (BT, 2 hid)). */
void vt_ffn_act_forward(float *act, const float *h, int BT, int hid, int swiglu, int threads);

/* The backward's recomputation of vt_ffn_act_forward into act, and in place on dh (BT, F1),
 * which holds d act in the first hid columns of each row on entry and d h on return (the
 * activation and its derivative share their exp / erf). */
void vt_ffn_act_both(float *act, float *dh, const float *h, int BT, int hid, int swiglu,
                     int threads);

/* Floats of attention scratch per thread for T tokens of head width hd. */
size_t vt_attention_scratch(int T, int hd);

/* Multi-head attention forward of n images for the queries q (token indices, image b's from
 * q_off[b] to q_off[b + 1]; q NULL: every token): atty holds one row per query (n * T rows, or
 * q_off[n] when q is given), lse (n, heads, T) the log-sum-exp at each query's token (NULL: not
 * kept); att is threads * vt_attention_scratch(T, D / heads) floats. */
void vt_attention_forward(float *atty, float *lse, float *att, const float *qkv, const int *q,
                          const int *q_off, int n, int T, int D, int heads, int threads);

/* Its backward: dqkv (n, T, 3D) = gradient given datty (one row per query, as atty), from qkv,
 * the forward output atty and lse. The q part of rows that are no query is left alone. */
void vt_attention_backward(float *dqkv, const float *datty, const float *qkv, const float *atty,
                           const float *lse, float *att, const int *q, const int *q_off, int n,
                           int T, int D, int heads, int threads);

/* out (T, C) = sum over the B images of x (B, T, C), image by image in order. */
void vt_sum_images(float *out, const float *x, int B, int T, int C, int threads);

#endif
