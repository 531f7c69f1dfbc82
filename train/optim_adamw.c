/* AdamW, gradient clipping and the EMA teacher update (train/optim.h): lvd_adamw_init/free,
 * lvd_adamw_update, lvd_adamw_clip_grad, lvd_ema_update. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "train/optim.h"

/* Floats per chunk: large enough to amortize a thread's start, small enough to balance. */
#define CHUNK 16384

int lvd_adamw_init(lvd_adamw *o, const lvd_param_layout *l, const lvd_param_group *groups,
                   double beta1, double beta2, double eps, lvd_error *err)
{
    memset(o, 0, sizeof *o);
    if (!(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1 && eps >= 0))
        return lvd_fail(err, "AdamW: betas must lie in [0, 1) and eps be >= 0 (got %g, %g, %g)",
                        beta1, beta2, eps);
    size_t n_chunks = 0;
    for (int i = 0; i < l->n; i++)
        n_chunks += (l->t[i].numel + CHUNK - 1) / CHUNK;
    if (n_chunks > (size_t)INT32_MAX)
        return lvd_fail(err, "AdamW: layout too large (%zu floats)", l->total);
    o->layout = l;
    o->beta1 = beta1;
    o->beta2 = beta2;
    o->eps = eps;
    o->groups = malloc((size_t)(l->n ? l->n : 1) * sizeof *o->groups);
    o->m = calloc(l->total ? l->total : 1, sizeof *o->m);
    o->v = calloc(l->total ? l->total : 1, sizeof *o->v);
    o->chunks = malloc((n_chunks ? n_chunks : 1) * sizeof *o->chunks);
    o->partial = malloc((n_chunks ? n_chunks : 1) * sizeof *o->partial);
    if (!o->groups || !o->m || !o->v || !o->chunks || !o->partial) {
        lvd_adamw_free(o);
        return lvd_fail(err, "AdamW: out of memory for %zu parameters", l->total);
    }
    for (int i = 0; i < l->n; i++) {
        if (groups) {
            o->groups[i] = groups[i];
        } else {
            o->groups[i] = (lvd_param_group){.lr_mult = 1.0, .wd_mult = 1.0};
        }
        for (size_t s = 0; s < l->t[i].numel; s += CHUNK) {
            size_t left = l->t[i].numel - s;
            o->chunks[o->n_chunks++] =
                (lvd_adamw_chunk){i, l->t[i].offset + s, left < CHUNK ? left : CHUNK};
        }
    }
    return 0;
}

void lvd_adamw_free(lvd_adamw *o)
{
    free(o->groups);
    free(o->m);
    free(o->v);
    free(o->chunks);
    free(o->partial);
    memset(o, 0, sizeof *o);
}

static int thread_count(int threads)
{
    return threads > 0 ? threads : omp_get_max_threads();
}

void lvd_adamw_update(lvd_adamw *o, float *params, const float *grads, double lr, double wd,
                      double last_layer_lr)
{
    o->step++;
    const double step = (double)o->step;
    const float bc2_sqrt = (float)sqrt(1.0 - pow(o->beta2, step));
    const double bc1 = 1.0 - pow(o->beta1, step);
    const float w1 = (float)(1.0 - o->beta1), b2 = (float)o->beta2;
    const float one_minus_b2 = (float)(1.0 - o->beta2), eps = (float)o->eps;
    const int small = fabsf(w1) < 0.5f;
    const lvd_adamw_chunk *chunks = o->chunks;
    const lvd_param_group *groups = o->groups;
    float *m = o->m, *v = o->v;
    const int n_chunks = o->n_chunks;
#pragma omp parallel for num_threads(thread_count(o->threads)) schedule(dynamic, 4)
    for (int c = 0; c < n_chunks; c++) {
        const lvd_param_group *g = &groups[chunks[c].tensor];
        /* the per-tensor scalars in double (torch's Python floats), rounded to float once */
        double lr_t = (g->is_last_layer ? last_layer_lr : lr) * g->lr_mult;
        double wd_t = wd * g->wd_mult;
        const float decay = (float)(1.0 - lr_t * wd_t), step_size = (float)(-(lr_t / bc1));
        size_t end = chunks[c].start + chunks[c].len;
        for (size_t j = chunks[c].start; j < end; j++) {
            float gj = grads[j];
            float p = params[j] * decay;
            /* torch.lerp: self + w * (end - self) for |w| < 0.5, else end - (end - self) * (1 - w)
             */
            float mj = small ? m[j] + w1 * (gj - m[j]) : gj - (gj - m[j]) * (1.0f - w1);
            float vj = v[j] * b2;
            vj = vj + one_minus_b2 * gj * gj;
            float denom = sqrtf(vj) / bc2_sqrt + eps;
            params[j] = p + step_size * (mj / denom);
            m[j] = mj;
            v[j] = vj;
        }
    }
}

double lvd_adamw_clip_grad(lvd_adamw *o, float *grads, double max_norm)
{
    const lvd_adamw_chunk *chunks = o->chunks;
    double *partial = o->partial;
    const int n_chunks = o->n_chunks;
    const int threads = thread_count(o->threads);
#pragma omp parallel for num_threads(threads) schedule(dynamic, 4)
    for (int c = 0; c < n_chunks; c++) {
        /* four running sums (a fixed order: the result does not depend on the threads) */
        double s[4] = {0, 0, 0, 0};
        const float *g = grads + chunks[c].start;
        size_t len = chunks[c].len, j = 0;
        for (; j + 4 <= len; j += 4)
            for (int k = 0; k < 4; k++)
                s[k] += (double)g[j + k] * g[j + k];
        for (; j < len; j++)
            s[0] += (double)g[j] * g[j];
        partial[c] = (s[0] + s[1]) + (s[2] + s[3]);
    }
    double sum = 0;
    for (int c = 0; c < n_chunks; c++)
        sum += partial[c];
    double norm = sqrt(sum);
    if (!(max_norm > 0) || !isfinite(norm))
        return norm;
    double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0) {
        const float scale = (float)coef;
        const size_t total = o->layout->total;
#pragma omp parallel for num_threads(threads) schedule(static)
        for (size_t j = 0; j < total; j++)
            grads[j] *= scale;
    }
    return norm;
}

void lvd_ema_update(float *teacher, const float *student, size_t n, double momentum, int threads)
{
    const float mf = (float)momentum, alpha = (float)(1.0 - momentum);
#pragma omp parallel for num_threads(thread_count(threads)) schedule(static)
    for (size_t j = 0; j < n; j++) {
        float t = teacher[j] * mf;
        teacher[j] = t + alpha * student[j];
    }
}
