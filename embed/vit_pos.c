/* Positional embedding resized to a patch grid, as torch.nn.functional.interpolate does it in
 * the official models: without registers bicubic (a = -0.75, clamped borders, align_corners
 * False) driven by the scale factor (out + 0.1) / in; with registers antialiased bicubic
 * (a = -0.5, support widened by the downscale factor, normalized weights) to the exact size.
 * Both are separable: one (out, in) weight matrix per axis (embed/vit_layers.h exposes them, the
 * resize and its transpose for the training path); vit_pos_embed caches resized tables. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "embed/vit_layers.h"
#include "embed/vit_model.h"

static float cubic_near(float x, float a) /* |x| <= 1 */
{
    return ((a + 2.0f) * x - (a + 3.0f)) * x * x + 1.0f;
}

static float cubic_far(float x, float a) /* 1 < |x| < 2 */
{
    return ((a * x - 5.0f * a) * x + 8.0f * a) * x - 4.0f * a;
}

/* Row o of the bicubic matrix (out, in) for scale factor sf: 4 taps, clamped at the borders. */
static void bicubic_row(float *row, int o, int in, double sf)
{
    const float a = -0.75f;
    float scale = (float)(1.0 / sf);
    float real = scale * ((float)o + 0.5f) - 0.5f;
    int i0 = (int)floorf(real);
    i0 = i0 > in - 1 ? in - 1 : i0;
    float t = real - (float)i0;
    t = t < 0.0f ? 0.0f : (t > 1.0f ? 1.0f : t);
    float w[4] = {cubic_far(t + 1.0f, a), cubic_near(t, a), cubic_near(1.0f - t, a),
                  cubic_far(2.0f - t, a)};
    for (int j = 0; j < 4; j++) {
        int idx = i0 - 1 + j;
        idx = idx < 0 ? 0 : (idx > in - 1 ? in - 1 : idx);
        row[idx] += w[j];
    }
}

static float aa_filter(float x)
{
    const float a = -0.5f;
    x = fabsf(x);
    if (x < 1.0f) {
        return cubic_near(x, a);
    }
    return x < 2.0f ? cubic_far(x, a) : 0.0f;
}

/* Row o of the antialiased bicubic matrix (out, in), normalized to sum 1. */
static void antialias_row(float *row, int o, int in, int out)
{
    float scale = (float)in / (float)out;
    float support = scale >= 1.0f ? 2.0f * scale : 2.0f;
    float invscale = scale >= 1.0f ? 1.0f / scale : 1.0f;
    float center = scale * ((float)o + 0.5f);
    int lo = (int)(center - support + 0.5f);
    int hi = (int)(center + support + 0.5f);
    lo = lo < 0 ? 0 : lo;
    hi = hi > in ? in : hi;
    float total = 0.0f;
    for (int j = lo; j < hi; j++) {
        row[j] = aa_filter(((float)j - center + 0.5f) * invscale);
        total += row[j];
    }
    for (int j = lo; total != 0.0f && j < hi; j++) {
        row[j] /= total;
    }
}

void lvd_vit_pos_axis_matrix(float *mat, int in, int out, int antialias)
{
    memset(mat, 0, sizeof(float) * (size_t)in * (size_t)out);
    for (int o = 0; o < out; o++) {
        if (antialias) {
            antialias_row(mat + (size_t)o * in, o, in, out);
        } else {
            bicubic_row(mat + (size_t)o * in, o, in, (out + 0.1) / in);
        }
    }
}

void lvd_vit_pos_resize(float *dst, float *tmp, const float *src, int G, int gh, int gw, int D,
                        const float *wy, const float *wx)
{
    memset(tmp, 0, sizeof(float) * (size_t)G * gw * D);
    memset(dst, 0, sizeof(float) * (size_t)gh * gw * D);
    for (int y = 0; y < G; y++) {
        for (int x = 0; x < gw; x++) {
            float *o = tmp + ((size_t)y * gw + x) * D;
            for (int i = 0; i < G; i++) {
                float w = wx[(size_t)x * G + i];
                const float *s = src + ((size_t)y * G + i) * D;
                for (int d = 0; w != 0.0f && d < D; d++) {
                    o[d] += w * s[d];
                }
            }
        }
    }
    for (int y = 0; y < gh; y++) {
        for (int i = 0; i < G; i++) {
            float w = wy[(size_t)y * G + i];
            for (int x = 0; w != 0.0f && x < gw; x++) {
                float *o = dst + ((size_t)y * gw + x) * D;
                const float *s = tmp + ((size_t)i * gw + x) * D;
                for (int d = 0; d < D; d++) {
                    o[d] += w * s[d];
                }
            }
        }
    }
}

void lvd_vit_pos_resize_backward(float *dsrc, float *tmp, const float *ddst, int G, int gh, int gw,
                                 int D, const float *wy, const float *wx)
{
    /* The forward's two passes transposed, in reverse order: rows (y), then columns (x). */
    memset(tmp, 0, sizeof(float) * (size_t)G * gw * D);
    for (int y = 0; y < gh; y++) {
        for (int i = 0; i < G; i++) {
            float w = wy[(size_t)y * G + i];
            for (int x = 0; w != 0.0f && x < gw; x++) {
                const float *g = ddst + ((size_t)y * gw + x) * D;
                float *o = tmp + ((size_t)i * gw + x) * D;
                for (int d = 0; d < D; d++) {
                    o[d] += w * g[d];
                }
            }
        }
    }
    for (int y = 0; y < G; y++) {
        for (int x = 0; x < gw; x++) {
            const float *g = tmp + ((size_t)y * gw + x) * D;
            for (int i = 0; i < G; i++) {
                float w = wx[(size_t)x * G + i];
                float *o = dsrc + ((size_t)y * G + i) * D;
                for (int d = 0; w != 0.0f && d < D; d++) {
                    o[d] += w * g[d];
                }
            }
        }
    }
}

/* A newly allocated resized table (1 + gh * gw, D), or NULL when memory runs out. */
static float *resized_table(const lvd_vit *m, int gh, int gw)
{
    int G = m->info.grid;
    int D = m->info.dim;
    float *table = malloc(sizeof(float) * (1 + (size_t)gh * gw) * D);
    float *tmp = malloc(sizeof(float) * (size_t)G * gw * D);
    float *wy = malloc(sizeof(float) * (size_t)gh * G);
    float *wx = malloc(sizeof(float) * (size_t)gw * G);
    if (table && tmp && wy && wx) {
        lvd_vit_pos_axis_matrix(wy, G, gh, m->info.pos_antialias);
        lvd_vit_pos_axis_matrix(wx, G, gw, m->info.pos_antialias);
        memcpy(table, m->p.pos_embed, sizeof(float) * D);
        lvd_vit_pos_resize(table + D, tmp, m->p.pos_embed + D, G, gh, gw, D, wy, wx);
    } else {
        free(table);
        table = NULL;
    }
    free(tmp);
    free(wy);
    free(wx);
    return table;
}

const float *vit_pos_embed(lvd_vit *m, int gh, int gw, lvd_error *err)
{
    if (gh == m->info.grid && gw == m->info.grid) {
        return m->p.pos_embed;
    }
    for (int i = 0; i < VIT_POS_CACHE; i++) {
        vit_pos_entry *e = &m->pos_cache[i];
        if (e->table && e->gh == gh && e->gw == gw) {
            return e->table;
        }
    }
    float *table = resized_table(m, gh, gw);
    if (!table) {
        lvd_fail(err, "vit: out of memory resizing the positional embedding to %dx%d", gh, gw);
        return NULL;
    }
    vit_pos_entry *e = &m->pos_cache[m->pos_next];
    m->pos_next = (m->pos_next + 1) % VIT_POS_CACHE;
    free(e->table);
    e->table = table;
    e->gh = gh;
    e->gw = gw;
    return table;
}

void vit_pos_cache_free(lvd_vit *m)
{
    for (int i = 0; i < VIT_POS_CACHE; i++) {
        free(m->pos_cache[i].table);
        m->pos_cache[i].table = NULL;
    }
}
