/* bench_dedup: near-duplicate components of n synthetic embeddings (k-NN graph, union-find) with
 * lvd's index/ module, the way a curation stage runs it: the index chosen for a memory budget,
 * trained on a sample, filled and linked chunk by chunk. Reports time per phase, peak memory,
 * dedup quality against the planted duplicates, and search throughput through lvd's wrapper
 * versus raw FAISS C calls on the same index.
 *
 * Data: rows around 4096 topics (cosine about 0.25 within a topic); every fifth row is a planted
 * near-duplicate (cosine 0.9) of one of the four rows before it, so the ideal result keeps 80%. */
#include "index/index.h"
#include "bench/planted.h"

#include <faiss/c_api/Index_c.h>
#include <faiss/c_api/error_c.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

typedef struct config {
    int64_t n;
    int d;
    int queries;
    size_t budget;
    const char *factory;
    int faiss_method;
    int64_t search_rows;
    lvd_dedup_options opt;
} config;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU seconds of all threads: a fairer figure than wall time on a shared, loaded machine. */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double peak_mib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

/* Quality against the planted structure, where row i's component root should be its parent
 * (planted duplicate) or itself: missed duplicates, and rows merged with an unplanted row. */
static void report_quality(int64_t n, const int64_t *root)
{
    int64_t planted = 0, found = 0, kept = 0, false_merges = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t p = planted_parent(i);
        kept += root[i] == i;
        planted += p >= 0;
        found += p >= 0 && root[i] == root[p];
        false_merges += root[i] < (p >= 0 ? p : i);
    }
    printf("kept %lld of %lld rows (ideal %lld); planted duplicates joined %lld / %lld (%.2f%%); "
           "rows merged beyond their planted pair %lld\n",
           (long long)kept, (long long)n, (long long)(n - planted), (long long)found,
           (long long)planted, planted ? 100.0 * (double)found / (double)planted : 100.0,
           (long long)false_merges);
}

/* One search of q queries, through lvd (raw = 0) or straight to FAISS; stores its wall and CPU
 * seconds in t[0] and t[1]. */
static int time_search(lvd_index *ix, int raw, int64_t q, const float *x, int k, float *sims,
                       int64_t *ids, double *t, lvd_error *err)
{
    double w0 = now(), c0 = cpu_now();
    if (!raw && lvd_index_search(ix, q, x, k, 0, sims, ids, err))
        return -1;
    if (raw && faiss_Index_search(lvd_index_faiss(ix), q, x, k, sims, ids))
        return lvd_fail(err, "raw faiss_Index_search: %s", faiss_get_last_error());
    t[0] = now() - w0;
    t[1] = cpu_now() - c0;
    return 0;
}

/* Times wrapper and raw FAISS searches of the same queries (pool rows from the middle, so the
 * wrapper's unit-norm check passes), alternating which goes first; best of five each, in wall
 * and in CPU time (steadier when other jobs share the machine). */
static int compare_search(lvd_index *ix, const float *pool, int64_t rows, const config *cfg,
                          lvd_error *err)
{
    int64_t q = cfg->queries < rows / 2 ? cfg->queries : rows / 2;
    int k = cfg->opt.k;
    const float *x = pool + (size_t)(rows / 2) * cfg->d;
    float *sims = malloc((size_t)q * k * sizeof *sims);
    int64_t *ids = malloc((size_t)q * k * sizeof *ids);
    int rc = sims && ids ? 0 : lvd_fail(err, "out of memory for the search comparison");
    double best[2][2] = {{1e30, 1e30}, {1e30, 1e30}}; /* [lvd, raw][wall, cpu] */
    for (int rep = 0; rc == 0 && rep < 10; rep++) {
        int raw = rep % 2;
        double t[2];
        rc = time_search(ix, raw, q, x, k, sims, ids, t, err);
        for (int j = 0; rc == 0 && j < 2; j++)
            best[raw][j] = t[j] < best[raw][j] ? t[j] : best[raw][j];
    }
    if (rc == 0)
        printf("search %lld queries, k %d: lvd %.0f q/s, raw FAISS %.0f q/s; lvd/raw time ratio "
               "%.3f wall, %.3f CPU\n",
               (long long)q, k, (double)q / best[0][0], (double)q / best[1][0],
               best[0][0] / best[1][0], best[0][1] / best[1][1]);
    free(sims);
    free(ids);
    return rc;
}

/* Builds the index lvd_index_choose picks for the budget (or --factory) over the first `rows`
 * rows of x. */
static int build_index(lvd_index **ix, const float *x, int64_t rows, const config *cfg,
                       lvd_error *err)
{
    char factory[64];
    if (cfg->factory)
        snprintf(factory, sizeof factory, "%s", cfg->factory);
    else if (lvd_index_choose(rows, cfg->d, cfg->budget, factory, sizeof factory, err))
        return -1;
    if (lvd_index_create(ix, cfg->d, factory, err))
        return -1;
    size_t nlist = lvd_index_nlist(*ix);
    size_t nprobe = cfg->opt.nprobe < nlist ? cfg->opt.nprobe : nlist;
    if (lvd_index_train_sample(*ix, x, rows, err) || lvd_index_add(*ix, rows, x, err) ||
        (nlist && lvd_index_set_nprobe(*ix, nprobe, err)))
        return -1;
    printf("search index %s over %lld rows, nprobe %zu\n", factory, (long long)rows,
           nlist ? nprobe : 0);
    return 0;
}

/* The dedup itself: lvd_dedup_ivf, or lvd_dedup through a FAISS index (--method faiss). */
static int dedup(const float *x, const config *cfg, int64_t *root, lvd_error *err)
{
    if (cfg->faiss_method)
        return lvd_dedup(x, cfg->n, cfg->d, cfg->factory, cfg->budget, &cfg->opt, root, err);
    return lvd_dedup_ivf(x, cfg->n, cfg->d, &cfg->opt, root, err);
}

/* Search comparison on an index over the first --search-rows rows. */
static int search_phase(const float *x, const config *cfg, lvd_error *err)
{
    int64_t rows = cfg->search_rows < cfg->n ? cfg->search_rows : cfg->n;
    lvd_index *ix = NULL;
    int rc = build_index(&ix, x, rows, cfg, err);
    if (rc == 0)
        rc = compare_search(ix, x, rows, cfg, err);
    if (rc == 0)
        printf("peak RSS with the search index %.0f MiB\n", peak_mib());
    lvd_index_free(ix);
    return rc;
}

static int run(const config *cfg, lvd_error *err)
{
    float *x = malloc((size_t)cfg->n * cfg->d * sizeof *x);
    int64_t *root = malloc((size_t)cfg->n * sizeof *root);
    int rc = x && root ? 0 : lvd_fail(err, "out of memory for %lld rows", (long long)cfg->n);
    printf("n %lld, d %d, k %d, threshold %.2f, method %s, nprobe %zu\n", (long long)cfg->n, cfg->d,
           cfg->opt.k, cfg->opt.threshold,
           cfg->faiss_method ? "lvd_dedup (FAISS index)" : "lvd_dedup_ivf (sgemm lists)",
           cfg->opt.nprobe);
    double t0 = now();
    if (rc == 0 && planted_rows(x, cfg->n, cfg->d))
        rc = lvd_fail(err, "out of memory for the topics");
    double t1 = now(), c1 = cpu_now();
    if (rc == 0)
        rc = dedup(x, cfg, root, err);
    double t2 = now(), c2 = cpu_now();
    if (rc == 0) {
        printf("generate %.1f s; dedup %.1f s wall, %.1f s CPU (%.0f rows/s); peak RSS %.0f MiB\n",
               t1 - t0, t2 - t1, c2 - c1, (double)cfg->n / (t2 - t1), peak_mib());
        fflush(stdout);
        report_quality(cfg->n, root);
        rc = search_phase(x, cfg, err);
    }
    free(x);
    free(root);
    return rc;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench_dedup [--n ROWS] [--d DIM] [--k K] [--threshold T] [--nprobe P]\n"
            "                   [--nlist L] [--method ivf|faiss] [--budget-mb MB]\n"
            "                   [--factory STRING] [--queries Q] [--search-rows R]\n"
            "Near-duplicate components of ROWS synthetic unit embeddings (default 100000 x 384,\n"
            "k 64, threshold 0.6, nprobe 16). --method ivf (default): lvd_dedup_ivf, lists by\n"
            "sgemm (nlist 0 = automatic); --method faiss: lvd_dedup through the FAISS index\n"
            "lvd_index_choose picks for the budget (default 3072 MB) or --factory. Then search\n"
            "throughput of lvd's wrapper vs raw FAISS C calls on such an index over the first R\n"
            "rows (default 100000; Q = 10000 queries).\n"
            "Prints time, peak RSS and recall of the planted duplicates. OMP_NUM_THREADS and\n"
            "OPENBLAS_NUM_THREADS bound the threads.\n");
}

static int parse(int argc, char **argv, config *cfg)
{
    static const struct option opts[] = {{"n", required_argument, 0, 'n'},
                                         {"d", required_argument, 0, 'd'},
                                         {"k", required_argument, 0, 'k'},
                                         {"threshold", required_argument, 0, 't'},
                                         {"nprobe", required_argument, 0, 'p'},
                                         {"budget-mb", required_argument, 0, 'b'},
                                         {"factory", required_argument, 0, 'f'},
                                         {"queries", required_argument, 0, 'q'},
                                         {"method", required_argument, 0, 'm'},
                                         {"search-rows", required_argument, 0, 's'},
                                         {"nlist", required_argument, 0, 'l'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'n':
            cfg->n = atoll(optarg);
            break;
        case 'd':
            cfg->d = atoi(optarg);
            break;
        case 'k':
            cfg->opt.k = atoi(optarg);
            break;
        case 't':
            cfg->opt.threshold = (float)atof(optarg);
            break;
        case 'p':
            cfg->opt.nprobe = (size_t)atoll(optarg);
            break;
        case 'b':
            cfg->budget = (size_t)atoll(optarg) << 20;
            break;
        case 'f':
            cfg->factory = optarg;
            break;
        case 'm':
            if (strcmp(optarg, "faiss") && strcmp(optarg, "ivf"))
                return -1;
            cfg->faiss_method = strcmp(optarg, "faiss") == 0;
            break;
        case 's':
            cfg->search_rows = atoll(optarg);
            break;
        case 'l':
            cfg->opt.nlist = atoll(optarg);
            break;
        case 'q':
            cfg->queries = atoi(optarg);
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            return -1;
        }
    }
    return optind == argc && cfg->n > 0 && cfg->d > 0 && cfg->opt.k > 0 && cfg->queries > 0 &&
                   cfg->search_rows > 1 && cfg->budget > 0
               ? 0
               : -1;
}

int main(int argc, char **argv)
{
    config cfg = {.n = 100000,
                  .d = 384,
                  .queries = 10000,
                  .budget = (size_t)3072 << 20,
                  .search_rows = 100000};
    lvd_dedup_options_default(&cfg.opt);
    if (parse(argc, argv, &cfg)) {
        fprintf(stderr, "bench_dedup: bad arguments (positive numbers expected); see --help\n");
        return 2;
    }
    lvd_error err = {0};
    if (run(&cfg, &err)) {
        fprintf(stderr, "bench_dedup: %s\n", err.msg);
        return 1;
    }
    return 0;
}
