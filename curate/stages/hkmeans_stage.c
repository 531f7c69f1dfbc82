/* The hierarchical k-means stage of curate/stages/hkmeans_stage.h: the best of several fits, the
 * balanced sample and the one transaction of rows. */
#include "curate/stages/hkmeans_stage.h"
#include "curate/stages/kmeans_group.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "curate/stages/embeddings_read.h"
#include "index/index.h"

/* Tag = the image's own source (curated.source_id of an 'hkmeans' row). */
static const lvd_kit_rows pool_rows = {
    .join = "JOIN dedup d ON d.model_id = ?1 AND d.image_id = e.image_id",
    .where = "d.kept = 1",
    .tag = "i.source_id",
};

void lvd_hkmeans_stage_defaults(lvd_hkmeans_stage_options *o)
{
    memset(o, 0, sizeof *o);
    o->name = "hkmeans";
    o->niter = 20;
    o->seed = 1234;
    o->redo = 3;
    o->sample_size = 10;
}

int lvd_hkmeans_parse_clusters(const char *s, int *k, int max, int *levels, lvd_error *err)
{
    *levels = 0;
    const char *p = s;
    for (;;) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 1 || v > (1L << 24) || (*end != ',' && *end != '\0'))
            return lvd_fail(err, "--clusters '%s': expected K1,K2,... (integers 1 .. 16777216)", s);
        if (*levels == max)
            return lvd_fail(err, "--clusters '%s': more than %d levels", s, max);
        k[(*levels)++] = (int)v;
        if (*end == '\0')
            return 0;
        p = end + 1;
    }
}

static int check_options(const lvd_hkmeans_stage_options *o, lvd_error *err)
{
    if (!o->name || !*o->name || o->levels < 1 || o->levels > LVD_HKMEANS_MAX_LEVELS ||
        o->target < 1 || o->niter < 1 || o->redo < 1 || o->resample < 0 || o->sample_size < 1)
        return lvd_fail(err, "hkmeans: invalid options");
    for (int l = 0; l < o->levels; l++)
        if (o->k[l] < 1 || (l > 0 && o->k[l] > o->k[l - 1]))
            return lvd_fail(err, "hkmeans: clusters per level must be >= 1 and non-increasing");
    return 0;
}

/* Fails when name is a source's name: v_curated.dataset would mix the two. */
static int check_name(lvd_manifest *m, const char *name, lvd_error *err)
{
    int64_t id;
    int found;
    if (lvd_source_find(m, name, -1, &id, &found, err))
        return -1;
    if (found)
        return lvd_fail(err, "--name '%s' is the name of a source: choose another", name);
    return 0;
}

/* One picked pool row, ranked within its top-level cluster. */
typedef struct pick {
    int64_t row, image_id;
    int32_t top;
    float sim;
} pick;

static int cmp_pick(const void *a, const void *b)
{
    const pick *x = a, *y = b;
    if (x->top != y->top)
        return x->top < y->top ? -1 : 1;
    if (x->sim != y->sim)
        return x->sim > y->sim ? -1 : 1;
    return (x->image_id > y->image_id) - (x->image_id < y->image_id);
}

/* The fitted tree and each row's cluster at every level (levels x n). */
typedef struct fitted {
    lvd_hkmeans h;
    int32_t *assign;
    pick *picks;
    int64_t n_picks;
} fitted;

static void fitted_free(fitted *f)
{
    lvd_hkmeans_free(&f->h);
    free(f->assign);
    free(f->picks);
}

/* Each row's cluster at every level of h (levels x n). */
static void assign_levels(const lvd_hkmeans *h, int32_t *assign)
{
    size_t n = (size_t)h->n;
    for (int l = 0; l < h->levels; l++)
        for (size_t i = 0; i < n; i++)
            assign[(size_t)l * n + i] =
                h->parent[l][l == 0 ? (int64_t)i : assign[(size_t)(l - 1) * n + i]];
}

/* Total similarity of every row to its centroid at every level: the objective the restarts
 * compare, since a bad random start at any level leaves Lloyd iterations in a poor optimum. */
static double fit_score(const lvd_hkmeans *h, const float *x, const int32_t *assign)
{
    double total = 0.0;
    size_t n = (size_t)h->n;
    for (int l = 0; l < h->levels; l++)
        for (size_t i = 0; i < n; i++) {
            const float *c = h->centroids[l] + (size_t)assign[(size_t)l * n + i] * h->d;
            const float *r = x + i * h->d;
            for (int j = 0; j < h->d; j++)
                total += (double)c[j] * r[j];
        }
    return total;
}

/* The best of `redo` fits (seeds seed + r * LVD_HKMEANS_MAX_LEVELS, so no two fits share a
 * level seed) of the n x d rows x into f->h and f->assign, the work shared by the group g
 * (every rank of it runs this alike, kmeans_group.h). */
static int best_fit(const float *x, int64_t n, int d, const lvd_hkmeans_stage_options *o,
                    const lvd_kmeans_group *g, fitted *f, lvd_error *err)
{
    size_t size = (size_t)o->levels * (size_t)n * sizeof *f->assign;
    int32_t *assign = malloc(size);
    f->assign = malloc(size);
    if (!assign || !f->assign) {
        free(assign);
        return lvd_fail(err, "hkmeans: out of memory for %lld rows", (long long)n);
    }
    double best = -INFINITY;
    int rc = 0;
    for (int r = 0; r < o->redo && rc == 0; r++) {
        lvd_hkmeans h;
        lvd_hkmeans_opts ho = {o->niter,    o->seed + r * LVD_HKMEANS_MAX_LEVELS,
                               o->resample, o->sample_size,
                               o->float64,  g};
        rc = lvd_hkmeans_fit(x, n, d, o->k, o->levels, &ho, &h, err);
        if (rc)
            break;
        assign_levels(&h, assign);
        double score = fit_score(&h, x, assign);
        if (score > best) {
            best = score;
            lvd_hkmeans_free(&f->h);
            f->h = h;
            memcpy(f->assign, assign, size);
        } else {
            lvd_hkmeans_free(&h);
        }
    }
    free(assign);
    return rc;
}

static int fit_and_sample(const lvd_embeddings *pool, const lvd_hkmeans_stage_options *o, fitted *f,
                          lvd_hkmeans_stage_counts *counts, lvd_error *err)
{
    if (o->k[0] > pool->n)
        return lvd_fail(err, "--clusters %d at level 0: more than the %lld kept pool images",
                        o->k[0], (long long)pool->n);
    stage_kgroup kg;
    if (stage_kgroup_init(&kg, err))
        return -1;
    stage_kjob job = {.op = STAGE_KJOB_HIERARCHICAL,
                      .n = pool->n,
                      .d = pool->dim,
                      .levels = o->levels,
                      .niter = o->niter,
                      .seed = o->seed,
                      .redo = o->redo,
                      .resample = o->resample,
                      .sample_size = o->sample_size,
                      .float64 = o->float64};
    for (int l = 0; l < o->levels; l++)
        job.k[l] = o->k[l];
    if ((kg.dist.size > 1 && stage_kjob_send(&kg, &job, pool->x, err)) ||
        best_fit(pool->x, pool->n, pool->dim, o, &kg.g, f, err))
        return stage_kgroup_failed(&kg, "lvd-retrieve", err);
    size_t n = (size_t)pool->n;
    uint8_t *selected = malloc(n);
    int64_t *per_top = calloc((size_t)o->k[o->levels - 1], sizeof *per_top);
    f->picks = malloc(n * sizeof *f->picks);
    int rc = -1;
    if (!selected || !per_top || !f->picks) {
        lvd_fail(err, "hkmeans: out of memory for %lld rows", (long long)pool->n);
        goto done;
    }
    int64_t n_sel;
    if (lvd_hkmeans_sample(&f->h, o->target, selected, &n_sel, err))
        goto done;
    const int32_t *top = f->assign + (size_t)(o->levels - 1) * n;
    for (size_t i = 0; i < n; i++)
        if (selected[i]) {
            f->picks[f->n_picks++] = (pick){(int64_t)i, pool->image_id[i], top[i], f->h.sim[i]};
            per_top[top[i]]++;
        }
    qsort(f->picks, (size_t)f->n_picks, sizeof *f->picks, cmp_pick);
    counts->top_min = INT64_MAX;
    for (int c = 0; c < o->k[o->levels - 1]; c++) {
        counts->top_min = per_top[c] < counts->top_min ? per_top[c] : counts->top_min;
        counts->top_max = per_top[c] > counts->top_max ? per_top[c] : counts->top_max;
    }
    rc = 0;
done:
    free(selected);
    free(per_top);
    return rc;
}

static int insert_picks(sqlite3_stmt *ins, const lvd_embeddings *pool, const fitted *f,
                        int64_t model_id, int64_t run, const char *name)
{
    int64_t rank = 0;
    for (int64_t i = 0; i < f->n_picks; i++) {
        const pick *p = &f->picks[i];
        rank = i > 0 && p->top == f->picks[i - 1].top ? rank + 1 : 1;
        sqlite3_bind_int64(ins, 1, model_id);
        sqlite3_bind_int64(ins, 2, p->image_id);
        sqlite3_bind_int64(ins, 3, pool->tag[p->row]);
        sqlite3_bind_int64(ins, 4, rank);
        sqlite3_bind_double(ins, 5, p->sim);
        sqlite3_bind_int(ins, 6, p->top);
        sqlite3_bind_int64(ins, 7, run);
        sqlite3_bind_text(ins, 8, name, -1, SQLITE_STATIC);
        if (sqlite3_step(ins) != SQLITE_DONE)
            return -1;
        sqlite3_reset(ins);
    }
    return 0;
}

static int insert_assignments(sqlite3_stmt *ins, const lvd_embeddings *pool, const fitted *f,
                              int levels, int64_t model_id, int64_t run, const char *name)
{
    size_t n = (size_t)pool->n;
    for (int l = 0; l < levels; l++)
        for (size_t i = 0; i < n; i++) {
            sqlite3_bind_int64(ins, 1, model_id);
            sqlite3_bind_text(ins, 2, name, -1, SQLITE_STATIC);
            sqlite3_bind_int64(ins, 3, pool->image_id[i]);
            sqlite3_bind_int(ins, 4, l);
            sqlite3_bind_int(ins, 5, f->assign[(size_t)l * n + i]);
            sqlite3_bind_int64(ins, 6, run);
            if (sqlite3_step(ins) != SQLITE_DONE)
                return -1;
            sqlite3_reset(ins);
        }
    return 0;
}

static const char *const write_sql[] = {
    "DELETE FROM curated WHERE model_id = ?1 AND method = 'hkmeans' AND dataset = ?2",
    "DELETE FROM hkmeans WHERE model_id = ?1 AND dataset = ?2",
    "INSERT INTO curated (model_id, image_id, source_id, method, rank, similarity, cluster, "
    "run_id, dataset) VALUES (?1, ?2, ?3, 'hkmeans', ?4, ?5, ?6, ?7, ?8)",
    "INSERT INTO hkmeans (model_id, dataset, image_id, level, cluster, run_id) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
};

/* Replaces the curated rows and assignments of (model, name) in one transaction. */
static int write_rows(lvd_manifest *m, const lvd_embeddings *pool, const fitted *f,
                      const lvd_hkmeans_stage_options *o, int64_t model_id, int64_t run,
                      lvd_error *err)
{
    sqlite3_stmt *st[4] = {0};
    if (lvd_manifest_begin(m, err))
        return -1;
    int rc = -1;
    for (int i = 0; i < 4; i++)
        if (lvd_manifest_prepare(m, write_sql[i], &st[i], err))
            goto done;
    for (int i = 0; i < 2; i++) {
        sqlite3_bind_int64(st[i], 1, model_id);
        sqlite3_bind_text(st[i], 2, o->name, -1, SQLITE_STATIC);
        if (sqlite3_step(st[i]) != SQLITE_DONE) {
            lvd_manifest_fail(m, err, "replacing the hkmeans rows");
            goto done;
        }
    }
    if (insert_picks(st[2], pool, f, model_id, run, o->name) ||
        insert_assignments(st[3], pool, f, o->levels, model_id, run, o->name)) {
        lvd_manifest_fail(m, err, "recording the hkmeans rows");
        goto done;
    }
    rc = lvd_manifest_commit(m, err);
done:
    for (int i = 0; i < 4; i++)
        sqlite3_finalize(st[i]);
    if (rc)
        lvd_manifest_rollback(m);
    return rc;
}

static int curate(lvd_manifest *m, const lvd_hkmeans_stage_options *o, int64_t model_id, int dim,
                  int64_t run, lvd_hkmeans_stage_counts *counts, lvd_error *err)
{
    lvd_embeddings pool;
    if (lvd_embeddings_read(m, model_id, &pool_rows, NULL, 0, dim, &pool, err))
        return -1;
    counts->pool = pool.n;
    fitted f = {0};
    int rc = -1;
    if (pool.n == 0)
        lvd_fail(err, "model '%s' has no kept pool images: run lvd-dedup first", o->model);
    else if (fit_and_sample(&pool, o, &f, counts, err) == 0 &&
             write_rows(m, &pool, &f, o, model_id, run, err) == 0) {
        counts->picked = f.n_picks;
        rc = 0;
    }
    fitted_free(&f);
    lvd_embeddings_free(&pool);
    return rc;
}

static cJSON *params_json(const lvd_hkmeans_stage_options *o)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model", o->model);
    cJSON_AddStringToObject(j, "name", o->name);
    cJSON *k = cJSON_AddArrayToObject(j, "clusters");
    for (int l = 0; l < o->levels; l++)
        cJSON_AddItemToArray(k, cJSON_CreateNumber(o->k[l]));
    cJSON_AddNumberToObject(j, "target", (double)o->target);
    cJSON_AddNumberToObject(j, "niter", o->niter);
    cJSON_AddNumberToObject(j, "seed", o->seed);
    cJSON_AddNumberToObject(j, "redo", o->redo);
    return j;
}

static cJSON *counts_json(const lvd_hkmeans_stage_counts *c)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "pool", (double)c->pool);
    cJSON_AddNumberToObject(j, "picked", (double)c->picked);
    cJSON_AddNumberToObject(j, "top_min", (double)c->top_min);
    cJSON_AddNumberToObject(j, "top_max", (double)c->top_max);
    return j;
}

int lvd_hkmeans_stage_run(lvd_manifest *m, const lvd_hkmeans_stage_options *o,
                          lvd_hkmeans_stage_counts *counts, lvd_error *err)
{
    memset(counts, 0, sizeof *counts);
    int64_t model_id, run;
    int dim;
    if (check_options(o, err) || lvd_embeddings_model(m, o->model, &model_id, &dim, err) ||
        check_name(m, o->name, err))
        return -1;
    if (lvd_kit_run_start(m, "hkmeans", params_json(o), &run, err))
        return -1;
    int rc = curate(m, o, model_id, dim, run, counts, err);
    return lvd_kit_run_finish(m, run, rc, NULL, counts_json(counts), err);
}

int lvd_hkmeans_stage_follow(const stage_kjob *job, const float *x, const lvd_kmeans_group *g,
                             lvd_error *err)
{
    lvd_hkmeans_stage_options o;
    lvd_hkmeans_stage_defaults(&o);
    o.levels = (int)job->levels;
    for (int l = 0; l < o.levels; l++)
        o.k[l] = (int)job->k[l];
    o.niter = (int)job->niter;
    o.seed = (int)job->seed;
    o.redo = (int)job->redo;
    o.resample = (int)job->resample;
    o.sample_size = job->sample_size;
    o.float64 = (int)job->float64;
    fitted f = {0};
    int rc = best_fit(x, job->n, (int)job->d, &o, g, &f, err);
    fitted_free(&f);
    return rc;
}
