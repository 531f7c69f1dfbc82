/* lvd_vit_pass_keep (train/vit_train.h): a forward that computes only some final outputs (cls
 * tokens and listed patches; the last block runs its queries, projection and FFN on those rows)
 * gives the wanted rows of the full forward, zeros elsewhere, and the full forward's parameter
 * gradients when the loss reads only the wanted rows; for MLP and SwiGLU models, with registers,
 * with masks, on a forward-only pass, with every row or no patch wanted, and with stochastic
 * depth dropping images in the last block (every row computed then). Bad indices fail. */
#include "tests/train/vit_train_check.h"

/* Runs one case: B images of S x S pixels; n_keep listed patches (every 3rd one); rate = drop. */
static void run_case(const char *label, const lvd_vit_info *arch, int B, int S, int cls, int every,
                     double rate)
{
    lvd_error err = {0};
    lvd_vit_train *m;
    if (lvd_vit_train_create(arch, 0.1f, 11, &m, &err) != 0) {
        CHECK_MSG(0, "%s: %s", label, err.msg);
        return;
    }
    vt_perturb(m, 5);
    const lvd_vit_info *a = lvd_vit_train_info(m);
    int P = a->patch, N = (S / P) * (S / P), D = a->dim, R = a->n_reg, T = 1 + R + N;
    size_t total = lvd_vit_train_layout(m)->total;
    lvd_vit_pass *full, *kept, *fwd;
    CHECK(lvd_vit_pass_create(m, B, S, S, 1, &full, &err) == 0);
    CHECK(lvd_vit_pass_create(m, B, S, S, 1, &kept, &err) == 0);
    CHECK(lvd_vit_pass_create(m, B, S, S, 0, &fwd, &err) == 0);
    float *x = malloc(sizeof(float) * B * 3 * S * S);
    vt_fill(x, (size_t)B * 3 * S * S, 3, 2.0f);
    uint8_t *mask = malloc((size_t)B * N);
    for (int i = 0; i < B * N; i++) {
        mask[i] = i % 5 == 1;
    }
    int *idx = malloc(sizeof(int) * B * N), n = 0;
    for (int i = 0; every > 0 && i < B * N; i += every) {
        idx[n++] = i;
    }
    /* Output gradients on the wanted rows only (the loss reads nothing else). */
    float *dcls = calloc((size_t)B * D, sizeof(float)), *dpatch = calloc((size_t)B * N * D, 4);
    if (cls) {
        vt_fill(dcls, (size_t)B * D, 7, 1.0f);
    }
    for (int j = 0; j < n; j++) {
        vt_fill(dpatch + (size_t)idx[j] * D, (size_t)D, 100 + (uint64_t)j, 1.0f);
    }
    lvd_vit_drop drop = {rate, 9};
    float *g_full = malloc(sizeof(float) * total), *out_full = malloc(sizeof(float) * B * T * D);
    lvd_vit_train_zero_grad(m);
    CHECK(lvd_vit_train_forward(m, full, x, mask, &drop, NULL, &err) == 0);
    CHECK(lvd_vit_train_backward(m, full, dcls, dpatch, NULL, &err) == 0);
    memcpy(g_full, lvd_vit_train_grads(m), sizeof(float) * total);
    memcpy(out_full, full->out, sizeof(float) * B * T * D);

    CHECK(lvd_vit_pass_keep(kept, cls, idx, n, &err) == 0);
    CHECK(lvd_vit_pass_keep(fwd, cls, idx, n, &err) == 0);
    lvd_vit_train_zero_grad(m);
    CHECK(lvd_vit_train_forward(m, kept, x, mask, &drop, NULL, &err) == 0);
    CHECK(lvd_vit_train_backward(m, kept, dcls, dpatch, NULL, &err) == 0);
    CHECK(lvd_vit_train_forward(m, fwd, x, mask, &drop, NULL, &err) == 0);
    CHECK_MSG(kept->pruned == (rate == 0.0), "%s: pruned %d", label, kept->pruned);
    /* Wanted rows as the full forward's, the others 0. */
    uint8_t *want = calloc((size_t)B * T, 1);
    for (int b = 0; cls && b < B; b++) {
        want[(size_t)b * T] = 1;
    }
    for (int j = 0; j < n; j++) {
        want[(size_t)(idx[j] / N) * T + 1 + R + idx[j] % N] = 1;
    }
    double maxd = 0.0, maxf = 0.0;
    int zero_ok = 1;
    for (int r = 0; r < B * T; r++) {
        for (int d = 0; d < D; d++) {
            size_t i = (size_t)r * D + d;
            if (want[r] || !kept->pruned) {
                double e = fabs((double)kept->out[i] - out_full[i]);
                maxd = e > maxd ? e : maxd;
                e = fabs((double)fwd->out[i] - out_full[i]);
                maxf = e > maxf ? e : maxf;
            } else if (kept->out[i] != 0.0f || fwd->out[i] != 0.0f) {
                zero_ok = 0;
            }
        }
    }
    free(want);
    const float *g = lvd_vit_train_grads(m);
    double rel = vt_rel(g, g_full, total);
    printf("%-28s kept %4d of %4d rows: out max|d| %.2e (forward-only %.2e), grads rel %.2e\n",
           label, kept->n_keep, B * T, maxd, maxf, rel);
    CHECK_MSG(maxd < 1e-5 && maxf < 1e-5, "%s: wanted outputs differ (%.3e, %.3e)", label, maxd,
              maxf);
    CHECK_MSG(zero_ok, "%s: rows not wanted are not 0", label);
    CHECK_MSG(rel < 1e-5, "%s: gradients differ (rel %.3e)", label, rel);
    /* Per tensor too: a small tensor must not hide behind the large ones. */
    const lvd_param_layout *l = lvd_vit_train_layout(m);
    for (int i = 0; i < l->n; i++) {
        const lvd_param_tensor *t = &l->t[i];
        double rt = vt_rel(g + t->offset, g_full + t->offset, t->numel);
        CHECK_MSG(rt < 1e-4, "%s: %s gradient rel %.3e", label, t->name, rt);
    }
    /* Every row again, as the default. */
    CHECK(lvd_vit_pass_keep(kept, 0, NULL, -1, &err) == 0);
    CHECK(lvd_vit_train_forward(m, kept, x, mask, &drop, NULL, &err) == 0);
    CHECK(!kept->pruned);
    CHECK(vt_max_abs_diff(kept->out, out_full, (size_t)B * T * D) == 0.0);
    free(x);
    free(mask);
    free(idx);
    free(dcls);
    free(dpatch);
    free(g_full);
    free(out_full);
    lvd_vit_pass_free(full);
    lvd_vit_pass_free(kept);
    lvd_vit_pass_free(fwd);
    lvd_vit_train_free(m);
}

int main(void)
{
    lvd_vit_info mlp = {.dim = 64,
                        .depth = 2,
                        .heads = 2,
                        .patch = 4,
                        .grid = 3,
                        .ffn = LVD_VIT_MLP,
                        .ffn_hidden = 64};
    lvd_vit_info glu = {.dim = 64,
                        .depth = 3,
                        .heads = 1,
                        .patch = 4,
                        .grid = 4,
                        .n_reg = 2,
                        .ffn = LVD_VIT_SWIGLU,
                        .ffn_hidden = 48};
    run_case("mlp cls + patches", &mlp, 5, 12, 1, 3, 0.0);
    run_case("mlp cls only", &mlp, 4, 8, 1, 0, 0.0);
    run_case("mlp patches only", &mlp, 3, 12, 0, 4, 0.0);
    run_case("swiglu + registers", &glu, 4, 16, 1, 2, 0.0);
    run_case("mlp drop path (all rows)", &mlp, 5, 12, 1, 3, 0.4);

    lvd_error err = {0};
    lvd_vit_train *m;
    lvd_vit_pass *p;
    CHECK(lvd_vit_train_create(&mlp, 0.1f, 1, &m, &err) == 0);
    CHECK(lvd_vit_pass_create(m, 2, 12, 12, 1, &p, &err) == 0);
    int bad[2] = {0, 2 * 9};
    CHECK(lvd_vit_pass_keep(p, 1, bad, 2, &err) != 0 && strstr(err.msg, "outside"));
    CHECK(lvd_vit_pass_keep(p, 1, NULL, 1, &err) != 0);
    lvd_vit_pass_free(p);
    lvd_vit_train_free(m);
    return check_finish();
}
