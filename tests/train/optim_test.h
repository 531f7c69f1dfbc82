/* Helpers of the optimization and checkpoint tests: a deterministic RNG, random buffers,
 * relative errors and temporary folders. */
#ifndef LVD_TESTS_TRAIN_OPTIM_TEST_H
#define LVD_TESTS_TRAIN_OPTIM_TEST_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "tests/check.h"
#include "tests/check_run.h"

static inline uint64_t ot_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [-scale, scale). */
static inline float ot_uniform(uint64_t *s, float scale)
{
    return (float)(((double)(ot_next(s) >> 11) / 9007199254740992.0 * 2 - 1) * scale);
}

static inline void ot_fill(float *x, size_t n, uint64_t *s, float scale)
{
    for (size_t i = 0; i < n; i++)
        x[i] = ot_uniform(s, scale);
}

/* ||a - b|| / ||b|| (0 when both vanish). */
static inline double ot_rel(const float *a, const double *b, size_t n)
{
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        r += b[i] * b[i];
    }
    return r > 0 ? sqrt(d / r) : sqrt(d);
}

/* A fresh temporary folder (check_tmpdir's, in a static buffer so callers need not free it). */
static inline char *ot_tmpdir(void)
{
    static char dir[512];
    char *d = check_tmpdir("lvd-train-test");
    snprintf(dir, sizeof dir, "%s", d);
    free(d);
    return dir;
}

#endif
