/* Data-parallel runs of the stage (train/stage/train_stage_internal.h's train_dist_*): the plan of
 * one rank, the verdicts and gates that keep the ranks in step, the per-step reduction and the
 * broadcast of the lead's training state. The semantics are train/ssl_dist.h's. */
#include <string.h>

#include "train/ssl_dist.h"
#include "train/stage/train_stage_internal.h"

int train_dist_init(train_dist *t, lvd_error *err)
{
    memset(t, 0, sizeof *t);
    if (lvd_dist_init(&t->d, err))
        return -1;
    lvd_ssl_dist_hook(&t->d, &t->hook);
    return 0;
}

int train_dist_plan(train_dist *t, train_plan *p, lvd_error *err)
{
    int n = t->d.size, B = p->ssl.batch;
    if (n == 1)
        return 0;
    if (B % n != 0)
        return lvd_fail(err,
                        "--batch %d does not split over %d ranks: the global batch must be a "
                        "multiple of the number of processes",
                        B, n);
    int b = B / n, grid = p->loader.aug.global_size / p->arch.patch;
    if (b < 2 && p->ssl.koleo_weight > 0)
        return lvd_fail(err,
                        "--batch %d over %d ranks leaves each rank 1 image: KoLeo (per rank) "
                        "needs 2 or more; use a larger --batch or --koleo-weight 0",
                        B, n);
    p->ssl.batch = b;
    if (p->ssl.max_masked > 2 * b * grid * grid)
        p->ssl.max_masked = 2 * b * grid * grid;
    p->ssl.allreduce = &t->hook;
    /* Each rank its own stochastic-depth subsets (rank 0 those of one process). */
    p->ssl.drop_seed ^= (uint64_t)t->d.rank * 0x9e3779b97f4a7c15ull;
    p->loader.share_offset = t->d.rank * b;
    p->loader.share_size = b;
    return 0;
}

int train_dist_agree(const train_dist *t, int rc, lvd_error *err)
{
    if (t->d.size == 1)
        return rc ? -1 : 0;
    /* The lowest failed rank + 1 (0: none), as a maximum of its negation. */
    double v = rc ? -(double)t->d.rank : -(double)t->d.size;
    lvd_error derr;
    if (lvd_dist_max_f64(&t->d, &v, 1, &derr)) {
        *err = derr;
        return -1;
    }
    if (-v >= t->d.size)
        return 0;
    if (rc)
        return -1;
    return lvd_fail(err, "rank %d of %d failed (its message is on its stderr)", (int)-v, t->d.size);
}

int train_dist_bcast(const train_dist *t, void *buf, size_t n, lvd_error *err)
{
    return lvd_dist_bcast(&t->d, buf, n, 0, err);
}

int train_dist_gate(const train_dist *t, int reason, int loader_failed, int *agreed, lvd_error *err)
{
    *agreed = reason;
    if (t->d.size == 1)
        return loader_failed ? -1 : 0;
    double v[2] = {reason, loader_failed ? t->d.rank + 1 : 0};
    lvd_error derr;
    if (lvd_dist_max_f64(&t->d, v, 2, &derr)) {
        *err = derr;
        return -1;
    }
    *agreed = (int)v[0];
    if (v[1] == 0)
        return 0;
    if (loader_failed)
        return -1;
    return lvd_fail(err, "the loader of rank %d failed (its message is on its stderr)",
                    (int)v[1] - 1);
}

int train_dist_reduce(train_model *m, int rc, lvd_ssl_stats *st, double *loss_cls,
                      double *loss_patch, lvd_error *err)
{
    if (!m->dist || m->dist->d.size == 1)
        return rc ? -1 : 0;
    lvd_ssl_part parts[LVD_SSL_MAX_PARTS];
    int n = train_model_n_parts(m);
    for (int i = 0; i < n; i++)
        parts[i] = train_model_get_part(m, i);
    lvd_ssl_dist_report rep = {st, {*loss_cls, *loss_patch}};
    if (lvd_ssl_dist_reduce(&m->dist->d, parts, n, rc != 0, &rep, err))
        return -1;
    *loss_cls = rep.extra[0];
    *loss_patch = rep.extra[1];
    return 0;
}

int train_dist_sync(const train_dist *t, train_model *m, lvd_error *err)
{
    if (t->d.size == 1)
        return 0;
    lvd_ckpt_group g[LVD_SSL_CKPT_GROUPS];
    int n = train_model_groups(m, g);
    int64_t step = train_model_get_step(m);
    if (lvd_ssl_dist_bcast(&t->d, g, n, &step, err))
        return -1;
    train_model_set_step(m, step);
    return lvd_ssl_dist_same(&t->d, g, n, err);
}

int train_dist_same(const train_dist *t, train_model *m, lvd_error *err)
{
    if (t->d.size == 1)
        return 0;
    lvd_ckpt_group g[LVD_SSL_CKPT_GROUPS];
    int n = train_model_groups(m, g);
    return lvd_ssl_dist_same(&t->d, g, n, err);
}
