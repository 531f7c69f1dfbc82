/* The block mask generator and the batch collate of train/masks.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/masks.h"

int lvd_mask_gen_init(lvd_mask_gen *g, int height, int width, double max_patches, lvd_error *err)
{
    if (height < 1 || width < 1 || (int64_t)height * width > (1 << 24))
        return lvd_fail(err, "masks: bad patch grid %dx%d", height, width);
    if (!(max_patches >= 1.0))
        return lvd_fail(err, "masks: max patches per block must be >= 1");
    g->height = height;
    g->width = width;
    g->min_patches = 4;
    g->max_patches = max_patches;
    g->log_aspect[0] = log(0.3);
    g->log_aspect[1] = log(1.0 / 0.3);
    return 0;
}

int lvd_mask_gen_for_crops(lvd_mask_gen *g, int global_size, int patch_size, lvd_error *err)
{
    if (patch_size < 1 || global_size < patch_size)
        return lvd_fail(err, "masks: crop size %d is not a positive multiple of patch size %d",
                        global_size, patch_size);
    int side = global_size / patch_size;
    /* 0.5 * img_size // patch_size * img_size // patch_size, evaluated left to right. */
    double max_patches = floor(floor(0.5 * global_size / patch_size) * global_size / patch_size);
    return lvd_mask_gen_init(g, side, side, max_patches < 1.0 ? 1.0 : max_patches, err);
}

/* Python's random.uniform(a, b) = a + (b - a) * random(). */
static double uniform(lvd_rng *r, double a, double b)
{
    return a + (b - a) * lvd_rng_uniform(r);
}

int lvd_mask_add_block(const lvd_mask_gen *g, lvd_rng *r, uint8_t *mask, double budget)
{
    for (int attempt = 0; attempt < 10; attempt++) {
        double area = uniform(r, g->min_patches, budget);
        double aspect = exp(uniform(r, g->log_aspect[0], g->log_aspect[1]));
        double hf = nearbyint(sqrt(area * aspect)), wf = nearbyint(sqrt(area / aspect));
        if (!(wf < g->width && hf < g->height))
            continue;
        int h = (int)hf, w = (int)wf;
        int top = (int)lvd_rng_below(r, (uint64_t)(g->height - h + 1));
        int left = (int)lvd_rng_below(r, (uint64_t)(g->width - w + 1));
        int already = 0;
        for (int y = top; y < top + h; y++)
            for (int x = left; x < left + w; x++)
                already += mask[y * g->width + x];
        int fresh = h * w - already;
        if (fresh > 0 && fresh <= budget) {
            for (int y = top; y < top + h; y++)
                for (int x = left; x < left + w; x++)
                    mask[y * g->width + x] = 1;
            return fresh;
        }
    }
    return 0;
}

int lvd_mask_generate(const lvd_mask_gen *g, lvd_rng *r, int n, uint8_t *mask)
{
    memset(mask, 0, (size_t)g->height * g->width);
    int count = 0;
    while (count < n) {
        double budget = n - count;
        if (budget > g->max_patches)
            budget = g->max_patches;
        int delta = lvd_mask_add_block(g, r, mask, budget);
        if (delta == 0)
            break;
        count += delta;
    }
    return count;
}

void lvd_mask_opts_defaults(lvd_mask_opts *o)
{
    o->ratio_min = 0.1f;
    o->ratio_max = 0.5f;
    o->probability = 0.5f;
}

int lvd_masks_alloc(lvd_masks *m, int n_crops, int n_tokens, lvd_error *err)
{
    memset(m, 0, sizeof *m);
    if (n_crops < 1 || n_tokens < 1 || (int64_t)n_crops * n_tokens > ((int64_t)1 << 31))
        return lvd_fail(err, "masks: bad size %d x %d", n_crops, n_tokens);
    size_t n = (size_t)n_crops * n_tokens;
    m->masks = malloc(n);
    m->indices = malloc(n * sizeof *m->indices);
    m->weights = malloc(n * sizeof *m->weights);
    if (!m->masks || !m->indices || !m->weights) {
        lvd_masks_free(m);
        return lvd_fail(err, "masks: out of memory for %d x %d", n_crops, n_tokens);
    }
    m->n_crops = n_crops;
    m->n_tokens = n_tokens;
    return 0;
}

void lvd_masks_free(lvd_masks *m)
{
    free(m->masks);
    free(m->indices);
    free(m->weights);
    memset(m, 0, sizeof *m);
}

/* torch.linspace(start, end, steps)[i] in float32 (ATen's two-sided formula). */
static float linspace_at(float start, float end, int steps, int i)
{
    if (steps == 1)
        return start;
    float step = (end - start) / (float)(steps - 1);
    return i < steps / 2 ? start + step * (float)i : end - step * (float)(steps - 1 - i);
}

int lvd_masks_collate(const lvd_mask_gen *g, const lvd_mask_opts *o, lvd_rng *r, lvd_masks *m,
                      lvd_error *err)
{
    if (!(o->ratio_min >= 0.0f && o->ratio_min <= o->ratio_max && o->ratio_max <= 1.0f) ||
        !(o->probability >= 0.0f && o->probability <= 1.0f))
        return lvd_fail(err, "masks: need 0 <= ratio min <= ratio max <= 1, probability in [0, 1]");
    int n_tok = m->n_tokens;
    if (g->height * g->width != n_tok)
        return lvd_fail(err, "masks: grid %dx%d does not have %d patches", g->height, g->width,
                        n_tok);
    int n_masked = (int)((double)m->n_crops * (double)o->probability);
    m->n_masked_crops = n_masked;
    m->upperbound = 0;
    for (int i = 0; i < m->n_crops; i++) {
        uint8_t *row = m->masks + (size_t)i * n_tok;
        if (i >= n_masked) {
            memset(row, 0, (size_t)n_tok);
            continue;
        }
        float lo = linspace_at(o->ratio_min, o->ratio_max, n_masked + 1, i);
        float hi = linspace_at(o->ratio_min, o->ratio_max, n_masked + 1, i + 1);
        /* random.uniform on float32 tensors, times N, truncated: all float32. */
        float ratio = lo + (hi - lo) * (float)lvd_rng_uniform(r);
        lvd_mask_generate(g, r, (int)((float)n_tok * ratio), row);
        m->upperbound += (int64_t)((float)n_tok * hi);
    }
    for (int i = m->n_crops - 1; i > 0; i--) {
        int j = (int)lvd_rng_below(r, (uint64_t)i + 1);
        uint8_t *a = m->masks + (size_t)i * n_tok, *b = m->masks + (size_t)j * n_tok;
        for (int t = 0; t < n_tok && i != j; t++) {
            uint8_t v = a[t];
            a[t] = b[t];
            b[t] = v;
        }
    }
    int64_t k = 0;
    for (int i = 0; i < m->n_crops; i++) {
        const uint8_t *row = m->masks + (size_t)i * n_tok;
        int64_t first = k;
        for (int t = 0; t < n_tok; t++)
            if (row[t])
                m->indices[k++] = (int64_t)i * n_tok + t;
        float w = 1.0f / (float)(k - first > 0 ? k - first : 1);
        for (int64_t q = first; q < k; q++)
            m->weights[q] = w;
    }
    m->n_masked = k;
    return 0;
}
