/* The trainable ViT's forward against the reference outputs of every ViT case (official,
 * torch.save and transformers files, registers with the antialiased resize, fused SwiGLU,
 * non-square inputs), through a grad pass; a forward-only pass gives the same outputs. */
#include "tests/train/vit_train_check.h"

static void reference_case(const char *dir, const char *name, const char *weights, int threads)
{
    char path[1024];
    lvd_error err = {0};
    lvd_vit_train *m;
    snprintf(path, sizeof path, "%s/%s", dir, weights);
    int rc = lvd_vit_train_load(path, 0, &m, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc != 0) {
        return;
    }
    lvd_vit_train_set_threads(m, threads);
    lvd_tensors *ref;
    snprintf(path, sizeof path, "%s/%s.case.safetensors", dir, name);
    rc = lvd_tensors_open(path, &ref, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    const lvd_vit_info *a = lvd_vit_train_info(m);
    int inputs = 0;
    for (size_t i = 0; rc == 0 && i < lvd_tensors_count(ref); i++) {
        const lvd_tensor *x = lvd_tensors_at(ref, i);
        if (x->name[0] != 'x' || strchr(x->name, '.')) {
            continue;
        }
        int B = (int)x->shape[0], H = (int)x->shape[2], W = (int)x->shape[3];
        size_t D = (size_t)a->dim, R = (size_t)a->n_reg;
        size_t N = (size_t)(H / a->patch) * (W / a->patch);
        float *cls = malloc(sizeof(float) * B * D), *patch = malloc(sizeof(float) * B * N * D);
        float *reg = malloc(sizeof(float) * B * (R ? R : 1) * D);
        if (vt_forward_both(m, x->data, B, H, W, NULL, cls, patch, reg) == 0) {
            const char *suffix[3] = {"cls", "patch", "reg"};
            float *got[3] = {cls, patch, reg};
            for (int k = 0; k < (R ? 3 : 2); k++) {
                char tname[128], label[256];
                snprintf(tname, sizeof tname, "%s.%s", x->name, suffix[k]);
                snprintf(label, sizeof label, "%s %s", weights, tname);
                const lvd_tensor *t = lvd_tensors_find(ref, tname);
                CHECK_MSG(t != NULL, "reference tensor %s missing", tname);
                if (t) {
                    vt_check_forward(label, got[k], t->data, (size_t)t->numel);
                }
            }
        }
        inputs++;
        free(cls);
        free(patch);
        free(reg);
    }
    CHECK_MSG(rc != 0 || inputs > 0, "%s: no inputs", name);
    lvd_tensors_close(ref);
    lvd_vit_train_free(m);
}

/* The train_step case's student backbone (dim 64, 2 heads of 32: heads given) from its prefix. */
static void prefixed(const char *dir)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/train_step.case.safetensors", dir);
    lvd_error err = {0};
    lvd_tensors *ts;
    int rc = lvd_tensors_open(path, &ts, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc != 0) {
        return;
    }
    lvd_vit_train *m;
    rc = lvd_vit_train_load_tensors(ts, "student_init.backbone.", 2, &m, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc == 0) {
        const lvd_vit_info *a = lvd_vit_train_info(m);
        CHECK(a->dim == 64 && a->heads == 2 && a->depth == 2 && a->patch == 4 && a->grid == 4);
        const lvd_param_layout *l = lvd_vit_train_layout(m);
        const float *p = lvd_vit_train_params(m);
        int same = 0;
        for (int i = 0; i < l->n; i++) {
            char name[160];
            snprintf(name, sizeof name, "student_init.backbone.%s", l->t[i].name);
            const lvd_tensor *t = lvd_tensors_find(ts, name);
            same += t && (size_t)t->numel == l->t[i].numel &&
                    memcmp(t->data, p + l->t[i].offset, sizeof(float) * l->t[i].numel) == 0;
        }
        printf("train_step student backbone: %d of %d tensors loaded as stored\n", same, l->n);
        CHECK(same == l->n);
        lvd_vit_train_free(m);
    }
    /* Without the head count the 64-wide model would get one head of 64; 3 heads are refused. */
    CHECK(lvd_vit_train_load_tensors(ts, "student_init.backbone.", 3, &m, &err) != 0 && m == NULL &&
          strstr(err.msg, "heads"));
    CHECK(lvd_vit_train_load_tensors(ts, "nothing.", 0, &m, &err) != 0 && m == NULL);
    lvd_tensors_close(ts);
}

int main(void)
{
    const char *dir = check_reference_dir();
    static const struct {
        const char *name, *weights;
        int threads;
    } cases[] = {
        {"vits14_d2", "vits14_d2.weights.safetensors", 2},
        {"vits14_d2", "vits14_d2.weights.pth", 1},
        {"vits14_d2", "vits14_d2.hf.safetensors", 2},
        {"vits14_reg4_d2", "vits14_reg4_d2.weights.safetensors", 2},
        {"vitg_swiglu_d2", "vitg_swiglu_d2.weights.safetensors", 2},
        {"vitg_swiglu_d2", "vitg_swiglu_d2.hf.safetensors", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        reference_case(dir, cases[i].name, cases[i].weights, cases[i].threads);
    }
    prefixed(dir);
    return check_finish();
}
