/* The FAISS wrapper: index choice rule, create / train / add / search / range search against a
 * brute-force oracle, nprobe, save / load round trip, and clear errors on bad input. */
#include "index/index.h"
#include "tests/check.h"
#include "tests/index/synth.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#define D  32
#define N  3000
#define NQ 50
#define K  5

static float *random_rows(int64_t n, uint64_t seed)
{
    float *x = malloc((size_t)n * D * sizeof *x);
    for (int64_t i = 0; i < n; i++)
        synth_unit(x + (size_t)i * D, D, seed, (uint64_t)i);
    return x;
}

static void check_choice(int64_t n, int d, size_t budget, const char *want)
{
    char got[64] = "";
    lvd_error err = {0};
    int rc = lvd_index_choose(n, d, budget, got, sizeof got, &err);
    CHECK_MSG(rc == 0 && strcmp(got, want) == 0, "n %lld d %d budget %zu: got \"%s\" (%s), want %s",
              (long long)n, d, budget, got, err.msg, want);
}

static void test_choose(void)
{
    check_choice(1000, 384, (size_t)1 << 30, "Flat");
    check_choice(65536, 384, (size_t)1 << 30, "Flat");
    check_choice(1000000, 384, (size_t)4 << 30, "IVF4096,Flat");
    check_choice(1000000, 384, (size_t)1 << 30, "IVF4096,PQ64");
    check_choice(70000, 16, (size_t)1 << 30, "IVF1024,Flat");
    check_choice(100000, 100, 10 * 1000 * 1000, "IVF1024,PQ50");
    /* Flat does not fit, so even a small set gets lists, lowered to 39 rows per list. */
    check_choice(1000, 384, 1000 * 1000, "IVF16,PQ64");
    char got[64];
    lvd_error err = {0};
    CHECK(lvd_index_choose(1000000, 384, 1 << 20, got, sizeof got, &err) == -1);
    CHECK(strstr(err.msg, "do not fit") != NULL);
    CHECK(lvd_index_choose(0, 384, 1 << 20, got, sizeof got, &err) == -1);
}

/* Brute-force top-K of query q over x, in double precision. */
static void oracle_topk(const float *x, int64_t n, const float *q, int64_t *ids)
{
    double best[K];
    for (int j = 0; j < K; j++) {
        best[j] = -2.0;
        ids[j] = -1;
    }
    for (int64_t i = 0; i < n; i++) {
        double s = synth_dot(x + (size_t)i * D, q, D);
        for (int j = 0; j < K; j++) {
            if (s > best[j]) {
                memmove(best + j + 1, best + j, (size_t)(K - 1 - j) * sizeof *best);
                memmove(ids + j + 1, ids + j, (size_t)(K - 1 - j) * sizeof *ids);
                best[j] = s;
                ids[j] = i;
                break;
            }
        }
    }
}

static void test_flat_search(const float *x, const float *q)
{
    lvd_error err = {0};
    lvd_index *ix = NULL;
    CHECK(lvd_index_create(&ix, D, "Flat", &err) == 0);
    if (!ix)
        return;
    CHECK(lvd_index_is_trained(ix) && lvd_index_nlist(ix) == 0 && lvd_index_dim(ix) == D);
    CHECK(lvd_index_add(ix, N / 2, x, &err) == 0);
    CHECK(lvd_index_add(ix, N - N / 2, x + (size_t)(N / 2) * D, &err) == 0);
    CHECK(lvd_index_count(ix) == N);
    float sims[NQ * K];
    int64_t ids[NQ * K];
    /* Batches of 7 queries must give what one call gives: the oracle's exact answer. */
    CHECK(lvd_index_search(ix, NQ, q, K, 7, sims, ids, &err) == 0);
    int exact = 1;
    for (int i = 0; i < NQ; i++) {
        int64_t want[K];
        oracle_topk(x, N, q + (size_t)i * D, want);
        for (int j = 0; j < K; j++) {
            exact &= ids[i * K + j] == want[j];
            exact &= fabs(sims[i * K + j] -
                          synth_dot(x + (size_t)want[j] * D, q + (size_t)i * D, D)) < 1e-5;
        }
    }
    CHECK_MSG(exact, "Flat search differs from brute force");
    /* k beyond the row count: the extra slots are empty. */
    lvd_index *small = NULL;
    CHECK(lvd_index_create(&small, D, "Flat", &err) == 0);
    CHECK(lvd_index_add(small, 3, x, &err) == 0);
    CHECK(lvd_index_search(small, 1, q, K, 0, sims, ids, &err) == 0);
    CHECK(ids[3] == -1 && ids[4] == -1 && isinf(sims[3]) && sims[3] < 0);
    CHECK(ids[0] >= 0 && ids[0] < 3);
    lvd_index_free(small);

    CHECK(lvd_index_set_nprobe(ix, 4, &err) == -1);
    CHECK(strstr(err.msg, "no inverted lists") != NULL);
    CHECK(lvd_index_search(ix, 1, q, 0, 0, sims, ids, &err) == -1);
    lvd_index_free(ix);
}

/* Range search returns exactly the rows above the threshold (Flat: exact). */
static void test_range_search(const float *x)
{
    lvd_error err = {0};
    lvd_index *ix = NULL;
    CHECK(lvd_index_create(&ix, D, "Flat", &err) == 0);
    CHECK(lvd_index_add(ix, N, x, &err) == 0);
    const float thr = 0.35f;
    lvd_range_result r;
    CHECK(lvd_index_range_search(ix, 20, x, thr, &r, &err) == 0);
    int64_t want_total = 0, matched = 0;
    for (int qi = 0; qi < 20; qi++) {
        for (int64_t i = 0; i < N; i++) {
            double s = synth_dot(x + (size_t)qi * D, x + (size_t)i * D, D);
            if (s <= thr + 1e-5 && s > thr - 1e-5)
                continue; /* too close to call in float */
            if (s > thr)
                want_total++;
            for (size_t h = r.lims[qi]; h < r.lims[qi + 1]; h++)
                if (r.ids[h] == i)
                    matched += s > thr ? 1 : -1000;
        }
    }
    CHECK(r.nq == 20);
    CHECK_MSG(want_total > 20 && matched == want_total, "range search: %lld of %lld rows matched",
              (long long)matched, (long long)want_total);
    lvd_range_result_free(&r);
    lvd_index_free(ix);
}

static int dir_entries(const char *dir)
{
    DIR *dp = opendir(dir);
    int count = 0;
    for (struct dirent *e = dp ? readdir(dp) : NULL; e; e = readdir(dp))
        count += e->d_name[0] != '.';
    if (dp)
        closedir(dp);
    return count;
}

static void test_ivf_save_load(const float *x, const float *q)
{
    lvd_error err = {0};
    lvd_index *ix = NULL;
    CHECK(lvd_index_create(&ix, D, "IVF16,Flat", &err) == 0);
    if (!ix)
        return;
    CHECK(!lvd_index_is_trained(ix) && lvd_index_nlist(ix) == 16);
    CHECK(lvd_index_add(ix, 10, x, &err) == -1);
    CHECK(strstr(err.msg, "not trained") != NULL);
    CHECK(lvd_index_train_sample(ix, x, N, &err) == 0);
    CHECK(lvd_index_add(ix, N, x, &err) == 0);
    CHECK(lvd_index_set_nprobe(ix, 17, &err) == -1);
    CHECK(lvd_index_set_nprobe(ix, 3, &err) == 0);
    float sims[NQ * K], sims2[NQ * K];
    int64_t ids[NQ * K], ids2[NQ * K];
    CHECK(lvd_index_search(ix, NQ, q, K, 0, sims, ids, &err) == 0);

    char dir[] = "/tmp/lvd-index-test-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256], bad[256];
    snprintf(path, sizeof path, "%s/pool.faiss", dir);
    snprintf(bad, sizeof bad, "%s/missing/pool.faiss", dir);
    CHECK(lvd_index_save(ix, path, &err) == 0);
    CHECK_MSG(dir_entries(dir) == 1, "save left a temporary file behind");
    CHECK(lvd_index_save(ix, bad, &err) == -1);
    CHECK(strstr(err.msg, "missing/pool.faiss") != NULL);

    lvd_index *back = NULL;
    CHECK(lvd_index_load(&back, path, &err) == 0);
    if (back) {
        CHECK(lvd_index_count(back) == N && lvd_index_dim(back) == D &&
              lvd_index_nlist(back) == 16);
        /* nprobe travels in the file, so results are identical. */
        CHECK(lvd_index_search(back, NQ, q, K, 0, sims2, ids2, &err) == 0);
        CHECK(memcmp(ids, ids2, sizeof ids) == 0 && memcmp(sims, sims2, sizeof sims) == 0);
        lvd_index_free(back);
    }
    FILE *f = fopen(path, "wb");
    fputs("not an index", f);
    fclose(f);
    CHECK(lvd_index_load(&back, path, &err) == -1 && back == NULL);
    CHECK(strstr(err.msg, path) != NULL);
    CHECK(lvd_index_load(&back, bad, &err) == -1);
    remove(path);
    remove(dir);
    lvd_index_free(ix);
}

static void test_bad_input(const float *x)
{
    lvd_error err = {0};
    lvd_index *ix = (lvd_index *)&err;
    CHECK(lvd_index_create(&ix, D, "IVF-bogus,Flat", &err) == -1);
    CHECK(ix == NULL);
    CHECK_MSG(strstr(err.msg, "IVF-bogus,Flat") != NULL && strlen(err.msg) > 40 &&
                  strchr(err.msg, '\n') == NULL,
              "message: %s", err.msg);
    CHECK(lvd_index_create(&ix, 0, "Flat", &err) == -1);

    CHECK(lvd_index_create(&ix, D, "Flat", &err) == 0);
    float row[D];
    memcpy(row, x, sizeof row);
    row[0] += 0.5f;
    CHECK(lvd_index_add(ix, 1, row, &err) == -1);
    CHECK(strstr(err.msg, "L2-normalized") != NULL);
    row[0] = NAN;
    CHECK(lvd_index_add(ix, 1, row, &err) == -1);
    CHECK(lvd_index_count(ix) == 0);
    memset(row, 0, sizeof row);
    CHECK(lvd_normalize_rows(row, 1, D, &err) == -1);
    row[3] = 2.0f;
    CHECK(lvd_normalize_rows(row, 1, D, &err) == 0 && row[3] == 1.0f);
    lvd_index_free(ix);
    lvd_index_free(NULL);
}

int main(void)
{
    float *x = random_rows(N, 11);
    float *q = random_rows(NQ, 12);
    test_choose();
    test_flat_search(x, q);
    test_range_search(x);
    test_ivf_save_load(x, q);
    test_bad_input(x);
    free(x);
    free(q);
    return check_finish();
}
