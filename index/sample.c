#include "index/internal.h"

#include <stdlib.h>
#include <string.h>

/* FAISS warns below 39 rows per centroid; a little above keeps training time bounded. */
#define TRAIN_ROWS_PER_LIST 40
#define TRAIN_ROWS_NO_LISTS 65536

int lvd_index_train_sample(lvd_index *index, const float *x, int64_t n, lvd_error *err)
{
    if (lvd_index_is_trained(index))
        return 0;
    size_t nlist = lvd_index_nlist(index);
    int64_t want = nlist ? (int64_t)nlist * TRAIN_ROWS_PER_LIST : TRAIN_ROWS_NO_LISTS;
    if (n <= want)
        return lvd_index_train(index, n, x, err);
    size_t d = (size_t)lvd_index_dim(index);
    float *sample = index_alloc((size_t)want * d, sizeof *sample, "the training sample", err);
    if (!sample)
        return -1;
    /* Evenly spaced rows: deterministic and spread over the whole matrix. */
    for (int64_t i = 0; i < want; i++) {
        int64_t row = (int64_t)((double)i * (double)n / (double)want);
        memcpy(sample + (size_t)i * d, x + (size_t)row * d, d * sizeof *sample);
    }
    int rc = lvd_index_train(index, want, sample, err);
    free(sample);
    return rc;
}
