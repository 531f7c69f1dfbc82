/* ViT layer kernels, forward only, public: the inference forward (embed/vit_forward.c) is built
 * from them and the training path (train/vit_train.h) reuses them, so that both compute the same
 * numbers, and writes the backward of each next to its own activations.
 *
 * Every buffer is row-major with one row per token, images one after the other (B images of T
 * tokens are B * T rows). Linear weights are (out, in) as in PyTorch. Functions taking `threads`
 * split their rows (or images and heads) over that many OpenMP threads and expect OpenBLAS to be
 * single-threaded (openblas_set_num_threads(1)): each thread calls sgemm on its own rows. Results
 * are bitwise deterministic for a fixed thread count. The scalar math (exp, erf, GELU, SiLU) is
 * in embed/vit_math.h. */
#ifndef LVD_EMBED_VIT_LAYERS_H
#define LVD_EMBED_VIT_LAYERS_H

#include <stddef.h>
#include <stdint.h>

/* out (BT, OC) = inp (BT, C) @ w (OC, C)^T + bias (OC, may be NULL); lda is inp's row stride. */
void lvd_vit_matmul_forward(float *out, const float *inp, int lda, const float *w,
                            const float *bias, int BT, int C, int OC, int threads);

/* o (C) = LayerNorm of one row x (C) with weight w and bias b; returns the row's mean and stores
 * 1 / sqrt(var + eps) in *rstd (biased variance, as PyTorch). */
float lvd_vit_layernorm_row(float *o, const float *x, const float *w, const float *b, int C,
                            float eps, float *rstd);

/* out (N, C) = LayerNorm over each row of inp (N, C); mean and rstd (N) are stored if not NULL. */
void lvd_vit_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                               const float *w, const float *b, int N, int C, float eps,
                               int threads);

/* Floats of attention scratch one thread needs for T tokens and heads of width hd. */
size_t lvd_vit_attention_scratch(int T, int hd);

/* Multi-head self-attention of B images: qkv (B, T, 3D; rows q, k, v, each head-major) ->
 * out (B, T, D), softmax(q k^T / sqrt(hd)) v per image and head, q scaled before the product as
 * the reference does, both products on the packed kernel below. Scores more than 60 below their
 * row's maximum count as 0 (they would be subnormal and slow the products down). att is scratch
 * of threads * lvd_vit_attention_scratch(T, hd) floats, 64-byte aligned. */
void lvd_vit_attention_forward(float *out, float *att, const float *qkv, int B, int T, int D,
                               int heads, int threads);

/* h (BT, hidden) = exact GELU of h + bias (fc1's bias, added here: one pass fewer), in place. */
void lvd_vit_gelu_forward(float *h, const float *bias, int BT, int hidden, int threads);

/* h (BT, 2 * hidden): the first half of each row becomes silu(h[:, :hidden] + bias[:hidden]) *
 * (h[:, hidden:] + bias[hidden:]) (w12's bias), in place; the second half is left as scratch. */
void lvd_vit_swiglu_forward(float *h, const float *bias, int BT, int hidden, int threads);

/* x (N, C) += ls (C) * (branch (N, C) + bias (C)), row by row: the LayerScale'd residual add,
 * with the bias of the linear layer that produced branch. */
void lvd_vit_residual_forward(float *x, const float *branch, const float *bias, const float *ls,
                              int N, int C, int threads);

/* im2col of B images x (B, 3, H, W) for patch P (H, W multiples of P): cols (B, N, 3 * P * P),
 * N = (H / P) * (W / P) patches row-major, each in (c, ky, kx) order as the conv weight
 * (D, 3, P, P), so the patch embedding is cols @ weight^T + bias. */
void lvd_vit_im2col(float *cols, const float *x, int B, int H, int W, int P, int threads);

/* Patch embedding: cols receives the im2col patches, emb (B, N, D) the embeddings. */
void lvd_vit_patch_embed_forward(float *emb, float *cols, const float *x, int B, int H, int W,
                                 int P, const float *w, const float *bias, int D, int threads);

/* Token preparation of B images: x (B, T, D), T = 1 + R + N, = [cls + pos[0], reg (R, D) without
 * positions, then for each patch n (emb (B, N, D), or mask_token where mask (B, N) is nonzero;
 * mask may be NULL) + pos[1 + n]]. pos is the (1 + N, D) table for the patch grid. */
void lvd_vit_embed_tokens(float *x, const float *emb, const uint8_t *mask, const float *cls,
                          const float *reg, const float *mask_token, const float *pos, int B, int N,
                          int R, int D, int threads);

/* The positional-embedding resize is linear and separable: table (gh * gw, D) = Wy (gh, G) and
 * Wx (gw, G) applied along the two axes of the stored (G * G, D) grid. */

/* The (out, in) resampling matrix of one axis: antialias 0 is bicubic a = -0.75 with clamped
 * borders driven by the scale factor (out + 0.1) / in (models without registers); antialias 1
 * is antialiased bicubic a = -0.5 to the exact size, rows normalized (register models). */
void lvd_vit_pos_axis_matrix(float *mat, int in, int out, int antialias);

/* dst (gh * gw, D) = resize of src (G * G, D) with the axis matrices wy (gh, G) and wx (gw, G);
 * tmp is scratch of G * gw * D floats. */
void lvd_vit_pos_resize(float *dst, float *tmp, const float *src, int G, int gh, int gw, int D,
                        const float *wy, const float *wx);

/* The transpose: dsrc (G * G, D) += resize^T of ddst (gh * gw, D) (the gradient of the stored
 * grid given the gradient of the resized table); tmp is scratch of G * gw * D floats. */
void lvd_vit_pos_resize_backward(float *dsrc, float *tmp, const float *ddst, int G, int gh, int gw,
                                 int D, const float *wy, const float *wx);

/* Packed products, for the linear layers of the training path: the weight operand B (K, N) is
 * packed once into panels (lvd_vit_gemm_packed_size(N, K) floats) and reused by every call, the
 * activation operand is read in place (no per-call packing). Each output element is the bias (or
 * 0) plus the K terms in increasing k, one fused multiply-add each, so a row's result does not
 * depend on the other rows of the call (row splits over threads give the same bits). AVX-512
 * (two panels per tile) or AVX2 + FMA when the CPU has them, else a portable loop (slow): the
 * same terms in the same order, so the same bits on every path. */

/* Columns per panel of the packed form: columns [16 p, 16 p + 16) of B are the K * 16 floats
 * from p * 16 * K, so packing a range of whole panels of B packs that slice of the result. */
#define LVD_VIT_GEMM_PANEL 16

/* Floats of the packed form of a (K, N) operand. */
size_t lvd_vit_gemm_packed_size(int N, int K);

/* bp = packed B = w^T for w (N, K; row stride ld) (a Linear weight: out = in @ w^T). threads
 * <= 1 packs on the calling thread. */
void lvd_vit_gemm_pack_t(float *bp, const float *w, int N, int K, int ld, int threads);

/* bp = packed B = w for w (K, N; row stride ld) (a Linear input gradient: din = dout @ w). */
void lvd_vit_gemm_pack_n(float *bp, const float *w, int K, int N, int ld, int threads);

/* c (M, N; row stride ldc) = bias (N; NULL: 0) + a (M, K; row stride lda) @ B (packed by one of
 * the above), on the calling thread. */
void lvd_vit_gemm(float *c, int ldc, const float *a, int lda, const float *bp, const float *bias,
                  int M, int N, int K);

/* lvd_vit_gemm with the rows split over the threads: out (BT, OC) = bias (OC; NULL: 0) + inp
 * (BT, C; row stride lda) @ B (C, OC, packed by one of the above: a Linear's w^T by
 * lvd_vit_gemm_pack_t, its input gradient's w by lvd_vit_gemm_pack_n). Each row's result is
 * independent of the split, so any thread count gives the same bits. */
void lvd_vit_linear_forward(float *out, const float *inp, int lda, const float *packed,
                            const float *bias, int BT, int C, int OC, int threads);

/* Floats of scratch for lvd_vit_gemm_wgrad of a (OC, C) weight. */
size_t lvd_vit_gemm_wgrad_scratch(int C, int OC);

/* The weight gradient of a Linear: dw (OC, C) += dout^T @ inp for dout (BT, OC; row stride ldo)
 * and inp (BT, C; stride lda), over `threads` (output rows split between them, the BT terms of
 * every element summed in increasing order, then the sum added to dw, so any thread count gives
 * the same bits and a second call with the same operands doubles a zero-started dw exactly); ws
 * is lvd_vit_gemm_wgrad_scratch(C, OC) floats, 64-byte aligned. */
void lvd_vit_gemm_wgrad(float *dw, const float *dout, int ldo, const float *inp, int lda, float *ws,
                        int BT, int C, int OC, int threads);

#endif
