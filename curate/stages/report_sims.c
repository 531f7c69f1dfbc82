/* lvd_report_similarities of curate/stages/report_sims.h: the thresholds of the model's dedup
 * and calibration runs, the edges of the dedup state file and the similarities v_duplicates
 * records, binned and drawn through curate/stages/report_svg.h. */
#include "curate/stages/report_sims.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "curate/stages/dedup_stage.h"
#include "curate/stages/report_html.h"
#include "curate/stages/report_svg.h"
#include "index/index.h"

#define BIN_WIDTH 0.01
#define MAX_BINS  200 /* [-1, 1] */

typedef struct hist {
    double lo, hi;
    int bins;
    int64_t counts[MAX_BINS];
    int64_t n, outside;
} hist;

/* Bins from one step of 0.05 below the multiple of 0.05 at or below lo (so that a marker at lo
 * stands clear of the frame; at most 0.95, at least -1) up to 1. */
static void hist_init(hist *h, double lo)
{
    memset(h, 0, sizeof *h);
    lo = isfinite(lo) ? floor(lo * 20 + 1e-9) / 20 - 0.05 : 0;
    h->lo = lo < -1 ? -1 : lo > 0.95 ? 0.95 : lo;
    h->hi = 1;
    h->bins = (int)lround((h->hi - h->lo) / BIN_WIDTH);
}

static void hist_add(hist *h, double v)
{
    if (v > h->hi && v <= h->hi + 1e-3) /* float rounding of a unit product */
        v = h->hi;
    int b = lvd_svg_bin(h->lo, h->hi, h->bins, v);
    if (b < 0)
        h->outside++;
    else
        h->counts[b]++;
    h->n++;
}

static void hist_draw(FILE *f, const hist *h, const char *title, const char *ylabel,
                      const lvd_svg_marker *marks, int nm)
{
    if (h->outside)
        fprintf(f, "<p class=\"note\">%lld values outside [%.2f, %.2f] are not drawn.</p>\n",
                (long long)h->outside, h->lo, h->hi);
    lvd_svg_chart c = {title, "cosine similarity", ylabel, 0, 720, 260, 0, 0};
    lvd_svg_histogram(f, &c, h->lo, h->hi, h->counts, h->bins, marks, nm);
}

/* The lowest of the finite markers and v. */
static double lowest(double v, const lvd_svg_marker *marks, int nm)
{
    for (int i = 0; i < nm; i++)
        if (isfinite(marks[i].x) && marks[i].x < v)
            v = marks[i].x;
    return v;
}

/* The thresholds in force: those of the run that wrote the model's dedup rows, and the latest
 * calibration of the model (NAN when none). */
typedef struct thresholds {
    int64_t run;
    double threshold, eval_threshold, calibrated;
    int64_t k;
} thresholds;

static double column_or_nan(sqlite3_stmt *st, int c)
{
    return sqlite3_column_type(st, c) == SQLITE_NULL ? NAN : sqlite3_column_double(st, c);
}

static int load_thresholds(lvd_manifest *m, int64_t model_id, const char *model, thresholds *t,
                           lvd_error *err)
{
    *t = (thresholds){0, NAN, NAN, NAN, 0};
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m,
                             "SELECT id, json_extract(params, '$.threshold'), json_extract(params, "
                             "'$.eval_threshold'), json_extract(params, '$.k') FROM v_runs WHERE "
                             "id = (SELECT run_id FROM dedup WHERE model_id = ?1 LIMIT 1)",
                             &st, err))
        return -1;
    sqlite3_bind_int64(st, 1, model_id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        t->run = sqlite3_column_int64(st, 0);
        t->threshold = column_or_nan(st, 1);
        t->eval_threshold = column_or_nan(st, 2);
        t->k = sqlite3_column_int64(st, 3);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return lvd_manifest_fail(m, err, "reading the dedup run");
    if (lvd_manifest_prepare(m,
                             "SELECT json_extract(counts, '$.threshold') FROM v_runs WHERE stage = "
                             "'calibrate' AND status = 'ok' AND json_extract(params, '$.model') = "
                             "?1 ORDER BY id DESC LIMIT 1",
                             &st, err))
        return -1;
    sqlite3_bind_text(st, 1, model, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        t->calibrated = column_or_nan(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE
               ? 0
               : lvd_manifest_fail(m, err, "reading calibrations");
}

/* 1 when row j (of key kj) of s lists key ki among its edges. */
static int lists(const lvd_dedup_state *s, int64_t j, int64_t ki)
{
    for (int64_t e = s->edge_start[j]; e < s->edge_start[j + 1]; e++)
        if (s->edge_key[e] == ki)
            return 1;
    return 0;
}

static int cmp_key(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Bins every linked pair once: i -> j from the lower key, or from the higher one when the lower
 * does not list it (k cuts are not symmetric). */
static void bin_edges(const lvd_dedup_state *s, hist *h)
{
    for (int64_t i = 0; i < s->n; i++)
        for (int64_t e = s->edge_start[i]; e < s->edge_start[i + 1]; e++) {
            int64_t kj = s->edge_key[e];
            if (kj == s->key[i])
                continue;
            if (kj < s->key[i]) {
                const int64_t *at = bsearch(&kj, s->key, (size_t)s->n, sizeof *s->key, cmp_key);
                if (at && lists(s, at - s->key, s->key[i]))
                    continue;
            }
            hist_add(h, s->edge_sim[e]);
        }
}

static void write_edges(lvd_manifest *m, FILE *f, int64_t model_id, const thresholds *t,
                        int64_t *edges)
{
    fputs("<h2>Dedup edges</h2>\n", f);
    char path[4096];
    lvd_error lerr;
    lvd_dedup_state s = {0};
    if (lvd_dedup_state_path(m, model_id, t->run, path, sizeof path, &lerr) ||
        lvd_dedup_state_load(path, &s, &lerr)) {
        fputs("<p class=\"note\">The edges are not available: ", f);
        lvd_html_escape(f, lerr.msg);
        fputs("</p>\n", f);
        return;
    }
    lvd_svg_marker marks[2] = {{"dedup threshold", s.threshold},
                               {"calibrated threshold", t->calibrated}};
    int nm = isfinite(t->calibrated) ? 2 : 1;
    hist h;
    hist_init(&h, lowest(s.threshold, marks, nm));
    bin_edges(&s, &h);
    *edges = h.n;
    const char *name = strrchr(path, '/');
    fprintf(f,
            "<p>%lld pairs of pool images linked by the dedup run: each image's %d best "
            "neighbours with similarity above %.3f, searched in %d of %lld inverted lists; a "
            "pair found from both ends counted once (state file ",
            (long long)h.n, s.k, s.threshold, s.nprobe, (long long)s.nlist);
    lvd_html_escape(f, name ? name + 1 : path);
    fputs(").</p>\n", f);
    hist_draw(f, &h, "Similarity of linked pairs", "pairs", marks, nm);
    lvd_dedup_state_free(&s);
}

/* A histogram of the similarities an SQL query returns (?1 bound to model_id). */
static int write_sql_hist(lvd_manifest *m, FILE *f, int64_t model_id, const char *sql,
                          const char *title, const char *ylabel, const lvd_svg_marker *marks,
                          int nm, int64_t *n, lvd_error *err)
{
    hist h;
    hist_init(&h, 0);
    double lo = INFINITY;
    int rc = 0;
    for (int pass = 0; rc == 0 && pass < 2; pass++) {
        if (pass == 1)
            hist_init(&h, lowest(lo, marks, nm));
        sqlite3_stmt *st;
        if (lvd_manifest_prepare(m, sql, &st, err)) {
            rc = -1;
            break;
        }
        sqlite3_bind_int64(st, 1, model_id);
        int step;
        while ((step = sqlite3_step(st)) == SQLITE_ROW) {
            double v = column_or_nan(st, 0);
            if (pass == 0 && v < lo)
                lo = v;
            else if (pass == 1)
                hist_add(&h, v);
        }
        sqlite3_finalize(st);
        if (step != SQLITE_DONE)
            rc = lvd_manifest_fail(m, err, "reading v_duplicates");
    }
    if (rc == 0) {
        *n = h.n;
        hist_draw(f, &h, title, ylabel, marks, nm);
    }
    return rc;
}

int lvd_report_similarities(lvd_manifest *m, FILE *f, int64_t model_id, const char *model,
                            int64_t *edges, lvd_error *err)
{
    *edges = 0;
    thresholds t;
    if (model_id < 0) {
        fputs("<p>No model.</p>\n", f);
        return 0;
    }
    if (load_thresholds(m, model_id, model, &t, err))
        return -1;
    if (t.run == 0) {
        fputs("<p>No dedup results for this model.</p>\n", f);
        return 0;
    }
    write_edges(m, f, model_id, &t, edges);
    fputs("<h2>Removed duplicates</h2>\n<p>Similarity of each image removed as a duplicate to "
          "its component's kept image (lower than the threshold for images linked through a "
          "chain).</p>\n",
          f);
    lvd_svg_marker dup_marks[1] = {{"dedup threshold", t.threshold}};
    int64_t n;
    if (write_sql_hist(m, f, model_id,
                       "SELECT similarity FROM dedup WHERE model_id = ?1 AND reason = 'duplicate' "
                       "ORDER BY image_id",
                       "Similarity to the kept image", "images", dup_marks, 1, &n, err))
        return -1;
    fputs("<h2>Decontamination</h2>\n<p>Highest similarity of each component removed by "
          "decontamination to an eval image (dedup records it only for components above the "
          "eval threshold).</p>\n",
          f);
    lvd_svg_marker eval_marks[1] = {{"eval threshold", t.eval_threshold}};
    return write_sql_hist(m, f, model_id,
                          "SELECT MAX(similarity) FROM dedup WHERE model_id = ?1 AND reason = "
                          "'eval' GROUP BY component ORDER BY component",
                          "Highest similarity to the eval set", "components", eval_marks, 1, &n,
                          err);
}
