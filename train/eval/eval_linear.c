/* The linear probe of train/eval/eval.h: a grid of linear classifiers trained together on frozen
 * features (SGD with momentum, cosine schedule), chosen on validation, scored on test; and the
 * seeded validation split. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "train/eval/eval.h"

#define MOMENTUM   0.9f
#define INIT_STD   0.01
#define EVAL_CHUNK 1024

void lvd_linear_opts_default(lvd_linear_opts *o)
{
    static const float lrs[] = {1e-5f, 2e-5f, 5e-5f, 1e-4f, 2e-4f, 5e-4f, 1e-3f,
                                2e-3f, 5e-3f, 1e-2f, 2e-2f, 5e-2f, 0.1f};
    memset(o, 0, sizeof *o);
    o->n_lrs = (int)(sizeof lrs / sizeof lrs[0]);
    memcpy(o->lrs, lrs, sizeof lrs);
    o->epochs = 10;
    o->batch = 128;
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in (0, 1]. */
static double uniform(uint64_t *s)
{
    return (double)((splitmix(s) >> 11) + 1) * (1.0 / 9007199254740992.0);
}

/* A uniform integer in [0, n). */
static uint64_t below(uint64_t *s, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)splitmix(s) * n) >> 64);
}

/* The G classifiers over C classes and D features. Each buffer of `total` floats (params,
 * grad, momentum) has the layout
 *   W (G, C, D): weights; row g * C + c is class c of classifier g
 *   b (G, C):    biases
 * so the weights of all classifiers are one (G * C, D) matrix for sgemm. */
typedef struct probe {
    int G, C, D;
    size_t total;
    float *params, *grad, *mom;
    float *W, *b, *dW, *db, *mW, *mb; /* views into the three buffers */
    int *diverged;                    /* G */
    /* Step activations. */
    int B;
    float *xb;       /* (B, D): the batch's features */
    float *logits;   /* (B, G * C), then overwritten by d loss / d logits */
    double *rowloss; /* (B, G) */
    double *scratch; /* (threads, C): scores when ranking classes */
    int32_t *perm;   /* (n): the epoch's order of the training rows */
    int32_t *yb;     /* (B): the batch's labels */
} probe;

static void probe_free(probe *p)
{
    free(p->params);
    free(p->grad);
    free(p->mom);
    free(p->diverged);
    free(p->xb);
    free(p->logits);
    free(p->rowloss);
    free(p->scratch);
    free(p->perm);
    free(p->yb);
}

static int probe_alloc(probe *p, int G, int C, int D, int B, int64_t n, lvd_error *err)
{
    memset(p, 0, sizeof *p);
    p->G = G;
    p->C = C;
    p->D = D;
    p->B = B > EVAL_CHUNK ? B : EVAL_CHUNK; /* the activations also serve scoring chunks */
    size_t gc = (size_t)G * C;
    p->total = gc * D + gc;
    p->params = calloc(p->total, sizeof *p->params);
    p->grad = calloc(p->total, sizeof *p->grad);
    p->mom = calloc(p->total, sizeof *p->mom);
    p->diverged = calloc((size_t)G, sizeof *p->diverged);
    p->xb = malloc((size_t)B * D * sizeof *p->xb);
    p->logits = malloc((size_t)p->B * gc * sizeof *p->logits);
    p->rowloss = malloc((size_t)B * G * sizeof *p->rowloss);
    p->scratch = malloc((size_t)omp_get_max_threads() * C * sizeof *p->scratch);
    p->perm = malloc((size_t)n * sizeof *p->perm);
    p->yb = malloc((size_t)B * sizeof *p->yb);
    if (!p->params || !p->grad || !p->mom || !p->diverged || !p->xb || !p->logits || !p->rowloss ||
        !p->scratch || !p->perm || !p->yb) {
        probe_free(p);
        return lvd_fail(err, "linear probe: out of memory for %d classifiers of %d x %d", G, C, D);
    }
    p->W = p->params;
    p->b = p->params + gc * D;
    p->dW = p->grad;
    p->db = p->grad + gc * D;
    p->mW = p->mom;
    p->mb = p->mom + gc * D;
    return 0;
}

/* Weights N(0, 0.01) (Box-Muller; classifier g draws from its own stream), biases 0. */
static void probe_init(probe *p, uint64_t seed)
{
    size_t per = (size_t)p->C * p->D;
    for (int g = 0; g < p->G; g++) {
        uint64_t s = seed * 0x2545f4914f6cdd1dull + (uint64_t)g + 1;
        float *w = p->W + (size_t)g * per;
        for (size_t i = 0; i < per; i += 2) {
            double r = sqrt(-2.0 * log(uniform(&s))), a = 2.0 * M_PI * uniform(&s);
            w[i] = (float)(INIT_STD * r * cos(a));
            if (i + 1 < per)
                w[i + 1] = (float)(INIT_STD * r * sin(a));
        }
    }
}

/* logits (n, G * C) = x (n, D) W^T + b. */
static void probe_logits(probe *p, const float *x, int n)
{
    int gc = p->G * p->C;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, gc, p->D, 1.0f, x, p->D, p->W, p->D,
                0.0f, p->logits, gc);
#pragma omp parallel for schedule(static)
    for (int r = 0; r < n; r++)
        for (int j = 0; j < gc; j++)
            p->logits[(size_t)r * gc + j] += p->b[j];
}

/* Replaces the logits of the batch by d(mean cross-entropy)/d logits and records each row's
 * loss per classifier; diverged classifiers get zero gradients. */
static void probe_softmax_grad(probe *p, const int32_t *y, int n)
{
    int G = p->G, C = p->C;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < n; r++)
        for (int g = 0; g < G; g++) {
            float *l = p->logits + ((size_t)r * G + g) * C;
            if (p->diverged[g]) {
                memset(l, 0, (size_t)C * sizeof *l);
                p->rowloss[(size_t)r * G + g] = 0.0;
                continue;
            }
            float mx = l[0];
            for (int c = 1; c < C; c++)
                mx = l[c] > mx ? l[c] : mx;
            double sum = 0.0;
            for (int c = 0; c < C; c++)
                sum += exp((double)l[c] - mx);
            p->rowloss[(size_t)r * G + g] = log(sum) + mx - l[y[r]];
            for (int c = 0; c < C; c++)
                l[c] = (float)((exp((double)l[c] - mx) / sum - (c == y[r])) / n);
        }
}

/* Gradients from the batch's d loss / d logits, then the SGD step of every live classifier at
 * its learning rate lr[g]; a classifier whose parameters leave the finite range diverges. */
static void probe_step(probe *p, int n, const float *lr)
{
    int gc = p->G * p->C, D = p->D;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, gc, D, n, 1.0f, p->logits, gc, p->xb, D,
                0.0f, p->dW, D);
#pragma omp parallel for schedule(static)
    for (int j = 0; j < gc; j++) {
        double s = 0.0;
        for (int r = 0; r < n; r++)
            s += p->logits[(size_t)r * gc + j];
        p->db[j] = (float)s;
    }
    size_t per = (size_t)p->C * D;
    for (int g = 0; g < p->G; g++) {
        if (p->diverged[g])
            continue;
        float a = lr[g];
        int bad = 0;
        float *w = p->W + g * per, *dw = p->dW + g * per, *mw = p->mW + g * per;
#pragma omp parallel for schedule(static) reduction(| : bad)
        for (size_t i = 0; i < per; i++) {
            mw[i] = MOMENTUM * mw[i] + dw[i];
            w[i] -= a * mw[i];
            bad |= !isfinite(w[i]);
        }
        float *b = p->b + (size_t)g * p->C, *db = p->db + (size_t)g * p->C;
        float *mb = p->mb + (size_t)g * p->C;
        for (int c = 0; c < p->C; c++) {
            mb[c] = MOMENTUM * mb[c] + db[c];
            b[c] -= a * mb[c];
            bad |= !isfinite(b[c]);
        }
        p->diverged[g] = bad;
    }
}

/* Top-1 and top-5 hits of every classifier on n rows (percent into top1 / top5, G each). */
static void probe_score(probe *p, const float *x, const int32_t *y, int64_t n, double *top1,
                        double *top5)
{
    int G = p->G, C = p->C;
    int64_t h1[LVD_LINEAR_MAX_LRS] = {0}, h5[LVD_LINEAR_MAX_LRS] = {0};
    for (int64_t r0 = 0; r0 < n; r0 += EVAL_CHUNK) {
        int m = (int)(n - r0 < EVAL_CHUNK ? n - r0 : EVAL_CHUNK);
        probe_logits(p, x + (size_t)r0 * p->D, m);
#pragma omp parallel
        {
            double *s = p->scratch + (size_t)omp_get_thread_num() * C;
#pragma omp for schedule(static) reduction(+ : h1[:G], h5[:G])
            for (int r = 0; r < m; r++)
                for (int g = 0; g < G; g++) {
                    const float *l = p->logits + ((size_t)r * G + g) * C;
                    for (int c = 0; c < C; c++)
                        s[c] = isnan(l[c]) ? -INFINITY : l[c];
                    int32_t top[5];
                    lvd_knn_top5(s, C, top);
                    int32_t t = y[r0 + r];
                    h1[g] += top[0] == t;
                    h5[g] +=
                        top[0] == t || top[1] == t || top[2] == t || top[3] == t || top[4] == t;
                }
        }
    }
    for (int g = 0; g < G; g++) {
        top1[g] = p->diverged[g] || n == 0 ? 0.0 : 100.0 * (double)h1[g] / (double)n;
        top5[g] = p->diverged[g] || n == 0 ? 0.0 : 100.0 * (double)h5[g] / (double)n;
    }
}

static int check_labels(const int32_t *y, int64_t n, int n_classes, const char *what,
                        lvd_error *err)
{
    for (int64_t i = 0; i < n; i++)
        if (y[i] < 0 || y[i] >= n_classes)
            return lvd_fail(err, "linear probe: %s row %lld has label %d, outside 0 .. %d", what,
                            (long long)i, y[i], n_classes - 1);
    return 0;
}

static int check_args(int64_t n_train, int64_t n_val, int64_t n_test, int dim, int n_classes,
                      const lvd_linear_opts *o, lvd_error *err)
{
    if (n_train < 1 || n_val < 1 || n_test < 0 || dim < 1 || n_classes < 1 || n_train > INT32_MAX ||
        (int64_t)n_classes * o->n_lrs * dim > INT32_MAX)
        return lvd_fail(err, "linear probe: bad sizes (train %lld, val %lld, dim %d, classes %d)",
                        (long long)n_train, (long long)n_val, dim, n_classes);
    if (o->n_lrs < 1 || o->n_lrs > LVD_LINEAR_MAX_LRS)
        return lvd_fail(err, "linear probe: 1 to %d learning rates, not %d", LVD_LINEAR_MAX_LRS,
                        o->n_lrs);
    for (int g = 0; g < o->n_lrs; g++)
        if (!(o->lrs[g] > 0) || !isfinite(o->lrs[g]))
            return lvd_fail(err, "linear probe: learning rates must be positive");
    if (o->epochs < 1 || o->batch < 1)
        return lvd_fail(err, "linear probe: epochs and batch must be at least 1");
    return 0;
}

/* Trains every classifier for o->epochs passes; writes the last epoch's mean losses. */
static void probe_train(probe *p, const float *x, const int32_t *y, int64_t n, int B,
                        const lvd_linear_opts *o, int64_t *steps, double *final_loss)
{
    int G = p->G;
    int64_t per_epoch = n / B, total = per_epoch * o->epochs, t = 0;
    int32_t *perm = p->perm, *yb = p->yb;
    float lr[LVD_LINEAR_MAX_LRS];
    for (int64_t i = 0; i < n; i++)
        perm[i] = (int32_t)i;
    for (int e = 0; e < o->epochs; e++) {
        uint64_t s = o->seed ^ (0x9e3779b97f4a7c15ull * (uint64_t)(e + 1));
        for (int64_t i = n - 1; i > 0; i--) {
            int64_t j = (int64_t)below(&s, (uint64_t)i + 1);
            int32_t tmp = perm[i];
            perm[i] = perm[j];
            perm[j] = tmp;
        }
        for (int g = 0; g < G; g++)
            final_loss[g] = 0.0;
        for (int64_t k = 0; k < per_epoch; k++, t++) {
            const int32_t *idx = perm + k * B;
            for (int r = 0; r < B; r++) {
                memcpy(p->xb + (size_t)r * p->D, x + (size_t)idx[r] * p->D,
                       (size_t)p->D * sizeof *x);
                yb[r] = y[idx[r]];
            }
            double cosine = 0.5 * (1.0 + cos(M_PI * (double)t / (double)total));
            for (int g = 0; g < G; g++)
                lr[g] = (float)((double)o->lrs[g] * B / 256.0 * cosine);
            probe_logits(p, p->xb, B);
            probe_softmax_grad(p, yb, B);
            for (int r = 0; r < B; r++)
                for (int g = 0; g < G; g++)
                    final_loss[g] += p->rowloss[(size_t)r * G + g] / ((double)B * per_epoch);
            probe_step(p, B, lr);
        }
    }
    for (int g = 0; g < G; g++)
        if (p->diverged[g])
            final_loss[g] = NAN;
    *steps = total;
}

int lvd_linear_probe(const float *train_x, const int32_t *train_y, int64_t n_train,
                     const float *val_x, const int32_t *val_y, int64_t n_val, const float *test_x,
                     const int32_t *test_y, int64_t n_test, int dim, int n_classes,
                     const lvd_linear_opts *o, lvd_linear_result *r, lvd_error *err)
{
    memset(r, 0, sizeof *r);
    r->best = -1;
    if (check_args(n_train, n_val, n_test, dim, n_classes, o, err) ||
        check_labels(train_y, n_train, n_classes, "train", err) ||
        check_labels(val_y, n_val, n_classes, "validation", err) ||
        check_labels(test_y, n_test, n_classes, "test", err))
        return -1;
    int B = o->batch < n_train ? o->batch : (int)n_train;
    probe p;
    if (probe_alloc(&p, o->n_lrs, n_classes, dim, B, n_train, err))
        return -1;
    r->n_lrs = o->n_lrs;
    probe_init(&p, o->seed);
    probe_train(&p, train_x, train_y, n_train, B, o, &r->steps, r->final_loss);
    probe_score(&p, val_x, val_y, n_val, r->val_top1, r->val_top5);
    for (int g = 0; g < o->n_lrs; g++) {
        r->diverged[g] = p.diverged[g];
        if (!p.diverged[g] && (r->best < 0 || r->val_top1[g] > r->val_top1[r->best]))
            r->best = g;
    }
    if (r->best >= 0 && n_test > 0) {
        double t1[LVD_LINEAR_MAX_LRS], t5[LVD_LINEAR_MAX_LRS];
        probe_score(&p, test_x, test_y, n_test, t1, t5);
        r->test_top1 = t1[r->best];
        r->test_top5 = t5[r->best];
    }
    probe_free(&p);
    return 0;
}

typedef struct ranked {
    uint64_t h;
    int64_t key, i;
} ranked;

static int cmp_ranked(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->h != y->h)
        return x->h < y->h ? -1 : 1;
    return (x->key > y->key) - (x->key < y->key);
}

int lvd_eval_split(const int64_t *keys, int64_t n, double share, uint64_t seed, uint8_t *is_val,
                   lvd_error *err)
{
    if (n < 0 || !(share >= 0.0 && share < 1.0))
        return lvd_fail(err, "validation share %g outside [0, 1)", share);
    ranked *rk = malloc((size_t)(n > 0 ? n : 1) * sizeof *rk);
    if (!rk)
        return lvd_fail(err, "validation split: out of memory for %lld rows", (long long)n);
    for (int64_t i = 0; i < n; i++) {
        uint64_t s = (uint64_t)keys[i] ^ (seed * 0xd1342543de82ef95ull);
        rk[i] = (ranked){splitmix(&s), keys[i], i};
    }
    qsort(rk, (size_t)n, sizeof *rk, cmp_ranked);
    int64_t m = (int64_t)llround(share * (double)n);
    for (int64_t j = 0; j < n; j++)
        is_val[rk[j].i] = j < m;
    free(rk);
    return 0;
}
