/* Random-weight models (no reference needed): derived architecture, determinism, batching
 * (an image gives the same output alone or in a batch), positional resize for non-square
 * inputs with and without registers, the pooled features API, and invalid architectures. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "embed/vit.h"
#include "embed/vit_model.h"
#include "tests/check.h"

static double max_diff(const float *a, const float *b, size_t n)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        m = d > m ? d : m;
    }
    return m;
}

/* Random normalized-image-like input. */
static void fill_input(float *x, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (float)(seed >> 8) / 16777216.0f * 4.0f - 2.0f;
    }
}

/* The DINOv2 init: weights truncated normal std 0.02 cut at 2 std, biases 0, norms 1, LayerScale
 * 1e-5, tokens ~1e-6, mask token 0. */
static void check_init_values(const lvd_vit *m)
{
    const lvd_vit_block *b = &m->p.blocks[1];
    int D = m->info.dim;
    size_t nw = (size_t)3 * D * D;
    double sum2 = 0.0, maxw = 0.0;
    for (size_t i = 0; i < nw; i++) {
        sum2 += (double)b->qkv_w[i] * b->qkv_w[i];
        maxw = fabs(b->qkv_w[i]) > maxw ? fabs(b->qkv_w[i]) : maxw;
    }
    double std = sqrt(sum2 / (double)nw);
    CHECK_MSG(std > 0.0165 && std < 0.0185, "qkv weight std %.4f (0.02 cut at 2 std: 0.0176)", std);
    CHECK_MSG(maxw <= 0.04 + 1e-6, "qkv weight max %.4f beyond 2 std", maxw);
    int ok = 1;
    for (int j = 0; j < D; j++) {
        ok &= b->qkv_b[j] == 0.0f && b->fc2_b[j] == 0.0f && b->norm1_w[j] == 1.0f &&
              b->norm2_b[j] == 0.0f && b->ls1[j] == 1e-5f && b->ls2[j] == 1e-5f &&
              m->p.mask_token[j] == 0.0f && m->p.norm_w[j] == 1.0f &&
              fabsf(m->p.cls_token[j]) < 1e-5f && m->p.cls_token[j] != 0.0f;
    }
    CHECK_MSG(ok, "biases, norms, LayerScale or tokens not at their init values");
}

static void check_model(lvd_vit_ffn ffn, int n_reg)
{
    lvd_vit_info arch = {
        .dim = 128, .depth = 3, .patch = 14, .grid = 4, .n_reg = n_reg, .ffn = ffn};
    lvd_error err = {0};
    lvd_vit *m, *m2;
    int rc = lvd_vit_init_random(&arch, 42, &m, &err);
    rc |= lvd_vit_init_random(&arch, 42, &m2, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc != 0) {
        return;
    }
    const lvd_vit_info *a = lvd_vit_get_info(m);
    int hidden = ffn == LVD_VIT_SWIGLU ? 344 : 512; /* (int(4*128*2/3)+7)//8*8 = 344 */
    int64_t f1 = ffn == LVD_VIT_SWIGLU ? 2 * hidden : hidden;
    int64_t per_block = 4 * 128 + 3 * 128 * 128 + 3 * 128 + 128 * 128 + 128 + 2 * 128 + f1 * 128 +
                        f1 + 128 * hidden + 128;
    int64_t total = 128 * 3 * 14 * 14 + 128 + 128 + (int64_t)n_reg * 128 + 128 + 17 * 128 +
                    3 * per_block + 2 * 128;
    CHECK(a->heads == 2 && a->ffn_hidden == hidden && a->pos_antialias == (n_reg > 0));
    check_init_values(m);
    CHECK_MSG(a->n_params == total, "n_params %lld, expected %lld", (long long)a->n_params,
              (long long)total);

    /* Two non-square images of 3x5 patches: batched, alone, and from the twin model. */
    int B = 2, H = 42, W = 70, N = 15, D = 128;
    size_t img = 3 * (size_t)H * W;
    float *x = malloc(sizeof(float) * B * img);
    fill_input(x, B * img, 7);
    float *cls = malloc(sizeof(float) * B * D), *patch = malloc(sizeof(float) * B * N * D);
    float *cls1 = malloc(sizeof(float) * D), *patch1 = malloc(sizeof(float) * N * D);
    lvd_vit_outputs o = {.cls = cls, .patch = patch};
    lvd_vit_outputs o1 = {.cls = cls1, .patch = patch1};
    lvd_vit_set_threads(m, 2);
    rc = lvd_vit_forward(m, x, B, H, W, NULL, &o, &err);
    rc |= lvd_vit_forward(m2, x + img, 1, H, W, NULL, &o1, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    double d = max_diff(cls1, cls + D, D) + max_diff(patch1, patch + (size_t)N * D, N * D);
    printf("ffn %d reg %d: batch vs single max diff %.2e\n", ffn, n_reg, d);
    CHECK_MSG(d < 1e-5, "image 1 alone differs from image 1 in a batch by %.3e", d);
    CHECK(max_diff(patch, patch + (size_t)N * D, N * D) > 1e-3); /* different images */

    /* Features: cls, and cls + mean of the patch tokens; another grid in between. */
    float *feat = malloc(sizeof(float) * B * 2 * D);
    float *sq = malloc(sizeof(float) * 3 * 56 * 56);
    fill_input(sq, 3 * 56 * 56, 9);
    rc = lvd_vit_features(m, sq, 1, 56, 56, LVD_VIT_POOL_CLS, feat, &err);
    rc |= lvd_vit_features(m, x, B, H, W, LVD_VIT_POOL_CLS_MEANPATCH, feat, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    CHECK(lvd_vit_feature_dim(m, LVD_VIT_POOL_CLS) == D);
    CHECK(lvd_vit_feature_dim(m, LVD_VIT_POOL_CLS_MEANPATCH) == 2 * D);
    double dm = 0.0;
    for (int b = 0; b < B; b++) {
        dm += max_diff(feat + (size_t)b * 2 * D, cls + (size_t)b * D, D);
        for (int k = 0; k < D; k++) {
            double mean = 0.0;
            for (int n = 0; n < N; n++) {
                mean += patch[((size_t)b * N + n) * D + k];
            }
            dm += fabs(mean / N - feat[(size_t)b * 2 * D + D + k]);
        }
    }
    CHECK_MSG(dm < 1e-4, "features differ from cls / mean patch by %.3e", dm);
    free(sq);
    free(feat);
    free(x);
    free(cls);
    free(patch);
    free(cls1);
    free(patch1);
    lvd_vit_free(m);
    lvd_vit_free(m2);
}

/* More grids than the positional cache holds, then the first again: same output. */
static void check_pos_cache(void)
{
    lvd_vit_info arch = {.dim = 64, .depth = 1, .patch = 14, .grid = 4, .ffn = LVD_VIT_MLP};
    lvd_error err = {0};
    lvd_vit *m;
    CHECK(lvd_vit_init_random(&arch, 3, &m, &err) == 0);
    static float x[3 * 14 * 14 * 12];
    fill_input(x, sizeof x / sizeof x[0], 5);
    float first[64], cls[64];
    lvd_vit_outputs o = {.cls = first};
    int rc = lvd_vit_forward(m, x, 1, 14, 28, NULL, &o, &err);
    o.cls = cls;
    for (int k = 1; k <= 12; k++) {
        rc |= lvd_vit_forward(m, x, 1, 14 * k, 14, NULL, &o, &err);
    }
    rc |= lvd_vit_forward(m, x, 1, 14, 28, NULL, &o, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    CHECK(memcmp(first, cls, sizeof cls) == 0);
    lvd_vit_free(m);
}

int main(void)
{
    check_pos_cache();
    check_model(LVD_VIT_MLP, 0);
    check_model(LVD_VIT_SWIGLU, 4);
    lvd_vit_info bad = {.dim = 100, .depth = 2, .patch = 14, .grid = 4};
    lvd_error err = {0};
    lvd_vit *m;
    CHECK(lvd_vit_init_random(&bad, 1, &m, &err) != 0 && m == NULL);
    CHECK(strstr(err.msg, "dim") != NULL);
    bad.dim = 64;
    bad.depth = 0;
    CHECK(lvd_vit_init_random(&bad, 1, &m, &err) != 0 && m == NULL);
    return check_finish();
}
