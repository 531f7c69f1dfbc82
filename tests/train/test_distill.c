/* Distillation runs (train/distill.h) on tiny models: in both modes the teacher stays bitwise
 * unchanged over training, the output model is the EMA of the student with the schedule's
 * momentum, distillation lowers the loss on held-out images (a fixed set never trained on) for
 * the student and for its EMA, two runs give bitwise the same models, a run resumed from its
 * checkpoint continues bitwise as the uninterrupted one, a failed step leaves no trace, and the
 * exported output model loads as
 * a ViT with the same features. Teacher files: a folder with and without heads, a pretraining
 * checkpoint, an explicit heads file, a distillation checkpoint distilled further; and the
 * errors (stochastic depth, heads that do not fit, head distillation without heads, a backbone
 * the inference forward cannot run, update before a forward_backward). */
#include <omp.h>
#include <sys/stat.h>

#include "tests/train/distill_test.h"
#include "train/ssl_student.h"

static lvd_error err;

#define N_TRAIN 32
#define N_HELD  8
#define B       8

static float train_img[N_TRAIN * 3 * DT_G * DT_G], held_img[N_HELD * 3 * DT_G * DT_G];
static float gbuf[2 * B * 3 * DT_G * DT_G], lbuf[2 * B * 3 * DT_L * DT_L];
static float held_g[2 * N_HELD * 3 * DT_G * DT_G], held_l[2 * N_HELD * 3 * DT_L * DT_L];

/* The batch of step k: B training images in a fixed order, fresh crop offsets. */
static lvd_ssl_batch train_batch(int k, int n_local)
{
    dt_crops(train_img, (k * B) % N_TRAIN, B, n_local, gbuf, lbuf, 1000 + (uint64_t)k);
    lvd_ssl_batch b = {.global_crops = gbuf, .local_crops = n_local ? lbuf : NULL};
    return b;
}

static lvd_distill *make(lvd_distill_teacher *T, lvd_distill_mode mode, int n_local, int sinkhorn,
                         uint64_t seed, int threads)
{
    lvd_distill_config c;
    dt_config(&c, mode, B, n_local, sinkhorn);
    c.ssl.threads = threads;
    lvd_distill_spec s = dt_student(seed);
    lvd_distill *d = NULL;
    CHECK_MSG(lvd_distill_create(&c, T, &s, &d, &err) == 0, "%s", err.msg);
    return d;
}

static void step(lvd_distill *d, int k, int n_local, double lr, lvd_distill_stats *st)
{
    lvd_ssl_batch b = train_batch(k, n_local);
    lvd_schedule_values s = dt_schedule(lr);
    CHECK_MSG(lvd_distill_step(d, &b, &s, st, &err) == 0, "step %d: %s", k, err.msg);
}

/* Held-out loss of the student (ema 0) or of its EMA (ema 1: the buffers swapped for the call). */
static double held_loss(lvd_distill *d, int n_local, int ema)
{
    lvd_ssl_batch b = {.global_crops = held_g, .local_crops = n_local ? held_l : NULL};
    size_t n;
    float *saved = ema ? dt_snapshot(d, 0, &n) : NULL;
    for (int i = 0; ema && i < lvd_distill_n_parts(d); i++) {
        lvd_ssl_part p = lvd_distill_get_part(d, i);
        memcpy(p.student, p.teacher, p.layout->total * sizeof(float));
    }
    lvd_distill_stats st;
    CHECK_MSG(lvd_distill_loss(d, &b, 0.07, &st, &err) == 0, "%s", err.msg);
    for (int i = 0, off = 0; ema && i < lvd_distill_n_parts(d); i++) {
        lvd_ssl_part p = lvd_distill_get_part(d, i);
        memcpy(p.student, saved + off, p.layout->total * sizeof(float));
        off += (int)p.layout->total;
    }
    free(saved);
    return st.loss_total;
}

/* Training run of one mode: frozen teacher, EMA, held-out loss, then determinism. */
static void run_mode(const char *dir, lvd_distill_mode mode, int n_local, int steps, double lr,
                     double margin)
{
    lvd_distill_teacher T;
    CHECK_MSG(lvd_distill_teacher_load(dir, NULL, &T, &err) == 0, "%s", err.msg);
    lvd_distill *d = make(&T, mode, n_local, 1, 7, 1);
    if (!d) {
        lvd_distill_teacher_free(&T);
        return;
    }
    printf("%s distillation, teacher patch %d:\n",
           lvd_distill_get_mode(d) == LVD_DISTILL_HEADS ? "head" : "feature",
           lvd_vit_get_info(T.backbone)->patch);
    size_t nt, np;
    float *teacher0 = dt_teacher_snapshot(&T, &nt);
    double before = held_loss(d, n_local, 0), before_ema = held_loss(d, n_local, 1);
    CHECK(before == before_ema); /* the EMA starts as the student */
    lvd_distill_stats st;
    double first = 0.0, last = 0.0;
    for (int k = 0; k < steps; k++) {
        float *ema0 = k == steps / 2 ? dt_snapshot(d, 1, &np) : NULL;
        step(d, k, n_local, lr, &st);
        first = k == 0 ? st.loss_total : first;
        last = st.loss_total;
        if (ema0) {
            /* The EMA: every part's shadow = m * shadow + (1 - m) * the updated student. */
            float *s1 = dt_snapshot(d, 0, &np), *e1 = dt_snapshot(d, 1, &np);
            lvd_ema_update(ema0, s1, np, dt_schedule(lr).momentum, 2);
            CHECK_MSG(memcmp(ema0, e1, np * sizeof(float)) == 0,
                      "the output model is not the EMA of the student");
            CHECK(memcmp(s1, e1, np * sizeof(float)) != 0);
            free(s1);
            free(e1);
            free(ema0);
        }
    }
    double after = held_loss(d, n_local, 0), after_ema = held_loss(d, n_local, 1);
    printf("  training loss %.4f -> %.4f over %d steps\n", first, last, steps);
    printf("  held-out loss: student %.4f -> %.4f, EMA %.4f -> %.4f\n", before, after, before_ema,
           after_ema);
    CHECK_MSG(after < before * (1.0 - margin), "held-out loss %.4f not below %.4f by %.0f%%", after,
              before, 100 * margin);
    CHECK_MSG(after_ema < before_ema * (1.0 - margin / 2),
              "EMA held-out loss %.4f not below %.4f by %.0f%%", after_ema, before_ema,
              50 * margin);
    float *teacher1 = dt_teacher_snapshot(&T, &nt);
    CHECK_MSG(memcmp(teacher0, teacher1, nt * sizeof(float)) == 0, "the teacher changed");
    printf("  teacher: %zu parameters bitwise unchanged\n", nt);
    /* Determinism: two runs from the same seed on 2 threads. */
    lvd_distill *r[2];
    for (int i = 0; i < 2; i++) {
        r[i] = make(&T, mode, n_local, 1, 8, 2);
        for (int k = 0; r[i] && k < 5; k++) {
            step(r[i], k, n_local, lr, &st);
        }
    }
    if (r[0] && r[1]) {
        size_t n1, n2;
        float *a = dt_snapshot(r[0], 0, &n1), *b = dt_snapshot(r[1], 0, &n2);
        float *ae = dt_snapshot(r[0], 1, &n1), *be = dt_snapshot(r[1], 1, &n2);
        CHECK_MSG(n1 == n2 && memcmp(a, b, n1 * sizeof(float)) == 0 &&
                      memcmp(ae, be, n1 * sizeof(float)) == 0,
                  "two runs on 2 threads differ");
        free(a);
        free(b);
        free(ae);
        free(be);
    }
    lvd_distill_free(r[0]);
    lvd_distill_free(r[1]);
    /* The exported output model loads as a ViT with the same features. */
    char path[1200];
    snprintf(path, sizeof path, "%s/out.safetensors", dir);
    lvd_vit_train *out = lvd_distill_output(d);
    CHECK_MSG(lvd_vit_train_save(out, path, &err) == 0, "%s", err.msg);
    lvd_vit *v;
    if (lvd_vit_load(path, &v, &err) == 0) {
        lvd_vit_pass *p;
        float cls_a[2 * B * 64], cls_b[2 * B * 64];
        lvd_vit_train_outputs o = {.cls = cls_a};
        lvd_vit_outputs ov = {.cls = cls_b};
        CHECK(lvd_vit_pass_create(out, 2 * B, DT_G, DT_G, 0, &p, &err) == 0);
        CHECK(lvd_vit_train_forward(out, p, held_g, NULL, NULL, &o, &err) == 0);
        CHECK(lvd_vit_forward(v, held_g, 2 * B, DT_G, DT_G, NULL, &ov, &err) == 0);
        vt_check_forward("exported output model, cls", cls_b, cls_a, sizeof cls_a / 4);
        lvd_vit_pass_free(p);
        lvd_vit_free(v);
    } else {
        CHECK_MSG(0, "%s", err.msg);
    }
    free(teacher0);
    free(teacher1);
    lvd_distill_free(d);
    lvd_distill_teacher_free(&T);
}

/* A run resumed from its checkpoint continues bitwise as the uninterrupted run. */
static void resume(const char *dir, lvd_distill_mode mode, int n_local, int sinkhorn)
{
    lvd_distill_teacher T;
    CHECK_MSG(lvd_distill_teacher_load(dir, NULL, &T, &err) == 0, "%s", err.msg);
    lvd_distill *a = make(&T, mode, n_local, sinkhorn, 9, 1);
    lvd_distill *b = make(&T, mode, n_local, sinkhorn, 9, 1);
    lvd_distill *c = make(&T, mode, n_local, sinkhorn, 123, 1); /* other init, overwritten */
    if (!a || !b || !c) {
        lvd_distill_free(a);
        lvd_distill_free(b);
        lvd_distill_free(c);
        lvd_distill_teacher_free(&T);
        return;
    }
    lvd_distill_stats st;
    for (int k = 0; k < 6; k++) {
        step(a, k, n_local, 2e-3, &st);
    }
    for (int k = 0; k < 3; k++) {
        step(b, k, n_local, 2e-3, &st);
    }
    char path[1200];
    snprintf(path, sizeof path, "%s/distill.ckpt.safetensors", dir);
    lvd_ckpt_group g[LVD_DISTILL_CKPT_GROUPS], gc[LVD_DISTILL_CKPT_GROUPS];
    int n = lvd_distill_ckpt_groups(b, g), nc = lvd_distill_ckpt_groups(c, gc);
    lvd_ckpt_state s = {.step = lvd_distill_get_step(b)}, s2 = {0};
    CHECK(n == nc && s.step == 3);
    CHECK_MSG(lvd_ckpt_save(path, g, n, &s, &err) == 0, "%s", err.msg);
    CHECK_MSG(lvd_ckpt_load(path, gc, nc, &s2, &err) == 0, "%s", err.msg);
    lvd_distill_set_step(c, s2.step);
    lvd_ckpt_state_free(&s2);
    for (int k = 3; k < 6; k++) {
        step(b, k, n_local, 2e-3, &st);
        step(c, k, n_local, 2e-3, &st);
    }
    size_t n1, n2, n3;
    float *pa = dt_snapshot(a, 0, &n1), *pb = dt_snapshot(b, 0, &n2), *pc = dt_snapshot(c, 0, &n3);
    float *ea = dt_snapshot(a, 1, &n1), *ec = dt_snapshot(c, 1, &n3);
    CHECK_MSG(memcmp(pa, pb, n1 * sizeof(float)) == 0, "saving a checkpoint changed the run");
    CHECK_MSG(memcmp(pa, pc, n1 * sizeof(float)) == 0 && memcmp(ea, ec, n1 * sizeof(float)) == 0,
              "the resumed %s run differs from the uninterrupted one",
              mode == LVD_DISTILL_HEADS ? "head" : "feature");
    printf("resume (%s): %d groups, bitwise equal after 3 + 3 steps\n",
           mode == LVD_DISTILL_HEADS ? (sinkhorn ? "heads, Sinkhorn" : "heads, centering")
                                     : "features",
           n);
    /* A distillation checkpoint is a teacher (its EMA student and heads), distilled further. */
    if (mode == LVD_DISTILL_HEADS) {
        lvd_distill_teacher T2;
        CHECK_MSG(lvd_distill_teacher_load(path, NULL, &T2, &err) == 0, "%s", err.msg);
        CHECK(T2.has_heads && T2.ibot_separate == T.ibot_separate);
        CHECK(lvd_vit_get_info(T2.backbone)->dim == 64);
        lvd_distill_config cfg;
        dt_config(&cfg, LVD_DISTILL_AUTO, B, n_local, 1);
        lvd_distill_spec sp = dt_student(3);
        lvd_distill *d3;
        CHECK_MSG(lvd_distill_create(&cfg, &T2, &sp, &d3, &err) == 0, "%s", err.msg);
        if (d3) {
            CHECK(lvd_distill_get_mode(d3) == LVD_DISTILL_HEADS);
            step(d3, 0, n_local, 2e-3, &st);
        }
        lvd_distill_free(d3);
        lvd_distill_teacher_free(&T2);
    }
    free(pa);
    free(pb);
    free(pc);
    free(ea);
    free(ec);
    lvd_distill_free(a);
    lvd_distill_free(b);
    lvd_distill_free(c);
    lvd_distill_teacher_free(&T);
}

/* A step that fails (non-finite crops) leaves no trace: the run continues bitwise as one
 * that never saw it (centers, parameters, moments). */
static void failed_step(const char *dir)
{
    lvd_distill_teacher T;
    CHECK_MSG(lvd_distill_teacher_load(dir, NULL, &T, &err) == 0, "%s", err.msg);
    lvd_distill *a = make(&T, LVD_DISTILL_HEADS, 2, 0, 4, 1);
    lvd_distill *b = make(&T, LVD_DISTILL_HEADS, 2, 0, 4, 1);
    if (a && b) {
        lvd_distill_stats st;
        for (int k = 0; k < 2; k++) {
            step(a, k, 2, 2e-3, &st);
            step(b, k, 2, 2e-3, &st);
        }
        lvd_ssl_batch bad = train_batch(2, 2);
        gbuf[5] = NAN;
        lvd_schedule_values sv = dt_schedule(2e-3);
        CHECK(lvd_distill_step(b, &bad, &sv, &st, &err) != 0);
        printf("failed step: %s\n", err.msg);
        for (int k = 2; k < 4; k++) {
            step(a, k, 2, 2e-3, &st);
            step(b, k, 2, 2e-3, &st);
        }
        lvd_ckpt_group ga[LVD_DISTILL_CKPT_GROUPS], gb[LVD_DISTILL_CKPT_GROUPS];
        int n = lvd_distill_ckpt_groups(a, ga), same = n == lvd_distill_ckpt_groups(b, gb);
        for (int i = 0; same && i < n; i++) {
            same = memcmp(ga[i].data, gb[i].data, ga[i].layout->total * sizeof(float)) == 0;
        }
        CHECK_MSG(same, "a failed step changed the training state");
    }
    lvd_distill_free(a);
    lvd_distill_free(b);
    lvd_distill_teacher_free(&T);
}

/* Teacher files: a pretraining checkpoint, an explicit heads file, bad inputs. */
static void teacher_files(const char *root, const char *heads_dir, const char *plain_dir)
{
    char path[1200], hp[1200];
    lvd_distill_teacher T;
    /* A folder without heads: a backbone only; AUTO picks features, HEADS refuses. */
    CHECK_MSG(lvd_distill_teacher_load(plain_dir, NULL, &T, &err) == 0, "%s", err.msg);
    CHECK(!T.has_heads);
    lvd_distill_config c;
    dt_config(&c, LVD_DISTILL_HEADS, B, 2, 0);
    lvd_distill_spec s = dt_student(1);
    lvd_distill *d = NULL;
    CHECK(lvd_distill_create(&c, &T, &s, &d, &err) != 0 && strstr(err.msg, "DINO head"));
    printf("  heads mode without heads: %s\n", err.msg);
    lvd_distill_teacher_free(&T);
    /* The same backbone with an explicit heads file. */
    snprintf(path, sizeof path, "%s/%s", plain_dir, LVD_DISTILL_TEACHER_BACKBONE);
    snprintf(hp, sizeof hp, "%s/%s", heads_dir, LVD_DISTILL_TEACHER_HEADS);
    CHECK_MSG(lvd_distill_teacher_load(path, hp, &T, &err) == 0, "%s", err.msg);
    CHECK(T.has_heads && T.ibot_separate && T.dino.cfg.out_dim == DT_K &&
          T.ibot.cfg.out_dim == DT_KI);
    /* Bad configurations. */
    c.ssl.drop_path = 0.1;
    CHECK(lvd_distill_create(&c, &T, &s, &d, &err) != 0 && strstr(err.msg, "stochastic depth"));
    printf("  drop path: %s\n", err.msg);
    c.ssl.drop_path = 0.0;
    lvd_head_config bad = T.dino.cfg;
    bad.in_dim = 64;
    bad.out_dim = 32;
    s.dino = &bad;
    CHECK(lvd_distill_create(&c, &T, &s, &d, &err) != 0 && strstr(err.msg, "prototypes"));
    printf("  student head: %s\n", err.msg);
    s.dino = NULL;
    c.ssl.global_h = 18;
    CHECK(lvd_distill_create(&c, &T, &s, &d, &err) != 0 && strstr(err.msg, "patch"));
    printf("  crop size: %s\n", err.msg);
    c.ssl.global_h = DT_G;
    CHECK_MSG(lvd_distill_create(&c, &T, &s, &d, &err) == 0, "%s", err.msg);
    if (d) {
        lvd_schedule_values sv = dt_schedule(1e-3);
        lvd_ssl_batch b = train_batch(0, 2);
        CHECK(lvd_distill_update(d, &sv, NULL, &err) != 0 && strstr(err.msg, "before"));
        CHECK(lvd_distill_student_loss(d, &b, NULL, &err) != 0 && strstr(err.msg, "reuse"));
        CHECK(lvd_distill_forward_backward(d, &b, 0.0, NULL, &err) != 0);
        CHECK(lvd_distill_loss(d, &b, 0.07, NULL, &err) == 0);
        CHECK(lvd_distill_update(d, &sv, NULL, &err) != 0); /* a loss keeps no gradients */
        CHECK(lvd_distill_student_loss(d, &b, NULL, &err) == 0);
    }
    lvd_distill_free(d);
    /* A pretraining checkpoint: "teacher.backbone.", "teacher.dino_head.", "teacher.ibot_head.". */
    lvd_ssl_config sc;
    lvd_ssl_config_default(&sc, 2, 0, DT_G, DT_L);
    lvd_vit_info a = {.dim = 128, .depth = 1, .patch = 4, .grid = 4};
    lvd_head_config hc = T.dino.cfg;
    lvd_ssl *ssl;
    CHECK_MSG(lvd_ssl_create_new(&sc, &a, 0.1f, &hc, NULL, 5, &ssl, &err) == 0, "%s", err.msg);
    if (ssl) {
        lvd_ckpt_group g[LVD_SSL_CKPT_GROUPS];
        int n = lvd_ssl_ckpt_groups(ssl, g);
        lvd_ckpt_state st = {0};
        snprintf(path, sizeof path, "%s/pretrain.ckpt.safetensors", root);
        CHECK_MSG(lvd_ckpt_save(path, g, n, &st, &err) == 0, "%s", err.msg);
        lvd_distill_teacher T3;
        CHECK_MSG(lvd_distill_teacher_load(path, NULL, &T3, &err) == 0, "%s", err.msg);
        CHECK(T3.has_heads && !T3.ibot_separate && T3.dino.cfg.out_dim == DT_K);
        if (T3.backbone) {
            lvd_vit_param tab[64];
            size_t cnt = lvd_vit_param_list(T3.backbone, tab, 64);
            const lvd_param_layout *l = lvd_vit_train_layout(lvd_ssl_teacher(ssl));
            const float *tp = lvd_vit_train_params(lvd_ssl_teacher(ssl));
            int same = cnt == (size_t)l->n;
            for (int i = 0; same && i < l->n; i++) {
                same = strcmp(tab[i].name, l->t[i].name) == 0 &&
                       memcmp(tab[i].data, tp + l->t[i].offset, l->t[i].numel * 4) == 0;
            }
            CHECK_MSG(same, "the checkpoint's teacher backbone was not loaded as saved");
            lvd_ssl_part hp2 = lvd_ssl_get_part(ssl, 1);
            CHECK(memcmp(T3.dino.params, hp2.teacher, hp2.layout->total * 4) == 0);
        }
        lvd_distill_teacher_free(&T3);
    }
    lvd_ssl_free(ssl);
    lvd_distill_teacher_free(&T);
    /* A backbone with heads of width 32: the inference forward cannot run it. */
    lvd_vit_info w = {.dim = 128, .depth = 1, .heads = 4, .patch = 4, .grid = 4};
    lvd_vit_train *m;
    CHECK(lvd_vit_train_create(&w, 0.1f, 1, &m, &err) == 0);
    snprintf(path, sizeof path, "%s/heads4.safetensors", root);
    CHECK(lvd_vit_train_save(m, path, &err) == 0);
    lvd_vit_train_free(m);
    CHECK(lvd_distill_teacher_load(path, NULL, &T, &err) != 0 && strstr(err.msg, "width 64"));
    CHECK(T.backbone == NULL);
    printf("  head width: %s\n", err.msg);
    CHECK(lvd_distill_teacher_load("/nonexistent/teacher", NULL, &T, &err) != 0);
}

int main(void)
{
    /* One thread unless a run asks for more: small steps would wake a team hundreds of times
     * each on a loaded machine. */
    omp_set_num_threads(1);
    char *root = ot_tmpdir(), heads[1024], plain[1024], plain8[1024];
    snprintf(heads, sizeof heads, "%s/heads", root);
    snprintf(plain, sizeof plain, "%s/plain", root);
    snprintf(plain8, sizeof plain8, "%s/plain8", root);
    CHECK(mkdir(heads, 0755) == 0 && mkdir(plain, 0755) == 0 && mkdir(plain8, 0755) == 0);
    CHECK(dt_write_teacher(heads, 4, 2, 200) == 0);
    CHECK(dt_write_teacher(plain, 4, 0, 201) == 0);
    CHECK(dt_write_teacher(plain8, 8, 0, 202) == 0);
    dt_images(train_img, N_TRAIN, 300);
    dt_images(held_img, N_HELD, 301);
    dt_crops(held_img, 0, N_HELD, 2, held_g, held_l, 302);

    run_mode(heads, LVD_DISTILL_HEADS, 2, 40, 2e-3, 0.1);
    run_mode(plain8, LVD_DISTILL_FEATURES, 0, 40, 2e-3, 0.1);
    resume(heads, LVD_DISTILL_HEADS, 2, 0);
    resume(plain, LVD_DISTILL_FEATURES, 0, 0);
    failed_step(heads);
    printf("teacher files and errors:\n");
    teacher_files(root, heads, plain);
    check_rmtree(root);
    return check_finish();
}
