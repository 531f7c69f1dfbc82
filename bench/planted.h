/* Synthetic pool embeddings with planted near-copies, shared by the dedup benchmarks: rows around
 * PLANTED_TOPICS random topics (cosine 0.5 to their topic, about 0.25 between rows of a topic, so
 * no two unplanted rows reach the 0.6 threshold), and every fifth row a copy at cosine 0.9 of one
 * of the four rows before it. The ideal dedup keeps 80% and joins exactly the planted pairs. Row
 * values depend only on (seed, id), so any subset is generated alike. */
#ifndef LVD_BENCH_PLANTED_H
#define LVD_BENCH_PLANTED_H

#include <stdint.h>
#include <stdlib.h>

#include "tests/index/synth.h"

#define PLANTED_TOPICS     4096
#define PLANTED_SEED_TOPIC 101
#define PLANTED_SEED_ROW   102
#define PLANTED_SEED_DUP   103

/* Row i is a planted copy of planted_parent(i) when i % 5 == 4; -1 otherwise. */
static inline int64_t planted_parent(int64_t i)
{
    if (i % 5 != 4)
        return -1;
    return i - 1 - (int64_t)(synth_uniform(PLANTED_SEED_DUP, (uint64_t)i, 0) * 4.0);
}

/* Fills x (n x d) as described above; -1 when the topics do not fit in memory. */
static inline int planted_rows(float *x, int64_t n, int d)
{
    float *topics = malloc((size_t)PLANTED_TOPICS * d * sizeof *topics);
    if (!topics)
        return -1;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < PLANTED_TOPICS; t++)
        synth_unit(topics + (size_t)t * d, d, PLANTED_SEED_TOPIC, (uint64_t)t);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        uint64_t t = (uint64_t)(synth_uniform(PLANTED_SEED_TOPIC, (uint64_t)i, 1) * PLANTED_TOPICS);
        if (planted_parent(i) < 0)
            synth_at_cos(x + (size_t)i * d, topics + t * d, d, 0.5, PLANTED_SEED_ROW, (uint64_t)i);
    }
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        int64_t p = planted_parent(i);
        if (p >= 0)
            synth_at_cos(x + (size_t)i * d, x + (size_t)p * d, d, 0.9, PLANTED_SEED_DUP,
                         (uint64_t)i);
    }
    free(topics);
    return 0;
}

#endif
