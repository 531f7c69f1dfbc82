/* Process groups: one stage run by several processes (MPI ranks), for lvd-embed, the k-means of
 * lvd-retrieve and data-parallel lvd-train / lvd-distill.
 *
 * lvd uses an existing engine, Open MPI, and only when the build found it (meson option -Dmpi,
 * default auto): lvd_dist_built() says which. A process joins a group of several only when an MPI
 * launcher started it (mpirun, mpiexec or srun set OMPI_COMM_WORLD_SIZE, PMIX_RANK, PMI_RANK or
 * PMI_SIZE); every other process, and every process of a build without MPI, is a group of one in
 * which each collective below returns at once with the buffer unchanged. So a stage calls these
 * functions unconditionally and runs as before on one process.
 *
 * Collectives must be called by every rank of the group in the same order with the same sizes
 * (MPI's rule); they run on the calling thread (MPI_THREAD_FUNNELED: call them from the thread
 * that called lvd_dist_init, outside OpenMP regions). Errors: 0 on success, -1 with err filled;
 * an MPI failure normally aborts the whole job (MPI's default handler), which is what a rank
 * whose peers are waiting for it must do anyway.
 *
 * Floating-point sums across ranks are not bitwise the same as one process's sum in another
 * order; stages that promise equality with one process promise it within float tolerance, or
 * reduce in float64 (lvd_dist_sum_f64). */
#ifndef LVD_DIST_H
#define LVD_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "store/error.h"

typedef struct lvd_dist {
    int rank; /* 0 .. size-1; 0 in a group of one */
    int size; /* number of processes, >= 1 */
} lvd_dist;

/* 1 when lvd was built with MPI, 0 otherwise. */
int lvd_dist_built(void);

/* Joins the group the launcher started this process in, or a group of one (see above). The
 * first call that finds a launcher initializes MPI and arranges MPI_Finalize at exit; later calls
 * return the same group. Fails (-1) when a launcher started the process but lvd was built
 * without MPI and the launcher asked for more than one process: running N copies that each do
 * the whole work would be wrong, silently. */
int lvd_dist_init(lvd_dist *d, lvd_error *err);

/* In-place sums across the group: every rank's buf[0 .. n) becomes the element-wise sum of all
 * ranks' buffers. Any n (split into MPI-sized pieces). */
int lvd_dist_sum_f32(const lvd_dist *d, float *buf, size_t n, lvd_error *err);
int lvd_dist_sum_f64(const lvd_dist *d, double *buf, size_t n, lvd_error *err);
int lvd_dist_sum_i64(const lvd_dist *d, int64_t *buf, size_t n, lvd_error *err);

/* Element-wise maximum across the group, in place. */
int lvd_dist_max_f64(const lvd_dist *d, double *buf, size_t n, lvd_error *err);

/* Copies root's buf[0 .. bytes) to every rank. */
int lvd_dist_bcast(const lvd_dist *d, void *buf, size_t bytes, int root, lvd_error *err);

/* Returns when every rank has called it. */
int lvd_dist_barrier(const lvd_dist *d, lvd_error *err);

/* The share of n items that rank owns as [*begin, *end): contiguous, in rank order, sizes
 * differing by at most one, so that rank order of the shares is item order. */
void lvd_dist_share(const lvd_dist *d, int64_t n, int64_t *begin, int64_t *end);

/* All ranks' blocks of bytes, in rank order: rank r gives mine[0 .. bytes); every rank gets a
 * malloc'ed *all (free it) holding the concatenation and sizes[0 .. size) (the caller's array of
 * d->size entries) the size of each block. In a group of one, a copy of mine. */
int lvd_dist_allgather(const lvd_dist *d, const void *mine, size_t bytes, void **all, size_t *sizes,
                       lvd_error *err);

/* Ends every process of the group at once with status code (MPI_Abort), for a rank that failed
 * where its peers wait in a collective; in a group of one, exit(code). */
_Noreturn void lvd_dist_abort(const lvd_dist *d, int code);

#endif
