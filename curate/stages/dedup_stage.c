/* The dedup stage of curate/stages/dedup_stage.h: components, decontamination, the incremental rerun and
 * the one transaction of results. */
#include "curate/stages/dedup_stage.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "curate/stages/embeddings_read.h"
#include "curate/stages/index_stage.h"
#include "index/index.h"

void lvd_dedup_stage_defaults(lvd_dedup_stage_options *o)
{
    memset(o, 0, sizeof *o);
    o->k = 64;
    o->threshold = 0.6f;
    o->eval_threshold = 0.45f;
    o->memory_budget = LVD_STAGE_MEMORY_BUDGET;
    o->nprobe = LVD_STAGE_NPROBE;
}

/* Pool rows: those processed before first (ordered by image id, tag = their recorded
 * component), then the new ones (tag 0). ?2 = 1 forgets what was processed (a full run). */
static const lvd_kit_rows pool_rows = {
    .where = "s.role = 'pool'",
    .join = "LEFT JOIN dedup d ON d.model_id = ?1 AND d.image_id = e.image_id AND ?2 = 0",
    .tag = "d.component",
    .order = "d.image_id IS NULL, e.image_id",
};

/* The eval set; lvd-report's eval matches read it too (curate/stages/report_eval.c). */
const lvd_kit_rows lvd_dedup_eval_rows = {.where = "s.role = 'eval'"};

/* Work arrays, one entry per pool row. */
typedef struct dedup_work {
    lvd_embeddings pool, eval;
    int64_t n_old;
    lvd_components comp;
    int64_t *root;    /* component root row of each row */
    int64_t *kept;    /* for a root row: the member row with the lowest image id */
    uint8_t *removed; /* decontaminated */
    float *eval_sim;  /* for a root row: highest similarity of a member to an eval image */
    lvd_index *index;
} dedup_work;

static void work_free(dedup_work *w)
{
    lvd_embeddings_free(&w->pool);
    lvd_embeddings_free(&w->eval);
    lvd_components_free(&w->comp);
    free(w->root);
    free(w->kept);
    free(w->removed);
    free(w->eval_sim);
    lvd_index_free(w->index);
}

/* 1 when the last successful dedup run of the model used other k or threshold values. */
static int params_changed(lvd_manifest *m, const lvd_dedup_stage_options *o, int *changed,
                          lvd_error *err)
{
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m,
                             "SELECT json_extract(params, '$.k'), "
                             "json_extract(params, '$.threshold') FROM runs WHERE stage = "
                             "'dedup' AND status = 'ok' AND json_extract(params, '$.model') = "
                             "?1 ORDER BY id DESC LIMIT 1",
                             &st, err))
        return -1;
    sqlite3_bind_text(st, 1, o->model, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    *changed = rc == SQLITE_ROW && (sqlite3_column_int(st, 0) != o->k ||
                                    fabs(sqlite3_column_double(st, 1) - o->threshold) > 1e-6);
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return lvd_manifest_fail(m, err, "reading earlier dedup runs");
    return 0;
}

static int64_t find_row(const int64_t *ids, int64_t n, int64_t id)
{
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (ids[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && ids[lo] == id ? lo : -1;
}

/* Rebuilds the recorded components of the rows processed before (rows 0 .. n_old, sorted by
 * image id). */
static void restore_components(dedup_work *w)
{
    while (w->n_old < w->pool.n && w->pool.tag[w->n_old] != 0)
        w->n_old++;
    /* A member whose recorded kept image has no embedding now is left to the search. */
    for (int64_t i = 0; i < w->n_old; i++) {
        int64_t r = find_row(w->pool.image_id, w->n_old, w->pool.tag[i]);
        if (r >= 0)
            lvd_components_union(&w->comp, i, r);
    }
}

static int alloc_work(dedup_work *w, lvd_error *err)
{
    size_t n = (size_t)(w->pool.n > 0 ? w->pool.n : 1);
    w->root = malloc(n * sizeof *w->root);
    w->kept = malloc(n * sizeof *w->kept);
    w->removed = calloc(n, 1);
    w->eval_sim = calloc(n, sizeof *w->eval_sim);
    if (!w->root || !w->kept || !w->removed || !w->eval_sim)
        return lvd_fail(err, "dedup: out of memory for %lld pool rows", (long long)w->pool.n);
    return lvd_components_grow(&w->comp, w->pool.n, err);
}

/* Links the new rows against all rows and names every component's kept row. */
static int link_rows(dedup_work *w, const lvd_dedup_stage_options *o,
                     lvd_dedup_stage_counts *counts, lvd_error *err)
{
    const lvd_embeddings *p = &w->pool;
    if (lvd_stage_build_index(p->x, p->n, p->dim, o->factory, o->memory_budget, o->nprobe,
                              &w->index, counts->factory, sizeof counts->factory, err))
        return -1;
    lvd_dedup_options dopt;
    lvd_dedup_options_default(&dopt);
    dopt.k = o->k;
    dopt.threshold = o->threshold;
    dopt.nprobe = o->nprobe;
    if (p->n > w->n_old && lvd_dedup_link(w->index, p->x + (size_t)w->n_old * p->dim, w->n_old,
                                          p->n - w->n_old, &dopt, &w->comp, err))
        return -1;
    lvd_components_roots(&w->comp, w->root);
    for (int64_t i = 0; i < p->n; i++)
        w->kept[i] = -1;
    for (int64_t i = 0; i < p->n; i++) {
        int64_t *k = &w->kept[w->root[i]];
        if (*k < 0 || p->image_id[i] < p->image_id[*k])
            *k = i;
        counts->components += w->root[i] == i;
    }
    return 0;
}

/* Marks the contaminated components and, for each, its highest similarity to an eval image. */
static int decontaminate(dedup_work *w, const lvd_dedup_stage_options *o,
                         lvd_dedup_stage_counts *counts, lvd_error *err)
{
    if (w->eval.n == 0)
        return 0;
    if (lvd_decontaminate(w->index, w->root, w->eval.x, w->eval.n, o->eval_threshold, w->removed,
                          &counts->eval_removed, err))
        return -1;
    if (counts->eval_removed == 0)
        return 0;
    lvd_index *ev;
    if (lvd_index_create(&ev, w->eval.dim, "Flat", err))
        return -1;
    int rc = lvd_index_add(ev, w->eval.n, w->eval.x, err);
    for (int64_t i = 0; i < w->pool.n && rc == 0; i++) {
        if (!w->removed[i])
            continue;
        float sim;
        int64_t id;
        rc = lvd_index_search(ev, 1, w->pool.x + (size_t)i * w->pool.dim, 1, 0, &sim, &id, err);
        float *best = &w->eval_sim[w->root[i]];
        if (rc == 0 && sim > *best)
            *best = sim;
    }
    lvd_index_free(ev);
    return rc;
}

static float dot(const float *a, const float *b, int d)
{
    double s = 0.0;
    for (int j = 0; j < d; j++)
        s += (double)a[j] * b[j];
    return (float)s;
}

static int insert_row(sqlite3_stmt *st, const dedup_work *w, int64_t model_id, int64_t run,
                      int64_t i, lvd_dedup_stage_counts *counts)
{
    const lvd_embeddings *p = &w->pool;
    int64_t r = w->root[i], k = w->kept[r];
    int is_kept = k == i && !w->removed[i];
    sqlite3_bind_int64(st, 1, model_id);
    sqlite3_bind_int64(st, 2, p->image_id[i]);
    sqlite3_bind_int64(st, 3, p->image_id[k]);
    sqlite3_bind_int(st, 4, is_kept);
    if (w->removed[i]) {
        sqlite3_bind_text(st, 5, "eval", -1, SQLITE_STATIC);
        sqlite3_bind_double(st, 6, w->eval_sim[r]);
    } else if (k != i) {
        sqlite3_bind_text(st, 5, "duplicate", -1, SQLITE_STATIC);
        sqlite3_bind_double(st, 6,
                            dot(p->x + (size_t)i * p->dim, p->x + (size_t)k * p->dim, p->dim));
        counts->duplicates++;
    } else {
        sqlite3_bind_null(st, 5);
        sqlite3_bind_null(st, 6);
    }
    sqlite3_bind_int64(st, 7, run);
    counts->kept += is_kept;
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* Replaces the model's dedup rows by this run's, in one transaction. */
static int write_results(lvd_manifest *m, const dedup_work *w, int64_t model_id, int64_t run,
                         lvd_dedup_stage_counts *counts, lvd_error *err)
{
    sqlite3_stmt *del = NULL, *ins = NULL;
    if (lvd_manifest_begin(m, err))
        return -1;
    int rc = -1;
    if (lvd_manifest_prepare(m, "DELETE FROM dedup WHERE model_id = ?1", &del, err) ||
        lvd_manifest_prepare(m,
                             "INSERT INTO dedup (model_id, image_id, component, kept, reason, "
                             "similarity, run_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                             &ins, err))
        goto done;
    sqlite3_bind_int64(del, 1, model_id);
    if (sqlite3_step(del) != SQLITE_DONE) {
        lvd_manifest_fail(m, err, "clearing the dedup results");
        goto done;
    }
    for (int64_t i = 0; i < w->pool.n; i++)
        if (insert_row(ins, w, model_id, run, i, counts)) {
            lvd_manifest_fail(m, err, "recording the dedup results");
            goto done;
        }
    rc = lvd_manifest_commit(m, err);
done:
    sqlite3_finalize(del);
    sqlite3_finalize(ins);
    if (rc)
        lvd_manifest_rollback(m);
    return rc;
}

static int dedup(lvd_manifest *m, const lvd_dedup_stage_options *o, int64_t model_id, int dim,
                 int full, int64_t run, lvd_dedup_stage_counts *counts, lvd_error *err)
{
    dedup_work w = {0};
    int64_t f = full;
    int rc = -1;
    if (lvd_embeddings_read(m, model_id, &pool_rows, &f, 1, dim, &w.pool, err) ||
        lvd_embeddings_read(m, model_id, &lvd_dedup_eval_rows, NULL, 0, dim, &w.eval, err) ||
        alloc_work(&w, err))
        goto done;
    counts->pool = w.pool.n;
    counts->eval = w.eval.n;
    if (w.pool.n == 0) {
        rc = lvd_fail(err, "model '%s' has no embeddings of pool images", o->model);
        goto done;
    }
    restore_components(&w);
    counts->new_images = w.pool.n - w.n_old;
    if (link_rows(&w, o, counts, err) || decontaminate(&w, o, counts, err))
        goto done;
    rc = write_results(m, &w, model_id, run, counts, err);
done:
    work_free(&w);
    return rc;
}

static cJSON *params_json(const lvd_dedup_stage_options *o, int full)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model", o->model);
    cJSON_AddNumberToObject(j, "k", o->k);
    cJSON_AddNumberToObject(j, "threshold", o->threshold);
    cJSON_AddNumberToObject(j, "eval_threshold", o->eval_threshold);
    if (o->factory)
        cJSON_AddStringToObject(j, "factory", o->factory);
    cJSON_AddNumberToObject(j, "memory_budget", (double)o->memory_budget);
    cJSON_AddNumberToObject(j, "nprobe", (double)o->nprobe);
    cJSON_AddBoolToObject(j, "full", full);
    return j;
}

static cJSON *counts_json(const lvd_dedup_stage_counts *c)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "pool", (double)c->pool);
    cJSON_AddNumberToObject(j, "new", (double)c->new_images);
    cJSON_AddNumberToObject(j, "eval", (double)c->eval);
    cJSON_AddNumberToObject(j, "components", (double)c->components);
    cJSON_AddNumberToObject(j, "duplicates", (double)c->duplicates);
    cJSON_AddNumberToObject(j, "eval_removed", (double)c->eval_removed);
    cJSON_AddNumberToObject(j, "kept", (double)c->kept);
    cJSON_AddStringToObject(j, "factory", c->factory);
    return j;
}

int lvd_dedup_stage_run(lvd_manifest *m, const lvd_dedup_stage_options *o,
                        lvd_dedup_stage_counts *counts, lvd_error *err)
{
    memset(counts, 0, sizeof *counts);
    if (o->k < 1)
        return lvd_fail(err, "dedup: k must be at least 1");
    int64_t model_id, run;
    int dim, changed;
    if (lvd_embeddings_model(m, o->model, &model_id, &dim, err) ||
        params_changed(m, o, &changed, err))
        return -1;
    int full = o->full || changed;
    if (lvd_kit_run_start(m, "dedup", params_json(o, full), &run, err))
        return -1;
    int rc = dedup(m, o, model_id, dim, full, run, counts, err);
    return lvd_kit_run_finish(m, run, rc, NULL, counts_json(counts), err);
}
