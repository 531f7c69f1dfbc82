/* Incremental dedup over a partition (lvd_dedup_ivf_run): a run extending a previous state equals
 * a full run over the same rows and centroids bitwise (lists, edges, roots), also when the k cap
 * binds (clusters larger than k, bitwise-identical rows whose ties only the key breaks) and old and
 * new rows are interleaved by key; the state survives a save / load round trip; a changed row, a
 * changed k or more than LVD_DEDUP_REFIT_GROWTH x growth make the run full; corrupt state files
 * are refused; planted near-copies are found as an exact search finds them, with no wrong merge;
 * decontamination over the partition equals the exact one when every list is searched. */
#include "index/index.h"
#include "tests/check.h"
#include "tests/index/synth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define D        128
#define N        12000
#define GROUPS   300 /* planted near-copy groups of 2 .. 4 rows, cosine 0.95 to their base */
#define BIG      3   /* clusters of BIG_SIZE rows at cosine 0.99: more neighbours than k */
#define BIG_SIZE 40
#define SEED     11

static float x[(size_t)N * D];
static int64_t key[N], group[N]; /* group: the planted group's first row, or the row itself */

static float *row(int64_t i)
{
    return x + (size_t)i * D;
}

/* Rows are random unit vectors (cosine about N(0, 1/128) between them, below 0.6) except the
 * planted ones, which sit at scattered rows (a fixed-seed shuffle). */
static void build(void)
{
    static int64_t perm[N];
    for (int64_t i = 0; i < N; i++) {
        perm[i] = i;
        synth_unit(row(i), D, SEED, (uint64_t)i);
        key[i] = 7 + 3 * i; /* image ids with gaps */
        group[i] = i;
    }
    for (int64_t i = N - 1; i > 0; i--) {
        int64_t j = (int64_t)(synth_uniform(SEED, (uint64_t)i, 1) * (double)(i + 1)), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    int64_t next = 0;
    float base[D];
    for (int g = 0; g < GROUPS + BIG; g++) {
        int size = g < GROUPS ? 2 + g % 3 : BIG_SIZE;
        double cos = g < GROUPS ? 0.95 : 0.99;
        synth_unit(base, D, SEED + 1, (uint64_t)g);
        int64_t first = perm[next];
        for (int m = 0; m < size; m++) {
            int64_t r = perm[next + m];
            first = r < first ? r : first;
            /* The last big cluster is bitwise-identical rows: only the key breaks sim ties. */
            if (g == GROUPS + BIG - 1 && m > 0)
                memcpy(row(r), row(perm[next]), D * sizeof(float));
            else
                synth_at_cos(row(r), base, D, cos, SEED + 2, (uint64_t)(next + m));
        }
        for (int m = 0; m < size; m++)
            group[perm[next + m]] = first;
        next += size;
    }
    /* Five bitwise-identical pairs. */
    for (int p = 0; p < 5; p++, next += 2) {
        memcpy(row(perm[next + 1]), row(perm[next]), D * sizeof(float));
        int64_t a = perm[next], b = perm[next + 1], first = a < b ? a : b;
        group[a] = group[b] = first;
    }
}

/* The rows kept by the first run: every row except one in five, chosen by a hash (interleaved). */
static int is_old(int64_t i)
{
    return synth_uniform(SEED, (uint64_t)i, 2) > 0.2;
}

static int64_t gather_old(float *xo, int64_t *ko)
{
    int64_t m = 0;
    for (int64_t i = 0; i < N; i++)
        if (is_old(i)) {
            memcpy(xo + (size_t)m * D, row(i), D * sizeof(float));
            ko[m++] = key[i];
        }
    return m;
}

static int same_state(const lvd_dedup_state *a, const lvd_dedup_state *b)
{
    if (a->n != b->n || a->nlist != b->nlist || a->nprobe != b->nprobe || a->k != b->k ||
        a->d != b->d || a->edge_start[a->n] != b->edge_start[b->n])
        return 0;
    size_t n = (size_t)a->n, e = (size_t)a->edge_start[a->n];
    return memcmp(a->centroids, b->centroids, (size_t)a->nlist * a->d * sizeof(float)) == 0 &&
           memcmp(a->key, b->key, n * 8) == 0 && memcmp(a->hash, b->hash, n * 8) == 0 &&
           memcmp(a->probe, b->probe, n * (size_t)a->nprobe * 4) == 0 &&
           memcmp(a->edge_start, b->edge_start, (n + 1) * 8) == 0 &&
           memcmp(a->edge_key, b->edge_key, e * 8) == 0 &&
           memcmp(a->edge_sim, b->edge_sim, e * 4) == 0;
}

/* Old rows (of prev) whose recorded edges lost at least one to a new row (the cap bound). */
static int64_t displaced(const lvd_dedup_state *prev, const lvd_dedup_state *now)
{
    int64_t count = 0, r = 0;
    for (int64_t p = 0; p < prev->n; p++) {
        while (now->key[r] != prev->key[p])
            r++;
        for (int64_t e = prev->edge_start[p]; e < prev->edge_start[p + 1]; e++) {
            int found = 0;
            for (int64_t f = now->edge_start[r]; f < now->edge_start[r + 1]; f++)
                found |= now->edge_key[f] == prev->edge_key[e];
            if (!found) {
                count++;
                break;
            }
        }
    }
    return count;
}

static void test_incremental_equals_full(const char *dir)
{
    static float xo[(size_t)N * D];
    static int64_t ko[N], root_old[N], root_inc[N], root_full[N], root_loaded[N];
    int64_t n_old = gather_old(xo, ko);
    lvd_dedup_options opt;
    lvd_dedup_options_default(&opt);
    opt.k = 8;
    opt.nlist = 64;
    opt.nprobe = 4;
    lvd_error err = {0};
    lvd_dedup_state a, inc, full, loaded, again;
    lvd_dedup_run_info info;
    CHECK(lvd_dedup_ivf_run(xo, ko, n_old, D, &opt, NULL, 0, &a, root_old, &info, &err) == 0);
    CHECK(info.retrained == 1 && info.incremental == 0 && info.new_rows == n_old);
    CHECK(lvd_dedup_ivf_run(x, key, N, D, &opt, &a, 0, &inc, root_inc, &info, &err) == 0);
    CHECK_MSG(info.incremental == 1 && info.retrained == 0, "not incremental: %s", info.why);
    CHECK(info.new_rows == N - n_old);
    CHECK(lvd_dedup_ivf_run(x, key, N, D, &opt, &a, 1, &full, root_full, &info, &err) == 0);
    CHECK(info.incremental == 0 && info.retrained == 0 && info.new_rows == N);
    CHECK_MSG(same_state(&inc, &full), "incremental state differs from the full run's");
    CHECK(memcmp(root_inc, root_full, sizeof root_inc) == 0);
    int64_t lost = displaced(&a, &inc);
    CHECK_MSG(lost > 0, "no old row lost an edge to a new one: the k cap was never exercised");
    printf("incremental: %lld of %lld rows new, %lld old rows had edges displaced, %lld edges\n",
           (long long)(N - n_old), (long long)N, (long long)lost, (long long)inc.edge_start[N]);

    /* Through the file: the loaded state extends the same way. */
    char path[512];
    snprintf(path, sizeof path, "%s/a.state", dir);
    CHECK(lvd_dedup_state_save(&a, path, &err) == 0);
    CHECK(lvd_dedup_state_load(path, &loaded, &err) == 0);
    CHECK(same_state(&a, &loaded));
    CHECK(lvd_dedup_ivf_run(x, key, N, D, &opt, &loaded, 0, &again, root_loaded, &info, &err) == 0);
    CHECK(info.incremental == 1 && same_state(&again, &inc));
    CHECK(memcmp(root_loaded, root_inc, sizeof root_inc) == 0);
    lvd_dedup_state_free(&again);

    /* A different k: every row is searched again, over the same partition. */
    opt.k = 9;
    CHECK(lvd_dedup_ivf_run(x, key, N, D, &opt, &a, 0, &again, root_loaded, &info, &err) == 0);
    CHECK(info.incremental == 0 && info.retrained == 0 && strstr(info.why, "k, threshold") != NULL);
    lvd_dedup_state_free(&again);
    opt.k = 8;

    /* A changed old row is a new row: the run is full, and still equals a full run. */
    float saved[D];
    int64_t victim = 0;
    while (!is_old(victim))
        victim++;
    memcpy(saved, row(victim), sizeof saved);
    synth_unit(row(victim), D, SEED + 9, 0);
    CHECK(lvd_dedup_ivf_run(x, key, N, D, &opt, &a, 0, &again, root_loaded, &info, &err) == 0);
    CHECK_MSG(info.incremental == 0 && strstr(info.why, "gone or changed") != NULL, "%s", info.why);
    lvd_dedup_state_free(&again);
    memcpy(row(victim), saved, sizeof saved);

    /* Beyond LVD_DEDUP_REFIT_GROWTH x the rows of the fit: the partition is fitted again. */
    CHECK(lvd_dedup_ivf_run(xo, ko, N / 5, D, &opt, NULL, 0, &again, root_loaded, &info, &err) ==
          0);
    lvd_dedup_state small = again;
    CHECK(lvd_dedup_ivf_run(x, key, N, D, &opt, &small, 0, &again, root_loaded, &info, &err) == 0);
    CHECK(info.retrained == 1 && info.incremental == 0);
    lvd_dedup_state_free(&small);
    lvd_dedup_state_free(&again);
    lvd_dedup_state_free(&a);
    lvd_dedup_state_free(&inc);
    lvd_dedup_state_free(&full);
    lvd_dedup_state_free(&loaded);
    unlink(path);
}

/* Writes len bytes of buf to path. */
static void write_file(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(buf, 1, len, f) == len);
    if (f)
        fclose(f);
}

static void test_corrupt_files(const char *dir)
{
    lvd_dedup_options opt;
    lvd_dedup_options_default(&opt);
    static int64_t root[N];
    lvd_dedup_state s, back;
    lvd_error err = {0};
    CHECK(lvd_dedup_ivf_run(x, key, 2000, D, &opt, NULL, 0, &s, root, NULL, &err) == 0);
    char path[512], bad[512];
    snprintf(path, sizeof path, "%s/s.state", dir);
    snprintf(bad, sizeof bad, "%s/bad.state", dir);
    CHECK(lvd_dedup_state_save(&s, path, &err) == 0);
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    fseek(f, 0, SEEK_END);
    size_t len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(len);
    CHECK(fread(buf, 1, len, f) == len);
    fclose(f);

    write_file(bad, buf, len - 1);
    CHECK(lvd_dedup_state_load(bad, &back, &err) == -1 && strstr(err.msg, "bytes") != NULL);
    write_file(bad, buf, 10);
    CHECK(lvd_dedup_state_load(bad, &back, &err) == -1 && strstr(err.msg, "too short") != NULL);
    buf[0] ^= 1;
    write_file(bad, buf, len);
    CHECK(lvd_dedup_state_load(bad, &back, &err) == -1 && strstr(err.msg, "not an lvd") != NULL);
    buf[0] ^= 1;
    /* The first list entry (after the header, centroids, keys and hashes) out of range. */
    size_t probe_at = 64 + (size_t)s.nlist * D * 4 + (size_t)s.n * 16;
    int32_t big = (int32_t)s.nlist, old;
    memcpy(&old, buf + probe_at, 4);
    memcpy(buf + probe_at, &big, 4);
    write_file(bad, buf, len);
    CHECK(lvd_dedup_state_load(bad, &back, &err) == -1 && strstr(err.msg, "out of range") != NULL);
    memcpy(buf + probe_at, &old, 4);
    /* A huge row count in the header. */
    int64_t huge = (int64_t)1 << 60;
    memcpy(buf + 48, &huge, 8);
    write_file(bad, buf, len);
    CHECK(lvd_dedup_state_load(bad, &back, &err) == -1);
    CHECK(lvd_dedup_state_load(path, &back, &err) == 0 && same_state(&s, &back));
    lvd_dedup_state_free(&back);
    CHECK(lvd_dedup_state_load("/nonexistent/state", &back, &err) == -1);
    /* Keys that do not ascend are refused by the run. */
    int64_t k2[3] = {5, 5, 6};
    CHECK(lvd_dedup_ivf_run(x, k2, 3, D, &opt, NULL, 0, &back, root, NULL, &err) == -1 &&
          strstr(err.msg, "ascending") != NULL);
    lvd_dedup_state_free(&s);
    lvd_dedup_state_free(&back);
    free(buf);
    unlink(path);
    unlink(bad);
}

/* Planted groups found by the partition with the default options (256 lists, 16 probed) against
 * an exact search (Flat), and no component mixing two planted groups. */
static void test_recall(void)
{
    static int64_t root[N], exact[N];
    lvd_dedup_options opt;
    lvd_dedup_options_default(&opt);
    lvd_error err = {0};
    lvd_dedup_state s;
    CHECK(lvd_dedup_ivf_run(x, key, N, D, &opt, NULL, 0, &s, root, NULL, &err) == 0);
    CHECK(s.nlist == 256 && s.nprobe == 16);
    CHECK(lvd_dedup(x, N, D, "Flat", 0, &opt, exact, &err) == 0);
    int64_t planted = 0, found = 0, by_exact = 0, wrong = 0;
    for (int64_t i = 0; i < N; i++) {
        wrong += group[root[i]] != group[i];
        if (group[i] == i)
            continue;
        planted++;
        found += root[i] == root[group[i]];
        by_exact += exact[i] == exact[group[i]];
    }
    printf("recall: %lld of %lld planted rows joined (exact search %lld), %lld wrong merges\n",
           (long long)found, (long long)planted, (long long)by_exact, (long long)wrong);
    CHECK(by_exact == planted);
    CHECK(found >= by_exact * 99 / 100);
    CHECK(wrong == 0);

    /* Decontamination: eval rows near planted pool rows and random ones; with every list
     * searched it equals the exact range search, with 16 of 256 it finds every planted copy. */
    enum { EVAL = 200 };
    static float ev[EVAL * D];
    for (int e = 0; e < EVAL; e++) {
        if (e % 2)
            synth_at_cos(ev + e * D, row((int64_t)e * 37), D, 0.9, SEED + 5, (uint64_t)e);
        else
            synth_unit(ev + e * D, D, SEED + 6, (uint64_t)e);
    }
    static uint8_t removed[N], want[N];
    static float best[N];
    int64_t n_removed = 0, n_want = 0;
    lvd_index *flat = NULL;
    CHECK(lvd_index_create(&flat, D, "Flat", &err) == 0 && lvd_index_add(flat, N, x, &err) == 0);
    CHECK(lvd_decontaminate(flat, root, ev, EVAL, 0.45f, want, &n_want, &err) == 0);
    CHECK(lvd_decontaminate_ivf(&s, x, root, ev, EVAL, 0.45f, removed, best, &n_removed, &err) ==
          0);
    int64_t planted_hit = 0;
    for (int e = 1; e < EVAL; e += 2)
        planted_hit += removed[(int64_t)e * 37];
    CHECK(planted_hit == EVAL / 2);
    CHECK(n_removed <= n_want && n_removed >= EVAL / 2);
    CHECK(best[37] > 0.45f && best[37] < 0.95f);
    lvd_dedup_state_free(&s);
    opt.nprobe = 256;
    CHECK(lvd_dedup_ivf_run(x, key, N, D, &opt, NULL, 0, &s, root, NULL, &err) == 0);
    CHECK(lvd_decontaminate(flat, root, ev, EVAL, 0.45f, want, &n_want, &err) == 0);
    CHECK(lvd_decontaminate_ivf(&s, x, root, ev, EVAL, 0.45f, removed, NULL, &n_removed, &err) ==
          0);
    CHECK(n_removed == n_want && memcmp(removed, want, N) == 0);
    lvd_index_free(flat);
    lvd_dedup_state_free(&s);
}

int main(void)
{
    char dir[] = "/tmp/lvd-dedup-state-XXXXXX";
    if (!mkdtemp(dir)) {
        fprintf(stderr, "cannot create a temporary folder\n");
        return 1;
    }
    build();
    test_incremental_equals_full(dir);
    test_corrupt_files(dir);
    test_recall();
    rmdir(dir);
    return check_finish();
}
