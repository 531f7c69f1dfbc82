/* The training sample of index/index.h (lvd_index_train_sample). */
#include "index/internal.h"

#include <stdlib.h>
#include <string.h>

/* Training rows for an index without inverted lists (PQ codebooks need 256 x 39). */
#define TRAIN_ROWS_NO_LISTS 65536

float *index_sample_rows(const float *x, int64_t n, int d, int64_t want, int64_t *got,
                         lvd_error *err)
{
    int64_t m = n < want ? n : want;
    float *sample = index_alloc((size_t)m * d, sizeof *sample, "a row sample", err);
    if (!sample)
        return NULL;
    /* Evenly spaced rows: deterministic and spread over the whole matrix. */
    for (int64_t i = 0; i < m; i++) {
        int64_t row = (int64_t)((double)i * (double)n / (double)m);
        memcpy(sample + (size_t)i * d, x + (size_t)row * d, (size_t)d * sizeof *sample);
    }
    *got = m;
    return sample;
}

int lvd_index_train_sample(lvd_index *index, const float *x, int64_t n, lvd_error *err)
{
    if (lvd_index_is_trained(index))
        return 0;
    size_t nlist = lvd_index_nlist(index);
    int64_t want = nlist ? (int64_t)nlist * INDEX_TRAIN_ROWS_PER_LIST : TRAIN_ROWS_NO_LISTS;
    if (n <= want)
        return lvd_index_train(index, n, x, err);
    int64_t m = 0;
    float *sample = index_sample_rows(x, n, lvd_index_dim(index), want, &m, err);
    if (!sample)
        return -1;
    int rc = lvd_index_train(index, m, sample, err);
    free(sample);
    return rc;
}
