/* stage_plan_make / stage_plan_job of embed/stage_internal.h. What an embed run has to do: the
 * shards with images lacking an embedding, and each shard's images. */
#include "curate/stages/embed_stage_internal.h"

#include <stdlib.h>
#include <string.h>

/* ?1 model id, ?2 source id or NULL, ?5 1 to retry failed images. */
#define TODO_WHERE                                                                                 \
    "i.status = 'ok' AND (?2 IS NULL OR i.source_id = ?2)"                                         \
    " AND NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.model_id = ?1 AND e.image_id = i.id)"     \
    " AND (?5 OR NOT EXISTS (SELECT 1 FROM embedding_failures x"                                   \
    "                        WHERE x.model_id = ?1 AND x.image_id = i.id))"

static const char sql_shards[] =
    "SELECT sh.id, sh.path, COUNT(*) FROM images i JOIN shards sh ON sh.id = i.shard_id"
    " WHERE sh.status = 'complete' AND " TODO_WHERE " GROUP BY sh.id ORDER BY sh.id";

static const char sql_items[] =
    "SELECT i.id, i.member FROM images i WHERE i.shard_id = ?3 AND " TODO_WHERE
    " ORDER BY i.member LIMIT ?4";

static void bind_filter(sqlite3_stmt *st, const stage_filter *f)
{
    sqlite3_bind_int64(st, 1, f->model_id);
    if (f->source_id >= 0)
        sqlite3_bind_int64(st, 2, f->source_id);
    else
        sqlite3_bind_null(st, 2);
    sqlite3_bind_int(st, 5, f->retry_failed);
}

static int plan_push(stage_plan *p, size_t *cap, int64_t id, const char *path, int64_t count)
{
    if (p->n == *cap) {
        size_t nc = *cap ? 2 * *cap : 64;
        int64_t *ids = realloc(p->shard_ids, nc * sizeof *ids);
        if (ids)
            p->shard_ids = ids;
        char **paths = realloc(p->paths, nc * sizeof *paths);
        if (paths)
            p->paths = paths;
        int64_t *counts = realloc(p->counts, nc * sizeof *counts);
        if (counts)
            p->counts = counts;
        if (!ids || !paths || !counts)
            return -1;
        *cap = nc;
    }
    p->paths[p->n] = strdup(path);
    if (!p->paths[p->n])
        return -1;
    p->shard_ids[p->n] = id;
    p->counts[p->n] = count;
    p->n++;
    p->total += count;
    return 0;
}

int stage_plan_make(lvd_manifest *m, const stage_filter *f, stage_plan *plan, lvd_error *err)
{
    memset(plan, 0, sizeof *plan);
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m, sql_shards, &st, err) != 0)
        return -1;
    bind_filter(st, f);
    size_t cap = 0;
    int rc, oom = 0;
    while (!oom && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *path = (const char *)sqlite3_column_text(st, 1);
        oom = plan_push(plan, &cap, sqlite3_column_int64(st, 0), path ? path : "",
                        sqlite3_column_int64(st, 2)) != 0;
    }
    sqlite3_finalize(st);
    if (oom)
        return lvd_fail(err, "out of memory listing shards");
    if (rc != SQLITE_DONE)
        return lvd_manifest_fail(m, err, "listing shards to embed");
    return 0;
}

void stage_plan_free(stage_plan *plan)
{
    for (size_t i = 0; i < plan->n; i++)
        free(plan->paths[i]);
    free(plan->paths);
    free(plan->shard_ids);
    free(plan->counts);
    memset(plan, 0, sizeof *plan);
}

static int load_items(lvd_manifest *m, sqlite3_stmt *st, stage_job *job, size_t cap, lvd_error *err)
{
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && job->n < cap) {
        const char *member = (const char *)sqlite3_column_text(st, 1);
        stage_item *it = &job->items[job->n];
        it->image_id = sqlite3_column_int64(st, 0);
        it->member = strdup(member ? member : "");
        if (!it->member)
            return lvd_fail(err, "out of memory");
        job->n++;
    }
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        return lvd_manifest_fail(m, err, "listing images to embed");
    return 0;
}

static int cmp_items(const void *a, const void *b)
{
    return strcmp(((const stage_item *)a)->member, ((const stage_item *)b)->member);
}

int stage_plan_job(lvd_manifest *m, const stage_plan *plan, size_t i, const stage_filter *f,
                   int64_t limit, stage_job **out, lvd_error *err)
{
    *out = NULL;
    int64_t n = plan->counts[i] < limit ? plan->counts[i] : limit;
    stage_job *job = calloc(1, sizeof *job);
    if (!job)
        return lvd_fail(err, "out of memory");
    job->shard_id = plan->shard_ids[i];
    job->shard_path = strdup(plan->paths[i]);
    job->items = calloc((size_t)n, sizeof *job->items);
    if (!job->shard_path || !job->items) {
        stage_job_free(job);
        return lvd_fail(err, "out of memory");
    }
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m, sql_items, &st, err) != 0) {
        stage_job_free(job);
        return -1;
    }
    bind_filter(st, f);
    sqlite3_bind_int64(st, 3, job->shard_id);
    sqlite3_bind_int64(st, 4, n);
    int rc = load_items(m, st, job, (size_t)n, err);
    sqlite3_finalize(st);
    if (rc != 0) {
        stage_job_free(job);
        return -1;
    }
    /* bsearch in the shard reader wants strcmp order, whatever the database collation. */
    qsort(job->items, job->n, sizeof *job->items, cmp_items);
    *out = job;
    return 0;
}
