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

/* Writes path atomically (index_io.c): fill writes and fsyncs a fresh path.tmp.PID (named tmp in
 * its messages), which is then closed and renamed over path; on any failure the temporary file is
 * removed and err says what failed. */
typedef int (*index_write_fn)(const void *ctx, FILE *f, const char *tmp, lvd_error *err);
int index_save_atomic(const char *path, index_write_fn fill, const void *ctx, lvd_error *err);

/* ---- Inverted-file partition helpers (dedup_ivf.c; used by decontam.c) ---- */

/* The similarity of two rows as the partition code defines it: float products summed in double
 * over four fixed lanes. It does not depend on how rows are batched (sgemm results can, in their
 * last bits), and dot(a, b) == dot(b, a) exactly. */
double index_dot(const float *a, const float *b, int d);

/* How far an sgemm similarity of two unit rows of dimension d may be from index_dot: twice the
 * worst-case float summation bound d * 2^-24, so values within it of a cut are re-scored. */
float index_sgemm_margin(int d);

/* Copies rows ids[0 .. count) of x (d columns) into dst, one after the other. */
void index_gather(float *dst, const float *x, int d, const int64_t *ids, int64_t count);

/* Rows of list l are ids[start[l] .. start[l + 1]), ascending. */
typedef struct index_lists {
    int64_t *start;
    int64_t *ids;
} index_lists;

/* probe[r * nprobe + j] = the j-th most similar of the nlist unit centroids to row r of x (rows
 * NULL) or to row rows[r] (n rows either way), ranked by index_dot, equal values by lower list:
 * a function of the row and the centroids only. */
int index_ivf_assign(const float *centroids, int64_t nlist, int d, const float *x,
                     const int64_t *rows, int64_t n, int nprobe, int32_t *probe, lvd_error *err);

/* Lists over the rows i with sel == NULL or sel[i] == want, from the first `use` probes of each
 * (1: the list storing the row; nprobe: the lists the row searches). */
int index_ivf_lists(const int32_t *probe, int64_t n, int nprobe, int use, int64_t nlist,
                    const uint8_t *sel, uint8_t want, index_lists *out, lvd_error *err);

void index_ivf_lists_free(index_lists *l);

/* niter spherical Lloyd passes over all m rows from the given centroids, shared by g (NULL: one
 * process), sums in float64 or float32; an empty cluster keeps its centroid (kmeans.c). */
int index_lloyd_passes(const float *train, int64_t m, int d, int k, int niter, int float64,
                       const lvd_kmeans_group *g, float *centroids, lvd_error *err);

#endif
