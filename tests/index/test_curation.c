/* The curation core on planted structure: near-duplicate groups, a chain joined only through its
 * middle row and a pair just below the threshold give exact expected components and kept rows;
 * decontamination, sample- and cluster-based retrieval and k-means are checked against the
 * construction or a brute-force oracle. */
#include "index/index.h"
#include "tests/check.h"
#include "tests/index/synth.h"

#include <stdlib.h>
#include <string.h>

#define D      128
#define N      2000
#define GROUPS 60
#define SEED   7

typedef struct pool {
    float *x;
    int64_t *want_root; /* smallest row id of the planted group */
    int64_t group_row;  /* a row of a planted near-duplicate group */
    int64_t chain[3];   /* a, b = a + c normalized, c: only b links a and c */
    int64_t single[2];  /* rows in no group */
} pool;

static float *row(const pool *p, int64_t i)
{
    return p->x + (size_t)i * D;
}

/* A fixed-seed shuffle of 0 .. N - 1, so group members land at scattered ids. */
static void shuffle(int64_t *perm)
{
    for (int64_t i = 0; i < N; i++)
        perm[i] = i;
    for (int64_t i = N - 1; i > 0; i--) {
        int64_t j = (int64_t)(synth_uniform(SEED, (uint64_t)i, 99) * (double)(i + 1));
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

/* Marks rows slots[0 .. n) as one group in want_root (root = smallest id). */
static void set_group(pool *p, const int64_t *slots, int n)
{
    int64_t root = slots[0];
    for (int i = 1; i < n; i++)
        root = slots[i] < root ? slots[i] : root;
    for (int i = 0; i < n; i++)
        p->want_root[slots[i]] = root;
}

static void build_pool(pool *p)
{
    p->x = malloc((size_t)N * D * sizeof *p->x);
    p->want_root = malloc(N * sizeof *p->want_root);
    int64_t perm[N];
    shuffle(perm);
    for (int64_t i = 0; i < N; i++) {
        synth_unit(row(p, i), D, SEED, (uint64_t)i); /* singletons unless overwritten */
        p->want_root[i] = i;
    }
    int64_t next = 0;
    float base[D];
    for (int g = 0; g < GROUPS; g++) { /* sizes 2, 3, 4, 5: pairwise cosine about 0.94 */
        int size = 2 + g % 4;
        synth_unit(base, D, SEED + 1, (uint64_t)g);
        for (int m = 0; m < size; m++)
            synth_at_cos(row(p, perm[next + m]), base, D, 0.97, SEED + 2, (uint64_t)(next + m));
        set_group(p, perm + next, size);
        next += size;
    }
    p->group_row = perm[0];
    /* Chain: a and c are random (cosine near 0), b halfway has cosine about 0.71 to both. */
    memcpy(p->chain, perm + next, sizeof p->chain);
    float *b = row(p, p->chain[1]);
    for (int j = 0; j < D; j++)
        b[j] = row(p, p->chain[0])[j] + row(p, p->chain[2])[j];
    synth_normalize(b, D);
    set_group(p, p->chain, 3);
    next += 3;
    /* A pair at cosine 0.55, just below the 0.6 threshold: two components. */
    synth_at_cos(row(p, perm[next + 1]), row(p, perm[next]), D, 0.55, SEED + 3, 0);
    next += 2;
    p->single[0] = perm[next];
    p->single[1] = perm[next + 1];
}

static int64_t count_mismatch(const int64_t *a, const int64_t *b, int64_t n)
{
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++)
        bad += a[i] != b[i];
    return bad;
}

static void test_dedup_full(const pool *p, int64_t *root)
{
    lvd_dedup_options opt;
    lvd_dedup_options_default(&opt);
    lvd_error err = {0};
    CHECK(lvd_dedup(p->x, N, D, "Flat", 0, &opt, root, &err) == 0);
    CHECK_MSG(count_mismatch(root, p->want_root, N) == 0, "Flat: %lld rows in a wrong component",
              (long long)count_mismatch(root, p->want_root, N));
    /* 60 groups of 2..5 rows (210 rows) keep 60; the chain keeps 1 of 3. */
    int64_t kept = 0, want_kept = N - (GROUPS / 4) * (2 + 3 + 4 + 5) + GROUPS - 2;
    for (int64_t i = 0; i < N; i++)
        kept += root[i] == i;
    CHECK_MSG(kept == want_kept, "kept %lld rows, want %lld", (long long)kept,
              (long long)want_kept);

    /* Automatic choice (Flat at this size) and an IVF index probing every list are exact too. */
    int64_t *other = malloc(N * sizeof *other);
    CHECK(lvd_dedup(p->x, N, D, NULL, (size_t)1 << 30, &opt, other, &err) == 0);
    CHECK(count_mismatch(other, p->want_root, N) == 0);
    opt.nprobe = 8;
    CHECK(lvd_dedup(p->x, N, D, "IVF8,Flat", 0, &opt, other, &err) == 0);
    CHECK_MSG(count_mismatch(other, p->want_root, N) == 0, "IVF8,Flat: %lld rows differ (%s)",
              (long long)count_mismatch(other, p->want_root, N), err.msg);
    /* The sgemm list-by-list path: exact when every list is probed. */
    opt.nlist = 8;
    CHECK(lvd_dedup_ivf(p->x, N, D, &opt, other, &err) == 0);
    CHECK_MSG(count_mismatch(other, p->want_root, N) == 0, "dedup ivf, all lists: %lld rows differ",
              (long long)count_mismatch(other, p->want_root, N));
    /* Probing fewer lists can only miss edges (the k cap never binds here): a finer partition. */
    opt.nprobe = 2;
    CHECK(lvd_dedup_ivf(p->x, N, D, &opt, other, &err) == 0);
    int64_t coarser = 0;
    for (int64_t i = 0; i < N; i++)
        coarser += p->want_root[other[i]] != p->want_root[i];
    CHECK(coarser == 0);
    opt.nlist = N + 1;
    CHECK(lvd_dedup_ivf(p->x, N, D, &opt, other, &err) == -1);
    CHECK(lvd_dedup(p->x, N, D, "NoSuchIndex", 0, &opt, other, &err) == -1);
    CHECK(strstr(err.msg, "NoSuchIndex") != NULL);
    free(other);
}

/* Rows added in two steps, linked step by step, give the full run's components. */
static void test_dedup_incremental(const pool *p)
{
    const int64_t first = 1200;
    int spans = 0;
    for (int64_t i = first; i < N; i++)
        spans += p->want_root[i] < first;
    CHECK_MSG(spans > 0, "no planted group spans both steps; the test would prove nothing");

    lvd_dedup_options opt;
    lvd_dedup_options_default(&opt);
    lvd_error err = {0};
    lvd_index *ix = NULL;
    lvd_components c = {0};
    int64_t *root = malloc(N * sizeof *root);
    CHECK(lvd_index_create(&ix, D, "Flat", &err) == 0);
    CHECK(lvd_index_add(ix, first, p->x, &err) == 0);
    CHECK(lvd_dedup_link(ix, p->x, 0, first, &opt, &c, &err) == 0);
    CHECK(lvd_index_add(ix, N - first, row(p, first), &err) == 0);
    CHECK(lvd_dedup_link(ix, row(p, first), first, N - first, &opt, &c, &err) == 0);
    CHECK(c.n == N);
    lvd_components_roots(&c, root);
    CHECK_MSG(count_mismatch(root, p->want_root, N) == 0, "incremental: %lld rows differ",
              (long long)count_mismatch(root, p->want_root, N));
    CHECK(lvd_dedup_link(ix, p->x, N - 5, 10, &opt, &c, &err) == -1);
    CHECK(lvd_components_grow(&c, 10, &err) == -1);
    lvd_components_free(&c);
    lvd_index_free(ix);
    free(root);
}

static void test_decontaminate(const pool *p, const int64_t *root)
{
    float eval[4 * D];
    synth_at_cos(eval, row(p, p->group_row), D, 0.9, SEED + 4, 0);         /* whole group */
    synth_at_cos(eval + D, row(p, p->single[0]), D, 0.5, SEED + 4, 1);     /* one row, 0.5 > 0.45 */
    synth_at_cos(eval + 2 * D, row(p, p->single[1]), D, 0.4, SEED + 4, 2); /* below: kept */
    synth_at_cos(eval + 3 * D, row(p, p->chain[2]), D, 0.6, SEED + 4, 3);  /* the whole chain */
    lvd_error err = {0};
    lvd_index *ix = NULL;
    CHECK(lvd_index_create(&ix, D, "Flat", &err) == 0);
    CHECK(lvd_index_add(ix, N, p->x, &err) == 0);
    uint8_t *removed = malloc(N);
    int64_t n_removed = -1, want_removed = 0, wrong = 0;
    CHECK(lvd_decontaminate(ix, root, eval, 4, 0.45f, removed, &n_removed, &err) == 0);
    for (int64_t i = 0; i < N; i++) {
        int want = p->want_root[i] == p->want_root[p->group_row] || i == p->single[0] ||
                   p->want_root[i] == p->want_root[p->chain[0]];
        want_removed += want;
        wrong += removed[i] != want;
    }
    CHECK_MSG(wrong == 0 && n_removed == want_removed, "%lld rows wrong, removed %lld of %lld",
              (long long)wrong, (long long)n_removed, (long long)want_removed);
    CHECK(want_removed >= 2 + 1 + 3);

    int64_t *bad = malloc(N * sizeof *bad);
    memcpy(bad, root, N * sizeof *bad);
    bad[5] = N + 3;
    CHECK(lvd_decontaminate(ix, bad, eval, 4, 0.45f, removed, &n_removed, &err) == -1);
    CHECK(strstr(err.msg, "root[5]") != NULL);
    free(bad);
    free(removed);
    lvd_index_free(ix);
}

/* Brute-force hit counts of sample retrieval. */
static void oracle_hits(const pool *p, const float *seeds, int n_seeds, int per_seed,
                        uint32_t *hits)
{
    memset(hits, 0, N * sizeof *hits);
    double *sim = malloc(N * sizeof *sim);
    for (int s = 0; s < n_seeds; s++) {
        for (int64_t i = 0; i < N; i++)
            sim[i] = synth_dot(row(p, i), seeds + (size_t)s * D, D);
        for (int r = 0; r < per_seed; r++) {
            int64_t best = -1;
            for (int64_t i = 0; i < N; i++)
                if (sim[i] > -2.0 && (best < 0 || sim[i] > sim[best]))
                    best = i;
            hits[best]++;
            sim[best] = -3.0;
        }
    }
    free(sim);
}

static void test_retrieve_nearest(const pool *p)
{
    enum { SEEDS = 32, PER_SEED = 4 };
    float seeds[SEEDS * D];
    const int64_t target = p->single[1];
    synth_at_cos(seeds, row(p, target), D, 0.95, SEED + 5, 0);
    synth_at_cos(seeds + D, row(p, target), D, 0.93, SEED + 5, 1);
    for (int s = 2; s < SEEDS; s++)
        synth_unit(seeds + (size_t)s * D, D, SEED + 6, (uint64_t)s);
    lvd_error err = {0};
    lvd_index *ix = NULL;
    CHECK(lvd_index_create(&ix, D, "Flat", &err) == 0);
    CHECK(lvd_index_add(ix, N, p->x, &err) == 0);
    uint32_t *hits = malloc(N * sizeof *hits), *want = malloc(N * sizeof *want);
    int64_t n_retrieved = 0, want_retrieved = 0;
    CHECK(lvd_retrieve_nearest(ix, seeds, SEEDS, PER_SEED, 5, hits, &n_retrieved, &err) == 0);
    oracle_hits(p, seeds, SEEDS, PER_SEED, want);
    for (int64_t i = 0; i < N; i++)
        want_retrieved += want[i] > 0;
    CHECK(memcmp(hits, want, N * sizeof *hits) == 0);
    CHECK(n_retrieved == want_retrieved);
    CHECK(hits[target] == 2); /* the collision planted above */
    CHECK(lvd_retrieve_nearest(ix, seeds, SEEDS, 0, 5, hits, &n_retrieved, &err) == -1);
    free(hits);
    free(want);
    lvd_index_free(ix);
}

/* Hand-made assignment: exact picks, tie broken by the lowest id, "more than" min_seeds. */
static void test_retrieve_clusters_rule(void)
{
    const int32_t pool_cluster[10] = {0, 1, 0, 2, 0, 0, 1, 0, 2, 1};
    const float pool_sim[10] = {0.9f, 0.5f, 0.8f, 0.7f, 0.95f, 0.8f, 0.6f, 0.1f, 0.7f, 0.4f};
    const int32_t seed_cluster[12] = {0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2};
    uint8_t selected[10];
    int64_t n_selected = 0;
    lvd_error err = {0};
    CHECK(lvd_retrieve_clusters(3, pool_cluster, pool_sim, 10, seed_cluster, 12, 3, 3, selected,
                                &n_selected, &err) == 0);
    /* Cluster 0 (4 seeds): 4 (0.95), 0 (0.9), then 2 and 5 tie at 0.8: 2. Cluster 1 has only 3
     * seeds. Cluster 2 (5 seeds) has two rows: both. */
    const uint8_t want[10] = {1, 0, 1, 1, 1, 0, 0, 0, 1, 0};
    CHECK(memcmp(selected, want, sizeof want) == 0 && n_selected == 5);
    const int32_t bad_seed[2] = {0, 3};
    CHECK(lvd_retrieve_clusters(3, pool_cluster, pool_sim, 10, bad_seed, 2, 0, 3, selected,
                                &n_selected, &err) == -1);
    CHECK(strstr(err.msg, "seed 1") != NULL);
}

/* k-means on well-separated clusters recovers them; cluster retrieval end to end. */
static void test_kmeans_clusters(void)
{
    enum { K = 6, PER = 150, M = 10 };
    const int64_t n = K * PER;
    float *x = malloc((size_t)n * D * sizeof *x), centers[K * D];
    for (int c = 0; c < K; c++)
        synth_unit(centers + c * D, D, SEED + 7, (uint64_t)c);
    for (int64_t i = 0; i < n; i++) /* row i belongs to cluster i % K */
        synth_at_cos(x + (size_t)i * D, centers + (i % K) * D, D, 0.8, SEED + 8, (uint64_t)i);
    float cent[K * D], again[K * D];
    lvd_error err = {0};
    CHECK(lvd_kmeans(x, n, D, K, 20, 1234, cent, &err) == 0);
    CHECK(lvd_kmeans(x, n, D, K, 20, 1234, again, &err) == 0);
    CHECK_MSG(memcmp(cent, again, sizeof cent) == 0, "k-means is not deterministic");
    for (int c = 0; c < K; c++)
        CHECK(fabs(synth_dot(cent + c * D, cent + c * D, D) - 1.0) < 1e-4);
    int32_t *cl = malloc(n * sizeof *cl);
    float *sim = malloc(n * sizeof *sim);
    CHECK(lvd_kmeans_assign(cent, K, D, x, n, cl, sim, &err) == 0);
    int32_t map[K]; /* true cluster -> k-means cluster, from the first row of each */
    int used[K] = {0}, pure = 1;
    for (int c = 0; c < K; c++) {
        map[c] = cl[c];
        used[cl[c]]++;
    }
    for (int64_t i = 0; i < n; i++)
        pure &= cl[i] == map[i % K] && used[cl[i]] == 1;
    CHECK_MSG(pure, "k-means did not recover the %d planted clusters", K);

    /* Seeds: 5 near true cluster 0, 4 near 1, 3 near 2 (not more than 3: not eligible). */
    const int seeds_per[3] = {5, 4, 3};
    float seeds[12 * D];
    int32_t seed_cl[12];
    int s = 0;
    for (int c = 0; c < 3; c++)
        for (int j = 0; j < seeds_per[c]; j++, s++)
            synth_at_cos(seeds + (size_t)s * D, centers + c * D, D, 0.85, SEED + 9, (uint64_t)s);
    CHECK(lvd_kmeans_assign(cent, K, D, seeds, 12, seed_cl, NULL, &err) == 0);
    uint8_t *selected = malloc(n);
    int64_t n_selected = 0;
    CHECK(lvd_retrieve_clusters(K, cl, sim, n, seed_cl, 12, 3, M, selected, &n_selected, &err) ==
          0);
    CHECK(n_selected == 2 * M);
    for (int c = 0; c < 2; c++) { /* every pick beats every non-pick of its cluster */
        float worst_in = 2.0f, best_out = -2.0f;
        int in = 0;
        for (int64_t i = c; i < n; i += K) {
            in += selected[i];
            if (selected[i] && sim[i] < worst_in)
                worst_in = sim[i];
            if (!selected[i] && sim[i] > best_out)
                best_out = sim[i];
        }
        CHECK_MSG(in == M && worst_in >= best_out, "cluster %d: %d picks, %g < %g", c, in, worst_in,
                  best_out);
    }
    CHECK(lvd_kmeans(x, 3, D, K, 20, 1, cent, &err) == -1);
    free(selected);
    free(cl);
    free(sim);
    free(x);
}

/* Hand-built two-level tree: the cap rule, its remainder and the level-0 picks are exact. */
static void test_hkmeans_sample_rule(void)
{
    /* Level-0 sizes: c0 6 rows, c1 1, c2 3, c3 2; c0, c1 under top 0 (7 rows), c2, c3 under 1. */
    int32_t rows_to_l0[12] = {0, 2, 0, 3, 0, 1, 0, 2, 0, 3, 0, 2};
    int32_t l0_to_l1[4] = {0, 0, 1, 1};
    float sim[12] = {0.5f, 0.9f, 0.7f, 0.3f, 0.7f, 0.2f, 0.1f, 0.8f, 0.6f, 0.4f, 0.9f, 0.95f};
    int k[2] = {4, 2};
    int32_t *parent[2] = {rows_to_l0, l0_to_l1};
    lvd_hkmeans h = {.levels = 2, .d = 1, .n = 12, .k = k, .parent = parent, .sim = sim};
    uint8_t selected[12];
    int64_t n_selected = 0;
    lvd_error err = {0};
    /* target 6: tops get 3 and 3 (cap 3). Top 0: c0 2, c1 1 (cap 2). Top 1: cap 1 plus one for
     * c2, the lowest cluster above the cap: c2 2, c3 1. c0's best: rows 10 (0.9), then 2 and 4
     * tie at 0.7: 2. c2's best: 11 (0.95), 1 (0.9). c3's best: 9 (0.4). */
    CHECK(lvd_hkmeans_sample(&h, 6, selected, &n_selected, &err) == 0);
    const uint8_t want6[12] = {0, 1, 1, 0, 0, 1, 0, 0, 0, 1, 1, 1};
    CHECK(n_selected == 6 && memcmp(selected, want6, sizeof want6) == 0);
    /* target 7: cap 3 with one left over for top 0 (4 = c0 3, c1 1), top 1 stays 3. */
    CHECK(lvd_hkmeans_sample(&h, 7, selected, &n_selected, &err) == 0);
    const uint8_t want7[12] = {0, 1, 1, 0, 1, 1, 0, 0, 0, 1, 1, 1};
    CHECK(n_selected == 7 && memcmp(selected, want7, sizeof want7) == 0);
    CHECK(lvd_hkmeans_sample(&h, 50, selected, &n_selected, &err) == 0);
    CHECK(n_selected == 12 && memchr(selected, 0, sizeof selected) == NULL);
    CHECK(lvd_hkmeans_sample(&h, -1, selected, &n_selected, &err) == -1);
}

/* A fitted hierarchy is well formed and samples its target. */
static void test_hkmeans_fit(void)
{
    enum { GROUPS_N = 8, PER = 60 };
    const int64_t n = GROUPS_N * PER;
    float *x = malloc((size_t)n * D * sizeof *x), center[D];
    for (int64_t i = 0; i < n; i++) {
        synth_unit(center, D, SEED + 10, (uint64_t)(i % GROUPS_N));
        synth_at_cos(x + (size_t)i * D, center, D, 0.8, SEED + 11, (uint64_t)i);
    }
    int k[3] = {16, 4, 2};
    lvd_hkmeans h;
    lvd_error err = {0};
    const lvd_hkmeans_opts opt = {10, 7, 0, 0, 0, NULL};
    CHECK(lvd_hkmeans_fit(x, n, D, k, 3, &opt, &h, &err) == 0);
    int ok = h.levels == 3;
    for (int l = 0; ok && l < 3; l++) {
        int64_t items = l == 0 ? n : k[l - 1];
        for (int64_t i = 0; i < items; i++)
            ok &= h.parent[l][i] >= 0 && h.parent[l][i] < k[l];
        for (int c = 0; c < k[l]; c++)
            ok &=
                fabs(synth_dot(h.centroids[l] + (size_t)c * D, h.centroids[l] + (size_t)c * D, D) -
                     1.0) < 1e-4;
    }
    CHECK_MSG(ok, "hierarchy is malformed");
    uint8_t *selected = malloc(n);
    int64_t n_selected = 0, count = 0;
    CHECK(lvd_hkmeans_sample(&h, 100, selected, &n_selected, &err) == 0);
    for (int64_t i = 0; i < n; i++)
        count += selected[i];
    CHECK(n_selected == 100 && count == 100);
    lvd_hkmeans_free(&h);
    const int bad[2] = {4, 8};
    CHECK(lvd_hkmeans_fit(x, n, D, bad, 2, &opt, &h, &err) == -1);
    CHECK(strstr(err.msg, "level 1") != NULL && h.levels == 0);
    free(selected);
    free(x);
}

/* Checks that every level-0 row sits in its most similar centroid with the recorded similarity,
 * and, when means is set, that each non-empty cluster's centroid is the normalized mean of its
 * rows (what Lloyd passes converge to). Returns 1 when all hold. */
static int hkmeans_consistent(const lvd_hkmeans *h, const float *x, int means)
{
    int ok = 1;
    const int d = h->d, k = h->k[0];
    for (int64_t i = 0; i < h->n; i++) {
        int best = 0;
        double best_sim = -2;
        for (int c = 0; c < k; c++) {
            double s = synth_dot(x + (size_t)i * d, h->centroids[0] + (size_t)c * d, d);
            if (s > best_sim) {
                best_sim = s;
                best = c;
            }
        }
        ok &= fabs(best_sim - h->sim[i]) < 1e-5 &&
              (h->parent[0][i] == best ||
               fabs(synth_dot(x + (size_t)i * d, h->centroids[0] + (size_t)h->parent[0][i] * d, d) -
                    best_sim) < 1e-6);
    }
    for (int c = 0; means && c < k; c++) {
        double mean[D] = {0}, n2 = 0;
        for (int64_t i = 0; i < h->n; i++)
            for (int j = 0; h->parent[0][i] == c && j < d; j++)
                mean[j] += x[(size_t)i * d + j];
        for (int j = 0; j < d; j++)
            n2 += mean[j] * mean[j];
        for (int j = 0; n2 > 0 && j < d; j++)
            ok &= fabs(mean[j] / sqrt(n2) - h->centroids[0][(size_t)c * d + j]) < 1e-5;
    }
    return ok;
}

/* Resampling steps and float64 centroid sums give consistent hierarchies; bad options fail. */
static void test_hkmeans_resample(void)
{
    enum { GROUPS_N = 6, PER = 40 };
    const int64_t n = GROUPS_N * PER;
    float *x = malloc((size_t)n * D * sizeof *x), center[D];
    for (int64_t i = 0; i < n; i++) {
        synth_unit(center, D, SEED + 20, (uint64_t)(i % GROUPS_N));
        synth_at_cos(x + (size_t)i * D, center, D, 0.8, SEED + 21, (uint64_t)i);
    }
    int k[2] = {12, 3};
    lvd_hkmeans h;
    lvd_error err = {0};
    const lvd_hkmeans_opts f64 = {10, 3, 0, 0, 1, NULL};
    CHECK(lvd_hkmeans_fit(x, n, D, k, 2, &f64, &h, &err) == 0);
    CHECK_MSG(h.levels == 2 && hkmeans_consistent(&h, x, 1), "float64 fit inconsistent");
    lvd_hkmeans_free(&h);
    const lvd_hkmeans_opts rs = {10, 3, 3, 4, 1, NULL};
    CHECK(lvd_hkmeans_fit(x, n, D, k, 2, &rs, &h, &err) == 0);
    CHECK_MSG(h.levels == 2 && hkmeans_consistent(&h, x, 0), "resampled fit inconsistent");
    for (int64_t c = 0; h.levels == 2 && c < k[0]; c++)
        CHECK(h.parent[1][c] >= 0 && h.parent[1][c] < k[1]);
    lvd_hkmeans_free(&h);
    const lvd_hkmeans_opts bad = {10, 3, 2, 0, 0, NULL};
    CHECK(lvd_hkmeans_fit(x, n, D, k, 2, &bad, &h, &err) == -1);
    CHECK(strstr(err.msg, "sample_size") != NULL && h.levels == 0);
    free(x);
}

static void test_components(void)
{
    lvd_components c = {0};
    lvd_error err = {0};
    CHECK(lvd_components_grow(&c, 6, &err) == 0);
    lvd_components_union(&c, 5, 3);
    lvd_components_union(&c, 4, 5);
    lvd_components_union(&c, 1, 0);
    int64_t root[6];
    lvd_components_roots(&c, root);
    const int64_t want[6] = {0, 0, 2, 3, 3, 3};
    CHECK(memcmp(root, want, sizeof want) == 0);
    CHECK(lvd_components_grow(&c, 8, &err) == 0 && lvd_components_find(&c, 7) == 7);
    lvd_components_free(&c);
    lvd_components_free(NULL);
}

int main(void)
{
    pool p;
    build_pool(&p);
    int64_t *root = malloc(N * sizeof *root);
    test_components();
    test_dedup_full(&p, root);
    test_dedup_incremental(&p);
    test_decontaminate(&p, root);
    test_retrieve_nearest(&p);
    test_retrieve_clusters_rule();
    test_kmeans_clusters();
    test_hkmeans_sample_rule();
    test_hkmeans_fit();
    test_hkmeans_resample();
    free(root);
    free(p.x);
    free(p.want_root);
    return check_finish();
}
