/* The k-means of lvd-retrieve shared by the processes of a group (dist/dist.h), for
 * `mpirun -np N lvd-retrieve --clusters K` and `... --hierarchical`.
 *
 * Rank 0 runs the stage as one process does: it alone opens the manifest and reads the rows.
 * When it comes to the k-means it sends the job (the k-means options) and the n x d rows to the
 * other ranks (stage_kjob_send), and every rank then runs the same fit with its work shared
 * (index/index.h, lvd_kmeans_group: each rank assigns and sums its share of the rows, sums and
 * assignments are added across ranks), so all ranks end with the same centroids and rank 0
 * goes on alone. The other ranks never touch the manifest (no lock, no network filesystem
 * needed for it); they wait for jobs (stage_kjob_next) until rank 0 sends the end
 * (stage_kjob_end), which lvd-retrieve does whatever happened, so no rank waits forever. A rank
 * that fails inside a shared fit ends the whole job (lvd_dist_abort) after printing why. */
#ifndef LVD_CURATE_STAGES_KMEANS_GROUP_H
#define LVD_CURATE_STAGES_KMEANS_GROUP_H

#include <stdint.h>

#include "curate/stages/hkmeans_stage.h"
#include "dist/dist.h"
#include "index/index.h"
#include "store/error.h"

typedef enum stage_kjob_op {
    STAGE_KJOB_END = 0,          /* no more work */
    STAGE_KJOB_CLUSTERS = 1,     /* lvd-retrieve --clusters (retrieve_stage.c) */
    STAGE_KJOB_HIERARCHICAL = 2, /* lvd-retrieve --hierarchical (hkmeans_stage.c) */
} stage_kjob_op;

/* One shared fit: what every rank needs besides the rows. */
typedef struct stage_kjob {
    int64_t op;
    int64_t n, d;
    int64_t levels, k[LVD_HKMEANS_MAX_LEVELS]; /* --clusters: levels 1 */
    int64_t niter, seed, redo, resample, sample_size, float64;
} stage_kjob;

/* This process's group and its lvd_kmeans_group callbacks (over dist). */
typedef struct stage_kgroup {
    lvd_dist dist;
    lvd_kmeans_group g;
} stage_kgroup;

/* Joins the group (lvd_dist_init) and fills g with lvd_dist_share / _sum_f64 / _sum_f32. The
 * callbacks point into kg, which must stay where it is while they are used. */
int stage_kgroup_init(stage_kgroup *kg, lvd_error *err);

/* Rank 0 of a group of several: sends job and its job->n x job->d rows x to the other ranks. */
int stage_kjob_send(const stage_kgroup *kg, const stage_kjob *job, const float *x, lvd_error *err);

/* Rank 0: tells the other ranks that no more job comes. Nothing in a group of one. */
void stage_kjob_end(const stage_kgroup *kg);

/* The other ranks: rank 0's next job and its rows (*x malloc'ed, free it; NULL for the end). */
int stage_kjob_next(const stage_kgroup *kg, stage_kjob *job, float **x, lvd_error *err);

/* After a failure inside a shared fit: prints "<tool>: <message>" and, in a group of several,
 * ends every rank (the others wait in a collective). Returns -1 in a group of one. */
int stage_kgroup_failed(const stage_kgroup *kg, const char *tool, const lvd_error *err);

#endif
