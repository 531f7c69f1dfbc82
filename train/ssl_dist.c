/* Data-parallel training (train/ssl_dist.h): the all-reduce hook, the per-step reduction of
 * status, losses and gradients, and the broadcast and comparison of a training state. */
#include <string.h>

#include "train/ssl_dist.h"

static int hook_reduce(void *ctx, double *buf, size_t n, int op, lvd_error *err)
{
    const lvd_dist *d = ctx;
    return op == LVD_REDUCE_MAX ? lvd_dist_max_f64(d, buf, n, err)
                                : lvd_dist_sum_f64(d, buf, n, err);
}

void lvd_ssl_dist_hook(const lvd_dist *d, lvd_allreduce *ar)
{
    ar->reduce = hook_reduce;
    ar->ctx = (void *)d;
}

/* The reduced values: failed ranks (as a bit per rank below 52, a count above), the losses,
 * n_masked, the extra losses. */
enum {
    V_FAILED,
    V_RANKS,
    V_LOSSES,
    V_MASKED = V_LOSSES + 5,
    V_EXTRA,
    V_N = V_EXTRA + LVD_SSL_DIST_EXTRA
};

int lvd_ssl_dist_reduce(const lvd_dist *d, lvd_ssl_part *parts, int n_parts, int failed,
                        lvd_ssl_dist_report *rep, lvd_error *err)
{
    if (d->size <= 1)
        return failed ? -1 : 0;
    lvd_ssl_stats *st = rep->st;
    double v[V_N] = {0};
    v[V_FAILED] = failed != 0;
    v[V_RANKS] = failed && d->rank < 52 ? (double)((int64_t)1 << d->rank) : 0;
    if (!failed) {
        double *l = v + V_LOSSES;
        l[0] = st->loss_dino_local;
        l[1] = st->loss_dino_global;
        l[2] = st->loss_koleo;
        l[3] = st->loss_ibot;
        l[4] = st->loss_total;
        v[V_MASKED] = st->n_masked;
        memcpy(v + V_EXTRA, rep->extra, sizeof rep->extra);
    }
    lvd_error derr;
    if (lvd_dist_sum_f64(d, v, V_N, &derr) != 0) {
        *err = derr;
        return -1;
    }
    if (v[V_FAILED] > 0) {
        if (failed)
            return -1;
        int64_t bits = (int64_t)v[V_RANKS];
        int first = 0;
        while (first < 52 && !(bits >> first & 1))
            first++;
        return lvd_fail(err, "%d of %d ranks failed (rank %d first; its message is on its stderr)",
                        (int)v[V_FAILED], d->size, first);
    }
    double inv = 1.0 / d->size;
    const double *l = v + V_LOSSES;
    st->loss_dino_local = l[0] * inv;
    st->loss_dino_global = l[1] * inv;
    st->loss_koleo = l[2] * inv;
    st->loss_ibot = l[3] * inv;
    st->loss_total = l[4] * inv;
    st->n_masked = (int)v[V_MASKED];
    for (int i = 0; i < LVD_SSL_DIST_EXTRA; i++)
        rep->extra[i] = v[V_EXTRA + i] * inv;
    float scale = (float)inv;
    for (int p = 0; p < n_parts; p++) {
        float *g = parts[p].grad;
        size_t n = parts[p].layout->total;
        if (lvd_dist_sum_f32(d, g, n, err) != 0)
            return lvd_error_prefix(err, "gradients of the %s", parts[p].name);
        for (size_t i = 0; i < n; i++)
            g[i] *= scale;
    }
    return 0;
}

int lvd_ssl_dist_bcast(const lvd_dist *d, const lvd_ckpt_group *g, int n_groups, int64_t *step,
                       lvd_error *err)
{
    if (d->size <= 1)
        return 0;
    for (int i = 0; i < n_groups; i++)
        if (lvd_dist_bcast(d, g[i].data, g[i].layout->total * sizeof(float), 0, err) != 0)
            return lvd_error_prefix(err, "state %s", g[i].prefix ? g[i].prefix : "");
    return lvd_dist_bcast(d, step, sizeof *step, 0, err);
}

/* FNV-1a over the groups' float bits, a word at a time, in two 32-bit halves (exact doubles). */
static void state_hash(const lvd_ckpt_group *g, int n_groups, double out[2])
{
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < n_groups; i++) {
        const float *p = g[i].data;
        for (size_t k = 0; k < g[i].layout->total; k++) {
            uint32_t w;
            memcpy(&w, p + k, sizeof w);
            h ^= w;
            h *= 1099511628211ull;
        }
    }
    out[0] = (double)(h >> 32);
    out[1] = (double)(h & 0xffffffffu);
}

int lvd_ssl_dist_same(const lvd_dist *d, const lvd_ckpt_group *g, int n_groups, lvd_error *err)
{
    if (d->size <= 1)
        return 0;
    double mine[2], root[2];
    state_hash(g, n_groups, mine);
    memcpy(root, mine, sizeof root);
    if (lvd_dist_bcast(d, root, sizeof root, 0, err) != 0)
        return -1;
    /* The lowest differing rank, or size when all agree, so that every rank reports it. */
    double first = mine[0] != root[0] || mine[1] != root[1] ? -(double)d->rank : -(double)d->size;
    if (lvd_dist_max_f64(d, &first, 1, err) != 0)
        return -1;
    if (-first < d->size)
        return lvd_fail(err, "rank %d holds other parameters than rank 0", (int)-first);
    return 0;
}
