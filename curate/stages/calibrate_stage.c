/* Threshold calibration of curate/stages/calibrate_stage.h: the sample, the copies, their
 * embeddings, the false-positive count and the run that records the figures. */
#include "curate/stages/calibrate_stage.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "curate/stages/embeddings_read.h"
#include "curate/stages/embeddings_vit.h"
#include "index/index.h"
#include "store/shard.h"

static const char *const variant_names[LVD_CALIBRATE_VARIANTS] = {"flip", "jpeg40", "crop80",
                                                                  "half", "color"};

/* Pool rows per sgemm block of the false-positive count. */
#define POOL_BLOCK 4096

static const lvd_kit_rows pool_rows = {.where = "s.role = 'pool'"};

/* One sampled pool image: its embedding row and where its bytes are. */
typedef struct sampled {
    int64_t row;
    char *shard, *member;
} sampled;

typedef struct calib {
    const lvd_calibrate_options *o;
    lvd_embeddings pool;
    lvd_stage_vit vit;
    sampled *items;
    int64_t n_items;
    double *copy_sims[LVD_CALIBRATE_VARIANTS];
    int64_t n_copies;  /* images whose copies were measured */
    int64_t *measured; /* n_copies: pool row of each measured image */
    double *other;     /* n_copies: nearest other pool image of each measured image */
    float *feats;      /* n_copies x LVD_CALIBRATE_VARIANTS x dim: the copies' embeddings */
    int64_t fp_hist[2][LVD_CALIBRATE_THRESHOLDS + 1]; /* [pool / copy][thresholds exceeded] */
} calib;

const char *lvd_calibrate_variant_name(int v)
{
    return v >= 0 && v < LVD_CALIBRATE_VARIANTS ? variant_names[v] : "?";
}

void lvd_calibrate_defaults(lvd_calibrate_options *o)
{
    memset(o, 0, sizeof *o);
    o->sample = 100;
    o->resize = 256;
    o->crop = 224;
}

static void calib_free(calib *c)
{
    for (int64_t i = 0; i < c->n_items; i++) {
        free(c->items[i].shard);
        free(c->items[i].member);
    }
    free(c->items);
    for (int v = 0; v < LVD_CALIBRATE_VARIANTS; v++)
        free(c->copy_sims[v]);
    free(c->other);
    free(c->measured);
    free(c->feats);
    lvd_stage_vit_close(&c->vit);
    lvd_embeddings_free(&c->pool);
}

/* Evenly spaced pool rows with their shard members (images never stored are skipped). */
static int pick_sample(lvd_manifest *m, calib *c, lvd_error *err)
{
    int64_t n = c->pool.n, want = c->o->sample < n ? c->o->sample : n;
    c->items = calloc((size_t)want, sizeof *c->items);
    c->other = calloc((size_t)want, sizeof *c->other);
    for (int v = 0; v < LVD_CALIBRATE_VARIANTS; v++)
        c->copy_sims[v] = calloc((size_t)want, sizeof *c->copy_sims[v]);
    c->measured = calloc((size_t)want, sizeof *c->measured);
    c->feats = malloc((size_t)want * LVD_CALIBRATE_VARIANTS * c->pool.dim * sizeof *c->feats);
    int ok = c->items && c->other && c->measured && c->feats;
    for (int v = 0; v < LVD_CALIBRATE_VARIANTS; v++)
        ok = ok && c->copy_sims[v];
    if (!ok)
        return lvd_fail(err, "calibrate: out of memory");
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m, "SELECT shard, member FROM v_images WHERE id = ?1", &st, err))
        return -1;
    for (int64_t j = 0; j < want; j++) {
        int64_t row = j * n / want;
        sqlite3_bind_int64(st, 1, c->pool.image_id[row]);
        if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL &&
            sqlite3_column_type(st, 1) != SQLITE_NULL) {
            sampled *s = &c->items[c->n_items++];
            s->row = row;
            s->shard = strdup((const char *)sqlite3_column_text(st, 0));
            s->member = strdup((const char *)sqlite3_column_text(st, 1));
        }
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    for (int64_t i = 0; i < c->n_items; i++)
        if (!c->items[i].shard || !c->items[i].member)
            return lvd_fail(err, "calibrate: out of memory");
    return 0;
}

static int mirror(const lvd_image *in, lvd_image *out)
{
    size_t stride = (size_t)in->width * 3;
    *out = (lvd_image){in->width, in->height, malloc(stride * in->height)};
    if (!out->rgb)
        return -1;
    for (int y = 0; y < in->height; y++)
        for (int x = 0; x < in->width; x++)
            memcpy(out->rgb + y * stride + (size_t)(in->width - 1 - x) * 3,
                   in->rgb + y * stride + (size_t)x * 3, 3);
    return 0;
}

static int center_crop(const lvd_image *in, lvd_image *out)
{
    int w = in->width * 4 / 5, h = in->height * 4 / 5;
    w = w > 0 ? w : 1;
    h = h > 0 ? h : 1;
    int x0 = (in->width - w) / 2, y0 = (in->height - h) / 2;
    *out = (lvd_image){w, h, malloc((size_t)w * h * 3)};
    if (!out->rgb)
        return -1;
    for (int y = 0; y < h; y++)
        memcpy(out->rgb + (size_t)y * w * 3,
               in->rgb + ((size_t)(y0 + y) * in->width + (size_t)x0) * 3, (size_t)w * 3);
    return 0;
}

static int half_size(const lvd_image *in, lvd_image *out, lvd_error *err)
{
    int w = in->width / 2, h = in->height / 2;
    return lvd_image_resize(in, w > 0 ? w : 1, h > 0 ? h : 1, out, err);
}

static uint8_t clamp_u8(double v)
{
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v + 0.5);
}

/* A slight warm shift: red up, blue down, as a color-graded copy would be. */
static int recolor(const lvd_image *in, lvd_image *out)
{
    size_t n = (size_t)in->width * in->height;
    *out = (lvd_image){in->width, in->height, malloc(n * 3)};
    if (!out->rgb)
        return -1;
    for (size_t i = 0; i < n; i++) {
        out->rgb[3 * i] = clamp_u8(in->rgb[3 * i] * 1.08 + 6.0);
        out->rgb[3 * i + 1] = in->rgb[3 * i + 1];
        out->rgb[3 * i + 2] = clamp_u8(in->rgb[3 * i + 2] * 0.92);
    }
    return 0;
}

static int reencode(const lvd_image *in, lvd_image *out, lvd_error *err)
{
    uint8_t *jpeg = NULL;
    size_t len = 0;
    int rc = lvd_image_encode_jpeg(in, 40, &jpeg, &len, err);
    if (rc == 0)
        rc = lvd_image_decode_rgb(jpeg, len, out, err);
    free(jpeg);
    return rc;
}

/* Embeds the copies of one decoded image, keeps their features and records their similarity to
 * its row. */
static int measure(calib *c, const sampled *s, const lvd_image *img, lvd_error *err)
{
    lvd_image v[LVD_CALIBRATE_VARIANTS] = {{0}};
    float *feats = c->feats + (size_t)c->n_copies * LVD_CALIBRATE_VARIANTS * c->pool.dim;
    int rc = 0;
    if (mirror(img, &v[0]) || center_crop(img, &v[2]) || recolor(img, &v[4]))
        rc = lvd_fail(err, "calibrate: out of memory");
    if (rc == 0)
        rc = reencode(img, &v[1], err);
    if (rc == 0)
        rc = half_size(img, &v[3], err);
    if (rc == 0)
        rc = lvd_stage_vit_embed(&c->vit, v, LVD_CALIBRATE_VARIANTS, c->o->resize, c->o->crop,
                                 feats, err);
    c->measured[c->n_copies] = s->row;
    for (int k = 0; k < LVD_CALIBRATE_VARIANTS; k++) {
        if (rc == 0) {
            const float *a = feats + (size_t)k * c->pool.dim;
            const float *b = c->pool.x + (size_t)s->row * c->pool.dim;
            double d = 0.0;
            for (int j = 0; j < c->pool.dim; j++)
                d += (double)a[j] * b[j];
            c->copy_sims[k][c->n_copies] = d;
        }
        lvd_image_free(&v[k]);
    }
    return rc;
}

typedef struct scan_ctx {
    calib *c;
    sampled **items;
} scan_ctx;

/* An image that does not decode is left out of the figures (as lvd-embed leaves it out). */
static int on_member(void *ctx, size_t i, const char *name, const uint8_t *data, size_t len,
                     lvd_error *err)
{
    (void)name;
    scan_ctx *x = ctx;
    const sampled *s = x->items[i];
    lvd_image img;
    lvd_error derr;
    if (lvd_image_decode_rgb(data, len, &img, &derr))
        return 0;
    int rc = measure(x->c, s, &img, err);
    lvd_image_free(&img);
    x->c->n_copies += rc == 0;
    return rc;
}

static int cmp_sampled(const void *a, const void *b)
{
    const sampled *x = *(sampled *const *)a, *y = *(sampled *const *)b;
    return strcmp(x->shard, y->shard);
}

/* Reads the sampled images shard by shard and measures their copies. */
static int measure_copies(calib *c, lvd_error *err)
{
    sampled **order = malloc((size_t)(c->n_items ? c->n_items : 1) * sizeof *order);
    const char **members = malloc((size_t)(c->n_items ? c->n_items : 1) * sizeof *members);
    int rc = order && members ? 0 : lvd_fail(err, "calibrate: out of memory");
    for (int64_t i = 0; i < c->n_items && rc == 0; i++)
        order[i] = &c->items[i];
    if (rc == 0)
        qsort(order, (size_t)c->n_items, sizeof *order, cmp_sampled);
    for (int64_t i = 0; i < c->n_items && rc == 0;) {
        int64_t j = i;
        for (; j < c->n_items && strcmp(order[j]->shard, order[i]->shard) == 0; j++)
            members[j - i] = order[j]->member;
        scan_ctx x = {c, order + i};
        rc = lvd_shard_read(order[i]->shard, members, (size_t)(j - i), LVD_SHARD_BY_NAME, on_member,
                            &x, err);
        i = j;
    }
    free(order);
    free(members);
    return rc;
}

double lvd_calibrate_threshold(int i)
{
    return i < LVD_CALIBRATE_THRESHOLDS - 1 ? (30 + 5 * i) / 100.0 : 0.99;
}

/* Number of calibration thresholds sim is above. */
static int exceeded(float sim)
{
    int i = 0;
    while (i < LVD_CALIBRATE_THRESHOLDS && (double)sim > lvd_calibrate_threshold(i))
        i++;
    return i;
}

/* Tallies one block of similarities: rows are the queries (per measured image, its stored
 * embedding then its copies), columns pool rows p0 .. p0 + nb - 1; an image's own row is no
 * false positive. */
static void tally_block(calib *c, const float *sims, int64_t nq, int64_t p0, int64_t nb)
{
    for (int64_t qi = 0; qi < nq; qi++) {
        int64_t m = qi / (1 + LVD_CALIBRATE_VARIANTS);
        int copy = qi % (1 + LVD_CALIBRATE_VARIANTS) != 0;
        for (int64_t j = 0; j < nb; j++) {
            if (p0 + j == c->measured[m])
                continue;
            float sim = sims[qi * nb + j];
            c->fp_hist[copy][exceeded(sim)]++;
            if (!copy && sim > c->other[m])
                c->other[m] = sim;
        }
    }
}

/* False positives and nearest other image: every query against the whole pool, by blocks. */
static int count_false(calib *c, lvd_error *err)
{
    const lvd_embeddings *p = &c->pool;
    int64_t per = 1 + LVD_CALIBRATE_VARIANTS, nq = c->n_copies * per;
    float *q = malloc((size_t)nq * p->dim * sizeof *q);
    float *sims = malloc((size_t)nq * POOL_BLOCK * sizeof *sims);
    if (!q || !sims) {
        free(q);
        free(sims);
        return lvd_fail(err, "calibrate: out of memory for %lld queries", (long long)nq);
    }
    size_t row = (size_t)p->dim * sizeof *q;
    for (int64_t m = 0; m < c->n_copies; m++) {
        memcpy(q + (size_t)(m * per) * p->dim, p->x + (size_t)c->measured[m] * p->dim, row);
        memcpy(q + (size_t)(m * per + 1) * p->dim,
               c->feats + (size_t)m * LVD_CALIBRATE_VARIANTS * p->dim,
               row * LVD_CALIBRATE_VARIANTS);
        c->other[m] = -INFINITY;
    }
    for (int64_t p0 = 0; p0 < p->n; p0 += POOL_BLOCK) {
        int64_t nb = p->n - p0 < POOL_BLOCK ? p->n - p0 : POOL_BLOCK;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nq, (int)nb, p->dim, 1.0f, q,
                    p->dim, p->x + (size_t)p0 * p->dim, p->dim, 0.0f, sims, (int)nb);
        tally_block(c, sims, nq, p0, nb);
    }
    free(q);
    free(sims);
    return 0;
}

/* Precision and recall at every threshold (before stats() sorts the copy similarities). */
static void detection_points(const calib *c, lvd_calibrate_result *res)
{
    int64_t n = c->n_copies;
    for (int i = 0; i < LVD_CALIBRATE_THRESHOLDS; i++) {
        lvd_calibrate_point *pt = &res->points[i];
        pt->threshold = lvd_calibrate_threshold(i);
        for (int v = 0; v < LVD_CALIBRATE_VARIANTS; v++) {
            int64_t tp = 0;
            for (int64_t m = 0; m < n; m++)
                tp += c->copy_sims[v][m] > pt->threshold;
            pt->tp += tp;
            pt->recall_by_kind[v] = (double)tp / (double)n;
        }
        for (int j = i + 1; j <= LVD_CALIBRATE_THRESHOLDS; j++) {
            pt->fp_pool += c->fp_hist[0][j];
            pt->fp_copy += c->fp_hist[1][j];
        }
        int64_t detected = pt->tp + pt->fp_pool + pt->fp_copy;
        pt->precision = detected ? (double)pt->tp / (double)detected : NAN;
        pt->recall = (double)pt->tp / (double)(n * LVD_CALIBRATE_VARIANTS);
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static lvd_sim_stats stats(double *v, int64_t n)
{
    lvd_sim_stats s = {n, NAN, NAN, NAN, NAN, NAN};
    if (n == 0)
        return s;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    s.min = v[0];
    s.p5 = v[(int64_t)floor(0.05 * (double)(n - 1) + 0.5)];
    s.median = v[(int64_t)floor(0.5 * (double)(n - 1) + 0.5)];
    s.p95 = v[(int64_t)floor(0.95 * (double)(n - 1) + 0.5)];
    s.max = v[n - 1];
    return s;
}

static int summarize(calib *c, lvd_calibrate_result *res, lvd_error *err)
{
    int64_t n = c->n_copies;
    if (n == 0)
        return lvd_fail(err, "calibrate: no sampled pool image could be read and decoded");
    double *all = malloc((size_t)(n * LVD_CALIBRATE_VARIANTS) * sizeof *all);
    if (!all)
        return lvd_fail(err, "calibrate: out of memory");
    detection_points(c, res);
    for (int v = 0; v < LVD_CALIBRATE_VARIANTS; v++)
        memcpy(all + v * n, c->copy_sims[v], (size_t)n * sizeof *all);
    res->all_copies = stats(all, n * LVD_CALIBRATE_VARIANTS);
    free(all);
    for (int v = 0; v < LVD_CALIBRATE_VARIANTS; v++)
        res->copies[v] = stats(c->copy_sims[v], n);
    res->nearest_other = stats(c->other, n);
    res->separable = res->all_copies.p5 > res->nearest_other.p95;
    res->threshold =
        res->separable ? (res->all_copies.p5 + res->nearest_other.p95) / 2 : res->all_copies.p5;
    return 0;
}

static void add_stats(cJSON *j, const char *name, const lvd_sim_stats *s)
{
    cJSON *o = cJSON_AddObjectToObject(j, name);
    cJSON_AddNumberToObject(o, "n", (double)s->n);
    cJSON_AddNumberToObject(o, "min", s->min);
    cJSON_AddNumberToObject(o, "p5", s->p5);
    cJSON_AddNumberToObject(o, "median", s->median);
    cJSON_AddNumberToObject(o, "p95", s->p95);
    cJSON_AddNumberToObject(o, "max", s->max);
}

static cJSON *counts_json(const lvd_calibrate_result *r)
{
    cJSON *j = cJSON_CreateObject();
    for (int v = 0; v < LVD_CALIBRATE_VARIANTS; v++)
        add_stats(j, variant_names[v], &r->copies[v]);
    add_stats(j, "copies", &r->all_copies);
    add_stats(j, "nearest_other", &r->nearest_other);
    cJSON *points = cJSON_AddArrayToObject(j, "points");
    for (int i = 0; i < LVD_CALIBRATE_THRESHOLDS; i++) {
        const lvd_calibrate_point *pt = &r->points[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "threshold", pt->threshold);
        cJSON_AddNumberToObject(o, "tp", (double)pt->tp);
        cJSON_AddNumberToObject(o, "fp_pool", (double)pt->fp_pool);
        cJSON_AddNumberToObject(o, "fp_copy", (double)pt->fp_copy);
        cJSON_AddNumberToObject(o, "precision", pt->precision);
        cJSON_AddNumberToObject(o, "recall", pt->recall);
        cJSON *by = cJSON_AddObjectToObject(o, "recall_by_kind");
        for (int v = 0; v < LVD_CALIBRATE_VARIANTS; v++)
            cJSON_AddNumberToObject(by, variant_names[v], pt->recall_by_kind[v]);
        cJSON_AddItemToArray(points, o);
    }
    cJSON_AddNumberToObject(j, "threshold", r->threshold);
    cJSON_AddBoolToObject(j, "separable", r->separable);
    return j;
}

static int calibrate(lvd_manifest *m, calib *c, int64_t model_id, int dim,
                     lvd_calibrate_result *res, lvd_error *err)
{
    if (lvd_embeddings_read(m, model_id, &pool_rows, NULL, 0, dim, &c->pool, err))
        return -1;
    if (c->pool.n < 2)
        return lvd_fail(err, "model '%s' has %lld pool embeddings: calibration needs 2 or more",
                        c->o->model, (long long)c->pool.n);
    if (lvd_stage_vit_open(m, c->o->model, dim, "lvd-calibrate", &c->vit, err) ||
        pick_sample(m, c, err) || measure_copies(c, err))
        return -1;
    if (c->n_copies == 0)
        return lvd_fail(err, "calibrate: no sampled pool image could be read and decoded");
    return count_false(c, err) || summarize(c, res, err);
}

int lvd_calibrate_run(lvd_manifest *m, const lvd_calibrate_options *o, lvd_calibrate_result *res,
                      lvd_error *err)
{
    memset(res, 0, sizeof *res);
    if (o->sample < 1 || o->crop < 1 || o->resize < o->crop)
        return lvd_fail(err, "calibrate: invalid options");
    int64_t model_id, run;
    int dim;
    if (lvd_embeddings_model(m, o->model, &model_id, &dim, err))
        return -1;
    cJSON *params = cJSON_CreateObject();
    cJSON_AddStringToObject(params, "model", o->model);
    cJSON_AddNumberToObject(params, "sample", o->sample);
    cJSON_AddNumberToObject(params, "resize", o->resize);
    cJSON_AddNumberToObject(params, "crop", o->crop);
    if (lvd_kit_run_start(m, "calibrate", params, &run, err))
        return -1;
    calib c = {.o = o};
    int rc = calibrate(m, &c, model_id, dim, res, err);
    calib_free(&c);
    return lvd_kit_run_finish(m, run, rc, NULL, counts_json(res), err);
}
