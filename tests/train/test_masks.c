/* iBOT masks (train/masks.h): the generator train.py builds, single blocks (rectangles, area and
 * aspect distributions, the smallest block), whole masks (never more than asked, close to it),
 * and the collate: share of masked crops, stratified ratios, shuffle, indices, weights,
 * upperbound, determinism. */
#include <math.h>

#include "tests/check.h"
#include "train/masks.h"

static void test_for_crops(void)
{
    lvd_mask_gen g;
    lvd_error err;
    CHECK(lvd_mask_gen_for_crops(&g, 224, 14, &err) == 0);
    CHECK(g.height == 16 && g.width == 16 && g.max_patches == 128.0 && g.min_patches == 4);
    CHECK(lvd_mask_gen_for_crops(&g, 28, 4, &err) == 0);
    CHECK(g.height == 7 && g.width == 7 && g.max_patches == 21.0); /* floor(3 * 28 / 4) */
    CHECK(lvd_mask_gen_for_crops(&g, 16, 4, &err) == 0);
    CHECK(g.height == 4 && g.max_patches == 8.0);
    CHECK(fabs(g.log_aspect[0] - log(0.3)) < 1e-12 && fabs(g.log_aspect[1] + log(0.3)) < 1e-12);
    CHECK(lvd_mask_gen_for_crops(&g, 10, 14, &err) == -1);
    CHECK(lvd_mask_gen_init(&g, 0, 4, 8, &err) == -1);
}

/* The ones of mask form one filled rectangle; writes its sides. */
static int rectangle(const uint8_t *m, int H, int W, int *h, int *w)
{
    int y0 = H, y1 = -1, x0 = W, x1 = -1, n = 0;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            if (m[y * W + x]) {
                n++;
                y0 = y < y0 ? y : y0;
                y1 = y > y1 ? y : y1;
                x0 = x < x0 ? x : x0;
                x1 = x > x1 ? x : x1;
            }
    *h = y1 - y0 + 1;
    *w = x1 - x0 + 1;
    return n > 0 && n == *h * *w;
}

static void test_blocks(void)
{
    lvd_mask_gen g;
    lvd_error err;
    /* A 64 x 64 grid rejects no block of up to 128 patches: the area follows its target. */
    CHECK(lvd_mask_gen_init(&g, 64, 64, 128, &err) == 0);
    static uint8_t m[64 * 64];
    lvd_rng r = lvd_rng_stream(9, 0, 0, 0);
    double area_sum = 0, lr_sum = 0, lr_max = 0;
    int large = 0, central = 0;
    int all_rect = 1, bounded = 1, n = 4000;
    for (int i = 0; i < n; i++) {
        memset(m, 0, sizeof m);
        int got = lvd_mask_add_block(&g, &r, m, 128);
        int h = 1, w = 1;
        all_rect &= got > 0 && rectangle(m, 64, 64, &h, &w) && got == h * w;
        bounded &= got >= 3 && got <= 128;
        area_sum += got;
        double lr = log((double)h / w);
        lr_sum += lr;
        /* Rounding distorts the aspect of small blocks (7 patches can round to 5 x 1). */
        if (got >= 60) {
            large++;
            lr_max = fmax(lr_max, fabs(lr));
            central += fabs(lr) < -log(0.3) / 2;
        }
    }
    CHECK(all_rect && bounded);
    CHECK_MSG(fabs(area_sum / n - 66.0) < 2.0, "mean block area %.2f (target mean 66)",
              area_sum / n);
    CHECK_MSG(fabs(lr_sum / n) < 0.04, "mean log aspect %.3f", lr_sum / n);
    CHECK_MSG(lr_max < -log(0.3) + 0.2 && lr_max > 1.0, "largest |log aspect| %.3f", lr_max);
    CHECK_MSG(fabs(central / (double)large - 0.5) < 0.05,
              "share of large blocks in the middle half of the log aspect range %.3f",
              central / (double)large);

    /* The smallest blocks: target 4 gives 4 patches, or 3 where rounding makes 3 x 1. */
    int threes = 0, small_ok = 1;
    for (int i = 0; i < 2000; i++) {
        memset(m, 0, sizeof m);
        int got = lvd_mask_add_block(&g, &r, m, 4);
        threes += got == 3;
        small_ok &= got == 3 || got == 4;
    }
    CHECK(small_ok && threes > 0);
    /* A budget under 4 is respected (the area is drawn from [budget, 4]; blocks of 3 or 4 are
     * refused, so 10 attempts can all miss). */
    int hits = 0;
    for (int i = 0; i < 500; i++) {
        memset(m, 0, sizeof m);
        int got = lvd_mask_add_block(&g, &r, m, 2);
        small_ok &= got >= 0 && got <= 2;
        hits += got > 0;
    }
    CHECK(small_ok && hits > 250);
    /* A grid too small for any block: nothing after 10 attempts. */
    lvd_mask_gen tiny;
    CHECK(lvd_mask_gen_init(&tiny, 2, 2, 4, &err) == 0);
    uint8_t t[4] = {0};
    CHECK(lvd_mask_add_block(&tiny, &r, t, 4) == 0 && !t[0] && !t[3]);
}

static void test_generate(void)
{
    lvd_mask_gen g;
    lvd_error err;
    CHECK(lvd_mask_gen_for_crops(&g, 224, 14, &err) == 0);
    uint8_t m[256];
    lvd_rng r = lvd_rng_stream(4, 0, 0, 0);
    int never_more = 1, counted = 1;
    double share = 0;
    int shares = 0;
    for (int rep = 0; rep < 10; rep++)
        for (int n = 0; n <= 128; n++) {
            int got = lvd_mask_generate(&g, &r, n, m);
            int ones = 0;
            for (int i = 0; i < 256; i++)
                ones += m[i];
            never_more &= got <= n;
            counted &= ones == got;
            if (n >= 25) {
                share += (double)got / n;
                shares++;
            }
        }
    CHECK(never_more && counted);
    CHECK_MSG(share / shares > 0.95, "masks reach %.3f of their target on average", share / shares);
    CHECK(lvd_mask_generate(&g, &r, 0, m) == 0 && lvd_mask_generate(&g, &r, -3, m) == 0);
}

static void test_collate(void)
{
    lvd_mask_gen g;
    lvd_mask_opts o;
    lvd_masks ms;
    lvd_error err;
    CHECK(lvd_mask_gen_for_crops(&g, 224, 14, &err) == 0);
    lvd_mask_opts_defaults(&o);
    CHECK(o.ratio_min == 0.1f && o.ratio_max == 0.5f && o.probability == 0.5f);
    CHECK(lvd_masks_alloc(&ms, 16, 256, &err) == 0); /* batch of 8: 16 global crops */
    /* int(256 * p[i + 1]) for p = linspace(0.1, 0.5, 9): 256 * 0.15 = 38.4 -> 38, ...; the
     * reference's upperbound is their sum. */
    const int cap[8] = {38, 51, 64, 76, 89, 102, 115, 128};
    const int64_t upper = 663;
    int rows_masked[16] = {0};
    int all_ok = 1;
    double masked_share = 0;
    const int batches = 1500;
    for (int b = 0; b < batches; b++) {
        lvd_rng r = lvd_rng_stream(2, 0, (uint64_t)b, 1);
        if (lvd_masks_collate(&g, &o, &r, &ms, &err)) {
            CHECK_MSG(0, "collate: %s", err.msg);
            break;
        }
        int counts[16], nonempty = 0;
        int64_t total = 0;
        for (int i = 0; i < 16; i++) {
            counts[i] = 0;
            for (int t = 0; t < 256; t++)
                counts[i] += ms.masks[i * 256 + t];
            nonempty += counts[i] > 0;
            rows_masked[i] += counts[i] > 0;
            total += counts[i];
            all_ok &= counts[i] <= 128;
        }
        masked_share += total / (8.0 * 256);
        all_ok &= ms.n_masked_crops == 8 && nonempty == 8 && ms.n_masked == total &&
                  ms.upperbound == upper;
        /* Stratified: the i-th smallest count is at most int(256 * p[i + 1]). */
        int sorted[16];
        memcpy(sorted, counts, sizeof sorted);
        for (int i = 1; i < 16; i++)
            for (int j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) {
                int t = sorted[j];
                sorted[j] = sorted[j - 1];
                sorted[j - 1] = t;
            }
        for (int i = 0; i < 8; i++)
            all_ok &= sorted[8 + i] <= cap[i] && sorted[8 + i] >= 20;
        double wsum = 0;
        for (int64_t k = 0; k < ms.n_masked; k++) {
            int64_t idx = ms.indices[k];
            int crop = (int)(idx / 256);
            all_ok &= ms.masks[idx] == 1 && (k == 0 || idx > ms.indices[k - 1]);
            all_ok &= ms.weights[k] == 1.0f / (float)counts[crop];
            wsum += ms.weights[k];
        }
        all_ok &= fabs(wsum - 8.0) < 1e-4;
    }
    CHECK(all_ok);
    masked_share /= batches;
    CHECK_MSG(masked_share > 0.27 && masked_share < 0.31, "masked crops hide %.3f of patches",
              masked_share);
    for (int i = 0; i < 16; i++)
        CHECK_MSG(fabs(rows_masked[i] / (double)batches - 0.5) < 0.05,
                  "crop %d masked in %.3f of batches", i, rows_masked[i] / (double)batches);

    /* Same stream, same masks. */
    lvd_masks again;
    CHECK(lvd_masks_alloc(&again, 16, 256, &err) == 0);
    lvd_rng r1 = lvd_rng_stream(2, 0, 7, 1), r2 = lvd_rng_stream(2, 0, 7, 1);
    CHECK(lvd_masks_collate(&g, &o, &r1, &ms, &err) == 0);
    CHECK(lvd_masks_collate(&g, &o, &r2, &again, &err) == 0);
    CHECK(memcmp(ms.masks, again.masks, 16 * 256) == 0 && ms.n_masked == again.n_masked);
    lvd_masks_free(&again);

    o.probability = 0.0f;
    CHECK(lvd_masks_collate(&g, &o, &r1, &ms, &err) == 0 && ms.n_masked == 0 &&
          ms.n_masked_crops == 0 && ms.upperbound == 0);
    o.probability = 1.0f;
    CHECK(lvd_masks_collate(&g, &o, &r1, &ms, &err) == 0 && ms.n_masked_crops == 16);
    o.probability = 1.5f;
    CHECK(lvd_masks_collate(&g, &o, &r1, &ms, &err) == -1);
    lvd_mask_opts_defaults(&o);
    o.ratio_min = 0.6f;
    CHECK(lvd_masks_collate(&g, &o, &r1, &ms, &err) == -1);
    lvd_masks_free(&ms);

    /* An odd count: int(6 * 0.5) = 3 masked crops; a grid that does not match is refused. */
    lvd_mask_opts_defaults(&o);
    CHECK(lvd_masks_alloc(&ms, 6, 256, &err) == 0);
    CHECK(lvd_masks_collate(&g, &o, &r1, &ms, &err) == 0 && ms.n_masked_crops == 3);
    lvd_masks_free(&ms);
    CHECK(lvd_masks_alloc(&ms, 6, 49, &err) == 0);
    CHECK(lvd_masks_collate(&g, &o, &r1, &ms, &err) == -1);
    lvd_masks_free(&ms);
}

int main(void)
{
    test_for_crops();
    test_blocks();
    test_generate();
    test_collate();
    return check_finish();
}
