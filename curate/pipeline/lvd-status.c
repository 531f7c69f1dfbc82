/* lvd-status: how much of the curation is done, per source, model and stage. The counts come
 * from the tables the manifest's triggers maintain (store/MANIFEST.md), so it answers in
 * milliseconds whatever the number of images. A manifest older than them (lvd-status never
 * migrates) is counted from the big tables instead. */
#include <stdio.h>

#include "kit/kit.h"
#include "store/manifest.h"

static const char help[] =
    "--db DB\n"
    "\n"
    "Prints what the manifest DB records: items per source by status, embeddings per\n"
    "model and source (against the source's ok items), dedup results and curated rows\n"
    "per model, and the last run of every stage (pipeline steps appear as\n"
    "'pipeline:<step>'). The manifest is only read.";

typedef struct table {
    const char *requires; /* a table the manifest may lack (added by a later migration) */
    const char *title;
    const char *header;
    const char *sql;      /* its columns are printed with fmt */
    const char *counting; /* NULL, or sql for a manifest without the maintained counts */
    const char *fmt;      /* one conversion per column: 's' text, 'd' integer, 'f' real */
    const int *widths;    /* column widths; negative: left-aligned */
} table;

static const int image_widths[] = {-16, -5, 9, 9, 10, 9, 9};
static const int embed_widths[] = {-24, -16, 10, 10};
static const int run_widths[] = {-28, 6, -12, -24, 9};
static const int dedup_widths[] = {-24, 10, 10, 10, 10};
static const int curated_widths[] = {-24, -16, -8, 10};

static const table tables[] = {
    {NULL, "items by source and status",
     "source           role      items        ok  duplicate    failed   pending",
     "SELECT s.name, s.role, COALESCE(SUM(c.n), 0),"
     " COALESCE(SUM(CASE WHEN c.status = 'ok' THEN c.n END), 0),"
     " COALESCE(SUM(CASE WHEN c.status = 'duplicate' THEN c.n END), 0),"
     " COALESCE(SUM(CASE WHEN c.status = 'failed' THEN c.n END), 0),"
     " COALESCE(SUM(CASE WHEN c.status = 'pending' THEN c.n END), 0)"
     " FROM sources s LEFT JOIN image_counts c ON c.source_id = s.id GROUP BY s.id"
     " ORDER BY s.name",
     "SELECT s.name, s.role, COUNT(i.id),"
     " COALESCE(SUM(i.status = 'ok'), 0), COALESCE(SUM(i.status = 'duplicate'), 0),"
     " COALESCE(SUM(i.status = 'failed'), 0), COALESCE(SUM(i.status = 'pending'), 0)"
     " FROM sources s LEFT JOIN images i ON i.source_id = s.id GROUP BY s.id ORDER BY s.name",
     "ssddddd", image_widths},
    {"embeddings", "embeddings by model and source",
     "model                    source             embedded  ok items",
     "WITH ok AS (SELECT source_id, SUM(n) AS n FROM image_counts WHERE status = 'ok'"
     "   GROUP BY source_id)"
     " SELECT m.name, s.name, COALESCE(e.n, 0), COALESCE(ok.n, 0)"
     " FROM models m CROSS JOIN sources s"
     " LEFT JOIN embedding_counts e ON e.model_id = m.id AND e.source_id = s.id"
     " LEFT JOIN ok ON ok.source_id = s.id ORDER BY m.name, s.name",
     "WITH e AS (SELECT e.model_id, i.source_id, COUNT(*) AS n FROM embeddings e"
     "   JOIN images i ON i.id = e.image_id GROUP BY e.model_id, i.source_id),"
     " ok AS (SELECT source_id, COUNT(*) AS n FROM images WHERE status = 'ok' GROUP BY source_id)"
     " SELECT m.name, s.name, COALESCE(e.n, 0), COALESCE(ok.n, 0)"
     " FROM models m CROSS JOIN sources s"
     " LEFT JOIN e ON e.model_id = m.id AND e.source_id = s.id"
     " LEFT JOIN ok ON ok.source_id = s.id ORDER BY m.name, s.name",
     "ssdd", embed_widths},
    {"dedup", "pool dedup by model (lvd-dedup)",
     "model                      images      kept duplicate      eval",
     "SELECT m.name, d.images, d.kept, d.duplicate, d.eval"
     " FROM dedup_counts d JOIN models m ON m.id = d.model_id WHERE d.images > 0 ORDER BY m.name",
     "SELECT m.name, COUNT(*), SUM(d.kept), SUM(d.reason = 'duplicate'), SUM(d.reason = 'eval')"
     " FROM dedup d JOIN models m ON m.id = d.model_id GROUP BY m.name ORDER BY m.name",
     "sdddd", dedup_widths},
    {"curated", "curated set by model, dataset and method (lvd-retrieve)",
     "model                    dataset          method        rows",
     "SELECT m.name, s.name, c.method, c.n FROM curated_counts c"
     " JOIN models m ON m.id = c.model_id JOIN sources s ON s.id = c.source_id"
     " WHERE c.n > 0 ORDER BY m.name, s.name, c.method",
     "SELECT m.name, s.name, c.method, COUNT(*) FROM curated c"
     " JOIN models m ON m.id = c.model_id JOIN sources s ON s.id = c.source_id"
     " GROUP BY m.name, s.name, c.method ORDER BY m.name, s.name, c.method",
     "sssd", curated_widths},
    {NULL, "last run of each stage",
     "stage                           run  status       started                    seconds",
     "SELECT r.stage, r.id, r.status, r.started,"
     " (julianday(COALESCE(r.finished, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))"
     "  - julianday(r.started)) * 86400.0"
     " FROM runs r JOIN (SELECT MAX(id) AS id FROM runs GROUP BY stage) l ON l.id = r.id"
     " ORDER BY r.id",
     NULL, "sdssf", run_widths},
};

/* 1 when the manifest has table name. */
static int has_table(lvd_manifest *m, const char *name)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(lvd_manifest_db(m),
                           "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1", -1,
                           &st, NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int found = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    return found;
}

static int print_table(lvd_manifest *m, const table *t, lvd_error *err)
{
    if (t->requires && !has_table(m, t->requires))
        return 0;
    const char *sql = t->counting && !has_table(m, "image_counts") ? t->counting : t->sql;
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m, sql, &st, err) != 0)
        return -1;
    printf("\n%s\n  %s\n", t->title, t->header);
    int rc, rows = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        fputs(" ", stdout);
        for (int c = 0; t->fmt[c]; c++) {
            int w = t->widths[c];
            if (t->fmt[c] == 'd')
                printf(" %*lld", w, (long long)sqlite3_column_int64(st, c));
            else if (t->fmt[c] == 'f')
                printf(" %*.1f", w, sqlite3_column_double(st, c));
            else
                printf(" %*s", w,
                       sqlite3_column_text(st, c) ? (const char *)sqlite3_column_text(st, c) : "-");
        }
        fputc('\n', stdout);
        rows++;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return lvd_manifest_fail(m, err, t->title);
    if (rows == 0)
        printf("  (none)\n");
    return 0;
}

static int run(lvd_manifest *m, void *ctx, lvd_error *err)
{
    printf("manifest %s\n", *(const char **)ctx);
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++)
        if (print_table(m, tables + i, err) != 0)
            return lvd_error_prefix(err, "%s", lvd_manifest_path(m));
    return 0;
}

int main(int argc, char **argv)
{
    const char *db = NULL;
    const lvd_kit_opt opts[] = {
        LVD_OPT_STR("db", "DB", db, "manifest database (must exist)", .required = 1),
        LVD_OPT_END,
    };
    const lvd_kit_cmd cmd = {"lvd-status", help, opts, run, &db, .db = LVD_KIT_READ};
    return lvd_kit_main(&cmd, argc, argv);
}
