/* Cross-entropy losses (train/loss.h): lvd_dino_loss, lvd_ibot_loss and lvd_ibot_masked_rows. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>

#include "embed/vit_math.h"
#include "train/loss.h"
#include "train/train_simd.h"

#define MAX_K (1 << 24)

LVD_TRAIN_SIMD static float row_max(const float *s, int K)
{
    float m = -INFINITY;
    for (int k = 0; k < K; k++)
        m = s[k] > m ? s[k] : m;
    return m;
}

/* Returns sum_k exp((s - m) * inv) in double. */
LVD_TRAIN_SIMD static double row_sum_exp(const float *s, float m, float inv, int K)
{
    double e = 0.0;
#pragma omp simd reduction(+ : e)
    for (int k = 0; k < K; k++)
        e += vit_expf((s[k] - m) * inv);
    return e;
}

/* Returns sum_k t * (s - m), and sum_k t in *tsum. */
LVD_TRAIN_SIMD static double row_target_dot(const float *s, const float *t, float m, int K,
                                            double *tsum)
{
    double d = 0.0, ts = 0.0;
#pragma omp simd reduction(+ : d, ts)
    for (int k = 0; k < K; k++) {
        d += t[k] * (s[k] - m);
        ts += t[k];
    }
    *tsum = ts;
    return d;
}

/* ds = c * exp((s - m) * inv) (ds may be s). */
LVD_TRAIN_SIMD static void row_grad_softmax(float *ds, const float *s, float m, float inv, float c,
                                            int K)
{
    for (int k = 0; k < K; k++)
        ds[k] = c * vit_expf((s[k] - m) * inv);
}

/* ds += c * t. */
LVD_TRAIN_SIMD static void row_axpy(float *ds, const float *t, float c, int K)
{
    for (int k = 0; k < K; k++)
        ds[k] += c * t[k];
}

/* The shared soft cross-entropy: loss = -coef * sum_b w_b sum_j sum_k t[j][b, k]
 * log_softmax(s[b] / temp)_k (w_b = 1 without weight); ds (written, may be s) = d loss / d s. */
static int soft_ce(const char *what, const float *s, const float *const *t, int n_t,
                   const float *weight, int n, int K, float temp, double coef, double *loss,
                   float *ds, lvd_error *err)
{
    *loss = 0.0;
    if (n == 0)
        return 0;
    double *row_loss = malloc((size_t)n * sizeof *row_loss);
    if (!row_loss)
        return lvd_fail(err, "%s: out of memory for %d rows", what, n);
    float inv = 1.0f / temp;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < n; b++) {
        size_t off = (size_t)b * (size_t)K;
        const float *sb = s + off;
        float m = row_max(sb, K);
        double z = row_sum_exp(sb, m, inv, K);
        double dot = 0.0, tsum = 0.0;
        for (int j = 0; j < n_t; j++) {
            double ts;
            dot += row_target_dot(sb, t[j] + off, m, K, &ts);
            tsum += ts;
        }
        double w = weight ? weight[b] : 1.0, logz = log(z);
        /* sum_k T_k log_softmax_k = sum_k T_k (s_k - m) / temp - sum_k T_k log z */
        row_loss[b] = -coef * w * (dot * inv - tsum * logz);
        if (ds) {
            /* d/ds_k = -coef w / temp (T_k - sum(T) softmax_k) */
            double a = -coef * w / temp;
            row_grad_softmax(ds + off, sb, m, inv, (float)(-a * tsum / z), K);
            for (int j = 0; j < n_t; j++)
                row_axpy(ds + off, t[j] + off, (float)a, K);
        }
    }
    double sum = 0.0;
    for (int b = 0; b < n; b++)
        sum += row_loss[b];
    free(row_loss);
    *loss = sum;
    return 0;
}

static int check(const char *what, int n, int min_n, int K, float temp, lvd_error *err)
{
    if (n < min_n || K < 1 || K > MAX_K)
        return lvd_fail(err, "%s: bad size %d x %d", what, n, K);
    if (!(temp > 0.0f) || !isfinite(temp))
        return lvd_fail(err, "%s: temperature %g (must be positive)", what, (double)temp);
    return 0;
}

int lvd_dino_loss(const float *s, const float *const *t, int n_t, int n, int K, float temp,
                  double scale, double *loss, float *ds, lvd_error *err)
{
    *loss = 0.0;
    if (check("dino loss", n, 1, K, temp, err) != 0)
        return -1;
    if (n_t < 1 || n_t > 1024)
        return lvd_fail(err, "dino loss: %d teacher crops (1 to 1024 allowed)", n_t);
    for (int j = 0; j < n_t; j++)
        if (!t[j])
            return lvd_fail(err, "dino loss: teacher crop %d missing", j);
    return soft_ce("dino loss", s, t, n_t, NULL, n, K, temp, scale / n, loss, ds, err);
}

int lvd_ibot_loss(const float *s, const float *t, const float *weight, int n, int K, float temp,
                  int n_images, double scale, double *loss, float *ds, lvd_error *err)
{
    *loss = 0.0;
    if (check("ibot loss", n, 0, K, temp, err) != 0)
        return -1;
    if (n_images < 1)
        return lvd_fail(err, "ibot loss: %d images", n_images);
    if (n > 0 && !weight)
        return lvd_fail(err, "ibot loss: no mask weights");
    const float *tt[1] = {t};
    return soft_ce("ibot loss", s, tt, 1, weight, n, K, temp, scale / n_images, loss, ds, err);
}

int lvd_ibot_masked_rows(const uint8_t *masks, int n_images, int n_patches, int *idx, float *weight,
                         int *n_masked, lvd_error *err)
{
    *n_masked = 0;
    if (n_images < 1 || n_patches < 1 || (int64_t)n_images * n_patches > INT32_MAX)
        return lvd_fail(err, "ibot masks: bad size %d x %d", n_images, n_patches);
    int m = 0;
    for (int i = 0; i < n_images; i++) {
        const uint8_t *row = masks + (size_t)i * (size_t)n_patches;
        int count = 0;
        for (int p = 0; p < n_patches; p++)
            count += row[p] != 0;
        float w = 1.0f / (float)(count > 1 ? count : 1);
        for (int p = 0; p < n_patches; p++) {
            if (!row[p])
                continue;
            idx[m] = i * n_patches + p;
            if (weight)
                weight[m] = w;
            m++;
        }
    }
    *n_masked = m;
    return 0;
}
