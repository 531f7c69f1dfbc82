/* The reference vit_backward case: forward outputs (cls, patch) with the iBOT mask, the loss
 * sum(cls * w_cls) + sum(patch * w_patch), and every grad.<param> within 1e-3 relative; with 1
 * and 3 threads, and bitwise repeatable for a fixed thread count. */
#include "tests/train/vit_train_check.h"

static const lvd_tensor *need(const lvd_tensors *ts, const char *name)
{
    const lvd_tensor *t = lvd_tensors_find(ts, name);
    CHECK_MSG(t != NULL, "reference tensor %s missing", name);
    return t;
}

/* Runs the case with `threads`; returns a copy of the gradient buffer (*n floats), or NULL. */
static float *run(const char *dir, int threads, size_t *n)
{
    float *grads_out = NULL;
    char path[1024];
    lvd_error err = {0};
    lvd_vit_train *m;
    snprintf(path, sizeof path, "%s/vit_backward.weights.safetensors", dir);
    int rc = lvd_vit_train_load(path, 0, &m, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc != 0) {
        return NULL;
    }
    lvd_vit_train_set_threads(m, threads);
    lvd_tensors *ref;
    snprintf(path, sizeof path, "%s/vit_backward.case.safetensors", dir);
    rc = lvd_tensors_open(path, &ref, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc != 0) {
        lvd_vit_train_free(m);
        return NULL;
    }
    const lvd_tensor *x = need(ref, "x"), *masks = need(ref, "masks");
    const lvd_tensor *wc = need(ref, "w_cls"), *wp = need(ref, "w_patch");
    const lvd_tensor *cls_ref = need(ref, "cls"), *patch_ref = need(ref, "patch");
    const lvd_tensor *loss_ref = need(ref, "loss");
    if (x && masks && wc && wp && cls_ref && patch_ref && loss_ref) {
        int B = (int)x->shape[0], H = (int)x->shape[2], W = (int)x->shape[3];
        const lvd_vit_info *a = lvd_vit_train_info(m);
        int D = a->dim, N = (H / a->patch) * (W / a->patch);
        uint8_t *mask = malloc((size_t)B * N);
        for (int i = 0; i < B * N; i++) {
            mask[i] = masks->data[i] != 0.0f;
        }
        float *cls = malloc(sizeof(float) * B * D), *patch = malloc(sizeof(float) * B * N * D);
        lvd_vit_pass *p;
        rc = lvd_vit_pass_create(m, B, H, W, 1, &p, &err);
        CHECK_MSG(rc == 0, "%s", err.msg);
        lvd_vit_train_outputs o = {.cls = cls, .patch = patch};
        rc = rc ? rc : lvd_vit_train_forward(m, p, x->data, mask, NULL, &o, &err);
        CHECK_MSG(rc == 0, "%s", err.msg);
        rc = rc ? rc : lvd_vit_train_backward(m, p, wc->data, wp->data, NULL, &err);
        CHECK_MSG(rc == 0, "%s", err.msg);
        if (rc == 0) {
            printf("%d thread%s:\n", threads, threads > 1 ? "s" : "");
            vt_check_forward("cls", cls, cls_ref->data, (size_t)B * D);
            vt_check_forward("patch", patch, patch_ref->data, (size_t)B * N * D);
            double loss = vt_loss(cls, wc->data, (size_t)B * D, patch, wp->data, (size_t)B * N * D,
                                  NULL, NULL, 0);
            double dl = fabs(loss - loss_ref->data[0]);
            printf("  loss %.6f (reference %.6f)\n", loss, loss_ref->data[0]);
            CHECK_MSG(dl <= 1e-4 * fmax(1.0, fabs(loss_ref->data[0])), "loss differs by %.3e", dl);
            const lvd_param_layout *l = lvd_vit_train_layout(m);
            const float *g = lvd_vit_train_grads(m);
            double worst = 0.0;
            for (int i = 0; i < l->n; i++) {
                char name[160];
                snprintf(name, sizeof name, "grad.%s", l->t[i].name);
                const lvd_tensor *gr = need(ref, name);
                if (!gr) {
                    continue;
                }
                CHECK_MSG((size_t)gr->numel == l->t[i].numel, "%s: %lld values, expected %zu", name,
                          (long long)gr->numel, l->t[i].numel);
                if ((size_t)gr->numel != l->t[i].numel) {
                    continue;
                }
                double rel = vt_rel(g + l->t[i].offset, gr->data, l->t[i].numel);
                printf("  %-40s rel %.2e\n", name, rel);
                CHECK_MSG(rel <= 1e-3, "%s: relative error %.3e > 1e-3", name, rel);
                worst = rel > worst ? rel : worst;
            }
            printf("  worst gradient relative error %.2e\n", worst);
            grads_out = malloc(sizeof(float) * l->total);
            memcpy(grads_out, g, sizeof(float) * l->total);
            *n = l->total;
        }
        lvd_vit_pass_free(p);
        free(mask);
        free(cls);
        free(patch);
    }
    lvd_tensors_close(ref);
    lvd_vit_train_free(m);
    return grads_out;
}

int main(void)
{
    const char *dir = check_reference_dir();
    size_t n = 0;
    float *g1 = run(dir, 1, &n), *g3 = run(dir, 3, &n), *g3b = run(dir, 3, &n);
    CHECK(g1 && g3 && g3b);
    if (g1 && g3 && g3b) {
        CHECK_MSG(memcmp(g3, g3b, sizeof(float) * n) == 0,
                  "two runs with 3 threads give different gradients");
        printf("1 vs 3 threads: gradient relative difference %.2e\n", vt_rel(g3, g1, n));
    }
    free(g1);
    free(g3);
    free(g3b);
    return check_finish();
}
