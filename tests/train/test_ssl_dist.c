/* Data-parallel training (train/ssl_dist.h) against one process on the global batch. Every rank
 * trains on its share of a global batch of BG images for 3 steps (forward_backward, then
 * lvd_ssl_dist_reduce, then the update) and also runs the one-process trainer on the whole batch
 * itself; the first step's gradients must agree within GRAD_TOL and the parameters (students
 * and EMA teachers of every part) after 3 steps within PARAM_TOL relative (why not the issue's
 * 1e-5: see PARAM_TOL), and the ranks must hold bitwise the same parameters. Covered: pretraining
 * with Sinkhorn-Knopp (shared and separate iBOT heads, masks that leave one rank without masked
 * patches in a step), with softmax centering and iBOT off, head distillation (iBOT on every patch)
 * and feature distillation. KoLeo is per rank as in the reference: the ranks' mean KoLeo loss
 * equals the mean of one-process KoLeo losses of each share, and differs from the global batch's.
 * Run alone, the group is one process and the share the whole batch (bitwise equal). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/train/distill_test.h"
#include "train/ssl_dist.h"

enum { BG = 4, NL = 2, STEPS = 3, NP = (DT_G / 4) * (DT_G / 4) };
/* Gradients at the same parameters differ only by the order of float sums (measured <= 8e-7).
 * Parameters: AdamW divides by sqrt(v) + eps, so a gradient entry near zero moves its parameter
 * by lr times its rounding noise over eps, and after 3 steps even one process with 1 and with 2
 * threads differs by up to 7.5e-5 relative at lr 2e-3 (2 ranks: up to 9e-5 in an ASan build).
 * At the stage's lr for this batch (LR: 0.004 sqrt(8 / 1024), where test_train_stage_dist
 * measures 3e-7) the spread is proportionally smaller; parameters are held to 5e-5. */
#define LR        3.5e-4
#define GRAD_TOL  1e-5
#define PARAM_TOL 5e-5

typedef struct setup {
    const char *name;
    int distill; /* 0: pretraining, 1: head distillation, 2: feature distillation */
    int sinkhorn, separate;
    double koleo, ibot;
    int unequal; /* the reference differs from one process here (iBOT center: mean of per-rank
                    means over different masked counts): only the ranks' agreement is checked */
} setup;

typedef struct trainer {
    lvd_ssl *ssl;
    lvd_distill *dis;
} trainer;

static lvd_distill_teacher teacher;
static lvd_dist group;
static lvd_allreduce hook;

static int make_threads(const setup *s, int batch, const lvd_allreduce *ar, int threads, trainer *t)
{
    lvd_error err;
    memset(t, 0, sizeof *t);
    int rc;
    if (s->distill) {
        lvd_distill_config c;
        dt_config(&c, s->distill == 1 ? LVD_DISTILL_HEADS : LVD_DISTILL_FEATURES, batch, NL,
                  s->sinkhorn);
        c.ssl.koleo_weight = s->koleo;
        c.ssl.allreduce = ar;
        c.ssl.threads = threads;
        lvd_distill_spec sp = dt_student(5);
        rc = lvd_distill_create(&c, &teacher, &sp, &t->dis, &err);
    } else {
        lvd_vit_info arch = {.dim = 64, .depth = 2, .heads = 2, .patch = 4, .grid = 4};
        lvd_head_config head = {.in_dim = 64,
                                .hidden_dim = 48,
                                .bottleneck_dim = 16,
                                .out_dim = 40,
                                .nlayers = 3,
                                .mlp_bias = 1};
        lvd_head_config ibot = head;
        ibot.out_dim = 24;
        lvd_ssl_config c;
        lvd_ssl_config_default(&c, batch, NL, DT_G, DT_L);
        c.sinkhorn = s->sinkhorn;
        c.koleo_weight = s->koleo;
        c.ibot_weight = s->ibot;
        c.threads = threads;
        c.allreduce = ar;
        rc = lvd_ssl_create_new(&c, &arch, 0.1f, &head, s->separate ? &ibot : NULL, 9, &t->ssl,
                                &err);
    }
    CHECK_MSG(rc == 0, "%s: %s", s->name, err.msg);
    return rc;
}

static int make(const setup *s, int batch, const lvd_allreduce *ar, trainer *t)
{
    return make_threads(s, batch, ar, 2, t);
}

static void drop(trainer *t)
{
    lvd_ssl_free(t->ssl);
    lvd_distill_free(t->dis);
}

static int n_parts(const trainer *t)
{
    return t->ssl ? lvd_ssl_n_parts(t->ssl) : lvd_distill_n_parts(t->dis);
}

static lvd_ssl_part part(trainer *t, int i)
{
    return t->ssl ? lvd_ssl_get_part(t->ssl, i) : lvd_distill_get_part(t->dis, i);
}

/* forward_backward; the losses into st (feature distillation: total, cls and patch in extra). */
static int fb(trainer *t, const lvd_ssl_batch *b, lvd_ssl_stats *st, double *extra, lvd_error *err)
{
    memset(st, 0, sizeof *st);
    extra[0] = extra[1] = 0;
    if (t->ssl)
        return lvd_ssl_forward_backward(t->ssl, b, 0.07, st, err);
    lvd_distill_stats ds;
    if (lvd_distill_forward_backward(t->dis, b, 0.07, &ds, err) != 0)
        return -1;
    *st = ds.ssl;
    st->loss_total = ds.loss_total;
    extra[0] = ds.loss_cls;
    extra[1] = ds.loss_patch;
    return 0;
}

static int update(trainer *t, lvd_error *err)
{
    lvd_schedule_values sv = dt_schedule(LR);
    return t->ssl ? lvd_ssl_update(t->ssl, &sv, NULL, err)
                  : lvd_distill_update(t->dis, &sv, NULL, err);
}

/* Every part's student, then EMA, buffer one after the other (malloc'd). */
static float *snapshot(trainer *t, size_t *n)
{
    size_t total = 0;
    for (int i = 0; i < n_parts(t); i++)
        total += 2 * part(t, i).layout->total;
    float *out = malloc(total * sizeof *out + 1), *p = out;
    for (int i = 0; out && i < n_parts(t); i++) {
        lvd_ssl_part q = part(t, i);
        memcpy(p, q.student, q.layout->total * sizeof *p);
        p += q.layout->total;
        memcpy(p, q.teacher, q.layout->total * sizeof *p);
        p += q.layout->total;
    }
    *n = total;
    return out;
}

/* The global batch of step s: crops of images s * BG .. and masks (NULL without iBOT masks):
 * step 1 masks only images of the first half (rank 1 of 2 then has no masked patch). */
typedef struct gbatch {
    float global[2 * BG * 3 * DT_G * DT_G], local[NL * BG * 3 * DT_L * DT_L];
    uint8_t masks[2 * BG * NP];
} gbatch;

static void make_batch(const float *img, int s, gbatch *g)
{
    dt_crops(img, s * BG, BG, NL, g->global, g->local, 100 + (uint64_t)s);
    memset(g->masks, 0, sizeof g->masks);
    lvd_rng r = {200 + (uint64_t)s};
    for (int row = 0; row < 2 * BG; row++) {
        int image = row % BG;
        int masked = s == 1 ? image < BG / 2 : (row + s) % 3 != 0;
        for (int k = 0; masked && k < NP; k++)
            g->masks[row * NP + k] = lvd_rng_uniform(&r) < 0.4;
    }
}

/* Rank `rank`'s share (images o .. o + b - 1) in the batch layout of a batch of b. */
typedef struct lbatch {
    float global[2 * BG * 3 * DT_G * DT_G], local[NL * BG * 3 * DT_L * DT_L];
    uint8_t masks[2 * BG * NP];
} lbatch;

static void share(const gbatch *g, int o, int b, lbatch *l)
{
    size_t gs = 3 * DT_G * DT_G, ls = 3 * DT_L * DT_L;
    for (int c = 0; c < 2; c++) {
        memcpy(l->global + (size_t)c * b * gs, g->global + ((size_t)c * BG + o) * gs,
               (size_t)b * gs * sizeof(float));
        memcpy(l->masks + (size_t)c * b * NP, g->masks + ((size_t)c * BG + o) * NP, (size_t)b * NP);
    }
    for (int c = 0; c < NL; c++)
        memcpy(l->local + (size_t)c * b * ls, g->local + ((size_t)c * BG + o) * ls,
               (size_t)b * ls * sizeof(float));
}

static lvd_ssl_batch as_batch(const setup *s, float *global, float *local, uint8_t *masks)
{
    /* Head distillation without masks puts iBOT on every patch; feature mode ignores them. */
    lvd_ssl_batch b = {global, local, s->distill ? NULL : masks, NULL, NULL, 0};
    return b;
}

/* max |a - b| / max |b| over the whole snapshot, and the same of the displacements from a0. */
static void compare(const float *a, const float *b, const float *a0, size_t n, double *rel,
                    double *disp)
{
    double d = 0, m = 0, dd = 0, md = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)b[i]));
        dd = fmax(dd, fabs(((double)a[i] - a0[i]) - ((double)b[i] - a0[i])));
        md = fmax(md, fabs((double)b[i] - a0[i]));
    }
    *rel = m > 0 ? d / m : d;
    *disp = md > 0 ? dd / md : dd;
}

static void run(const setup *s, const float *img)
{
    int64_t o, e;
    lvd_dist_share(&group, BG, &o, &e);
    int b = (int)(e - o);
    trainer one, base, dist;
    if (make(s, BG, NULL, &one) != 0 || make_threads(s, BG, NULL, 1, &base) != 0 ||
        make(s, b, &hook, &dist) != 0)
        return;
    size_t n;
    float *start = snapshot(&one, &n);
    lvd_error err;
    static gbatch g;
    static lbatch l;
    double max_rel = 0, max_disp = 0, max_base = 0, grad_rel = 0;
    for (int step = 0; step < STEPS; step++) {
        make_batch(img, step, &g);
        share(&g, (int)o, b, &l);
        lvd_ssl_batch gb = as_batch(s, g.global, g.local, g.masks);
        lvd_ssl_batch lb = as_batch(s, l.global, l.local, l.masks);
        lvd_ssl_stats st1, stb, st;
        double x1[2], xb[2], x[2];
        CHECK_MSG(fb(&one, &gb, &st1, x1, &err) == 0, "%s: %s", s->name, err.msg);
        CHECK_MSG(fb(&base, &gb, &stb, xb, &err) == 0, "%s: %s", s->name, err.msg);
        int rc = fb(&dist, &lb, &st, x, &err);
        CHECK_MSG(rc == 0, "%s rank %d: %s", s->name, group.rank, err.msg);
        lvd_ssl_part parts[LVD_SSL_MAX_PARTS];
        for (int i = 0; i < n_parts(&dist); i++)
            parts[i] = part(&dist, i);
        lvd_ssl_dist_report rep = {&st, {x[0], x[1]}};
        CHECK_MSG(lvd_ssl_dist_reduce(&group, parts, n_parts(&dist), rc != 0, &rep, &err) == 0,
                  "%s: %s", s->name, err.msg);
        /* The first step's gradients are taken at the same parameters: only the order of the
         * float sums differs. */
        for (int i = 0; step == 0 && i < n_parts(&dist); i++) {
            lvd_ssl_part q = part(&one, i);
            double rel, unused;
            compare(parts[i].grad, q.grad, q.grad, q.layout->total, &rel, &unused);
            grad_rel = fmax(grad_rel, rel);
        }
        CHECK_MSG(update(&one, &err) == 0 && update(&base, &err) == 0 && update(&dist, &err) == 0,
                  "%s: %s", s->name, err.msg);
        /* The ranks' mean losses are the global batch's (no KoLeo: every term is a mean). */
        if (s->koleo == 0 && !s->unequal)
            CHECK_MSG(fabs(st.loss_total - st1.loss_total) <= 1e-5 * fabs(st1.loss_total) &&
                          fabs(rep.extra[0] - x1[0]) <= 1e-5 * fabs(x1[0]) + 1e-12,
                      "%s step %d: loss %.9g, one process %.9g", s->name, step, st.loss_total,
                      st1.loss_total);
        CHECK(st.n_masked == st1.n_masked);
        size_t nd;
        float *p1 = snapshot(&one, &n), *pd = snapshot(&dist, &nd), *pb = snapshot(&base, &nd);
        double rel, disp;
        compare(pd, p1, start, n, &rel, &disp);
        max_rel = fmax(max_rel, rel);
        max_disp = fmax(max_disp, disp);
        compare(pb, p1, start, n, &rel, &disp);
        max_base = fmax(max_base, rel);
        free(p1);
        free(pd);
        free(pb);
        lvd_ckpt_group gr[LVD_SSL_CKPT_GROUPS];
        int ng =
            dist.ssl ? lvd_ssl_ckpt_groups(dist.ssl, gr) : lvd_distill_ckpt_groups(dist.dis, gr);
        CHECK_MSG(lvd_ssl_dist_same(&group, gr, ng, &err) == 0, "%s: %s", s->name, err.msg);
    }
    if (group.rank == 0)
        printf("%-34s %d ranks: step-1 gradients %.2g, parameters after %d steps %.2g "
               "(displacements %.2g); one process 1 vs 2 threads %.2g\n",
               s->name, group.size, grad_rel, STEPS, max_rel, max_disp, max_base);
    if (!s->unequal) {
        CHECK_MSG(grad_rel <= GRAD_TOL, "%s: gradients differ by %.3g", s->name, grad_rel);
        CHECK_MSG(max_rel <= PARAM_TOL, "%s: parameters differ by %.3g relative", s->name, max_rel);
    }
    if (group.size == 1)
        CHECK(max_rel == 0);
    free(start);
    drop(&one);
    drop(&base);
    drop(&dist);
}

/* KoLeo per rank: the mean over the ranks of each rank's KoLeo equals the mean of one-process
 * KoLeo losses of each share (its nearest neighbours within the share), not the global one. */
static void koleo_per_rank(const float *img)
{
    setup s = {"koleo per rank", 0, 1, 0, 0.1, 1.0, 0};
    int64_t o, e;
    lvd_dist_share(&group, BG, &o, &e);
    int b = (int)(e - o);
    static gbatch g;
    static lbatch l;
    make_batch(img, 0, &g);
    lvd_error err;
    double per_share = 0, global = 0;
    trainer t;
    lvd_ssl_stats st;
    double x[2];
    for (int r = 0; r < group.size; r++) {
        lvd_dist other = {r, group.size};
        int64_t ro, re;
        lvd_dist_share(&other, BG, &ro, &re);
        share(&g, (int)ro, (int)(re - ro), &l);
        lvd_ssl_batch lb = as_batch(&s, l.global, l.local, l.masks);
        if (make(&s, (int)(re - ro), NULL, &t) != 0)
            return;
        CHECK_MSG(fb(&t, &lb, &st, x, &err) == 0, "%s", err.msg);
        per_share += st.loss_koleo / group.size;
        drop(&t);
    }
    lvd_ssl_batch gb = as_batch(&s, g.global, g.local, g.masks);
    if (make(&s, BG, NULL, &t) != 0)
        return;
    CHECK_MSG(fb(&t, &gb, &st, x, &err) == 0, "%s", err.msg);
    global = st.loss_koleo;
    drop(&t);
    share(&g, (int)o, b, &l);
    lvd_ssl_batch lb = as_batch(&s, l.global, l.local, l.masks);
    if (make(&s, b, &hook, &t) != 0)
        return;
    int rc = fb(&t, &lb, &st, x, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    lvd_ssl_part parts[LVD_SSL_MAX_PARTS];
    for (int i = 0; i < n_parts(&t); i++)
        parts[i] = part(&t, i);
    lvd_ssl_dist_report rep = {&st, {0, 0}};
    CHECK(lvd_ssl_dist_reduce(&group, parts, n_parts(&t), rc != 0, &rep, &err) == 0);
    printf("koleo: ranks' mean %.9g, mean over shares %.9g, global batch %.9g\n", st.loss_koleo,
           per_share, global);
    CHECK(fabs(st.loss_koleo - per_share) <= 1e-6 * fabs(per_share));
    if (group.size > 1)
        CHECK(fabs(st.loss_koleo - global) > 1e-3 * fabs(global));
    drop(&t);
}

/* A rank that fails makes every rank fail at the reduction, before any gradient sum. */
static void failure_is_collective(void)
{
    lvd_ssl_stats st = {0};
    lvd_ssl_dist_report rep = {&st, {0, 0}};
    lvd_error err = {0};
    int failed = group.rank == group.size - 1;
    if (failed)
        lvd_fail(&err, "my own failure");
    CHECK(lvd_ssl_dist_reduce(&group, NULL, 0, failed, &rep, &err) == -1);
    if (failed)
        CHECK(strstr(err.msg, "my own failure") != NULL);
    else
        CHECK(strstr(err.msg, "ranks failed") != NULL);
}

/* The comparison of states finds a rank that differs by one bit, on every rank. */
static void same_finds_difference(void)
{
    lvd_param_layout lay = {0};
    lvd_error err;
    int64_t shape[1] = {5};
    CHECK(lvd_param_layout_add(&lay, "w", 1, shape, &err) == 0);
    float w[5] = {1, 2, 3, 4, 5};
    lvd_ckpt_group g = {"x.", &lay, w};
    CHECK(lvd_ssl_dist_same(&group, &g, 1, &err) == 0);
    if (group.rank == group.size - 1 && group.size > 1)
        w[3] = nextafterf(w[3], 10.0f);
    int rc = lvd_ssl_dist_same(&group, &g, 1, &err);
    if (group.size > 1)
        CHECK(rc == -1 && strstr(err.msg, "rank 1 holds other parameters"));
    else
        CHECK(rc == 0);
    lvd_param_layout_free(&lay);
}

int main(void)
{
    lvd_error err;
    if (lvd_dist_init(&group, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    lvd_ssl_dist_hook(&group, &hook);
    char dir[] = "/tmp/lvd_ssl_dist_XXXXXX";
    if (!mkdtemp(dir) || dt_write_teacher(dir, 4, 1, 3) != 0 ||
        lvd_distill_teacher_load(dir, NULL, &teacher, &err) != 0) {
        fprintf(stderr, "teacher: %s\n", err.msg);
        return 1;
    }
    float *img = malloc((size_t)STEPS * BG * 3 * DT_G * DT_G * sizeof *img);
    dt_images(img, STEPS * BG, 17);
    const setup cases[] = {
        {"sinkhorn, shared iBOT head", 0, 1, 0, 0.0, 1.0, 0},
        {"sinkhorn, separate iBOT head", 0, 1, 1, 0.0, 1.0, 0},
        {"softmax centering, no iBOT", 0, 0, 0, 0.0, 0.0, 0},
        {"softmax centering, iBOT (unequal)", 0, 0, 0, 0.0, 1.0, 1},
        {"distill heads, sinkhorn", 1, 1, 0, 0.0, 1.0, 0},
        {"distill heads, softmax centering", 1, 0, 0, 0.0, 1.0, 0},
        {"distill features", 2, 0, 0, 0.0, 1.0, 0},
    };
    if (BG % group.size != 0) {
        printf("SKIP: %d ranks do not split a batch of %d\n", group.size, BG);
        return 77;
    }
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        run(&cases[i], img);
    koleo_per_rank(img);
    failure_is_collective();
    same_finds_difference();
    free(img);
    lvd_distill_teacher_free(&teacher);
    char path[64];
    snprintf(path, sizeof path, "%s/%s", dir, LVD_DISTILL_TEACHER_BACKBONE);
    remove(path);
    snprintf(path, sizeof path, "%s/%s", dir, LVD_DISTILL_TEACHER_HEADS);
    remove(path);
    rmdir(dir);
    return check_finish();
}
