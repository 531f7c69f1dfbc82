/* lvd_report_training of curate/stages/report_train.h: each training's step rows, its charts,
 * the k-NN evaluations during it and the final evaluations. */
#include "curate/stages/report_train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "curate/stages/report_html.h"
#include "curate/stages/report_svg.h"

/* The columns read per step, in the order of step_sql. */
enum {
    C_STEP,
    C_TOTAL,
    C_DINO_LOCAL,
    C_DINO_GLOBAL,
    C_IBOT,
    C_KOLEO,
    C_LR,
    C_LAST_LR,
    C_WD,
    C_MOMENTUM,
    C_TEMP,
    C_GN_BACKBONE,
    C_GN_DINO,
    C_GN_IBOT,
    C_SECONDS,
    C_COUNT
};

static const char *const step_sql =
    "SELECT step, loss_total, loss_dino_local, loss_dino_global, loss_ibot, loss_koleo, lr, "
    "last_layer_lr, wd, momentum, teacher_temp, grad_norm_backbone, grad_norm_dino_head, "
    "grad_norm_ibot_head, seconds FROM v_train_steps WHERE train_id = ?1 ORDER BY step";

typedef struct chart_spec {
    const char *title, *ylabel;
    int log_y;
    int n;
    int cols[4];
    const char *names[4];
} chart_spec;

static const chart_spec charts[] = {
    {"Losses",
     "loss",
     1,
     4,
     {C_TOTAL, C_DINO_LOCAL, C_DINO_GLOBAL, C_IBOT},
     {"total", "DINO local crops", "DINO global crops", "iBOT"}},
    {"KoLeo loss", "loss", 0, 1, {C_KOLEO}, {"KoLeo"}},
    {"Learning rate", "lr", 0, 2, {C_LR, C_LAST_LR}, {"lr", "last layer lr"}},
    {"Weight decay", "weight decay", 0, 1, {C_WD}, {"weight decay"}},
    {"Teacher momentum", "momentum", 0, 1, {C_MOMENTUM}, {"teacher momentum"}},
    {"Teacher temperature", "temperature", 0, 1, {C_TEMP}, {"teacher temperature"}},
    {"Gradient norms before clipping",
     "norm",
     1,
     3,
     {C_GN_BACKBONE, C_GN_DINO, C_GN_IBOT},
     {"backbone", "DINO head", "iBOT head"}},
};

/* The step rows of one training, a column each (NULL as NAN). */
typedef struct steps {
    double *col[C_COUNT];
    int64_t n, cap;
} steps;

static void steps_free(steps *s)
{
    for (int c = 0; c < C_COUNT; c++)
        free(s->col[c]);
    memset(s, 0, sizeof *s);
}

static int steps_load(lvd_manifest *m, int64_t train, steps *s, lvd_error *err)
{
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m, step_sql, &st, err))
        return -1;
    sqlite3_bind_int64(st, 1, train);
    int rc = 0, step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (s->n == s->cap) {
            int64_t cap = s->cap ? 2 * s->cap : 1024;
            for (int c = 0; c < C_COUNT; c++) {
                double *p = realloc(s->col[c], (size_t)cap * sizeof *p);
                if (!p) {
                    rc = lvd_fail(err, "report: out of memory for %lld training steps",
                                  (long long)cap);
                    break;
                }
                s->col[c] = p;
            }
            if (rc)
                break;
            s->cap = cap;
        }
        for (int c = 0; c < C_COUNT; c++)
            s->col[c][s->n] =
                sqlite3_column_type(st, c) == SQLITE_NULL ? NAN : sqlite3_column_double(st, c);
        s->n++;
    }
    if (rc == 0 && step != SQLITE_DONE)
        rc = lvd_manifest_fail(m, err, "reading v_train_steps");
    sqlite3_finalize(st);
    return rc;
}

static int has_value(const double *v, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isnan(v[i]))
            return 1;
    return 0;
}

/* The charts of the step columns; a chart without values becomes a note. */
static void write_step_charts(FILE *f, const steps *s)
{
    for (size_t k = 0; k < sizeof charts / sizeof *charts; k++) {
        const chart_spec *cs = &charts[k];
        lvd_svg_series series[4];
        int ns = 0;
        for (int i = 0; i < cs->n; i++)
            if (has_value(s->col[cs->cols[i]], s->n))
                series[ns++] =
                    (lvd_svg_series){cs->names[i], s->col[C_STEP], s->col[cs->cols[i]], s->n};
        if (ns == 0) {
            fprintf(f, "<p class=\"note\">%s: not recorded.</p>\n", cs->title);
            continue;
        }
        lvd_svg_chart c = {cs->title, "step", cs->ylabel, cs->log_y, 0, 0, 0, 0};
        lvd_svg_lines(f, &c, series, ns);
    }
}

/* The evaluations during a training: one series per (protocol, setting, k). */
typedef struct evals {
    double *step, *minutes, *top1;
    int64_t n;
    int64_t *first; /* series i: rows [first[i], first[i + 1]) */
    char (*name)[64];
    int ns;
} evals;

static void evals_free(evals *e)
{
    free(e->step);
    free(e->minutes);
    free(e->top1);
    free(e->first);
    free(e->name);
    memset(e, 0, sizeof *e);
}

/* 1 when v_train_evals has a column setting (the view of migration 8 on branch recipe has; the
 * schema this page was written against does not). */
static int has_setting(lvd_manifest *m)
{
    sqlite3_stmt *st = NULL;
    int ok = sqlite3_prepare_v2(lvd_manifest_db(m), "SELECT setting FROM v_train_evals LIMIT 0", -1,
                                &st, NULL) == SQLITE_OK;
    sqlite3_finalize(st);
    return ok;
}

static int evals_load(lvd_manifest *m, int64_t train, int setting, evals *e, lvd_error *err)
{
    int64_t rows = 0;
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m, "SELECT COUNT(*) FROM v_train_evals WHERE train = ?1", &st, err))
        return -1;
    sqlite3_bind_int64(st, 1, train);
    if (sqlite3_step(st) == SQLITE_ROW)
        rows = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    size_t cap = (size_t)(rows > 0 ? rows : 1);
    e->step = malloc(cap * sizeof *e->step);
    e->minutes = malloc(cap * sizeof *e->minutes);
    e->top1 = malloc(cap * sizeof *e->top1);
    e->first = malloc((cap + 1) * sizeof *e->first);
    e->name = malloc(cap * sizeof *e->name);
    if (!e->step || !e->minutes || !e->top1 || !e->first || !e->name)
        return lvd_fail(err, "report: out of memory for %lld evaluations", (long long)rows);
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT protocol, k, step, top1, seconds, %s FROM v_train_evals WHERE train = ?1 "
             "ORDER BY protocol, %s, k, step",
             setting ? "setting" : "''", setting ? "setting" : "''");
    if (lvd_manifest_prepare(m, sql, &st, err))
        return -1;
    sqlite3_bind_int64(st, 1, train);
    int step = SQLITE_DONE;
    char prev[64] = "";
    while (e->n < rows && (step = sqlite3_step(st)) == SQLITE_ROW) {
        char name[64], k[32] = "";
        const char *protocol = (const char *)sqlite3_column_text(st, 0),
                   *set = (const char *)sqlite3_column_text(st, 5);
        if (sqlite3_column_type(st, 1) != SQLITE_NULL)
            snprintf(k, sizeof k, " k=%lld", (long long)sqlite3_column_int64(st, 1));
        snprintf(name, sizeof name, "%.16s%s%.16s%s top-1", protocol ? protocol : "?",
                 set && *set ? " " : "", set ? set : "", k);
        if (e->n == 0 || strcmp(name, prev) != 0) {
            e->first[e->ns] = e->n;
            memcpy(e->name[e->ns++], name, sizeof name);
            memcpy(prev, name, sizeof name);
        }
        e->step[e->n] = sqlite3_column_double(st, 2);
        e->top1[e->n] =
            sqlite3_column_type(st, 3) == SQLITE_NULL ? NAN : sqlite3_column_double(st, 3);
        e->minutes[e->n] =
            sqlite3_column_type(st, 4) == SQLITE_NULL ? NAN : sqlite3_column_double(st, 4) / 60;
        e->n++;
    }
    sqlite3_finalize(st);
    e->first[e->ns] = e->n;
    return step == SQLITE_ROW || step == SQLITE_DONE
               ? 0
               : lvd_manifest_fail(m, err, "reading v_train_evals");
}

/* The evaluations of the last evaluated step, with or without the setting column. */
static const char *const last_evals_sql[2] = {
    "SELECT step, printf('%.1f', seconds), protocol, k, printf('%.2f', top1), printf('%.2f', "
    "top5), n_train, n_test FROM v_train_evals WHERE train = ?1 AND step = (SELECT MAX(step) FROM "
    "v_train_evals WHERE train = ?1) ORDER BY protocol, k",
    "SELECT step, printf('%.1f', seconds), protocol, setting, k, printf('%.2f', top1), "
    "printf('%.2f', top5), n_train, n_test FROM v_train_evals WHERE train = ?1 AND step = (SELECT "
    "MAX(step) FROM v_train_evals WHERE train = ?1) ORDER BY protocol, setting, k"};
static const char *const last_evals_heads[2][9] = {
    {"step", "seconds", "protocol", "k", "top-1", "top-5", "bank", "test images"},
    {"step", "seconds", "protocol", "setting", "k", "top-1", "top-5", "bank", "test images"}};

/* The k-NN charts: against the step, sharing the range [x_lo, x_hi] of the training's other
 * charts, and against the training time the evaluations record. */
static int write_train_evals(lvd_manifest *m, FILE *f, int64_t train, int have, double x_lo,
                             double x_hi, lvd_error *err)
{
    if (!have) {
        fputs("<p class=\"note\">k-NN accuracy during training: this manifest has no "
              "v_train_evals view (a schema before it), so the chart is left out.</p>\n",
              f);
        return 0;
    }
    int setting = has_setting(m);
    evals e = {0};
    int rc = evals_load(m, train, setting, &e, err);
    if (rc == 0 && e.n == 0)
        fputs("<p class=\"note\">k-NN accuracy during training: no evaluation recorded.</p>\n", f);
    if (rc == 0 && e.n > 0) {
        lvd_svg_series *s = malloc((size_t)e.ns * sizeof *s);
        if (!s) {
            rc = lvd_fail(err, "report: out of memory");
        } else {
            for (int i = 0; i < e.ns; i++)
                s[i] = (lvd_svg_series){e.name[i], e.step + e.first[i], e.top1 + e.first[i],
                                        e.first[i + 1] - e.first[i]};
            lvd_svg_chart c = {
                "k-NN accuracy during training", "step", "top-1 (%)", 0, 0, 0, x_lo, x_hi};
            lvd_svg_lines(f, &c, s, e.ns);
            if (has_value(e.minutes, e.n)) {
                for (int i = 0; i < e.ns; i++)
                    s[i].x = e.minutes + e.first[i];
                lvd_svg_chart t = {"k-NN accuracy against training time",
                                   "training minutes (evaluations excluded)",
                                   "top-1 (%)",
                                   0,
                                   0,
                                   0,
                                   0,
                                   0};
                lvd_svg_lines(f, &t, s, e.ns);
            }
            free(s);
            fputs("<p>At the last evaluated step:</p>\n", f);
            rc = lvd_html_table(m, f, last_evals_sql[setting], train, last_evals_heads[setting],
                                8 + setting, err);
        }
    }
    evals_free(&e);
    return rc;
}

/* The heading and one line of facts about a training. */
static int write_heading(lvd_manifest *m, FILE *f, int64_t train, const steps *s, lvd_error *err)
{
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(
            m,
            "SELECT r.stage, json_extract(r.params, '$.out'), (SELECT COUNT(DISTINCT run_id) FROM "
            "v_train_steps WHERE train_id = ?1), (SELECT l.status FROM v_runs l WHERE l.id = "
            "(SELECT MAX(run_id) FROM v_train_steps WHERE train_id = ?1)) FROM v_runs r WHERE "
            "r.id = ?1",
            &st, err))
        return -1;
    sqlite3_bind_int64(st, 1, train);
    int rc = sqlite3_step(st);
    double seconds = 0;
    for (int64_t i = 0; i < s->n; i++)
        if (isfinite(s->col[C_SECONDS][i]))
            seconds += s->col[C_SECONDS][i];
    fprintf(f, "<section>\n<h2>Training %lld", (long long)train);
    if (rc == SQLITE_ROW) {
        fputs(": ", f);
        lvd_html_escape(f, (const char *)sqlite3_column_text(st, 0));
        fputs(" (last run ", f);
        lvd_html_escape(f, (const char *)sqlite3_column_text(st, 3));
        fputs(")</h2>\n<p>out: ", f);
        lvd_html_escape(f, (const char *)sqlite3_column_text(st, 1));
        fprintf(f, "; %lld runs", (long long)sqlite3_column_int64(st, 2));
    } else {
        fputs("</h2>\n<p>", f);
    }
    fprintf(f, "; steps %.0f to %.0f (%lld rows); %.1f minutes of steps</p>\n",
            s->n ? s->col[C_STEP][0] : 0.0, s->n ? s->col[C_STEP][s->n - 1] : 0.0, (long long)s->n,
            seconds / 60.0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : lvd_manifest_fail(m, err, "reading runs");
}

static const char *const final_sql =
    "SELECT model, protocol, setting, k, printf('%.2f', top1), printf('%.2f', top5), n_train, "
    "n_test, train, test, run FROM v_evals WHERE split = 'test' ORDER BY model, protocol, "
    "setting, k, run";
static const char *const final_heads[] = {"model", "protocol", "setting", "k",
                                          "top-1", "top-5",    "bank",    "test images",
                                          "train", "test",     "run"};

int lvd_report_training(lvd_manifest *m, FILE *f, int64_t *trainings, lvd_error *err)
{
    *trainings = 0;
    int have_steps, have_evals, have_final;
    if (lvd_html_has_object(m, "v_train_steps", &have_steps, err) ||
        lvd_html_has_object(m, "v_train_evals", &have_evals, err) ||
        lvd_html_has_object(m, "v_evals", &have_final, err))
        return -1;
    if (!have_steps) {
        fputs("<p>This manifest has no training tables (its schema predates them).</p>\n", f);
        return 0;
    }
    fprintf(f,
            "<p class=\"note\">One section per training and distillation (v_train_steps), charts "
            "against the step. A series of more than %d points is drawn as %d buckets of "
            "consecutive steps, each by its lowest and highest value.</p>\n",
            LVD_SVG_MAX_POINTS, LVD_SVG_MAX_POINTS / 2);
    sqlite3_stmt *ids;
    if (lvd_manifest_prepare(m, "SELECT DISTINCT train_id FROM v_train_steps ORDER BY train_id",
                             &ids, err))
        return -1;
    int rc = 0, step;
    while (rc == 0 && (step = sqlite3_step(ids)) == SQLITE_ROW) {
        int64_t train = sqlite3_column_int64(ids, 0);
        steps s = {0};
        rc = steps_load(m, train, &s, err);
        if (rc == 0)
            rc = write_heading(m, f, train, &s, err);
        if (rc == 0) {
            write_step_charts(f, &s);
            rc = write_train_evals(m, f, train, have_evals, s.n ? s.col[C_STEP][0] : 0,
                                   s.n ? s.col[C_STEP][s.n - 1] : 0, err);
            fputs("</section>\n", f);
            (*trainings)++;
        }
        steps_free(&s);
    }
    if (rc == 0 && step != SQLITE_DONE)
        rc = lvd_manifest_fail(m, err, "reading v_train_steps");
    sqlite3_finalize(ids);
    if (rc == 0 && *trainings == 0)
        fputs("<p>No training recorded.</p>\n", f);
    if (rc == 0 && have_final) {
        fputs("<h2>Final evaluations (v_evals, test split)</h2>\n", f);
        rc = lvd_html_table(m, f, final_sql, 0, final_heads, 11, err);
    }
    return rc;
}
