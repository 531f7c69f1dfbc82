/* Private to index/: the lvd_index layout and helpers shared by its files. */
#ifndef LVD_INDEX_INTERNAL_H
#define LVD_INDEX_INTERNAL_H

#include <faiss/c_api/Index_c.h>

#include "index/index.h"

struct lvd_index {
    FaissIndex *faiss;
    int d;
};

/* Fills err with "<what>: <FAISS's last error>" and returns -1. */
int index_faiss_fail(lvd_error *err, const char *what);

/* Fails unless every row of x (n x d) is finite with squared norm within 1e-3 of 1; what names
 * the rows in the message ("query", "row", ...). */
int index_check_rows(const float *x, int64_t n, int d, const char *what, lvd_error *err);

/* The automatic number of inverted lists for n rows: the power of two nearest per_sqrt * sqrt(n),
 * halved until every list gets at least 39 training rows. */
int64_t index_choose_nlist(int64_t n, double per_sqrt);

/* Copies `want` evenly spaced rows of x (n x d; all of them when n <= want) into a new array
 * (the caller frees it) and stores their count in *got. */
float *index_sample_rows(const float *x, int64_t n, int d, int64_t want, int64_t *got,
                         lvd_error *err);

/* Rows per inverted list in a training sample: FAISS warns below 39. */
#define INDEX_TRAIN_ROWS_PER_LIST 40

/* A row and its similarity to a centroid. */
typedef struct index_member {
    float sim;
    int64_t id;
} index_member;

/* Sorts most similar first; equal similarity: lowest id first. */
void index_sort_members(index_member *m, size_t n);

/* malloc that fails with a message naming what was being allocated. */
void *index_alloc(size_t count, size_t size, const char *what, lvd_error *err);

#endif
