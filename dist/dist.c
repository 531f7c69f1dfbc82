/* dist/dist.h: the group of this process, over Open MPI when built with it (LVD_HAVE_MPI), a
 * group of one otherwise. */
#include "dist/dist.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#ifdef LVD_HAVE_MPI
#include <mpi.h>
#endif

/* MPI counts are int: larger buffers go in pieces of this many elements. */
#define DIST_PIECE ((size_t)1 << 30)

static const char *const launcher_vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK",
                                            "PMI_SIZE"};

static int launched(void)
{
    for (size_t i = 0; i < sizeof launcher_vars / sizeof launcher_vars[0]; i++)
        if (getenv(launcher_vars[i]))
            return 1;
    return 0;
}

int lvd_dist_built(void)
{
#ifdef LVD_HAVE_MPI
    return 1;
#else
    return 0;
#endif
}

void lvd_dist_share(const lvd_dist *d, int64_t n, int64_t *begin, int64_t *end)
{
    int64_t size = d->size, rank = d->rank;
    int64_t base = n / size, extra = n % size;
    *begin = rank * base + (rank < extra ? rank : extra);
    *end = *begin + base + (rank < extra ? 1 : 0);
}

/* The allgather of a group of one: a copy. */
static int gather_one(const void *mine, size_t bytes, void **all, size_t *sizes, lvd_error *err)
{
    *all = malloc(bytes ? bytes : 1);
    if (!*all)
        return lvd_fail(err, "allgather: out of memory for %zu bytes", bytes);
    if (bytes)
        memcpy(*all, mine, bytes);
    sizes[0] = bytes;
    return 0;
}

#ifdef LVD_HAVE_MPI

static lvd_dist joined = {0, 1};
static int joined_mpi;

static void finalize_at_exit(void)
{
    int done = 0;
    MPI_Finalized(&done);
    if (!done)
        MPI_Finalize();
}

static int mpi_fail(lvd_error *err, const char *what, int code)
{
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(code, text, &len) != MPI_SUCCESS)
        len = 0;
    text[len] = '\0';
    return lvd_fail(err, "MPI %s failed: %s", what, len ? text : "unknown error");
}

int lvd_dist_init(lvd_dist *d, lvd_error *err)
{
    if (!joined_mpi && launched()) {
        int provided = 0, rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
        if (rc != MPI_SUCCESS)
            return mpi_fail(err, "init", rc);
        atexit(finalize_at_exit);
        MPI_Comm_rank(MPI_COMM_WORLD, &joined.rank);
        MPI_Comm_size(MPI_COMM_WORLD, &joined.size);
        joined_mpi = 1;
    }
    *d = joined;
    return 0;
}

static int reduce(const lvd_dist *d, void *buf, size_t n, size_t elem, MPI_Datatype type, MPI_Op op,
                  lvd_error *err)
{
    if (d->size == 1)
        return 0;
    for (size_t at = 0; at < n; at += DIST_PIECE) {
        size_t count = n - at < DIST_PIECE ? n - at : DIST_PIECE;
        int rc = MPI_Allreduce(MPI_IN_PLACE, (char *)buf + at * elem, (int)count, type, op,
                               MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS)
            return mpi_fail(err, "allreduce", rc);
    }
    return 0;
}

int lvd_dist_sum_f32(const lvd_dist *d, float *buf, size_t n, lvd_error *err)
{
    return reduce(d, buf, n, sizeof *buf, MPI_FLOAT, MPI_SUM, err);
}

int lvd_dist_sum_f64(const lvd_dist *d, double *buf, size_t n, lvd_error *err)
{
    return reduce(d, buf, n, sizeof *buf, MPI_DOUBLE, MPI_SUM, err);
}

int lvd_dist_sum_i64(const lvd_dist *d, int64_t *buf, size_t n, lvd_error *err)
{
    return reduce(d, buf, n, sizeof *buf, MPI_INT64_T, MPI_SUM, err);
}

int lvd_dist_max_f64(const lvd_dist *d, double *buf, size_t n, lvd_error *err)
{
    return reduce(d, buf, n, sizeof *buf, MPI_DOUBLE, MPI_MAX, err);
}

int lvd_dist_bcast(const lvd_dist *d, void *buf, size_t bytes, int root, lvd_error *err)
{
    if (d->size == 1)
        return 0;
    for (size_t at = 0; at < bytes; at += DIST_PIECE) {
        size_t count = bytes - at < DIST_PIECE ? bytes - at : DIST_PIECE;
        int rc = MPI_Bcast((char *)buf + at, (int)count, MPI_BYTE, root, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS)
            return mpi_fail(err, "bcast", rc);
    }
    return 0;
}

int lvd_dist_barrier(const lvd_dist *d, lvd_error *err)
{
    if (d->size == 1)
        return 0;
    int rc = MPI_Barrier(MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? 0 : mpi_fail(err, "barrier", rc);
}

int lvd_dist_allgather(const lvd_dist *d, const void *mine, size_t bytes, void **all, size_t *sizes,
                       lvd_error *err)
{
    *all = NULL;
    if (d->size == 1)
        return gather_one(mine, bytes, all, sizes, err);
    int64_t *n = malloc((size_t)d->size * sizeof *n);
    int *counts = malloc((size_t)d->size * sizeof *counts);
    int *displs = malloc((size_t)d->size * sizeof *displs);
    int rc = n && counts && displs ? 0 : lvd_fail(err, "allgather: out of memory");
    int64_t total = 0, mine64 = (int64_t)bytes;
    if (rc == 0) {
        int code = MPI_Allgather(&mine64, 1, MPI_INT64_T, n, 1, MPI_INT64_T, MPI_COMM_WORLD);
        if (code != MPI_SUCCESS)
            rc = mpi_fail(err, "allgather", code);
    }
    for (int r = 0; rc == 0 && r < d->size; r++) {
        if (n[r] > INT_MAX - total)
            rc = lvd_fail(err, "allgather: %lld bytes in all, MPI takes at most %d",
                          (long long)(total + n[r]), INT_MAX);
        else {
            counts[r] = (int)n[r];
            displs[r] = (int)total;
            sizes[r] = (size_t)n[r];
            total += n[r];
        }
    }
    if (rc == 0 && !(*all = malloc(total ? (size_t)total : 1)))
        rc = lvd_fail(err, "allgather: out of memory for %lld bytes", (long long)total);
    if (rc == 0) {
        int code = MPI_Allgatherv(mine, (int)bytes, MPI_BYTE, *all, counts, displs, MPI_BYTE,
                                  MPI_COMM_WORLD);
        if (code != MPI_SUCCESS)
            rc = mpi_fail(err, "allgather", code);
    }
    if (rc) {
        free(*all);
        *all = NULL;
    }
    free(n);
    free(counts);
    free(displs);
    return rc;
}

void lvd_dist_abort(const lvd_dist *d, int code)
{
    if (d->size > 1)
        MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

#else /* a build without MPI: every process is a group of one */

/* The size a launcher asked for, when it says (Open MPI and PMI do; PMIx alone does not). */
static int launched_size(void)
{
    const char *s = getenv("OMPI_COMM_WORLD_SIZE");
    if (!s)
        s = getenv("PMI_SIZE");
    return s ? atoi(s) : 0;
}

int lvd_dist_init(lvd_dist *d, lvd_error *err)
{
    d->rank = 0;
    d->size = 1;
    if (launched() && launched_size() > 1)
        return lvd_fail(err,
                        "started by an MPI launcher with %d processes, but lvd was built "
                        "without MPI (install libopenmpi-dev and rebuild)",
                        launched_size());
    return 0;
}

int lvd_dist_sum_f32(const lvd_dist *d, float *buf, size_t n, lvd_error *err)
{
    (void)d, (void)buf, (void)n, (void)err;
    return 0;
}

int lvd_dist_sum_f64(const lvd_dist *d, double *buf, size_t n, lvd_error *err)
{
    (void)d, (void)buf, (void)n, (void)err;
    return 0;
}

int lvd_dist_sum_i64(const lvd_dist *d, int64_t *buf, size_t n, lvd_error *err)
{
    (void)d, (void)buf, (void)n, (void)err;
    return 0;
}

int lvd_dist_max_f64(const lvd_dist *d, double *buf, size_t n, lvd_error *err)
{
    (void)d, (void)buf, (void)n, (void)err;
    return 0;
}

int lvd_dist_bcast(const lvd_dist *d, void *buf, size_t bytes, int root, lvd_error *err)
{
    (void)d, (void)buf, (void)bytes, (void)root, (void)err;
    return 0;
}

int lvd_dist_barrier(const lvd_dist *d, lvd_error *err)
{
    (void)d, (void)err;
    return 0;
}

int lvd_dist_allgather(const lvd_dist *d, const void *mine, size_t bytes, void **all, size_t *sizes,
                       lvd_error *err)
{
    (void)d;
    return gather_one(mine, bytes, all, sizes, err);
}

void lvd_dist_abort(const lvd_dist *d, int code)
{
    (void)d;
    exit(code);
}

#endif
