/* Forward parity with the reference implementation: every case of every model, weights read
 * from every provided format, all outputs (cls, registers, patches, pre-norm tokens, last two
 * blocks). */
#include <stdlib.h>

#include "tests/embed/vit_check.h"

/* Compares one output of input xname with the reference tensor xname.suffix. */
static double compare_output(const lvd_tensors *ref, const char *label, const char *xname,
                             const char *suffix, const float *out)
{
    char name[128], full[256];
    snprintf(name, sizeof name, "%s.%s", xname, suffix);
    snprintf(full, sizeof full, "%s %s", label, name);
    const lvd_tensor *t = vit_need(ref, name);
    return t ? vit_compare(full, out, t) : 1.0;
}

/* Runs input x of the case and compares every output; returns the worst relative error. */
static double run_input(lvd_vit *m, const lvd_tensors *ref, const lvd_tensor *x, const char *label)
{
    const lvd_vit_info *a = lvd_vit_get_info(m);
    int B = (int)x->shape[0], H = (int)x->shape[2], W = (int)x->shape[3];
    size_t D = (size_t)a->dim, R = (size_t)a->n_reg;
    size_t N = (size_t)(H / a->patch) * (size_t)(W / a->patch);
    size_t T = 1 + R + N;
    lvd_vit_outputs o = {0};
    o.n_inter = 2;
    o.cls = malloc(sizeof(float) * B * D);
    o.reg = malloc(sizeof(float) * B * (R ? R : 1) * D);
    o.patch = malloc(sizeof(float) * B * N * D);
    o.prenorm = malloc(sizeof(float) * B * T * D);
    o.inter_cls = malloc(sizeof(float) * 2 * B * D);
    o.inter_patch = malloc(sizeof(float) * 2 * B * N * D);
    lvd_error err = {0};
    int rc = lvd_vit_forward(m, x->data, B, H, W, NULL, &o, &err);
    CHECK_MSG(rc == 0, "%s %s: %s", label, x->name, err.msg);
    double worst = 0.0;
    if (rc == 0) {
        double r[8] = {
            compare_output(ref, label, x->name, "cls", o.cls),
            compare_output(ref, label, x->name, "patch", o.patch),
            compare_output(ref, label, x->name, "prenorm", o.prenorm),
            R ? compare_output(ref, label, x->name, "reg", o.reg) : 0.0,
            compare_output(ref, label, x->name, "inter0.cls", o.inter_cls),
            compare_output(ref, label, x->name, "inter1.cls", o.inter_cls + B * D),
            compare_output(ref, label, x->name, "inter0.patch", o.inter_patch),
            compare_output(ref, label, x->name, "inter1.patch", o.inter_patch + B * N * D),
        };
        for (int i = 0; i < 8; i++) {
            worst = r[i] > worst ? r[i] : worst;
        }
    }
    free(o.cls);
    free(o.reg);
    free(o.patch);
    free(o.prenorm);
    free(o.inter_cls);
    free(o.inter_patch);
    return worst;
}

static void run_case(const char *dir, const char *name, const char *weights, int threads)
{
    char path[1024], label[256];
    snprintf(label, sizeof label, "%s [%s, %d thread%s]", name, weights, threads,
             threads > 1 ? "s" : "");
    lvd_error err = {0};
    lvd_vit *m;
    int rc = lvd_vit_load(vit_ref_path(path, sizeof path, dir, weights), &m, &err);
    CHECK_MSG(rc == 0, "%s: %s", label, err.msg);
    if (rc != 0) {
        return;
    }
    lvd_vit_set_threads(m, threads);
    char case_file[256];
    snprintf(case_file, sizeof case_file, "%s.case.safetensors", name);
    lvd_tensors *ref;
    rc = lvd_tensors_open(vit_ref_path(path, sizeof path, dir, case_file), &ref, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    double worst = 0.0;
    int inputs = 0;
    for (size_t i = 0; rc == 0 && i < lvd_tensors_count(ref); i++) {
        const lvd_tensor *x = lvd_tensors_at(ref, i);
        if (x->name[0] == 'x' && !strchr(x->name, '.')) {
            double r = run_input(m, ref, x, label);
            worst = r > worst ? r : worst;
            inputs++;
        }
    }
    CHECK_MSG(rc != 0 || inputs > 0, "%s: no inputs in the case file", label);
    printf("%s: %d inputs, worst relative error %.2e\n", label, inputs, worst);
    lvd_tensors_close(ref);
    lvd_vit_free(m);
}

int main(void)
{
    const char *dir = check_reference_dir();
    static const struct {
        const char *name, *weights;
        int threads;
    } cases[] = {
        {"vits14_d2", "vits14_d2.weights.safetensors", 1},
        {"vits14_d2", "vits14_d2.weights.safetensors", 2},
        {"vits14_d2", "vits14_d2.weights.pth", 2},
        {"vits14_d2", "vits14_d2.hf.safetensors", 2},
        {"vits14_reg4_d2", "vits14_reg4_d2.weights.safetensors", 2},
        {"vitg_swiglu_d2", "vitg_swiglu_d2.weights.safetensors", 2},
        {"vitg_swiglu_d2", "vitg_swiglu_d2.hf.safetensors", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        run_case(dir, cases[i].name, cases[i].weights, cases[i].threads);
    }
    return check_finish();
}
