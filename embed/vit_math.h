/* Branch-free float approximations of exp and erf, and the GELU and SiLU built on them, inline so
 * that the layer loops calling them vectorize (libm's expf and erff are scalar calls; erff costs
 * ~30 ns here, more than the matrix products around it). Public: the training path
 * (train/vit_train.h) differentiates exactly these functions. */
#ifndef LVD_EMBED_VIT_MATH_H
#define LVD_EMBED_VIT_MATH_H

#include <stdint.h>
#include <string.h>

/* exp(x) with relative error below 2e-7 (Cephes expf polynomial); x is clamped to
 * [-87, 88] so the result stays a normal float. */
static inline float vit_expf(float x)
{
    const float round_magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    float n = (x * 1.44269504088896341f + round_magic) - round_magic;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    /* A NaN x gives a NaN p; its exponent is then irrelevant, and converting NaN to int would
     * be undefined. */
    int32_t ni = n == n ? (int32_t)n : 0;
    uint32_t bits = (uint32_t)(ni + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* erf(x) with absolute error below 5e-7 in float (6.5e-8 in exact arithmetic), so GELU is off by
 * at most 2.5e-7 * |x|: odd/even rational approximation on [-4, 4] (outside,
 * erf is +-1 in float), the coefficients of Eigen's generic_fast_erf_float. */
static inline float vit_erff(float x)
{
    x = x < -4.0f ? -4.0f : x;
    x = x > 4.0f ? 4.0f : x;
    float x2 = x * x;
    float p = -2.72614225801306e-10f;
    p = p * x2 + 2.77068142495902e-08f;
    p = p * x2 + -2.10102402082508e-06f;
    p = p * x2 + -5.69250639462346e-05f;
    p = p * x2 + -7.34990630326855e-04f;
    p = p * x2 + -2.95459980854025e-03f;
    p = p * x2 + -1.60960333262415e-02f;
    float q = -1.45660718464996e-05f;
    q = q * x2 + -2.13374055278905e-04f;
    q = q * x2 + -1.68282697438203e-03f;
    q = q * x2 + -7.37332916720468e-03f;
    q = q * x2 + -1.42647390514189e-02f;
    return x * p / q;
}

/* Exact (erf) GELU: x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)), not the tanh form. */
static inline float vit_gelu(float x)
{
    return 0.5f * x * (1.0f + vit_erff(x * 0.70710678118654752f));
}

/* SiLU: x * sigmoid(x). */
static inline float vit_silu(float x)
{
    return x / (1.0f + vit_expf(-x));
}

#endif
