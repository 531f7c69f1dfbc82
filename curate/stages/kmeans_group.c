/* curate/stages/kmeans_group.h: the jobs rank 0 sends and the group callbacks over dist. */
#include "curate/stages/kmeans_group.h"

#include <stdio.h>
#include <stdlib.h>

static void share(void *ctx, int64_t n, int64_t *begin, int64_t *end)
{
    lvd_dist_share(ctx, n, begin, end);
}

static int sum_f64(void *ctx, double *buf, size_t n, lvd_error *err)
{
    return lvd_dist_sum_f64(ctx, buf, n, err);
}

static int sum_f32(void *ctx, float *buf, size_t n, lvd_error *err)
{
    return lvd_dist_sum_f32(ctx, buf, n, err);
}

int stage_kgroup_init(stage_kgroup *kg, lvd_error *err)
{
    if (lvd_dist_init(&kg->dist, err))
        return -1;
    kg->g = (lvd_kmeans_group){&kg->dist, share, sum_f64, sum_f32};
    return 0;
}

int stage_kjob_send(const stage_kgroup *kg, const stage_kjob *job, const float *x, lvd_error *err)
{
    stage_kjob j = *job;
    if (lvd_dist_bcast(&kg->dist, &j, sizeof j, 0, err))
        return -1;
    return lvd_dist_bcast(&kg->dist, (void *)x, (size_t)job->n * (size_t)job->d * sizeof *x, 0,
                          err);
}

void stage_kjob_end(const stage_kgroup *kg)
{
    stage_kjob j = {.op = STAGE_KJOB_END};
    lvd_error err;
    if (kg->dist.size > 1 && lvd_dist_bcast(&kg->dist, &j, sizeof j, 0, &err))
        lvd_dist_abort(&kg->dist, 1);
}

int stage_kjob_next(const stage_kgroup *kg, stage_kjob *job, float **x, lvd_error *err)
{
    *x = NULL;
    if (lvd_dist_bcast(&kg->dist, job, sizeof *job, 0, err))
        return -1;
    if (job->op == STAGE_KJOB_END)
        return 0;
    if (job->n < 1 || job->d < 1 || job->levels < 1 || job->levels > LVD_HKMEANS_MAX_LEVELS)
        return lvd_fail(err, "malformed k-means job from rank 0");
    *x = malloc((size_t)job->n * (size_t)job->d * sizeof **x);
    if (!*x)
        return lvd_fail(err, "out of memory for %lld x %lld rows", (long long)job->n,
                        (long long)job->d);
    return lvd_dist_bcast(&kg->dist, *x, (size_t)job->n * (size_t)job->d * sizeof **x, 0, err);
}

int stage_kgroup_failed(const stage_kgroup *kg, const char *tool, const lvd_error *err)
{
    if (kg->dist.size == 1)
        return -1;
    fprintf(stderr, "%s: rank %d: %s\n", tool, kg->dist.rank, err->msg);
    lvd_dist_abort(&kg->dist, 1);
}
