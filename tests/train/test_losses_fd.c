/* Gradients of the SSL losses (train/loss.h) against five-point central differences on small
 * random inputs (DINO on softmax-centered and on Sinkhorn targets, iBOT, KoLeo); targets'
 * properties; the all-reduce hook; determinism over thread counts; refused sizes. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "tests/train/heads_check.h"
#include "train/loss.h"

enum { N = 5, K = 7, NI = 3, NP = 6, KN = 6, KD = 5 };

typedef struct ce_ctx {
    float s[N * K];
    float t[2][N * K];
    const float *tp[2];
    int n_t;
    /* iBOT */
    float w[NI * NP];
    int n;
    int ibot;
} ce_ctx;

static double ce_loss(void *p)
{
    ce_ctx *c = p;
    double l = 0.0;
    lvd_error err;
    if (c->ibot)
        CHECK(lvd_ibot_loss(c->s, c->t[0], c->w, c->n, K, 0.1f, NI, 1.0, &l, NULL, &err) == 0);
    else
        CHECK(lvd_dino_loss(c->s, c->tp, c->n_t, N, K, 0.1f, 0.75, &l, NULL, &err) == 0);
    return l;
}

/* Rows sum to 1 and entries are in [0, 1]. */
static void check_assignments(const char *label, const float *q, int n, int k)
{
    double worst = 0.0;
    int in_range = 1;
    for (int r = 0; r < n; r++) {
        double s = 0.0;
        for (int j = 0; j < k; j++) {
            s += q[r * k + j];
            in_range &= q[r * k + j] >= 0.0f && q[r * k + j] <= 1.0f;
        }
        worst = fmax(worst, fabs(s - 1.0));
    }
    CHECK_MSG(worst < 1e-5 && in_range, "%s: row sums off by %.3e", label, worst);
}

static void dino_fd(int sinkhorn)
{
    const char *label = sinkhorn ? "dino loss, Sinkhorn targets" : "dino loss, centered targets";
    uint64_t seed = 11 + (uint64_t)sinkhorn;
    ce_ctx c = {0};
    lvd_error err;
    float raw[2][N * K];
    hc_fill(c.s, N * K, 2.0, &seed);
    hc_fill(raw[0], N * K, 0.5, &seed);
    hc_fill(raw[1], N * K, 0.5, &seed);
    lvd_center ctr;
    CHECK(lvd_center_init(&ctr, K, 0.9f, &err) == 0);
    hc_fill(ctr.center, K, 0.1, &seed);
    for (int j = 0; j < 2; j++) {
        if (sinkhorn)
            CHECK(lvd_sinkhorn_targets(raw[j], N, K, 0.07f, 3, NULL, c.t[j], &err) == 0);
        else
            CHECK(lvd_center_softmax(&ctr, raw[j], N, 0.07f, c.t[j], &err) == 0);
        check_assignments(label, c.t[j], N, K);
        c.tp[j] = c.t[j];
    }
    lvd_center_free(&ctr);
    c.n_t = 2;
    float g[N * K];
    double l;
    CHECK(lvd_dino_loss(c.s, c.tp, 2, N, K, 0.1f, 0.75, &l, g, &err) == 0);
    CHECK(l == ce_loss(&c));
    hc_fd_check(label, ce_loss, &c, c.s, g, N * K, 1.0 / 128, 1e-4);
    /* One teacher crop at a time sums to both at once. */
    double l0, l1;
    c.n_t = 1;
    l0 = ce_loss(&c);
    c.tp[0] = c.t[1];
    l1 = ce_loss(&c);
    CHECK_MSG(fabs(l0 + l1 - l) <= 1e-12 * fabs(l), "%s: %.15g + %.15g != %.15g", label, l0, l1, l);
}

static void ibot_fd(void)
{
    uint64_t seed = 21;
    ce_ctx c = {0};
    lvd_error err;
    uint8_t masks[NI * NP] = {1, 0, 1, 1, 0, 0, /* 3 masked */
                              0, 0, 0, 0, 0, 0, /* none: weight clamp, still counted */
                              0, 1, 0, 0, 0, 1};
    int idx[NI * NP];
    CHECK(lvd_ibot_masked_rows(masks, NI, NP, idx, c.w, &c.n, &err) == 0);
    CHECK(c.n == 5 && idx[0] == 0 && idx[2] == 3 && idx[3] == 13 && idx[4] == 17);
    CHECK(c.w[0] == 1.0f / 3 && c.w[2] == 1.0f / 3 && c.w[3] == 0.5f && c.w[4] == 0.5f);
    float raw[N * K];
    hc_fill(c.s, N * K, 2.0, &seed);
    hc_fill(raw, N * K, 0.5, &seed);
    lvd_center ctr;
    CHECK(lvd_center_init(&ctr, K, 0.9f, &err) == 0);
    CHECK(lvd_center_softmax(&ctr, raw, c.n, 0.07f, c.t[0], &err) == 0);
    lvd_center_free(&ctr);
    c.ibot = 1;
    float g[N * K];
    double l;
    CHECK(lvd_ibot_loss(c.s, c.t[0], c.w, c.n, K, 0.1f, NI, 1.0, &l, g, &err) == 0);
    CHECK(l == ce_loss(&c));
    hc_fd_check("ibot loss", ce_loss, &c, c.s, g, (size_t)c.n * K, 1.0 / 128, 1e-4);
    /* The Sinkhorn targets of the masked patches work as well. */
    CHECK(lvd_sinkhorn_targets(raw, c.n, K, 0.07f, 3, NULL, c.t[0], &err) == 0);
    check_assignments("ibot Sinkhorn targets", c.t[0], c.n, K);
    CHECK(lvd_ibot_loss(c.s, c.t[0], c.w, c.n, K, 0.1f, NI, 1.0, &l, g, &err) == 0);
    hc_fd_check("ibot loss, Sinkhorn targets", ce_loss, &c, c.s, g, (size_t)c.n * K, 1.0 / 128,
                1e-4);
    /* No masked patch: loss 0. */
    CHECK(lvd_ibot_loss(c.s, c.t[0], c.w, 0, K, 0.1f, NI, 1.0, &l, g, &err) == 0 && l == 0.0);
}

typedef struct koleo_ctx {
    float x[KN * KD];
    int n;
} koleo_ctx;

static double koleo_loss(void *p)
{
    koleo_ctx *c = p;
    double l = 0.0;
    lvd_error err;
    CHECK(lvd_koleo_loss(c->x, c->n, KD, 0.1, &l, NULL, &err) == 0);
    return l;
}

static void koleo_fd(void)
{
    uint64_t seed = 31;
    koleo_ctx c = {.n = KN};
    hc_fill(c.x, KN * KD, 1.5, &seed);
    float g[KN * KD];
    for (int i = 0; i < KN * KD; i++)
        g[i] = 0.25f; /* the gradient is added */
    double l;
    lvd_error err;
    CHECK(lvd_koleo_loss(c.x, KN, KD, 0.1, &l, g, &err) == 0);
    for (int i = 0; i < KN * KD; i++)
        g[i] -= 0.25f;
    CHECK(l == koleo_loss(&c));
    hc_fd_check("koleo", koleo_loss, &c, c.x, g, KN * KD, 1.0 / 256, 1e-3);
    /* Scale-free: the loss of 3 x is that of x. */
    koleo_ctx c3 = c;
    for (int i = 0; i < KN * KD; i++)
        c3.x[i] *= 3.0f;
    CHECK(fabs(koleo_loss(&c3) - l) < 1e-6);
    /* One row: its own neighbour (distance ||eps||), no gradient. */
    float g1[KD] = {0};
    CHECK(lvd_koleo_loss(c.x, 1, KD, 1.0, &l, g1, &err) == 0);
    CHECK(fabs(l + log(1e-8 * sqrt((double)KD) + 1e-8)) < 1e-3);
    int zero = 1;
    for (int i = 0; i < KD; i++)
        zero &= g1[i] == 0.0f;
    CHECK(zero);
}

/* A fake two-rank all-reduce: both ranks hold the same data. */
static int twin_reduce(void *ctx, double *buf, size_t n, int op, lvd_error *err)
{
    (void)err;
    (*(int *)ctx)++;
    for (size_t i = 0; op == LVD_REDUCE_SUM && i < n; i++)
        buf[i] *= 2.0;
    return 0;
}

static int failing_reduce(void *ctx, double *buf, size_t n, int op, lvd_error *err)
{
    (void)ctx, (void)buf, (void)n, (void)op;
    return lvd_fail(err, "rank 3 went away");
}

static void allreduce_hook(void)
{
    uint64_t seed = 41;
    lvd_error err;
    float t[2 * N * K], q2[2 * N * K], q[N * K];
    hc_fill(t, N * K, 0.5, &seed);
    memcpy(t + N * K, t, sizeof(float) * N * K);
    int calls = 0;
    lvd_allreduce ar = {twin_reduce, &calls};
    CHECK(lvd_sinkhorn_targets(t, 2 * N, K, 0.07f, 3, NULL, q2, &err) == 0);
    CHECK(lvd_sinkhorn_targets(t, N, K, 0.07f, 3, &ar, q, &err) == 0);
    CHECK(calls == 7); /* the row count, 3 x (prototype maxima, prototype sums) */
    double d = 0.0;
    for (int i = 0; i < N * K; i++)
        d = fmax(d, fabs((double)q[i] - q2[i]));
    CHECK_MSG(d < 1e-6, "sinkhorn over two twin ranks differs by %.3e", d);
    lvd_center c1, c2;
    CHECK(lvd_center_init(&c1, K, 0.5f, &err) == 0 && lvd_center_init(&c2, K, 0.5f, &err) == 0);
    CHECK(lvd_center_update(&c1, t, N, &ar, &err) == 0);
    CHECK(lvd_center_update(&c2, t, N, NULL, &err) == 0);
    lvd_center_apply(&c1);
    lvd_center_apply(&c2);
    d = 0.0;
    for (int k = 0; k < K; k++)
        d = fmax(d, fabs((double)c1.center[k] - c2.center[k]));
    CHECK(d < 1e-7 && c1.center[0] != 0.0f);
    lvd_allreduce bad = {failing_reduce, NULL};
    CHECK(lvd_sinkhorn_targets(t, N, K, 0.07f, 3, &bad, q, &err) == -1 &&
          strstr(err.msg, "rank 3"));
    CHECK(lvd_center_update(&c1, t, N, &bad, &err) == -1 && strstr(err.msg, "rank 3"));
    /* A pending update is replaced by the next one (update_center twice before use). */
    float z[N * K] = {0};
    CHECK(lvd_center_update(&c2, t, N, NULL, &err) == 0);
    CHECK(lvd_center_update(&c2, z, N, NULL, &err) == 0);
    float before = c2.center[0];
    lvd_center_apply(&c2);
    CHECK(c2.center[0] == (float)(before * 0.5));
    lvd_center_free(&c1);
    lvd_center_free(&c2);
}

/* Big enough rows that OpenMP splits them: results must not depend on the thread count. */
static void determinism(void)
{
    enum { R = 64, KK = 1000 };
    uint64_t seed = 51;
    float *s = malloc(sizeof(float) * R * KK), *t = malloc(sizeof(float) * R * KK);
    float *out[2], *g[2], *kg[2];
    double l[2], kl[2];
    hc_fill(s, R * KK, 3.0, &seed);
    hc_fill(t, R * KK, 1.0, &seed);
    lvd_error err;
    for (int v = 0; v < 2; v++) {
        omp_set_num_threads(v + 1);
        out[v] = malloc(sizeof(float) * R * KK);
        g[v] = malloc(sizeof(float) * R * KK);
        kg[v] = calloc(R * KK, sizeof(float));
        CHECK(lvd_sinkhorn_targets(t, R, KK, 0.07f, 3, NULL, out[v], &err) == 0);
        lvd_center c;
        CHECK(lvd_center_init(&c, KK, 0.9f, &err) == 0);
        CHECK(lvd_center_update(&c, t, R, NULL, &err) == 0);
        CHECK(lvd_center_softmax(&c, t, R, 0.04f, g[v], &err) == 0);
        const float *tp[1] = {out[v]};
        CHECK(lvd_dino_loss(s, tp, 1, R, KK, 0.1f, 1.0, &l[v], g[v], &err) == 0);
        CHECK(lvd_koleo_loss(s, R * 10, 100, 1.0, &kl[v], kg[v], &err) == 0);
        lvd_center_free(&c);
    }
    omp_set_num_threads(2);
    CHECK(memcmp(out[0], out[1], sizeof(float) * R * KK) == 0);
    CHECK(memcmp(g[0], g[1], sizeof(float) * R * KK) == 0);
    CHECK(memcmp(kg[0], kg[1], sizeof(float) * R * KK) == 0);
    CHECK(l[0] == l[1] && kl[0] == kl[1]);
    for (int v = 0; v < 2; v++) {
        free(out[v]);
        free(g[v]);
        free(kg[v]);
    }
    free(s);
    free(t);
}

static void refusals(void)
{
    lvd_error err;
    float s[N * K] = {0}, t[N * K] = {0}, g[N * K];
    const float *tp[2] = {t, NULL};
    double l;
    CHECK(lvd_dino_loss(s, tp, 1, 0, K, 0.1f, 1.0, &l, g, &err) == -1 && strstr(err.msg, "size"));
    CHECK(lvd_dino_loss(s, tp, 1, N, 0, 0.1f, 1.0, &l, g, &err) == -1);
    CHECK(lvd_dino_loss(s, tp, 0, N, K, 0.1f, 1.0, &l, g, &err) == -1);
    CHECK(lvd_dino_loss(s, tp, 2, N, K, 0.1f, 1.0, &l, g, &err) == -1 &&
          strstr(err.msg, "missing"));
    CHECK(lvd_dino_loss(s, tp, 1, N, K, 0.0f, 1.0, &l, g, &err) == -1 &&
          strstr(err.msg, "temperature"));
    CHECK(lvd_dino_loss(s, tp, 1, N, K, NAN, 1.0, &l, g, &err) == -1);
    float w[N] = {1, 1, 1, 1, 1};
    CHECK(lvd_ibot_loss(s, t, w, -1, K, 0.1f, 2, 1.0, &l, g, &err) == -1);
    CHECK(lvd_ibot_loss(s, t, w, N, K, 0.1f, 0, 1.0, &l, g, &err) == -1);
    CHECK(lvd_ibot_loss(s, t, NULL, N, K, 0.1f, 2, 1.0, &l, g, &err) == -1);
    uint8_t m[4] = {1, 0, 0, 1};
    int idx[4], n;
    CHECK(lvd_ibot_masked_rows(m, 0, 4, idx, NULL, &n, &err) == -1);
    CHECK(lvd_ibot_masked_rows(m, 1, 4, idx, NULL, &n, &err) == 0 && n == 2 && idx[1] == 3);
    CHECK(lvd_koleo_loss(s, 0, K, 1.0, &l, g, &err) == -1);
    CHECK(lvd_koleo_loss(s, N, 0, 1.0, &l, g, &err) == -1);
    CHECK(lvd_sinkhorn_targets(t, N, K, 0.07f, -1, NULL, g, &err) == -1);
    CHECK(lvd_sinkhorn_targets(t, N, K, 0.07f, 0, NULL, g, &err) == -1);
    CHECK(lvd_sinkhorn_targets(t, 0, K, 0.07f, 3, NULL, g, &err) == -1);
    CHECK(lvd_sinkhorn_targets(t, N, K, -1.0f, 3, NULL, g, &err) == -1);
    float inf[N * K];
    for (int i = 0; i < N * K; i++)
        inf[i] = INFINITY;
    CHECK(lvd_sinkhorn_targets(inf, N, K, 0.07f, 3, NULL, g, &err) == -1 &&
          strstr(err.msg, "finite"));
    lvd_center c;
    CHECK(lvd_center_init(&c, 0, 0.9f, &err) == -1);
    CHECK(lvd_center_init(&c, K, 1.5f, &err) == -1);
    CHECK(lvd_center_init(&c, K, 0.9f, &err) == 0);
    CHECK(lvd_center_softmax(&c, t, 0, 0.07f, g, &err) == -1);
    CHECK(lvd_center_softmax(&c, t, N, 0.0f, g, &err) == -1);
    CHECK(lvd_center_update(&c, t, 0, NULL, &err) == -1);
    lvd_center_free(&c);
    /* Large logits (t / temp far above 88) still give finite Sinkhorn targets. */
    float big[N * K];
    uint64_t seed = 61;
    hc_fill(big, N * K, 40.0, &seed);
    CHECK(lvd_sinkhorn_targets(big, N, K, 0.07f, 3, NULL, g, &err) == 0);
    check_assignments("sinkhorn on large logits", g, N, K);
}

int main(void)
{
    dino_fd(0);
    dino_fd(1);
    ibot_fd();
    koleo_fd();
    allreduce_hook();
    determinism();
    refusals();
    return check_finish();
}
