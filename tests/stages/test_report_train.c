/* lvd-report's training page on a manifest with synthetic runs: a training of 600 steps over
 * two runs (its out folder holds HTML special characters, one step has no total loss) and a
 * feature distillation of 3000 steps (total loss and backbone norm only), a final k-NN score in
 * v_evals. Checks the sections, the series of each chart, a known point of the loss and of the
 * k-NN chart against the chart's geometry, the gap, the reduction of the long run, the notes for
 * charts without values, escaping, byte-identical reruns, the k-NN chart once the test creates
 * table train_evals and view v_train_evals (the columns the page reads, then with migration 8's
 * setting column) and the note without them (a manifest from before migration 8), and a manifest
 * without v_train_steps.
 *
 * Usage: test_report_train LVD-REPORT */
#include <math.h>

#include "store/manifest.h"
#include "tests/check_run.h"
#include "tests/stages/report_svg_test.h"
#include "tests/stages/stages_test.h"

static const char *report_exe;
static char dir[256], db_path[320];

static double loss_total(int step)
{
    return 10 * exp(-step / 200.0) + 1;
}

static double top1(int step, int k)
{
    return 50 + step / 20.0 + k / 10.0;
}

static void exec_sql(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    CHECK_MSG(sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK, "%s: %s", sql, msg);
    sqlite3_free(msg);
}

static void build_manifest(void)
{
    lvd_manifest *m;
    lvd_error err;
    CHECK_MSG(lvd_manifest_open(db_path, &m, &err) == 0, "%s", err.msg);
    lvd_manifest_close(m);
    sqlite3 *db;
    CHECK(sqlite3_open(db_path, &db) == SQLITE_OK);
    exec_sql(db, "INSERT INTO runs (id, stage, params, status) VALUES "
                 "(1, 'train', '{\"out\": \"/runs/a<b>&c\"}', 'ok'), "
                 "(2, 'train', '{\"out\": \"/runs/a<b>&c\", \"resumed_from\": 400}', "
                 "'interrupted'), "
                 "(3, 'distill', '{\"out\": \"/runs/small\"}', 'ok'), "
                 "(4, 'eval-knn', '{}', 'ok')");
    exec_sql(db, "BEGIN");
    sqlite3_stmt *st;
    CHECK(sqlite3_prepare_v2(db,
                             "INSERT INTO train_steps (train_id, step, run_id, loss_total, "
                             "loss_dino_local, loss_dino_global, loss_koleo, loss_ibot, lr, "
                             "last_layer_lr, wd, momentum, teacher_temp, grad_norm_backbone, "
                             "grad_norm_dino_head, grad_norm_ibot_head, n_masked, images_per_s, "
                             "seconds) VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, "
                             "?12, ?13, ?14, ?15, 10, 100, 0.5)",
                             -1, &st, NULL) == SQLITE_OK);
    for (int s = 1; s <= 600; s++) {
        double t = loss_total(s);
        sqlite3_bind_int(st, 1, s);
        sqlite3_bind_int(st, 2, s <= 400 ? 1 : 2);
        if (s == 300)
            sqlite3_bind_null(st, 3);
        else
            sqlite3_bind_double(st, 3, t);
        sqlite3_bind_double(st, 4, 0.4 * t);
        sqlite3_bind_double(st, 5, 0.3 * t);
        sqlite3_bind_double(st, 6, -0.3 + 0.0001 * s);
        sqlite3_bind_double(st, 7, 0.3 * t);
        sqlite3_bind_double(st, 8, s < 100 ? 1e-3 * s / 100 : 1e-3 * (600 - s) / 500);
        sqlite3_bind_double(st, 9, s < 50 ? 0 : 1e-3);
        sqlite3_bind_double(st, 10, 0.04 + 0.16 * s / 600);
        sqlite3_bind_double(st, 11, 0.992 + 0.008 * s / 600);
        sqlite3_bind_double(st, 12, s < 100 ? 0.04 + 0.03 * s / 100 : 0.07);
        sqlite3_bind_double(st, 13, 5 / sqrt(s));
        sqlite3_bind_double(st, 14, 0.5);
        sqlite3_bind_double(st, 15, 0.7);
        CHECK(sqlite3_step(st) == SQLITE_DONE);
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    CHECK(sqlite3_prepare_v2(db,
                             "INSERT INTO train_steps (train_id, step, run_id, loss_total, "
                             "grad_norm_backbone, seconds) VALUES (3, ?1, 3, ?2, ?3, 0.1)",
                             -1, &st, NULL) == SQLITE_OK);
    for (int s = 1; s <= 3000; s++) {
        sqlite3_bind_int(st, 1, s);
        sqlite3_bind_double(st, 2, 1 - 0.5 * s / 3000.0 + (s == 2222 ? 3 : 0));
        sqlite3_bind_double(st, 3, 2.0);
        CHECK(sqlite3_step(st) == SQLITE_DONE);
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    exec_sql(db, "COMMIT");
    exec_sql(db, "INSERT INTO models (id, name, arch, dim, features) VALUES (1, 'tiny<m>', "
                 "'external', 8, 'external')");
    exec_sql(db, "INSERT INTO sources (id, name, role) VALUES (1, 'fm-train', 'eval'), "
                 "(2, 'fm-test', 'eval')");
    exec_sql(db, "INSERT INTO evals (run_id, model_id, protocol, setting, k, split, top1, top5, "
                 "n_train, n_test, train_source_id, test_source_id) VALUES "
                 "(4, 1, 'knn', 'cls', 20, 'test', 86.123, 98.5, 60000, 10000, 1, 2)");
    sqlite3_close(db);
}

static int report(const char *out)
{
    char *argv[] = {(char *)report_exe, "--db", db_path, "--out", (char *)out, NULL};
    return st_run(argv, NULL);
}

/* The page name of the report in folder sub. */
static char *page(const char *sub, const char *name)
{
    char out[600];
    snprintf(out, sizeof out, "%s/%s", dir, sub);
    return st_read_page(out, name);
}

/* The section of html whose heading starts with head, as a copy up to its </section>. */
static char *section(const char *html, const char *head)
{
    const char *at = strstr(html, head);
    const char *end = at ? strstr(at, "</section>") : NULL;
    return end ? strndup(at, (size_t)(end - at)) : strdup("");
}

/* The <svg> of sec whose title is title (a copy up to </svg>). */
static char *chart(const char *sec, const char *title)
{
    char key[128];
    snprintf(key, sizeof key, "font-weight=\"bold\">%s", title);
    const char *t = strstr(sec, key);
    const char *at = t, *end = t ? strstr(t, "</svg>") : NULL;
    while (at && at > sec && strncmp(at, "<svg ", 5) != 0)
        at--;
    return at && end ? strndup(at, (size_t)(end - at) + 7) : strdup("");
}

static double px[4000], py[4000];

static void check_first(void)
{
    char *html = page("a", "training.html");
    CHECK(strstr(html, "<nav>") && strstr(html, "<h1>Training</h1>"));
    CHECK(st_count_of(html, "<section>") == 2);
    CHECK(!strstr(html, "a<b>&c") && !strstr(html, "tiny<m>"));
    char *t1 = section(html, "<h2>Training 1: train (last run interrupted)</h2>");
    char *t3 = section(html, "<h2>Training 3: distill (last run ok)</h2>");
    CHECK_MSG(strstr(t1, "out: /runs/a&lt;b&gt;&amp;c; 2 runs; steps 1 to 600 (600 rows); 5.0 "
                         "minutes of steps"),
              "training 1 heading: %.300s", t1);
    CHECK(strstr(t3, "steps 1 to 3000 (3000 rows)"));
    /* The loss chart: four series on a log axis, a gap at step 300, step 100 where it belongs. */
    char *loss = chart(t1, "Losses");
    static const char *const names[] = {"total", "DINO local crops", "DINO global crops", "iBOT"};
    for (int i = 0; i < 4; i++) {
        char key[96];
        snprintf(key, sizeof key, "<g data-series=\"%s\"", names[i]);
        CHECK_MSG(strstr(loss, key), "no series %s", names[i]);
    }
    int runs;
    int n = series_points(loss, "total", px, py, 4000, &runs);
    CHECK_MSG(n == 599 && runs == 2, "total: %d points, %d runs", n, runs);
    geom g = geometry(loss);
    CHECK(g.log_y == 1);
    double ex, ey;
    expected(&g, 100, loss_total(100), &ex, &ey);
    CHECK_MSG(fabs(px[99] - ex) <= 0.05 && fabs(py[99] - ey) <= 0.05, "step 100 at %g,%g not %g,%g",
              px[99], py[99], ex, ey);
    free(loss);
    /* KoLeo is negative: its own linear chart. */
    char *koleo = chart(t1, "KoLeo loss");
    CHECK(strstr(koleo, "data-series=\"KoLeo\"") && geometry(koleo).log_y == 0);
    CHECK(series_points(koleo, "KoLeo", px, py, 4000, &runs) == 600);
    free(koleo);
    static const char *const titles[] = {"Learning rate", "Weight decay", "Teacher momentum",
                                         "Teacher temperature", "Gradient norms before clipping"};
    for (int i = 0; i < 5; i++) {
        char *c = chart(t1, titles[i]);
        CHECK_MSG(strstr(c, "<polyline points="), "training 1: no chart %s", titles[i]);
        free(c);
    }
    char *lr = chart(t1, "Learning rate");
    CHECK(strstr(lr, "data-series=\"last layer lr\""));
    n = series_points(lr, "lr", px, py, 4000, &runs);
    g = geometry(lr);
    expected(&g, 100, 1e-3, &ex, &ey);
    CHECK(n == 600 && fabs(px[99] - ex) <= 0.05 && fabs(py[99] - ey) <= 0.05);
    free(lr);
    CHECK(st_count_of(t1, "no v_train_evals view") == 1);
    /* The distillation: the long run reduced, keeping its spike; charts without values noted. */
    char *dl = chart(t3, "Losses");
    n = series_points(dl, "total", px, py, 4000, &runs);
    CHECK_MSG(n > 500 && n <= 1000 && runs == 1, "distillation total: %d points", n);
    g = geometry(dl);
    expected(&g, 2222, 1 - 0.5 * 2222 / 3000.0 + 3, &ex, &ey);
    int spike = 0;
    for (int i = 0; i < n && i < 4000; i++)
        spike |= fabs(px[i] - ex) <= 0.05 && fabs(py[i] - ey) <= 0.05;
    CHECK(spike);
    CHECK(!strstr(dl, "data-series=\"iBOT\""));
    free(dl);
    CHECK(strstr(t3, "KoLeo loss: not recorded.") && strstr(t3, "Teacher momentum: not recorded."));
    char *gn = chart(t3, "Gradient norms before clipping");
    CHECK(strstr(gn, "data-series=\"backbone\"") && !strstr(gn, "DINO head"));
    free(gn);
    /* The final evaluation. */
    CHECK(strstr(html, "<td>tiny&lt;m&gt;</td><td>knn</td><td>cls</td><td>20</td><td>86.12</td>"
                       "<td>98.50</td><td>60000</td><td>10000</td><td>fm-train</td>"
                       "<td>fm-test</td><td>4</td>"));
    char *index = page("a", "index.html");
    CHECK(strstr(index, "<a href=\"training.html\">Training</a>: losses, schedules, gradient "
                        "norms and k-NN accuracy of 2 trainings and distillations"));
    free(index);
    free(t1);
    free(t3);
    free(html);
}

/* Migration 8's table and view (branch recipe), with evaluations of training 1. */
static void add_train_evals(void)
{
    sqlite3 *db;
    CHECK(sqlite3_open(db_path, &db) == SQLITE_OK);
    exec_sql(db, "CREATE TABLE train_evals (id INTEGER PRIMARY KEY, train_id INTEGER NOT NULL "
                 "REFERENCES runs(id), step INTEGER NOT NULL, seconds REAL, protocol TEXT NOT "
                 "NULL, k INTEGER, top1 REAL, top5 REAL, n_train INTEGER, n_test INTEGER, "
                 "created TEXT)");
    exec_sql(db, "CREATE VIEW v_train_evals AS SELECT train_id AS train, step, seconds, protocol, "
                 "k, top1, top5, n_train, n_test FROM train_evals");
    char sql[512];
    for (int s = 200; s <= 600; s += 200)
        for (int k = 10; k <= 20; k += 10) {
            snprintf(sql, sizeof sql,
                     "INSERT INTO train_evals (train_id, step, seconds, protocol, k, top1, top5, "
                     "n_train, n_test) VALUES (1, %d, %d, 'knn', %d, %.17g, 99, 600, 100)",
                     s, s / 2, k, top1(s, k));
            exec_sql(db, sql);
        }
    sqlite3_close(db);
}

static void check_train_evals(void)
{
    char *html = page("b", "training.html");
    char *t1 = section(html, "<h2>Training 1:");
    char *t3 = section(html, "<h2>Training 3:");
    CHECK(!strstr(html, "no v_train_evals view"));
    CHECK(strstr(t3, "k-NN accuracy during training: no evaluation recorded."));
    char *knn = chart(t1, "k-NN accuracy during training");
    int runs;
    CHECK(series_points(knn, "knn k=10 top-1", px, py, 4000, &runs) == 3 && runs == 1);
    int n = series_points(knn, "knn k=20 top-1", px, py, 4000, &runs);
    geom g = geometry(knn);
    CHECK_MSG(g.x0 == 0 && g.x1 == 600, "k-NN steps %g to %g, not the training's", g.x0, g.x1);
    double ex, ey;
    expected(&g, 400, top1(400, 20), &ex, &ey);
    CHECK_MSG(n == 3 && fabs(px[1] - ex) <= 0.05 && fabs(py[1] - ey) <= 0.05,
              "k-NN step 400 at %g,%g not %g,%g", px[1], py[1], ex, ey);
    free(knn);
    /* Against training time: step 400 was at 200 s. */
    char *time = chart(t1, "k-NN accuracy against training time");
    n = series_points(time, "knn k=20 top-1", px, py, 4000, &runs);
    g = geometry(time);
    expected(&g, 200 / 60.0, top1(400, 20), &ex, &ey);
    CHECK_MSG(n == 3 && fabs(px[1] - ex) <= 0.05 && fabs(py[1] - ey) <= 0.05,
              "k-NN at 200 s at %g,%g not %g,%g", px[1], py[1], ex, ey);
    free(time);
    const char *k10 = strstr(t1, "<td>600</td><td>300.0</td><td>knn</td><td>10</td><td>81.00</td>");
    const char *k20 = strstr(t1, "<td>600</td><td>300.0</td><td>knn</td><td>20</td><td>82.00</td>");
    CHECK(k10 && k20 && k10 < k20 && !strstr(t1, "<td>400</td><td>200.0</td>"));
    free(t1);
    free(t3);
    free(html);
}

/* The view as migration 8 on branch recipe defines it has a column setting: one series per
 * setting. */
static void check_settings(void)
{
    sqlite3 *db;
    CHECK(sqlite3_open(db_path, &db) == SQLITE_OK);
    exec_sql(db, "ALTER TABLE train_evals ADD COLUMN setting TEXT NOT NULL DEFAULT 'cls'");
    exec_sql(db, "DROP VIEW v_train_evals");
    exec_sql(db, "CREATE VIEW v_train_evals AS SELECT train_id AS train, step, seconds, protocol, "
                 "k, top1, top5, n_train, n_test, setting FROM train_evals");
    exec_sql(db, "INSERT INTO train_evals (train_id, step, seconds, protocol, k, top1, top5, "
                 "n_train, n_test, setting) SELECT train_id, step, seconds, protocol, k, top1 - 1, "
                 "top5, n_train, n_test, 'cls+mean' FROM train_evals WHERE k = 20");
    sqlite3_close(db);
    char out[400];
    snprintf(out, sizeof out, "%s/s", dir);
    CHECK(report(out) == 0);
    char *html = page("s", "training.html");
    char *t1 = section(html, "<h2>Training 1:");
    char *knn = chart(t1, "k-NN accuracy during training");
    int runs;
    CHECK(series_points(knn, "knn cls k=10 top-1", px, py, 4000, &runs) == 3);
    CHECK(series_points(knn, "knn cls k=20 top-1", px, py, 4000, &runs) == 3);
    CHECK(series_points(knn, "knn cls+mean k=20 top-1", px, py, 4000, &runs) == 3);
    CHECK(strstr(t1, "<th>setting</th>") &&
          strstr(t1, "<td>knn</td><td>cls+mean</td><td>20</td><td>81.00</td>"));
    free(knn);
    free(t1);
    free(html);
}

/* The same manifest gives byte-identical pages. */
static void check_rerun(void)
{
    char out[400];
    snprintf(out, sizeof out, "%s/c", dir);
    CHECK(report(out) == 0);
    static const char *const names[] = {"training.html", "similarities.html", "index.html"};
    for (int i = 0; i < 3; i++) {
        char *a = page("b", names[i]), *b = page("c", names[i]);
        CHECK_MSG(strcmp(a, b) == 0, "%s differs on a rerun", names[i]);
        free(a);
        free(b);
    }
}

/* A manifest without the training view (as before migration 6) still gets its page. */
static void check_no_training_view(void)
{
    sqlite3 *db;
    CHECK(sqlite3_open(db_path, &db) == SQLITE_OK);
    exec_sql(db, "DROP VIEW v_train_steps");
    sqlite3_close(db);
    char out[400];
    snprintf(out, sizeof out, "%s/d", dir);
    CHECK(report(out) == 0);
    char *html = page("d", "training.html");
    CHECK(strstr(html, "no training tables") && !strstr(html, "<svg "));
    free(html);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_report_train LVD-REPORT\n");
        return 2;
    }
    report_exe = argv[1];
    snprintf(dir, sizeof dir, "/tmp/lvd-report-train-XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    snprintf(db_path, sizeof db_path, "%s/m.db", dir);
    build_manifest();
    /* A manifest from before migration 8 (lvd-report opens it read-only, so it stays so): no
     * k-NN table; the test then creates the table and view the page reads. */
    sqlite3 *db;
    CHECK(sqlite3_open(db_path, &db) == SQLITE_OK);
    exec_sql(db, "DROP VIEW v_train_evals; DROP TABLE train_evals");
    sqlite3_close(db);
    char out[400];
    snprintf(out, sizeof out, "%s/a", dir);
    CHECK(report(out) == 0);
    check_first();
    add_train_evals();
    snprintf(out, sizeof out, "%s/b", dir);
    CHECK(report(out) == 0);
    check_train_evals();
    check_rerun();
    check_settings();
    check_no_training_view();
    st_remove_or_keep(dir);
    return check_finish();
}
