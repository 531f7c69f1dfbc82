/* One distillation step (train/distill.h) against an independent composition and finite
 * differences, in both modes.
 *
 * HEADS (shared head with centering, separate iBOT head with Sinkhorn, and a batch with iBOT
 * masks): the teacher's targets are recomputed from its inference forward, its heads and the
 * loss.h target functions; the losses from the student's own forward and heads in double (DINO
 * local and global terms with the swapped teacher crops and the 2 + 2 n_local normalization,
 * iBOT over every patch of both global crops with weight 1 / N, or over the masked ones,
 * KoLeo on the global cls tokens). FEATURES (a teacher of patch 4 and one of patch 8 whose
 * input is the crop resized to the student's grid): the cosine loss of the projected student
 * tokens recomputed in double. Then, for every parameter tensor of every part (backbone, heads,
 * projection), the analytic gradient along a direction (the tensor's gradient direction plus a
 * random unit vector) against a five-point central difference of the loss on the same teacher
 * targets (lvd_distill_student_loss: losses summed in double). */
#include <omp.h>
#include <sys/stat.h>

#include "embed/vit_layers.h"
#include "tests/train/distill_test.h"
#include "tests/train/heads_check.h"

static lvd_error err;

/* ---- Independent composition ---- */

/* -sum_k t_k log_softmax(s / temp)_k in double. */
static double ce(const float *t, const float *s, int K, double temp)
{
    double m = -INFINITY, z = 0.0, dot = 0.0;
    for (int k = 0; k < K; k++) {
        m = s[k] / temp > m ? s[k] / temp : m;
    }
    for (int k = 0; k < K; k++) {
        z += exp(s[k] / temp - m);
    }
    double lse = m + log(z);
    for (int k = 0; k < K; k++) {
        dot += t[k] * (s[k] / temp - lse);
    }
    return -dot;
}

/* softmax(t / temp) per row into out, in double (the centering targets with a zero center). */
static void softmax_rows(const float *t, int n, int K, double temp, float *out)
{
    for (int r = 0; r < n; r++) {
        const float *x = t + (size_t)r * K;
        double m = -INFINITY, z = 0.0;
        for (int k = 0; k < K; k++) {
            m = x[k] / temp > m ? x[k] / temp : m;
        }
        for (int k = 0; k < K; k++) {
            z += exp(x[k] / temp - m);
        }
        for (int k = 0; k < K; k++) {
            out[(size_t)r * K + k] = (float)(exp(x[k] / temp - m) / z);
        }
    }
}

static void check_close(const char *label, double got, double want, double tol)
{
    double e = fabs(got - want) / fmax(fabs(want), 1e-12);
    printf("  %-40s %.8f (composed %.8f) rel %.1e\n", label, got, want, e);
    CHECK_MSG(e <= tol, "%s: %.9g differs from the composition %.9g (rel %.2e > %.0e)", label, got,
              want, e, tol);
}

/* The student's head of a part, rebuilt from the part's parameters. */
static int part_head(lvd_distill *d, const char *name, const lvd_head_config *cfg, lvd_head *h)
{
    for (int i = 0; i < lvd_distill_n_parts(d); i++) {
        lvd_ssl_part p = lvd_distill_get_part(d, i);
        if (strcmp(p.name, name) == 0 && lvd_head_init(h, cfg, 1, &err) == 0) {
            CHECK(h->layout.total == p.layout->total);
            memcpy(h->params, p.student, p.layout->total * sizeof(float));
            return 0;
        }
    }
    CHECK_MSG(0, "no part %s", name);
    return -1;
}

/* out (n, K) = head(x (n, D)). */
static void run_head(lvd_head *h, const float *x, int n, float *out)
{
    lvd_head_acts a = {0};
    CHECK(lvd_head_acts_init(&a, &h->cfg, n, &err) == 0);
    CHECK_MSG(lvd_head_forward(h, &a, x, n, out, &err) == 0, "%s", err.msg);
    lvd_head_acts_free(&a);
}

/* Recomposes the HEADS losses of the last forward_backward of d on b. */
static void compose_heads(lvd_distill *d, lvd_distill_teacher *T, const lvd_ssl_batch *b,
                          const lvd_distill_stats *st, double temp)
{
    const lvd_distill_config *c = lvd_distill_get_config(d);
    int B = c->ssl.batch, B2 = 2 * B, nl = c->ssl.n_local, N = 16, Dt = 128, Ds = 64;
    int K = T->dino.cfg.out_dim, Ki = T->ibot_separate ? T->ibot.cfg.out_dim : K;
    /* iBOT rows and weights. */
    int *idx = malloc(sizeof(int) * B2 * N), M = 0;
    float *w = malloc(sizeof(float) * B2 * N);
    for (int i = 0; i < B2; i++) {
        int cnt = 0;
        for (int p = 0; p < N; p++) {
            cnt += !b->masks || b->masks[i * N + p];
        }
        for (int p = 0; p < N; p++) {
            if (!b->masks || b->masks[i * N + p]) {
                idx[M] = i * N + p;
                w[M++] = 1.0f / (float)cnt;
            }
        }
    }
    CHECK_MSG(M == st->ssl.n_masked, "%d iBOT rows, the trainer used %d", M, st->ssl.n_masked);
    /* Teacher: tokens, swapped cls, heads, targets. */
    float *tcls = malloc(sizeof(float) * B2 * Dt), *tpatch = malloc(sizeof(float) * B2 * N * Dt);
    float *tin = malloc(sizeof(float) * (B2 + M) * Dt);
    lvd_vit_outputs o = {.cls = tcls, .patch = tpatch};
    CHECK_MSG(lvd_vit_forward(T->backbone, b->global_crops, B2, DT_G, DT_G, NULL, &o, &err) == 0,
              "%s", err.msg);
    for (int r = 0; r < B2; r++) {
        memcpy(tin + (size_t)r * Dt, tcls + (size_t)(r < B ? r + B : r - B) * Dt,
               sizeof(float) * Dt);
    }
    for (int r = 0; r < M; r++) {
        memcpy(tin + (size_t)(B2 + r) * Dt, tpatch + (size_t)idx[r] * Dt, sizeof(float) * Dt);
    }
    float *tlog_c = malloc(sizeof(float) * B2 * K), *tlog_p = malloc(sizeof(float) * M * Ki);
    if (T->ibot_separate) {
        run_head(&T->dino, tin, B2, tlog_c);
        run_head(&T->ibot, tin + (size_t)B2 * Dt, M, tlog_p);
    } else {
        float *all = malloc(sizeof(float) * (B2 + M) * K);
        run_head(&T->dino, tin, B2 + M, all);
        memcpy(tlog_c, all, sizeof(float) * B2 * K);
        memcpy(tlog_p, all + (size_t)B2 * K, sizeof(float) * M * K);
        free(all);
    }
    float *tgt_c = malloc(sizeof(float) * B2 * K), *tgt_p = malloc(sizeof(float) * M * Ki);
    if (c->ssl.sinkhorn) {
        CHECK(lvd_sinkhorn_targets(tlog_c, B2, K, (float)temp, 3, NULL, tgt_c, &err) == 0);
        CHECK(lvd_sinkhorn_targets(tlog_p, M, Ki, (float)temp, 3, NULL, tgt_p, &err) == 0);
    } else {
        softmax_rows(tlog_c, B2, K, temp, tgt_c);
        softmax_rows(tlog_p, M, Ki, temp, tgt_p);
    }
    const float *rd, *ri;
    int rm;
    lvd_ssl_targets(lvd_distill_ssl(d), &rd, &ri, &rm);
    vt_check_forward("teacher DINO targets", rd, tgt_c, (size_t)B2 * K);
    vt_check_forward("teacher iBOT targets", ri, tgt_p, (size_t)M * Ki);
    /* Student: tokens of its own passes, heads rebuilt from the parts. */
    lvd_vit_train *sm = lvd_distill_student(d);
    lvd_vit_pass *pg, *pl;
    CHECK(lvd_vit_pass_create(sm, B2, DT_G, DT_G, 0, &pg, &err) == 0);
    CHECK(lvd_vit_pass_create(sm, nl * B, DT_L, DT_L, 0, &pl, &err) == 0);
    float *sin = malloc(sizeof(float) * ((nl + 2) * B + M) * Ds);
    float *spatch = malloc(sizeof(float) * B2 * N * Ds);
    lvd_vit_train_outputs lo = {.cls = sin},
                          go = {.cls = sin + (size_t)nl * B * Ds, .patch = spatch};
    CHECK(lvd_vit_train_forward(sm, pl, b->local_crops, NULL, NULL, &lo, &err) == 0);
    CHECK(lvd_vit_train_forward(sm, pg, b->global_crops, b->masks, NULL, &go, &err) == 0);
    int ncls = (nl + 2) * B;
    for (int r = 0; r < M; r++) {
        memcpy(sin + (size_t)(ncls + r) * Ds, spatch + (size_t)idx[r] * Ds, sizeof(float) * Ds);
    }
    lvd_head_config dcfg = T->dino.cfg, icfg = T->ibot_separate ? T->ibot.cfg : T->dino.cfg;
    dcfg.in_dim = icfg.in_dim = Ds;
    lvd_head hd = {0}, hi = {0};
    float *slog_c = malloc(sizeof(float) * ncls * K), *slog_p = malloc(sizeof(float) * M * Ki);
    if (part_head(d, "dino_head", &dcfg, &hd) == 0) {
        run_head(&hd, sin, ncls, slog_c);
        if (!T->ibot_separate) {
            run_head(&hd, sin + (size_t)ncls * Ds, M, slog_p);
        }
    }
    if (T->ibot_separate && part_head(d, "ibot_head", &icfg, &hi) == 0) {
        run_head(&hi, sin + (size_t)ncls * Ds, M, slog_p);
    }
    /* Losses. */
    double terms = 2.0 + 2 * nl, st_temp = c->ssl.student_temp, local = 0.0, global = 0.0;
    double ibot = 0.0, koleo = 0.0;
    for (int j = 0; j < nl; j++) {
        for (int t = 0; t < 2; t++) {
            double s = 0.0;
            for (int i = 0; i < B; i++) {
                s += ce(tgt_c + (size_t)(t * B + i) * K, slog_c + (size_t)(j * B + i) * K, K,
                        st_temp);
            }
            local += s / B / terms;
        }
    }
    for (int r = 0; r < B2; r++) {
        global += ce(tgt_c + (size_t)r * K, slog_c + (size_t)(nl * B + r) * K, K, st_temp);
    }
    global = 2.0 * global / B2 / terms;
    for (int r = 0; r < M; r++) {
        ibot += w[r] * ce(tgt_p + (size_t)r * Ki, slog_p + (size_t)r * Ki, Ki, st_temp);
    }
    ibot /= B2;
    for (int k = 0; k < 2; k++) {
        double l;
        CHECK(lvd_koleo_loss(sin + (size_t)(nl * B + k * B) * Ds, B, Ds, 0.1, &l, NULL, &err) == 0);
        koleo += l;
    }
    check_close("dino_local", st->ssl.loss_dino_local, local, 1e-5);
    check_close("dino_global", st->ssl.loss_dino_global, global, 1e-5);
    check_close("ibot", st->ssl.loss_ibot, ibot, 1e-5);
    check_close("koleo", st->ssl.loss_koleo, koleo, 1e-5);
    check_close("total", st->loss_total, local + global + ibot + koleo, 1e-5);
    lvd_head_free(&hd);
    lvd_head_free(&hi);
    lvd_vit_pass_free(pg);
    lvd_vit_pass_free(pl);
    free(idx);
    free(w);
    free(tcls);
    free(tpatch);
    free(tin);
    free(tlog_c);
    free(tlog_p);
    free(tgt_c);
    free(tgt_p);
    free(sin);
    free(spatch);
    free(slog_c);
    free(slog_p);
}

/* dst (n, 3, Ht, Wt) = the separable resize of src (n, 3, Hs, Ws) with the axis matrices, in
 * double loops. */
static void resize_ref(float *dst, const float *src, int n, int Hs, int Ws, int Ht, int Wt)
{
    float *wy = malloc(sizeof(float) * Ht * Hs), *wx = malloc(sizeof(float) * Wt * Ws);
    lvd_vit_pos_axis_matrix(wy, Hs, Ht, 1);
    lvd_vit_pos_axis_matrix(wx, Ws, Wt, 1);
    for (int p = 0; p < n * 3; p++) {
        const float *x = src + (size_t)p * Hs * Ws;
        for (int i = 0; i < Ht; i++) {
            for (int j = 0; j < Wt; j++) {
                double s = 0.0;
                for (int a = 0; a < Hs; a++) {
                    for (int bb = 0; bb < Ws; bb++) {
                        s += (double)wy[i * Hs + a] * x[a * Ws + bb] * wx[j * Ws + bb];
                    }
                }
                dst[(size_t)p * Ht * Wt + (size_t)i * Wt + j] = (float)s;
            }
        }
    }
    free(wy);
    free(wx);
}

/* Recomposes the FEATURES losses of the last call on b. */
static void compose_features(lvd_distill *d, lvd_distill_teacher *T, const lvd_ssl_batch *b,
                             const lvd_distill_stats *st)
{
    const lvd_distill_config *c = lvd_distill_get_config(d);
    int B2 = 2 * c->ssl.batch, N = 16, Dt = 128, Ds = 64, Pt = lvd_vit_get_info(T->backbone)->patch;
    int Ht = 4 * Pt;
    float *tx = malloc(sizeof(float) * B2 * 3 * Ht * Ht);
    resize_ref(tx, b->global_crops, B2, DT_G, DT_G, Ht, Ht);
    if (Pt == 4) {
        CHECK_MSG(vt_max_abs_diff(tx, b->global_crops, (size_t)B2 * 3 * Ht * Ht) < 1e-6,
                  "resizing to the same size is not the identity");
    }
    float *tt = malloc(sizeof(float) * B2 * (1 + N) * Dt);
    lvd_vit_outputs o = {.cls = tt, .patch = tt + (size_t)B2 * Dt};
    CHECK_MSG(lvd_vit_forward(T->backbone, tx, B2, Ht, Ht, NULL, &o, &err) == 0, "%s", err.msg);
    lvd_vit_train *sm = lvd_distill_student(d);
    lvd_vit_pass *pg;
    float *xs = malloc(sizeof(float) * B2 * (1 + N) * Ds);
    CHECK(lvd_vit_pass_create(sm, B2, DT_G, DT_G, 0, &pg, &err) == 0);
    lvd_vit_train_outputs so = {.cls = xs, .patch = xs + (size_t)B2 * Ds};
    CHECK(lvd_vit_train_forward(sm, pg, b->global_crops, NULL, NULL, &so, &err) == 0);
    lvd_ssl_part proj = lvd_distill_get_part(d, 1);
    CHECK(strcmp(proj.name, "proj") == 0);
    const float *W = proj.student, *bias = proj.student + (size_t)Dt * Ds;
    double lc = 0.0, lp = 0.0;
    for (int r = 0; r < B2 * (1 + N); r++) {
        double yt = 0.0, yy = 0.0, t2 = 0.0;
        for (int i = 0; i < Dt; i++) {
            double y = bias[i];
            for (int j = 0; j < Ds; j++) {
                y += (double)W[(size_t)i * Ds + j] * xs[(size_t)r * Ds + j];
            }
            double t = tt[(size_t)r * Dt + i];
            yt += y * t;
            yy += y * y;
            t2 += t * t;
        }
        double l = 1.0 - yt / (sqrt(yy) * sqrt(t2));
        *(r < B2 ? &lc : &lp) += l;
    }
    lc /= B2;
    lp /= (double)B2 * N;
    check_close("feature loss cls", st->loss_cls, lc, 1e-5);
    check_close("feature loss patch", st->loss_patch, lp, 1e-5);
    check_close("feature loss total", st->loss_total, 0.5 * lc + 0.5 * lp, 1e-5);
    lvd_vit_pass_free(pg);
    free(tx);
    free(tt);
    free(xs);
}

/* ---- Finite differences ---- */

static double student_loss(lvd_distill *d, const lvd_ssl_batch *b)
{
    lvd_distill_stats st;
    int rc = lvd_distill_student_loss(d, b, &st, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    return rc == 0 ? st.loss_total : NAN;
}

/* For every tensor of every part: the gradient g (copied after the forward_backward) along
 * v = g / |g| + r (r a random unit vector) against the five-point difference of the loss with
 * steps h v, h = step / |g|, so that the loss moves by about step along the way. */
static void fd_check(const char *label, lvd_distill *d, const lvd_ssl_batch *b, double step,
                     double tol)
{
    lvd_distill_stats st;
    int n_parts = lvd_distill_n_parts(d);
    CHECK_MSG(lvd_distill_forward_backward(d, b, 0.07, &st, &err) == 0, "%s", err.msg);
    double worst = 0.0;
    char where[160] = "";
    int checked = 0;
    uint64_t seed = 99;
    for (int pi = 0; pi < n_parts; pi++) {
        lvd_ssl_part p = lvd_distill_get_part(d, pi);
        float *g = malloc(sizeof(float) * p.layout->total);
        memcpy(g, p.grad, sizeof(float) * p.layout->total);
        for (int ti = 0; ti < p.layout->n; ti++) {
            const lvd_param_tensor *t = &p.layout->t[ti];
            float *x = p.student + t->offset, *x0 = malloc(sizeof(float) * t->numel);
            const float *gt = g + t->offset;
            double *v = malloc(sizeof(double) * t->numel), gn = 0.0, gv = 0.0;
            memcpy(x0, x, sizeof(float) * t->numel);
            for (size_t i = 0; i < t->numel; i++) {
                gn += (double)gt[i] * gt[i];
            }
            gn = sqrt(gn);
            for (size_t i = 0; i < t->numel; i++) {
                double r = hc_uniform(&seed) < 0 ? -1.0 : 1.0;
                v[i] = (gn > 0 ? gt[i] / gn : 0.0) + r / sqrt((double)t->numel);
                gv += gt[i] * v[i];
            }
            double h = gn > 0 ? step / gn : step, f[4];
            const double at[4] = {-2, -1, 1, 2};
            for (int k = 0; k < 4; k++) {
                for (size_t i = 0; i < t->numel; i++) {
                    x[i] = (float)(x0[i] + at[k] * h * v[i]);
                }
                f[k] = student_loss(d, b);
            }
            memcpy(x, x0, sizeof(float) * t->numel);
            double fd = (f[0] - 8 * f[1] + 8 * f[2] - f[3]) / (12 * h);
            /* Zero gradients (e.g. the mask token without masks) must give a zero difference. */
            double e = gn > 0 ? fabs(fd - gv) / fabs(gv) : fabs(fd) / (step / h);
            if (!(e <= worst)) {
                worst = e;
                snprintf(where, sizeof where, "%s.%s (fd %.6e, g.v %.6e)", p.name, t->name, fd, gv);
            }
            checked++;
            free(x0);
            free(v);
        }
        free(g);
    }
    printf("  %-40s %d tensors, worst relative error %.2e at %s\n", label, checked, worst, where);
    CHECK_MSG(worst <= tol, "%s: gradient differs from finite differences by %.3e at %s", label,
              worst, where);
}

/* ---- Cases ---- */

static lvd_ssl_batch make_batch(int B, int n_local, float **global, float **local, uint8_t **masks,
                                int with_masks, uint64_t seed)
{
    float *img = malloc(sizeof(float) * B * 3 * DT_G * DT_G);
    dt_images(img, B, seed);
    *global = malloc(sizeof(float) * 2 * B * 3 * DT_G * DT_G);
    *local = malloc(sizeof(float) * (n_local * B + 1) * 3 * DT_L * DT_L);
    dt_crops(img, 0, B, n_local, *global, *local, seed + 1);
    free(img);
    *masks = NULL;
    if (with_masks) {
        /* Half the images masked, a few patches each (one of them with every patch). */
        *masks = calloc((size_t)2 * B * 16, 1);
        for (int i = 0; i < 2 * B; i += 2) {
            for (int p = 0; p < 16; p++) {
                (*masks)[i * 16 + p] = i == 0 || (p * 7 + i) % 5 == 0;
            }
        }
    }
    lvd_ssl_batch b = {.global_crops = *global, .local_crops = *local, .masks = *masks};
    return b;
}

static void heads_case(const char *dir, int sinkhorn, int with_masks)
{
    lvd_distill_teacher T;
    CHECK_MSG(lvd_distill_teacher_load(dir, NULL, &T, &err) == 0, "%s", err.msg);
    printf("heads (%s head, %s, %s):\n", T.ibot_separate ? "separate iBOT" : "shared",
           sinkhorn ? "Sinkhorn" : "centering", with_masks ? "masked batch" : "every patch");
    lvd_distill_config c;
    dt_config(&c, LVD_DISTILL_HEADS, 4, 2, sinkhorn);
    c.ssl.threads = 1; /* many small calls: no thread team to wake on a loaded machine */
    lvd_distill_spec s = dt_student(5);
    lvd_distill *d;
    CHECK_MSG(lvd_distill_create(&c, &T, &s, &d, &err) == 0, "%s", err.msg);
    vt_perturb(lvd_distill_student(d), 21);
    float *g, *l;
    uint8_t *m;
    lvd_ssl_batch b = make_batch(4, 2, &g, &l, &m, with_masks, 31);
    lvd_distill_stats st;
    CHECK_MSG(lvd_distill_forward_backward(d, &b, 0.07, &st, &err) == 0, "%s", err.msg);
    compose_heads(d, &T, &b, &st, 0.07);
    fd_check("finite differences", d, &b, 1e-3, 1e-3);
    lvd_distill_free(d);
    lvd_distill_teacher_free(&T);
    free(g);
    free(l);
    free(m);
}

static void features_case(const char *dir)
{
    lvd_distill_teacher T;
    CHECK_MSG(lvd_distill_teacher_load(dir, NULL, &T, &err) == 0, "%s", err.msg);
    printf("features (teacher patch %d):\n", lvd_vit_get_info(T.backbone)->patch);
    lvd_distill_config c;
    dt_config(&c, LVD_DISTILL_AUTO, 4, 0, 0);
    c.ssl.threads = 1;
    lvd_distill_spec s = dt_student(6);
    lvd_distill *d;
    CHECK_MSG(lvd_distill_create(&c, &T, &s, &d, &err) == 0, "%s", err.msg);
    CHECK(lvd_distill_get_mode(d) == LVD_DISTILL_FEATURES);
    vt_perturb(lvd_distill_student(d), 22);
    float *g, *l;
    uint8_t *m;
    lvd_ssl_batch b = make_batch(4, 0, &g, &l, &m, 0, 32);
    lvd_distill_stats st;
    CHECK_MSG(lvd_distill_forward_backward(d, &b, 0.07, &st, &err) == 0, "%s", err.msg);
    compose_features(d, &T, &b, &st);
    fd_check("finite differences", d, &b, 1e-3, 1e-3);
    lvd_distill_free(d);
    lvd_distill_teacher_free(&T);
    free(g);
    free(l);
}

int main(void)
{
    /* One thread everywhere (the loss functions use the default team): thousands of small
     * calls, each of which would wake a team on a loaded machine. */
    omp_set_num_threads(1);
    char *root = ot_tmpdir(), dir[4][1024];
    const int patch[4] = {4, 4, 4, 8}, heads[4] = {1, 2, 0, 0};
    for (int i = 0; i < 4; i++) {
        snprintf(dir[i], sizeof dir[i], "%s/t%d", root, i);
        CHECK(mkdir(dir[i], 0755) == 0);
        CHECK(dt_write_teacher(dir[i], patch[i], heads[i], 100 + (uint64_t)i) == 0);
    }
    heads_case(dir[0], 0, 0);
    heads_case(dir[1], 1, 0);
    heads_case(dir[1], 0, 1);
    features_case(dir[2]);
    features_case(dir[3]);
    check_rmtree(root);
    return check_finish();
}
