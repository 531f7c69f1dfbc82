/* The DINO head (train/head.h) against the reference: forward output, d x and every parameter
 * gradient of loss = sum(out * w); gradients accumulated over two row sets; determinism; save and
 * load; the init; refused sizes and files. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/train/heads_check.h"
#include "train/head.h"

static char tmpdir[] = "/tmp/lvd-test-dino-head-XXXXXX";

static void reference_case(const char *dir)
{
    char path[1024];
    lvd_error err = {0};
    lvd_head h;
    int rc = lvd_head_load(
        &h, vit_ref_path(path, sizeof path, dir, "dino_head.weights.safetensors"), NULL, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc != 0)
        return;
    const lvd_head_config *c = &h.cfg;
    CHECK(c->in_dim == 384 && c->hidden_dim == 512 && c->bottleneck_dim == 128 &&
          c->out_dim == 1024 && c->nlayers == 3 && c->mlp_bias);
    lvd_tensors *ref;
    rc = lvd_tensors_open(vit_ref_path(path, sizeof path, dir, "dino_head.case.safetensors"), &ref,
                          &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc != 0) {
        lvd_head_free(&h);
        return;
    }
    const lvd_tensor *x = vit_need(ref, "x"), *w = vit_need(ref, "w"), *out = vit_need(ref, "out");
    if (x && w && out) {
        int n = (int)x->shape[0], K = c->out_dim;
        CHECK(x->shape[1] == c->in_dim && w->numel == (int64_t)n * K && out->numel == w->numel);
        for (int threads = 1; threads <= 2; threads++) {
            printf("threads %d\n", threads);
            h.threads = threads;
            lvd_head_acts a;
            CHECK(lvd_head_acts_init(&a, c, n, &err) == 0);
            float *o = malloc(sizeof(float) * (size_t)n * K);
            float *dx = malloc(sizeof(float) * (size_t)x->numel);
            float *g = calloc(h.layout.total, sizeof *g);
            CHECK(lvd_head_forward(&h, &a, x->data, n, o, &err) == 0);
            hc_forward("out", o, out);
            CHECK(lvd_head_backward(&h, &a, w->data, g, dx, &err) == 0);
            const lvd_tensor *gx = hc_need(ref, "grad.x", x->numel);
            if (gx)
                hc_grad("grad.x", dx, gx);
            for (int i = 0; i < h.layout.n; i++) {
                const lvd_param_tensor *p = &h.layout.t[i];
                char name[128];
                snprintf(name, sizeof name, "grad.%s", p->name);
                const lvd_tensor *gr = hc_need(ref, name, (int64_t)p->numel);
                if (gr)
                    hc_grad(name, g + p->offset, gr);
            }

            /* The same rows as two forwards (rows 0-1 and 2-4) on two activation objects, then
             * two backwards: the gradients add up to those of one pass. */
            lvd_head_acts a1, a2;
            CHECK(lvd_head_acts_init(&a1, c, 2, &err) == 0);
            CHECK(lvd_head_acts_init(&a2, c, n, &err) == 0);
            float *o2 = malloc(sizeof(float) * (size_t)n * K);
            float *dx2 = malloc(sizeof(float) * (size_t)x->numel);
            float *g2 = calloc(h.layout.total, sizeof *g2);
            CHECK(lvd_head_forward(&h, &a1, x->data, 2, o2, &err) == 0);
            CHECK(lvd_head_forward(&h, &a2, x->data + 2 * c->in_dim, n - 2, o2 + 2 * K, &err) == 0);
            CHECK(lvd_head_backward(&h, &a2, w->data + 2 * K, g2, dx2 + 2 * c->in_dim, &err) == 0);
            CHECK(lvd_head_backward(&h, &a1, w->data, g2, dx2, &err) == 0);
            double worst = 0.0, gmax = 0.0;
            for (size_t i = 0; i < h.layout.total; i++) {
                double d = fabs((double)g2[i] - g[i]);
                worst = d > worst ? d : worst;
                gmax = fabs(g[i]) > gmax ? fabs(g[i]) : gmax;
            }
            CHECK_MSG(worst <= 1e-5 * gmax, "split rows: gradients differ by %.3e (max %.3e)",
                      worst, gmax);
            double dmax = 0.0;
            for (int64_t i = 0; i < (int64_t)n * K; i++)
                dmax = fmax(dmax, fabs((double)o2[i] - o[i]));
            CHECK_MSG(dmax <= 1e-6, "split rows: outputs differ by %.3e", dmax);

            /* Determinism: the same call again gives the same bits. */
            memset(g2, 0, h.layout.total * sizeof *g2);
            CHECK(lvd_head_forward(&h, &a, x->data, n, o2, &err) == 0);
            CHECK(lvd_head_backward(&h, &a, w->data, g2, dx2, &err) == 0);
            CHECK(memcmp(o, o2, sizeof(float) * (size_t)n * K) == 0);
            CHECK(memcmp(g, g2, sizeof(float) * h.layout.total) == 0);
            CHECK(memcmp(dx, dx2, sizeof(float) * (size_t)x->numel) == 0);

            /* Backward adds: a second backward doubles the parameter gradients. */
            CHECK(lvd_head_backward(&h, &a, w->data, g2, NULL, &err) == 0);
            int doubled = 1;
            for (size_t i = 0; i < h.layout.total; i++)
                doubled &= g2[i] == 2.0f * g[i];
            CHECK(doubled);
            lvd_head_acts_free(&a);
            lvd_head_acts_free(&a1);
            lvd_head_acts_free(&a2);
            free(o);
            free(o2);
            free(dx);
            free(dx2);
            free(g);
            free(g2);
        }
    }
    lvd_tensors_close(ref);

    /* Save with a prefix and load back: the same parameters; without the prefix it is refused. */
    snprintf(path, sizeof path, "%s/head.safetensors", tmpdir);
    CHECK(lvd_head_save(&h, path, "dino_head.", &err) == 0);
    lvd_head h2;
    rc = lvd_head_load(&h2, path, "dino_head.", &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc == 0) {
        CHECK(h2.layout.total == h.layout.total);
        CHECK(memcmp(h2.params, h.params, sizeof(float) * h.layout.total) == 0);
        lvd_head_free(&h2);
    }
    CHECK(lvd_head_load(&h2, path, NULL, &err) == -1 && strstr(err.msg, "weight_v"));
    lvd_head_free(&h);
}

static void init_and_refusals(void)
{
    lvd_error err = {0};
    lvd_head_config c = {.in_dim = 64,
                         .hidden_dim = 96,
                         .bottleneck_dim = 32,
                         .out_dim = 128,
                         .nlayers = 3,
                         .mlp_bias = 1};
    lvd_head h, h2;
    CHECK(lvd_head_init(&h, &c, 7, &err) == 0);
    CHECK(lvd_head_init(&h2, &c, 7, &err) == 0);
    CHECK(memcmp(h.params, h2.params, sizeof(float) * h.layout.total) == 0);
    const char *names[] = {"mlp.0.weight",        "mlp.0.bias",         "mlp.2.weight",
                           "mlp.2.bias",          "mlp.4.weight",       "mlp.4.bias",
                           "last_layer.weight_g", "last_layer.weight_v"};
    CHECK(h.layout.n == 8);
    for (int i = 0; i < 8 && i < h.layout.n; i++)
        CHECK_MSG(strcmp(h.layout.t[i].name, names[i]) == 0, "tensor %d is %s", i,
                  h.layout.t[i].name);
    const lvd_param_tensor *w0 = lvd_param_layout_find(&h.layout, "mlp.0.weight");
    const lvd_param_tensor *b2 = lvd_param_layout_find(&h.layout, "mlp.2.bias");
    const lvd_param_tensor *g = lvd_param_layout_find(&h.layout, "last_layer.weight_g");
    const lvd_param_tensor *v = lvd_param_layout_find(&h.layout, "last_layer.weight_v");
    CHECK(w0 && b2 && g && v && g->ndim == 2 && g->shape[0] == 128 && g->shape[1] == 1 &&
          v->shape[0] == 128 && v->shape[1] == 32);
    if (w0 && b2 && g && v) {
        double s2 = 0.0;
        for (size_t i = 0; i < w0->numel; i++)
            s2 += (double)h.params[w0->offset + i] * h.params[w0->offset + i];
        double std = sqrt(s2 / (double)w0->numel);
        CHECK_MSG(fabs(std - 0.02) < 0.001, "mlp.0.weight std %.4f", std);
        int zero = 1, one = 1, in_bound = 1;
        for (size_t i = 0; i < b2->numel; i++)
            zero &= h.params[b2->offset + i] == 0.0f;
        for (size_t i = 0; i < g->numel; i++)
            one &= h.params[g->offset + i] == 1.0f;
        double vmax = 0.0;
        for (size_t i = 0; i < v->numel; i++) {
            double a = fabs(h.params[v->offset + i]);
            in_bound &= a <= 1.0 / sqrt(32.0);
            vmax = a > vmax ? a : vmax;
        }
        CHECK(zero && one && in_bound && vmax > 0.9 / sqrt(32.0));
    }
    lvd_head_free(&h2);
    CHECK(lvd_head_init(&h2, &c, 8, &err) == 0);
    CHECK(memcmp(h.params, h2.params, sizeof(float) * h.layout.total) != 0);
    lvd_head_free(&h2);

    /* Single-linear and bias-free heads use the reference names. */
    lvd_head_config c1 = c;
    c1.nlayers = 1;
    c1.mlp_bias = 0;
    CHECK(lvd_head_init(&h2, &c1, 1, &err) == 0);
    CHECK(h2.layout.n == 3 && strcmp(h2.layout.t[0].name, "mlp.weight") == 0 &&
          h2.layout.t[0].shape[0] == 32 && h2.layout.t[0].shape[1] == 64);
    lvd_head_free(&h2);

    lvd_head_acts a, a_other;
    CHECK(lvd_head_acts_init(&a, &c, 4, &err) == 0);
    float x[5 * 64] = {0}, out[5 * 128];
    float *grads = calloc(h.layout.total, sizeof *grads);
    CHECK(lvd_head_backward(&h, &a, out, grads, NULL, &err) == -1); /* no forward yet */
    CHECK(lvd_head_forward(&h, &a, x, 5, out, &err) == -1 && strstr(err.msg, "rows"));
    CHECK(lvd_head_forward(&h, &a, x, -1, out, &err) == -1);
    CHECK(lvd_head_forward(&h, &a, x, 0, out, &err) == 0);
    CHECK(lvd_head_backward(&h, &a, out, grads, NULL, &err) == 0);
    /* A zero input row normalizes to zero (||z|| clamped at 1e-12) without NaNs. */
    CHECK(lvd_head_forward(&h, &a, x, 4, out, &err) == 0);
    int finite = 1;
    for (int i = 0; i < 4 * 128; i++)
        finite &= isfinite(out[i]);
    CHECK(finite);
    CHECK(lvd_head_acts_init(&a_other, &c1, 4, &err) == 0);
    CHECK(lvd_head_forward(&h, &a_other, x, 4, out, &err) == -1 &&
          strstr(err.msg, "configuration"));
    lvd_head_acts_free(&a_other);
    CHECK(lvd_head_acts_init(&a_other, &c, 0, &err) == -1);
    lvd_head_acts_free(&a);
    free(grads);

    lvd_head_config bad = c;
    bad.nlayers = 0;
    CHECK(lvd_head_init(&h2, &bad, 1, &err) == -1 && strstr(err.msg, "layers"));
    bad = c;
    bad.out_dim = 0;
    CHECK(lvd_head_init(&h2, &bad, 1, &err) == -1 && strstr(err.msg, "bad sizes"));
    bad = c;
    bad.hidden_dim = -3;
    CHECK(lvd_head_init(&h2, &bad, 1, &err) == -1);
    lvd_head_free(&h2);

    /* A file with one tensor of the wrong shape is refused. */
    char path[512];
    snprintf(path, sizeof path, "%s/bad.safetensors", tmpdir);
    lvd_tensor t[8];
    for (int i = 0; i < h.layout.n; i++) {
        const lvd_param_tensor *p = &h.layout.t[i];
        t[i] = (lvd_tensor){.name = p->name,
                            .dtype = LVD_F32,
                            .ndim = p->ndim,
                            .numel = (int64_t)p->numel,
                            .data = h.params + p->offset};
        memcpy(t[i].shape, p->shape, sizeof(int64_t) * (size_t)p->ndim);
    }
    t[2].shape[0] = 48; /* mlp.2.weight (96, 96) stored as (48, 192) */
    t[2].shape[1] = 192;
    CHECK(lvd_safetensors_write(path, t, 8, NULL, 0, &err) == 0);
    CHECK_MSG(lvd_head_load(&h2, path, "", &err) == -1 && strstr(err.msg, "mlp.2.weight"), "%s",
              err.msg);
    CHECK(lvd_head_load(&h2, "/nonexistent/head.safetensors", NULL, &err) == -1);
    unlink(path);
    lvd_head_free(&h);
}

typedef struct fd_ctx {
    lvd_head *h;
    lvd_head_acts *a;
    float *x, *w, *out;
    int n;
} fd_ctx;

/* loss = sum(head(x) * w), summed in double. */
static double fd_loss(void *p)
{
    fd_ctx *c = p;
    lvd_error err;
    CHECK(lvd_head_forward(c->h, c->a, c->x, c->n, c->out, &err) == 0);
    double l = 0.0;
    for (int i = 0; i < c->n * c->h->cfg.out_dim; i++)
        l += (double)c->out[i] * c->w[i];
    return l;
}

/* Every parameter and input gradient of small heads of other depths, with and without MLP
 * biases, against central differences. */
static void finite_differences(void)
{
    const int nl[4] = {1, 2, 3, 4}, bias[4] = {1, 0, 1, 0};
    for (int v = 0; v < 4; v++) {
        lvd_head_config c = {.in_dim = 5,
                             .hidden_dim = 6,
                             .bottleneck_dim = 4,
                             .out_dim = 7,
                             .nlayers = nl[v],
                             .mlp_bias = bias[v]};
        lvd_error err;
        lvd_head h;
        lvd_head_acts a;
        CHECK(lvd_head_init(&h, &c, 3, &err) == 0);
        CHECK(lvd_head_acts_init(&a, &c, 3, &err) == 0);
        uint64_t seed = 100 + (uint64_t)v;
        /* Larger weights than the init so that every GELU bends. */
        hc_fill(h.params, h.layout.total, 0.75, &seed);
        for (int k = 0; k < c.out_dim; k++)
            h.params[h.g_off + (size_t)k] += 1.0f;
        float x[3 * 5], w[3 * 7], out[3 * 7], dx[3 * 5];
        hc_fill(x, 15, 1.0, &seed);
        hc_fill(w, 21, 1.0, &seed);
        float *g = calloc(h.layout.total, sizeof *g);
        fd_ctx ctx = {&h, &a, x, w, out, 3};
        fd_loss(&ctx);
        CHECK(lvd_head_backward(&h, &a, w, g, dx, &err) == 0);
        char label[160];
        snprintf(label, sizeof label, "head nlayers %d bias %d: x", nl[v], bias[v]);
        hc_fd_check(label, fd_loss, &ctx, x, dx, 15, 1.0 / 128, 1e-3);
        for (int i = 0; i < h.layout.n; i++) {
            const lvd_param_tensor *p = &h.layout.t[i];
            snprintf(label, sizeof label, "head nlayers %d bias %d: %s", nl[v], bias[v], p->name);
            hc_fd_check(label, fd_loss, &ctx, h.params + p->offset, g + p->offset, p->numel,
                        1.0 / 128, 1e-3);
        }
        free(g);
        lvd_head_acts_free(&a);
        lvd_head_free(&h);
    }
}

int main(void)
{
    const char *dir = check_reference_dir();
    CHECK(mkdtemp(tmpdir) != NULL);
    init_and_refusals();
    finite_differences();
    reference_case(dir);
    char path[512];
    snprintf(path, sizeof path, "%s/head.safetensors", tmpdir);
    unlink(path);
    rmdir(tmpdir);
    return check_finish();
}
