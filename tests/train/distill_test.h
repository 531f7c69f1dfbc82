/* Helpers of the distillation tests: a tiny frozen teacher written to a folder the way an lvd-train
 * run leaves it (teacher_backbone.safetensors with official names, teacher_heads.safetensors),
 * synthetic images with structure (coloured blobs), their crops in train/ssl.h's batch layout,
 * the tiny student and the test configuration, and parameter snapshots. */
#ifndef LVD_TESTS_TRAIN_DISTILL_TEST_H
#define LVD_TESTS_TRAIN_DISTILL_TEST_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/train/optim_test.h"
#include "tests/train/vit_train_check.h"
#include "train/distill.h"

/* Sizes: student global crops 16 px, local 8 px, patch 4 (4 x 4 grid, N = 16). */
#define DT_G  16
#define DT_L  8
#define DT_K  64 /* DINO prototypes */
#define DT_KI 48 /* separate iBOT head prototypes */

/* Writes a teacher folder into dir: a ViT (dim 128, 2 blocks, 2 heads, patch `patch`, grid 4,
 * LayerScale and every parameter perturbed away from its init) and, with heads != 0, a DINO head
 * 128 -> 64 -> 64 -> 32 -> DT_K (and, heads == 2, a separate iBOT head with DT_KI prototypes),
 * weight_g spread over [0.5, 1.5]. Returns 0 on success. */
static inline int dt_write_teacher(const char *dir, int patch, int heads, uint64_t seed)
{
    lvd_error err = {0};
    lvd_vit_info a = {.dim = 128, .depth = 2, .heads = 0, .patch = patch, .grid = 4};
    lvd_vit_train *m;
    char path[4096];
    if (lvd_vit_train_create(&a, 0.3f, seed, &m, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    vt_perturb(m, seed + 7);
    int rc = (size_t)snprintf(path, sizeof path, "%s/%s", dir, LVD_DISTILL_TEACHER_BACKBONE) <
                     sizeof path
                 ? lvd_vit_train_save(m, path, &err)
                 : lvd_fail(&err, "path too long");
    lvd_vit_train_free(m);
    if (rc == 0 && heads) {
        lvd_head h[2] = {0};
        lvd_head_config c = {.in_dim = 128,
                             .hidden_dim = 64,
                             .bottleneck_dim = 32,
                             .out_dim = DT_K,
                             .nlayers = 3,
                             .mlp_bias = 1};
        for (int i = 0; rc == 0 && i < heads; i++) {
            c.out_dim = i ? DT_KI : DT_K;
            rc = lvd_head_init(&h[i], &c, seed + 11 + (uint64_t)i, &err);
            lvd_rng r = {seed + 13 + (uint64_t)i};
            for (int k = 0; rc == 0 && k < c.out_dim; k++) {
                h[i].params[h[i].g_off + k] = (float)(0.5 + lvd_rng_uniform(&r));
            }
            /* MLP weights of a trained head are larger than the 0.02 init. */
            for (size_t k = 0; rc == 0 && k < h[i].g_off; k++) {
                h[i].params[k] *= 5.0f;
            }
        }
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, LVD_DISTILL_TEACHER_HEADS) >=
            sizeof path) {
            rc = lvd_fail(&err, "path too long");
        }
        rc = rc ? rc : lvd_distill_heads_save(path, &h[0], heads == 2 ? &h[1] : NULL, &err);
        lvd_head_free(&h[0]);
        lvd_head_free(&h[1]);
    }
    if (rc != 0) {
        fprintf(stderr, "%s\n", err.msg);
    }
    return rc;
}

/* n images (3, S, S), S = DT_G: a background colour, three soft coloured blobs, a little noise;
 * values of normalized inputs (about -2 .. 2). */
static inline void dt_images(float *img, int n, uint64_t seed)
{
    const int S = DT_G;
    lvd_rng r = {seed};
    for (int i = 0; i < n; i++) {
        float *im = img + (size_t)i * 3 * S * S;
        double bg[3], cx[3], cy[3], rad[3], col[3][3];
        for (int c = 0; c < 3; c++) {
            bg[c] = 2.0 * lvd_rng_uniform(&r) - 1.0;
        }
        for (int b = 0; b < 3; b++) {
            cx[b] = S * lvd_rng_uniform(&r);
            cy[b] = S * lvd_rng_uniform(&r);
            rad[b] = 1.5 + 3.0 * lvd_rng_uniform(&r);
            for (int c = 0; c < 3; c++) {
                col[b][c] = 4.0 * lvd_rng_uniform(&r) - 2.0;
            }
        }
        for (int c = 0; c < 3; c++) {
            for (int y = 0; y < S; y++) {
                for (int x = 0; x < S; x++) {
                    double v = bg[c];
                    for (int b = 0; b < 3; b++) {
                        double d2 = (x - cx[b]) * (x - cx[b]) + (y - cy[b]) * (y - cy[b]);
                        v += col[b][c] * exp(-d2 / (2.0 * rad[b] * rad[b]));
                    }
                    v += 0.1 * (2.0 * lvd_rng_uniform(&r) - 1.0);
                    im[((size_t)c * S + y) * S + x] = (float)v;
                }
            }
        }
    }
}

/* The crops of images first .. first + B - 1 in the batch layout: global crop 1 the image,
 * crop 2 its mirror image with a brightness shift (rows B .. 2B - 1), local crop j of image i
 * (row j B + i) an 8 x 8 window at a seeded offset. */
static inline void dt_crops(const float *img, int first, int B, int n_local, float *global,
                            float *local, uint64_t seed)
{
    const int S = DT_G, L = DT_L;
    lvd_rng r = {seed};
    for (int i = 0; i < B; i++) {
        const float *im = img + (size_t)(first + i) * 3 * S * S;
        float *g1 = global + (size_t)i * 3 * S * S, *g2 = global + (size_t)(B + i) * 3 * S * S;
        float shift = (float)(0.4 * lvd_rng_uniform(&r) - 0.2);
        for (int c = 0; c < 3; c++) {
            for (int y = 0; y < S; y++) {
                for (int x = 0; x < S; x++) {
                    g1[((size_t)c * S + y) * S + x] = im[((size_t)c * S + y) * S + x];
                    g2[((size_t)c * S + y) * S + x] =
                        im[((size_t)c * S + y) * S + (S - 1 - x)] + shift;
                }
            }
        }
        for (int j = 0; j < n_local; j++) {
            float *lc = local + (size_t)(j * B + i) * 3 * L * L;
            int oy = lvd_rng_below(&r, S - L + 1), ox = lvd_rng_below(&r, S - L + 1);
            for (int c = 0; c < 3; c++) {
                for (int y = 0; y < L; y++) {
                    for (int x = 0; x < L; x++) {
                        lc[((size_t)c * L + y) * L + x] = im[((size_t)c * S + oy + y) * S + ox + x];
                    }
                }
            }
        }
    }
}

/* The test configuration: batch B, n_local local crops, 2 threads, temperatures, weights and
 * optimizer of DINOv2's defaults. */
static inline void dt_config(lvd_distill_config *c, lvd_distill_mode mode, int B, int n_local,
                             int sinkhorn)
{
    lvd_distill_config_default(c, B, n_local, DT_G, DT_L);
    c->mode = mode;
    c->ssl.sinkhorn = sinkhorn;
    c->ssl.threads = 2;
}

/* The tiny student: dim 64, 1 block (1 head), patch 4, grid 4, LayerScale 0.1. */
static inline lvd_distill_spec dt_student(uint64_t seed)
{
    lvd_distill_spec s = {0};
    s.arch = (lvd_vit_info){.dim = 64, .depth = 1, .heads = 0, .patch = 4, .grid = 4};
    s.layerscale = 0.1f;
    s.seed = seed;
    return s;
}

/* Schedule values of a short test run. */
static inline lvd_schedule_values dt_schedule(double lr)
{
    lvd_schedule_values s = {
        .lr = lr, .wd = 0.04, .momentum = 0.9, .teacher_temp = 0.07, .last_layer_lr = lr};
    return s;
}

/* A malloc'd copy of every part's student (which 0) or EMA (which 1) buffer, one after the
 * other; *n receives the float count. */
static inline float *dt_snapshot(lvd_distill *d, int which, size_t *n)
{
    size_t total = 0;
    for (int i = 0; i < lvd_distill_n_parts(d); i++) {
        total += lvd_distill_get_part(d, i).layout->total;
    }
    float *out = malloc(total * sizeof(float) + 1), *p = out;
    for (int i = 0; out && i < lvd_distill_n_parts(d); i++) {
        lvd_ssl_part part = lvd_distill_get_part(d, i);
        memcpy(p, which ? part.teacher : part.student, part.layout->total * sizeof(float));
        p += part.layout->total;
    }
    *n = total;
    return out;
}

/* A malloc'd copy of every teacher parameter (backbone tensors in table order, then the heads). */
static inline float *dt_teacher_snapshot(lvd_distill_teacher *t, size_t *n)
{
    size_t cnt = lvd_vit_param_list(t->backbone, NULL, 0), total = 0;
    lvd_vit_param *tab = calloc(cnt ? cnt : 1, sizeof *tab);
    lvd_vit_param_list(t->backbone, tab, cnt);
    for (size_t i = 0; i < cnt; i++) {
        size_t e = 1;
        for (int k = 0; k < tab[i].ndim; k++) {
            e *= (size_t)tab[i].shape[k];
        }
        total += e;
    }
    size_t heads =
        (t->has_heads ? t->dino.layout.total : 0) + (t->ibot_separate ? t->ibot.layout.total : 0);
    float *out = malloc((total + heads) * sizeof(float) + 1), *p = out;
    for (size_t i = 0; i < cnt; i++) {
        size_t e = 1;
        for (int k = 0; k < tab[i].ndim; k++) {
            e *= (size_t)tab[i].shape[k];
        }
        memcpy(p, tab[i].data, e * sizeof(float));
        p += e;
    }
    if (t->has_heads) {
        memcpy(p, t->dino.params, t->dino.layout.total * sizeof(float));
        p += t->dino.layout.total;
    }
    if (t->ibot_separate) {
        memcpy(p, t->ibot.params, t->ibot.layout.total * sizeof(float));
    }
    free(tab);
    *n = total + heads;
    return out;
}

#endif
