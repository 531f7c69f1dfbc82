/* lvd_report_run of curate/stages/report.h: the model, the galleries, the thumbnails and the
 * pages, index.html last. */
#include "curate/stages/report.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "curate/stages/embeddings_read.h"
#include "curate/stages/report_gallery.h"
#include "curate/stages/report_html.h"
#include "curate/stages/report_sims.h"
#include "curate/stages/report_summary.h"
#include "curate/stages/report_thumbs.h"
#include "curate/stages/report_train.h"
#include "kit/kit.h"

void lvd_report_defaults(lvd_report_options *o)
{
    memset(o, 0, sizeof *o);
    o->groups = 20;
    o->per_group = 12;
    o->thumb = 128;
    o->runs = 20;
}

/* The index page's tables (?1 bound to the number of runs). */
static const lvd_html_spec tables[] = {
    {"Images by source and status",
     "SELECT source, status, error_class, n FROM v_status ORDER BY source, status, error_class",
     {"source", "status", "error class", "images"},
     4},
    {"Embeddings by model",
     "SELECT m.name, m.arch, m.dim, COUNT(e.image_id) FROM models m LEFT JOIN embeddings e ON "
     "e.model_id = m.id GROUP BY m.id ORDER BY m.name",
     {"model", "arch", "dim", "embeddings"},
     4},
    {"Indexes",
     "SELECT model, COALESCE(source, '(all)'), factory, rows, path FROM v_indexes ORDER BY model, "
     "source, id",
     {"model", "source", "factory", "rows", "path"},
     5},
    {"Dedup and decontamination",
     "SELECT model, COUNT(*), SUM(kept), SUM(reason = 'duplicate'), SUM(reason = 'eval') FROM "
     "v_duplicates GROUP BY model ORDER BY model",
     {"model", "pool images", "kept", "duplicate", "eval"},
     5},
    {"Curated set",
     "SELECT model, dataset, method, COUNT(*), COUNT(DISTINCT image_id) FROM v_curated GROUP BY "
     "model, dataset, method ORDER BY model, dataset, method",
     {"model", "dataset", "method", "rows", "images"},
     5},
    {"Last runs",
     "SELECT id, stage, status, started, finished, counts FROM v_runs ORDER BY id DESC LIMIT ?1",
     {"run", "stage", "status", "started", "finished", "counts"},
     6},
};

/* The index page's body: the demo's summary when recorded, the galleries with how much each
 * shows, then the tables. */
static int write_index(lvd_manifest *m, FILE *f, const lvd_report_options *o,
                       const lvd_gallery *all, const lvd_report_counts *counts, lvd_error *err)
{
    if (lvd_report_summary(m, f, err))
        return -1;
    fputs("<h2>Galleries</h2>\n<ul>\n", f);
    for (int k = 0; k < LVD_GALLERY_COUNT; k++)
        fprintf(f, "<li><a href=\"%s\">%s</a>: %lld groups, %lld images</li>\n",
                lvd_gallery_file(all[k].kind), lvd_gallery_title(all[k].kind),
                (long long)all[k].n_groups, (long long)all[k].n_tiles);
    fprintf(f,
            "</ul>\n<h2>Plots</h2>\n<ul>\n<li><a href=\"training.html\">Training</a>: losses, "
            "schedules, gradient norms and k-NN accuracy of %lld trainings and "
            "distillations</li>\n<li><a href=\"similarities.html\">Similarities</a>: %lld dedup "
            "pairs, duplicates and decontamination matches with their thresholds</li>\n</ul>\n",
            (long long)counts->trainings, (long long)counts->edges);
    return lvd_html_tables(m, f, tables, sizeof tables / sizeof *tables, 2, o->runs, err);
}

/* The pages after the galleries, index.html last. */
enum { PAGE_TRAINING = LVD_GALLERY_COUNT, PAGE_SIMILARITIES, PAGE_INDEX, PAGE_COUNT };

static const char *page_file(int page)
{
    return page == PAGE_TRAINING       ? "training.html"
           : page == PAGE_SIMILARITIES ? "similarities.html"
           : page == PAGE_INDEX        ? "index.html"
                                       : lvd_gallery_file((lvd_gallery_kind)page);
}

static const char *page_title(int page)
{
    return page == PAGE_TRAINING       ? "Training"
           : page == PAGE_SIMILARITIES ? "Similarities"
           : page == PAGE_INDEX        ? "Curation report"
                                       : lvd_gallery_title((lvd_gallery_kind)page);
}

/* The model whose galleries are shown; id -1 when the manifest has none. */
typedef struct model {
    int64_t id;
    int dim;
    char *name;
} model;

/* Writes page (a gallery kind or one of PAGE_*). */
static int write_page(lvd_manifest *m, const lvd_report_options *o, const model *md,
                      const lvd_gallery *all, int page, lvd_report_counts *counts, lvd_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", o->out, page_file(page));
    lvd_html_file h;
    if (lvd_html_open(&h, path, err))
        return -1;
    lvd_html_begin(h.f, page_title(page));
    int rc = 0;
    if (page != PAGE_TRAINING) {
        fputs("<p>model: ", h.f);
        lvd_html_escape(h.f, md->name ? md->name : "(none)");
        fputs("</p>\n", h.f);
    }
    if (page == PAGE_INDEX)
        rc = write_index(m, h.f, o, all, counts, err);
    else if (page == PAGE_TRAINING)
        rc = lvd_report_training(m, h.f, &counts->trainings, err);
    else if (page == PAGE_SIMILARITIES)
        rc = lvd_report_similarities(m, h.f, md->id, md->name, &counts->edges, err);
    else
        lvd_gallery_write(h.f, &all[page]);
    lvd_html_end(h.f);
    return lvd_html_close(&h, rc == 0, err);
}

/* Picks o->model, or the manifest's only model. */
static int pick_model(lvd_manifest *m, const lvd_report_options *o, model *md, lvd_error *err)
{
    *md = (model){-1, 0, NULL};
    if (o->model) {
        if (lvd_embeddings_model(m, o->model, &md->id, &md->dim, err))
            return -1;
        md->name = strdup(o->model);
        return md->name ? 0 : lvd_fail(err, "report: out of memory");
    }
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m, "SELECT id, dim, name FROM models ORDER BY id LIMIT 2", &st, err))
        return -1;
    int rc = 0;
    if (sqlite3_step(st) == SQLITE_ROW) {
        md->id = sqlite3_column_int64(st, 0);
        md->dim = sqlite3_column_int(st, 1);
        md->name = strdup((const char *)sqlite3_column_text(st, 2));
        if (!md->name)
            rc = lvd_fail(err, "report: out of memory");
        else if (sqlite3_step(st) == SQLITE_ROW)
            rc = lvd_fail(err, "the manifest has several models: choose one with --model");
    }
    sqlite3_finalize(st);
    return rc;
}

static int make_dir(const char *path, lvd_error *err)
{
    if (mkdir(path, 0755) == 0 || errno == EEXIST) {
        struct stat sb;
        if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
            return 0;
        return lvd_fail(err, "%s: not a folder", path);
    }
    return lvd_fail(err, "%s: cannot create folder: %s", path, strerror(errno));
}

static int cmp_id(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Writes the thumbnails of every image shown and marks the tiles that have one. */
static int make_thumbs(lvd_manifest *m, const lvd_report_options *o, lvd_gallery *g,
                       int64_t *written, lvd_error *err)
{
    int64_t total = 0;
    for (int k = 0; k < LVD_GALLERY_COUNT; k++)
        total += g[k].n_tiles;
    size_t cap = (size_t)(total > 0 ? total : 1);
    int64_t *ids = malloc(cap * sizeof *ids);
    unsigned char *made = malloc(cap);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/thumbs", o->out);
    int rc = ids && made ? make_dir(dir, err) : lvd_fail(err, "report: out of memory");
    int64_t n = 0;
    for (int k = 0; rc == 0 && k < LVD_GALLERY_COUNT; k++)
        for (int64_t t = 0; t < g[k].n_tiles; t++)
            ids[n++] = g[k].tiles[t].image_id;
    qsort(ids, (size_t)n, sizeof *ids, cmp_id);
    int64_t distinct = 0;
    for (int64_t i = 0; i < n; i++)
        if (distinct == 0 || ids[distinct - 1] != ids[i])
            ids[distinct++] = ids[i];
    if (rc == 0)
        rc = lvd_report_thumbs(m, ids, distinct, dir, o->thumb, made, err);
    for (int k = 0; rc == 0 && k < LVD_GALLERY_COUNT; k++)
        for (int64_t t = 0; t < g[k].n_tiles; t++) {
            const int64_t *at =
                bsearch(&g[k].tiles[t].image_id, ids, (size_t)distinct, sizeof *ids, cmp_id);
            g[k].tiles[t].thumb = made[at - ids];
        }
    for (int64_t i = 0; rc == 0 && i < distinct; i++)
        *written += made[i];
    free(ids);
    free(made);
    return rc;
}

int lvd_report_run(lvd_manifest *m, const lvd_report_options *o, lvd_report_counts *counts,
                   lvd_error *err)
{
    memset(counts, 0, sizeof *counts);
    if (!o->out || o->groups < 1 || o->per_group < 1 || o->thumb < 8 || o->thumb > 1024 ||
        o->runs < 0)
        return lvd_fail(err, "report: invalid options");
    model md;
    if (pick_model(m, o, &md, err)) {
        free(md.name);
        return -1;
    }
    lvd_gallery g[LVD_GALLERY_COUNT];
    memset(g, 0, sizeof g);
    int lock = -1;
    int rc = make_dir(o->out, err);
    if (rc == 0)
        rc = lvd_kit_lock_dir(o->out, "lvd-report", &lock, err);
    for (int k = 0; rc == 0 && k < LVD_GALLERY_COUNT; k++)
        rc = lvd_gallery_load(m, (lvd_gallery_kind)k, md.id, md.dim, o->groups, o->per_group, &g[k],
                              err);
    if (rc == 0)
        rc = make_thumbs(m, o, g, &counts->thumbs, err);
    /* index.html last: its presence means every page is in place. */
    for (int k = 0; rc == 0 && k < PAGE_COUNT; k++)
        rc = write_page(m, o, &md, g, k, counts, err);
    for (int k = 0; k < LVD_GALLERY_COUNT; k++) {
        counts->groups += g[k].n_groups;
        counts->tiles += g[k].n_tiles;
    }
    for (int k = 0; k < LVD_GALLERY_COUNT; k++)
        lvd_gallery_free(&g[k]);
    free(md.name);
    if (lock >= 0)
        close(lock);
    return rc;
}
