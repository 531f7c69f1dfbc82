/* The trainable ViT's API without reference tensors: the layout (official names, canonical
 * order, PyTorch shapes), the init, save / load round trips (lvd_vit_load reads the files as
 * they are), the forward against lvd_vit_forward on the same weights, stochastic-depth subsets
 * (sizes, determinism, off at rate 0), passes accumulating, thread determinism, and refused
 * inputs. */
#include <math.h>

#include "tests/train/vit_train_check.h"

static lvd_vit_train *make(int dim, int heads, lvd_vit_ffn ffn, int n_reg, int patch, int grid,
                           float ls, uint64_t seed)
{
    lvd_vit_info arch = {.dim = dim,
                         .depth = 2,
                         .heads = heads,
                         .patch = patch,
                         .grid = grid,
                         .n_reg = n_reg,
                         .ffn = ffn};
    lvd_error err = {0};
    lvd_vit_train *m;
    int rc = lvd_vit_train_create(&arch, ls, seed, &m, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    return rc == 0 ? m : NULL;
}

static int shape_is(const lvd_param_tensor *t, int ndim, int64_t s0, int64_t s1, int64_t s2,
                    int64_t s3)
{
    int64_t s[4] = {s0, s1, s2, s3};
    if (!t || t->ndim != ndim) {
        return 0;
    }
    for (int k = 0; k < ndim; k++) {
        if (t->shape[k] != s[k]) {
            return 0;
        }
    }
    return 1;
}

/* Layout against embed's table, PyTorch shapes, and the init's statistics. */
static void check_layout_and_init(void)
{
    lvd_vit_train *m = make(128, 0, LVD_VIT_SWIGLU, 4, 14, 5, 1e-5f, 7);
    if (!m) {
        return;
    }
    const lvd_vit_info *a = lvd_vit_train_info(m);
    const lvd_param_layout *l = lvd_vit_train_layout(m);
    CHECK(a->heads == 2 && a->ffn_hidden == 344 && a->pos_antialias == 1);
    CHECK(a->n_params == (int64_t)l->total);
    lvd_vit_param table[64];
    size_t n = lvd_vit_param_table(a, table, 64);
    CHECK((int)n == l->n);
    int order = 1;
    for (int i = 0; i < l->n && i < (int)n; i++) {
        order &= strcmp(table[i].name, l->t[i].name) == 0 && table[i].ndim == l->t[i].ndim;
    }
    CHECK_MSG(order, "layout order differs from lvd_vit_param_table");
    CHECK(strcmp(l->t[0].name, "patch_embed.proj.weight") == 0);
    CHECK(strcmp(l->t[l->n - 1].name, "norm.bias") == 0);
    CHECK(shape_is(lvd_param_layout_find(l, "patch_embed.proj.weight"), 4, 128, 3, 14, 14));
    CHECK(shape_is(lvd_param_layout_find(l, "cls_token"), 3, 1, 1, 128, 0));
    CHECK(shape_is(lvd_param_layout_find(l, "register_tokens"), 3, 1, 4, 128, 0));
    CHECK(shape_is(lvd_param_layout_find(l, "mask_token"), 2, 1, 128, 0, 0));
    CHECK(shape_is(lvd_param_layout_find(l, "pos_embed"), 3, 1, 26, 128, 0));
    CHECK(shape_is(lvd_param_layout_find(l, "blocks.1.mlp.w12.weight"), 2, 688, 128, 0, 0));
    CHECK(shape_is(lvd_param_layout_find(l, "blocks.1.mlp.w3.weight"), 2, 128, 344, 0, 0));
    const float *p = lvd_vit_train_params(m);
    const float *g = lvd_vit_train_grads(m);
    int zero = 1;
    for (size_t i = 0; i < l->total; i++) {
        zero &= g[i] == 0.0f;
    }
    CHECK_MSG(zero, "gradients do not start at 0");
    for (int i = 0; i < l->n; i++) {
        const lvd_param_tensor *t = &l->t[i];
        int ok = 1;
        const float *v = p + t->offset;
        double s2 = 0.0, mx = 0.0;
        for (size_t k = 0; k < t->numel; k++) {
            s2 += (double)v[k] * v[k];
            mx = fabs(v[k]) > mx ? fabs(v[k]) : mx;
        }
        double rms = sqrt(s2 / (double)t->numel);
        const char *nm = t->name;
        int w = strstr(nm, ".weight") != NULL && !strstr(nm, "norm");
        if (strncmp(nm, "patch_embed", 11) == 0) {
            /* Conv2d default: uniform in +-1/sqrt(588), rms bound / sqrt(3). */
            double bound = 1.0 / sqrt(588.0);
            ok &= mx <= bound && fabs(rms - bound / sqrt(3.0)) < 0.1 * bound;
        } else if (w || strcmp(nm, "pos_embed") == 0) {
            ok &= fabs(rms - 0.02) < 0.002 && mx < 0.2;
        } else if (strstr(nm, "gamma")) {
            ok &= mx == 1e-5f && rms > 0.99e-5;
        } else if (strstr(nm, "norm") && strstr(nm, "weight")) {
            ok &= mx == 1.0f && rms == 1.0;
        } else if (strcmp(nm, "cls_token") == 0 || strcmp(nm, "register_tokens") == 0) {
            ok &= mx < 1e-5 && rms > 1e-7;
        } else {
            ok &= mx == 0.0; /* biases, mask token */
        }
        CHECK_MSG(ok, "%s: init rms %.3g max %.3g", nm, rms, mx);
    }
    lvd_vit_train *m2 = make(128, 0, LVD_VIT_SWIGLU, 4, 14, 5, 1e-5f, 7);
    if (m2) {
        CHECK(memcmp(p, lvd_vit_train_params(m2), sizeof(float) * l->total) == 0);
        lvd_vit_train_free(m2);
    }
    lvd_vit_train_free(m);
}

/* Save, then load with lvd_vit_train_load and lvd_vit_load: the same tensors. */
static void check_round_trip(void)
{
    lvd_vit_train *m = make(64, 2, LVD_VIT_MLP, 0, 4, 4, 0.1f, 3);
    if (!m) {
        return;
    }
    vt_perturb(m, 4);
    char path[] = "/tmp/lvd_vit_train_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    lvd_error err = {0};
    CHECK_MSG(lvd_vit_train_save(m, path, &err) == 0, "%s", err.msg);
    lvd_vit_train *back;
    int rc = lvd_vit_train_load(path, 0, &back, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    const lvd_param_layout *l = lvd_vit_train_layout(m);
    if (rc == 0) {
        CHECK(lvd_vit_train_info(back)->heads == 2); /* from the file's metadata */
        CHECK(lvd_vit_train_layout(back)->total == l->total);
        CHECK(memcmp(lvd_vit_train_params(back), lvd_vit_train_params(m),
                     sizeof(float) * l->total) == 0);
        lvd_vit_train_free(back);
    }
    lvd_vit *e;
    rc = lvd_vit_load(path, &e, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc == 0) {
        lvd_vit_param t[64];
        size_t n = lvd_vit_param_list(e, t, 64);
        int same = (int)n == l->n;
        for (size_t i = 0; same && i < n; i++) {
            same = strcmp(t[i].name, l->t[i].name) == 0 &&
                   memcmp(t[i].data, lvd_vit_train_params(m) + l->t[i].offset,
                          sizeof(float) * l->t[i].numel) == 0;
        }
        CHECK_MSG(same, "lvd_vit_load reads other tensors than were saved");
        lvd_vit_free(e);
    }
    /* A file lacking a tensor and a bad head count are refused with their names. */
    lvd_tensors *ts;
    rc = lvd_tensors_open(path, &ts, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc == 0) {
        size_t n = lvd_tensors_count(ts);
        lvd_tensor *t = calloc(n, sizeof *t);
        for (size_t i = 0; i < n; i++) {
            t[i] = *lvd_tensors_at(ts, i);
        }
        char cut[] = "/tmp/lvd_vit_cut_XXXXXX";
        fd = mkstemp(cut);
        close(fd);
        CHECK(lvd_safetensors_write(cut, t, n - 1, NULL, 0, &err) == 0);
        CHECK(lvd_vit_train_load(cut, 0, &back, &err) != 0 && back == NULL &&
              strstr(err.msg, "norm.bias") && strstr(err.msg, cut));
        const char *meta[2] = {"lvd_vit_heads", "zero"};
        CHECK(lvd_safetensors_write(cut, t, n, meta, 1, &err) == 0);
        CHECK(lvd_vit_train_load(cut, 0, &back, &err) != 0 && strstr(err.msg, "lvd_vit_heads"));
        CHECK_MSG(lvd_vit_train_load(cut, 1, &back, &err) == 0, "%s", err.msg);
        lvd_vit_train_free(back);
        unlink(cut);
        free(t);
        lvd_tensors_close(ts);
    }
    CHECK(lvd_vit_train_load("/nonexistent/model.pth", 0, &back, &err) != 0 && back == NULL);
    unlink(path);
    lvd_vit_train_free(m);
}
/* A random perturbed model saved and loaded by embed: both forwards on a masked batch of a grid
 * other than the stored one. */
static void parity(lvd_vit_ffn ffn, int n_reg, int H, int W, int threads)
{
    lvd_vit_info arch = {.dim = 128, .depth = 2, .patch = 8, .grid = 4, .n_reg = n_reg, .ffn = ffn};
    lvd_error err = {0};
    lvd_vit_train *m;
    int rc = lvd_vit_train_create(&arch, 0.2f, 5, &m, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc != 0) {
        return;
    }
    vt_perturb(m, 6);
    lvd_vit_train_set_threads(m, threads);
    char path[] = "/tmp/lvd_vit_parity_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    rc = lvd_vit_train_save(m, path, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    lvd_vit *e = NULL;
    rc = rc ? rc : lvd_vit_load(path, &e, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    unlink(path);
    if (rc == 0) {
        lvd_vit_set_threads(e, threads);
        int B = 3, D = 128, R = n_reg, N = (H / 8) * (W / 8);
        float *x = malloc(sizeof(float) * B * 3 * H * W);
        vt_fill(x, (size_t)B * 3 * H * W, 9, 2.0f);
        uint8_t *mask = malloc((size_t)B * N);
        for (int i = 0; i < B * N; i++) {
            mask[i] = i % 4 == 1;
        }
        float *c1 = malloc(sizeof(float) * B * D), *c2 = malloc(sizeof(float) * B * D);
        float *p1 = malloc(sizeof(float) * B * N * D), *p2 = malloc(sizeof(float) * B * N * D);
        float *r1 = malloc(sizeof(float) * B * (R ? R : 1) * D);
        float *r2 = malloc(sizeof(float) * B * (R ? R : 1) * D);
        lvd_vit_outputs o = {.cls = c2, .patch = p2, .reg = r2};
        rc = lvd_vit_forward(e, x, B, H, W, mask, &o, &err);
        CHECK_MSG(rc == 0, "%s", err.msg);
        if (rc == 0 && vt_forward_both(m, x, B, H, W, mask, c1, p1, r1) == 0) {
            char label[128];
            snprintf(label, sizeof label, "%s R=%d %dx%d %d thr: cls", ffn ? "swiglu" : "mlp", R, H,
                     W, threads);
            vt_check_forward(label, c1, c2, (size_t)B * D);
            snprintf(label, sizeof label, "%s R=%d %dx%d %d thr: patch", ffn ? "swiglu" : "mlp", R,
                     H, W, threads);
            vt_check_forward(label, p1, p2, (size_t)B * N * D);
            if (R) {
                vt_check_forward("  registers", r1, r2, (size_t)B * R * D);
            }
        }
        free(x);
        free(mask);
        free(c1);
        free(c2);
        free(p1);
        free(p2);
        free(r1);
        free(r2);
    }
    lvd_vit_free(e);
    lvd_vit_train_free(m);
}

/* Forward of a pass; returns 0 on success. */
static int fwd(lvd_vit_train *m, lvd_vit_pass *p, const float *x, const uint8_t *mask,
               const lvd_vit_drop *drop)
{
    lvd_error err = {0};
    int rc = lvd_vit_train_forward(m, p, x, mask, drop, NULL, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    return rc;
}

/* Stochastic depth: subset sizes int(B * (1 - rate)) (at least 1), sorted distinct images,
 * skipped images untouched by the branch, the B / n factor, seeds, rate 0 = off. */
static void check_drop(void)
{
    lvd_vit_train *m = make(64, 2, LVD_VIT_MLP, 0, 4, 4, 0.3f, 8);
    if (!m) {
        return;
    }
    vt_perturb(m, 9);
    lvd_vit_train_set_threads(m, 1);
    int B = 10, T = 17, D = 64;
    lvd_error err = {0};
    lvd_vit_pass *p, *q;
    CHECK(lvd_vit_pass_create(m, B, 16, 16, 1, &p, &err) == 0);
    CHECK(lvd_vit_pass_create(m, B, 16, 16, 1, &q, &err) == 0);
    float *x = malloc(sizeof(float) * B * 3 * 16 * 16);
    vt_fill(x, (size_t)B * 3 * 16 * 16, 10, 2.0f);
    size_t nout = (size_t)B * T * D;
    lvd_vit_drop off = {0.0, 5};
    fwd(m, p, x, NULL, NULL);
    fwd(m, q, x, NULL, &off);
    CHECK_MSG(memcmp(p->out, q->out, sizeof(float) * nout) == 0, "rate 0 differs from no drop");
    static const struct {
        double rate;
        int keep;
    } sizes[] = {{0.3, 7}, {0.1, 9}, {0.4, 6}, {0.95, 1}, {1.0, 1}, {0.5, 5}};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        lvd_vit_drop d = {sizes[k].rate, 1};
        fwd(m, q, x, NULL, &d);
        for (int i = 0; i < 4; i++) {
            CHECK_MSG(q->nsub[i] == sizes[k].keep, "rate %.2f: %d images kept, expected %d",
                      sizes[k].rate, q->nsub[i], sizes[k].keep);
        }
    }
    /* Rate 0.3: every branch keeps 7 sorted distinct images; the others skip it. */
    lvd_vit_drop d = {0.3, 42};
    fwd(m, q, x, NULL, &d);
    float *keep = malloc(sizeof(float) * nout);
    memcpy(keep, q->out, sizeof(float) * nout);
    CHECK_MSG(vt_max_abs_diff(q->out, p->out, nout) > 1e-3, "drop path changed nothing");
    int sorted = 1, untouched = 1, scaled = 1;
    for (int i = 0; i < 4; i++) {
        const int *sub = q->sub + i * B;
        for (int j = 0; j < 7; j++) {
            sorted &= sub[j] >= 0 && sub[j] < B && (j == 0 || sub[j] > sub[j - 1]);
        }
    }
    const float *ls1 = lvd_vit_train_params(m) +
                       lvd_param_layout_find(lvd_vit_train_layout(m), "blocks.0.ls1.gamma")->offset;
    for (int b = 0; b < B; b++) {
        const float *x0 = q->resid + (size_t)b * T * D, *x1 = x0 + nout;
        int j = q->subpos[b];
        if (j < 0) {
            untouched &= memcmp(x0, x1, sizeof(float) * T * D) == 0;
            continue;
        }
        for (int c = 0; c < D; c++) {
            double want = x0[c] + 10.0 / 7.0 * ls1[c] * q->attn_out[(size_t)j * T * D + c];
            scaled &= fabs(x1[c] - want) <= 1e-5 * (1.0 + fabs(want));
        }
    }
    CHECK_MSG(sorted, "subsets not sorted distinct images");
    CHECK_MSG(untouched, "an image outside the subset got the branch");
    CHECK_MSG(scaled, "the branch is not added with B / n * LayerScale");
    fwd(m, q, x, NULL, &d);
    CHECK_MSG(memcmp(keep, q->out, sizeof(float) * nout) == 0, "same seed, other outputs");
    /* Over 40 seeds at rate 0.5 every image is kept about half the time. */
    int count[10] = {0};
    for (int s = 0; s < 40; s++) {
        lvd_vit_drop ds = {0.5, 100 + (uint64_t)s};
        fwd(m, q, x, NULL, &ds);
        for (int i = 0; i < 4; i++) {
            for (int j = 0; j < q->nsub[i]; j++) {
                count[q->sub[i * B + j]]++;
            }
        }
    }
    for (int b = 0; b < B; b++) {
        CHECK_MSG(count[b] > 50 && count[b] < 110, "image %d kept %d times of 160", b, count[b]);
    }
    free(keep);
    free(x);
    lvd_vit_pass_free(p);
    lvd_vit_pass_free(q);
    lvd_vit_train_free(m);
}

/* Gradients of two passes held at once add up; a second backward adds again; zero_grad; the
 * same thread count gives bitwise the same gradients, another one nearly the same. */
static void check_accumulate(void)
{
    lvd_vit_train *m = make(64, 0, LVD_VIT_SWIGLU, 4, 4, 4, 0.3f, 11);
    if (!m) {
        return;
    }
    vt_perturb(m, 12);
    lvd_vit_train_set_threads(m, 2);
    size_t n = lvd_vit_train_layout(m)->total;
    float *g = lvd_vit_train_grads(m);
    lvd_error err = {0};
    lvd_vit_pass *pa, *pc;
    CHECK(lvd_vit_pass_create(m, 2, 16, 16, 1, &pa, &err) == 0);
    CHECK(lvd_vit_pass_create(m, 3, 8, 12, 1, &pc, &err) == 0);
    float *xa = malloc(sizeof(float) * 2 * 3 * 256), *xc = malloc(sizeof(float) * 3 * 3 * 96);
    vt_fill(xa, 2 * 3 * 256, 13, 2.0f);
    vt_fill(xc, 3 * 3 * 96, 14, 2.0f);
    uint8_t mask[32];
    for (int i = 0; i < 32; i++) {
        mask[i] = i % 3 == 0;
    }
    int T = 1 + 4 + 16, Tc = 1 + 4 + 6;
    float *wa = malloc(sizeof(float) * 2 * T * 64), *wc = malloc(sizeof(float) * 3 * Tc * 64);
    vt_fill(wa, 2 * T * 64, 15, 1.0f);
    vt_fill(wc, 3 * Tc * 64, 16, 1.0f);
    lvd_vit_drop da = {0.5, 17};
    /* dcls, dpatch and dreg views into one weight array per pass. */
#define BACK(pass, w, B, N)                                                                        \
    CHECK(lvd_vit_train_backward(m, pass, w, w + (B)*64, w + (B) * (1 + (N)) * 64, &err) == 0)
    float *ga = calloc(n, sizeof(float)), *gc = calloc(n, sizeof(float));
    fwd(m, pa, xa, mask, &da);
    BACK(pa, wa, 2, 16);
    memcpy(ga, g, sizeof(float) * n);
    BACK(pa, wa, 2, 16);
    for (size_t i = 0; i < n; i++) {
        gc[i] = 2.0f * ga[i];
    }
    printf("backward twice vs twice the gradient: rel %.2e\n", vt_rel(g, gc, n));
    CHECK(vt_rel(g, gc, n) < 1e-6);
    lvd_vit_train_zero_grad(m);
    int zero = 1;
    for (size_t i = 0; i < n; i++) {
        zero &= g[i] == 0.0f;
    }
    CHECK(zero);
    fwd(m, pc, xc, NULL, NULL);
    BACK(pc, wc, 3, 6);
    memcpy(gc, g, sizeof(float) * n);
    lvd_vit_train_zero_grad(m);
    fwd(m, pa, xa, mask, &da);
    fwd(m, pc, xc, NULL, NULL);
    BACK(pc, wc, 3, 6);
    BACK(pa, wa, 2, 16);
    for (size_t i = 0; i < n; i++) {
        ga[i] += gc[i];
    }
    printf("two passes held at once vs the sum of each: rel %.2e\n", vt_rel(g, ga, n));
    CHECK(vt_rel(g, ga, n) < 1e-6);
    /* Thread determinism on the first pass alone. */
    float *g2 = malloc(sizeof(float) * n);
    for (int run = 0; run < 3; run++) {
        lvd_vit_train_set_threads(m, run < 2 ? 2 : 1);
        lvd_vit_train_zero_grad(m);
        fwd(m, pa, xa, mask, &da);
        BACK(pa, wa, 2, 16);
        if (run == 0) {
            memcpy(g2, g, sizeof(float) * n);
        } else if (run == 1) {
            CHECK_MSG(memcmp(g2, g, sizeof(float) * n) == 0, "2 threads: gradients differ");
        } else {
            printf("1 vs 2 threads: gradient rel %.2e\n", vt_rel(g, g2, n));
            CHECK(vt_rel(g, g2, n) < 1e-5);
        }
    }
#undef BACK
    free(g2);
    free(ga);
    free(gc);
    free(xa);
    free(xc);
    free(wa);
    free(wc);
    lvd_vit_pass_free(pa);
    lvd_vit_pass_free(pc);
    lvd_vit_train_free(m);
}

/* Bad architectures, shapes, rates, passes and call orders fail with a message. */
static void check_refused(void)
{
    lvd_error err = {0};
    lvd_vit_train *m = NULL, *other = NULL;
    lvd_vit_info bad = {.dim = 100, .depth = 2, .patch = 4, .grid = 4};
    CHECK(lvd_vit_train_create(&bad, 0.1f, 1, &m, &err) != 0 && m == NULL &&
          strstr(err.msg, "dim"));
    bad.dim = 128;
    bad.heads = 3;
    CHECK(lvd_vit_train_create(&bad, 0.1f, 1, &m, &err) != 0 && strstr(err.msg, "heads"));
    bad.heads = 0;
    CHECK(lvd_vit_train_create(&bad, NAN, 1, &m, &err) != 0 && strstr(err.msg, "LayerScale"));
    bad.depth = 0;
    CHECK(lvd_vit_train_create(&bad, 0.1f, 1, &m, &err) != 0);
    m = make(64, 0, LVD_VIT_MLP, 0, 4, 4, 0.1f, 1);
    other = make(128, 0, LVD_VIT_MLP, 0, 4, 4, 0.1f, 1);
    if (!m || !other) {
        lvd_vit_train_free(m);
        lvd_vit_train_free(other);
        return;
    }
    lvd_vit_train_set_threads(m, 1);
    lvd_vit_pass *p = NULL, *f = NULL, *o = NULL;
    CHECK(lvd_vit_pass_create(m, 0, 16, 16, 1, &p, &err) != 0 && p == NULL);
    CHECK(lvd_vit_pass_create(m, 2, 15, 16, 1, &p, &err) != 0 && strstr(err.msg, "multiples"));
    CHECK(lvd_vit_pass_create(m, 2, 16, 2, 1, &p, &err) != 0);
    CHECK(lvd_vit_pass_create(m, 1 << 21, 16, 16, 1, &p, &err) != 0);
    CHECK(lvd_vit_pass_create(m, 2, 16, 16, 1, &p, &err) == 0);
    CHECK(lvd_vit_pass_create(m, 2, 16, 16, 0, &f, &err) == 0);
    CHECK(lvd_vit_pass_create(other, 2, 16, 16, 1, &o, &err) == 0);
    float x[2 * 3 * 256], w[2 * 64];
    vt_fill(x, sizeof x / sizeof x[0], 2, 1.0f);
    vt_fill(w, sizeof w / sizeof w[0], 3, 1.0f);
    CHECK(lvd_vit_train_backward(m, p, w, NULL, NULL, &err) != 0 && strstr(err.msg, "before"));
    CHECK(lvd_vit_train_forward(m, p, NULL, NULL, NULL, NULL, &err) != 0);
    CHECK(lvd_vit_train_forward(NULL, p, x, NULL, NULL, NULL, &err) != 0);
    double rates[3] = {-0.1, 1.5, NAN};
    for (int i = 0; i < 3; i++) {
        lvd_vit_drop d = {rates[i], 1};
        CHECK(lvd_vit_train_forward(m, p, x, NULL, &d, NULL, &err) != 0 && strstr(err.msg, "rate"));
    }
    CHECK(lvd_vit_train_forward(m, o, x, NULL, NULL, NULL, &err) != 0 &&
          strstr(err.msg, "architecture"));
    CHECK(lvd_vit_train_forward(m, f, x, NULL, NULL, NULL, &err) == 0);
    CHECK(lvd_vit_train_backward(m, f, w, NULL, NULL, &err) != 0 &&
          strstr(err.msg, "forward-only"));
    lvd_vit_train_set_threads(m, 64);
    CHECK(lvd_vit_train_forward(m, p, x, NULL, NULL, NULL, &err) != 0 &&
          strstr(err.msg, "threads"));
    lvd_vit_train_set_threads(m, 1);
    CHECK(lvd_vit_train_forward(m, p, x, NULL, NULL, NULL, &err) == 0);
    CHECK(lvd_vit_train_backward(m, p, w, NULL, NULL, &err) == 0);
    lvd_vit_pass_free(p);
    lvd_vit_pass_free(f);
    lvd_vit_pass_free(o);
    lvd_vit_pass_free(NULL);
    lvd_vit_train_free(m);
    lvd_vit_train_free(other);
    lvd_vit_train_free(NULL);
}

int main(void)
{
    check_layout_and_init();
    check_round_trip();
    parity(LVD_VIT_MLP, 0, 32, 32, 1);    /* the stored 4 x 4 grid */
    parity(LVD_VIT_MLP, 0, 24, 40, 2);    /* bicubic resize to 3 x 5 */
    parity(LVD_VIT_SWIGLU, 4, 48, 16, 3); /* antialiased resize to 6 x 2 */
    check_drop();
    check_accumulate();
    check_refused();
    return check_finish();
}
