/* The pixel operations of train/augment.h: Pillow's colour enhancements, HSV conversions,
 * grayscale and solarize, the flip, torchvision's Gaussian blur and ToTensor + Normalize. The
 * float and double types follow Pillow's C code (src/libImaging/Blend.c, Convert.c) so the bytes
 * match it. */
#include <math.h>
#include <string.h>

#include "train/augment.h"

uint8_t lvd_rgb_luma(const uint8_t *rgb)
{
    return (uint8_t)((rgb[0] * 19595 + rgb[1] * 38470 + rgb[2] * 7471 + 0x8000) >> 16);
}

/* ImagingBlend(a, b, alpha) for one byte: interpolation truncates, extrapolation clips first. */
static uint8_t blend(int a, int b, float alpha)
{
    if (alpha == 0.0f)
        return (uint8_t)a;
    if (alpha == 1.0f)
        return (uint8_t)b;
    float t = (float)a + alpha * (float)(b - a);
    if (alpha >= 0.0f && alpha <= 1.0f)
        return (uint8_t)t;
    if (t <= 0.0f)
        return 0;
    if (t >= 255.0f)
        return 255;
    return (uint8_t)t;
}

void lvd_adjust_brightness(uint8_t *rgb, size_t n, float factor)
{
    for (size_t i = 0; i < 3 * n; i++)
        rgb[i] = blend(0, rgb[i], factor);
}

void lvd_adjust_contrast(uint8_t *rgb, size_t n, float factor)
{
    if (n == 0)
        return;
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += lvd_rgb_luma(rgb + 3 * i);
    /* ImageStat's mean of the L image, then int(mean + 0.5). */
    int mean = (int)((double)sum / (double)n + 0.5);
    for (size_t i = 0; i < 3 * n; i++)
        rgb[i] = blend(mean, rgb[i], factor);
}

void lvd_adjust_saturation(uint8_t *rgb, size_t n, float factor)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t *p = rgb + 3 * i;
        int l = lvd_rgb_luma(p);
        for (int c = 0; c < 3; c++)
            p[c] = blend(l, p[c], factor);
    }
}

static uint8_t clip8(int v)
{
    return v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)v;
}

void lvd_rgb_to_hsv(const uint8_t *in, uint8_t *out)
{
    uint8_t r = in[0], g = in[1], b = in[2];
    uint8_t maxc = r > g ? (r > b ? r : b) : (g > b ? g : b);
    uint8_t minc = r < g ? (r < b ? r : b) : (g < b ? g : b);
    uint8_t uh = 0, us = 0;
    if (minc != maxc) {
        float cr = (float)(maxc - minc);
        float s = cr / (float)maxc;
        float rc = (float)(maxc - r) / cr;
        float gc = (float)(maxc - g) / cr;
        float bc = (float)(maxc - b) / cr;
        float h;
        if (r == maxc)
            h = bc - gc;
        else if (g == maxc)
            h = (float)(2.0 + rc - bc);
        else
            h = (float)(4.0 + gc - rc);
        /* fmod(h / 6.0 + 1.0, 1.0) on a value in (0.8, 2): subtracting 1 is exact there. */
        double hw = h / 6.0 + 1.0;
        h = (float)(hw >= 1.0 ? hw - 1.0 : hw);
        uh = clip8((int)(h * 255.0));
        us = clip8((int)(s * 255.0));
    }
    out[0] = uh;
    out[1] = us;
    out[2] = maxc;
}

/* C's round() (half away from zero) for 0 <= x < 2^31: x + 0.5 is exact or rounds within its
 * binade for x >= 0.5, so truncating it is round(x); below 0.5 the answer is 0 (which also avoids
 * the one double, 0.5 - 2^-54, whose sum with 0.5 rounds up to 1). */
static int round_pos(double x)
{
    return x < 0.5 ? 0 : (int)(x + 0.5);
}

void lvd_hsv_to_rgb(const uint8_t *in, uint8_t *out)
{
    uint8_t h = in[0], s = in[1], v = in[2];
    if (s == 0) {
        out[0] = out[1] = out[2] = v;
        return;
    }
    /* floor(h * 6.0 / 255.0): the quotient is exact when it is an integer and at least 1/255 away
     * from one otherwise, so integer division gives the same. */
    int i = h * 6 / 255;
    float f = (float)((float)h * 6.0 / 255.0 - (float)i);
    float fs = (float)((float)s / 255.0);
    uint8_t p = clip8(round_pos((float)v * (1.0 - fs)));
    /* Each sextant uses p and one of q, t. */
    uint8_t qt = i % 2 ? clip8(round_pos((float)v * (1.0 - fs * f)))
                       : clip8(round_pos((float)v * (1.0 - fs * (1.0 - f))));
    const uint8_t table[6][3] = {{v, qt, p}, {qt, v, p}, {p, v, qt},
                                 {p, qt, v}, {qt, p, v}, {v, p, qt}};
    memcpy(out, table[i % 6], 3);
}

void lvd_adjust_hue(uint8_t *rgb, size_t n, float factor)
{
    /* torchvision adds np.uint8(factor * 255) to the hue byte: the value truncated toward zero,
     * taken modulo 256 (a negative shift wraps), and the byte addition wraps too. */
    int shift = (int)((double)factor * 255.0);
    for (size_t i = 0; i < n; i++) {
        uint8_t hsv[3];
        lvd_rgb_to_hsv(rgb + 3 * i, hsv);
        hsv[0] = (uint8_t)((hsv[0] + shift) & 255);
        lvd_hsv_to_rgb(hsv, rgb + 3 * i);
    }
}

void lvd_grayscale(uint8_t *rgb, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t *p = rgb + 3 * i;
        p[0] = p[1] = p[2] = lvd_rgb_luma(p);
    }
}

void lvd_solarize(uint8_t *rgb, size_t n, int threshold)
{
    for (size_t i = 0; i < 3 * n; i++)
        if (rgb[i] >= threshold)
            rgb[i] = (uint8_t)(255 - rgb[i]);
}

void lvd_hflip(uint8_t *rgb, int width, int height)
{
    for (int y = 0; y < height; y++) {
        uint8_t *row = rgb + (size_t)y * width * 3;
        for (int a = 0, b = width - 1; a < b; a++, b--) {
            for (int c = 0; c < 3; c++) {
                uint8_t t = row[3 * a + c];
                row[3 * a + c] = row[3 * b + c];
                row[3 * b + c] = t;
            }
        }
    }
}

void lvd_gaussian_kernel(int ksize, float sigma, float *k)
{
    int half = ksize / 2;
    float sum = 0.0f;
    for (int i = 0; i < ksize; i++) {
        float x = (float)(i - half) / sigma;
        k[i] = expf(-0.5f * (x * x));
        sum += k[i];
    }
    for (int i = 0; i < ksize; i++)
        k[i] /= sum;
}

/* torch's "reflect" padding: the edge pixel is not repeated (needs pad < n). */
static int reflect(int i, int n)
{
    if (i < 0)
        return -i;
    if (i >= n)
        return 2 * (n - 1) - i;
    return i;
}

size_t lvd_gaussian_blur_tmp(int width, int height, int ksize)
{
    return ((size_t)width * height + 2 * ((size_t)width + (size_t)ksize)) * 3;
}

/* Each output value sums k[t] * input in the order t = 0 .. ksize - 1, starting from 0, in both
 * passes; the loops run over whole rows so the compiler vectorizes them without reordering any
 * one sum. */
void lvd_gaussian_blur(uint8_t *rgb, int width, int height, int ksize, float sigma, float *tmp)
{
    float k[LVD_BLUR_MAX_KERNEL];
    if (ksize > LVD_BLUR_MAX_KERNEL)
        ksize = LVD_BLUR_MAX_KERNEL;
    int half = ksize / 2;
    lvd_gaussian_kernel(ksize, sigma, k);
    size_t stride = (size_t)width * 3;
    float *rows = tmp;                              /* (height, width * 3) horizontal pass */
    float *pad = tmp + (size_t)height * stride;     /* one input row, reflect-padded */
    float *acc = pad + ((size_t)width + ksize) * 3; /* one output row of the vertical pass */
    for (int y = 0; y < height; y++) {
        const uint8_t *row = rgb + (size_t)y * stride;
        for (int x = -half; x < width + half; x++) {
            const uint8_t *p = row + (size_t)reflect(x, width) * 3;
            for (int c = 0; c < 3; c++)
                pad[(size_t)(x + half) * 3 + c] = (float)p[c];
        }
        float *out = rows + (size_t)y * stride;
        memset(out, 0, stride * sizeof *out);
        for (int t = 0; t < ksize; t++) {
            const float *src = pad + (size_t)t * 3;
            for (size_t i = 0; i < stride; i++)
                out[i] += k[t] * src[i];
        }
    }
    for (int y = 0; y < height; y++) {
        memset(acc, 0, stride * sizeof *acc);
        for (int t = 0; t < ksize; t++) {
            const float *src = rows + (size_t)reflect(y + t - half, height) * stride;
            for (size_t i = 0; i < stride; i++)
                acc[i] += k[t] * src[i];
        }
        uint8_t *out = rgb + (size_t)y * stride;
        for (size_t i = 0; i < stride; i++) {
            /* torch.round (half to even) before the cast back to uint8. */
            float r = nearbyintf(acc[i]);
            out[i] = r <= 0.0f ? 0 : r >= 255.0f ? 255 : (uint8_t)r;
        }
    }
}

void lvd_normalize_chw(const uint8_t *rgb, size_t n, const float mean[3], const float std[3],
                       float *chw)
{
    for (int c = 0; c < 3; c++) {
        float *plane = chw + (size_t)c * n;
        for (size_t i = 0; i < n; i++)
            plane[i] = ((float)rgb[3 * i + c] / 255.0f - mean[c]) / std[c];
    }
}
