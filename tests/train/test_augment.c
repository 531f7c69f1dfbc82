/* Multi-crop augmentation (train/augment.h): the counter-based RNG, RandomResizedCrop's boxes and
 * their scale and log-ratio distributions, the colour operations against values worked out with
 * Pillow's formulas, the blur kernel, crop sizes and value ranges on a 500x375 photo-like image
 * and on a 28x28 grayscale one, the per-crop probabilities (released and paper blur), and
 * determinism. */
#include <math.h>

#include "tests/check.h"
#include "train/augment.h"

static void test_rng(void)
{
    lvd_rng a = lvd_rng_stream(7, 1, 2, 3), b = lvd_rng_stream(7, 1, 2, 3);
    lvd_rng c = lvd_rng_stream(7, 2, 1, 3), d = lvd_rng_stream(8, 1, 2, 3);
    int same = 1, differ_c = 0, differ_d = 0;
    for (int i = 0; i < 100; i++) {
        uint64_t x = lvd_rng_u64(&a);
        same &= x == lvd_rng_u64(&b);
        differ_c += x != lvd_rng_u64(&c);
        differ_d += x != lvd_rng_u64(&d);
    }
    CHECK(same && differ_c == 100 && differ_d == 100);
    /* A draw is a function of (key, counter) only. */
    lvd_rng e = lvd_rng_stream(7, 1, 2, 3);
    e.ctr = 41;
    lvd_rng f = lvd_rng_stream(7, 1, 2, 3);
    for (int i = 0; i < 41; i++)
        lvd_rng_u64(&f);
    CHECK(lvd_rng_u64(&e) == lvd_rng_u64(&f));
    lvd_rng s0 = lvd_rng_split(&a, 0), s0b = lvd_rng_split(&e, 0), s1 = lvd_rng_split(&a, 1);
    CHECK(lvd_rng_u64(&s0) == lvd_rng_u64(&s0b));
    CHECK(lvd_rng_u64(&s0) != lvd_rng_u64(&s1));

    lvd_rng r = lvd_rng_stream(1, 0, 0, 0);
    int counts[7] = {0};
    double sum = 0, sumf = 0;
    int in_range = 1;
    const int n = 70000;
    for (int i = 0; i < n; i++) {
        uint64_t k = lvd_rng_below(&r, 7);
        in_range &= k < 7;
        counts[k < 7 ? k : 0]++;
        double u = lvd_rng_uniform(&r);
        float v = lvd_rng_uniformf(&r, 0.6f, 1.4f);
        in_range &= u >= 0.0 && u < 1.0 && v >= 0.6f && v <= 1.4f;
        sum += u;
        sumf += v;
    }
    CHECK(in_range);
    for (int k = 0; k < 7; k++)
        CHECK_MSG(fabs(counts[k] - n / 7.0) < 400, "value %d drawn %d times", k, counts[k]);
    CHECK(fabs(sum / n - 0.5) < 0.005);
    CHECK(fabs(sumf / n - 1.0) < 0.005);
}

/* Boxes always inside the image; for a large image where no attempt is rejected, the area share
 * is uniform in scale and log(w / h) uniform in log(ratio). */
static void test_rrc_distribution(void)
{
    const float scale[2] = {0.05f, 0.32f};
    const double ratio[2] = {3.0 / 4.0, 4.0 / 3.0};
    lvd_rng r = lvd_rng_stream(3, 0, 0, 0);
    const int n = 20000, W = 1000, H = 1000;
    double s_sum = 0, lr_sum = 0, s_min = 1, s_max = 0, lr_min = 1, lr_max = -1;
    int inside = 1, low_quarter = 0, low_scale = 0;
    double lo = log(ratio[0]), hi = log(ratio[1]);
    for (int i = 0; i < n; i++) {
        lvd_crop_box b = lvd_rrc_params(&r, W, H, scale, ratio);
        inside &= b.top >= 0 && b.left >= 0 && b.height > 0 && b.width > 0 &&
                  b.top + b.height <= H && b.left + b.width <= W;
        double s = (double)b.width * b.height / ((double)W * H);
        double lr = log((double)b.width / b.height);
        s_sum += s;
        lr_sum += lr;
        s_min = fmin(s_min, s);
        s_max = fmax(s_max, s);
        lr_min = fmin(lr_min, lr);
        lr_max = fmax(lr_max, lr);
        low_quarter += lr < lo + (hi - lo) / 4;
        low_scale += s < 0.05 + 0.27 / 4;
    }
    CHECK(inside);
    CHECK_MSG(fabs(s_sum / n - 0.185) < 0.003, "mean area share %.4f", s_sum / n);
    CHECK_MSG(s_min > 0.049 && s_max < 0.321, "area share range %.4f .. %.4f", s_min, s_max);
    CHECK_MSG(fabs(lr_sum / n) < 0.006, "mean log ratio %.4f", lr_sum / n);
    CHECK_MSG(lr_min > lo - 0.01 && lr_max < hi + 0.01 && lr_min < lo + 0.01 && lr_max > hi - 0.01,
              "log ratio range %.4f .. %.4f", lr_min, lr_max);
    CHECK_MSG(fabs(low_quarter / (double)n - 0.25) < 0.015, "low quarter share %.4f",
              low_quarter / (double)n);
    CHECK_MSG(fabs(low_scale / (double)n - 0.25) < 0.015, "low scale share %.4f",
              low_scale / (double)n);

    /* The top-left corner is uniform over the free range: its mean sits in the middle. */
    double top_share = 0;
    for (int i = 0; i < 5000; i++) {
        lvd_crop_box b = lvd_rrc_params(&r, W, H, scale, ratio);
        top_share += (double)b.top / (H - b.height);
    }
    CHECK_MSG(fabs(top_share / 5000 - 0.5) < 0.02, "mean relative top %.3f", top_share / 5000);

    /* The fallback: every attempt rejected, then the centred crop with the clamped ratio. */
    const float gscale[2] = {0.32f, 1.0f};
    lvd_crop_box tall = lvd_rrc_params(&r, 1, 10, gscale, ratio);
    CHECK(tall.width == 1 && tall.height == 1 && tall.top == 4 && tall.left == 0);
    lvd_crop_box wide = lvd_rrc_params(&r, 100, 10, gscale, ratio);
    CHECK(wide.height == 10 && wide.width == 13 && wide.top == 0 && wide.left == 43);
}

/* Four pixels and the values Pillow 9.4 gives (ImageEnhance.*.enhance with the float32 factor,
 * convert("L"), convert("HSV"), ImageOps.solarize). By hand: L(100, 200, 50) = (100 * 19595 +
 * 200 * 38470 + 50 * 7471 + 32768) >> 16 = 153; the mean L is (153 + 104 + 17 + 87) / 4 = 90.25,
 * so contrast blends towards 90: 90 + 0.6 * (100 - 90) = 96; brightness 1.4 on 200 clips to 255;
 * HSV of (100, 200, 50): s = 150 / 200 * 255 = 191.25 -> 191, h = (2 + 100/150 - 1) / 6 * 255 =
 * 70.8 -> 70. */
static const uint8_t px4[12] = {100, 200, 50, 0, 128, 255, 17, 17, 17, 250, 3, 90};

static void expect(const char *what, const uint8_t *got, const uint8_t *want, int n)
{
    for (int i = 0; i < n; i++)
        CHECK_MSG(got[i] == want[i], "%s: byte %d is %d, want %d", what, i, got[i], want[i]);
}

static void test_color(void)
{
    uint8_t p[12];
    uint8_t l[4];
    for (int i = 0; i < 4; i++)
        l[i] = lvd_rgb_luma(px4 + 3 * i);
    expect("luma", l, (const uint8_t[]){153, 104, 17, 87}, 4);

    memcpy(p, px4, 12);
    lvd_adjust_brightness(p, 4, 0.77f);
    expect("brightness 0.77", p, (const uint8_t[]){77, 154, 38, 0, 98, 196, 13, 13, 13, 192, 2, 69},
           12);
    memcpy(p, px4, 12);
    lvd_adjust_brightness(p, 4, 1.4f);
    expect("brightness 1.4", p,
           (const uint8_t[]){140, 255, 70, 0, 179, 255, 23, 23, 23, 255, 4, 126}, 12);
    memcpy(p, px4, 12);
    lvd_adjust_contrast(p, 4, 0.6f);
    expect("contrast 0.6", p, (const uint8_t[]){96, 156, 66, 35, 112, 189, 46, 46, 46, 186, 37, 90},
           12);
    memcpy(p, px4, 12);
    lvd_adjust_contrast(p, 4, 1.4f);
    expect("contrast 1.4", p, (const uint8_t[]){104, 244, 34, 0, 143, 255, 0, 0, 0, 255, 0, 90},
           12);
    memcpy(p, px4, 12);
    lvd_adjust_saturation(p, 4, 0.8f);
    expect("saturation 0.8", p,
           (const uint8_t[]){110, 190, 70, 20, 123, 224, 17, 17, 17, 217, 19, 89}, 12);
    memcpy(p, px4, 12);
    lvd_adjust_saturation(p, 4, 1.2f);
    expect("saturation 1.2", p, (const uint8_t[]){89, 209, 29, 0, 132, 255, 17, 17, 17, 255, 0, 90},
           12);
    memcpy(p, px4, 12);
    lvd_grayscale(p, 4);
    expect("grayscale", p, (const uint8_t[]){153, 153, 153, 104, 104, 104, 17, 17, 17, 87, 87, 87},
           12);
    memcpy(p, px4, 12);
    lvd_solarize(p, 4, 128);
    expect("solarize", p, (const uint8_t[]){100, 55, 50, 0, 127, 0, 17, 17, 17, 5, 3, 90}, 12);

    uint8_t hsv[12], rt[12];
    for (int i = 0; i < 4; i++) {
        lvd_rgb_to_hsv(px4 + 3 * i, hsv + 3 * i);
        lvd_hsv_to_rgb(hsv + 3 * i, rt + 3 * i);
    }
    expect("hsv", hsv, (const uint8_t[]){70, 191, 200, 148, 255, 255, 0, 0, 17, 240, 251, 250}, 12);
    /* Pillow's round trip: the hue byte quantizes, so 128 comes back as 132. */
    expect("hsv round trip", rt,
           (const uint8_t[]){103, 200, 50, 0, 132, 255, 17, 17, 17, 250, 4, 91}, 12);
    memcpy(p, px4, 12);
    lvd_adjust_hue(p, 4, 0.0f);
    expect("hue 0", p, rt, 12);

    /* Every colour: the round trip stays within a few levels, a gray stays put, and a hue shift
     * moves the hue byte by (int)(f * 255) modulo 256. */
    int worst = 0, gray_ok = 1, shift_ok = 1;
    for (int r = 0; r < 256; r += 5)
        for (int g = 0; g < 256; g += 3)
            for (int b = 0; b < 256; b += 7) {
                uint8_t c[3] = {(uint8_t)r, (uint8_t)g, (uint8_t)b}, h[3], back[3];
                lvd_rgb_to_hsv(c, h);
                lvd_hsv_to_rgb(h, back);
                for (int k = 0; k < 3; k++)
                    worst = abs(back[k] - c[k]) > worst ? abs(back[k] - c[k]) : worst;
                uint8_t s[3] = {(uint8_t)r, (uint8_t)g, (uint8_t)b}, hs[3];
                lvd_adjust_hue(s, 1, -0.1f);
                lvd_rgb_to_hsv(s, hs);
                if (h[1] > 200 && h[2] > 200) /* saturated and bright: the hue survives */
                    shift_ok &= abs(((h[0] + 231) & 255) - hs[0]) <= 2 ||
                                abs(((h[0] + 231) & 255) - hs[0]) >= 254;
            }
    for (int v = 0; v < 256; v++) {
        uint8_t c[3] = {(uint8_t)v, (uint8_t)v, (uint8_t)v};
        lvd_adjust_hue(c, 1, 0.1f);
        gray_ok &= c[0] == v && c[1] == v && c[2] == v;
    }
    CHECK_MSG(worst <= 6, "HSV round trip off by %d levels", worst);
    CHECK(gray_ok && shift_ok);
}

static void test_blur(void)
{
    float k[9];
    const float sigmas[4] = {0.1f, 0.5f, 1.0f, 2.0f};
    for (int s = 0; s < 4; s++) {
        lvd_gaussian_kernel(9, sigmas[s], k);
        double sum = 0;
        for (int i = 0; i < 9; i++)
            sum += k[i];
        CHECK_MSG(fabs(sum - 1.0) < 1e-6, "sigma %.1f: kernel sums to %.8f", sigmas[s], sum);
        for (int i = 0; i < 4; i++)
            CHECK(k[i] == k[8 - i] && k[i] <= k[i + 1]);
    }
    lvd_gaussian_kernel(9, 0.1f, k);
    CHECK(k[4] > 0.99999f);
    /* sigma 1: exp(-x^2 / 2) / sum, with sum = 1 + 2 (e^-0.5 + e^-2 + e^-4.5 + e^-8). */
    lvd_gaussian_kernel(9, 1.0f, k);
    double z = 1 + 2 * (exp(-0.5) + exp(-2.0) + exp(-4.5) + exp(-8.0));
    for (int i = 0; i < 9; i++)
        CHECK(fabs(k[i] - exp(-0.5 * (i - 4) * (i - 4)) / z) < 1e-6);

    /* A constant image stays constant; a single bright pixel spreads with the kernel's weights
     * (reflect padding: nothing is lost at the borders, the sum is kept). */
    enum { W = 13, H = 11 };
    uint8_t img[W * H * 3];
    float tmp[(W * H + 2 * (W + 9)) * 3];
    memset(img, 77, sizeof img);
    lvd_gaussian_blur(img, W, H, 9, 1.7f, tmp);
    int constant = 1;
    for (int i = 0; i < W * H * 3; i++)
        constant &= img[i] == 77;
    CHECK(constant);
    memset(img, 0, sizeof img);
    img[(5 * W + 6) * 3] = 255;
    lvd_gaussian_blur(img, W, H, 9, 1.0f, tmp);
    lvd_gaussian_kernel(9, 1.0f, k);
    CHECK(img[(5 * W + 6) * 3] == (uint8_t)nearbyintf(255.0f * k[4] * k[4]));
    CHECK(img[(5 * W + 7) * 3] == (uint8_t)nearbyintf(255.0f * k[4] * k[5]));
    CHECK(img[(5 * W + 6) * 3 + 1] == 0);
}

static void make_photo(lvd_image *img, int w, int h)
{
    img->width = w;
    img->height = h;
    img->rgb = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = img->rgb + ((size_t)y * w + x) * 3;
            p[0] = (uint8_t)(x * 255 / w);
            p[1] = (uint8_t)(y * 255 / h);
            p[2] = (uint8_t)((x * 7 + y * 13) % 256);
        }
}

/* Back from a normalized value to the byte it came from. */
static int denorm(float v, int c, const lvd_aug_config *a)
{
    return (int)lrintf((v * a->std[c] + a->mean[c]) * 255.0f);
}

static void test_crops(void)
{
    lvd_aug_config c;
    lvd_aug_defaults(&c);
    lvd_error err;
    lvd_augmenter *a;
    CHECK(lvd_augmenter_new(&c, &a, &err) == 0);
    lvd_image photo;
    make_photo(&photo, 500, 375);
    size_t gn = (size_t)3 * 224 * 224, ln = (size_t)3 * 96 * 96;
    float *g[2], *l[8];
    for (int i = 0; i < 2; i++)
        g[i] = malloc(gn * sizeof(float));
    for (int i = 0; i < 8; i++)
        l[i] = malloc(ln * sizeof(float));
    lvd_crop_record rec[10];
    lvd_rng r = lvd_rng_stream(11, 0, 5, 0);
    CHECK(lvd_augment(a, &photo, &r, g, l, rec, &err) == 0);
    int ok = 1;
    for (int k = 0; k < 10; k++) {
        const float *out = k < 2 ? g[k] : l[k - 2];
        size_t n = k < 2 ? gn : ln;
        for (size_t i = 0; i < n; i++) {
            int c3 = (int)(i / (n / 3));
            int v = denorm(out[i], c3, &c);
            ok &= isfinite(out[i]) && v >= 0 && v <= 255;
        }
        ok &= rec[k].box.width > 0 && rec[k].box.left + rec[k].box.width <= 500 &&
              rec[k].box.top + rec[k].box.height <= 375;
    }
    CHECK(ok);
    /* Deterministic: the same stream gives the same bytes; another position does not. */
    float *g2[2] = {malloc(gn * sizeof(float)), malloc(gn * sizeof(float))};
    CHECK(lvd_augment(a, &photo, &r, g2, l, NULL, &err) == 0);
    CHECK(memcmp(g[0], g2[0], gn * sizeof(float)) == 0 &&
          memcmp(g[1], g2[1], gn * sizeof(float)) == 0);
    lvd_rng r2 = lvd_rng_stream(11, 0, 6, 0);
    CHECK(lvd_augment(a, &photo, &r2, g2, l, NULL, &err) == 0);
    CHECK(memcmp(g[0], g2[0], gn * sizeof(float)) != 0);
    /* A crop without colour changes is the resized box (flipped when drawn so), normalized: find
     * some and recompute them from the record. */
    int found = 0;
    for (uint64_t pos = 0; pos < 64 && found < 3; pos++) {
        lvd_rng rp = lvd_rng_stream(11, 0, pos, 0);
        CHECK(lvd_augment(a, &photo, &rp, g, l, rec, &err) == 0);
        for (int k = 0; k < 10; k++) {
            const lvd_crop_record *q = &rec[k];
            if (q->jittered || q->gray || q->blur_sigma > 0.0f || q->solarized)
                continue;
            int side = k < 2 ? 224 : 96;
            lvd_image box = {q->box.width, q->box.height,
                             malloc((size_t)q->box.width * q->box.height * 3)},
                      sized;
            for (int y = 0; y < q->box.height; y++)
                memcpy(box.rgb + (size_t)y * q->box.width * 3,
                       photo.rgb + ((size_t)(q->box.top + y) * 500 + q->box.left) * 3,
                       (size_t)q->box.width * 3);
            CHECK(lvd_image_resize(&box, side, side, &sized, &err) == 0);
            if (q->flipped)
                lvd_hflip(sized.rgb, side, side);
            float *want = malloc((size_t)3 * side * side * sizeof(float));
            lvd_normalize_chw(sized.rgb, (size_t)side * side, c.mean, c.std, want);
            CHECK_MSG(memcmp(want, k < 2 ? g[k] : l[k - 2], (size_t)3 * side * side * 4) == 0,
                      "crop %d at position %d differs from its recomputation", k, (int)pos);
            free(want);
            lvd_image_free(&sized);
            free(box.rgb);
            found++;
        }
    }
    CHECK(found >= 3);
    lvd_image empty = {0, 0, NULL};
    CHECK(lvd_augment(a, &empty, &r, g, l, NULL, &err) == -1);
    for (int i = 0; i < 2; i++)
        free(g[i]), free(g2[i]);
    for (int i = 0; i < 8; i++)
        free(l[i]);
    lvd_image_free(&photo);
    lvd_augmenter_free(a);

    /* Bad configurations are refused. */
    lvd_aug_config bad = c;
    bad.local_size = 4; /* a blurred local crop needs a side above 4 */
    CHECK(lvd_aug_check(&bad, &err) == -1);
    bad = c;
    bad.global_scale[0] = 0.0f;
    CHECK(lvd_aug_check(&bad, &err) == -1);
    bad = c;
    bad.hue = 0.6f;
    CHECK(lvd_aug_check(&bad, &err) == -1);
    bad = c;
    bad.blur_kernel = 8;
    CHECK(lvd_aug_check(&bad, &err) == -1);
    bad = c;
    bad.gray_p = 1.5f;
    CHECK(lvd_aug_check(&bad, &err) == -1);
}

/* Fashion-MNIST-sized grayscale input (RGB with equal channels, as decoded): 2 global crops of 28
 * and 6 local crops of 12; every crop stays gray whatever the colour operations did. Over many
 * images the per-crop probabilities match the configuration. */
static void gray_run(lvd_blur_mode mode, int n_images, double blur_rate[3])
{
    lvd_aug_config c;
    lvd_aug_defaults(&c);
    lvd_aug_set_blur(&c, mode);
    c.global_size = 28;
    c.local_size = 12;
    c.n_local = 6;
    lvd_error err;
    lvd_augmenter *a;
    CHECK(lvd_augmenter_new(&c, &a, &err) == 0);
    lvd_image img = {28, 28, malloc(28 * 28 * 3)};
    for (int i = 0; i < 28 * 28; i++)
        memset(img.rgb + 3 * i, (i * 37 + (i / 28) * 11) % 256, 3);
    float gbuf[2][3 * 28 * 28], lbuf[6][3 * 12 * 12];
    float *g[2] = {gbuf[0], gbuf[1]}, *l[6];
    for (int i = 0; i < 6; i++)
        l[i] = lbuf[i];
    lvd_crop_record rec[8];
    int flips = 0, jit = 0, gray = 0, sol[3] = {0}, blur[3] = {0}, crops[3] = {0};
    int gray_out = 1, perm_ok = 1, factors_ok = 1, sizes_ok = 1;
    for (int im = 0; im < n_images; im++) {
        lvd_rng r = lvd_rng_stream(5, 1, (uint64_t)im, 0);
        if (lvd_augment(a, &img, &r, g, l, rec, &err) != 0) {
            CHECK_MSG(0, "augment failed: %s", err.msg);
            break;
        }
        for (int k = 0; k < 8; k++) {
            int kind = k < 2 ? k : 2;
            int side = k < 2 ? 28 : 12;
            const float *out = k < 2 ? g[k] : l[k - 2];
            size_t plane = (size_t)side * side;
            for (size_t i = 0; i < plane; i++)
                gray_out &= denorm(out[i], 0, &c) == denorm(out[plane + i], 1, &c) &&
                            denorm(out[i], 0, &c) == denorm(out[2 * plane + i], 2, &c);
            const lvd_crop_record *q = &rec[k];
            sizes_ok &= q->box.width >= 1 && q->box.width <= 28 && q->box.height <= 28;
            crops[kind]++;
            flips += q->flipped;
            jit += q->jittered;
            gray += q->gray;
            sol[kind] += q->solarized;
            blur[kind] += q->blur_sigma > 0.0f;
            if (q->blur_sigma > 0.0f)
                factors_ok &= q->blur_sigma >= 0.1f && q->blur_sigma <= 2.0f;
            if (q->jittered) {
                int seen = 0;
                for (int t = 0; t < 4; t++)
                    seen |= 1 << q->order[t];
                perm_ok &= seen == 15;
                factors_ok &= q->factors[0] >= 0.6f && q->factors[0] <= 1.4f &&
                              q->factors[1] >= 0.6f && q->factors[1] <= 1.4f &&
                              q->factors[2] >= 0.8f && q->factors[2] <= 1.2f &&
                              q->factors[3] >= -0.1f && q->factors[3] <= 0.1f;
            }
        }
    }
    CHECK(gray_out && perm_ok && factors_ok && sizes_ok);
    int total = crops[0] + crops[1] + crops[2];
    CHECK_MSG(fabs(flips / (double)total - 0.5) < 0.03, "flip rate %.3f", flips / (double)total);
    CHECK_MSG(fabs(jit / (double)total - 0.8) < 0.03, "jitter rate %.3f", jit / (double)total);
    CHECK_MSG(fabs(gray / (double)total - 0.2) < 0.03, "gray rate %.3f", gray / (double)total);
    CHECK_MSG(sol[0] == 0 && sol[2] == 0 && fabs(sol[1] / (double)crops[1] - 0.2) < 0.04,
              "solarize counts %d %d %d", sol[0], sol[1], sol[2]);
    for (int k = 0; k < 3; k++)
        blur_rate[k] = blur[k] / (double)crops[k];
    lvd_augmenter_free(a);
    free(img.rgb);
}

static void test_gray_and_rates(void)
{
    double rel[3], paper[3];
    gray_run(LVD_BLUR_RELEASED, 1500, rel);
    gray_run(LVD_BLUR_PAPER, 600, paper);
    CHECK_MSG(rel[0] < 0.001 && fabs(rel[1] - 0.9) < 0.03 && fabs(rel[2] - 0.5) < 0.03,
              "released blur rates %.3f %.3f %.3f", rel[0], rel[1], rel[2]);
    CHECK_MSG(paper[0] == 1.0 && fabs(paper[1] - 0.1) < 0.04 && fabs(paper[2] - 0.5) < 0.04,
              "paper blur rates %.3f %.3f %.3f", paper[0], paper[1], paper[2]);
}

/* --blur none, --jitter 0, --solarize 0: no crop is blurred, jittered or solarized (a probability
 * of 0 never applies, augment.h), and the sigma range is only checked, not used. */
static void test_off(void)
{
    lvd_aug_config c;
    lvd_aug_defaults(&c);
    lvd_aug_set_blur(&c, LVD_BLUR_NONE);
    c.jitter_p = 0.0f;
    c.solarize_p = 0.0f;
    c.global_size = 28;
    c.local_size = 12;
    c.n_local = 2;
    CHECK(c.blur_p[0] == 0.0f && c.blur_p[1] == 0.0f && c.blur_p[2] == 0.0f);
    lvd_error err;
    lvd_augmenter *a;
    CHECK(lvd_augmenter_new(&c, &a, &err) == 0);
    lvd_image img = {28, 28, malloc(28 * 28 * 3)};
    for (int i = 0; i < 28 * 28 * 3; i++)
        img.rgb[i] = (uint8_t)(i * 7);
    float gbuf[2][3 * 28 * 28], lbuf[2][3 * 12 * 12];
    float *g[2] = {gbuf[0], gbuf[1]}, *l[2] = {lbuf[0], lbuf[1]};
    lvd_crop_record rec[4];
    int applied = 0;
    for (int im = 0; im < 300; im++) {
        lvd_rng r = lvd_rng_stream(9, 0, (uint64_t)im, 0);
        CHECK(lvd_augment(a, &img, &r, g, l, rec, &err) == 0);
        for (int k = 0; k < 4; k++)
            applied += rec[k].blur_sigma > 0.0f || rec[k].jittered || rec[k].solarized;
    }
    CHECK_MSG(applied == 0, "%d crops blurred, jittered or solarized", applied);
    lvd_augmenter_free(a);
    free(img.rgb);
}

/* A crop of the whole image at its own size, no flip and no colour changes, is the image itself
 * normalized: ToTensor's / 255 then (x - mean) / std in float32. */
static void test_normalize(void)
{
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    const uint8_t px[6] = {0, 128, 255, 10, 20, 30};
    float chw[6];
    lvd_normalize_chw(px, 2, mean, std, chw);
    CHECK(chw[0] == (0.0f - 0.485f) / 0.229f);
    CHECK(chw[1] == (10.0f / 255.0f - 0.485f) / 0.229f);
    CHECK(chw[2] == (128.0f / 255.0f - 0.456f) / 0.224f);
    CHECK(chw[5] == (30.0f / 255.0f - 0.406f) / 0.225f);
    CHECK(chw[4] == (255.0f / 255.0f - 0.406f) / 0.225f);
}

int main(void)
{
    test_rng();
    test_rrc_distribution();
    test_color();
    test_blur();
    test_crops();
    test_gray_and_rates();
    test_off();
    test_normalize();
    return check_finish();
}
