/* index/: vector search and the curation core (LVD-142M, SPEC section 4).
 *
 * Vectors are float rows of dimension d, L2-normalized, compared by inner product (= cosine
 * similarity); every "sim" below is that similarity, larger is closer. Functions that take rows
 * reject a row whose squared norm is farther than 1e-3 from 1 (lvd_normalize_rows fixes them).
 *
 * The search part is a thin wrapper over the FAISS C API (libfaiss_c, built by
 * scripts/build-faiss-c.sh): an lvd_index owns one FaissIndex; row ids are the order of addition
 * (0, 1, 2, ...). FAISS failures come back as lvd_error holding faiss_get_last_error()'s text.
 * FAISS runs its loops with OpenMP threads (OMP_NUM_THREADS bounds them).
 *
 * The curation core works on in-memory n x d matrices (row i = id i); reading and writing the
 * manifest is the stages' job. Results are deterministic for a given input and index; where
 * this module picks rows itself (kept rows, cluster picks), ties go to the lowest row id. */
#ifndef LVD_INDEX_INDEX_H
#define LVD_INDEX_INDEX_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "store/error.h"

/* ---- Rows ---------------------------------------------------------------------------------- */

/* Scales every row of x (n x d) to unit L2 norm in place; fails on a row that is all zeros or
 * holds a NaN or infinity. */
int lvd_normalize_rows(float *x, int64_t n, int d, lvd_error *err);

/* ---- Index choice -------------------------------------------------------------------------- */

/* Rows up to this count get an exact "Flat" index when it fits the budget. */
#define LVD_INDEX_FLAT_MAX 65536

/* Writes into out (out_size bytes) a FAISS factory string for n rows of dimension d that fits
 * memory_budget bytes, choosing as autofaiss does:
 *   - "Flat" (exact) when n <= LVD_INDEX_FLAT_MAX and n * 4d bytes fit;
 *   - otherwise "IVF<c>,Flat" with c = the power of two nearest 4 * sqrt(n), lowered until every
 *     list gets at least 39 training rows, when n * (4d + 8) bytes plus the c centroids fit;
 *   - otherwise "IVF<c>,PQ<m>" with m the largest divisor of d, at most 64, such that
 *     n * (m + 8) bytes plus the centroids and PQ tables fit.
 * Fails when n < 1, d < 1, or nothing fits. */
int lvd_index_choose(int64_t n, int d, size_t memory_budget, char *out, size_t out_size,
                     lvd_error *err);

/* ---- Index --------------------------------------------------------------------------------- */

typedef struct lvd_index lvd_index;

/* Creates an empty inner-product index of dimension d from a FAISS factory string ("Flat",
 * "IVF1024,Flat", "IVF4096,PQ32", "OPQ32,IVF1024,PQ32", ...). A string FAISS does not accept
 * fails with FAISS's own message. */
int lvd_index_create(lvd_index **out, int d, const char *factory, lvd_error *err);

/* Frees the index (NULL is ignored). */
void lvd_index_free(lvd_index *index);

int lvd_index_dim(const lvd_index *index);
int64_t lvd_index_count(const lvd_index *index);
/* 1 when the index can take rows (Flat always; IVF / PQ after lvd_index_train). */
int lvd_index_is_trained(const lvd_index *index);
/* Number of inverted lists, 0 for an index without them (Flat, PQ, HNSW). */
size_t lvd_index_nlist(const lvd_index *index);

/* Trains on n rows (IVF centroids, PQ codebooks); a no-op for indexes that need none. FAISS wants
 * at least 39 rows per list or codebook entry and warns below that. */
int lvd_index_train(lvd_index *index, int64_t n, const float *x, lvd_error *err);

/* Trains on an evenly spaced sample of the n rows of x: at most 40 rows per inverted list (FAISS
 * warns below 39), or 65,536 rows for an index without lists; all rows when n is smaller. This
 * bounds IVF training time. A no-op for an index that is already trained. */
int lvd_index_train_sample(lvd_index *index, const float *x, int64_t n, lvd_error *err);

/* Appends n rows; they get ids lvd_index_count() .. lvd_index_count() + n - 1. */
int lvd_index_add(lvd_index *index, int64_t n, const float *x, lvd_error *err);

/* Sets how many inverted lists a search visits (1 .. nlist). Fails for an index without lists. */
int lvd_index_set_nprobe(lvd_index *index, size_t nprobe, lvd_error *err);

/* For each of the nq query rows, the k most similar rows: sims[q * k + j] descending, ids[q * k +
 * j] their ids; slots beyond the rows found hold id -1 and sim -INFINITY. Queries go to FAISS in
 * batches of at most `batch` rows (0 means all at once) so callers can bound temporary memory. */
int lvd_index_search(const lvd_index *index, int64_t nq, const float *q, int k, int64_t batch,
                     float *sims, int64_t *ids, lvd_error *err);

/* Result of a range search: the hits of query i are ids / sims[lims[i] .. lims[i + 1]), in no
 * particular order. */
typedef struct lvd_range_result {
    int64_t nq;
    size_t *lims; /* nq + 1 entries */
    int64_t *ids;
    float *sims;
} lvd_range_result;

/* Fills out with, for each query row, every indexed row whose sim is > min_sim (for IVF indexes,
 * among the lists visited). Not every FAISS index supports it (HNSW does not); those fail. */
int lvd_index_range_search(const lvd_index *index, int64_t nq, const float *q, float min_sim,
                           lvd_range_result *out, lvd_error *err);

/* Frees the arrays of a range result and zeroes it (NULL is ignored). */
void lvd_range_result_free(lvd_range_result *r);

/* Writes the index to path atomically (a temporary file in the same folder, fsynced, then
 * renamed over path), so a crash leaves either the old file or the new one. */
int lvd_index_save(const lvd_index *index, const char *path, lvd_error *err);

/* Writes the index into the open stream f, flushed and synced (name: the file, for errors); for
 * callers that manage the file themselves (locking it, say). */
int lvd_index_write(const lvd_index *index, FILE *f, const char *name, lvd_error *err);

/* Reads an index written by lvd_index_save (or any FAISS index file with inner-product metric). */
int lvd_index_load(lvd_index **out, const char *path, lvd_error *err);

/* The underlying FaissIndex (as void * to keep FAISS headers out of this one), for callers that
 * need a FAISS call this wrapper lacks; it stays owned by the lvd_index. */
void *lvd_index_faiss(lvd_index *index);

/* ---- k-means ------------------------------------------------------------------------------- */

/* Spherical k-means through FAISS (centroids renormalized each iteration, assignment by inner
 * product) with a fixed seed: same input and seed give the same centroids. Writes k x d unit rows
 * into centroids. Needs n >= k; FAISS subsamples to 256 rows per centroid, and its warning about
 * fewer than 39 rows per centroid is turned off (callers clustering centroids do that on purpose).
 */
int lvd_kmeans(const float *x, int64_t n, int d, int k, int niter, int seed, float *centroids,
               lvd_error *err);

/* For each of the n rows of x, the most similar of the k centroids (exact search): cluster[i]
 * and sim[i] (sim may be NULL). */
int lvd_kmeans_assign(const float *centroids, int k, int d, const float *x, int64_t n,
                      int32_t *cluster, float *sim, lvd_error *err);

/* How a k-means shares its work among the processes of a group (dist/dist.h: MPI ranks)
 * without index/ depending on MPI: the caller fills the callbacks (curate/stages/kmeans_group.h
 * fills them with lvd_dist_share, lvd_dist_sum_f64 and lvd_dist_sum_f32). Every process holds
 * all n rows and calls the same function with the same arguments; each assigns and sums only
 * its share of the rows, and the sums (and assignments) are added across the group, so every
 * process ends with the same result. NULL stands for one process. */
typedef struct lvd_kmeans_group {
    void *ctx;
    /* This process's rows [*begin, *end) of n: contiguous, in process order, tiling [0, n). */
    void (*share)(void *ctx, int64_t n, int64_t *begin, int64_t *end);
    /* In-place element-wise sums of buf[0 .. n) across the group; 0 or -1 with err filled. */
    int (*sum_f64)(void *ctx, double *buf, size_t n, lvd_error *err);
    int (*sum_f32)(void *ctx, float *buf, size_t n, lvd_error *err);
} lvd_kmeans_group;

/* Spherical k-means by Lloyd passes whose work is shared by a group (g, NULL: one process):
 * like FAISS, training uses at most 256 rows per centroid (a seeded sample when n is larger)
 * and starts from k distinct training rows picked by seed; each of niter passes assigns rows to
 * the most similar centroid (exact inner product), adds up each cluster's rows and count across
 * the group, in float64 when float64 is set (else float32, as FAISS) and sets each centroid to
 * its normalized sum; an empty cluster keeps its centroid. The result depends on the inputs and
 * seed only, not on the number of processes, up to the order of the float sums (float64: within
 * about 1e-7 relative). Writes k x d unit rows into centroids. Needs n >= k. */
int lvd_kmeans_lloyd(const float *x, int64_t n, int d, int k, int niter, int seed, int float64,
                     const lvd_kmeans_group *g, float *centroids, lvd_error *err);

/* lvd_kmeans_assign shared by a group (NULL: one process): every process gets every row's
 * cluster and sim (sim may be NULL). */
int lvd_kmeans_assign_group(const float *centroids, int k, int d, const float *x, int64_t n,
                            const lvd_kmeans_group *g, int32_t *cluster, float *sim,
                            lvd_error *err);

/* ---- Near-duplicate components ------------------------------------------------------------- */

/* Union-find over row ids 0 .. n - 1. The root of every set is its smallest id, so the kept row of
 * a component (the one that survives dedup) is its lowest id, whatever order edges come in. */
typedef struct lvd_components {
    int64_t n;
    int64_t *parent;
} lvd_components;

/* Extends c to n ids (n >= c->n); new ids start as singletons. A zeroed struct is an empty set. */
int lvd_components_grow(lvd_components *c, int64_t n, lvd_error *err);

/* Root (smallest id) of i's component; compresses the path. */
int64_t lvd_components_find(lvd_components *c, int64_t i);

/* Merges the components of a and b. */
void lvd_components_union(lvd_components *c, int64_t a, int64_t b);

/* Writes the root of every id into root (c->n entries): row i is kept iff root[i] == i. */
void lvd_components_roots(lvd_components *c, int64_t *root);

void lvd_components_free(lvd_components *c);

typedef struct lvd_dedup_options {
    int k;           /* neighbours searched per row (paper: 64) */
    float threshold; /* an edge joins rows whose sim is > threshold (paper: 0.6) */
    size_t nprobe;   /* lists a row searches when lvd_dedup / lvd_dedup_ivf build lists */
    int64_t batch;   /* rows per FAISS search call (bounds temporary memory) */
    int64_t nlist;   /* lvd_dedup_ivf: inverted lists; 0 = automatic (see lvd_dedup_ivf) */
} lvd_dedup_options;

/* k = 64, threshold = 0.6, nprobe = 16, batch = 16384, nlist = 0. */
void lvd_dedup_options_default(lvd_dedup_options *opt);

/* Searches the index (which holds rows 0 .. lvd_index_count() - 1, nprobe as the caller set it)
 * for the k neighbours of the count rows x (ids first .. first + count - 1, already in the index)
 * and unions every pair with sim > threshold into c (grown to the index count). Calling it once
 * for all rows is the paper's dedup; calling it only for rows added later links them to all rows
 * before. That incremental result equals one full run whenever every row has fewer than k rows
 * (itself included) above the threshold, so the k cap cuts no edge, and the index is exact
 * (Flat); otherwise the two differ only in edges the cap drops. */
int lvd_dedup_link(const lvd_index *index, const float *x, int64_t first, int64_t count,
                   const lvd_dedup_options *opt, lvd_components *c, lvd_error *err);

/* Whole dedup of an n x d matrix: builds the index from factory (NULL: lvd_index_choose with
 * memory_budget), trains it on the rows (or a sample of them, see lvd_index_train_sample), adds
 * them, links every row and writes root[i] (n entries). */
int lvd_dedup(const float *x, int64_t n, int d, const char *factory, size_t memory_budget,
              const lvd_dedup_options *opt, int64_t *root, lvd_error *err);

/* ---- Dedup over an inverted-file partition (incremental) ---------------------------------- */

/* The partition: nlist centroids fitted by spherical k-means (10 iterations, fixed seed) on 40
 * evenly spaced rows per list. Every row is stored in its nearest list and searches its nprobe
 * nearest lists (ranked by an exact, batching-independent similarity, see below); its edges are
 * its k most similar rows found there with sim > threshold, ranked by sim, equal sims by lower
 * key; rows joined by an edge form components. This is what an IVF<nlist>,Flat index searched with
 * nprobe answers, computed list by list with sgemm (Debian's FAISS scans IVF lists without SIMD:
 * bench_dedup, 100k x 384, 12.5 s against 104.5 s through lvd_dedup). With nprobe = nlist it is
 * exact.
 *
 * Similarities: sgemm finds the candidates; every pair within index_sgemm_margin of a cut (the
 * threshold, a row's nprobe-th centroid) is re-scored with float products summed in double in a
 * fixed order, so each row's lists and edges are a function of that row, the centroids and the
 * rows stored in its lists only, never of batching, thread count or row order. */

/* What one run leaves for the next: the partition, every row's lists and its edges. Rows are in
 * key order (keys strictly ascending, e.g. image ids). */
typedef struct lvd_dedup_state {
    int d;
    int nprobe; /* lists each row searches (<= nlist) */
    int k;
    float threshold;
    int64_t nlist;
    int64_t trained_rows; /* rows there were when the centroids were fitted */
    float *centroids;     /* nlist x d, unit rows */
    int64_t n;
    int64_t *key;        /* n, strictly ascending */
    uint64_t *hash;      /* n: hash of each row's float bytes (a changed row is a new row) */
    int32_t *probe;      /* n x nprobe: row i's lists, nearest first; probe[i * nprobe] stores it */
    int64_t *edge_start; /* n + 1: row i's edges are [edge_start[i], edge_start[i + 1]) */
    int64_t *edge_key;   /* edge_start[n]: the neighbour's key, best first */
    float *edge_sim;     /* edge_start[n]: its sim (> threshold) */
} lvd_dedup_state;

/* How a run used the previous state. */
typedef struct lvd_dedup_run_info {
    int retrained;    /* 1: this run fitted the centroids (no usable previous partition) */
    int incremental;  /* 1: previous rows kept their edges and searched only the new rows */
    int64_t new_rows; /* rows searched against every row stored in their lists */
    char why[160];    /* when not incremental: why the previous state could not be extended */
} lvd_dedup_run_info;

/* Keeps the previous partition while the rows are at most this many times those it was fitted on;
 * beyond that lists grow long and the run refits (and so reprocesses every row). */
#define LVD_DEDUP_REFIT_GROWTH 4

/* Dedup of the n x d unit rows x with keys key (strictly ascending), extending prev (NULL: none):
 *   - the centroids of prev are kept when prev has dimension d, the same nlist (opt->nlist, or
 *     any when 0) and n <= LVD_DEDUP_REFIT_GROWTH * prev->trained_rows; otherwise they are fitted
 *     (nlist = opt->nlist, or the power of two nearest 2 * sqrt(n) with at least 39 rows per list);
 *   - the run is incremental when moreover full is 0, k, threshold and nprobe equal prev's, and
 *     every row of prev is among the rows with the same key and the same vector (hash): then the
 *     rows of prev keep their lists, the new rows are assigned, searched against every row stored
 *     in their lists (old and new), and the rows of prev search only the new rows stored in their
 *     lists, merged into their recorded edges under the same top-k rule. Otherwise every row is
 *     searched. Either way the result equals a run over the same rows with full = 1 and the same
 *     centroids, bitwise: edges, lists and roots.
 * Writes root[i] (n entries: the lowest row of i's component, so the lowest key) and the new state
 * into out (freed with lvd_dedup_state_free; zeroed on failure); info may be NULL. Extra memory
 * beyond x: about n * (12 * nprobe + 40) bytes, 100 MB of heaps, 48 MB of blocks, the edges. */
int lvd_dedup_ivf_run(const float *x, const int64_t *key, int64_t n, int d,
                      const lvd_dedup_options *opt, const lvd_dedup_state *prev, int full,
                      lvd_dedup_state *out, int64_t *root, lvd_dedup_run_info *info,
                      lvd_error *err);

/* One-shot dedup of an n x d matrix (keys 0 .. n - 1, no previous state): lvd_dedup_ivf_run
 * without keeping the state. */
int lvd_dedup_ivf(const float *x, int64_t n, int d, const lvd_dedup_options *opt, int64_t *root,
                  lvd_error *err);

/* Writes s to path atomically (temporary file in the same folder, fsynced, renamed). The format
 * (native byte order, version 1) is documented in index/dedup_state.c. */
int lvd_dedup_state_save(const lvd_dedup_state *s, const char *path, lvd_error *err);

/* Reads a state written by lvd_dedup_state_save; fails on a short, oversized or inconsistent file
 * (sizes, lists out of range, keys not ascending, an edge to an unknown key). */
int lvd_dedup_state_load(const char *path, lvd_dedup_state *out, lvd_error *err);

/* Frees the arrays and zeroes s (NULL is ignored). */
void lvd_dedup_state_free(lvd_dedup_state *s);

/* ---- Decontamination ----------------------------------------------------------------------- */

/* Marks removed[i] = 1 for every pool row whose component (root, from dedup, one entry per pool
 * row of the index) holds a row with sim > threshold to some row of eval (n_eval x d), else 0;
 * writes the number of removed rows into *n_removed. Uses a range search, so there is no k cap. */
int lvd_decontaminate(const lvd_index *pool, const int64_t *root, const float *eval, int64_t n_eval,
                      float threshold, uint8_t *removed, int64_t *n_removed, lvd_error *err);

/* Decontamination over the partition of s (x: its s->n rows, in its order; root from the same
 * run): each eval row meets the pool rows stored in its s->nprobe nearest lists and, as in the
 * dedup, the pool rows whose lists include its nearest one; every pool row so met with sim >
 * threshold (sim as the partition code defines it) marks its component. removed[i] (n entries)
 * is 1 for each row of a marked component, best[i] (n entries, may be NULL) the highest sim found
 * between row i and an eval row (-INFINITY when none), *n_removed their count. */
int lvd_decontaminate_ivf(const lvd_dedup_state *s, const float *x, const int64_t *root,
                          const float *eval, int64_t n_eval, float threshold, uint8_t *removed,
                          float *best, int64_t *n_removed, lvd_error *err);

/* ---- Retrieval ----------------------------------------------------------------------------- */

/* Sample-based retrieval: for each seed row, the per_seed most similar pool rows. hits[i] (one
 * entry per pool row, overwritten) counts the seeds that retrieved row i: rows with hits > 0 are
 * retrieved, hits > 1 are collisions. *n_retrieved receives the number of distinct rows. */
int lvd_retrieve_nearest(const lvd_index *pool, const float *seeds, int64_t n_seeds, int per_seed,
                         int64_t batch, uint32_t *hits, int64_t *n_retrieved, lvd_error *err);

/* Cluster-based retrieval over a pool clustered into k clusters (pool_cluster / pool_sim from
 * lvd_kmeans_assign): every cluster holding more than min_seeds seeds (seed_cluster, n_seeds
 * entries) contributes its per_cluster rows most similar to the centroid (ties: lowest id), or
 * all its rows if it has fewer. selected[i] (one entry per pool row, overwritten) is 1 for a
 * chosen row; *n_selected receives their count. */
int lvd_retrieve_clusters(int k, const int32_t *pool_cluster, const float *pool_sim, int64_t n_pool,
                          const int32_t *seed_cluster, int64_t n_seeds, int64_t min_seeds,
                          int64_t per_cluster, uint8_t *selected, int64_t *n_selected,
                          lvd_error *err);

/* ---- Hierarchical k-means and balanced sampling (Vo et al. 2024) -------------------------- */

/* Level 0 clusters the rows; level l > 0 clusters the centroids of level l - 1, each level by
 * spherical k-means (FAISS, or lvd_kmeans_lloyd shared by a group), optionally followed by the
 * paper's resampling steps and float64 centroid refinement (lvd_hkmeans_opts). */
typedef struct lvd_hkmeans {
    int levels;
    int d;
    int64_t n;         /* rows clustered */
    int *k;            /* clusters per level, non-increasing */
    float **centroids; /* level l: k[l] x d unit rows */
    int32_t **parent;  /* level 0: n entries (row -> cluster); level l: k[l - 1] entries */
    float *sim;        /* n entries: each row's sim to its level-0 centroid */
} lvd_hkmeans;

/* How each level is fitted. */
typedef struct lvd_hkmeans_opts {
    int niter;    /* k-means iterations of every k-means run (>= 1) */
    int seed;     /* level l uses seed + l; its resampling step s, seed + l + 1000 * (s + 1) */
    int resample; /* resampling steps per level (Vo et al. 2024), 0 for none: each step takes
                     from every cluster the sample_size items closest to its centroid, runs
                     k-means on those items only and reassigns all items to the new
                     centroids, which moves centroids towards a uniform cover of the data;
                     a step that would sample fewer items than clusters ends the level's
                     resampling */
    int64_t sample_size; /* items per cluster in a resampling step (>= 1 when resample > 0) */
    int float64;         /* 1: every k-means run is followed by niter Lloyd passes whose centroid
                            sums are accumulated in float64 (FAISS sums in float32, which loses
                            precision on large clusters) */
    const lvd_kmeans_group *group; /* set: every k-means is lvd_kmeans_lloyd shared by this
                                      group (float64 sums when float64; no FAISS run) and every
                                      assignment lvd_kmeans_assign_group, so that the fit does
                                      not depend on the number of processes; NULL: FAISS */
} lvd_hkmeans_opts;

/* Fits `levels` levels with k[0] >= k[1] >= ... >= 1 clusters (k[0] <= n) as opt says. On failure
 * out is left empty (zeroed). */
int lvd_hkmeans_fit(const float *x, int64_t n, int d, const int *k, int levels,
                    const lvd_hkmeans_opts *opt, lvd_hkmeans *out, lvd_error *err);

void lvd_hkmeans_free(lvd_hkmeans *h);

/* Balanced top-down sampling of `target` rows (all rows when target >= n): the target is split
 * over the top-level clusters as min(size, cap) with the largest cap that fits (binary search),
 * the remainder going one row each to the lowest-numbered clusters still larger than cap; each
 * cluster's share is split over its children the same way, down to level 0, which gives its
 * share to the rows most similar to its centroid (ties: lowest id). Small clusters keep all their
 * rows and large ones are capped, so the sample is flatter than the data. selected (n entries) is
 * overwritten; *n_selected = min(target, n). */
int lvd_hkmeans_sample(const lvd_hkmeans *h, int64_t target, uint8_t *selected, int64_t *n_selected,
                       lvd_error *err);

#endif
