/* The iBOT mask path: masked patches replaced by mask_token before the positional embedding
 * (vit_backward case: 3 images of 4x4 patches, some masked). */
#include <stdint.h>
#include <stdlib.h>

#include "tests/embed/vit_check.h"

/* Max |a - b| over n values. */
static double max_diff(const float *a, const float *b, int64_t n)
{
    double m = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        m = d > m ? d : m;
    }
    return m;
}

int main(void)
{
    const char *dir = check_reference_dir();
    char path[1024];
    lvd_error err = {0};
    lvd_vit *m;
    int rc = lvd_vit_load(vit_ref_path(path, sizeof path, dir, "vit_backward.weights.safetensors"),
                          &m, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    lvd_tensors *ref;
    int rc2 = lvd_tensors_open(
        vit_ref_path(path, sizeof path, dir, "vit_backward.case.safetensors"), &ref, &err);
    CHECK_MSG(rc2 == 0, "%s", err.msg);
    if (rc != 0 || rc2 != 0) {
        return check_finish();
    }
    const lvd_tensor *x = vit_need(ref, "x");
    const lvd_tensor *masks = vit_need(ref, "masks");
    const lvd_tensor *cls = vit_need(ref, "cls");
    const lvd_tensor *patch = vit_need(ref, "patch");
    if (x && masks && cls && patch) {
        int B = (int)x->shape[0], H = (int)x->shape[2], W = (int)x->shape[3];
        uint8_t *mask = malloc((size_t)masks->numel);
        int n_masked = 0;
        for (int64_t i = 0; i < masks->numel; i++) {
            mask[i] = masks->data[i] != 0.0f;
            n_masked += mask[i];
        }
        CHECK(n_masked > 0 && n_masked < masks->numel);
        lvd_vit_outputs o = {0};
        o.cls = malloc(sizeof(float) * (size_t)cls->numel);
        o.patch = malloc(sizeof(float) * (size_t)patch->numel);
        rc = lvd_vit_forward(m, x->data, B, H, W, mask, &o, &err);
        CHECK_MSG(rc == 0, "%s", err.msg);
        double rel = vit_compare("vit_backward masked cls", o.cls, cls);
        rel += vit_compare("vit_backward masked patch", o.patch, patch);
        printf("masked forward: %d of %lld patches masked, relative errors sum %.2e\n", n_masked,
               (long long)masks->numel, rel);
        /* Without the mask the output must differ: the mask is what the reference used. */
        rc = lvd_vit_forward(m, x->data, B, H, W, NULL, &o, &err);
        CHECK_MSG(rc == 0, "%s", err.msg);
        double d = max_diff(o.patch, patch->data, patch->numel);
        CHECK_MSG(d > 1e-2, "unmasked output equals the masked reference (max diff %.2e)", d);
        free(o.cls);
        free(o.patch);
        free(mask);
    }
    lvd_tensors_close(ref);
    lvd_vit_free(m);
    return check_finish();
}
