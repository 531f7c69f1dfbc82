/* lvd_report_summary of curate/stages/report_summary.h. */
#include "curate/stages/report_summary.h"

#include "curate/stages/report_html.h"

/* The counts of the last ok 'demo-summary' run (the tables bind no parameter). */
#define LAST                                                                                       \
    "(SELECT counts AS c FROM v_runs WHERE stage = 'demo-summary' AND status = 'ok' "              \
    "ORDER BY id DESC LIMIT 1)"

static const lvd_html_spec tables[] = {
    {"Pool images, kept and removed per reason",
     "SELECT r.what, json_extract(s.c, '$.pool.' || r.key) FROM " LAST " s, (SELECT 1 AS ord, "
     "'removed at fetch: exact copy' AS what, 'removed_fetch_exact' AS key UNION ALL SELECT 2, "
     "'removed by dedup: near-duplicate', 'removed_dedup' UNION ALL SELECT 3, 'removed by "
     "decontamination', 'removed_decontamination' UNION ALL SELECT 4, 'kept, not retrieved', "
     "'kept_not_retrieved' UNION ALL SELECT 5, 'kept, retrieved (curated)', 'kept_retrieved' "
     "UNION ALL SELECT 6, 'not processed by dedup', 'not_processed') r WHERE r.ord < 6 OR "
     "json_extract(s.c, '$.pool.' || r.key) > 0 ORDER BY r.ord",
     {"pool images", "n"},
     2},
    {"Curated set: seeds and retrieved pool images (distinct images per method)",
     "SELECT j.key, j.value FROM " LAST " s, json_each(s.c, '$.curated') j ORDER BY j.key = "
     "'all', j.key",
     {"method", "images"},
     2},
    {"Retrieval precision per seed class (chance: the class's share of the pool; kept share: its "
     "share of the kept pool, which retrieval picks from)",
     "SELECT json_extract(j.value, '$.method'), json_extract(j.value, '$.seed_class'), "
     "json_extract(j.value, '$.seeds'), json_extract(j.value, '$.retrieved'), "
     "json_extract(j.value, '$.hits'), printf('%.3f', json_extract(j.value, '$.precision')), "
     "printf('%.3f', json_extract(j.value, '$.chance')), printf('%.1fx', json_extract(j.value, "
     "'$.vs_chance')), printf('%.3f', json_extract(j.value, '$.kept_share')) FROM " LAST
     " s, json_each(s.c, '$.precision') j ORDER BY j.key",
     {"method", "seed class", "seeds", "retrieved", "hits", "precision", "chance", "vs chance",
      "kept share"},
     9},
    {"k-NN classification per model (lvd-eval knn, bank -> eval): top-1 / top-5 %",
     "SELECT json_extract(j.value, '$.role'), json_extract(j.value, '$.model'), "
     "json_extract(j.value, '$.k'), printf('%.1f', json_extract(j.value, '$.top1')), "
     "printf('%.1f', json_extract(j.value, '$.top5')), json_extract(j.value, '$.n_train'), "
     "json_extract(j.value, '$.n_test') FROM " LAST " s, json_each(s.c, '$.knn') j ORDER BY "
     "j.key",
     {"role", "model", "k", "top-1", "top-5", "train", "test"},
     7},
};

int lvd_report_summary(lvd_manifest *m, FILE *f, lvd_error *err)
{
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m,
                             "SELECT id, finished, json_extract(counts, '$.model') FROM v_runs "
                             "WHERE stage = 'demo-summary' AND status = 'ok' ORDER BY id DESC "
                             "LIMIT 1",
                             &st, err))
        return -1;
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        fprintf(f, "<h2>Demo summary</h2>\n<p>run %lld of pipelines/demo-summary.sh",
                (long long)sqlite3_column_int64(st, 0));
        if (sqlite3_column_type(st, 1) != SQLITE_NULL) {
            fputs(" (", f);
            lvd_html_escape(f, (const char *)sqlite3_column_text(st, 1));
            fputs(")", f);
        }
        fputs(", curated with model ", f);
        lvd_html_escape(f, (const char *)sqlite3_column_text(st, 2));
        fputs(". Labels only score the retrieval here; no stage reads them.</p>\n", f);
    }
    sqlite3_finalize(st);
    if (step != SQLITE_ROW)
        return step == SQLITE_DONE ? 0 : lvd_manifest_fail(m, err, "reading the demo summary");
    return lvd_html_tables(m, f, tables, sizeof tables / sizeof *tables, 3, 0, err);
}
