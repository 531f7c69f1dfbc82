/* The stages of train/eval/eval.h (lvd-eval knn, lvd-eval linear): sources, labels and features
 * from the manifest, the classifiers, the results recorded in `evals` and printed. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "curate/stages/embed_stage.h"
#include "embed/model_registry.h"
#include "index/index.h"
#include "kit/kit.h"
#include "train/eval/eval.h"
#include "train/eval/eval_data.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* One side of an evaluation: a source, its images and their features. */
typedef struct side {
    const char *name;
    int64_t src;
    eval_images im;
    float *x;      /* im.n x dim, compacted to the rows kept */
    uint8_t *have; /* im.n */
    int32_t *y;    /* labels of the rows kept */
    int64_t n;     /* rows kept */
    int64_t failed;
} side;

static void side_free(side *s)
{
    eval_images_free(&s->im);
    free(s->x);
    free(s->have);
    free(s->y);
}

static int side_open(lvd_manifest *m, const char *name, side *s, lvd_error *err)
{
    memset(s, 0, sizeof *s);
    s->name = name;
    return eval_source(m, name, &s->src, err);
}

static int side_alloc(side *s, int dim, lvd_error *err)
{
    size_t n = (size_t)s->im.n;
    s->x = malloc(n * (size_t)dim * sizeof *s->x);
    s->have = calloc(n, 1);
    s->y = malloc(n * sizeof *s->y);
    if (!s->x || !s->have || !s->y)
        return lvd_fail(err, "out of memory for %lld features of %d values", (long long)n, dim);
    return 0;
}

/* Moves the rows with features to the front. */
static void side_compact(side *s, int dim)
{
    s->n = 0;
    for (int64_t i = 0; i < s->im.n; i++) {
        if (!s->have[i])
            continue;
        if (s->n != i)
            memmove(s->x + (size_t)s->n * dim, s->x + (size_t)i * dim, (size_t)dim * sizeof *s->x);
        s->y[s->n++] = s->im.label[i];
    }
}

/* Sources, labels and images of both sides. */
static int sides_read(lvd_manifest *m, const char *train, const char *test, side *tr, side *te,
                      eval_labels *labels, lvd_error *err)
{
    memset(labels, 0, sizeof *labels);
    memset(te, 0, sizeof *te);
    if (side_open(m, train, tr, err) || side_open(m, test, te, err) ||
        eval_labels_read(m, tr->src, te->src, labels, err) ||
        eval_images_read(m, tr->src, train, labels, &tr->im, err) ||
        eval_images_read(m, te->src, test, labels, &te->im, err))
        return -1;
    return 0;
}

static int find_model(lvd_manifest *m, const char *name, lvd_model_record *rec, lvd_error *err)
{
    int found;
    if (lvd_model_find(m, name, rec, &found, err))
        return -1;
    return found ? 0 : lvd_fail(err, "unknown model '%s'", name);
}

/* The eval transform of the model's stored embeddings: resize and crop of its last embed run
 * that embedded images (*run = 0 and both 0 when there is none). */
static int embedded_transform(lvd_manifest *m, const char *model, int *resize, int *crop,
                              int64_t *run, lvd_error *err)
{
    sqlite3_stmt *st;
    *resize = *crop = 0;
    *run = 0;
    if (lvd_manifest_prepare(m,
                             "SELECT id, json_extract(params, '$.resize'), "
                             "json_extract(params, '$.crop') FROM runs WHERE stage = 'embed' AND "
                             "status = 'ok' AND json_extract(params, '$.model') = ?1 AND "
                             "json_extract(counts, '$.embedded') > 0 ORDER BY id DESC LIMIT 1",
                             &st, err))
        return -1;
    sqlite3_bind_text(st, 1, model, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *run = sqlite3_column_int64(st, 0);
        *resize = sqlite3_column_int(st, 1);
        *crop = sqlite3_column_int(st, 2);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return lvd_manifest_fail(m, err, "reading the embed runs");
    return 0;
}

/* Resolves the transform options (0: as the model's stored embeddings, else 256 / 224). */
static int resolve_transform(lvd_manifest *m, const char *model, int *resize, int *crop,
                             lvd_error *err)
{
    int r, c;
    int64_t run;
    if (embedded_transform(m, model, &r, &c, &run, err))
        return -1;
    if (*resize == 0)
        *resize = r > 0 ? r : 256;
    if (*crop == 0)
        *crop = c > 0 ? c : 224;
    return 0;
}

/* Opens the ViT of a model with weights; what names the caller in the message. */
static int open_vit(const lvd_model_record *rec, int threads, const char *what, lvd_vit **vit,
                    lvd_error *err)
{
    if (rec->features == LVD_FEATURES_EXTERNAL)
        return lvd_fail(err,
                        "model '%s' has no weights (external embeddings): %s needs a ViT model",
                        rec->name, what);
    if (lvd_model_open(rec, vit, err))
        return -1;
    lvd_vit_set_threads(*vit, threads);
    return 0;
}

/* Features of both sides through the ViT from the shards. */
static int vit_features(lvd_vit *vit, const char *model, const eval_vit_spec *spec, side *tr,
                        side *te, int *dim, FILE *log, lvd_error *err)
{
    *dim = eval_vit_dim(vit, spec);
    side *sides[2] = {tr, te};
    for (int k = 0; k < 2; k++) {
        side *s = sides[k];
        if (log)
            fprintf(log, "features of source '%s' (%lld images) through model '%s'\n", s->name,
                    (long long)s->im.n, model);
        if (side_alloc(s, *dim, err) ||
            eval_vit_features(vit, &s->im, spec, s->x, s->have, &s->failed, log, err))
            return -1;
        side_compact(s, *dim);
    }
    return 0;
}

/* ---- k-NN ---------------------------------------------------------------------------------- */

void lvd_eval_knn_defaults(lvd_eval_knn_options *o)
{
    memset(o, 0, sizeof *o);
    o->pool = LVD_EVAL_POOL_MODEL;
    lvd_knn_opts_default(&o->knn);
    o->embed = 1;
    o->batch = 32;
    o->log = stderr;
}

/* Embeds the images of source s without an embedding of the model (the embed stage). */
static int embed_missing(lvd_manifest *m, const lvd_eval_knn_options *o, const side *s,
                         int64_t *embedded, lvd_error *err)
{
    lvd_embed_opts eo;
    lvd_embed_opts_init(&eo);
    eo.db = sqlite3_db_filename(lvd_manifest_db(m), "main");
    eo.model = o->model;
    eo.source = s->name;
    eo.resize = o->resize;
    eo.crop = o->crop;
    eo.batch = o->batch;
    eo.threads = o->threads;
    eo.progress = 0;
    eo.log = o->log;
    lvd_embed_summary sum;
    if (lvd_embed_run(&eo, &sum, err))
        return lvd_error_prefix(err, "embedding source '%s'", s->name);
    *embedded += sum.embedded;
    return 0;
}

/* The stored embeddings of both sides, embedding the missing ones when allowed. */
static int stored_features(lvd_manifest *m, const lvd_eval_knn_options *o,
                           const lvd_model_record *rec, side *tr, side *te, lvd_eval_knn_report *r,
                           lvd_error *err)
{
    side *sides[2] = {tr, te};
    for (int k = 0; k < 2; k++) {
        side *s = sides[k];
        int64_t missing, failed;
        if (side_alloc(s, rec->dim, err) || eval_stored_read(m, rec->id, s->src, rec->dim, &s->im,
                                                             s->x, s->have, &missing, &failed, err))
            return -1;
        if (missing > failed) {
            long long todo = (long long)(missing - failed);
            if (rec->features == LVD_FEATURES_EXTERNAL)
                return lvd_fail(err,
                                "%lld images of source '%s' have no embedding of model '%s', "
                                "which is external: attach them with lvd-embed --import",
                                todo, s->name, rec->name);
            if (!o->embed)
                return lvd_fail(err,
                                "%lld images of source '%s' have no embedding of model '%s': "
                                "run lvd-embed --db DB --model %s --source %s",
                                todo, s->name, rec->name, rec->name, s->name);
            int pr, pc;
            int64_t prun;
            if (embedded_transform(m, rec->name, &pr, &pc, &prun, err))
                return -1;
            if (prun > 0 && (pr != o->resize || pc != o->crop))
                return lvd_fail(err,
                                "model '%s' embedded its images at resize %d, crop %d (run "
                                "%lld): embedding %lld more at resize %d, crop %d would mix "
                                "transforms",
                                rec->name, pr, pc, (long long)prun, todo, o->resize, o->crop);
            if (o->log)
                fprintf(o->log, "embedding %lld images of source '%s' with model '%s'\n", todo,
                        s->name, rec->name);
            if (embed_missing(m, o, s, &r->embedded, err) ||
                eval_stored_read(m, rec->id, s->src, rec->dim, &s->im, s->x, s->have, &missing,
                                 &failed, err))
                return -1;
            if (missing > failed)
                return lvd_fail(err, "%lld images of source '%s' are still not embedded",
                                (long long)(missing - failed), s->name);
        }
        s->failed = failed;
        side_compact(s, rec->dim);
    }
    return 0;
}

static const char *pool_name(int pool)
{
    return pool == LVD_EVAL_POOL_CLS_MEAN ? "cls+mean" : "cls";
}

static cJSON *knn_params(const lvd_eval_knn_options *o, const char *setting)
{
    cJSON *j = cJSON_CreateObject(), *ks = cJSON_AddArrayToObject(j, "k");
    cJSON_AddStringToObject(j, "model", o->model);
    cJSON_AddStringToObject(j, "train", o->train);
    cJSON_AddStringToObject(j, "test", o->test);
    cJSON_AddStringToObject(j, "setting", setting);
    for (int q = 0; q < o->knn.n_ks; q++)
        cJSON_AddItemToArray(ks, cJSON_CreateNumber(o->knn.ks[q]));
    cJSON_AddNumberToObject(j, "temperature", o->knn.temperature);
    cJSON_AddNumberToObject(j, "resize", o->resize);
    cJSON_AddNumberToObject(j, "crop", o->crop);
    return j;
}

/* One row of `evals`. */
typedef struct eval_row {
    const char *protocol, *setting, *split;
    int k;     /* 0: none */
    double lr; /* 0: none */
    double top1, top5;
    int64_t n_train, n_test, train_src, test_src;
} eval_row;

static int insert_rows(lvd_manifest *m, int64_t run, int64_t model_id, const eval_row *rows, int n,
                       lvd_error *err)
{
    sqlite3_stmt *st;
    if (lvd_manifest_begin(m, err))
        return -1;
    if (lvd_manifest_prepare(m,
                             "INSERT INTO evals (run_id, model_id, protocol, setting, k, lr, "
                             "split, top1, top5, n_train, n_test, train_source_id, "
                             "test_source_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, "
                             "?11, ?12, ?13)",
                             &st, err)) {
        lvd_manifest_rollback(m);
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        const eval_row *e = &rows[i];
        sqlite3_bind_int64(st, 1, run);
        sqlite3_bind_int64(st, 2, model_id);
        sqlite3_bind_text(st, 3, e->protocol, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, e->setting, -1, SQLITE_TRANSIENT);
        if (e->k > 0)
            sqlite3_bind_int(st, 5, e->k);
        else
            sqlite3_bind_null(st, 5);
        if (e->lr > 0)
            sqlite3_bind_double(st, 6, e->lr);
        else
            sqlite3_bind_null(st, 6);
        sqlite3_bind_text(st, 7, e->split, -1, SQLITE_STATIC);
        sqlite3_bind_double(st, 8, e->top1);
        sqlite3_bind_double(st, 9, e->top5);
        sqlite3_bind_int64(st, 10, e->n_train);
        sqlite3_bind_int64(st, 11, e->n_test);
        sqlite3_bind_int64(st, 12, e->train_src);
        sqlite3_bind_int64(st, 13, e->test_src);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = lvd_manifest_fail(m, err, "recording the evaluation");
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    if (rc == 0)
        return lvd_manifest_commit(m, err);
    lvd_manifest_rollback(m);
    return -1;
}

static int knn_record(lvd_manifest *m, const lvd_model_record *rec, const side *tr, const side *te,
                      const lvd_eval_knn_options *o, lvd_eval_knn_report *r, lvd_error *err)
{
    eval_row rows[LVD_KNN_MAX_KS];
    for (int q = 0; q < o->knn.n_ks; q++)
        rows[q] =
            (eval_row){"knn",          r->setting, "test", r->res[q].k_used, 0,      r->res[q].top1,
                       r->res[q].top5, tr->n,      te->n,  tr->src,          te->src};
    return insert_rows(m, r->run_id, rec->id, rows, o->knn.n_ks, err);
}

static int knn_body(lvd_manifest *m, const lvd_eval_knn_options *o, const lvd_model_record *rec,
                    lvd_vit *vit, side *tr, side *te, int n_classes, lvd_eval_knn_report *r,
                    lvd_error *err)
{
    double t0 = now_s();
    int dim = rec->dim;
    if (!vit) {
        if (stored_features(m, o, rec, tr, te, r, err))
            return -1;
    } else {
        eval_vit_spec spec = {1, o->pool == LVD_EVAL_POOL_CLS_MEAN, o->resize, o->crop, o->batch};
        if (vit_features(vit, rec->name, &spec, tr, te, &dim, o->log, err) ||
            lvd_normalize_rows(tr->x, tr->n, dim, err) ||
            lvd_normalize_rows(te->x, te->n, dim, err))
            return -1;
    }
    r->n_train = tr->n;
    r->n_test = te->n;
    r->failed_train = tr->failed;
    r->failed_test = te->failed;
    if (tr->n == 0 || te->n == 0)
        return lvd_fail(err, "no image of source '%s' could be embedded",
                        tr->n == 0 ? tr->name : te->name);
    double t1 = now_s();
    r->seconds_features = t1 - t0;
    if (lvd_knn_eval(tr->x, tr->y, tr->n, te->x, te->y, te->n, dim, n_classes, &o->knn, r->res,
                     NULL, err))
        return -1;
    r->seconds_knn = now_s() - t1;
    return knn_record(m, rec, tr, te, o, r, err);
}

static cJSON *knn_counts(const lvd_eval_knn_options *o, const lvd_eval_knn_report *r)
{
    cJSON *j = cJSON_CreateObject(), *res = cJSON_AddArrayToObject(j, "results");
    cJSON_AddNumberToObject(j, "train", (double)r->n_train);
    cJSON_AddNumberToObject(j, "test", (double)r->n_test);
    cJSON_AddNumberToObject(j, "failed_train", (double)r->failed_train);
    cJSON_AddNumberToObject(j, "failed_test", (double)r->failed_test);
    cJSON_AddNumberToObject(j, "embedded", (double)r->embedded);
    cJSON_AddNumberToObject(j, "classes", r->n_classes);
    cJSON_AddNumberToObject(j, "seconds_features", r->seconds_features);
    cJSON_AddNumberToObject(j, "seconds_knn", r->seconds_knn);
    for (int q = 0; q < o->knn.n_ks && r->n_test > 0; q++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "k", r->res[q].k_used);
        cJSON_AddNumberToObject(e, "top1", r->res[q].top1);
        cJSON_AddNumberToObject(e, "top5", r->res[q].top5);
        cJSON_AddItemToArray(res, e);
    }
    return j;
}

/* Starts a run, calls body, finishes the run with its status and counts. */
static int run_stage(lvd_manifest *m, const char *stage, cJSON *params, int64_t *run_id,
                     int (*body)(void *), void *ctx, cJSON *(*counts)(void *), lvd_error *err)
{
    int rc = lvd_manifest_run_start(m, stage, params, run_id, err);
    cJSON_Delete(params);
    if (rc)
        return -1;
    rc = body(ctx);
    cJSON *c = counts(ctx);
    lvd_error ferr;
    int frc = lvd_manifest_run_finish(m, *run_id, rc ? "failed" : "ok", c, rc ? &ferr : err);
    cJSON_Delete(c);
    return rc || frc ? -1 : 0;
}

typedef struct knn_ctx {
    lvd_manifest *m;
    const lvd_eval_knn_options *o;
    const lvd_model_record *rec;
    lvd_vit *vit; /* NULL: stored embeddings */
    side *tr, *te;
    lvd_eval_knn_report *r;
    lvd_error *err;
} knn_ctx;

static int knn_body_cb(void *p)
{
    knn_ctx *c = p;
    return knn_body(c->m, c->o, c->rec, c->vit, c->tr, c->te, c->r->n_classes, c->r, c->err);
}

static cJSON *knn_counts_cb(void *p)
{
    knn_ctx *c = p;
    return knn_counts(c->o, c->r);
}

int lvd_eval_knn_run(lvd_manifest *m, const lvd_eval_knn_options *opts, lvd_eval_knn_report *r,
                     lvd_error *err)
{
    memset(r, 0, sizeof *r);
    if (!opts->model || !opts->train || !opts->test)
        return lvd_fail(err, "k-NN: a model, a train and a test source are needed");
    if (opts->pool < LVD_EVAL_POOL_MODEL || opts->pool > LVD_EVAL_POOL_CLS_MEAN)
        return lvd_fail(err, "k-NN: unknown pooling %d", opts->pool);
    lvd_eval_knn_options resolved = *opts, *o = &resolved;
    lvd_model_record rec;
    if (find_model(m, o->model, &rec, err) ||
        resolve_transform(m, o->model, &resolved.resize, &resolved.crop, err))
        return -1;
    r->resize = o->resize;
    r->crop = o->crop;
    int stored = 1;
    if (rec.features == LVD_FEATURES_EXTERNAL) {
        if (o->pool != LVD_EVAL_POOL_MODEL)
            return lvd_fail(err,
                            "model '%s' is external: only its stored embeddings can be "
                            "evaluated (leave out --pool)",
                            o->model);
        snprintf(r->setting, sizeof r->setting, "external");
    } else {
        int registered =
            rec.features == LVD_FEATURES_CLS ? LVD_EVAL_POOL_CLS : LVD_EVAL_POOL_CLS_MEAN;
        int pool = o->pool == LVD_EVAL_POOL_MODEL ? registered : o->pool;
        stored = pool == registered;
        snprintf(r->setting, sizeof r->setting, "%s", pool_name(pool));
        if (!stored && o->log)
            fprintf(o->log, "model '%s' stores %s embeddings: computing %s features\n", o->model,
                    pool_name(registered), pool_name(pool));
    }
    side tr, te;
    eval_labels labels;
    lvd_vit *vit = NULL;
    eval_vit_spec spec = {1, 0, o->resize, o->crop, o->batch};
    int rc = sides_read(m, o->train, o->test, &tr, &te, &labels, err);
    r->n_classes = labels.n;
    if (rc == 0 && !stored)
        rc = open_vit(&rec, o->threads, "lvd-eval knn", &vit, err) ||
             eval_vit_check(vit, &spec, err);
    if (rc == 0) {
        knn_ctx c = {m, o, &rec, vit, &tr, &te, r, err};
        rc = run_stage(m, "eval-knn", knn_params(o, r->setting), &r->run_id, knn_body_cb, &c,
                       knn_counts_cb, err);
    }
    r->stored = stored;
    lvd_vit_free(vit);
    side_free(&tr);
    side_free(&te);
    eval_labels_free(&labels);
    return rc ? -1 : 0;
}

void lvd_eval_knn_print(FILE *out, const lvd_eval_knn_options *o, const lvd_eval_knn_report *r)
{
    char transform[64] = "";
    if (strcmp(r->setting, "external") != 0) /* imported rows: no transform of lvd's */
        snprintf(transform, sizeof transform, ", resize %d, crop %d", r->resize, r->crop);
    fprintf(out, "k-NN of model %s, %s features (%s%s), T = %g, run %lld\n", o->model, r->setting,
            r->stored ? "stored embeddings" : "computed", transform, o->knn.temperature,
            (long long)r->run_id);
    fprintf(out, "train '%s' %lld images, test '%s' %lld images, %d classes", o->train,
            (long long)r->n_train, o->test, (long long)r->n_test, r->n_classes);
    if (r->failed_train || r->failed_test)
        fprintf(out, " (left out, not decodable: %lld train, %lld test)",
                (long long)r->failed_train, (long long)r->failed_test);
    fprintf(out, "\n%6s  %7s  %7s\n", "k", "top-1", "top-5");
    for (int q = 0; q < o->knn.n_ks; q++) {
        const lvd_knn_result *e = &r->res[q];
        fprintf(out, "%6d  %7.2f  %7.2f", e->k_used, e->top1, e->top5);
        if (e->k_used != e->k)
            fprintf(out, "  (k = %d clamped to the bank)", e->k);
        fputc('\n', out);
    }
    fprintf(out, "features %.1f s%s, k-NN %.1f s\n", r->seconds_features,
            r->embedded ? " (embedding included)" : "", r->seconds_knn);
}

/* ---- Linear probe -------------------------------------------------------------------------- */

void lvd_eval_linear_defaults(lvd_eval_linear_options *o)
{
    memset(o, 0, sizeof *o);
    o->blocks = 1;
    lvd_linear_opts_default(&o->linear);
    o->val_share = 0.1;
    o->batch = 32;
    o->log = stderr;
}

static cJSON *linear_params(const lvd_eval_linear_options *o, const char *setting)
{
    cJSON *j = cJSON_CreateObject(), *lrs = cJSON_AddArrayToObject(j, "lrs");
    cJSON_AddStringToObject(j, "model", o->model);
    cJSON_AddStringToObject(j, "train", o->train);
    cJSON_AddStringToObject(j, "test", o->test);
    cJSON_AddStringToObject(j, "setting", setting);
    for (int g = 0; g < o->linear.n_lrs; g++)
        cJSON_AddItemToArray(lrs, cJSON_CreateNumber(o->linear.lrs[g]));
    cJSON_AddNumberToObject(j, "epochs", o->linear.epochs);
    cJSON_AddNumberToObject(j, "batch", o->linear.batch);
    cJSON_AddNumberToObject(j, "seed", (double)o->linear.seed);
    cJSON_AddNumberToObject(j, "val_share", o->val_share);
    cJSON_AddNumberToObject(j, "resize", o->resize);
    cJSON_AddNumberToObject(j, "crop", o->crop);
    return j;
}

/* Splits the train side's rows into train and validation rows (by image id). */
typedef struct split {
    float *x, *vx;
    int32_t *y, *vy;
    int64_t n, nv;
} split;

static void split_free(split *s)
{
    free(s->x);
    free(s->vx);
    free(s->y);
    free(s->vy);
}

static int split_side(const side *tr, int dim, double share, uint64_t seed, split *s,
                      lvd_error *err)
{
    memset(s, 0, sizeof *s);
    size_t n = (size_t)(tr->n > 0 ? tr->n : 1);
    int64_t *keys = malloc(n * sizeof *keys);
    uint8_t *is_val = malloc(n);
    s->x = malloc(n * dim * sizeof *s->x);
    s->vx = malloc(n * dim * sizeof *s->vx);
    s->y = malloc(n * sizeof *s->y);
    s->vy = malloc(n * sizeof *s->vy);
    int rc = keys && is_val && s->x && s->vx && s->y && s->vy
                 ? 0
                 : lvd_fail(err, "out of memory for the validation split");
    int64_t r = 0;
    for (int64_t i = 0; i < tr->im.n && rc == 0; i++)
        if (tr->have[i])
            keys[r++] = tr->im.id[i];
    if (rc == 0)
        rc = lvd_eval_split(keys, tr->n, share, seed, is_val, err);
    for (int64_t i = 0; i < tr->n && rc == 0; i++) {
        float *dst = is_val[i] ? s->vx + (size_t)s->nv * dim : s->x + (size_t)s->n * dim;
        memcpy(dst, tr->x + (size_t)i * dim, (size_t)dim * sizeof *dst);
        if (is_val[i])
            s->vy[s->nv++] = tr->y[i];
        else
            s->y[s->n++] = tr->y[i];
    }
    free(keys);
    free(is_val);
    return rc;
}

static int linear_record(lvd_manifest *m, const lvd_model_record *rec, const side *tr,
                         const side *te, const lvd_eval_linear_options *o,
                         const lvd_eval_linear_report *r, lvd_error *err)
{
    eval_row rows[LVD_LINEAR_MAX_LRS + 1];
    const lvd_linear_result *res = &r->res;
    int n = 0;
    for (int g = 0; g < res->n_lrs; g++)
        rows[n++] = (eval_row){
            "linear",         r->setting, "val",    0,       o->linear.lrs[g], res->val_top1[g],
            res->val_top5[g], r->n_train, r->n_val, tr->src, tr->src};
    rows[n++] =
        (eval_row){"linear",       r->setting,     "test",     0,         o->linear.lrs[res->best],
                   res->test_top1, res->test_top5, r->n_train, r->n_test, tr->src,
                   te->src};
    return insert_rows(m, r->run_id, rec->id, rows, n, err);
}

typedef struct linear_ctx {
    lvd_manifest *m;
    const lvd_eval_linear_options *o;
    const lvd_model_record *rec;
    lvd_vit *vit;
    side *tr, *te;
    lvd_eval_linear_report *r;
    lvd_error *err;
} linear_ctx;

static int linear_body(void *p)
{
    linear_ctx *c = p;
    const lvd_eval_linear_options *o = c->o;
    lvd_eval_linear_report *r = c->r;
    double t0 = now_s();
    eval_vit_spec spec = {o->blocks, o->meanpatch, o->resize, o->crop, o->batch};
    if (vit_features(c->vit, c->rec->name, &spec, c->tr, c->te, &r->dim, o->log, c->err))
        return -1;
    r->failed_train = c->tr->failed;
    r->failed_test = c->te->failed;
    r->n_test = c->te->n;
    double t1 = now_s();
    r->seconds_features = t1 - t0;
    split s;
    int rc = split_side(c->tr, r->dim, o->val_share, o->linear.seed, &s, c->err);
    r->n_train = s.n;
    r->n_val = s.nv;
    if (rc == 0 && (s.nv == 0 || s.n == 0))
        rc = lvd_fail(c->err,
                      "source '%s': %lld images give %lld validation rows and %lld training "
                      "rows; both need some (--val-share)",
                      c->tr->name, (long long)c->tr->n, (long long)s.nv, (long long)s.n);
    if (rc == 0 && c->te->n == 0)
        rc = lvd_fail(c->err, "no image of source '%s' could be decoded", c->te->name);
    if (rc == 0 && o->log)
        fprintf(o->log, "training %d linear classifiers on %lld rows of %d features\n",
                o->linear.n_lrs, (long long)s.n, r->dim);
    if (rc == 0)
        rc = lvd_linear_probe(s.x, s.y, s.n, s.vx, s.vy, s.nv, c->te->x, c->te->y, c->te->n, r->dim,
                              r->n_classes, &o->linear, &r->res, c->err);
    split_free(&s);
    r->seconds_train = now_s() - t1;
    if (rc == 0 && r->res.best < 0)
        rc = lvd_fail(c->err, "every learning rate diverged: try smaller ones (--lrs)");
    return rc ? -1 : linear_record(c->m, c->rec, c->tr, c->te, o, r, c->err);
}

static cJSON *linear_counts(void *p)
{
    linear_ctx *c = p;
    const lvd_eval_linear_report *r = c->r;
    cJSON *j = cJSON_CreateObject(), *res = cJSON_AddArrayToObject(j, "val");
    cJSON_AddNumberToObject(j, "train", (double)r->n_train);
    cJSON_AddNumberToObject(j, "val_rows", (double)r->n_val);
    cJSON_AddNumberToObject(j, "test", (double)r->n_test);
    cJSON_AddNumberToObject(j, "failed_train", (double)r->failed_train);
    cJSON_AddNumberToObject(j, "failed_test", (double)r->failed_test);
    cJSON_AddNumberToObject(j, "classes", r->n_classes);
    cJSON_AddNumberToObject(j, "dim", r->dim);
    cJSON_AddNumberToObject(j, "steps", (double)r->res.steps);
    cJSON_AddNumberToObject(j, "seconds_features", r->seconds_features);
    cJSON_AddNumberToObject(j, "seconds_train", r->seconds_train);
    for (int g = 0; g < r->res.n_lrs; g++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "lr", c->o->linear.lrs[g]);
        cJSON_AddNumberToObject(e, "top1", r->res.val_top1[g]);
        cJSON_AddBoolToObject(e, "diverged", r->res.diverged[g]);
        if (!r->res.diverged[g])
            cJSON_AddNumberToObject(e, "loss", r->res.final_loss[g]);
        cJSON_AddItemToArray(res, e);
    }
    if (r->res.best >= 0) {
        cJSON_AddNumberToObject(j, "best_lr", c->o->linear.lrs[r->res.best]);
        cJSON_AddNumberToObject(j, "test_top1", r->res.test_top1);
        cJSON_AddNumberToObject(j, "test_top5", r->res.test_top5);
    }
    return j;
}

int lvd_eval_linear_run(lvd_manifest *m, const lvd_eval_linear_options *opts,
                        lvd_eval_linear_report *r, lvd_error *err)
{
    memset(r, 0, sizeof *r);
    r->res.best = -1;
    if (!opts->model || !opts->train || !opts->test)
        return lvd_fail(err, "linear probe: a model, a train and a test source are needed");
    if (opts->blocks < 1)
        return lvd_fail(err, "linear probe: blocks must be at least 1");
    if (!(opts->val_share > 0 && opts->val_share < 1))
        return lvd_fail(err, "linear probe: the validation share must be in (0, 1)");
    lvd_eval_linear_options resolved = *opts, *o = &resolved;
    lvd_model_record rec;
    if (find_model(m, o->model, &rec, err) ||
        resolve_transform(m, o->model, &resolved.resize, &resolved.crop, err))
        return -1;
    r->resize = o->resize;
    r->crop = o->crop;
    snprintf(r->setting, sizeof r->setting, "blocks=%d%s", o->blocks, o->meanpatch ? "+mean" : "");
    lvd_vit *vit = NULL;
    eval_vit_spec spec = {o->blocks, o->meanpatch, o->resize, o->crop, o->batch};
    if (open_vit(&rec, o->threads, "the linear probe", &vit, err) ||
        eval_vit_check(vit, &spec, err)) {
        lvd_vit_free(vit);
        return -1;
    }
    side tr, te;
    eval_labels labels;
    int rc = sides_read(m, o->train, o->test, &tr, &te, &labels, err);
    r->n_classes = labels.n;
    if (rc == 0) {
        linear_ctx c = {m, o, &rec, vit, &tr, &te, r, err};
        rc = run_stage(m, "eval-linear", linear_params(o, r->setting), &r->run_id, linear_body, &c,
                       linear_counts, err);
    }
    lvd_vit_free(vit);
    side_free(&tr);
    side_free(&te);
    eval_labels_free(&labels);
    return rc;
}

void lvd_eval_linear_print(FILE *out, const lvd_eval_linear_options *o,
                           const lvd_eval_linear_report *r)
{
    const lvd_linear_result *res = &r->res;
    fprintf(out, "linear probe of model %s, %s (%d features, resize %d, crop %d), run %lld\n",
            o->model, r->setting, r->dim, r->resize, r->crop, (long long)r->run_id);
    fprintf(out, "train '%s' %lld rows + %lld validation rows, test '%s' %lld images, %d classes\n",
            o->train, (long long)r->n_train, (long long)r->n_val, o->test, (long long)r->n_test,
            r->n_classes);
    if (r->failed_train || r->failed_test)
        fprintf(out, "left out, not decodable: %lld train, %lld test images\n",
                (long long)r->failed_train, (long long)r->failed_test);
    fprintf(out, "%d epochs, batch %d, %lld steps\n", o->linear.epochs, o->linear.batch,
            (long long)res->steps);
    fprintf(out, "%10s  %9s  %9s  %8s\n", "lr", "val top-1", "val top-5", "loss");
    for (int g = 0; g < res->n_lrs; g++) {
        fprintf(out, "%10.3g  %9.2f  %9.2f  ", o->linear.lrs[g], res->val_top1[g],
                res->val_top5[g]);
        if (res->diverged[g])
            fputs("diverged", out);
        else
            fprintf(out, "%8.4f", res->final_loss[g]);
        fputs(g == res->best ? "  <- best\n" : "\n", out);
    }
    if (res->best >= 0)
        fprintf(out, "test (lr %g): top-1 %.2f, top-5 %.2f\n", o->linear.lrs[res->best],
                res->test_top1, res->test_top5);
    fprintf(out, "features %.1f s, training %.1f s\n", r->seconds_features, r->seconds_train);
}

/* ---- k-NN of a model in memory (lvd_knn_probe) -------------------------------------------- */

struct lvd_knn_probe {
    lvd_knn_probe_options o;
    side tr, te;
    eval_labels labels;
};

/* Keeps n images of im (all when n is 0 or not below the count): those lvd_eval_split picks
 * by image id with seed 0, a spread sample whatever the order of the ids (folders fetched class
 * after class), in image id order. */
static int images_subset(eval_images *im, int64_t n, lvd_error *err)
{
    if (n <= 0 || n >= im->n)
        return 0;
    uint8_t *keep = malloc((size_t)im->n);
    if (!keep)
        return lvd_fail(err, "out of memory");
    if (lvd_eval_split(im->id, im->n, (double)n / (double)im->n, 0, keep, err)) {
        free(keep);
        return -1;
    }
    int64_t k = 0;
    for (int64_t i = 0; i < im->n; i++) {
        if (!keep[i]) {
            free(im->shard[i]);
            free(im->member[i]);
            continue;
        }
        im->id[k] = im->id[i];
        im->label[k] = im->label[i];
        im->shard[k] = im->shard[i];
        im->member[k] = im->member[i];
        k++;
    }
    im->n = k;
    free(keep);
    return 0;
}

int lvd_knn_probe_open(lvd_manifest *m, const lvd_knn_probe_options *o, lvd_knn_probe **out,
                       lvd_error *err)
{
    *out = NULL;
    if (!o->train || !o->test)
        return lvd_fail(err, "k-NN probe: a train and a test source are needed");
    if (o->pool != LVD_EVAL_POOL_CLS && o->pool != LVD_EVAL_POOL_CLS_MEAN)
        return lvd_fail(err, "k-NN probe: unknown pooling %d", o->pool);
    lvd_knn_probe *p = calloc(1, sizeof *p);
    if (!p)
        return lvd_fail(err, "out of memory");
    p->o = *o;
    if (sides_read(m, o->train, o->test, &p->tr, &p->te, &p->labels, err) ||
        images_subset(&p->tr.im, o->train_limit, err) ||
        images_subset(&p->te.im, o->test_limit, err)) {
        lvd_knn_probe_free(p);
        return -1;
    }
    *out = p;
    return 0;
}

/* Drops the features of the previous run, keeping the images. */
static void side_clear(side *s)
{
    free(s->x);
    free(s->have);
    free(s->y);
    s->x = NULL;
    s->have = NULL;
    s->y = NULL;
    s->n = s->failed = 0;
}

int lvd_knn_probe_run(lvd_knn_probe *p, lvd_vit *vit, lvd_knn_result *res, int64_t *n_train,
                      int64_t *n_test, lvd_error *err)
{
    const lvd_knn_probe_options *o = &p->o;
    eval_vit_spec spec = {1, o->pool == LVD_EVAL_POOL_CLS_MEAN, o->resize, o->crop, o->batch};
    int dim = 0;
    side_clear(&p->tr);
    side_clear(&p->te);
    *n_train = *n_test = 0;
    if (eval_vit_check(vit, &spec, err) ||
        vit_features(vit, "in training", &spec, &p->tr, &p->te, &dim, NULL, err))
        return -1;
    if (p->tr.n == 0 || p->te.n == 0)
        return lvd_fail(err, "no image of source '%s' could be decoded",
                        p->tr.n == 0 ? p->tr.name : p->te.name);
    if (lvd_normalize_rows(p->tr.x, p->tr.n, dim, err) ||
        lvd_normalize_rows(p->te.x, p->te.n, dim, err) ||
        lvd_knn_eval(p->tr.x, p->tr.y, p->tr.n, p->te.x, p->te.y, p->te.n, dim, p->labels.n,
                     &o->knn, res, NULL, err))
        return -1;
    *n_train = p->tr.n;
    *n_test = p->te.n;
    return 0;
}

const char *lvd_knn_probe_setting(const lvd_knn_probe *p)
{
    return pool_name(p->o.pool);
}

void lvd_knn_probe_free(lvd_knn_probe *p)
{
    if (!p)
        return;
    side_free(&p->tr);
    side_free(&p->te);
    eval_labels_free(&p->labels);
    free(p);
}
