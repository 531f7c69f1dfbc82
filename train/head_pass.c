/* The DINO head (train/head.h): lvd_head_forward and lvd_head_backward. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "embed/vit_layers.h"
#include "embed/vit_math.h"
#include "train/head.h"
#include "train/train_simd.h"

#define NORM_EPS 1e-12f /* F.normalize's eps for float32 */

/* Exact GELU x * Phi(x) and its derivative Phi(x) + x * phi(x). */
static inline float gelu(float x)
{
    return 0.5f * x * (1.0f + vit_erff(x * 0.70710678118654752f));
}

static inline float gelu_grad(float x)
{
    float cdf = 0.5f * (1.0f + vit_erff(x * 0.70710678118654752f));
    return cdf + x * 0.39894228040143268f * vit_expf(-0.5f * x * x);
}

/* pre (o) += bias (may be NULL); act (o) = gelu(pre) unless act is NULL. */
LVD_TRAIN_SIMD static void bias_gelu_row(float *pre, float *act, const float *bias, int o)
{
    if (bias)
        for (int j = 0; j < o; j++)
            pre[j] += bias[j];
    if (act)
        for (int j = 0; j < o; j++)
            act[j] = gelu(pre[j]);
}

/* d (o) *= gelu'(pre (o)). */
LVD_TRAIN_SIMD static void gelu_backward_row(float *d, const float *pre, int o)
{
    for (int j = 0; j < o; j++)
        d[j] *= gelu_grad(pre[j]);
}

LVD_TRAIN_SIMD static double dot_row(const float *a, const float *b, int n)
{
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (int j = 0; j < n; j++)
        s += (double)a[j] * (double)b[j];
    return s;
}

/* db (o) += column sums of dy (n, o), summed in double in row order (any thread count gives the
 * same bits). */
static void colsum_add(float *db, const float *dy, int n, int o, int threads)
{
    int blocks = (o + 63) / 64;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int b = 0; b < blocks; b++) {
        double acc[64] = {0};
        int c0 = b * 64, w = o - c0 < 64 ? o - c0 : 64;
        for (int r = 0; r < n; r++) {
            const float *row = dy + (size_t)r * (size_t)o + c0;
            for (int c = 0; c < w; c++)
                acc[c] += row[c];
        }
        for (int c = 0; c < w; c++)
            db[c0 + c] += (float)acc[c];
    }
}

static int nthreads(const lvd_head *h)
{
    return h->threads > 0 ? h->threads : omp_get_max_threads();
}

static int same_config(const lvd_head_config *a, const lvd_head_config *b)
{
    return a->in_dim == b->in_dim && a->hidden_dim == b->hidden_dim &&
           a->bottleneck_dim == b->bottleneck_dim && a->out_dim == b->out_dim &&
           a->nlayers == b->nlayers && a->mlp_bias == b->mlp_bias;
}

/* w_last = g * v / ||v|| per row, v_norm = ||v||. */
static void weight_norm(lvd_head *h, int threads)
{
    int K = h->cfg.out_dim, B = h->cfg.bottleneck_dim;
    const float *g = h->params + h->g_off, *v = h->params + h->v_off;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int k = 0; k < K; k++) {
        const float *vk = v + (size_t)k * (size_t)B;
        float nrm = (float)sqrt(dot_row(vk, vk, B));
        float s = g[k] / nrm;
        float *wk = h->w_last + (size_t)k * (size_t)B;
        for (int j = 0; j < B; j++)
            wk[j] = s * vk[j];
        h->v_norm[k] = nrm;
    }
    h->w_ready = 1;
}

int lvd_head_forward(lvd_head *h, lvd_head_acts *a, const float *x, int n, float *out,
                     lvd_error *err)
{
    const lvd_head_config *c = &h->cfg;
    if (!same_config(c, &a->cfg))
        return lvd_fail(err, "dino head: activations made for another head configuration");
    if (n < 0 || n > a->max_rows)
        return lvd_fail(err, "dino head: forward on %d rows (activations hold 0 to %d)", n,
                        a->max_rows);
    int threads = nthreads(h);
    weight_norm(h, threads);
    a->n = n;
    if (n == 0)
        return 0;
    int H = c->hidden_dim, Bn = c->bottleneck_dim, K = c->out_dim, L = c->nlayers;
    memcpy(a->x, x, (size_t)n * (size_t)c->in_dim * sizeof *x);
    const float *in = a->x;
    int in_dim = c->in_dim;
    for (int i = 0; i < L; i++) {
        int last = i == L - 1, o = last ? Bn : H;
        float *y = last ? a->z : a->pre + (size_t)i * (size_t)n * (size_t)H;
        float *act = last ? NULL : a->act + (size_t)i * (size_t)n * (size_t)H;
        const float *bias = c->mlp_bias ? h->params + h->b_off[i] : NULL;
        lvd_vit_gemm_pack_t(h->w_pack, h->params + h->w_off[i], o, in_dim, in_dim, threads);
        lvd_vit_linear_forward(y, in, in_dim, h->w_pack, NULL, n, in_dim, o, threads);
#pragma omp parallel for num_threads(threads) schedule(static)
        for (int r = 0; r < n; r++)
            bias_gelu_row(y + (size_t)r * (size_t)o, act ? act + (size_t)r * (size_t)o : NULL, bias,
                          o);
        in = act;
        in_dim = o;
    }
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int r = 0; r < n; r++) {
        const float *z = a->z + (size_t)r * (size_t)Bn;
        float *u = a->u + (size_t)r * (size_t)Bn;
        float nrm = (float)sqrt(dot_row(z, z, Bn));
        float s = 1.0f / (nrm > NORM_EPS ? nrm : NORM_EPS);
        for (int j = 0; j < Bn; j++)
            u[j] = z[j] * s;
        a->z_norm[r] = nrm;
    }
    lvd_vit_gemm_pack_t(h->w_pack, h->w_last, K, Bn, Bn, threads);
    lvd_vit_linear_forward(out, a->u, Bn, h->w_pack, NULL, n, Bn, K, threads);
    return 0;
}

/* grads of g and v += the weight-norm backward of dW = h->dw_last. */
static void weight_norm_backward(lvd_head *h, float *grads, int threads)
{
    int K = h->cfg.out_dim, B = h->cfg.bottleneck_dim;
    const float *g = h->params + h->g_off, *v = h->params + h->v_off;
    float *dg = grads + h->g_off, *dv = grads + h->v_off;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int k = 0; k < K; k++) {
        const float *vk = v + (size_t)k * (size_t)B, *dwk = h->dw_last + (size_t)k * (size_t)B;
        float *dvk = dv + (size_t)k * (size_t)B;
        float inv = 1.0f / h->v_norm[k];
        /* dL/dg = dW . v / ||v||; dL/dv = g / ||v|| (dW - dL/dg v / ||v||). */
        float dgk = (float)(dot_row(dwk, vk, B) * inv);
        float s = g[k] * inv, t = dgk * inv;
        for (int j = 0; j < B; j++)
            dvk[j] += s * (dwk[j] - t * vk[j]);
        dg[k] += dgk;
    }
}

int lvd_head_backward(lvd_head *h, const lvd_head_acts *a, const float *dout, float *grads,
                      float *dx, lvd_error *err)
{
    const lvd_head_config *c = &h->cfg;
    if (!same_config(c, &a->cfg) || a->n < 0 || !h->w_ready)
        return lvd_fail(err, "dino head: backward without a forward of this head");
    int n = a->n;
    if (n == 0)
        return 0;
    int threads = nthreads(h);
    int H = c->hidden_dim, Bn = c->bottleneck_dim, K = c->out_dim, L = c->nlayers;
    memset(h->dw_last, 0, (size_t)K * (size_t)Bn * sizeof *h->dw_last);
    lvd_vit_gemm_wgrad(h->dw_last, dout, K, a->u, Bn, h->w_pack, n, Bn, K, threads);
    weight_norm_backward(h, grads, threads);
    float *dy = a->d0, *dnext = a->d1;
    lvd_vit_gemm_pack_n(h->w_pack, h->w_last, K, Bn, Bn, threads);
    lvd_vit_linear_forward(dy, dout, K, h->w_pack, NULL, n, K, Bn, threads);
    /* F.normalize backward: d z = (du - u (u . du)) / ||z||, or du / eps where ||z|| <= eps. */
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int r = 0; r < n; r++) {
        float *d = dy + (size_t)r * (size_t)Bn;
        const float *u = a->u + (size_t)r * (size_t)Bn;
        float nrm = a->z_norm[r];
        if (nrm > NORM_EPS) {
            float p = (float)dot_row(u, d, Bn), s = 1.0f / nrm;
            for (int j = 0; j < Bn; j++)
                d[j] = (d[j] - u[j] * p) * s;
        } else {
            for (int j = 0; j < Bn; j++)
                d[j] /= NORM_EPS;
        }
    }
    for (int i = L - 1; i >= 0; i--) {
        int o = i == L - 1 ? Bn : H, in_dim = i == 0 ? c->in_dim : H;
        const float *in = i == 0 ? a->x : a->act + (size_t)(i - 1) * (size_t)n * (size_t)H;
        const float *w = h->params + h->w_off[i];
        lvd_vit_gemm_wgrad(grads + h->w_off[i], dy, o, in, in_dim, h->w_pack, n, in_dim, o,
                           threads);
        if (c->mlp_bias)
            colsum_add(grads + h->b_off[i], dy, n, o, threads);
        if (i == 0 && !dx)
            break;
        lvd_vit_gemm_pack_n(h->w_pack, w, o, in_dim, in_dim, threads);
        lvd_vit_linear_forward(i == 0 ? dx : dnext, dy, o, h->w_pack, NULL, n, o, in_dim, threads);
        if (i == 0)
            break;
        const float *pre = a->pre + (size_t)(i - 1) * (size_t)n * (size_t)H;
#pragma omp parallel for num_threads(threads) schedule(static)
        for (int r = 0; r < n; r++)
            gelu_backward_row(dnext + (size_t)r * (size_t)H, pre + (size_t)r * (size_t)H, H);
        float *t = dy;
        dy = dnext;
        dnext = t;
    }
    return 0;
}
