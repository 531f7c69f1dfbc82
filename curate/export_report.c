#include "curate/export_report.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "curate/embeddings_read.h"
#include "curate/export_members.h"
#include "image/image.h"

/* Larger images are not decoded for a thumbnail. */
#define REPORT_MAX_PIXELS 89478485

/* One image of a gallery. */
typedef struct tile {
    int64_t group, image_id;
    int kept;
    char *reason, *url, *shard, *member;
    double sim;  /* -2 when NULL */
    char *thumb; /* base64 JPEG, NULL when none */
} tile;

/* One component shown: its id, size, and tiles [first, first + n). */
typedef struct group {
    int64_t component, size, first, n;
    int eval;
} group;

typedef struct report {
    const lvd_report_options *o;
    int64_t model_id;
    group *groups;
    int64_t n_groups;
    tile *tiles;
    int64_t n_tiles, cap_tiles;
} report;

void lvd_report_defaults(lvd_report_options *o)
{
    memset(o, 0, sizeof *o);
    o->groups = 20;
    o->per_group = 12;
    o->thumb = 128;
}

static void report_free(report *r)
{
    for (int64_t i = 0; i < r->n_tiles; i++) {
        tile *t = &r->tiles[i];
        free(t->reason);
        free(t->url);
        free(t->shard);
        free(t->member);
        free(t->thumb);
    }
    free(r->tiles);
    free(r->groups);
}

static char *dup_text(sqlite3_stmt *st, int col)
{
    const char *t = (const char *)sqlite3_column_text(st, col);
    return t ? strdup(t) : NULL;
}

static int add_tile(report *r, int64_t g, sqlite3_stmt *st, lvd_error *err)
{
    if (r->n_tiles == r->cap_tiles) {
        int64_t c = r->cap_tiles ? r->cap_tiles * 2 : 64;
        tile *p = realloc(r->tiles, (size_t)c * sizeof *p);
        if (!p)
            return lvd_fail(err, "report: out of memory");
        r->tiles = p;
        r->cap_tiles = c;
    }
    tile *t = &r->tiles[r->n_tiles++];
    memset(t, 0, sizeof *t);
    t->group = g;
    t->image_id = sqlite3_column_int64(st, 0);
    t->kept = sqlite3_column_int(st, 1);
    t->reason = dup_text(st, 2);
    t->sim = sqlite3_column_type(st, 3) == SQLITE_NULL ? -2.0 : sqlite3_column_double(st, 3);
    t->url = dup_text(st, 4);
    t->shard = dup_text(st, 5);
    t->member = dup_text(st, 6);
    return 0;
}

static int load_members(lvd_manifest *m, report *r, int64_t g, lvd_error *err)
{
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m,
                             "SELECT d.image_id, d.kept, d.reason, d.similarity, v.url, "
                             "v.shard, v.member FROM dedup d JOIN v_images v ON v.id = "
                             "d.image_id WHERE d.model_id = ?1 AND d.component = ?2 ORDER BY "
                             "d.image_id LIMIT ?3",
                             &st, err))
        return -1;
    sqlite3_bind_int64(st, 1, r->model_id);
    sqlite3_bind_int64(st, 2, r->groups[g].component);
    sqlite3_bind_int(st, 3, r->o->per_group);
    r->groups[g].first = r->n_tiles;
    int rc = 0, step;
    while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW)
        rc = add_tile(r, g, st, err);
    sqlite3_finalize(st);
    if (rc == 0 && step != SQLITE_DONE)
        rc = lvd_manifest_fail(m, err, "reading component members");
    r->groups[g].n = r->n_tiles - r->groups[g].first;
    return rc;
}

/* Appends the largest components: duplicate ones (eval = 0) or decontaminated ones (eval = 1). */
static int load_groups(lvd_manifest *m, report *r, int eval, lvd_error *err)
{
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m,
                             "SELECT component, COUNT(*) FROM dedup WHERE model_id = ?1 GROUP "
                             "BY component HAVING (SUM(reason = 'eval') > 0) = ?2 AND "
                             "(?2 = 1 OR COUNT(*) > 1) ORDER BY COUNT(*) DESC, component "
                             "LIMIT ?3",
                             &st, err))
        return -1;
    sqlite3_bind_int64(st, 1, r->model_id);
    sqlite3_bind_int(st, 2, eval);
    sqlite3_bind_int(st, 3, r->o->groups);
    int64_t first = r->n_groups;
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW)
        r->groups[r->n_groups++] =
            (group){sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1), 0, 0, eval};
    sqlite3_finalize(st);
    if (step != SQLITE_DONE)
        return lvd_manifest_fail(m, err, "reading components");
    for (int64_t g = first; g < r->n_groups; g++)
        if (load_members(m, r, g, err))
            return -1;
    return 0;
}

/* Decodes, shrinks to the thumbnail box and encodes as base64 JPEG; NULL when it cannot. */
static char *make_thumb(const unsigned char *data, size_t len, int box)
{
    lvd_decode_opts o;
    memset(&o, 0, sizeof o);
    o.max_pixels = REPORT_MAX_PIXELS;
    o.alpha = LVD_ALPHA_ON_WHITE;
    o.apply_orientation = 1;
    lvd_image img, small = {0};
    lvd_error err;
    if (lvd_image_decode(data, len, &o, &img, &err))
        return NULL;
    int w = img.width >= img.height ? box : (int)((int64_t)box * img.width / img.height);
    int h = img.width >= img.height ? (int)((int64_t)box * img.height / img.width) : box;
    uint8_t *jpeg = NULL;
    size_t jlen = 0;
    char *b64 = NULL;
    if (lvd_image_resize(&img, w > 0 ? w : 1, h > 0 ? h : 1, &small, &err) == 0 &&
        lvd_image_encode_jpeg(&small, 80, &jpeg, &jlen, &err) == 0) {
        b64 = malloc(4 * ((jlen + 2) / 3) + 1);
        if (b64)
            EVP_EncodeBlock((unsigned char *)b64, jpeg, (int)jlen);
    }
    free(jpeg);
    lvd_image_free(&small);
    lvd_image_free(&img);
    return b64;
}

typedef struct thumb_ctx {
    tile **tiles;
    int box;
} thumb_ctx;

static int thumb_member(void *ctx, int64_t i, const char *name, const unsigned char *data,
                        size_t len, lvd_error *err)
{
    thumb_ctx *c = ctx;
    tile *t = c->tiles[i];
    (void)err;
    if (!t->thumb && strcmp(name, t->member) == 0)
        t->thumb = make_thumb(data, len, c->box);
    return 0;
}

static int cmp_tile_shard(const void *a, const void *b)
{
    const tile *x = *(tile *const *)a, *y = *(tile *const *)b;
    return strcmp(x->shard, y->shard);
}

/* Reads every shard holding a shown image once; an unreadable shard leaves its tiles bare. */
static int load_thumbs(report *r, lvd_error *err)
{
    tile **order = malloc((size_t)(r->n_tiles > 0 ? r->n_tiles : 1) * sizeof *order);
    const char **members = malloc((size_t)(r->n_tiles > 0 ? r->n_tiles : 1) * sizeof *members);
    if (!order || !members) {
        free(order);
        free(members);
        return lvd_fail(err, "report: out of memory");
    }
    int64_t n = 0;
    for (int64_t i = 0; i < r->n_tiles; i++)
        if (r->tiles[i].shard && r->tiles[i].member)
            order[n++] = &r->tiles[i];
    qsort(order, (size_t)n, sizeof *order, cmp_tile_shard);
    for (int64_t i = 0; i < n;) {
        int64_t j = i;
        while (j < n && strcmp(order[j]->shard, order[i]->shard) == 0) {
            members[j - i] = order[j]->member;
            j++;
        }
        thumb_ctx c = {order + i, r->o->thumb};
        lvd_error ignored;
        lvd_shard_scan(order[i]->shard, members, j - i, thumb_member, &c, &ignored);
        i = j;
    }
    free(order);
    free(members);
    return 0;
}

static void put_escaped(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&':
            fputs("&amp;", f);
            break;
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        default:
            fputc(*s, f);
        }
    }
}

/* Writes the rows of sql (bound to the model id) as an HTML table with the given headers. */
static int put_table(lvd_manifest *m, FILE *f, int64_t model_id, const char *sql,
                     const char *const *heads, int ncol, lvd_error *err)
{
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m, sql, &st, err))
        return -1;
    sqlite3_bind_int64(st, 1, model_id);
    fputs("<table><tr>", f);
    for (int c = 0; c < ncol; c++)
        fprintf(f, "<th>%s</th>", heads[c]);
    fputs("</tr>\n", f);
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        fputs("<tr>", f);
        for (int c = 0; c < ncol; c++) {
            fputs("<td>", f);
            put_escaped(f, (const char *)sqlite3_column_text(st, c));
            fputs("</td>", f);
        }
        fputs("</tr>\n", f);
    }
    fputs("</table>\n", f);
    sqlite3_finalize(st);
    return step == SQLITE_DONE ? 0 : lvd_manifest_fail(m, err, "report tables");
}

static void put_tile(FILE *f, const tile *t)
{
    fprintf(f, "<figure class=\"%s\">", t->kept ? "kept" : "removed");
    if (t->thumb)
        fprintf(f, "<img src=\"data:image/jpeg;base64,%s\" alt=\"%lld\">", t->thumb,
                (long long)t->image_id);
    else
        fputs("<div class=\"none\">no preview</div>", f);
    fprintf(f, "<figcaption>%lld %s", (long long)t->image_id,
            t->kept ? "kept" : (t->reason ? t->reason : "removed"));
    if (t->sim > -1.5)
        fprintf(f, " %.4f", t->sim);
    fputs("<br><small>", f);
    put_escaped(f, t->url);
    fputs("</small></figcaption></figure>\n", f);
}

static void put_gallery(FILE *f, const report *r, int eval)
{
    fprintf(f, "<h2>%s</h2>\n",
            eval ? "Components removed by decontamination" : "Largest duplicate components");
    int any = 0;
    for (int64_t g = 0; g < r->n_groups; g++) {
        const group *gr = &r->groups[g];
        if (gr->eval != eval)
            continue;
        any = 1;
        fprintf(f, "<section><h3>component %lld: %lld images</h3>\n", (long long)gr->component,
                (long long)gr->size);
        for (int64_t i = gr->first; i < gr->first + gr->n; i++)
            put_tile(f, &r->tiles[i]);
        fputs("</section>\n", f);
    }
    if (!any)
        fputs("<p>none</p>\n", f);
}

static const char *const style =
    "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}"
    "section{border-top:1px solid #ccc;margin-top:1em}"
    "figure{display:inline-block;width:160px;margin:4px;vertical-align:top}"
    "figure.kept{outline:3px solid #3a3}figure.removed{outline:1px solid #c33}"
    "figcaption{font-size:12px;word-break:break-all}.none{height:64px;background:#eee}";

static int put_html(lvd_manifest *m, FILE *f, const report *r, lvd_error *err)
{
    static const char *const dedup_heads[] = {"pool images", "kept", "duplicate", "eval"};
    static const char *const curated_heads[] = {"dataset", "method", "rows", "images"};
    fputs("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>lvd report: ", f);
    put_escaped(f, r->o->model);
    fprintf(f, "</title><style>%s</style></head><body>\n<h1>Curation report: model ", style);
    put_escaped(f, r->o->model);
    fputs("</h1>\n<h2>Dedup and decontamination</h2>\n", f);
    if (put_table(m, f, r->model_id,
                  "SELECT COUNT(*), SUM(kept), SUM(reason = 'duplicate'), SUM(reason = 'eval') "
                  "FROM dedup WHERE model_id = ?1",
                  dedup_heads, 4, err))
        return -1;
    fputs("<h2>Curated set</h2>\n", f);
    if (put_table(m, f, r->model_id,
                  "SELECT s.name, c.method, COUNT(*), COUNT(DISTINCT c.image_id) FROM curated c "
                  "JOIN sources s ON s.id = c.source_id WHERE c.model_id = ?1 GROUP BY s.name, "
                  "c.method ORDER BY s.name, c.method",
                  curated_heads, 4, err))
        return -1;
    put_gallery(f, r, 0);
    put_gallery(f, r, 1);
    fputs("</body></html>\n", f);
    return 0;
}

static int write_file(lvd_manifest *m, const report *r, lvd_error *err)
{
    const char *path = r->o->out;
    size_t n = strlen(path) + 8;
    char *tmp = malloc(n);
    if (!tmp)
        return lvd_fail(err, "report: out of memory");
    snprintf(tmp, n, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    int rc =
        f ? put_html(m, f, r, err) : lvd_fail(err, "%s: cannot create: %s", tmp, strerror(errno));
    if (f && (fflush(f) != 0 || fsync(fileno(f)) != 0) && rc == 0)
        rc = lvd_fail(err, "%s: cannot write: %s", tmp, strerror(errno));
    if (f && fclose(f) != 0 && rc == 0)
        rc = lvd_fail(err, "%s: cannot write: %s", tmp, strerror(errno));
    if (rc == 0 && rename(tmp, path) != 0)
        rc = lvd_fail(err, "%s: cannot rename: %s", tmp, strerror(errno));
    if (rc)
        unlink(tmp);
    free(tmp);
    return rc;
}

int lvd_report_run(lvd_manifest *m, const lvd_report_options *o, lvd_report_counts *counts,
                   lvd_error *err)
{
    memset(counts, 0, sizeof *counts);
    if (o->groups < 1 || o->per_group < 1 || o->thumb < 8)
        return lvd_fail(err, "report: invalid options");
    report r = {o, 0, NULL, 0, NULL, 0, 0};
    int dim;
    if (lvd_embeddings_model(m, o->model, &r.model_id, &dim, err))
        return -1;
    r.groups = malloc(2 * (size_t)o->groups * sizeof *r.groups);
    if (!r.groups)
        return lvd_fail(err, "report: out of memory");
    int rc = 0;
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m, "SELECT COUNT(*) FROM dedup WHERE model_id = ?1", &st, err) == 0) {
        sqlite3_bind_int64(st, 1, r.model_id);
        if (sqlite3_step(st) != SQLITE_ROW || sqlite3_column_int64(st, 0) == 0)
            rc = lvd_fail(err, "model '%s' has no dedup results: run lvd-dedup first", o->model);
        sqlite3_finalize(st);
    } else {
        rc = -1;
    }
    if (rc == 0 && load_groups(m, &r, 0, err) == 0 && load_groups(m, &r, 1, err) == 0 &&
        load_thumbs(&r, err) == 0)
        rc = write_file(m, &r, err);
    else
        rc = -1;
    counts->groups = r.n_groups;
    counts->tiles = r.n_tiles;
    for (int64_t i = 0; i < r.n_tiles; i++)
        counts->thumbs += r.tiles[i].thumb != NULL;
    report_free(&r);
    return rc;
}
