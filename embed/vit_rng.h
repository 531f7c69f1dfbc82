/* Deterministic pseudo-random numbers (splitmix64) for weight init and for training's random
 * choices (stochastic depth): a stream is a pure function of its seed, on every platform. */
#ifndef LVD_EMBED_VIT_RNG_H
#define LVD_EMBED_VIT_RNG_H

#include <math.h>
#include <stdint.h>

typedef struct lvd_rng {
    uint64_t state;
} lvd_rng;

static inline uint64_t lvd_rng_next(lvd_rng *r)
{
    uint64_t z = (r->state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in (0, 1). */
static inline double lvd_rng_uniform(lvd_rng *r)
{
    return ((double)(lvd_rng_next(r) >> 11) + 0.5) / 9007199254740992.0;
}

/* Uniform integer in [0, n), n >= 1. */
static inline int lvd_rng_below(lvd_rng *r, int n)
{
    int v = (int)(lvd_rng_uniform(r) * n);
    return v < n ? v : n - 1;
}

/* Standard normal (Box-Muller; the radius draw comes first). */
static inline double lvd_rng_normal(lvd_rng *r)
{
    double radius = sqrt(-2.0 * log(lvd_rng_uniform(r)));
    return radius * cos(6.283185307179586 * lvd_rng_uniform(r));
}

#endif
