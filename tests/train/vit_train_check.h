/* Helpers shared by the trainable-ViT tests: comparisons, deterministic inputs, perturbed
 * weights and the test loss sum(cls * w_cls) + sum(patch * w_patch) (+ sum(reg * w_reg)). */
#ifndef LVD_TESTS_TRAIN_VIT_TRAIN_CHECK_H
#define LVD_TESTS_TRAIN_VIT_TRAIN_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "embed/vit_rng.h"
#include "tests/check.h"
#include "train/vit_train.h"

/* ||a - b|| / ||b|| over n values (||a - b|| when b is 0). */
static inline double vt_rel(const float *a, const float *b, size_t n)
{
    double nd = 0.0, nr = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        nd += d * d;
        nr += (double)b[i] * b[i];
    }
    return nr > 0.0 ? sqrt(nd / nr) : sqrt(nd);
}

static inline double vt_max_abs_diff(const float *a, const float *b, size_t n)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        m = d > m ? d : m;
    }
    return m;
}

/* The forward tolerance of the reference README: max|out - ref| <= 1e-4 * max(1, max|ref|). */
static inline double vt_check_forward(const char *label, const float *out, const float *ref,
                                      size_t n)
{
    double maxr = 0.0;
    for (size_t i = 0; i < n; i++) {
        maxr = fabs(ref[i]) > maxr ? fabs(ref[i]) : maxr;
    }
    double maxd = vt_max_abs_diff(out, ref, n), rel = vt_rel(out, ref, n);
    double tol = 1e-4 * (maxr > 1.0 ? maxr : 1.0);
    printf("  %-40s max|d| %.2e (tol %.1e) rel %.2e\n", label, maxd, tol, rel);
    CHECK_MSG(maxd <= tol, "%s: max|out - ref| %.3e > %.3e", label, maxd, tol);
    return rel;
}

/* Uniform values in [-amp, amp). */
static inline void vt_fill(float *x, size_t n, uint64_t seed, float amp)
{
    lvd_rng r = {seed};
    for (size_t i = 0; i < n; i++) {
        x[i] = (float)((2.0 * lvd_rng_uniform(&r) - 1.0) * amp);
    }
}

/* Perturbs every parameter so that none is at a special value (norm weights near 1, biases,
 * LayerScale and tokens of order 0.1, weights as initialized plus noise). */
static inline void vt_perturb(lvd_vit_train *m, uint64_t seed)
{
    const lvd_param_layout *l = lvd_vit_train_layout(m);
    float *p = lvd_vit_train_params(m);
    lvd_rng r = {seed};
    for (int i = 0; i < l->n; i++) {
        const lvd_param_tensor *t = &l->t[i];
        const char *name = t->name;
        size_t len = strlen(name);
        int is_norm_w = strstr(name, "norm") && len > 7 && strcmp(name + len - 7, ".weight") == 0;
        for (size_t k = 0; k < t->numel; k++) {
            double u = 2.0 * lvd_rng_uniform(&r) - 1.0;
            float *v = &p[t->offset + k];
            if (is_norm_w) {
                *v = (float)(1.0 + 0.3 * u);
            } else if (strstr(name, "gamma")) {
                *v = (float)(0.3 + 0.2 * u);
            } else if (strstr(name, "bias") || strstr(name, "token")) {
                *v = (float)(0.1 * u);
            } else {
                *v += (float)(0.02 * u);
            }
        }
    }
}

/* loss = sum(cls * wc) + sum(patch * wp) + sum(reg * wr) accumulated in double. */
static inline double vt_loss(const float *cls, const float *wc, size_t nc, const float *patch,
                             const float *wp, size_t np, const float *reg, const float *wr,
                             size_t nr)
{
    double s = 0.0;
    for (size_t i = 0; i < nc; i++) {
        s += (double)cls[i] * wc[i];
    }
    for (size_t i = 0; i < np; i++) {
        s += (double)patch[i] * wp[i];
    }
    for (size_t i = 0; reg && i < nr; i++) {
        s += (double)reg[i] * wr[i];
    }
    return s;
}

/* Forward of x (B, 3, H, W) through a grad pass and a forward-only pass; outputs from the grad
 * pass, and a check that both agree bitwise. */
static inline int vt_forward_both(lvd_vit_train *m, const float *x, int B, int H, int W,
                                  const uint8_t *mask, float *cls, float *patch, float *reg)
{
    lvd_error err = {0};
    lvd_vit_pass *p = NULL, *q = NULL;
    int rc = lvd_vit_pass_create(m, B, H, W, 1, &p, &err);
    rc = rc ? rc : lvd_vit_pass_create(m, B, H, W, 0, &q, &err);
    lvd_vit_train_outputs o = {.cls = cls, .patch = patch, .reg = reg};
    rc = rc ? rc : lvd_vit_train_forward(m, p, x, mask, NULL, &o, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc == 0) {
        const lvd_vit_info *a = lvd_vit_train_info(m);
        size_t n = (size_t)B * p->T * a->dim;
        float *keep = malloc(sizeof(float) * n);
        memcpy(keep, p->out, sizeof(float) * n);
        rc = lvd_vit_train_forward(m, q, x, mask, NULL, NULL, &err);
        CHECK_MSG(rc == 0, "%s", err.msg);
        CHECK_MSG(rc != 0 || memcmp(keep, q->out, sizeof(float) * n) == 0,
                  "forward-only pass differs from the grad pass");
        free(keep);
    }
    lvd_vit_pass_free(p);
    lvd_vit_pass_free(q);
    return rc;
}

#endif
