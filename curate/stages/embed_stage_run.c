/* lvd_embed_run of curate/stages/embed_stage.h: setup, the consumer loop (ViT, normalization, .npy
 * output) and the per-shard commit. */
#include "curate/stages/embed_stage_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dist/dist.h"
#include "store/npy.h"

/* Jobs posted ahead of the one being consumed, so the producer never waits for a shard list. */
#define JOBS_AHEAD 2

void lvd_embed_opts_init(lvd_embed_opts *o)
{
    memset(o, 0, sizeof *o);
    o->batch = 32;
    o->features = -1;
    o->resize = 256;
    o->crop = 224;
    o->normalize = 1;
    o->log_interval_s = 10.0;
    o->log = stderr;
}

void stage_shard_out_reset(shard_out *s)
{
    lvd_npy_appender_abort(s->app);
    free(s->ids);
    free(s->failed_ids);
    free(s->failed_msg);
    memset(s, 0, sizeof *s);
}

/* "<dir>/<shard name without .tar>.r<run>.npy" */
static int shard_out_start(embed_ctx *c, shard_out *s, const stage_job *job, lvd_error *err)
{
    stage_shard_out_reset(s);
    s->job = job;
    const char *name = stage_base_name(job->shard_path);
    size_t len = strlen(name);
    if (len > 4 && strcmp(name + len - 4, ".tar") == 0)
        len -= 4;
    if (snprintf(s->path, sizeof s->path, "%s/%.*s.r%lld.npy", c->dir, (int)len, name,
                 (long long)c->sum->run_id) >= (int)sizeof s->path)
        return lvd_fail(err, "%s: output path too long", c->dir);
    s->ids = malloc(job->n * sizeof *s->ids);
    s->failed_ids = malloc(job->n * sizeof *s->failed_ids);
    s->failed_msg = malloc(job->n * sizeof *s->failed_msg);
    if (!s->ids || !s->failed_ids || !s->failed_msg)
        return lvd_fail(err, "out of memory");
    return 0;
}

static void l2_normalize(float *rows, int n, int dim)
{
    for (int i = 0; i < n; i++) {
        float *r = rows + (size_t)i * dim;
        double ss = 0;
        for (int j = 0; j < dim; j++)
            ss += (double)r[j] * r[j];
        float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
        for (int j = 0; j < dim; j++)
            r[j] *= inv;
    }
}

static int consume_images(embed_ctx *c, shard_out *s, const stage_batch *b, lvd_error *err)
{
    if (b->n == 0)
        return 0;
    int crop = c->o->crop;
    if (lvd_vit_features(c->vit, b->x, b->n, crop, crop, c->pool, c->feats, err) != 0)
        return -1;
    if (c->o->normalize)
        l2_normalize(c->feats, b->n, c->model.dim);
    if (!s->app && lvd_npy_appender_open(s->path, c->model.dim, &s->app, err) != 0)
        return -1;
    if (lvd_npy_append(s->app, c->feats, b->n, err) != 0)
        return -1;
    memcpy(s->ids + s->rows, b->ids, (size_t)b->n * sizeof *b->ids);
    s->rows += b->n;
    c->rep.done += b->n;
    return 0;
}

static void consume_failures(embed_ctx *c, shard_out *s, const stage_batch *b)
{
    for (int i = 0; i < b->n_failed; i++) {
        s->failed_ids[s->n_failed] = b->failed_ids[i];
        memcpy(s->failed_msg[s->n_failed], b->failed_msg[i], STAGE_MSG);
        s->n_failed++;
        stage_report_failure(&c->rep, b->failed_ids[i], b->failed_msg[i]);
    }
    c->rep.failed += b->n_failed;
}

static int record_failures(embed_ctx *c, const shard_out *s, lvd_error *err)
{
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(c->m,
                             "INSERT OR REPLACE INTO embedding_failures (image_id, model_id, "
                             "error, run_id) VALUES (?1, ?2, ?3, ?4)",
                             &st, err) != 0)
        return -1;
    int rc = SQLITE_DONE;
    for (int64_t i = 0; i < s->n_failed && rc == SQLITE_DONE; i++) {
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, s->failed_ids[i]);
        sqlite3_bind_int64(st, 2, c->model.id);
        sqlite3_bind_text(st, 3, s->failed_msg[i], -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, c->sum->run_id);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : lvd_manifest_fail(c->m, err, "recording failed images");
}

/* A retried image that now has its embedding loses its failure record. */
static int clear_failures(embed_ctx *c, const shard_out *s, lvd_error *err)
{
    if (!c->o->retry_failed)
        return 0;
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(c->m,
                             "DELETE FROM embedding_failures WHERE model_id = ?1 AND image_id = ?2",
                             &st, err) != 0)
        return -1;
    int rc = SQLITE_DONE;
    for (int64_t i = 0; i < s->rows && rc == SQLITE_DONE; i++) {
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, c->model.id);
        sqlite3_bind_int64(st, 2, s->ids[i]);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : lvd_manifest_fail(c->m, err, "clearing retried failures");
}

int stage_finish_file(embed_ctx *c, shard_out *s, lvd_error *err)
{
    if (!s->app)
        return 0;
    lvd_npy_appender *app = s->app;
    s->app = NULL;
    if (lvd_npy_appender_finish(app, err) != 0)
        return -1;
    c->sum->files++;
    return 0;
}

int stage_record_shard(embed_ctx *c, const shard_out *s, lvd_error *err)
{
    int rc = lvd_manifest_begin(c->m, err);
    if (rc == 0 && s->rows > 0)
        rc = stage_settings_record(c->m, c->model.id, &c->settings, err);
    if (rc == 0 && s->rows > 0)
        rc = stage_record_file(c->m, c->model.id, c->sum->run_id, s->path, s->rows, c->model.dim,
                               c->o->normalize, s->ids, err);
    if (rc == 0)
        rc = clear_failures(c, s, err);
    if (rc == 0)
        rc = record_failures(c, s, err);
    if (rc == 0)
        rc = lvd_manifest_commit(c->m, err);
    if (rc != 0) {
        lvd_manifest_rollback(c->m);
        return -1;
    }
    return 0;
}

/* The file is in place before the transaction that makes its rows visible; in a group, rank 0
 * records every rank's file (embed_stage_dist.c). */
static int finish_shard(embed_ctx *c, shard_out *s, lvd_error *err)
{
    if (c->dist.size > 1)
        return stage_dist_finish_shard(c, s, err);
    if (stage_finish_file(c, s, err) != 0 || stage_record_shard(c, s, err) != 0)
        return -1;
    c->sum->embedded += s->rows;
    c->sum->failed += s->n_failed;
    return 0;
}

/* Posts plan shards from *next while fewer than JOBS_AHEAD are queued and the limit allows (a
 * rank of a group has its jobs already, in jobs[]). */
static int post_jobs(embed_ctx *c, stage_pipe *p, stage_job **jobs, size_t *next, size_t consumed,
                     int64_t *budget, lvd_error *err)
{
    size_t ahead_end = consumed + JOBS_AHEAD;
    while (*next < c->plan.n && *next < ahead_end) {
        if (*budget <= 0)
            break;
        if (!jobs[*next] &&
            stage_plan_job(c->m, &c->plan, *next, &c->filter, *budget, &jobs[*next], err) != 0)
            return -1;
        *budget -= (int64_t)jobs[*next]->n;
        stage_pipe_post(p, jobs[*next]);
        (*next)++;
    }
    if (*next == c->plan.n || *budget <= 0)
        stage_pipe_close(p);
    return 0;
}

int stage_consume(embed_ctx *c, stage_pipe *p, stage_job **jobs, lvd_error *err)
{
    int64_t budget = c->o->limit > 0 ? c->o->limit : INT64_MAX;
    size_t next = 0, consumed = 0;
    shard_out s = {0};
    int rc = post_jobs(c, p, jobs, &next, consumed, &budget, err);
    stage_batch *b = NULL;
    while (rc == 0 && (rc = stage_pipe_next(p, &b, err)) == 0 && b) {
        if (b->job != s.job)
            rc = shard_out_start(c, &s, b->job, err);
        if (rc == 0)
            rc = consume_images(c, &s, b, err);
        if (rc == 0)
            consume_failures(c, &s, b);
        int last = b->last;
        stage_pipe_release(p, b);
        if (rc == 0 && last) {
            rc = finish_shard(c, &s, err);
            stage_job_free(jobs[consumed]);
            jobs[consumed++] = NULL;
            stage_shard_out_reset(&s);
            if (rc == 0)
                rc = post_jobs(c, p, jobs, &next, consumed, &budget, err);
        }
        stage_report_tick(&c->rep, 0);
    }
    stage_shard_out_reset(&s);
    return rc;
}

int stage_embed_jobs(embed_ctx *c, stage_job **jobs, lvd_error *err)
{
    c->feats = malloc((size_t)c->o->batch * c->model.dim * sizeof *c->feats);
    if (!c->feats)
        return lvd_fail(err, "out of memory");
    stage_pipe *p;
    int rc = stage_pipe_start(c->o->batch, c->o->resize, c->o->crop, &p, err);
    if (rc == 0)
        rc = stage_consume(c, p, jobs, err);
    stage_pipe_stop(p);
    return rc;
}

static int embed_all(embed_ctx *c, lvd_error *err)
{
    if (stage_plan_make(c->m, &c->filter, &c->plan, err) != 0)
        return -1;
    int64_t limit = c->o->limit > 0 ? c->o->limit : INT64_MAX;
    c->sum->todo = c->plan.total < limit ? c->plan.total : limit;
    c->rep.todo = c->sum->todo;
    stage_job **jobs = calloc(c->plan.n + 1, sizeof *jobs);
    if (!jobs)
        return lvd_fail(err, "out of memory");
    int rc = stage_embed_jobs(c, jobs, err);
    for (size_t i = 0; i < c->plan.n; i++)
        stage_job_free(jobs[i]);
    free(jobs);
    return rc;
}

cJSON *stage_params_json(const embed_ctx *c)
{
    const lvd_embed_opts *o = c->o;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model", c->model.name);
    cJSON_AddStringToObject(j, "arch", c->model.arch);
    if (c->model.sha256[0])
        cJSON_AddStringToObject(j, "sha256", c->model.sha256);
    if (o->source)
        cJSON_AddStringToObject(j, "source", o->source);
    cJSON_AddStringToObject(j, "features", lvd_model_features_name(c->model.features));
    cJSON_AddNumberToObject(j, "batch", o->batch);
    cJSON_AddNumberToObject(j, "threads", o->threads);
    cJSON_AddNumberToObject(j, "limit", (double)o->limit);
    cJSON_AddNumberToObject(j, "resize", o->resize);
    cJSON_AddNumberToObject(j, "crop", o->crop);
    cJSON_AddBoolToObject(j, "normalize", o->normalize);
    cJSON_AddBoolToObject(j, "retry_failed", o->retry_failed);
    cJSON_AddStringToObject(j, "out", c->dir);
    if (c->dist.size > 1)
        cJSON_AddNumberToObject(j, "ranks", c->dist.size);
    return j;
}

cJSON *stage_counts_json(const lvd_embed_summary *s)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "todo", (double)s->todo);
    cJSON_AddNumberToObject(j, "embedded", (double)s->embedded);
    cJSON_AddNumberToObject(j, "failed", (double)s->failed);
    cJSON_AddNumberToObject(j, "files", (double)s->files);
    return j;
}

static int check_opts(const lvd_embed_opts *o, lvd_error *err)
{
    if (!o->db || !o->model)
        return lvd_fail(err, "a manifest (--db) and a model (--model) are required");
    if (o->batch < 1 || o->batch > 4096)
        return lvd_fail(err, "batch %d: want 1 to 4096", o->batch);
    if (o->crop < 1 || o->resize < o->crop || o->resize > 16384)
        return lvd_fail(err, "--resize %d --crop %d: want 1 <= crop <= resize <= 16384", o->resize,
                        o->crop);
    if (o->limit < 0)
        return lvd_fail(err, "limit %lld: want >= 0", (long long)o->limit);
    return 0;
}

/* Refuses a run whose settings differ from those of the model's rows: mixing them would give
 * incomparable rows (say of norm 20 and of norm 1) under one model. */
static int check_settings(embed_ctx *c, lvd_error *err)
{
    const lvd_embed_opts *o = c->o;
    c->settings = (stage_settings){.resize = o->resize, .crop = o->crop, .normalize = o->normalize};
    stage_settings had;
    int recorded;
    if (stage_settings_read(c->m, c->model.id, &had, &recorded, err) != 0)
        return -1;
    if (!recorded || stage_settings_equal(&had, &c->settings))
        return 0;
    char was[96], now[96], add[PATH_MAX + 128];
    stage_settings_describe(&had, was, sizeof was);
    stage_settings_describe(&c->settings, now, sizeof now);
    const char *features =
        c->model.features == LVD_FEATURES_CLS_PATCHMEAN ? " --features cls+patchmean" : "";
    if (c->model.random_spec[0])
        snprintf(add, sizeof add, "lvd-model add --db %s --name NEW --random %s --seed %llu%s",
                 o->db, c->model.random_spec, (unsigned long long)c->model.seed, features);
    else
        snprintf(add, sizeof add, "lvd-model add --db %s --name NEW%s %s", o->db, features,
                 c->model.path);
    if (had.imported)
        return lvd_fail(err,
                        "model '%s' holds rows made by %s; rows of lvd-embed (%s) would not be "
                        "comparable with them: register the weights under another name (%s) and "
                        "embed with --model NEW",
                        o->model, was, now, add);
    return lvd_fail(err,
                    "model '%s' has embeddings made with %s; this run asks for %s, and rows made "
                    "otherwise are not comparable: run with %s, or register the same weights "
                    "under another name (%s) and embed with --model NEW",
                    o->model, was, now, was, add);
}

/* The model, its feature mode and the crop size, checked before anything is recorded. */
int stage_open_model(embed_ctx *c, lvd_error *err)
{
    const lvd_embed_opts *o = c->o;
    if (lvd_model_find(c->m, o->model, &c->model, NULL, err) != 0)
        return -1;
    if (c->model.features == LVD_FEATURES_EXTERNAL)
        return lvd_fail(err, "model '%s' is external (imported embeddings, no weights)", o->model);
    if (o->features >= 0 &&
        lvd_model_set_features(c->m, &c->model, (lvd_model_features)o->features, err) != 0)
        return -1;
    if (check_settings(c, err) != 0)
        return -1;
    c->pool = c->model.features == LVD_FEATURES_CLS_PATCHMEAN ? LVD_VIT_POOL_CLS_MEANPATCH
                                                              : LVD_VIT_POOL_CLS;
    if (lvd_model_open(&c->model, &c->vit, err) != 0)
        return -1;
    int patch = lvd_vit_get_info(c->vit)->patch;
    if (o->crop % patch != 0)
        return lvd_fail(err,
                        "--crop %d is not a multiple of the patch size %d of model '%s' (try %d)",
                        o->crop, patch, o->model, (o->crop / patch + 1) * patch);
    if (lvd_vit_feature_dim(c->vit, c->pool) != c->model.dim)
        return lvd_fail(err, "model '%s': registered dim %d, the weights give %d", o->model,
                        c->model.dim, lvd_vit_feature_dim(c->vit, c->pool));
    lvd_vit_set_threads(c->vit, o->threads);
    return 0;
}

int stage_run_setup(embed_ctx *c, lvd_error *err)
{
    const lvd_embed_opts *o = c->o;
    if (stage_open_model(c, err) != 0 ||
        lvd_source_find(c->m, o->source, -1, &c->filter.source_id, NULL, err) != 0 ||
        stage_model_dir(o->db, o->out_dir, c->model.name, c->dir, err) != 0 ||
        stage_recover(c->m, c->dir, err) != 0 ||
        lvd_kit_run_start(c->m, "embed", stage_params_json(c), &c->sum->run_id, err) != 0)
        return -1;
    if (!o->source)
        c->filter.source_id = -1; /* every source */
    c->filter.model_id = c->model.id;
    c->filter.retry_failed = o->retry_failed;
    return 0;
}

static int run_stage(embed_ctx *c, lvd_error *err)
{
    const lvd_embed_opts *o = c->o;
    if (stage_run_setup(c, err) != 0)
        return -1;
    double start = lvd_kit_now(), cpu_start = lvd_kit_cpu_now();
    c->rep = (stage_report){.log = o->log,
                            .tty = o->progress,
                            .interval_s = o->log_interval_s,
                            .start = start,
                            .last = start};
    int rc = embed_all(c, err);
    c->sum->seconds = lvd_kit_now() - start;
    c->sum->cpu_seconds = lvd_kit_cpu_now() - cpu_start;
    rc = lvd_kit_run_finish(c->m, c->sum->run_id, rc, NULL, stage_counts_json(c->sum), err);
    if (rc == 0)
        stage_report_summary(&c->rep, c->sum);
    return rc;
}

int lvd_embed_run(const lvd_embed_opts *o, lvd_embed_summary *sum, lvd_error *err)
{
    memset(sum, 0, sizeof *sum);
    if (check_opts(o, err) != 0)
        return -1;
    embed_ctx c = {.o = o, .sum = sum, .filter = {.source_id = -1}};
    if (lvd_dist_init(&c.dist, err) != 0)
        return -1;
    int rc;
    if (c.dist.size > 1) {
        rc = stage_dist_run(&c, err);
    } else {
        rc = lvd_kit_open(o->db, LVD_MANIFEST_WRITE, "embed", &c.m, err);
        if (rc == 0)
            rc = run_stage(&c, err);
    }
    stage_plan_free(&c.plan);
    free(c.feats);
    lvd_vit_free(c.vit);
    lvd_manifest_close(c.m);
    return rc;
}
