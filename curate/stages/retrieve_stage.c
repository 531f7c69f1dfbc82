/* The retrieval stage of curate/stages/retrieve_stage.h: seed rows, sample-based and cluster-based
 * retrieval and the one transaction of curated rows. */
#include "curate/stages/retrieve_stage.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "curate/stages/embeddings_read.h"
#include "curate/stages/index_stage.h"
#include "curate/stages/kmeans_group.h"
#include "index/index.h"

void lvd_retrieve_stage_defaults(lvd_retrieve_stage_options *o)
{
    memset(o, 0, sizeof *o);
    o->per_seed = 4;
    o->min_seeds = 3;
    o->per_cluster = 100;
    o->niter = 20;
    o->seed = 1234;
    o->redo = 3;
    o->memory_budget = LVD_STAGE_MEMORY_BUDGET;
    o->nprobe = LVD_STAGE_NPROBE;
}

static const lvd_kit_rows pool_rows = {
    .join = "JOIN dedup d ON d.model_id = ?1 AND d.image_id = e.image_id",
    .where = "d.kept = 1",
};

/* Tag = the seed's source id. */
static const lvd_kit_rows seed_rows = {
    .where = "s.role = 'seed' AND (?2 = 0 OR i.source_id = ?2)",
    .tag = "i.source_id",
};

/* One row of `curated`; 0 / -1 / NaN stand for NULL seed, rank / cluster, similarity. */
typedef struct curated_row {
    int64_t image_id, source_id, seed_image_id, rank;
    const char *method;
    float sim;
    int32_t cluster;
} curated_row;

typedef struct row_list {
    curated_row *rows;
    int64_t n, cap;
} row_list;

static int push(row_list *l, curated_row r, lvd_error *err)
{
    if (l->n == l->cap) {
        int64_t c = l->cap ? l->cap * 2 : 1024;
        curated_row *p = realloc(l->rows, (size_t)c * sizeof *p);
        if (!p)
            return lvd_fail(err, "retrieve: out of memory for %lld rows", (long long)c);
        l->rows = p;
        l->cap = c;
    }
    l->rows[l->n++] = r;
    return 0;
}

static int add_seed_rows(const lvd_embeddings *seeds, row_list *l, lvd_error *err)
{
    for (int64_t q = 0; q < seeds->n; q++)
        if (push(l,
                 (curated_row){seeds->image_id[q], seeds->tag[q], seeds->image_id[q], 0, "seed",
                               NAN, -1},
                 err))
            return -1;
    return 0;
}

/* Sample-based retrieval: the per_seed nearest kept pool images of every seed. */
static int retrieve_knn(const lvd_embeddings *pool, const lvd_embeddings *seeds,
                        const lvd_retrieve_stage_options *o, row_list *l,
                        lvd_retrieve_stage_counts *counts, lvd_error *err)
{
    int k = o->per_seed < pool->n ? o->per_seed : (int)pool->n;
    size_t nk = (size_t)seeds->n * (size_t)k;
    float *sims = malloc(nk * sizeof *sims);
    int64_t *ids = malloc(nk * sizeof *ids);
    uint32_t *hits = calloc((size_t)pool->n, sizeof *hits);
    lvd_index *ix = NULL;
    int rc = -1;
    if (!sims || !ids || !hits) {
        lvd_fail(err, "retrieve: out of memory for %lld seeds", (long long)seeds->n);
        goto done;
    }
    if (lvd_stage_build_index(pool->x, pool->n, pool->dim, o->factory, o->memory_budget, o->nprobe,
                              &ix, NULL, 0, err) ||
        lvd_index_search(ix, seeds->n, seeds->x, k, 16384, sims, ids, err))
        goto done;
    rc = 0;
    for (size_t i = 0; i < nk && rc == 0; i++) {
        if (ids[i] < 0)
            continue;
        int64_t q = (int64_t)(i / (size_t)k);
        hits[ids[i]]++;
        rc = push(l,
                  (curated_row){pool->image_id[ids[i]], seeds->tag[q], seeds->image_id[q],
                                (int64_t)(i % (size_t)k) + 1, "knn", sims[i], -1},
                  err);
        counts->knn_rows++;
    }
    for (int64_t i = 0; i < pool->n; i++) {
        counts->knn_images += hits[i] > 0;
        counts->collisions += hits[i] > 1;
    }
done:
    lvd_index_free(ix);
    free(sims);
    free(ids);
    free(hits);
    return rc;
}

/* k-means of the kept pool: each pool row's and each seed's cluster, pool rows' similarity. */
typedef struct clustering {
    int32_t *pool_cluster, *seed_cluster;
    float *pool_sim;
} clustering;

static void clustering_free(clustering *c)
{
    free(c->pool_cluster);
    free(c->seed_cluster);
    free(c->pool_sim);
}

/* k-means restarted with seeds seed, seed + 1, ...: Lloyd iterations cannot leave a bad random
 * start (two centroids in one cluster, one for two), so the run whose centroids give the
 * highest total similarity of the pool to its nearest centroid wins (FAISS's nredo). Every rank
 * of the group runs this alike (kmeans_group.h), ending with the best centroids and every pool
 * row's cluster and similarity to them. */
static int pool_kmeans(const float *x, const stage_kjob *job, const lvd_kmeans_group *g,
                       float *best, int32_t *cluster, float *sim, lvd_error *err)
{
    int k = (int)job->k[0], d = (int)job->d;
    size_t size = (size_t)k * (size_t)d * sizeof *best;
    float *centroids = malloc(size);
    if (!centroids)
        return lvd_fail(err, "retrieve: out of memory for %d clusters", k);
    double best_total = -INFINITY;
    int rc = 0;
    for (int r = 0; rc == 0 && r < job->redo; r++) {
        rc = lvd_kmeans_lloyd(x, job->n, d, k, (int)job->niter, (int)job->seed + r,
                              (int)job->float64, g, centroids, err);
        if (rc == 0)
            rc = lvd_kmeans_assign_group(centroids, k, d, x, job->n, g, cluster, sim, err);
        double total = 0.0;
        for (int64_t i = 0; rc == 0 && i < job->n; i++)
            total += sim[i];
        if (rc == 0 && total > best_total) {
            best_total = total;
            memcpy(best, centroids, size);
        }
    }
    if (rc == 0)
        rc = lvd_kmeans_assign_group(best, k, d, x, job->n, g, cluster, sim, err);
    free(centroids);
    return rc;
}

static int cluster_pool(const lvd_embeddings *pool, const lvd_embeddings *seeds,
                        const lvd_retrieve_stage_options *o, clustering *c, lvd_error *err)
{
    if (o->clusters > pool->n)
        return lvd_fail(err, "--clusters %d: more than the %lld kept pool images", o->clusters,
                        (long long)pool->n);
    stage_kgroup kg;
    if (stage_kgroup_init(&kg, err))
        return -1;
    const stage_kjob job = {.op = STAGE_KJOB_CLUSTERS,
                            .n = pool->n,
                            .d = pool->dim,
                            .levels = 1,
                            .k = {o->clusters},
                            .niter = o->niter,
                            .seed = o->seed,
                            .redo = o->redo,
                            .float64 = o->float64};
    c->pool_cluster = malloc((size_t)pool->n * sizeof *c->pool_cluster);
    c->pool_sim = malloc((size_t)pool->n * sizeof *c->pool_sim);
    c->seed_cluster = malloc((size_t)seeds->n * sizeof *c->seed_cluster);
    float *best = malloc((size_t)o->clusters * (size_t)pool->dim * sizeof *best);
    int rc = -1;
    if (!best || !c->pool_cluster || !c->pool_sim || !c->seed_cluster) {
        lvd_fail(err, "retrieve: out of memory for %d clusters", o->clusters);
    } else if (kg.dist.size > 1 && stage_kjob_send(&kg, &job, pool->x, err)) {
        stage_kgroup_failed(&kg, "lvd-retrieve", err);
    } else if (pool_kmeans(pool->x, &job, &kg.g, best, c->pool_cluster, c->pool_sim, err)) {
        stage_kgroup_failed(&kg, "lvd-retrieve", err);
    } else {
        rc = lvd_kmeans_assign(best, o->clusters, pool->dim, seeds->x, seeds->n, c->seed_cluster,
                               NULL, err);
    }
    free(best);
    return rc;
}

/* A pick of one seed source: pool row, its cluster, similarity to the centroid, rank. */
typedef struct pick {
    int64_t row, image_id, rank;
    int32_t cluster;
    float sim;
} pick;

static int cmp_in_cluster(const void *a, const void *b)
{
    const pick *x = a, *y = b;
    if (x->cluster != y->cluster)
        return x->cluster < y->cluster ? -1 : 1;
    if (x->sim != y->sim)
        return x->sim > y->sim ? -1 : 1;
    return (x->image_id > y->image_id) - (x->image_id < y->image_id);
}

static int cmp_by_rank(const void *a, const void *b)
{
    const pick *x = a, *y = b;
    if (x->rank != y->rank)
        return x->rank < y->rank ? -1 : 1;
    if (x->sim != y->sim)
        return x->sim > y->sim ? -1 : 1;
    return (x->image_id > y->image_id) - (x->image_id < y->image_id);
}

/* Ranks the selected rows within their clusters, applies the cap and appends the rows. */
static int add_picks(const lvd_embeddings *pool, const clustering *c, const uint8_t *selected,
                     int64_t n_sel, int64_t source_id, const lvd_retrieve_stage_options *o,
                     row_list *l, lvd_retrieve_stage_counts *counts, lvd_error *err)
{
    pick *p = malloc((size_t)(n_sel > 0 ? n_sel : 1) * sizeof *p);
    if (!p)
        return lvd_fail(err, "retrieve: out of memory for %lld picks", (long long)n_sel);
    int64_t n = 0;
    for (int64_t i = 0; i < pool->n; i++)
        if (selected[i])
            p[n++] = (pick){i, pool->image_id[i], 0, c->pool_cluster[i], c->pool_sim[i]};
    qsort(p, (size_t)n, sizeof *p, cmp_in_cluster);
    for (int64_t i = 0; i < n; i++) {
        int first = i == 0 || p[i].cluster != p[i - 1].cluster;
        p[i].rank = first ? 1 : p[i - 1].rank + 1;
        counts->clusters_used += first;
    }
    if (o->cap > 0 && n > o->cap) {
        qsort(p, (size_t)n, sizeof *p, cmp_by_rank);
        n = o->cap;
    }
    int rc = 0;
    for (int64_t i = 0; i < n && rc == 0; i++)
        rc = push(l,
                  (curated_row){p[i].image_id, source_id, 0, p[i].rank, "cluster", p[i].sim,
                                p[i].cluster},
                  err);
    counts->cluster_rows += n;
    free(p);
    return rc;
}

/* Cluster-based retrieval, one seed source at a time (seeds of a source share a tag). */
static int retrieve_clusters(const lvd_embeddings *pool, const lvd_embeddings *seeds,
                             const lvd_retrieve_stage_options *o, row_list *l,
                             lvd_retrieve_stage_counts *counts, lvd_error *err)
{
    clustering c = {0};
    uint8_t *selected = malloc((size_t)pool->n);
    int32_t *source_seeds = malloc((size_t)seeds->n * sizeof *source_seeds);
    uint8_t *done = calloc((size_t)seeds->n, 1);
    int rc = -1;
    if (!selected || !source_seeds || !done) {
        lvd_fail(err, "retrieve: out of memory");
        goto out;
    }
    if (cluster_pool(pool, seeds, o, &c, err))
        goto out;
    rc = 0;
    for (int64_t q = 0; q < seeds->n && rc == 0; q++) {
        if (done[q])
            continue;
        int64_t n_src = 0;
        for (int64_t r = q; r < seeds->n; r++)
            if (seeds->tag[r] == seeds->tag[q]) {
                source_seeds[n_src++] = c.seed_cluster[r];
                done[r] = 1;
            }
        int64_t n_sel;
        rc = lvd_retrieve_clusters(o->clusters, c.pool_cluster, c.pool_sim, pool->n, source_seeds,
                                   n_src, o->min_seeds, o->per_cluster, selected, &n_sel, err);
        if (rc == 0)
            rc = add_picks(pool, &c, selected, n_sel, seeds->tag[q], o, l, counts, err);
    }
out:
    clustering_free(&c);
    free(selected);
    free(source_seeds);
    free(done);
    return rc;
}

static void bind_row(sqlite3_stmt *st, int64_t model_id, int64_t run, const curated_row *r)
{
    sqlite3_bind_int64(st, 1, model_id);
    sqlite3_bind_int64(st, 2, r->image_id);
    sqlite3_bind_int64(st, 3, r->source_id);
    sqlite3_bind_text(st, 4, r->method, -1, SQLITE_STATIC);
    if (r->seed_image_id)
        sqlite3_bind_int64(st, 5, r->seed_image_id);
    else
        sqlite3_bind_null(st, 5);
    if (r->rank)
        sqlite3_bind_int64(st, 6, r->rank);
    else
        sqlite3_bind_null(st, 6);
    if (isnan(r->sim))
        sqlite3_bind_null(st, 7);
    else
        sqlite3_bind_double(st, 7, r->sim);
    if (r->cluster >= 0)
        sqlite3_bind_int(st, 8, r->cluster);
    else
        sqlite3_bind_null(st, 8);
    sqlite3_bind_int64(st, 9, run);
}

/* Replaces the model's curated rows (of seed source source_id only, when not 0). */
static int write_rows(lvd_manifest *m, int64_t model_id, int64_t source_id, int64_t run,
                      const row_list *l, lvd_retrieve_stage_counts *counts, lvd_error *err)
{
    sqlite3_stmt *del = NULL, *ins = NULL, *cnt = NULL;
    if (lvd_manifest_begin(m, err))
        return -1;
    int rc = -1;
    if (lvd_manifest_prepare(m,
                             "DELETE FROM curated WHERE model_id = ?1 AND method <> "
                             "'hkmeans' AND (?2 = 0 OR source_id = ?2)",
                             &del, err) ||
        lvd_manifest_prepare(m,
                             "INSERT INTO curated (model_id, image_id, source_id, method, "
                             "seed_image_id, rank, similarity, cluster, run_id) VALUES (?1, "
                             "?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                             &ins, err) ||
        lvd_manifest_prepare(m, "SELECT COUNT(DISTINCT image_id) FROM curated WHERE model_id = ?1",
                             &cnt, err))
        goto done;
    sqlite3_bind_int64(del, 1, model_id);
    sqlite3_bind_int64(del, 2, source_id);
    if (sqlite3_step(del) != SQLITE_DONE)
        goto sql_fail;
    for (int64_t i = 0; i < l->n; i++) {
        bind_row(ins, model_id, run, &l->rows[i]);
        if (sqlite3_step(ins) != SQLITE_DONE)
            goto sql_fail;
        sqlite3_reset(ins);
    }
    sqlite3_bind_int64(cnt, 1, model_id);
    if (sqlite3_step(cnt) != SQLITE_ROW)
        goto sql_fail;
    counts->curated = sqlite3_column_int64(cnt, 0);
    rc = lvd_manifest_commit(m, err);
    goto done;
sql_fail:
    lvd_manifest_fail(m, err, "recording the curated set");
done:
    sqlite3_finalize(del);
    sqlite3_finalize(ins);
    sqlite3_finalize(cnt);
    if (rc)
        lvd_manifest_rollback(m);
    return rc;
}

static int retrieve(lvd_manifest *m, const lvd_retrieve_stage_options *o, int64_t model_id, int dim,
                    int64_t source_id, int64_t run, lvd_retrieve_stage_counts *counts,
                    lvd_error *err)
{
    lvd_embeddings pool, seeds = {0};
    row_list l = {0};
    int rc = -1;
    if (lvd_embeddings_read(m, model_id, &pool_rows, NULL, 0, dim, &pool, err))
        return -1;
    if (lvd_embeddings_read(m, model_id, &seed_rows, &source_id, 1, dim, &seeds, err))
        goto done;
    counts->pool = pool.n;
    counts->seeds = seeds.n;
    if (pool.n == 0)
        lvd_fail(err, "model '%s' has no kept pool images: run lvd-dedup first", o->model);
    else if (seeds.n == 0)
        lvd_fail(err, "model '%s' has no embeddings of seed images", o->model);
    else if (add_seed_rows(&seeds, &l, err) == 0 &&
             (o->per_seed == 0 || retrieve_knn(&pool, &seeds, o, &l, counts, err) == 0) &&
             (o->clusters == 0 || retrieve_clusters(&pool, &seeds, o, &l, counts, err) == 0))
        rc = write_rows(m, model_id, source_id, run, &l, counts, err);
done:
    free(l.rows);
    lvd_embeddings_free(&pool);
    lvd_embeddings_free(&seeds);
    return rc;
}

static cJSON *params_json(const lvd_retrieve_stage_options *o)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model", o->model);
    if (o->seed_source)
        cJSON_AddStringToObject(j, "seed_source", o->seed_source);
    cJSON_AddNumberToObject(j, "per_seed", o->per_seed);
    cJSON_AddNumberToObject(j, "clusters", o->clusters);
    cJSON_AddNumberToObject(j, "min_seeds", (double)o->min_seeds);
    cJSON_AddNumberToObject(j, "per_cluster", (double)o->per_cluster);
    cJSON_AddNumberToObject(j, "cap", (double)o->cap);
    cJSON_AddNumberToObject(j, "niter", o->niter);
    cJSON_AddNumberToObject(j, "seed", o->seed);
    cJSON_AddNumberToObject(j, "redo", o->redo);
    if (o->float64)
        cJSON_AddBoolToObject(j, "float64", 1);
    if (o->factory)
        cJSON_AddStringToObject(j, "factory", o->factory);
    return j;
}

static cJSON *counts_json(const lvd_retrieve_stage_counts *c)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "pool", (double)c->pool);
    cJSON_AddNumberToObject(j, "seeds", (double)c->seeds);
    cJSON_AddNumberToObject(j, "knn_rows", (double)c->knn_rows);
    cJSON_AddNumberToObject(j, "knn_images", (double)c->knn_images);
    cJSON_AddNumberToObject(j, "collisions", (double)c->collisions);
    cJSON_AddNumberToObject(j, "cluster_rows", (double)c->cluster_rows);
    cJSON_AddNumberToObject(j, "clusters_used", (double)c->clusters_used);
    cJSON_AddNumberToObject(j, "curated", (double)c->curated);
    return j;
}

int lvd_retrieve_stage_run(lvd_manifest *m, const lvd_retrieve_stage_options *o,
                           lvd_retrieve_stage_counts *counts, lvd_error *err)
{
    memset(counts, 0, sizeof *counts);
    if (o->per_seed < 0 || o->clusters < 0 || o->min_seeds < 0 || o->per_cluster < 1 ||
        o->cap < 0 || o->niter < 1 || o->redo < 1)
        return lvd_fail(err, "retrieve: invalid options");
    int64_t model_id, source_id, run;
    int dim;
    if (lvd_embeddings_model(m, o->model, &model_id, &dim, err) ||
        lvd_source_find(m, o->seed_source, LVD_ROLE_SEED, &source_id, NULL, err) ||
        lvd_kit_run_start(m, "retrieve", params_json(o), &run, err))
        return -1;
    int rc = retrieve(m, o, model_id, dim, source_id, run, counts, err);
    return lvd_kit_run_finish(m, run, rc, NULL, counts_json(counts), err);
}

int lvd_retrieve_stage_follow(lvd_error *err)
{
    stage_kgroup kg;
    if (stage_kgroup_init(&kg, err))
        return -1;
    for (;;) {
        stage_kjob job;
        float *x;
        if (stage_kjob_next(&kg, &job, &x, err))
            return stage_kgroup_failed(&kg, "lvd-retrieve", err);
        if (job.op == STAGE_KJOB_END)
            return 0;
        int rc = -1;
        if (job.op == STAGE_KJOB_HIERARCHICAL) {
            rc = lvd_hkmeans_stage_follow(&job, x, &kg.g, err);
        } else {
            size_t k = (size_t)job.k[0];
            float *best = malloc(k * (size_t)job.d * sizeof *best);
            int32_t *cluster = malloc((size_t)job.n * sizeof *cluster);
            float *sim = malloc((size_t)job.n * sizeof *sim);
            rc = best && cluster && sim ? pool_kmeans(x, &job, &kg.g, best, cluster, sim, err)
                                        : lvd_fail(err, "retrieve: out of memory");
            free(best);
            free(cluster);
            free(sim);
        }
        free(x);
        if (rc)
            return stage_kgroup_failed(&kg, "lvd-retrieve", err);
    }
}
