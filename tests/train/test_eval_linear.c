/* The linear probe (train/eval/eval.h) on a linearly separable synthetic problem: 5 classes of
 * Gaussian clusters in 24 dimensions (means 3 apart along their own axis, noise 0.4), trained
 * with a grid of learning rates of which one is far too small and one diverges (its parameters
 * overflow): the probe must mark the divergent one, choose the good one on validation and
 * classify the test rows ~100 %; its loss must have fallen. The same seed gives bitwise the same
 * result with 1 or 3 threads, another seed another initialization. The validation split: its
 * size, independence of the row order, dependence on the seed. Errors. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tests/check.h"
#include "train/eval/eval.h"

#define D  24
#define C  5
#define NT 500
#define NV 100
#define NE 300

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rng_gauss(uint64_t *s)
{
    double u = (double)((rng_next(s) >> 11) + 1) / 9007199254740992.0;
    double v = (double)(rng_next(s) >> 11) / 9007199254740992.0;
    return sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
}

static void make(float *x, int32_t *y, int n, uint64_t seed)
{
    uint64_t s = seed;
    for (int i = 0; i < n; i++) {
        y[i] = (int32_t)(rng_next(&s) % C);
        for (int j = 0; j < D; j++)
            x[i * D + j] = (float)((j == y[i] ? 3.0 : 0.0) + 0.5 + 0.4 * rng_gauss(&s));
    }
}

static float tx[NT * D], vx[NV * D], ex[NE * D];
static int32_t ty[NT], vy[NV], ey[NE];

static void test_grid(void)
{
    lvd_linear_opts o;
    lvd_linear_opts_default(&o);
    o.n_lrs = 3;
    o.lrs[0] = 1e-6f; /* learns nothing in 10 epochs */
    o.lrs[1] = 0.5f;
    o.lrs[2] = 3e38f; /* the weights overflow float */
    o.batch = 32;
    lvd_linear_result r;
    lvd_error err;
    CHECK_MSG(lvd_linear_probe(tx, ty, NT, vx, vy, NV, ex, ey, NE, D, C, &o, &r, &err) == 0, "%s",
              err.msg);
    printf("val top-1: %.1f %.1f %.1f, diverged %d %d %d, losses %.4f %.4f, test %.2f / %.2f\n",
           r.val_top1[0], r.val_top1[1], r.val_top1[2], r.diverged[0], r.diverged[1], r.diverged[2],
           r.final_loss[0], r.final_loss[1], r.test_top1, r.test_top5);
    CHECK(r.n_lrs == 3 && r.steps == 10 * (NT / 32));
    CHECK(!r.diverged[0] && !r.diverged[1] && r.diverged[2]);
    CHECK(r.val_top1[2] == 0.0 && isnan(r.final_loss[2]));
    CHECK(r.best == 1);
    CHECK(r.val_top1[1] >= 99.0 && r.val_top1[0] < 90.0);
    CHECK(r.test_top1 >= 99.0 && r.test_top5 == 100.0);
    CHECK(r.final_loss[1] < 0.1 && r.final_loss[0] > 1.0); /* ln 5 = 1.61 at the start */

    /* Determinism: bitwise the same with 1 and 3 threads; another seed changes the init. */
    int threads = omp_get_max_threads();
    lvd_linear_result r1, r3, r2;
    omp_set_num_threads(1);
    CHECK(lvd_linear_probe(tx, ty, NT, vx, vy, NV, ex, ey, NE, D, C, &o, &r1, &err) == 0);
    omp_set_num_threads(3);
    CHECK(lvd_linear_probe(tx, ty, NT, vx, vy, NV, ex, ey, NE, D, C, &o, &r3, &err) == 0);
    omp_set_num_threads(threads);
    CHECK(memcmp(&r, &r1, sizeof r) == 0 && memcmp(&r, &r3, sizeof r) == 0);
    o.seed = 7;
    CHECK(lvd_linear_probe(tx, ty, NT, vx, vy, NV, ex, ey, NE, D, C, &o, &r2, &err) == 0);
    CHECK(r2.final_loss[0] != r.final_loss[0] && r2.best == 1);

    /* Every lr diverging is reported, not failed; no test rows is allowed. */
    o.n_lrs = 1;
    o.lrs[0] = 3e38f;
    CHECK(lvd_linear_probe(tx, ty, NT, vx, vy, NV, ex, ey, 0, D, C, &o, &r2, &err) == 0);
    CHECK(r2.best == -1 && r2.diverged[0] && r2.test_top1 == 0.0);
}

/* The reference's default grid and batch on the same data: a good lr among 13 is found. */
static void test_default_grid(void)
{
    lvd_linear_opts o;
    lvd_linear_opts_default(&o);
    CHECK(o.n_lrs == 13 && o.epochs == 10 && o.batch == 128 && o.lrs[12] == 0.1f);
    o.epochs = 30;
    lvd_linear_result r;
    lvd_error err;
    CHECK(lvd_linear_probe(tx, ty, NT, vx, vy, NV, ex, ey, NE, D, C, &o, &r, &err) == 0);
    CHECK(r.best >= 0 && r.val_top1[r.best] >= 99.0 && r.test_top1 >= 98.0);
    for (int g = 0; g < 13; g++)
        CHECK(!r.diverged[g] && r.val_top1[g] <= r.val_top1[r.best]);
    for (int g = 0; g < r.best; g++) /* the first of equal scores wins */
        CHECK(r.val_top1[g] < r.val_top1[r.best]);
}

static void test_split(void)
{
    enum { N = 1000 };
    int64_t keys[N], rev[N];
    uint8_t a[N], b[N], c[N];
    for (int i = 0; i < N; i++) {
        keys[i] = 3 * i + 11;
        rev[N - 1 - i] = keys[i];
    }
    lvd_error err;
    CHECK(lvd_eval_split(keys, N, 0.1, 0, a, &err) == 0);
    CHECK(lvd_eval_split(rev, N, 0.1, 0, b, &err) == 0);
    CHECK(lvd_eval_split(keys, N, 0.1, 1, c, &err) == 0);
    int na = 0, same = 0, differ = 0;
    for (int i = 0; i < N; i++) {
        na += a[i];
        same += a[i] == b[N - 1 - i];
        differ += a[i] != c[i];
    }
    CHECK(na == 100 && same == N && differ > 50);
    CHECK(lvd_eval_split(keys, 7, 0.5, 0, a, &err) == 0); /* round(3.5) = 4 */
    CHECK(a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] == 4);
    CHECK(lvd_eval_split(keys, N, 1.0, 0, a, &err) == -1);
    CHECK(lvd_eval_split(keys, N, -0.1, 0, a, &err) == -1);
}

static void test_errors(void)
{
    lvd_linear_opts o;
    lvd_linear_opts_default(&o);
    lvd_linear_result r;
    lvd_error err;
    CHECK(lvd_linear_probe(tx, ty, NT, vx, vy, NV, ex, ey, NE, D, C - 1, &o, &r, &err) == -1 &&
          strstr(err.msg, "label"));
    CHECK(lvd_linear_probe(tx, ty, NT, vx, vy, 0, ex, ey, NE, D, C, &o, &r, &err) == -1);
    o.lrs[3] = 0;
    CHECK(lvd_linear_probe(tx, ty, NT, vx, vy, NV, ex, ey, NE, D, C, &o, &r, &err) == -1 &&
          strstr(err.msg, "positive"));
    lvd_linear_opts_default(&o);
    o.epochs = 0;
    CHECK(lvd_linear_probe(tx, ty, NT, vx, vy, NV, ex, ey, NE, D, C, &o, &r, &err) == -1);
    lvd_linear_opts_default(&o);
    o.n_lrs = LVD_LINEAR_MAX_LRS + 1;
    CHECK(lvd_linear_probe(tx, ty, NT, vx, vy, NV, ex, ey, NE, D, C, &o, &r, &err) == -1);
}

int main(void)
{
    make(tx, ty, NT, 1);
    make(vx, vy, NV, 2);
    make(ex, ey, NE, 3);
    test_grid();
    test_default_grid();
    test_split();
    test_errors();
    return check_finish();
}
