/* Fixed-seed synthetic embeddings for the index tests: a stateless generator, so row i of a
 * stream depends only on (seed, i) and any row can be regenerated alone. */
#ifndef LVD_TESTS_INDEX_SYNTH_H
#define LVD_TESTS_INDEX_SYNTH_H

#include <math.h>
#include <stdint.h>

static inline uint64_t synth_mix(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in (0, 1) from (seed, i, j). */
static inline double synth_uniform(uint64_t seed, uint64_t i, uint64_t j)
{
    uint64_t z = synth_mix(synth_mix(seed ^ synth_mix(i)) + j);
    return ((double)(z >> 11) + 0.5) / 9007199254740992.0;
}

/* Standard normal (Box-Muller) from (seed, i, j). */
static inline float synth_gauss(uint64_t seed, uint64_t i, uint64_t j)
{
    double u = synth_uniform(seed, i, 2 * j), v = synth_uniform(seed, i, 2 * j + 1);
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

static inline void synth_normalize(float *x, int d)
{
    double s = 0.0;
    for (int j = 0; j < d; j++)
        s += (double)x[j] * x[j];
    float inv = (float)(1.0 / sqrt(s));
    for (int j = 0; j < d; j++)
        x[j] *= inv;
}

/* A random unit row: stream seed, row i. */
static inline void synth_unit(float *x, int d, uint64_t seed, uint64_t i)
{
    for (int j = 0; j < d; j++)
        x[j] = synth_gauss(seed, i, (uint64_t)j);
    synth_normalize(x, d);
}

static inline double synth_dot(const float *a, const float *b, int d)
{
    double s = 0.0;
    for (int j = 0; j < d; j++)
        s += (double)a[j] * b[j];
    return s;
}

/* A unit row whose cosine to the unit row base is exactly c (up to float rounding): base mixed
 * with a random direction made orthogonal to it. */
static inline void synth_at_cos(float *x, const float *base, int d, double c, uint64_t seed,
                                uint64_t i)
{
    synth_unit(x, d, seed, i);
    double p = synth_dot(x, base, d);
    for (int j = 0; j < d; j++)
        x[j] -= (float)(p * base[j]);
    synth_normalize(x, d);
    double s = sqrt(1.0 - c * c);
    for (int j = 0; j < d; j++)
        x[j] = (float)(c * base[j] + s * x[j]);
    synth_normalize(x, d);
}

#endif
