/* Finite-difference checks of the trainable ViT's gradients for what the reference case does not
 * cover: fused SwiGLU, registers with the antialiased positional resize, the bicubic resize to
 * grids other than the stored one (local crops, non-square and larger inputs), heads of width
 * 32, stochastic depth (off, and on with the subsets a fixed seed draws), and several passes
 * accumulating into one gradient buffer. For every parameter tensor: a random direction v on
 * that tensor, a sixth-order central difference of the loss (accumulated in double) along v
 * against g . v. */
#include "tests/train/vit_train_check.h"

#define MAX_PASSES 3

typedef struct fd_pass {
    int B, H, W;
    lvd_vit_pass *p;
    float *x;
    uint8_t *mask; /* or NULL */
    lvd_vit_drop drop;
    float *wc, *wp, *wr; /* loss weights on cls, patch, reg */
    float *cls, *patch, *reg;
} fd_pass;

typedef struct fd_case {
    const char *label;
    lvd_vit_train *m;
    int n;
    fd_pass pass[MAX_PASSES];
} fd_case;

static int setup_pass(fd_case *c, int B, int H, int W, int masked, double rate, uint64_t seed)
{
    const lvd_vit_info *a = lvd_vit_train_info(c->m);
    fd_pass *f = &c->pass[c->n++];
    memset(f, 0, sizeof *f);
    f->B = B;
    f->H = H;
    f->W = W;
    f->drop.rate = rate;
    f->drop.seed = seed;
    lvd_error err = {0};
    int rc = lvd_vit_pass_create(c->m, B, H, W, 1, &f->p, &err);
    CHECK_MSG(rc == 0, "%s: %s", c->label, err.msg);
    if (rc != 0) {
        return -1;
    }
    size_t N = (size_t)(H / a->patch) * (W / a->patch), D = (size_t)a->dim;
    size_t R = (size_t)a->n_reg;
    f->x = malloc(sizeof(float) * B * 3 * H * W);
    vt_fill(f->x, (size_t)B * 3 * H * W, seed + 1, 2.0f);
    if (masked) {
        f->mask = malloc((size_t)B * N);
        for (size_t i = 0; i < B * N; i++) {
            f->mask[i] = (i * 7 + seed) % 3 == 0;
        }
    }
    f->wc = malloc(sizeof(float) * B * D);
    f->wp = malloc(sizeof(float) * B * N * D);
    f->wr = malloc(sizeof(float) * B * (R ? R : 1) * D);
    vt_fill(f->wc, B * D, seed + 2, 1.0f);
    vt_fill(f->wp, B * N * D, seed + 3, 1.0f);
    vt_fill(f->wr, B * (R ? R : 1) * D, seed + 4, 1.0f);
    f->cls = malloc(sizeof(float) * B * D);
    f->patch = malloc(sizeof(float) * B * N * D);
    f->reg = malloc(sizeof(float) * B * (R ? R : 1) * D);
    return 0;
}

static void free_case(fd_case *c)
{
    for (int i = 0; i < c->n; i++) {
        fd_pass *f = &c->pass[i];
        lvd_vit_pass_free(f->p);
        free(f->x);
        free(f->mask);
        free(f->wc);
        free(f->wp);
        free(f->wr);
        free(f->cls);
        free(f->patch);
        free(f->reg);
    }
    lvd_vit_train_free(c->m);
}

/* The loss summed over the passes; when backward is set, also the gradient (zeroed first). */
static double run_case(fd_case *c, int backward)
{
    const lvd_vit_info *a = lvd_vit_train_info(c->m);
    size_t D = (size_t)a->dim, R = (size_t)a->n_reg;
    double loss = 0.0;
    lvd_error err = {0};
    if (backward) {
        lvd_vit_train_zero_grad(c->m);
    }
    for (int i = 0; i < c->n; i++) {
        fd_pass *f = &c->pass[i];
        size_t N = (size_t)f->p->N;
        lvd_vit_train_outputs o = {.cls = f->cls, .patch = f->patch, .reg = f->reg};
        int rc = lvd_vit_train_forward(c->m, f->p, f->x, f->mask, &f->drop, &o, &err);
        if (rc == 0 && backward) {
            rc = lvd_vit_train_backward(c->m, f->p, f->wc, f->wp, R ? f->wr : NULL, &err);
        }
        CHECK_MSG(rc == 0, "%s: %s", c->label, err.msg);
        loss += vt_loss(f->cls, f->wc, f->B * D, f->patch, f->wp, f->B * N * D, R ? f->reg : NULL,
                        f->wr, f->B * R * D);
    }
    return loss;
}

/* Checks every tensor's gradient along a random direction; returns the worst relative error. */
static double check_case(fd_case *c, double tol)
{
    run_case(c, 1);
    const lvd_param_layout *l = lvd_vit_train_layout(c->m);
    float *p = lvd_vit_train_params(c->m);
    const float *g = lvd_vit_train_grads(c->m);
    float *saved = malloc(sizeof(float) * l->total);
    float *v = malloc(sizeof(float) * l->total);
    memcpy(saved, p, sizeof(float) * l->total);
    double worst = 0.0;
    printf("%s:\n", c->label);
    for (int i = 0; i < l->n; i++) {
        const lvd_param_tensor *t = &l->t[i];
        double rms = 0.0, gv = 0.0, gn = 0.0;
        for (size_t k = 0; k < t->numel; k++) {
            rms += (double)saved[t->offset + k] * saved[t->offset + k];
        }
        rms = sqrt(rms / (double)t->numel);
        vt_fill(v, t->numel, 1000 + (uint64_t)i, 1.0f);
        for (size_t k = 0; k < t->numel; k++) {
            gv += (double)g[t->offset + k] * v[k];
            gn += (double)g[t->offset + k] * g[t->offset + k];
        }
        /* Fourth-order central differences at h and 2h, Richardson-combined (error O(h^6)):
         * steps large enough for the float32 rounding of the loss (~1e-5 here) to stay far
         * below the signal, without truncation error. */
        double h = 5e-2 * (rms > 0.3 ? rms : 0.3);
        double lk[6];
        static const double steps[6] = {1.0, -1.0, 2.0, -2.0, 4.0, -4.0};
        for (int s = 0; s < 6; s++) {
            for (size_t k = 0; k < t->numel; k++) {
                p[t->offset + k] = (float)(saved[t->offset + k] + steps[s] * h * v[k]);
            }
            lk[s] = run_case(c, 0);
        }
        memcpy(p + t->offset, saved + t->offset, sizeof(float) * t->numel);
        double d1 = (8.0 * (lk[0] - lk[1]) - (lk[2] - lk[3])) / (12.0 * h);
        double d2 = (8.0 * (lk[2] - lk[3]) - (lk[4] - lk[5])) / (24.0 * h);
        double fd = (16.0 * d1 - d2) / 15.0;
        /* Relative to |g . v|, or to its typical size ||g|| / sqrt(3) (v uniform in [-1, 1])
         * when the random direction happens to be nearly orthogonal to g. */
        double typical = sqrt(gn / 3.0);
        double scale = fabs(gv) > typical ? fabs(gv) : typical;
        double rel = fabs(fd - gv) / (scale > 0.0 ? scale : 1.0);
        printf("  %-34s g.v %+.5e  fd %+.5e  rel %.1e\n", t->name, gv, fd, rel);
        CHECK_MSG(rel <= tol, "%s %s: finite difference %.6e vs gradient %.6e (rel %.2e > %.0e)",
                  c->label, t->name, fd, gv, rel, tol);
        CHECK_MSG(gn > 0.0, "%s %s: zero gradient", c->label, t->name);
        worst = rel > worst ? rel : worst;
    }
    printf("  worst relative error %.2e\n", worst);
    free(saved);
    free(v);
    return worst;
}

static lvd_vit_train *tiny(lvd_vit_ffn ffn, int n_reg, int heads, uint64_t seed)
{
    lvd_vit_info arch = {
        .dim = 64, .depth = 2, .heads = heads, .patch = 4, .grid = 4, .n_reg = n_reg, .ffn = ffn};
    lvd_error err = {0};
    lvd_vit_train *m;
    int rc = lvd_vit_train_create(&arch, 0.1f, seed, &m, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc != 0) {
        return NULL;
    }
    vt_perturb(m, seed + 100);
    /* One thread: the difference quotients check the math (threads are covered elsewhere), and
     * hundreds of tiny parallel regions would crawl on a loaded machine. */
    lvd_vit_train_set_threads(m, 1);
    return m;
}

int main(void)
{
    const double tol = 2e-3;
    /* SwiGLU with registers: antialiased resize to a non-square 3 x 5 grid, masked patches. */
    fd_case a = {.label = "swiglu, 4 registers, 12x20 (antialiased resize), mask"};
    a.m = tiny(LVD_VIT_SWIGLU, 4, 2, 1);
    if (a.m && setup_pass(&a, 2, 12, 20, 1, 0.0, 11) == 0) {
        check_case(&a, tol);
    }
    free_case(&a);

    /* MLP without registers: local crops 8x8 (2 x 2 grid, bicubic with the 0.1 offset) and a
     * larger 24x24 input (upsampled 6 x 6 grid), two passes accumulating, one head of 64. */
    fd_case b = {.label = "mlp, global 16x16 masked + local 8x8 + 24x24, 3 passes"};
    b.m = tiny(LVD_VIT_MLP, 0, 0, 2);
    if (b.m && setup_pass(&b, 2, 16, 16, 1, 0.0, 21) == 0 &&
        setup_pass(&b, 3, 8, 8, 0, 0.0, 22) == 0 && setup_pass(&b, 1, 24, 24, 0, 0.0, 23) == 0) {
        check_case(&b, tol);
    }
    free_case(&b);

    /* Stochastic depth: rate 0.5 over 4 images keeps 2 per branch, the seed fixing them. */
    fd_case c = {.label = "mlp, stochastic depth 0.5 (fixed seed), 2 heads of 32"};
    c.m = tiny(LVD_VIT_MLP, 0, 2, 3);
    if (c.m && setup_pass(&c, 4, 16, 16, 1, 0.5, 31) == 0) {
        run_case(&c, 0);
        const lvd_vit_pass *p = c.pass[0].p;
        int partial = 0;
        for (int i = 0; i < 2 * lvd_vit_train_info(c.m)->depth; i++) {
            CHECK(p->nsub[i] == 2);
            partial |= p->sub[i * 4] != 0 || p->sub[i * 4 + 1] != 1;
        }
        CHECK_MSG(partial, "every subset is the first two images");
        check_case(&c, tol);
    }
    free_case(&c);
    return check_finish();
}
