/* The k-NN classifier (train/eval/eval.h) against a brute-force double-precision re-implementation
 * of dinov2/eval/knn.py:
 * - the weighting on hand-computed tiny cases (softmax(sim / T) over the largest k, class sums,
 *   the temperature changing the winner);
 * - clustered features whose coordinates are 0 or +-1/4 (16 nonzeros of 64), so every
 *   similarity is exact in float and in double: plenty of exact ties between neighbours and
 *   between class scores (bank rows duplicated under other labels), k from 1 to beyond the bank;
 *   the top-5 of every test row for every k must equal the reference's exactly;
 * - Gaussian clusters in float: equal to the reference (similarities are double dot products of
 *   the float rows), and, with knn.py's plain exp(s / T) / sum, wherever class scores are not
 *   within 1e-5 (relative) of each other;
 * - near-ties: bank rows about 1 float ulp apart, which float sgemm orders by its rounding; the
 * exact re-ranking must still give the reference's neighbours;
 * - chunk sizes and thread counts give bitwise the same answer; the neighbours' order; errors. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tests/check.h"
#include "train/eval/eval.h"

#define DIM   64
#define NNZ   16
#define NB    150 /* bank rows: k = 200 is clamped */
#define NQ    80
#define NCLS  6
#define MAXKS 9

static const int ks_all[MAXKS] = {1, 2, 3, 5, 10, 20, 100, 200, 1000};
/* With the largest k below the bank size, the K-th neighbour is a real boundary. */
static const int ks_small[MAXKS] = {3, 1, 2, 5, 10, 12, 20, 7, 4};

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rng_unif(uint64_t *s)
{
    return (double)(rng_next(s) >> 11) / 9007199254740992.0;
}

static double rng_gauss(uint64_t *s)
{
    double u = rng_unif(s) + 1e-300, v = rng_unif(s);
    return sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
}

/* ---- The reference ------------------------------------------------------------------------- */

typedef struct ref_nb {
    double s;
    int64_t i;
} ref_nb;

static int cmp_nb(const void *a, const void *b)
{
    const ref_nb *x = a, *y = b;
    if (x->s != y->s)
        return x->s > y->s ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

/* One test row: every bank similarity in double, a full sort (sim desc, row asc), then for each
 * k the class sums of softmax(sims / T) over the K = min(max k, bank) best, and the five best
 * classes by (score desc, class asc) found by sorting all classes. plain = 1 uses
 * exp(s / T) / sum exp(s / T) as written in knn.py, and then fragile gets 1 when two of the six
 * best class scores are within 1e-5 (relative) but not equal, which the other arithmetic may
 * order the other way; plain = 0 computes the same values as train/eval/eval.h does (relative to
 * the best similarity). */
static void reference(const float *bank, const int32_t *by, int nb, const float *q, int dim,
                      const int *ks, int n_ks, double T, int plain, int32_t *pred, int *fragile)
{
    ref_nb *all = malloc((size_t)nb * sizeof *all);
    for (int i = 0; i < nb; i++) {
        double s = 0;
        for (int j = 0; j < dim; j++)
            s += (double)bank[(size_t)i * dim + j] * q[j];
        all[i] = (ref_nb){s, i};
    }
    qsort(all, (size_t)nb, sizeof *all, cmp_nb);
    int K = 0;
    for (int t = 0; t < n_ks; t++) {
        int k = ks[t] < nb ? ks[t] : nb;
        K = k > K ? k : K;
    }
    double w[NB], Z = 0;
    for (int j = 0; j < K; j++) {
        w[j] = plain ? exp(all[j].s / T) : exp((all[j].s - all[0].s) / T);
        Z += w[j];
    }
    *fragile = 0;
    for (int t = 0; t < n_ks; t++) {
        int k = ks[t] < nb ? ks[t] : nb;
        double sc[NCLS] = {0};
        for (int j = 0; j < k; j++)
            sc[by[all[j].i]] += w[j] / Z;
        int order[NCLS];
        for (int c = 0; c < NCLS; c++)
            order[c] = c;
        for (int a = 1; a < NCLS; a++) /* insertion sort, stable: ties keep the lower class */
            for (int b = a; b > 0 && sc[order[b]] > sc[order[b - 1]]; b--) {
                int tmp = order[b];
                order[b] = order[b - 1];
                order[b - 1] = tmp;
            }
        for (int r = 0; r < 5; r++)
            pred[t * 5 + r] = order[r];
        for (int r = 0; r < 5 && r + 1 < NCLS; r++) {
            double hi = sc[order[r]], lo = sc[order[r + 1]];
            *fragile |= plain && hi - lo > 0 && hi - lo < 1e-5 * (hi > 1e-300 ? hi : 1);
        }
    }
    free(all);
}

/* ---- Data ---------------------------------------------------------------------------------- */

/* Class prototypes with NNZ coordinates of +-1/4; a sample moves `moves` of them to free
 * positions and flips `flips` signs: still a unit vector with exact float similarities. */
static void quantized_row(int c, int moves, int flips, uint64_t *s, float *out)
{
    memset(out, 0, DIM * sizeof *out);
    uint64_t p = 1000 + (uint64_t)c;
    int pos[NNZ];
    for (int i = 0; i < NNZ; i++) {
        int j;
        do
            j = (int)(rng_next(&p) % DIM);
        while (out[j] != 0);
        out[j] = rng_next(&p) & 1 ? 0.25f : -0.25f;
        pos[i] = j;
    }
    for (int m = 0; m < moves; m++) {
        int from = pos[rng_next(s) % NNZ], to;
        if (out[from] == 0)
            continue;
        do
            to = (int)(rng_next(s) % DIM);
        while (out[to] != 0);
        out[to] = out[from];
        out[from] = 0;
        for (int i = 0; i < NNZ; i++)
            pos[i] = pos[i] == from ? to : pos[i];
    }
    for (int f = 0; f < flips; f++) {
        int j = pos[rng_next(s) % NNZ];
        out[j] = -out[j];
    }
}

/* Bank and test rows of the quantized clusters; every 7th bank row repeats the row before under
 * the next label, and every 9th test row is a copy of a bank row. */
static void make_quantized(float *bank, int32_t *by, float *q, int32_t *qy)
{
    uint64_t s = 42;
    for (int i = 0; i < NB; i++) {
        if (i % 7 == 6) {
            memcpy(bank + i * DIM, bank + (i - 1) * DIM, DIM * sizeof *bank);
            by[i] = (by[i - 1] + 1) % NCLS;
            continue;
        }
        by[i] = (int32_t)(rng_next(&s) % NCLS);
        quantized_row(by[i], (int)(rng_next(&s) % 9), (int)(rng_next(&s) % 4), &s, bank + i * DIM);
    }
    for (int i = 0; i < NQ; i++) {
        if (i % 9 == 4) {
            int b = (int)(rng_next(&s) % NB);
            memcpy(q + i * DIM, bank + b * DIM, DIM * sizeof *q);
            qy[i] = by[b];
            continue;
        }
        qy[i] = (int32_t)(rng_next(&s) % NCLS);
        quantized_row(qy[i], (int)(rng_next(&s) % 11), (int)(rng_next(&s) % 5), &s, q + i * DIM);
    }
}

static void gaussian_row(int c, double spread, uint64_t *s, float *out)
{
    uint64_t p = 7000 + (uint64_t)c;
    double v[DIM], n2 = 0;
    for (int j = 0; j < DIM; j++) {
        v[j] = rng_gauss(&p) / sqrt(DIM) + spread * rng_gauss(s) / sqrt(DIM);
        n2 += v[j] * v[j];
    }
    for (int j = 0; j < DIM; j++)
        out[j] = (float)(v[j] / sqrt(n2));
}

/* Near-ties for float rounding: the bank is 10 Gaussian rows, each with 14 copies moved by
 * about one float ulp, so many float similarities are within sgemm's rounding of each other while
 * the double ones differ; labels are random. */
static void make_nearties(float *bank, int32_t *by, float *q, int32_t *qy)
{
    uint64_t s = 99;
    for (int i = 0; i < NB; i++) {
        by[i] = (int32_t)(rng_next(&s) % NCLS);
        if (i % 15 == 0) {
            gaussian_row(i / 15 % NCLS, 0.5, &s, bank + i * DIM);
            continue;
        }
        const float *base = bank + (i - i % 15) * DIM;
        double v[DIM], n2 = 0;
        for (int j = 0; j < DIM; j++) {
            v[j] = base[j] + 3e-8 * rng_gauss(&s);
            n2 += v[j] * v[j];
        }
        for (int j = 0; j < DIM; j++)
            bank[i * DIM + j] = (float)(v[j] / sqrt(n2));
    }
    for (int i = 0; i < NQ; i++) {
        qy[i] = (int32_t)(rng_next(&s) % NCLS);
        gaussian_row(qy[i], 1.0, &s, q + i * DIM);
    }
}

/* Pairs of bank rows whose double similarities to a test row differ by less than 1e-6 (sgemm's
 * float similarities round at about 6e-8 here). */
static int count_nearties(const float *bank, const float *q)
{
    int n = 0;
    for (int i = 0; i < NQ; i++) {
        double s[NB];
        for (int b = 0; b < NB; b++) {
            s[b] = 0;
            for (int j = 0; j < DIM; j++)
                s[b] += (double)bank[b * DIM + j] * q[i * DIM + j];
        }
        for (int a = 0; a < NB; a++)
            for (int b = a + 1; b < NB; b++)
                n += fabs(s[a] - s[b]) < 1e-7;
    }
    return n;
}

static void make_gaussian(float *bank, int32_t *by, float *q, int32_t *qy)
{
    uint64_t s = 7;
    for (int i = 0; i < NB; i++) {
        if (i % 11 == 10) {
            memcpy(bank + i * DIM, bank + (i - 1) * DIM, DIM * sizeof *bank);
            by[i] = (by[i - 1] + 2) % NCLS;
            continue;
        }
        by[i] = (int32_t)(rng_next(&s) % NCLS);
        gaussian_row(by[i], 1.2, &s, bank + i * DIM);
    }
    for (int i = 0; i < NQ; i++) {
        qy[i] = (int32_t)(rng_next(&s) % NCLS);
        gaussian_row(qy[i], 1.2, &s, q + i * DIM);
    }
}

/* ---- Tests --------------------------------------------------------------------------------- */

static void test_hand(void)
{
    /* sims 0.9, 0.8, 0.5 with labels 0, 1, 0 and T = 0.07: the weights are
     * exp(s / T) / (e^(0.9/0.07) + e^(0.8/0.07) + e^(0.5/0.07)) = 0.8045379, 0.1928083,
     * 0.0026538; for k = 2 the scores are (0.8045379, 0.1928083) and do not sum to 1 (the
     * softmax is over the largest k), for k = 3 (0.8071917, 0.1928083). */
    double s[3] = {0.9, 0.8, 0.5};
    int32_t l[3] = {0, 1, 0};
    double sc[3];
    lvd_knn_vote(s, l, 3, 2, 0.07, 3, sc);
    CHECK(fabs(sc[0] - 0.8045378883) < 1e-6 && fabs(sc[1] - 0.1928083388) < 1e-6 && sc[2] == 0);
    lvd_knn_vote(s, l, 3, 3, 0.07, 3, sc);
    CHECK(fabs(sc[0] - 0.8071916612) < 1e-6 && fabs(sc[1] - 0.1928083388) < 1e-6);
    lvd_knn_vote(s, l, 3, 1, 1.0, 3, sc); /* T = 1: 0.3883258, 0.3513717, 0.2603025 */
    CHECK(fabs(sc[0] - 0.3883257680) < 1e-6 && sc[1] == 0);
    int32_t top[5];
    double t5[7] = {0.1, 0.3, 0.3, 0.0, 0.2, 0.3, 0.0};
    lvd_knn_top5(t5, 7, top); /* ties to the lower class */
    CHECK(top[0] == 1 && top[1] == 2 && top[2] == 5 && top[3] == 4 && top[4] == 0);
    lvd_knn_top5(t5, 3, top);
    CHECK(top[0] == 1 && top[1] == 2 && top[2] == 0 && top[3] == -1 && top[4] == -1);

    /* The temperature picks the winner: the query e0 has one neighbour of class 0 at 0.9 and
     * two of class 1 at 0.85 and 0.84. At T = 0.07 class 1 weighs e^(-0.05/0.07) + e^(-0.06/0.07)
     * = 0.4895 + 0.4244 < 1 times class 0's: class 0 wins; at T = 1 class 1 wins. */
    float bank[4 * 3] = {0.9f,  (float)sqrt(1 - 0.81),    0, 0.85f, 0, (float)sqrt(1 - 0.7225),
                         0.84f, -(float)sqrt(1 - 0.7056), 0, -1,    0, 0};
    int32_t by[4] = {0, 1, 1, 2};
    float q[3] = {1, 0, 0};
    int32_t qy[1] = {1};
    lvd_knn_opts o;
    lvd_knn_opts_default(&o);
    o.n_ks = 3;
    o.ks[0] = 1;
    o.ks[1] = 3;
    o.ks[2] = 10;
    lvd_knn_result res[3];
    int32_t pred[3 * 5];
    lvd_error err;
    CHECK(lvd_knn_eval(bank, by, 4, q, qy, 1, 3, 3, &o, res, pred, &err) == 0);
    CHECK(pred[0] == 0 && pred[5] == 0 && res[0].correct1 == 0 && res[1].correct1 == 0);
    CHECK(res[1].correct5 == 1 && res[2].k_used == 4 && res[2].k == 10);
    o.temperature = 1.0f;
    CHECK(lvd_knn_eval(bank, by, 4, q, qy, 1, 3, 3, &o, res, pred, &err) == 0);
    CHECK(pred[0] == 0 && pred[5] == 1 && res[1].correct1 == 1 && res[1].top1 == 100.0);
    /* k = 10 > 4 rows: all four vote; the class-2 row at sim -1 adds a little. */
    CHECK(pred[10] == 1 && pred[11] == 0 && pred[12] == 2);
}

/* Every k, top-1 and top-5 of every row against the reference. exact: no near-tie allowed. */
static void compare_ks(const float *bank, const int32_t *by, const float *q, const int32_t *qy,
                       const int *ks, int plain, int exact, double min_top1, const char *what)
{
    lvd_knn_opts o;
    lvd_knn_opts_default(&o);
    o.n_ks = MAXKS;
    memcpy(o.ks, ks, MAXKS * sizeof *ks);
    lvd_knn_result res[MAXKS];
    int32_t *pred = malloc((size_t)NQ * MAXKS * 5 * sizeof *pred);
    lvd_error err;
    CHECK_MSG(lvd_knn_eval(bank, by, NB, q, qy, NQ, DIM, NCLS, &o, res, pred, &err) == 0, "%s",
              err.msg);
    int64_t c1[MAXKS] = {0}, c5[MAXKS] = {0}, sure1[MAXKS] = {0}, sure5[MAXKS] = {0};
    int n_fragile = 0, mismatches = 0;
    for (int i = 0; i < NQ; i++) {
        int32_t rp[MAXKS * 5];
        int fragile;
        reference(bank, by, NB, q + i * DIM, DIM, ks, MAXKS, (double)o.temperature, plain, rp,
                  &fragile);
        n_fragile += fragile;
        for (int t = 0; t < MAXKS; t++) {
            int h1 = rp[t * 5] == qy[i], h5 = 0;
            for (int r = 0; r < 5; r++)
                h5 |= rp[t * 5 + r] == qy[i];
            c1[t] += h1;
            c5[t] += h5;
            if (!fragile) {
                sure1[t] += pred[(i * MAXKS + t) * 5] == qy[i];
                int p5 = 0;
                for (int r = 0; r < 5; r++)
                    p5 |= pred[(i * MAXKS + t) * 5 + r] == qy[i];
                sure5[t] += p5;
                sure1[t] -= h1;
                sure5[t] -= h5;
                if (memcmp(rp + t * 5, pred + (i * MAXKS + t) * 5, 5 * sizeof *rp) != 0)
                    mismatches++;
            }
        }
    }
    CHECK_MSG(mismatches == 0, "%s: %d top-5 lists differ from the reference", what, mismatches);
    if (exact) {
        CHECK_MSG(n_fragile == 0, "%s: %d near-ties", what, n_fragile);
        for (int t = 0; t < MAXKS; t++) {
            CHECK_MSG(res[t].correct1 == c1[t] && res[t].correct5 == c5[t],
                      "%s k=%d: %lld/%lld against %lld/%lld", what, ks[t],
                      (long long)res[t].correct1, (long long)res[t].correct5, (long long)c1[t],
                      (long long)c5[t]);
            CHECK(fabs(res[t].top1 - 100.0 * (double)c1[t] / NQ) < 1e-9);
        }
    } else {
        CHECK_MSG(n_fragile <= NQ / 20, "%s: %d near-ties", what, n_fragile);
        for (int t = 0; t < MAXKS; t++)
            CHECK(sure1[t] == 0 && sure5[t] == 0 && llabs(res[t].correct1 - c1[t]) <= n_fragile);
    }
    for (int t = 0; t < MAXKS; t++)
        CHECK(res[t].k == ks[t] && res[t].k_used == (ks[t] < NB ? ks[t] : NB) && res[t].n == NQ);
    /* Clustered data: the classifier must beat chance by far at k = 10. */
    CHECK_MSG(res[4].top1 >= min_top1, "%s: top-1 %.1f at k = 10", what, res[4].top1);
    free(pred);
}

static void compare(const float *bank, const int32_t *by, const float *q, const int32_t *qy,
                    int plain, int exact, double min_top1, const char *what)
{
    compare_ks(bank, by, q, qy, ks_all, plain, exact, min_top1, what);
    compare_ks(bank, by, q, qy, ks_small, plain, exact, min_top1, what);
}

/* Chunk sizes and thread counts: bitwise the same predictions and results. */
static void test_chunks(const float *bank, const int32_t *by, const float *q, const int32_t *qy)
{
    static const int64_t chunks[][2] = {{1024, 8192}, {1, 1}, {7, 13}, {64, 5}, {3, 149}};
    lvd_knn_opts o;
    lvd_knn_opts_default(&o);
    o.n_ks = MAXKS;
    memcpy(o.ks, ks_small, sizeof ks_small);
    lvd_knn_result base[MAXKS], res[MAXKS];
    size_t np = (size_t)NQ * MAXKS * 5;
    int32_t *p0 = malloc(np * sizeof *p0), *p = malloc(np * sizeof *p);
    lvd_error err;
    CHECK(lvd_knn_eval(bank, by, NB, q, qy, NQ, DIM, NCLS, &o, base, p0, &err) == 0);
    int threads = omp_get_max_threads();
    for (int c = 0; c < 5; c++)
        for (int t = 1; t <= 2; t++) {
            o.query_chunk = chunks[c][0];
            o.bank_chunk = chunks[c][1];
            omp_set_num_threads(t == 1 ? 1 : 3);
            memset(p, 0xff, np * sizeof *p);
            CHECK(lvd_knn_eval(bank, by, NB, q, qy, NQ, DIM, NCLS, &o, res, p, &err) == 0);
            CHECK_MSG(memcmp(p, p0, np * sizeof *p) == 0 && memcmp(res, base, sizeof res) == 0,
                      "chunks %lld x %lld, %d threads", (long long)chunks[c][0],
                      (long long)chunks[c][1], t == 1 ? 1 : 3);
        }
    omp_set_num_threads(threads);
    free(p0);
    free(p);
}

/* Neighbour order: (sim desc, row asc), exactly, over all rows and in blocks. */
static void test_neighbours(const float *bank, const float *q)
{
    lvd_knn_opts o;
    lvd_knn_opts_default(&o);
    o.query_chunk = 5;
    o.bank_chunk = 11;
    double *sims = malloc((size_t)NQ * NB * sizeof *sims);
    int64_t *ids = malloc((size_t)NQ * NB * sizeof *ids);
    lvd_error err;
    CHECK(lvd_knn_neighbours(bank, NB, q, NQ, DIM, NB, &o, sims, ids, &err) == 0);
    int bad = 0, ties = 0;
    for (int i = 0; i < NQ; i++) {
        ref_nb all[NB];
        for (int b = 0; b < NB; b++) {
            double s = 0;
            for (int j = 0; j < DIM; j++)
                s += (double)bank[b * DIM + j] * q[i * DIM + j];
            all[b] = (ref_nb){s, b};
        }
        qsort(all, NB, sizeof *all, cmp_nb);
        for (int j = 0; j < NB; j++) {
            bad += ids[(size_t)i * NB + j] != all[j].i || sims[(size_t)i * NB + j] != all[j].s;
            ties += j > 0 && all[j].s == all[j - 1].s;
        }
    }
    CHECK_MSG(bad == 0, "%d neighbours out of order", bad);
    CHECK(ties > NQ); /* the quantized data tie a lot */
    /* K = 3 in blocks of 2 bank rows keeps the same three first. */
    o.bank_chunk = 2;
    double s3[NQ * 3];
    int64_t i3[NQ * 3];
    CHECK(lvd_knn_neighbours(bank, NB, q, NQ, DIM, 3, &o, s3, i3, &err) == 0);
    for (int i = 0; i < NQ; i++)
        for (int j = 0; j < 3; j++)
            CHECK(i3[i * 3 + j] == ids[(size_t)i * NB + j]);
    free(sims);
    free(ids);
}

static void test_errors(const float *bank, const int32_t *by, const float *q, const int32_t *qy)
{
    lvd_knn_opts o;
    lvd_knn_opts_default(&o);
    lvd_knn_result res[LVD_KNN_MAX_KS];
    lvd_error err;
    float *b2 = malloc(NB * DIM * sizeof *b2);
    memcpy(b2, bank, NB * DIM * sizeof *b2);
    for (int j = 0; j < DIM; j++)
        b2[5 * DIM + j] *= 1.1f;
    CHECK(lvd_knn_eval(b2, by, NB, q, qy, NQ, DIM, NCLS, &o, res, NULL, &err) == -1 &&
          strstr(err.msg, "bank row 5 is not a unit vector"));
    free(b2);
    CHECK(lvd_knn_eval(bank, by, NB, q, qy, NQ, DIM, NCLS - 1, &o, res, NULL, &err) == -1 &&
          strstr(err.msg, "label"));
    o.ks[1] = 0;
    CHECK(lvd_knn_eval(bank, by, NB, q, qy, NQ, DIM, NCLS, &o, res, NULL, &err) == -1 &&
          strstr(err.msg, "at least 1"));
    lvd_knn_opts_default(&o);
    o.temperature = 0;
    CHECK(lvd_knn_eval(bank, by, NB, q, qy, NQ, DIM, NCLS, &o, res, NULL, &err) == -1);
    lvd_knn_opts_default(&o);
    CHECK(lvd_knn_eval(bank, by, 0, q, qy, NQ, DIM, NCLS, &o, res, NULL, &err) == -1);
    CHECK(lvd_knn_neighbours(bank, NB, q, NQ, DIM, NB + 1, &o, NULL, NULL, &err) == -1);
}

int main(void)
{
    float *bank = malloc(NB * DIM * sizeof *bank), *q = malloc(NQ * DIM * sizeof *q);
    int32_t by[NB], qy[NQ];
    test_hand();
    make_quantized(bank, by, q, qy);
    compare(bank, by, q, qy, 0, 1, 50.0, "quantized");
    compare(bank, by, q, qy, 1, 0, 50.0, "quantized, plain softmax");
    test_chunks(bank, by, q, qy);
    test_neighbours(bank, q);
    test_errors(bank, by, q, qy);
    make_gaussian(bank, by, q, qy);
    compare(bank, by, q, qy, 0, 1, 50.0, "gaussian");
    compare(bank, by, q, qy, 1, 0, 50.0, "gaussian, plain softmax");
    test_chunks(bank, by, q, qy);
    make_nearties(bank, by, q, qy);
    CHECK(count_nearties(bank, q) > NQ * 100);
    compare(bank, by, q, qy, 0, 1, 0.0, "near-ties");
    test_chunks(bank, by, q, qy);
    free(bank);
    free(q);
    return check_finish();
}
