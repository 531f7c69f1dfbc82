/* AdamW, gradient clipping and the EMA update (train/optim.h) against a straightforward double
 * precision re-implementation over several steps with changing lr / wd, per-tensor multipliers
 * and a frozen last layer; bitwise determinism across thread counts; clipping semantics. */
#include "tests/train/optim_test.h"
#include "train/optim.h"

#define STEPS    6
#define MAX_NORM 3.0

typedef struct ref_state {
    double *p, *m, *v;
} ref_state;

/* torch.optim.AdamW in double, from its documented algorithm. */
static void ref_step(ref_state *r, const lvd_param_layout *l, const lvd_param_group *g,
                     const double *grad, int step, double lr, double wd, double ll_lr)
{
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    for (int i = 0; i < l->n; i++) {
        double lr_t = (g[i].is_last_layer ? ll_lr : lr) * g[i].lr_mult, wd_t = wd * g[i].wd_mult;
        for (size_t j = l->t[i].offset; j < l->t[i].offset + l->t[i].numel; j++) {
            r->p[j] -= lr_t * wd_t * r->p[j];
            r->m[j] = b1 * r->m[j] + (1 - b1) * grad[j];
            r->v[j] = b2 * r->v[j] + (1 - b2) * grad[j] * grad[j];
            double mhat = r->m[j] / (1 - pow(b1, step)), vhat = r->v[j] / (1 - pow(b2, step));
            r->p[j] -= lr_t * mhat / (sqrt(vhat) + eps);
        }
    }
}

static double ref_clip(double *g, size_t n, double max_norm)
{
    double s = 0;
    for (size_t j = 0; j < n; j++)
        s += g[j] * g[j];
    double norm = sqrt(s), coef = max_norm / (norm + 1e-6);
    if (coef < 1)
        for (size_t j = 0; j < n; j++)
            g[j] *= coef;
    return norm;
}

static void add(lvd_param_layout *l, const char *name, int ndim, int64_t a, int64_t b)
{
    int64_t shape[2] = {a, b};
    lvd_error err;
    if (lvd_param_layout_add(l, name, ndim, shape, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
}

/* The schedule of the test: lr, wd and last-layer lr per step (frozen for two steps). */
static void schedule(int s, double *lr, double *wd, double *ll)
{
    *lr = 1e-3 * (s + 1);
    *wd = 0.04 + 0.05 * s;
    *ll = s < 2 ? 0.0 : *lr;
}

/* Runs STEPS steps with `threads` threads; fills params/m/v and the norms. */
static void run(const lvd_param_layout *l, const lvd_param_group *groups, int threads,
                const float *p0, float *p, float *m, float *v, double *norms, float *teacher)
{
    lvd_adamw o;
    lvd_error err;
    CHECK(lvd_adamw_init(&o, l, groups, 0.9, 0.999, 1e-8, &err) == 0);
    o.threads = threads;
    float *grad = malloc(l->total * sizeof *grad);
    memcpy(p, p0, l->total * sizeof *p);
    memcpy(teacher, p0, l->total * sizeof *p);
    uint64_t seed = 42;
    for (int s = 0; s < STEPS; s++) {
        ot_fill(grad, l->total, &seed, s % 2 ? 0.001f : 0.5f); /* norms below and above 3 */
        norms[s] = lvd_adamw_clip_grad(&o, grad, MAX_NORM);
        double lr, wd, ll;
        schedule(s, &lr, &wd, &ll);
        lvd_adamw_update(&o, p, grad, lr, wd, ll);
        lvd_ema_update(teacher, p, l->total, 0.99, threads);
    }
    CHECK(o.step == STEPS);
    memcpy(m, o.m, l->total * sizeof *m);
    memcpy(v, o.v, l->total * sizeof *v);
    free(grad);
    lvd_adamw_free(&o);
}

int main(void)
{
    lvd_param_layout l = {0};
    add(&l, "cls_token", 2, 1, 8);
    add(&l, "patch_embed.proj.weight", 2, 8, 12);
    add(&l, "patch_embed.proj.bias", 1, 8, 0);
    add(&l, "blocks.0.attn.qkv.weight", 2, 300, 150); /* several chunks */
    add(&l, "blocks.0.norm1.weight", 1, 150, 0);
    add(&l, "blocks.1.ls1.gamma", 1, 150, 0);
    add(&l, "norm.bias", 1, 150, 0);
    add(&l, "last_layer.weight_g", 2, 64, 1);
    add(&l, "last_layer.weight_v", 2, 64, 33);
    lvd_param_group *groups = malloc((size_t)l.n * sizeof *groups);
    lvd_error err;
    CHECK(lvd_param_groups(&l, 0.9, 0.2, groups, &err) == 0);
    CHECK(groups[7].is_last_layer && groups[8].is_last_layer && !groups[3].is_last_layer);

    size_t n = l.total;
    float *p0 = malloc(n * sizeof *p0), *p = malloc(n * sizeof *p), *m = malloc(n * sizeof *m);
    float *v = malloc(n * sizeof *v), *t = malloc(n * sizeof *t);
    uint64_t seed = 7;
    ot_fill(p0, n, &seed, 1.0f);
    double norms[STEPS];
    run(&l, groups, 2, p0, p, m, v, norms, t);

    /* the double precision reference on the same float gradients */
    ref_state r = {calloc(n, sizeof(double)), calloc(n, sizeof(double)), calloc(n, sizeof(double))};
    double *teacher = malloc(n * sizeof *teacher), *grad = malloc(n * sizeof *grad);
    float *gf = malloc(n * sizeof *gf);
    for (size_t j = 0; j < n; j++)
        r.p[j] = teacher[j] = p0[j];
    seed = 42;
    for (int s = 0; s < STEPS; s++) {
        ot_fill(gf, n, &seed, s % 2 ? 0.001f : 0.5f);
        for (size_t j = 0; j < n; j++)
            grad[j] = gf[j];
        double norm = ref_clip(grad, n, MAX_NORM);
        CHECK_MSG(fabs(norms[s] - norm) <= 1e-12 * norm, "step %d: norm %.17g vs %.17g", s,
                  norms[s], norm);
        CHECK(s % 2 ? norm < MAX_NORM : norm > MAX_NORM);
        double lr, wd, ll;
        schedule(s, &lr, &wd, &ll);
        ref_step(&r, &l, groups, grad, s + 1, lr, wd, ll);
        for (size_t j = 0; j < n; j++)
            teacher[j] = 0.99 * teacher[j] + 0.01 * r.p[j];
    }
    /* float against double: parameters (|p| <= ~1) and the teacher within a few float ulps
     * after STEPS steps, moments to float precision */
    for (int i = 0; i < l.n; i++) {
        const lvd_param_tensor *x = &l.t[i];
        size_t o = x->offset, k = x->numel;
        double e_p = 0, e_t = 0;
        for (size_t j = o; j < o + k; j++) {
            e_p = fmax(e_p, fabs(p[j] - r.p[j]));
            e_t = fmax(e_t, fabs(t[j] - teacher[j]));
        }
        double e_m = ot_rel(m + o, r.m + o, k), e_v = ot_rel(v + o, r.v + o, k);
        CHECK_MSG(e_p < 1e-6 && e_t < 1e-6 && e_m < 1e-6 && e_v < 1e-6,
                  "%s: params %.3g, teacher %.3g, m %.3g, v %.3g", x->name, e_p, e_t, e_m, e_v);
    }

    /* the same run on 1 and 3 threads: bitwise equal */
    float *p1 = malloc(n * sizeof *p1), *m1 = malloc(n * sizeof *m1), *v1 = malloc(n * sizeof *v1);
    float *t1 = malloc(n * sizeof *t1);
    double norms1[STEPS];
    for (int threads = 1; threads <= 3; threads += 2) {
        run(&l, groups, threads, p0, p1, m1, v1, norms1, t1);
        CHECK(memcmp(p, p1, n * sizeof *p) == 0 && memcmp(m, m1, n * sizeof *m) == 0);
        CHECK(memcmp(v, v1, n * sizeof *v) == 0 && memcmp(t, t1, n * sizeof *t) == 0);
        CHECK(memcmp(norms, norms1, sizeof norms) == 0);
    }

    /* the first step by hand: m^ = g, v^ = g^2, p' = p (1 - lr wd) - lr g / (|g| + eps) */
    lvd_adamw o;
    CHECK(lvd_adamw_init(&o, &l, NULL, 0.9, 0.999, 1e-8, &err) == 0);
    memcpy(p1, p0, n * sizeof *p1);
    seed = 9;
    ot_fill(gf, n, &seed, 0.1f);
    lvd_adamw_update(&o, p1, gf, 0.01, 0.1, 0.0); /* NULL groups: no last layer, multipliers 1 */
    double worst = 0;
    for (size_t j = 0; j < n; j++) {
        double want = p0[j] * (1 - 0.001) - 0.01 * gf[j] / (fabs(gf[j]) + 1e-8);
        worst = fmax(worst, fabs(p1[j] - want));
    }
    CHECK_MSG(worst < 1e-6, "first step off by %g", worst);
    /* frozen last layer: values kept exactly while moments advance */
    lvd_adamw_free(&o);
    CHECK(lvd_adamw_init(&o, &l, groups, 0.9, 0.999, 1e-8, &err) == 0);
    memcpy(p1, p0, n * sizeof *p1);
    lvd_adamw_update(&o, p1, gf, 0.01, 0.1, 0.0);
    const lvd_param_tensor *wv = lvd_param_layout_find(&l, "last_layer.weight_v");
    CHECK(memcmp(p1 + wv->offset, p0 + wv->offset, wv->numel * sizeof *p1) == 0);
    CHECK(o.m[wv->offset] != 0 && o.v[wv->offset] > 0);
    CHECK(p1[0] != p0[0]);

    /* clipping: below max_norm the gradients stay bitwise; max_norm 0 only measures; a
     * non-finite gradient gives a non-finite norm and leaves the rest alone */
    memcpy(m1, gf, n * sizeof *m1);
    double norm = lvd_adamw_clip_grad(&o, gf, 1e9);
    CHECK(norm > 0 && memcmp(m1, gf, n * sizeof *gf) == 0);
    CHECK(lvd_adamw_clip_grad(&o, gf, 0) == norm && memcmp(m1, gf, n * sizeof *gf) == 0);
    double half = lvd_adamw_clip_grad(&o, gf, norm / 2);
    CHECK(half == norm);
    CHECK_MSG(fabs(lvd_adamw_clip_grad(&o, gf, 0) - norm / 2) < 1e-5 * norm, "clipped norm");
    gf[5] = NAN;
    memcpy(m1, gf, n * sizeof *m1);
    CHECK(isnan(lvd_adamw_clip_grad(&o, gf, 1.0)) && memcmp(m1, gf, n * sizeof *gf) == 0);
    lvd_adamw_free(&o);
    lvd_adamw_free(&o); /* a zeroed optimizer may be freed again */

    CHECK(lvd_adamw_init(&o, &l, NULL, 1.0, 0.999, 1e-8, &err) == -1 && strstr(err.msg, "betas"));
    CHECK(lvd_adamw_init(&o, &l, NULL, 0.9, 0.999, -1, &err) == -1);

    free(p0), free(p), free(m), free(v), free(t), free(p1), free(m1), free(v1), free(t1);
    free(r.p), free(r.m), free(r.v), free(teacher), free(grad), free(gf), free(groups);
    lvd_param_layout_free(&l);
    return check_finish();
}
