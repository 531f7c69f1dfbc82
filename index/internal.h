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

/* malloc that fails with a message naming what was being allocated. */
void *index_alloc(size_t count, size_t size, const char *what, lvd_error *err);

#endif
