/* The index stage of curate/index_stage.h: building an index, the run that saves and records it,
 * and opening a recorded one. */
#include "curate/index_stage.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "curate/embeddings_read.h"

int lvd_stage_build_index(const float *x, int64_t n, int d, const char *factory,
                          size_t memory_budget, size_t nprobe, lvd_index **out, char *used,
                          size_t used_size, lvd_error *err)
{
    char chosen[128];
    if (!factory) {
        if (lvd_index_choose(n, d, memory_budget, chosen, sizeof chosen, err))
            return -1;
        factory = chosen;
    }
    lvd_index *ix;
    if (lvd_index_create(&ix, d, factory, err))
        return -1;
    int rc = lvd_index_train_sample(ix, x, n, err);
    if (rc == 0)
        rc = lvd_index_add(ix, n, x, err);
    size_t nlist = lvd_index_nlist(ix);
    if (rc == 0 && nlist)
        rc = lvd_index_set_nprobe(ix, nprobe < nlist ? (nprobe ? nprobe : 1) : nlist, err);
    if (rc) {
        lvd_index_free(ix);
        return lvd_error_prefix(err, "index '%s' over %lld rows", factory, (long long)n);
    }
    if (used)
        snprintf(used, used_size, "%s", factory);
    *out = ix;
    return 0;
}

static void bind_source(sqlite3_stmt *st, int i, int64_t source_id)
{
    if (source_id)
        sqlite3_bind_int64(st, i, source_id);
    else
        sqlite3_bind_null(st, i);
}

/* The index file's absolute path beside the manifest. */
static int index_path(const char *db, int64_t model_id, int64_t source_id, int64_t run, char *out,
                      size_t size, lvd_error *err)
{
    char abs[PATH_MAX];
    if (!realpath(db, abs))
        return lvd_fail(err, "%s: cannot resolve the manifest path", db);
    int len = source_id ? snprintf(out, size, "%s.index-m%lld-s%lld-r%lld.faiss", abs,
                                   (long long)model_id, (long long)source_id, (long long)run)
                        : snprintf(out, size, "%s.index-m%lld-r%lld.faiss", abs,
                                   (long long)model_id, (long long)run);
    return len < 0 || (size_t)len >= size ? lvd_fail(err, "%s: path too long", abs) : 0;
}

/* Collects the paths of the indexes about to be replaced (so their files go after commit). */
static int old_paths(lvd_manifest *m, int64_t model_id, int64_t source_id, char ***paths, int *n,
                     lvd_error *err)
{
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m, "SELECT path FROM indexes WHERE model_id = ?1 AND source_id IS ?2",
                             &st, err))
        return -1;
    sqlite3_bind_int64(st, 1, model_id);
    bind_source(st, 2, source_id);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        char **p = realloc(*paths, (size_t)(*n + 1) * sizeof *p);
        if (!p)
            break;
        *paths = p;
        p[*n] = strdup((const char *)sqlite3_column_text(st, 0));
        if (!p[*n])
            break;
        (*n)++;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return rc == SQLITE_ROW ? lvd_fail(err, "out of memory")
                                : lvd_manifest_fail(m, err, "indexes");
    return 0;
}

static int insert_rows(lvd_manifest *m, int64_t index_id, const lvd_embeddings *e, lvd_error *err)
{
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m,
                             "INSERT INTO index_rows (index_id, row, image_id) "
                             "VALUES (?1, ?2, ?3)",
                             &st, err))
        return -1;
    int rc = 0;
    for (int64_t i = 0; i < e->n && rc == 0; i++) {
        sqlite3_bind_int64(st, 1, index_id);
        sqlite3_bind_int64(st, 2, i);
        sqlite3_bind_int64(st, 3, e->image_id[i]);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = lvd_manifest_fail(m, err, "recording the index rows");
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    return rc;
}

/* Replaces the record of the model/source index by the new one, in one transaction. */
static int record_index(lvd_manifest *m, int64_t model_id, int64_t source_id, int64_t run,
                        const lvd_embeddings *e, lvd_index_stage_result *res, lvd_error *err)
{
    sqlite3_stmt *st;
    if (lvd_manifest_begin(m, err))
        return -1;
    if (lvd_manifest_prepare(m, "DELETE FROM indexes WHERE model_id = ?1 AND source_id IS ?2", &st,
                             err))
        goto fail;
    sqlite3_bind_int64(st, 1, model_id);
    bind_source(st, 2, source_id);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        lvd_manifest_fail(m, err, "replacing the index record");
        goto fail;
    }
    if (lvd_manifest_prepare(m,
                             "INSERT INTO indexes (model_id, source_id, path, factory, rows, "
                             "dim, run_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                             &st, err))
        goto fail;
    sqlite3_bind_int64(st, 1, model_id);
    bind_source(st, 2, source_id);
    sqlite3_bind_text(st, 3, res->path, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, res->factory, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 5, e->n);
    sqlite3_bind_int(st, 6, e->dim);
    sqlite3_bind_int64(st, 7, run);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        lvd_manifest_fail(m, err, "recording the index");
        goto fail;
    }
    res->index_id = sqlite3_last_insert_rowid(lvd_manifest_db(m));
    if (insert_rows(m, res->index_id, e, err) || lvd_manifest_commit(m, err))
        goto fail;
    return 0;
fail:
    lvd_manifest_rollback(m);
    return -1;
}

static const lvd_kit_rows index_rows = {.where = "?2 = 0 OR i.source_id = ?2"};

static int build_and_record(lvd_manifest *m, const lvd_index_stage_options *o, int64_t model_id,
                            int dim, int64_t source_id, int64_t run, lvd_index_stage_result *res,
                            lvd_error *err)
{
    lvd_embeddings e;
    if (lvd_embeddings_read(m, model_id, &index_rows, &source_id, 1, dim, &e, err))
        return -1;
    lvd_index *ix = NULL;
    char **old = NULL;
    int n_old = 0;
    int rc = -1;
    if (e.n == 0)
        lvd_fail(err, "model '%s' has no embeddings%s%s", o->model, o->source ? " in source " : "",
                 o->source ? o->source : "");
    else if (lvd_stage_build_index(e.x, e.n, dim, o->factory, o->memory_budget, o->nprobe, &ix,
                                   res->factory, sizeof res->factory, err) == 0 &&
             index_path(o->db, model_id, source_id, run, res->path, sizeof res->path, err) == 0 &&
             lvd_index_save(ix, res->path, err) == 0 &&
             old_paths(m, model_id, source_id, &old, &n_old, err) == 0) {
        rc = record_index(m, model_id, source_id, run, &e, res, err);
        if (rc)
            unlink(res->path);
    }
    for (int i = 0; i < n_old; i++) {
        if (rc == 0 && strcmp(old[i], res->path) != 0)
            unlink(old[i]);
        free(old[i]);
    }
    free(old);
    res->rows = e.n;
    lvd_index_free(ix);
    lvd_embeddings_free(&e);
    return rc;
}

int lvd_index_stage_run(lvd_manifest *m, const lvd_index_stage_options *o,
                        lvd_index_stage_result *res, lvd_error *err)
{
    memset(res, 0, sizeof *res);
    int64_t model_id, source_id, run;
    int dim;
    if (lvd_embeddings_model(m, o->model, &model_id, &dim, err) ||
        lvd_source_find(m, o->source, -1, &source_id, NULL, err))
        return -1;
    cJSON *params = cJSON_CreateObject();
    cJSON_AddStringToObject(params, "model", o->model);
    if (o->source)
        cJSON_AddStringToObject(params, "source", o->source);
    if (o->factory)
        cJSON_AddStringToObject(params, "factory", o->factory);
    cJSON_AddNumberToObject(params, "memory_budget", (double)o->memory_budget);
    cJSON_AddNumberToObject(params, "nprobe", (double)o->nprobe);
    if (lvd_kit_run_start(m, "index", params, &run, err))
        return -1;
    int rc = build_and_record(m, o, model_id, dim, source_id, run, res, err);
    cJSON *counts = cJSON_CreateObject();
    cJSON_AddNumberToObject(counts, "rows", (double)res->rows);
    cJSON_AddStringToObject(counts, "factory", res->factory);
    return lvd_kit_run_finish(m, run, rc, NULL, counts, err);
}

static int load_id_map(lvd_manifest *m, int64_t index_id, lvd_stage_index *si, lvd_error *err)
{
    si->image_id = calloc((size_t)(si->rows > 0 ? si->rows : 1), sizeof *si->image_id);
    if (!si->image_id)
        return lvd_fail(err, "out of memory for %lld index rows", (long long)si->rows);
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m, "SELECT row, image_id FROM index_rows WHERE index_id = ?1", &st,
                             err))
        return -1;
    sqlite3_bind_int64(st, 1, index_id);
    int64_t seen = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t row = sqlite3_column_int64(st, 0);
        if (row < 0 || row >= si->rows)
            break;
        si->image_id[row] = sqlite3_column_int64(st, 1);
        seen++;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE || seen != si->rows)
        return lvd_fail(err, "index %lld: id-map does not match its %lld rows", (long long)index_id,
                        (long long)si->rows);
    return 0;
}

int lvd_stage_index_open(lvd_manifest *m, int64_t model_id, const char *source,
                         lvd_stage_index *out, lvd_error *err)
{
    memset(out, 0, sizeof *out);
    int64_t source_id;
    if (lvd_source_find(m, source, -1, &source_id, NULL, err))
        return -1;
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m,
                             "SELECT id, path, rows FROM indexes WHERE model_id = ?1 AND "
                             "source_id IS ?2 ORDER BY id DESC LIMIT 1",
                             &st, err))
        return -1;
    sqlite3_bind_int64(st, 1, model_id);
    bind_source(st, 2, source_id);
    int64_t index_id = 0;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        index_id = sqlite3_column_int64(st, 0);
        snprintf(out->path, sizeof out->path, "%s", (const char *)sqlite3_column_text(st, 1));
        out->rows = sqlite3_column_int64(st, 2);
    }
    sqlite3_finalize(st);
    if (rc == SQLITE_DONE)
        return lvd_fail(err, "no index of this model%s%s is recorded: run lvd-index first",
                        source ? " over source " : "", source ? source : "");
    if (rc != SQLITE_ROW)
        return lvd_manifest_fail(m, err, "reading indexes");
    if (load_id_map(m, index_id, out, err) || lvd_index_load(&out->index, out->path, err)) {
        lvd_stage_index_close(out);
        return -1;
    }
    if (lvd_index_count(out->index) != out->rows) {
        lvd_fail(err, "%s: holds %lld rows, the manifest records %lld", out->path,
                 (long long)lvd_index_count(out->index), (long long)out->rows);
        lvd_stage_index_close(out);
        return -1;
    }
    return 0;
}

void lvd_stage_index_close(lvd_stage_index *si)
{
    if (!si)
        return;
    lvd_index_free(si->index);
    free(si->image_id);
    memset(si, 0, sizeof *si);
}
