/* The SSL trainer (train/ssl.h) beyond the reference case: the compositions the case does not
 * cover (separate iBOT head, Sinkhorn-Knopp targets, no local crops, no KoLeo, stochastic depth)
 * checked by directional finite differences of the total loss over every student parameter;
 * given mask bookkeeping equal to derived; a checkpoint of lvd_ssl_ckpt_groups restored into a
 * fresh trainer continues bit for bit like the uninterrupted run; repeatable runs; refused
 * configurations, models and batches; a non-finite loss fails without moving a parameter. */
#include <math.h>
#include <string.h>

#include "embed/vit_rng.h"
#include "tests/train/optim_test.h"
#include "train/ssl.h"

enum { B = 3, PATCH = 4, GLOBAL = 8, LOCAL = 4, NP = (GLOBAL / PATCH) * (GLOBAL / PATCH) };

typedef struct setup {
    const char *name;
    int n_local, sinkhorn, separate;
    double koleo, ibot, drop;
} setup;

static void fill_normal(float *x, size_t n, lvd_rng *r, float scale)
{
    for (size_t i = 0; i < n; i++) {
        x[i] = scale * (float)lvd_rng_normal(r);
    }
}

/* A tiny trainer (dim 64, 2 blocks, 2 heads; head 64 -> 24 -> 24 -> 16 -> 20) whose students and
 * teachers are perturbed away from the init (so that every gradient is non-trivial). */
static lvd_ssl *make(const setup *s, uint64_t seed)
{
    lvd_vit_info arch = {
        .dim = 64, .depth = 2, .heads = 2, .patch = PATCH, .grid = 2, .ffn = LVD_VIT_MLP};
    lvd_head_config head = {.in_dim = 64,
                            .hidden_dim = 24,
                            .bottleneck_dim = 16,
                            .out_dim = 20,
                            .nlayers = 3,
                            .mlp_bias = 1};
    lvd_head_config ibot = head;
    ibot.out_dim = 12;
    lvd_ssl_config cfg;
    lvd_ssl_config_default(&cfg, B, s->n_local, GLOBAL, LOCAL);
    cfg.sinkhorn = s->sinkhorn;
    cfg.koleo_weight = s->koleo;
    cfg.ibot_weight = s->ibot;
    cfg.drop_path = s->drop;
    cfg.drop_seed = 11;
    cfg.threads = 2;
    lvd_ssl *t;
    lvd_error err;
    int rc =
        lvd_ssl_create_new(&cfg, &arch, 0.1f, &head, s->separate ? &ibot : NULL, seed, &t, &err);
    CHECK_MSG(rc == 0, "%s: %s", s->name, err.msg);
    if (rc != 0) {
        return NULL;
    }
    lvd_rng r = {seed * 3 + 1};
    for (int i = 0; i < lvd_ssl_n_parts(t); i++) {
        lvd_ssl_part p = lvd_ssl_get_part(t, i);
        for (size_t j = 0; j < p.layout->total; j++) {
            p.student[j] += 0.05f * (float)lvd_rng_normal(&r);
            p.teacher[j] = p.student[j] + 0.05f * (float)lvd_rng_normal(&r);
        }
    }
    return t;
}

typedef struct batch_data {
    float global[2 * B * 3 * GLOBAL * GLOBAL];
    float local[2 * B * 3 * LOCAL * LOCAL];
    uint8_t masks[2 * B * NP];
    lvd_ssl_batch b;
} batch_data;

static void make_batch(batch_data *d, uint64_t seed)
{
    lvd_rng r = {seed};
    fill_normal(d->global, sizeof d->global / sizeof(float), &r, 1.0f);
    fill_normal(d->local, sizeof d->local / sizeof(float), &r, 1.0f);
    /* crops 0, 2 and 5 masked (1, 2 and 3 patches), the others not */
    memset(d->masks, 0, sizeof d->masks);
    d->masks[0 * NP + 1] = 1;
    d->masks[2 * NP + 0] = d->masks[2 * NP + 3] = 1;
    d->masks[5 * NP + 0] = d->masks[5 * NP + 1] = d->masks[5 * NP + 2] = 1;
    d->b = (lvd_ssl_batch){.global_crops = d->global, .local_crops = d->local, .masks = d->masks};
}

/* Total loss at the current students, the centers restored first (a forward_backward records a
 * pending center update that the next one would apply). */
static double loss_at(lvd_ssl *t, const lvd_ssl_batch *b, const float *c0, const float *c1)
{
    lvd_center *cd = lvd_ssl_dino_center(t), *ci = lvd_ssl_ibot_center(t);
    memcpy(cd->center, c0, sizeof(float) * cd->K);
    memcpy(ci->center, c1, sizeof(float) * ci->K);
    cd->has_pending = ci->has_pending = 0;
    lvd_ssl_stats st;
    lvd_error err;
    int rc = lvd_ssl_forward_backward(t, b, 0.07, &st, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    return st.loss_total;
}

/* Moves every student parameter by eps * u (u: one buffer per part). */
static void move(lvd_ssl *t, float *const *u, double eps)
{
    for (int i = 0; i < lvd_ssl_n_parts(t); i++) {
        lvd_ssl_part p = lvd_ssl_get_part(t, i);
        for (size_t j = 0; j < p.layout->total; j++) {
            p.student[j] = (float)((double)p.student[j] + eps * u[i][j]);
        }
    }
}

static void check_fd(const setup *s)
{
    lvd_ssl *t = make(s, 5);
    if (!t) {
        return;
    }
    batch_data *d = malloc(sizeof *d);
    make_batch(d, 9);
    /* non-zero centers: softmax centering must subtract them */
    lvd_rng r = {77};
    lvd_center *cd = lvd_ssl_dino_center(t), *ci = lvd_ssl_ibot_center(t);
    float *c0 = malloc(sizeof(float) * cd->K), *c1 = malloc(sizeof(float) * ci->K);
    fill_normal(c0, (size_t)cd->K, &r, 0.5f);
    fill_normal(c1, (size_t)ci->K, &r, 0.5f);
    double l0 = loss_at(t, &d->b, c0, c1);
    /* g . u over all parts, u random with unit norm, saved students to restore */
    int np = lvd_ssl_n_parts(t);
    float *u[LVD_SSL_MAX_PARTS], *keep[LVD_SSL_MAX_PARTS];
    double norm = 0, gu = 0;
    for (int i = 0; i < np; i++) {
        lvd_ssl_part p = lvd_ssl_get_part(t, i);
        size_t n = p.layout->total;
        u[i] = malloc(n * sizeof(float));
        keep[i] = malloc(n * sizeof(float));
        memcpy(keep[i], p.student, n * sizeof(float));
        fill_normal(u[i], n, &r, 1.0f);
        for (size_t j = 0; j < n; j++) {
            norm += (double)u[i][j] * u[i][j];
        }
    }
    for (int i = 0; i < np; i++) {
        lvd_ssl_part p = lvd_ssl_get_part(t, i);
        for (size_t j = 0; j < p.layout->total; j++) {
            u[i][j] = (float)(u[i][j] / sqrt(norm));
            gu += (double)p.grad[j] * u[i][j];
        }
    }
    /* Richardson-combined central differences */
    double D[2];
    for (int k = 0; k < 2; k++) {
        double eps = k ? 1e-2 : 2e-2;
        move(t, u, eps);
        double lp = loss_at(t, &d->b, c0, c1);
        for (int i = 0; i < np; i++) {
            lvd_ssl_part p = lvd_ssl_get_part(t, i);
            memcpy(p.student, keep[i], p.layout->total * sizeof(float));
        }
        move(t, u, -eps);
        double lm = loss_at(t, &d->b, c0, c1);
        for (int i = 0; i < np; i++) {
            lvd_ssl_part p = lvd_ssl_get_part(t, i);
            memcpy(p.student, keep[i], p.layout->total * sizeof(float));
        }
        D[k] = (lp - lm) / (2 * eps);
    }
    double fd = (4 * D[1] - D[0]) / 3;
    double rel = fabs(fd - gu) / fmax(fabs(gu), 1e-3);
    printf("  %-34s loss %.5f  g.u %+.6e  finite differences %+.6e  (rel %.1e)\n", s->name, l0, gu,
           fd, rel);
    CHECK_MSG(rel < 2e-3 && fabs(gu) > 1e-3, "%s: directional derivative %.6e vs %.6e", s->name, gu,
              fd);
    for (int i = 0; i < np; i++) {
        free(u[i]);
        free(keep[i]);
    }
    free(c0);
    free(c1);
    free(d);
    lvd_ssl_free(t);
}

/* Copies of every buffer of the trainer's checkpoint groups, for bitwise comparisons. */
static int same_state(lvd_ssl *a, lvd_ssl *b)
{
    lvd_ckpt_group ga[LVD_SSL_CKPT_GROUPS], gb[LVD_SSL_CKPT_GROUPS];
    int n = lvd_ssl_ckpt_groups(a, ga);
    if (n != lvd_ssl_ckpt_groups(b, gb)) {
        return 0;
    }
    for (int i = 0; i < n; i++) {
        if (strcmp(ga[i].prefix, gb[i].prefix) != 0 || ga[i].layout->total != gb[i].layout->total ||
            memcmp(ga[i].data, gb[i].data, ga[i].layout->total * sizeof(float)) != 0) {
            return 0;
        }
    }
    return lvd_ssl_get_step(a) == lvd_ssl_get_step(b);
}

static int steps(lvd_ssl *t, int n, uint64_t seed)
{
    batch_data *d = malloc(sizeof *d);
    lvd_schedule_values sv = {
        .lr = 1e-3, .wd = 0.04, .momentum = 0.99, .teacher_temp = 0.06, .last_layer_lr = 1e-3};
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        make_batch(d, seed + (uint64_t)lvd_ssl_get_step(t));
        lvd_error err;
        rc = lvd_ssl_step(t, &d->b, &sv, NULL, &err);
        CHECK_MSG(rc == 0, "%s", err.msg);
    }
    free(d);
    return rc;
}

static void check_resume(void)
{
    setup s = {"resume", 2, 0, 1, 0.1, 1.0, 0.3};
    char *tmp = ot_tmpdir();
    char path[1100];
    snprintf(path, sizeof path, "%s/ckpt.safetensors", tmp);
    lvd_ssl *a = make(&s, 3), *b = make(&s, 3), *c = make(&s, 4);
    if (a && b && c) {
        CHECK(same_state(a, b));
        steps(a, 3, 100);
        steps(b, 2, 100);
        lvd_ckpt_group g[LVD_SSL_CKPT_GROUPS];
        int n = lvd_ssl_ckpt_groups(b, g);
        CHECK(n == 4 * 3 + 2);
        lvd_ckpt_state st = {.step = lvd_ssl_get_step(b)};
        lvd_error err;
        CHECK_MSG(lvd_ckpt_save(path, g, n, &st, &err) == 0, "%s", err.msg);
        /* c started from other weights: the checkpoint replaces all of its state */
        n = lvd_ssl_ckpt_groups(c, g);
        lvd_ckpt_state st2 = {0};
        CHECK_MSG(lvd_ckpt_load(path, g, n, &st2, &err) == 0, "%s", err.msg);
        lvd_ssl_set_step(c, st2.step);
        lvd_ckpt_state_free(&st2);
        CHECK(same_state(b, c));
        steps(c, 1, 100);
        CHECK_MSG(same_state(a, c), "3 steps straight differ from 2 + checkpoint + 1");
        steps(b, 1, 100);
        CHECK(same_state(a, b));
    }
    lvd_ssl_free(a);
    lvd_ssl_free(b);
    lvd_ssl_free(c);
    check_rmtree(tmp);
}

static void check_bookkeeping(void)
{
    setup s = {"bookkeeping", 1, 0, 0, 0.1, 1.0, 0.0};
    lvd_ssl *a = make(&s, 6), *b = make(&s, 6);
    batch_data *d = malloc(sizeof *d);
    make_batch(d, 21);
    lvd_error err;
    if (a && b) {
        lvd_ssl_stats sa, sb;
        CHECK(lvd_ssl_forward_backward(a, &d->b, 0.05, &sa, &err) == 0);
        int idx[6] = {0 * NP + 1, 2 * NP + 0, 2 * NP + 3, 5 * NP + 0, 5 * NP + 1, 5 * NP + 2};
        float w[6] = {1.0f, 0.5f, 0.5f, 1.0f / 3, 1.0f / 3, 1.0f / 3};
        lvd_ssl_batch given = d->b;
        given.mask_indices = idx;
        given.masks_weight = w;
        given.n_masked = 6;
        CHECK(lvd_ssl_forward_backward(b, &given, 0.05, &sb, &err) == 0);
        CHECK(sa.n_masked == 6 && sb.n_masked == 6 && sa.loss_total == sb.loss_total);
        lvd_ssl_part pa = lvd_ssl_get_part(a, 0), pb = lvd_ssl_get_part(b, 0);
        CHECK(memcmp(pa.grad, pb.grad, pa.layout->total * sizeof(float)) == 0);
        /* indices that are not masked patches, or out of order, are refused */
        idx[1] = 1 * NP;
        CHECK(lvd_ssl_forward_backward(b, &given, 0.05, &sb, &err) == -1 &&
              strstr(err.msg, "mask index"));
        idx[1] = 2 * NP + 3;
        idx[2] = 2 * NP + 0;
        CHECK(lvd_ssl_forward_backward(b, &given, 0.05, &sb, &err) == -1);
        /* an update without a forward_backward is refused */
        lvd_schedule_values sv = {1e-3, 0.04, 0.99, 0.06, 1e-3};
        CHECK(lvd_ssl_update(b, &sv, NULL, &err) == -1);
        /* a NaN input: the step fails and no parameter moves */
        lvd_ssl_part p = lvd_ssl_get_part(a, 1);
        float *before = malloc(p.layout->total * sizeof(float));
        memcpy(before, p.student, p.layout->total * sizeof(float));
        d->global[5] = NAN;
        CHECK(lvd_ssl_step(a, &d->b, &sv, NULL, &err) == -1 && strstr(err.msg, "loss"));
        CHECK(memcmp(before, p.student, p.layout->total * sizeof(float)) == 0);
        CHECK(lvd_ssl_get_step(a) == 0);
        free(before);
    }
    free(d);
    lvd_ssl_free(a);
    lvd_ssl_free(b);
}

static void check_refusals(void)
{
    lvd_vit_info arch = {
        .dim = 64, .depth = 1, .heads = 2, .patch = PATCH, .grid = 2, .ffn = LVD_VIT_MLP};
    lvd_head_config head = {.in_dim = 64,
                            .hidden_dim = 8,
                            .bottleneck_dim = 8,
                            .out_dim = 8,
                            .nlayers = 2,
                            .mlp_bias = 1};
    lvd_ssl_config cfg;
    lvd_ssl *t = NULL;
    lvd_error err;
    lvd_ssl_config_default(&cfg, B, 1, GLOBAL, LOCAL);
    cfg.global_h = 6;
    CHECK(lvd_ssl_create_new(&cfg, &arch, 0.1f, &head, NULL, 1, &t, &err) == -1 && !t &&
          strstr(err.msg, "multiples"));
    lvd_ssl_config_default(&cfg, 0, 1, GLOBAL, LOCAL);
    CHECK(lvd_ssl_create_new(&cfg, &arch, 0.1f, &head, NULL, 1, &t, &err) == -1);
    lvd_ssl_config_default(&cfg, B, 1, GLOBAL, LOCAL);
    cfg.dino_weight = 0;
    CHECK(lvd_ssl_create_new(&cfg, &arch, 0.1f, &head, NULL, 1, &t, &err) == -1);
    lvd_ssl_config_default(&cfg, B, 1, GLOBAL, LOCAL);
    cfg.max_masked = 2 * B * NP + 1;
    CHECK(lvd_ssl_create_new(&cfg, &arch, 0.1f, &head, NULL, 1, &t, &err) == -1);
    head.in_dim = 16;
    lvd_ssl_config_default(&cfg, B, 1, GLOBAL, LOCAL);
    CHECK(lvd_ssl_create_new(&cfg, &arch, 0.1f, &head, NULL, 1, &t, &err) == -1 &&
          strstr(err.msg, "DINO heads"));
    head.in_dim = 64;
    /* more masked patches than the room given */
    cfg.max_masked = 2;
    CHECK(lvd_ssl_create_new(&cfg, &arch, 0.1f, &head, NULL, 1, &t, &err) == 0);
    if (t) {
        batch_data *d = malloc(sizeof *d);
        make_batch(d, 1);
        CHECK(lvd_ssl_forward_backward(t, &d->b, 0.05, NULL, &err) == -1 &&
              strstr(err.msg, "masked patches"));
        d->b.local_crops = NULL;
        CHECK(lvd_ssl_forward_backward(t, &d->b, 0.05, NULL, &err) == -1);
        free(d);
        lvd_ssl_free(t);
    }
    /* mismatched student and teacher */
    lvd_ssl_models m = {0};
    lvd_vit_info other = arch;
    other.depth = 2;
    CHECK(lvd_vit_train_create(&arch, 0.1f, 1, &m.student, &err) == 0);
    CHECK(lvd_vit_train_create(&other, 0.1f, 1, &m.teacher, &err) == 0);
    CHECK(lvd_head_init(&m.student_dino, &head, 1, &err) == 0);
    CHECK(lvd_head_init(&m.teacher_dino, &head, 1, &err) == 0);
    CHECK(lvd_ssl_create(&cfg, &m, &t, &err) == -1 && strstr(err.msg, "architecture") &&
          !m.student && !m.teacher);
}

int main(void)
{
    static const setup setups[] = {
        {"centering, shared head, 2 local", 2, 0, 0, 0.1, 1.0, 0.0},
        {"sinkhorn, separate iBOT head", 1, 1, 1, 0.1, 1.0, 0.0},
        {"centering, separate head, drop 0.4", 2, 0, 1, 0.1, 1.0, 0.4},
        {"no local crops, no KoLeo", 0, 0, 0, 0.0, 1.0, 0.0},
        {"no iBOT, sinkhorn", 2, 1, 0, 0.1, 0.0, 0.0},
    };
    printf("directional derivative of the total loss over every student parameter:\n");
    for (size_t i = 0; i < sizeof setups / sizeof *setups; i++) {
        check_fd(&setups[i]);
    }
    check_resume();
    check_bookkeeping();
    check_refusals();
    return check_finish();
}
