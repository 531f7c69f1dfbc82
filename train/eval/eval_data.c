/* train/eval/eval_data.h: labelled images of a source, their stored embeddings, and ViT features
 * from the tar shards. */
#include "train/eval/eval_data.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "curate/stages/embeddings_read.h"
#include "curate/stages/embeddings_vit.h"
#include "image/image.h"
#include "store/shard.h"

int eval_source(lvd_manifest *m, const char *name, int64_t *id, lvd_error *err)
{
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m, "SELECT id FROM sources WHERE name = ?1", &st, err))
        return -1;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *id = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (rc == SQLITE_ROW)
        return 0;
    if (rc != SQLITE_DONE)
        return lvd_manifest_fail(m, err, "reading the sources");
    return lvd_fail(err, "unknown source '%s'", name);
}

void eval_labels_free(eval_labels *l)
{
    for (int i = 0; l && i < l->n; i++)
        free(l->name[i]);
    if (l) {
        free(l->name);
        memset(l, 0, sizeof *l);
    }
}

int eval_labels_read(lvd_manifest *m, int64_t a, int64_t b, eval_labels *out, lvd_error *err)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m,
                             "SELECT DISTINCT label FROM images WHERE source_id IN (?1, ?2) AND "
                             "status = 'ok' AND label IS NOT NULL AND label != '' ORDER BY label",
                             &st, err))
        return -1;
    sqlite3_bind_int64(st, 1, a);
    sqlite3_bind_int64(st, 2, b);
    int rc, cap = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (out->n == cap) {
            cap = cap ? 2 * cap : 64;
            char **grown = realloc(out->name, (size_t)cap * sizeof *grown);
            if (!grown)
                break;
            out->name = grown;
        }
        out->name[out->n] = strdup((const char *)sqlite3_column_text(st, 0));
        if (!out->name[out->n])
            break;
        out->n++;
    }
    sqlite3_finalize(st);
    if (rc == SQLITE_DONE)
        return 0;
    eval_labels_free(out);
    if (rc == SQLITE_ROW)
        return lvd_fail(err, "out of memory for the labels");
    return lvd_manifest_fail(m, err, "reading the labels");
}

void eval_images_free(eval_images *im)
{
    if (!im)
        return;
    for (int64_t i = 0; i < im->n; i++) {
        free(im->shard[i]);
        free(im->member[i]);
    }
    free(im->id);
    free(im->label);
    free(im->shard);
    free(im->member);
    memset(im, 0, sizeof *im);
}

static int64_t count_images(lvd_manifest *m, const char *sql, int64_t src, lvd_error *err)
{
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m, sql, &st, err))
        return -1;
    sqlite3_bind_int64(st, 1, src);
    int64_t n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_finalize(st);
    if (n < 0)
        lvd_manifest_fail(m, err, "counting images");
    return n;
}

static int find_label(const eval_labels *l, const char *name)
{
    int lo = 0, hi = l->n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(l->name[mid], name);
        if (c == 0)
            return mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

int eval_images_read(lvd_manifest *m, int64_t src, const char *name, const eval_labels *l,
                     eval_images *out, lvd_error *err)
{
    memset(out, 0, sizeof *out);
    int64_t n = count_images(
        m, "SELECT COUNT(*) FROM images WHERE source_id = ?1 AND status = 'ok'", src, err);
    int64_t unlabeled = count_images(m,
                                     "SELECT COUNT(*) FROM images WHERE source_id = ?1 AND status "
                                     "= 'ok' AND (label IS NULL OR label = '')",
                                     src, err);
    if (n < 0 || unlabeled < 0)
        return -1;
    if (n == 0)
        return lvd_fail(err, "source '%s' has no stored images", name);
    if (unlabeled > 0)
        return lvd_fail(err,
                        "source '%s': %lld of %lld stored images have no label (v_images.label); "
                        "evaluation needs a label on every image",
                        name, (long long)unlabeled, (long long)n);
    out->id = malloc((size_t)n * sizeof *out->id);
    out->label = malloc((size_t)n * sizeof *out->label);
    out->shard = calloc((size_t)n, sizeof *out->shard);
    out->member = calloc((size_t)n, sizeof *out->member);
    if (!out->id || !out->label || !out->shard || !out->member) {
        eval_images_free(out);
        return lvd_fail(err, "out of memory for %lld images", (long long)n);
    }
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m,
                             "SELECT i.id, i.label, sh.path, i.member FROM images i"
                             " JOIN shards sh ON sh.id = i.shard_id"
                             " WHERE i.source_id = ?1 AND i.status = 'ok' ORDER BY i.id",
                             &st, err)) {
        eval_images_free(out);
        return -1;
    }
    sqlite3_bind_int64(st, 1, src);
    int rc = 0, step;
    while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW && out->n < n) {
        int64_t i = out->n;
        const char *label = (const char *)sqlite3_column_text(st, 1);
        const char *shard = (const char *)sqlite3_column_text(st, 2);
        const char *member = (const char *)sqlite3_column_text(st, 3);
        out->id[i] = sqlite3_column_int64(st, 0);
        out->label[i] = label ? find_label(l, label) : -1;
        out->shard[i] = shard ? strdup(shard) : NULL;
        out->member[i] = member ? strdup(member) : NULL;
        out->n++;
        if (out->label[i] < 0 || !out->shard[i] || !out->member[i])
            rc = lvd_fail(err, "source '%s': image %lld has no label, shard or member", name,
                          (long long)out->id[i]);
    }
    if (rc == 0 && step != SQLITE_ROW && step != SQLITE_DONE)
        rc = lvd_manifest_fail(m, err, "reading the images");
    sqlite3_finalize(st);
    if (rc)
        eval_images_free(out);
    return rc;
}

/* Position of id in the ascending ids, or -1. */
static int64_t find_id(const int64_t *ids, int64_t n, int64_t id)
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

int eval_stored_read(lvd_manifest *m, int64_t model_id, int64_t src, int dim, const eval_images *im,
                     float *x, uint8_t *have, int64_t *n_missing, int64_t *n_failed, lvd_error *err)
{
    static const lvd_kit_rows rows = {.where = "i.source_id = ?2 AND i.status = 'ok'"};
    lvd_embeddings e;
    if (lvd_embeddings_read(m, model_id, &rows, &src, 1, dim, &e, err))
        return -1;
    memset(have, 0, (size_t)im->n);
    for (int64_t r = 0; r < e.n; r++) {
        int64_t i = find_id(im->id, im->n, e.image_id[r]);
        if (i < 0)
            continue;
        memcpy(x + (size_t)i * dim, e.x + (size_t)r * dim, (size_t)dim * sizeof *x);
        have[i] = 1;
    }
    lvd_embeddings_free(&e);
    *n_missing = 0;
    for (int64_t i = 0; i < im->n; i++)
        *n_missing += !have[i];
    *n_failed = 0;
    if (*n_missing == 0)
        return 0;
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m,
                             "SELECT x.image_id FROM embedding_failures x"
                             " JOIN images i ON i.id = x.image_id"
                             " WHERE x.model_id = ?1 AND i.source_id = ?2 AND i.status = 'ok'",
                             &st, err))
        return -1;
    sqlite3_bind_int64(st, 1, model_id);
    sqlite3_bind_int64(st, 2, src);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t i = find_id(im->id, im->n, sqlite3_column_int64(st, 0));
        *n_failed += i >= 0 && !have[i];
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return lvd_manifest_fail(m, err, "reading the embedding failures");
    return 0;
}

int eval_vit_dim(const lvd_vit *vit, const eval_vit_spec *s)
{
    return (s->blocks + (s->meanpatch != 0)) * lvd_vit_get_info(vit)->dim;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* The feature pass: a batch of preprocessed images waiting for the ViT. */
typedef struct vit_pass {
    lvd_vit *vit;
    const eval_images *im;
    const eval_vit_spec *s;
    int D, N, dim;
    float *chw;           /* (batch, 3, crop, crop) */
    int64_t *slot;        /* (batch): image index of each waiting image */
    int nb;               /* waiting images */
    float *inter;         /* (blocks, batch, D) */
    float *patch;         /* (batch, N, D), with meanpatch */
    const int64_t *group; /* image indices of the shard being read */
    uint8_t *seen;        /* (n): the image's member came */
    float *x;
    uint8_t *have;
    int64_t *n_failed, done;
    FILE *log;
    double t0, last_log;
} vit_pass;

static int pass_flush(vit_pass *p, lvd_error *err)
{
    if (p->nb == 0)
        return 0;
    const eval_vit_spec *s = p->s;
    lvd_vit_outputs out = {
        .n_inter = s->blocks, .inter_cls = p->inter, .patch = s->meanpatch ? p->patch : NULL};
    if (lvd_vit_forward(p->vit, p->chw, p->nb, s->crop, s->crop, NULL, &out, err))
        return -1;
    int D = p->D;
    for (int b = 0; b < p->nb; b++) {
        float *row = p->x + (size_t)p->slot[b] * p->dim;
        for (int j = 0; j < s->blocks; j++)
            memcpy(row + (size_t)j * D, p->inter + ((size_t)j * p->nb + b) * D,
                   (size_t)D * sizeof *row);
        if (s->meanpatch) {
            const float *pt = p->patch + (size_t)b * p->N * D;
            for (int c = 0; c < D; c++) {
                double sum = 0.0;
                for (int t = 0; t < p->N; t++)
                    sum += pt[(size_t)t * D + c];
                row[(size_t)s->blocks * D + c] = (float)(sum / p->N);
            }
        }
        p->have[p->slot[b]] = 1;
    }
    p->done += p->nb;
    p->nb = 0;
    double t = now_s();
    if (p->log && t - p->last_log >= 10.0) {
        fprintf(p->log, "features: %lld / %lld images, %.0f s\n", (long long)p->done,
                (long long)p->im->n, t - p->t0);
        p->last_log = t;
    }
    return 0;
}

static int on_member(void *ctx, size_t i, const char *name, const uint8_t *data, size_t len,
                     lvd_error *err)
{
    vit_pass *p = ctx;
    int64_t k = p->group[i];
    if (strcmp(name, p->im->member[k]) != 0 || p->seen[k])
        return 0;
    p->seen[k] = 1;
    lvd_image img;
    lvd_error derr;
    if (lvd_image_decode_rgb(data, len, &img, &derr)) {
        (*p->n_failed)++; /* as lvd-embed, an image that does not decode is left out */
        return 0;
    }
    size_t plane = (size_t)3 * p->s->crop * p->s->crop;
    int rc =
        lvd_image_preprocess(&img, p->s->resize, p->s->crop, p->chw + (size_t)p->nb * plane, &derr);
    lvd_image_free(&img);
    if (rc) {
        (*p->n_failed)++;
        return 0;
    }
    p->slot[p->nb++] = k;
    return p->nb == p->s->batch ? pass_flush(p, err) : 0;
}

static int cmp_by_shard(const void *a, const void *b, void *ctx)
{
    const eval_images *im = ctx;
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    int c = strcmp(im->shard[x], im->shard[y]);
    return c ? c : (x > y) - (x < y);
}

/* Reads the shards one after another, each once. */
static int pass_shards(vit_pass *p, int64_t *order, const char **members, lvd_error *err)
{
    const eval_images *im = p->im;
    for (int64_t i = 0; i < im->n; i++)
        order[i] = i;
    qsort_r(order, (size_t)im->n, sizeof *order, cmp_by_shard, (void *)im);
    for (int64_t i = 0; i < im->n;) {
        int64_t j = i;
        for (; j < im->n && strcmp(im->shard[order[j]], im->shard[order[i]]) == 0; j++)
            members[j - i] = im->member[order[j]];
        p->group = order + i;
        if (lvd_shard_read(im->shard[order[i]], members, (size_t)(j - i), LVD_SHARD_BY_NAME,
                           on_member, p, err))
            return -1;
        for (int64_t k = i; k < j; k++)
            if (!p->seen[order[k]])
                return lvd_fail(err, "%s: member %s (image %lld) is missing", im->shard[order[k]],
                                im->member[order[k]], (long long)im->id[order[k]]);
        i = j;
    }
    return pass_flush(p, err);
}

int eval_vit_check(const lvd_vit *vit, const eval_vit_spec *s, lvd_error *err)
{
    const lvd_vit_info *info = lvd_vit_get_info(vit);
    if (s->blocks < 1 || s->blocks > info->depth)
        return lvd_fail(err, "the model has %d blocks, %d asked for", info->depth, s->blocks);
    if (s->crop < info->patch || s->crop % info->patch != 0 || s->resize < s->crop || s->batch < 1)
        return lvd_fail(err,
                        "crop %d must be a multiple of the patch size %d and resize %d at least "
                        "the crop; batch %d at least 1",
                        s->crop, info->patch, s->resize, s->batch);
    return 0;
}

int eval_vit_features(lvd_vit *vit, const eval_images *im, const eval_vit_spec *s, float *x,
                      uint8_t *have, int64_t *n_failed, FILE *log, lvd_error *err)
{
    if (eval_vit_check(vit, s, err))
        return -1;
    const lvd_vit_info *info = lvd_vit_get_info(vit);
    vit_pass p = {.vit = vit,
                  .im = im,
                  .s = s,
                  .D = info->dim,
                  .N = (s->crop / info->patch) * (s->crop / info->patch),
                  .dim = eval_vit_dim(vit, s),
                  .x = x,
                  .have = have,
                  .n_failed = n_failed,
                  .log = log};
    *n_failed = 0;
    memset(have, 0, (size_t)im->n);
    size_t n = (size_t)(im->n > 0 ? im->n : 1);
    p.chw = malloc((size_t)s->batch * 3 * s->crop * s->crop * sizeof *p.chw);
    p.slot = malloc((size_t)s->batch * sizeof *p.slot);
    p.inter = malloc((size_t)s->blocks * s->batch * p.D * sizeof *p.inter);
    p.patch = s->meanpatch ? malloc((size_t)s->batch * p.N * p.D * sizeof *p.patch) : NULL;
    p.seen = calloc(n, 1);
    int64_t *order = malloc(n * sizeof *order);
    const char **members = malloc(n * sizeof *members);
    int rc = -1;
    if (!p.chw || !p.slot || !p.inter || (s->meanpatch && !p.patch) || !p.seen || !order ||
        !members)
        lvd_fail(err, "out of memory for a batch of %d images of %d x %d", s->batch, s->crop,
                 s->crop);
    else {
        p.t0 = p.last_log = now_s();
        rc = pass_shards(&p, order, members, err);
    }
    free(p.chw);
    free(p.slot);
    free(p.inter);
    free(p.patch);
    free(p.seen);
    free(order);
    free(members);
    return rc;
}
