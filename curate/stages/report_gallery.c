/* The galleries of curate/stages/report_gallery.h: loading each kind's groups and tiles from the
 * views and writing them as HTML sections. */
#include "curate/stages/report_gallery.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "curate/stages/report_html.h"

/* Per kind: the page, its title, the groups (bound: ?1 model id, ?2 max groups; returning key,
 * dataset, size) and the tiles of one group (bound: ?1 model id, ?2 key, ?4 dataset, ?5 the
 * matched member, ?6 the eval image, ?7 their similarity; returning image_id, label, sim, cls
 * and the order o). */
typedef struct spec {
    const char *file, *title, *groups, *tiles;
} spec;

#define MODEL_NAME "(SELECT name FROM models WHERE id = ?1)"

static const spec specs[LVD_GALLERY_COUNT] = {
    {"duplicates.html", "Largest duplicate components",
     "SELECT component, NULL, COUNT(*) FROM dedup WHERE model_id = ?1 GROUP BY component "
     "HAVING COUNT(*) > 1 AND SUM(reason = 'eval') = 0 ORDER BY COUNT(*) DESC, component "
     "LIMIT ?2",
     "SELECT image_id, CASE WHEN kept THEN 'kept' ELSE reason END AS label, similarity AS sim, "
     "CASE WHEN kept THEN 'kept' ELSE 'removed' END AS cls, image_id AS o FROM dedup WHERE "
     "model_id = ?1 AND component = ?2"},
    {"decontaminated.html", "Components removed by decontamination",
     "SELECT component, NULL, COUNT(*) FROM dedup WHERE model_id = ?1 GROUP BY component "
     "HAVING SUM(reason = 'eval') > 0 ORDER BY COUNT(*) DESC, component LIMIT ?2",
     "SELECT ?6 AS image_id, 'eval image' AS label, ?7 AS sim, 'eval' AS cls, -1 AS o WHERE ?6 "
     ">= 0 UNION ALL SELECT image_id, CASE WHEN image_id = ?5 THEN 'matched' ELSE reason END, "
     "similarity, 'removed', CASE WHEN image_id = ?5 THEN 0 ELSE image_id END FROM dedup WHERE "
     "model_id = ?1 AND component = ?2"},
    {"neighbours.html", "Seeds and their retrieved neighbours",
     "SELECT seed_image_id, dataset, COUNT(*) FROM v_curated WHERE model = " MODEL_NAME
     " AND method = 'knn' GROUP BY dataset, seed_image_id ORDER BY dataset, seed_image_id "
     "LIMIT ?2",
     "SELECT ?2 AS image_id, 'seed' AS label, NULL AS sim, 'seed' AS cls, 0 AS o UNION ALL "
     "SELECT image_id, 'rank ' || rank, similarity, 'pick', rank FROM v_curated WHERE model "
     "= " MODEL_NAME " AND method = 'knn' AND seed_image_id = ?2 AND dataset = ?4"},
    {"clusters.html", "Samples per cluster",
     "SELECT cluster, dataset, COUNT(*) FROM v_curated WHERE model = " MODEL_NAME
     " AND method = 'cluster' GROUP BY dataset, cluster ORDER BY dataset, cluster LIMIT ?2",
     "SELECT image_id, 'rank ' || rank AS label, similarity AS sim, 'pick' AS cls, rank AS o "
     "FROM v_curated WHERE model = " MODEL_NAME
     " AND method = 'cluster' AND cluster = ?2 AND dataset = ?4"},
};

const char *lvd_gallery_file(lvd_gallery_kind kind)
{
    return specs[kind].file;
}

const char *lvd_gallery_title(lvd_gallery_kind kind)
{
    return specs[kind].title;
}

void lvd_gallery_free(lvd_gallery *g)
{
    for (int64_t i = 0; i < g->n_tiles; i++) {
        free(g->tiles[i].label);
        free(g->tiles[i].cls);
        free(g->tiles[i].url);
    }
    for (int64_t i = 0; i < g->n_groups; i++)
        free(g->groups[i].dataset);
    free(g->tiles);
    free(g->groups);
    memset(g, 0, sizeof *g);
}

static char *dup_text(sqlite3_stmt *st, int col)
{
    const char *t = (const char *)sqlite3_column_text(st, col);
    return t ? strdup(t) : NULL;
}

/* Appends the tile of the current row (image_id, label, sim, cls, url). */
static int add_tile(lvd_gallery *g, sqlite3_stmt *st, lvd_error *err)
{
    if (g->n_tiles == g->cap_tiles) {
        int64_t c = g->cap_tiles ? g->cap_tiles * 2 : 64;
        lvd_tile *p = realloc(g->tiles, (size_t)c * sizeof *p);
        if (!p)
            return lvd_fail(err, "report: out of memory");
        g->tiles = p;
        g->cap_tiles = c;
    }
    lvd_tile *t = &g->tiles[g->n_tiles];
    memset(t, 0, sizeof *t);
    t->image_id = sqlite3_column_int64(st, 0);
    t->label = dup_text(st, 1);
    t->sim = sqlite3_column_type(st, 2) == SQLITE_NULL ? NAN : sqlite3_column_double(st, 2);
    t->cls = dup_text(st, 3);
    t->url = dup_text(st, 4);
    g->n_tiles++;
    if (!t->label || !t->cls)
        return lvd_fail(err, "report: out of memory");
    return 0;
}

static int load_tiles(lvd_manifest *m, const spec *s, int64_t model_id, int per_group,
                      lvd_gallery *g, lvd_group *gr, lvd_error *err)
{
    char sql[2048];
    snprintf(sql, sizeof sql,
             "SELECT t.image_id, t.label, t.sim, t.cls, i.url FROM (%s) t LEFT JOIN images i "
             "ON i.id = t.image_id ORDER BY t.o, t.image_id LIMIT ?3",
             s->tiles);
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m, sql, &st, err))
        return -1;
    /* Statements without a parameter ignore its binding (SQLITE_RANGE). */
    sqlite3_bind_int64(st, 1, model_id);
    sqlite3_bind_int64(st, 2, gr->key);
    sqlite3_bind_int(st, 3, per_group);
    sqlite3_bind_text(st, 4, gr->dataset, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, gr->match.pool_id);
    sqlite3_bind_int64(st, 6, gr->match.eval_id);
    sqlite3_bind_double(st, 7, gr->match.sim);
    gr->first = g->n_tiles;
    int rc = 0, step;
    while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW)
        rc = add_tile(g, st, err);
    sqlite3_finalize(st);
    if (rc == 0 && step != SQLITE_DONE)
        rc = lvd_manifest_fail(m, err, "reading gallery images");
    gr->n = g->n_tiles - gr->first;
    return rc;
}

static int load_groups(lvd_manifest *m, const spec *s, int64_t model_id, int max_groups,
                       lvd_gallery *g, lvd_error *err)
{
    g->groups = calloc((size_t)max_groups, sizeof *g->groups);
    if (!g->groups)
        return lvd_fail(err, "report: out of memory");
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m, s->groups, &st, err))
        return -1;
    sqlite3_bind_int64(st, 1, model_id);
    sqlite3_bind_int(st, 2, max_groups);
    int rc = 0, step = SQLITE_DONE;
    while (rc == 0 && g->n_groups < max_groups && (step = sqlite3_step(st)) == SQLITE_ROW) {
        lvd_group *gr = &g->groups[g->n_groups++];
        gr->key = sqlite3_column_int64(st, 0);
        gr->size = sqlite3_column_int64(st, 2);
        gr->match = (lvd_eval_match){-1, -1, 0};
        if (sqlite3_column_type(st, 1) != SQLITE_NULL && !(gr->dataset = dup_text(st, 1)))
            rc = lvd_fail(err, "report: out of memory");
    }
    sqlite3_finalize(st);
    if (rc == 0 && step != SQLITE_DONE && step != SQLITE_ROW)
        rc = lvd_manifest_fail(m, err, "reading gallery groups");
    return rc;
}

static int find_matches(lvd_manifest *m, int64_t model_id, int dim, lvd_gallery *g, lvd_error *err)
{
    int64_t *keys = malloc((size_t)(g->n_groups > 0 ? g->n_groups : 1) * sizeof *keys);
    lvd_eval_match *match = malloc((size_t)(g->n_groups > 0 ? g->n_groups : 1) * sizeof *match);
    int rc = keys && match ? 0 : lvd_fail(err, "report: out of memory");
    for (int64_t i = 0; rc == 0 && i < g->n_groups; i++)
        keys[i] = g->groups[i].key;
    if (rc == 0)
        rc = lvd_report_eval_match(m, model_id, dim, keys, g->n_groups, match, err);
    for (int64_t i = 0; rc == 0 && i < g->n_groups; i++)
        g->groups[i].match = match[i];
    free(keys);
    free(match);
    return rc;
}

int lvd_gallery_load(lvd_manifest *m, lvd_gallery_kind kind, int64_t model_id, int dim,
                     int max_groups, int per_group, lvd_gallery *g, lvd_error *err)
{
    memset(g, 0, sizeof *g);
    g->kind = kind;
    const spec *s = &specs[kind];
    int rc = load_groups(m, s, model_id, max_groups, g, err);
    if (rc == 0 && kind == LVD_GALLERY_DECONTAMINATED)
        rc = find_matches(m, model_id, dim, g, err);
    for (int64_t i = 0; rc == 0 && i < g->n_groups; i++)
        rc = load_tiles(m, s, model_id, per_group, g, &g->groups[i], err);
    if (rc)
        lvd_gallery_free(g);
    return rc;
}

static void write_tile(FILE *f, const lvd_tile *t)
{
    fputs("<figure class=\"", f);
    lvd_html_escape(f, t->cls);
    fputs("\">", f);
    if (t->thumb)
        fprintf(f, "<img src=\"thumbs/%lld.jpg\" alt=\"image %lld\">", (long long)t->image_id,
                (long long)t->image_id);
    else
        fputs("<div class=\"none\">no preview</div>", f);
    fprintf(f, "<figcaption>%lld ", (long long)t->image_id);
    lvd_html_escape(f, t->label);
    if (!isnan(t->sim))
        fprintf(f, " %.4f", t->sim);
    fputs("<br><small>", f);
    lvd_html_escape(f, t->url);
    fputs("</small></figcaption></figure>\n", f);
}

static void write_heading(FILE *f, lvd_gallery_kind kind, const lvd_group *gr)
{
    fputs("<section><h3>", f);
    switch (kind) {
    case LVD_GALLERY_DUPLICATES:
        fprintf(f, "component %lld: %lld images", (long long)gr->key, (long long)gr->size);
        break;
    case LVD_GALLERY_DECONTAMINATED:
        fprintf(f, "component %lld: %lld images removed", (long long)gr->key, (long long)gr->size);
        if (gr->match.eval_id >= 0)
            fprintf(f, "; eval image %lld matches %lld at %.4f", (long long)gr->match.eval_id,
                    (long long)gr->match.pool_id, gr->match.sim);
        break;
    case LVD_GALLERY_NEIGHBOURS:
        fprintf(f, "seed %lld (", (long long)gr->key);
        lvd_html_escape(f, gr->dataset);
        fprintf(f, "): %lld neighbours", (long long)gr->size);
        break;
    default:
        lvd_html_escape(f, gr->dataset);
        fprintf(f, ": cluster %lld, %lld samples", (long long)gr->key, (long long)gr->size);
    }
    fputs("</h3>\n", f);
}

void lvd_gallery_write(FILE *f, const lvd_gallery *g)
{
    if (g->n_groups == 0)
        fputs("<p>none</p>\n", f);
    for (int64_t i = 0; i < g->n_groups; i++) {
        const lvd_group *gr = &g->groups[i];
        write_heading(f, g->kind, gr);
        for (int64_t t = gr->first; t < gr->first + gr->n; t++)
            write_tile(f, &g->tiles[t]);
        fputs("</section>\n", f);
    }
}
