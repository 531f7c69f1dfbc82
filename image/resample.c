/* lvd_image_resize of image/image.h and its windowed form: PIL's antialiased bicubic resampling
 * (Pillow's ImagingResample for 8-bit images): separable, filter support 2 * scale when
 * downscaling, a = -0.5, weights normalized per output pixel and stored in fixed point with 22
 * fractional bits; horizontal pass first (rounded and clipped to 8 bits), then vertical; a pass
 * whose size does not change is skipped. Integer sums are exact, so only the coefficient
 * computation has to follow Pillow's operation order, which it does. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "image/internal.h"

#define PRECISION_BITS (32 - 8 - 2)

typedef struct resample_axis {
    int ksize;      /* coefficients stored per output pixel */
    int *bounds;    /* per output pixel: first input index, number of inputs */
    int32_t *coeff; /* ksize per output pixel, fixed point */
} resample_axis;

static double bicubic(double x)
{
    const double a = -0.5;
    if (x < 0.0)
        x = -x;
    if (x < 1.0)
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0)
        return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

static int32_t to_fixed(double w)
{
    double v = w * (1 << PRECISION_BITS);
    return (int32_t)(w < 0 ? -0.5 + v : 0.5 + v);
}

static void axis_free(resample_axis *ax)
{
    free(ax->bounds);
    free(ax->coeff);
    memset(ax, 0, sizeof *ax);
}

/* Coefficients for output pixels first .. first+count-1 of an in_size -> out_size resampling
 * (Pillow's precompute_coeffs and normalize_coeffs_8bpc). */
static int axis_init(resample_axis *ax, int in_size, int out_size, int first, int count,
                     lvd_error *err)
{
    double scale = (double)in_size / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 2.0 * filterscale;
    /* (int)(center + support + 0.5) - (int)(center - support + 0.5) <= ksize, so taps fit. */
    int ksize = (int)ceil(support) * 2 + 1;
    ax->ksize = ksize;
    ax->bounds = malloc((size_t)count * 2 * sizeof *ax->bounds);
    ax->coeff = calloc((size_t)count * (size_t)ksize, sizeof *ax->coeff);
    double *w = malloc((size_t)ksize * sizeof *w);
    if (!ax->bounds || !ax->coeff || !w) {
        free(w);
        axis_free(ax);
        return lvd_fail(err, "resize: out of memory for %d x %d coefficients", count, ksize);
    }
    double ss = 1.0 / filterscale;
    for (int i = 0; i < count; i++) {
        int xx = first + i;
        double center = (xx + 0.5) * scale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0)
            xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size)
            xmax = in_size;
        xmax -= xmin;
        double ww = 0.0;
        for (int x = 0; x < xmax; x++) {
            w[x] = bicubic((x + xmin - center + 0.5) * ss);
            ww += w[x];
        }
        int32_t *k = ax->coeff + (size_t)i * ksize;
        for (int x = 0; x < xmax; x++)
            k[x] = to_fixed(ww != 0.0 ? w[x] / ww : w[x]);
        ax->bounds[2 * i] = xmin;
        ax->bounds[2 * i + 1] = xmax;
    }
    free(w);
    return 0;
}

static uint8_t clip8(int32_t v)
{
    if (v < 0)
        return 0;
    v >>= PRECISION_BITS;
    return v > 255 ? 255 : (uint8_t)v;
}

/* Resamples `rows` rows of src (stride in bytes) along x into dst (count columns, packed). */
static void horizontal_pass(const uint8_t *src, size_t stride, int rows, const resample_axis *ax,
                            int count, uint8_t *dst)
{
    for (int y = 0; y < rows; y++) {
        const uint8_t *s = src + (size_t)y * stride;
        uint8_t *d = dst + (size_t)y * count * 3;
        for (int xx = 0; xx < count; xx++) {
            const int32_t *k = ax->coeff + (size_t)xx * ax->ksize;
            const uint8_t *p = s + (size_t)ax->bounds[2 * xx] * 3;
            int n = ax->bounds[2 * xx + 1];
            int32_t s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
            for (int x = 0; x < n; x++, p += 3) {
                s0 += p[0] * k[x];
                s1 += p[1] * k[x];
                s2 += p[2] * k[x];
            }
            d[3 * xx] = clip8(s0);
            d[3 * xx + 1] = clip8(s1);
            d[3 * xx + 2] = clip8(s2);
        }
    }
}

/* Resamples along y: output row i reads src rows bounds[2i] - row0 ...; width bytes per row are
 * used from each src row (stride in bytes). acc holds `width` sums. The AVX2 clone multiplies
 * 8 int32 lanes at once (baseline x86-64 has no 32-bit vector multiply); results are identical
 * since all sums are exact integers. */
__attribute__((target_clones("avx2", "default"))) static void
vertical_pass(const uint8_t *src, size_t stride, int row0, const resample_axis *ax, int count,
              size_t width, int32_t *acc, uint8_t *dst)
{
    for (int yy = 0; yy < count; yy++) {
        const int32_t *k = ax->coeff + (size_t)yy * ax->ksize;
        int ymin = ax->bounds[2 * yy] - row0;
        int n = ax->bounds[2 * yy + 1];
        for (size_t i = 0; i < width; i++)
            acc[i] = 1 << (PRECISION_BITS - 1);
        for (int y = 0; y < n; y++) {
            const uint8_t *s = src + (size_t)(ymin + y) * stride;
            int32_t kv = k[y];
            for (size_t i = 0; i < width; i++)
                acc[i] += s[i] * kv;
        }
        uint8_t *d = dst + (size_t)yy * width;
        for (size_t i = 0; i < width; i++)
            d[i] = clip8(acc[i]);
    }
}

/* The passes over a window, once the axes are ready (NULL: that pass is skipped). */
static int resample_axes(const lvd_image *in, const resample_axis *hx, const resample_axis *vy,
                         int x0, int y0, int cw, int ch, uint8_t *dst, lvd_error *err)
{
    size_t in_stride = (size_t)in->width * 3;
    size_t out_row = (size_t)cw * 3;
    if (!hx && !vy) {
        for (int y = 0; y < ch; y++)
            memcpy(dst + (size_t)y * out_row, in->rgb + (size_t)(y0 + y) * in_stride + x0 * 3,
                   out_row);
        return 0;
    }
    /* The horizontal pass produces only the input rows the vertical pass reads. */
    int first = vy ? vy->bounds[0] : y0;
    int last = vy ? vy->bounds[2 * (ch - 1)] + vy->bounds[2 * (ch - 1) + 1] : y0 + ch;
    uint8_t *tmp = hx && vy ? malloc((size_t)(last - first) * out_row) : NULL;
    int32_t *acc = vy ? malloc(out_row * sizeof *acc) : NULL;
    if ((hx && vy && !tmp) || (vy && !acc)) {
        free(tmp);
        free(acc);
        return lvd_fail(err, "resize: out of memory");
    }
    const uint8_t *src = in->rgb + (size_t)x0 * 3;
    size_t stride = in_stride;
    int row0 = 0;
    if (hx) {
        horizontal_pass(in->rgb + (size_t)first * in_stride, in_stride, last - first, hx, cw,
                        vy ? tmp : dst);
        src = tmp;
        stride = out_row;
        row0 = first;
    }
    if (vy)
        vertical_pass(src, stride, row0, vy, ch, out_row, acc, dst);
    free(tmp);
    free(acc);
    return 0;
}

int lvd_image_resample_window(const lvd_image *in, int out_w, int out_h, int x0, int y0, int cw,
                              int ch, uint8_t *dst, lvd_error *err)
{
    if (!in->rgb || in->width <= 0 || in->height <= 0)
        return lvd_fail(err, "resize: empty input image");
    if (out_w <= 0 || out_h <= 0 || cw <= 0 || ch <= 0 || x0 < 0 || y0 < 0 || x0 > out_w - cw ||
        y0 > out_h - ch)
        return lvd_fail(err, "resize: invalid target %dx%d (window %dx%d at %d,%d)", out_w, out_h,
                        cw, ch, x0, y0);
    resample_axis hx = {0}, vy = {0};
    int need_h = out_w != in->width, need_v = out_h != in->height;
    if (need_h && axis_init(&hx, in->width, out_w, x0, cw, err))
        return -1;
    if (need_v && axis_init(&vy, in->height, out_h, y0, ch, err)) {
        axis_free(&hx);
        return -1;
    }
    int rc = resample_axes(in, need_h ? &hx : NULL, need_v ? &vy : NULL, x0, y0, cw, ch, dst, err);
    axis_free(&hx);
    axis_free(&vy);
    return rc;
}

int lvd_image_resize(const lvd_image *in, int width, int height, lvd_image *out, lvd_error *err)
{
    memset(out, 0, sizeof *out);
    if (width <= 0 || height <= 0 || (size_t)width * (size_t)height > SIZE_MAX / 3)
        return lvd_fail(err, "resize: invalid target size %dx%d", width, height);
    uint8_t *dst = malloc((size_t)width * (size_t)height * 3);
    if (!dst)
        return lvd_fail(err, "resize: out of memory for %dx%d pixels", width, height);
    if (lvd_image_resample_window(in, width, height, 0, 0, width, height, dst, err)) {
        free(dst);
        return -1;
    }
    out->width = width;
    out->height = height;
    out->rgb = dst;
    return 0;
}
