/* Helpers shared by the head and loss tests: gradient comparison against reference tensors,
 * finite differences and a seeded generator. Forward comparisons reuse tests/embed/vit_check.h. */
#ifndef LVD_TESTS_TRAIN_HEADS_CHECK_H
#define LVD_TESTS_TRAIN_HEADS_CHECK_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include "tests/check.h"
#include "tests/embed/vit_check.h"

/* Nonzero when all n values are finite. */
static inline int hc_finite(const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return 0;
    return 1;
}

/* vit_compare (forward tolerance) after checking that out is finite (a NaN compares as equal
 * there). */
static inline double hc_forward(const char *label, const float *out, const lvd_tensor *ref)
{
    CHECK_MSG(hc_finite(out, ref->numel), "%s: output not finite", label);
    CHECK_MSG(hc_finite(ref->data, ref->numel), "%s: reference not finite", label);
    return vit_compare(label, out, ref);
}

/* Checks a gradient against the reference with the 1e-3 relative tolerance
 * ||g - ref|| / ||ref||; returns that error. */
static inline double hc_grad(const char *label, const float *g, const lvd_tensor *ref)
{
    double nd = 0.0, nr = 0.0;
    for (int64_t i = 0; i < ref->numel; i++) {
        double d = (double)g[i] - ref->data[i];
        nd += d * d;
        nr += (double)ref->data[i] * ref->data[i];
    }
    double rel = nr > 0.0 ? sqrt(nd / nr) : sqrt(nd);
    if (!isfinite(rel))
        rel = INFINITY;
    printf("  %-44s grad rel %.2e (tol 1e-3)\n", label, rel);
    CHECK_MSG(rel <= 1e-3, "%s: relative gradient error %.3e > 1e-3", label, rel);
    return rel;
}

/* The reference tensor name with numel elements, failing the check otherwise. */
static inline const lvd_tensor *hc_need(const lvd_tensors *ts, const char *name, int64_t numel)
{
    const lvd_tensor *t = vit_need(ts, name);
    if (t && t->numel != numel) {
        CHECK_MSG(0, "reference tensor %s has %lld elements, expected %lld", name,
                  (long long)t->numel, (long long)numel);
        return NULL;
    }
    return t;
}

/* A small seeded generator (splitmix64): uniform in [-1, 1). */
static inline double hc_uniform(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (double)(z >> 11) / 4503599627370496.0 - 1.0;
}

/* x (n) uniform in [-scale, scale), rounded to multiples of 2^-12 so that steps of powers of two
 * from 2^-12 up are exact in float. */
static inline void hc_fill(float *x, size_t n, double scale, uint64_t *s)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(nearbyint(scale * hc_uniform(s) * 4096.0) / 4096.0);
}

/* Five-point central difference of f along element i of x (float, restored afterwards) with
 * step h (a power of two, so that x +- h is exact for hc_fill's values): (f(-2h) - 8 f(-h) +
 * 8 f(h) - f(2h)) / 12h, on losses summed in double. */
typedef double (*hc_fn)(void *ctx);
static inline double hc_diff(hc_fn f, void *ctx, float *x, size_t i, double h)
{
    float x0 = x[i];
    double v[4];
    const double at[4] = {-2.0, -1.0, 1.0, 2.0};
    for (int k = 0; k < 4; k++) {
        x[i] = (float)(x0 + at[k] * h);
        v[k] = f(ctx);
    }
    x[i] = x0;
    return (v[0] - 8.0 * v[1] + 8.0 * v[2] - v[3]) / (12.0 * h);
}

/* Compares analytic gradient g (n) with central differences of f over every element of x;
 * passes when |fd - g| <= tol * max|g| everywhere. Returns the worst error over max|g|. */
static inline double hc_fd_check(const char *label, hc_fn f, void *ctx, float *x, const float *g,
                                 size_t n, double h, double tol)
{
    double gmax = 0.0, worst = 0.0;
    for (size_t i = 0; i < n; i++)
        gmax = fabs(g[i]) > gmax ? fabs(g[i]) : gmax;
    for (size_t i = 0; i < n; i++) {
        double fd = hc_diff(f, ctx, x, i, h);
        double e = fabs(fd - g[i]) / (gmax > 0.0 ? gmax : 1.0);
        worst = e <= worst ? worst : e; /* a NaN sticks */
    }
    printf("  %-44s finite differences: worst %.2e of max|g| %.2e (tol %.0e)\n", label, worst, gmax,
           tol);
    CHECK_MSG(worst <= tol && gmax > 0.0 && isfinite(gmax),
              "%s: gradient differs from finite differences by %.3e", label, worst);
    return worst;
}

#endif
