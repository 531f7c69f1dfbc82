/* Helpers shared by the embed tests: reference paths and output comparison. */
#ifndef LVD_TESTS_EMBED_VIT_CHECK_H
#define LVD_TESTS_EMBED_VIT_CHECK_H

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "embed/vit.h"
#include "tests/check.h"

/* dir/name into buf. */
static inline const char *vit_ref_path(char *buf, size_t cap, const char *dir, const char *name)
{
    snprintf(buf, cap, "%s/%s", dir, name);
    return buf;
}

/* Checks out (ref->numel floats) against the reference tensor with the forward tolerance
 * max|out - ref| <= 1e-4 * max(1, max|ref|); prints the errors. Returns the relative error
 * ||out - ref|| / ||ref||. */
static inline double vit_compare(const char *label, const float *out, const lvd_tensor *ref)
{
    double maxd = 0.0, maxr = 0.0, nd = 0.0, nr = 0.0;
    for (int64_t i = 0; i < ref->numel; i++) {
        double d = fabs((double)out[i] - ref->data[i]);
        maxd = d > maxd ? d : maxd;
        maxr = fabs(ref->data[i]) > maxr ? fabs(ref->data[i]) : maxr;
        nd += d * d;
        nr += (double)ref->data[i] * ref->data[i];
    }
    double rel = nr > 0.0 ? sqrt(nd / nr) : sqrt(nd);
    double tol = 1e-4 * (maxr > 1.0 ? maxr : 1.0);
    printf("  %-44s max|d| %.2e (tol %.1e) rel %.2e\n", label, maxd, tol, rel);
    CHECK_MSG(maxd <= tol, "%s: max|out - ref| %.3e > %.3e", label, maxd, tol);
    return rel;
}

/* The tensor name of ts, failing the check when absent. */
static inline const lvd_tensor *vit_need(const lvd_tensors *ts, const char *name)
{
    const lvd_tensor *t = lvd_tensors_find(ts, name);
    CHECK_MSG(t != NULL, "reference tensor %s missing", name);
    return t;
}

#endif
