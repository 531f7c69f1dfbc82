/* The counter-based random numbers of train/augment.h (lvd_rng). */
#include "train/augment.h"

#define GOLDEN 0x9e3779b97f4a7c15ULL

/* SplitMix64's finalizer: a bijection of 64-bit words with full avalanche. */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Each word passes through the mixer before the next is folded in, so (a, b) and (b, a) differ. */
lvd_rng lvd_rng_stream(uint64_t seed, uint64_t a, uint64_t b, uint64_t c)
{
    uint64_t k = mix64(seed + GOLDEN);
    k = mix64(k ^ mix64(a + 2 * GOLDEN));
    k = mix64(k ^ mix64(b + 3 * GOLDEN));
    k = mix64(k ^ mix64(c + 4 * GOLDEN));
    return (lvd_rng){k, 0};
}

lvd_rng lvd_rng_split(const lvd_rng *r, uint64_t i)
{
    return (lvd_rng){mix64(r->key ^ mix64(i + 5 * GOLDEN)), 0};
}

uint64_t lvd_rng_u64(lvd_rng *r)
{
    return mix64(r->key + ++r->ctr * GOLDEN);
}

double lvd_rng_uniform(lvd_rng *r)
{
    return (double)(lvd_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
}

float lvd_rng_uniformf(lvd_rng *r, float lo, float hi)
{
    float u = (float)(lvd_rng_u64(r) >> 40) * (1.0f / 16777216.0f);
    return u * (hi - lo) + lo;
}

uint64_t lvd_rng_below(lvd_rng *r, uint64_t n)
{
    /* Rejects the lowest (2^64 mod n) values so every residue is equally likely. */
    uint64_t floor = (0 - n) % n, v;
    do {
        v = lvd_rng_u64(r);
    } while (v < floor);
    return v % n;
}
