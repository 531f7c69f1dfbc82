/* lvd-report on a manifest of known structure (d = 16): a duplicate component of 3 and one of
 * 2, a component removed by an eval image at similarity 0.5, five seeds (their source's name
 * holds HTML special characters) with their retrieved neighbours and cluster samples. Checks
 * that every page exists, that exactly the images shown have thumbnails and each is a valid
 * JPEG, that every href / src of every page resolves to a file, the eval match, the orders, the
 * bounds, byte-identical reruns and the errors; the similarity page: the dedup pairs (counted
 * from the vectors), the duplicate and eval similarities, the thresholds marked (a calibration
 * run's too), and a note when the dedup state file is gone.
 *
 * With --browser first, instead renders the pages in headless Chromium (exit 77 when it is not
 * installed): the DOM after load holds every gallery image and chart, and a screenshot of the
 * duplicates page shows the thumbnails (many distinct colours), which it does not once thumbs/ is
 * gone.
 *
 * Usage: test_report [--browser] LVD-FETCH LVD-DEDUP LVD-RETRIEVE LVD-REPORT */
#include <math.h>
#include <signal.h>
#include <time.h>

#include "tests/check_run.h"
#include "tests/stages/report_svg_test.h"
#include "tests/stages/stages_test.h"

#define DIM                16
#define SEED_SOURCE        "s&<x>\""
#define CHROMIUM_TIMEOUT_S 120

enum { T_FETCH, T_DEDUP, T_RETRIEVE, T_REPORT, T_COUNT };
static const char *tool[T_COUNT];
static char dir[256], db_path[320], out_dir[320];

typedef st_item item;

static const item items[] = {
    {"p1.jpg", "pool", {0, 8, -1}, {1, 0.9f}, 0},
    {"p1d.jpg", "pool", {0, 8, -1}, {1, 0.9f}, 11},
    {"p1e.jpg", "pool", {0, 8, -1}, {1, 0.9f}, 12},
    {"p2.jpg", "pool", {0, 9, -1}, {1, 1}, 0},
    {"p2d.jpg", "pool", {0, 9, -1}, {1, 1}, 13},
    {"p3.jpg", "pool", {0, 10, -1}, {1, 1.1f}, 0},
    {"p4.jpg", "pool", {0, 11, -1}, {1, 1.2f}, 0},
    {"q1.jpg", "pool", {1, 12, -1}, {1, 1}, 0},
    {"q2.jpg", "pool", {1, 13, -1}, {1, 1}, 0},
    {"q3.jpg", "pool", {1, 14, -1}, {1, 1}, 0},
    {"r1.jpg", "pool", {2, 15, -1}, {1, 1}, 0},
    {"r2.jpg", "pool", {2, 6, -1}, {1, 1}, 0},
    {"sA1.jpg", "seed", {0, 8, 9}, {1, 0.6f, 0.3f}, 0},
    {"sA2.jpg", "seed", {0, 9, 10}, {1, 0.6f, 0.3f}, 0},
    {"sA3.jpg", "seed", {0, 10, 11}, {1, 0.6f, 0.3f}, 0},
    {"sA4.jpg", "seed", {0, 11, 8}, {1, 0.6f, 0.3f}, 0},
    {"sQ.jpg", "seed", {1, 12, 13}, {1, 0.6f, 0.3f}, 0},
    {"E1.jpg", "eval", {15, 7, -1}, {1, 1}, 0}, /* 0.5 to r1: removes it */
    {"E2.jpg", "eval", {3, 4, -1}, {1, 1}, 0},  /* far from everything */
};
#define N_ITEMS ((int)(sizeof items / sizeof items[0]))

static const char *const pages[] = {"index.html",       "duplicates.html", "decontaminated.html",
                                    "neighbours.html",  "clusters.html",   "training.html",
                                    "similarities.html"};
#define N_PAGES ((int)(sizeof pages / sizeof pages[0]))

static int64_t item_id[N_ITEMS];

static void make_vector(const item *it, float *out)
{
    st_item_vector(it, DIM, out);
}

static int64_t id_of(const char *name)
{
    return item_id[st_item_find(items, N_ITEMS, name)];
}

static int fetch(const char *source, const char *role, const char *folder)
{
    char in[512], shards[512];
    snprintf(in, sizeof in, "%s/%s", dir, folder);
    snprintf(shards, sizeof shards, "%s/shards", dir);
    char *argv[] = {(char *)tool[T_FETCH],
                    "--db",
                    db_path,
                    "--source",
                    (char *)source,
                    "--role",
                    (char *)role,
                    "--out",
                    shards,
                    "--no-progress",
                    in,
                    NULL};
    return st_run(argv, NULL);
}

/* Fetches the three folders, records every embedding, runs dedup and retrieval. */
static void build_manifest(void)
{
    float rows[N_ITEMS * DIM];
    st_write_items(dir, items, N_ITEMS, DIM, rows);
    CHECK(fetch("web", "pool", "pool") == 0);
    CHECK(fetch(SEED_SOURCE, "seed", "seed") == 0);
    CHECK(fetch("evalset", "eval", "eval") == 0);
    sqlite3 *db;
    CHECK(sqlite3_open(db_path, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db,
                       "INSERT INTO models (id, name, arch, dim, features) VALUES (1, 'synth', "
                       "'external', 16, 'external')",
                       NULL, NULL, NULL) == SQLITE_OK);
    for (int i = 0; i < N_ITEMS; i++) {
        item_id[i] = st_image_id(db, items[i].name);
        CHECK_MSG(item_id[i] > 0, "%s has no image row", items[i].name);
    }
    char npy[512];
    snprintf(npy, sizeof npy, "%s/emb.npy", dir);
    CHECK(st_add_embeddings(db, 1, npy, rows, item_id, N_ITEMS, DIM) == 0);
    sqlite3_close(db);
    char *dedup[] = {(char *)tool[T_DEDUP], "--db", db_path, "--model", "synth", NULL};
    CHECK(st_run(dedup, NULL) == 0);
    char *retrieve[] = {(char *)tool[T_RETRIEVE],
                        "--db",
                        db_path,
                        "--model",
                        "synth",
                        "--per-seed",
                        "2",
                        "--clusters",
                        "3",
                        "--per-cluster",
                        "2",
                        "--seed",
                        "1",
                        "--redo",
                        "10",
                        NULL};
    CHECK(st_run(retrieve, NULL) == 0);
}

static int report(const char *out, const char *extra1, const char *extra2)
{
    char *argv[] = {(char *)tool[T_REPORT], "--db",         db_path, "--out", (char *)out,
                    (char *)extra1,         (char *)extra2, NULL};
    return st_run(argv, NULL);
}

/* Checks that every href="..." and src="..." of html is a relative link to a file under out;
 * returns the number of links. */
static int check_links(const char *out, const char *page, const char *html)
{
    static const char *const attrs[] = {" href=\"", " src=\""};
    int links = 0;
    for (int a = 0; a < 2; a++)
        for (const char *p = html; (p = strstr(p, attrs[a]));) {
            p += strlen(attrs[a]);
            const char *end = strchr(p, '"');
            if (!end)
                break;
            char target[512], path[1024];
            snprintf(target, sizeof target, "%.*s", (int)(end - p), p);
            snprintf(path, sizeof path, "%s/%s", out, target);
            CHECK_MSG(target[0] != '/' && !strstr(target, ":") && access(path, R_OK) == 0,
                      "%s: link '%s' does not resolve", page, target);
            links++;
            p = end;
        }
    return links;
}

/* 1 when path is a JPEG whose longer side is box. */
static int valid_thumb(const char *path, int box)
{
    size_t len = 0;
    uint8_t *data = (uint8_t *)check_slurp(path, &len);
    if (!data)
        return 0;
    lvd_decode_opts o;
    memset(&o, 0, sizeof o);
    o.max_pixels = 1 << 24;
    lvd_image img;
    lvd_error err;
    int ok = len > 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF &&
             lvd_image_decode(data, len, &o, &img, &err) == 0;
    if (ok) {
        ok = (img.width > img.height ? img.width : img.height) == box;
        lvd_image_free(&img);
    }
    free(data);
    return ok;
}

static int count_files(const char *path)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls '%s' | wc -l", path);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p && fscanf(p, "%d", &n) != 1)
        n = -1;
    if (p)
        pclose(p);
    return n;
}

/* The images the galleries must show: every member of a component of 2 or more or removed by
 * decontamination, E1 (the eval match), every seed with neighbours and every retrieved image. */
static const char *const shown_sql =
    "SELECT image_id FROM v_duplicates WHERE reason = 'eval' OR component IN (SELECT component "
    "FROM v_duplicates GROUP BY component HAVING COUNT(*) > 1) UNION SELECT image_id FROM "
    "v_curated WHERE method IN ('knn', 'cluster') UNION SELECT seed_image_id FROM v_curated "
    "WHERE method = 'knn' UNION SELECT %lld ORDER BY 1";

static void check_thumbs(sqlite3 *db)
{
    char sql[1024], thumbs[400];
    snprintf(sql, sizeof sql, shown_sql, (long long)id_of("E1"));
    snprintf(thumbs, sizeof thumbs, "%s/thumbs", out_dir);
    sqlite3_stmt *st;
    CHECK(sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK);
    int n = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        char path[600];
        snprintf(path, sizeof path, "%s/%lld.jpg", thumbs, (long long)sqlite3_column_int64(st, 0));
        CHECK_MSG(valid_thumb(path, 128), "%s: missing or not a 128 px JPEG", path);
        n++;
    }
    sqlite3_finalize(st);
    /* 5 duplicates, r1, E1, 5 seeds and at least 2 distinct neighbours. */
    CHECK_MSG(n >= 14, "%d images shown", n);
    CHECK_MSG(count_files(thumbs) == n, "%d thumbnails, %d images shown", count_files(thumbs), n);
    char e2[600];
    snprintf(e2, sizeof e2, "%s/%lld.jpg", thumbs, (long long)id_of("E2"));
    CHECK(access(e2, F_OK) != 0);
}

/* The text of the section whose heading starts with head (up to its </section>), or NULL. */
static char *section(const char *html, const char *head)
{
    const char *at = strstr(html, head);
    const char *end = at ? strstr(at, "</section>") : NULL;
    return end ? strndup(at, (size_t)(end - at)) : NULL;
}

/* Every knn row appears under its seed, the seed first, ranks in order. */
static void check_neighbours(sqlite3 *db, const char *html)
{
    CHECK(st_count_of(html, "<section>") == 5);
    sqlite3_stmt *st;
    CHECK(sqlite3_prepare_v2(db,
                             "SELECT seed_image_id, rank, image_id FROM v_curated WHERE method "
                             "= 'knn' ORDER BY seed_image_id, rank",
                             -1, &st, NULL) == SQLITE_OK);
    int rows = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        long long seed = sqlite3_column_int64(st, 0), image = sqlite3_column_int64(st, 2);
        int rank = sqlite3_column_int(st, 1);
        char head[128], seed_tile[128], tile[128];
        snprintf(head, sizeof head, "<h3>seed %lld (s&amp;&lt;x&gt;&quot;): 2 neighbours", seed);
        snprintf(seed_tile, sizeof seed_tile, "<figcaption>%lld seed<br>", seed);
        snprintf(tile, sizeof tile, "<figcaption>%lld rank %d ", image, rank);
        char *sec = section(html, head);
        CHECK_MSG(sec != NULL, "no section %s", head);
        const char *s = sec ? strstr(sec, seed_tile) : NULL;
        const char *t = sec ? strstr(sec, tile) : NULL;
        CHECK_MSG(s && t && s < t, "seed %lld: rank %d (%lld) missing or before the seed", seed,
                  rank, image);
        if (rank == 2 && sec) {
            snprintf(tile, sizeof tile, "rank 1 ");
            CHECK(strstr(sec, tile) < t);
        }
        free(sec);
        rows++;
    }
    sqlite3_finalize(st);
    CHECK(rows == 10);
    CHECK(!strstr(html, SEED_SOURCE));
}

static void check_pages(sqlite3 *db)
{
    char *html[N_PAGES];
    int links = 0;
    for (int p = 0; p < N_PAGES; p++) {
        html[p] = st_read_page(out_dir, pages[p]);
        links += check_links(out_dir, pages[p], html[p]);
    }
    CHECK_MSG(links > 5 * N_PAGES, "%d links", links);
    /* index: the counts per stage. */
    CHECK(strstr(html[0], "<td>synth</td><td>external</td><td>16</td><td>19</td>") != NULL);
    CHECK(strstr(html[0], "<td>synth</td><td>12</td><td>8</td><td>3</td><td>1</td>") != NULL);
    CHECK(strstr(html[0], "<td>s&amp;&lt;x&gt;&quot;</td><td>ok</td>") != NULL);
    CHECK(strstr(html[0], "<td>dedup</td><td>ok</td>") != NULL);
    CHECK(strstr(html[0], "<a href=\"similarities.html\">Similarities</a>: 4 dedup pairs") != NULL);
    /* duplicates: p1's component of 3, then p2's of 2. */
    char head[128];
    snprintf(head, sizeof head, "<h3>component %lld: 3 images</h3>", (long long)id_of("p1"));
    const char *a = strstr(html[1], head);
    snprintf(head, sizeof head, "<h3>component %lld: 2 images</h3>", (long long)id_of("p2"));
    const char *b = strstr(html[1], head);
    CHECK_MSG(a && b && a < b, "duplicate components missing or out of order");
    CHECK(st_count_of(html[1], "<section>") == 2 && st_count_of(html[1], "<img ") == 5);
    /* decontaminated: r1 with its eval match E1 at 0.5, E1 shown first. */
    snprintf(head, sizeof head, "eval image %lld matches %lld at 0.5000", (long long)id_of("E1"),
             (long long)id_of("r1"));
    CHECK_MSG(strstr(html[2], head) != NULL, "no '%s'", head);
    snprintf(head, sizeof head, "<img src=\"thumbs/%lld.jpg\"", (long long)id_of("E1"));
    a = strstr(html[2], head);
    snprintf(head, sizeof head, "<img src=\"thumbs/%lld.jpg\"", (long long)id_of("r1"));
    b = strstr(html[2], head);
    CHECK(a && b && a < b && st_count_of(html[2], "<img ") == 2);
    check_neighbours(db, html[3]);
    /* clusters: one section per (dataset, cluster), one tile per sample. */
    int clusters = (int)st_int(db, "SELECT COUNT(DISTINCT cluster) FROM v_curated WHERE method = "
                                   "'cluster'");
    CHECK(clusters >= 1 && st_count_of(html[4], "<section>") == clusters);
    CHECK(st_count_of(html[4], "<img ") ==
          st_int(db, "SELECT COUNT(*) FROM v_curated WHERE method = 'cluster'"));
    for (int p = 0; p < N_PAGES; p++) {
        CHECK_MSG(st_count_of(html[p], "no preview") == 0, "%s: image without preview", pages[p]);
        free(html[p]);
    }
}

/* A rerun writes byte-identical pages; a bounded run shows less. */
static void check_rerun_and_bounds(void)
{
    char *before[N_PAGES];
    for (int p = 0; p < N_PAGES; p++)
        before[p] = st_read_page(out_dir, pages[p]);
    CHECK(report(out_dir, NULL, NULL) == 0);
    for (int p = 0; p < N_PAGES; p++) {
        char *after = st_read_page(out_dir, pages[p]);
        CHECK_MSG(strcmp(before[p], after) == 0, "%s differs on a rerun", pages[p]);
        free(after);
        free(before[p]);
    }
    char small[400];
    snprintf(small, sizeof small, "%s/small", dir);
    char *argv[] = {(char *)tool[T_REPORT], "--db", db_path,   "--out", small, "--groups", "1",
                    "--per-group",          "2",    "--thumb", "64",    NULL};
    CHECK(st_run(argv, NULL) == 0);
    char *dups = st_read_page(small, "duplicates.html");
    char *nb = st_read_page(small, "neighbours.html");
    CHECK(st_count_of(dups, "<section>") == 1 && st_count_of(dups, "<img ") == 2);
    CHECK(st_count_of(nb, "<section>") == 1 && st_count_of(nb, "<img ") == 2);
    check_links(small, "duplicates.html", dups);
    char thumb[600];
    snprintf(thumb, sizeof thumb, "%s/thumbs/%lld.jpg", small, (long long)id_of("p1"));
    CHECK(valid_thumb(thumb, 64));
    free(dups);
    free(nb);
}

/* An image whose member is not in its shard is shown without a thumbnail; links still hold. */
static void check_unreadable(sqlite3 *db)
{
    CHECK(sqlite3_exec(db,
                       "UPDATE images SET member = 'gone-' || member WHERE url LIKE '%/p1d.jpg'",
                       NULL, NULL, NULL) == SQLITE_OK);
    char out[400];
    snprintf(out, sizeof out, "%s/unreadable", dir);
    CHECK(report(out, NULL, NULL) == 0);
    char *dups = st_read_page(out, "duplicates.html");
    char tile[128];
    snprintf(tile, sizeof tile, "<div class=\"none\">no preview</div><figcaption>%lld ",
             (long long)id_of("p1d"));
    CHECK(st_count_of(dups, "no preview") == 1 && strstr(dups, tile) != NULL);
    CHECK(st_count_of(dups, "<img ") == 4);
    check_links(out, "duplicates.html", dups);
    char thumb[600];
    snprintf(thumb, sizeof thumb, "%s/thumbs/%lld.jpg", out, (long long)id_of("p1d"));
    CHECK(access(thumb, F_OK) != 0);
    free(dups);
    CHECK(sqlite3_exec(db,
                       "UPDATE images SET member = substr(member, 6) WHERE url LIKE '%/p1d.jpg'",
                       NULL, NULL, NULL) == SQLITE_OK);
}

/* The sum of the data-count of the bars of svg. */
static int64_t bar_total(const char *svg)
{
    int64_t n = 0;
    for (const char *p = svg; (p = strstr(p, " data-count=\"")); p += 13)
        n += strtoll(p + 13, NULL, 10);
    return n;
}

/* The <svg> ... </svg> after the heading head of html, as a copy. */
static char *svg_after(const char *html, const char *head)
{
    const char *h = strstr(html, head);
    const char *at = h ? strstr(h, "<svg ") : NULL, *end = at ? strstr(at, "</svg>") : NULL;
    return at && end ? strndup(at, (size_t)(end - at) + 7) : strdup("");
}

/* The x pixel of the marker named name in svg; NAN when absent. */
static double marker_x(const char *svg, const char *name)
{
    char key[96];
    snprintf(key, sizeof key, "<line data-marker=\"%s\"", name);
    const char *p = strstr(svg, key);
    return p ? attr(p, "x1") : NAN;
}

static void check_similarities(sqlite3 *db)
{
    /* Pairs of pool images above the dedup threshold: with 12 pool images k = 64 cuts none. */
    float v[N_ITEMS][DIM];
    int pairs = 0;
    for (int i = 0; i < N_ITEMS; i++)
        make_vector(&items[i], v[i]);
    for (int i = 0; i < N_ITEMS; i++)
        for (int j = i + 1; j < N_ITEMS; j++) {
            double d = 0;
            for (int c = 0; c < DIM; c++)
                d += (double)v[i][c] * v[j][c];
            pairs += strcmp(items[i].folder, "pool") == 0 && strcmp(items[j].folder, "pool") == 0 &&
                     d > 0.6;
        }
    CHECK(pairs == 4);
    CHECK(sqlite3_exec(db,
                       "INSERT INTO runs (stage, params, status, counts) VALUES ('calibrate', "
                       "'{\"model\": \"synth\"}', 'ok', '{\"threshold\": 0.7}')",
                       NULL, NULL, NULL) == SQLITE_OK);
    char out[400];
    snprintf(out, sizeof out, "%s/sims", dir);
    CHECK(report(out, NULL, NULL) == 0);
    char *html = st_read_page(out, "similarities.html");
    int64_t run = st_int(db, "SELECT run_id FROM dedup LIMIT 1");
    char line[160];
    snprintf(line, sizeof line, "<p>%d pairs of pool images linked by the dedup run: ", pairs);
    CHECK_MSG(strstr(html, line), "no '%s'", line);
    char *edges = svg_after(html, "<h2>Dedup edges</h2>");
    CHECK(bar_total(edges) == pairs);
    geom g = geometry(edges);
    double ex, ey;
    expected(&g, 0.6, 0, &ex, &ey);
    CHECK(g.x0 < 0.6 && g.x1 == 1 && fabs(marker_x(edges, "dedup threshold") - ex) <= 0.05);
    expected(&g, 0.7, 0, &ex, &ey);
    CHECK(fabs(marker_x(edges, "calibrated threshold") - ex) <= 0.05);
    CHECK(strstr(edges, "calibrated threshold = 0.700") &&
          strstr(edges, "dedup threshold = 0.600"));
    free(edges);
    char *dups = svg_after(html, "<h2>Removed duplicates</h2>");
    CHECK(bar_total(dups) == st_int(db, "SELECT COUNT(*) FROM v_duplicates WHERE reason = "
                                        "'duplicate'"));
    free(dups);
    /* Decontamination: r1's component at 0.5, the eval threshold at 0.45. */
    char *ev = svg_after(html, "<h2>Decontamination</h2>");
    g = geometry(ev);
    const char *bar = strstr(ev, " data-count=\"");
    expected(&g, 0.5, 0, &ex, &ey);
    CHECK(bar_total(ev) == 1 && bar && fabs(attr(bar, "x") - ex) <= 10.0);
    expected(&g, 0.45, 0, &ex, &ey);
    CHECK(fabs(marker_x(ev, "eval threshold") - ex) <= 0.05 &&
          strstr(ev, "eval threshold = 0.450"));
    free(ev);
    free(html);
    /* Without the state file the edges are a note; the rest stays. */
    char state[400], moved[420];
    snprintf(state, sizeof state, "%s.dedup-m1-r%lld.ivf", db_path, (long long)run);
    snprintf(moved, sizeof moved, "%s.off", state);
    CHECK(rename(state, moved) == 0);
    CHECK(report(out, NULL, NULL) == 0);
    html = st_read_page(out, "similarities.html");
    CHECK(strstr(html, "The edges are not available: ") &&
          strstr(html, "<h2>Decontamination</h2>"));
    CHECK(st_count_of(html, "<svg ") == 2);
    free(html);
    CHECK(rename(moved, state) == 0);
}

static void check_errors(sqlite3 *db)
{
    CHECK(report(out_dir, "--model", "nope") == 1);
    CHECK(report("/dev/null/x", NULL, NULL) == 1);
    CHECK(report(out_dir, "--groups", "0") == 2);
    char *no_out[] = {(char *)tool[T_REPORT], "--db", db_path, NULL};
    CHECK(st_run(no_out, NULL) == 2);
    char help_path[400];
    snprintf(help_path, sizeof help_path, "%s/help.txt", dir);
    char *help[] = {(char *)tool[T_REPORT], "--help", NULL};
    CHECK(st_run(help, help_path) == 0);
    char *text = check_slurp(help_path, NULL);
    CHECK(text && strstr(text, "usage: lvd-report --db DB --out DIR"));
    free(text);
    CHECK(sqlite3_exec(db,
                       "INSERT INTO models (id, name, arch, dim, features) VALUES (2, 'other', "
                       "'external', 16, 'external')",
                       NULL, NULL, NULL) == SQLITE_OK);
    CHECK(report(out_dir, NULL, NULL) == 1);
    CHECK(report(out_dir, "--model", "synth") == 0);
    CHECK(sqlite3_exec(db, "DELETE FROM models WHERE id = 2", NULL, NULL, NULL) == SQLITE_OK);
}

/* Runs argv in its own process group with stdout to out_path and stderr to /dev/null, killing
 * the group after CHROMIUM_TIMEOUT_S; returns the exit status, or -1. */
static int run_bounded(char *const argv[], const char *out_path)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int null = open("/dev/null", O_WRONLY);
        if (fd >= 0)
            dup2(fd, 1);
        if (null >= 0)
            dup2(null, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    if (pid < 0)
        return -1;
    setpgid(pid, pid);
    int status;
    for (int waited_ms = 0;; waited_ms += 100) {
        pid_t got = waitpid(pid, &status, WNOHANG);
        if (got == pid)
            break;
        if (got < 0 || waited_ms >= CHROMIUM_TIMEOUT_S * 1000) {
            fprintf(stderr, "chromium did not finish in %d s\n", CHROMIUM_TIMEOUT_S);
            kill(-pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        nanosleep(&(struct timespec){0, 100000000}, NULL);
    }
    kill(-pid, SIGKILL); /* helpers left behind */
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Renders page with chromium: mode "--dump-dom" (DOM to out) or "--screenshot=" out. */
static int chromium(const char *exe, const char *page, const char *mode, const char *out)
{
    char profile[400], url[600], shot[600], stdout_path[600];
    snprintf(profile, sizeof profile, "%s/profile-XXXXXX", dir);
    if (!mkdtemp(profile))
        return -1;
    char user_dir[450];
    snprintf(user_dir, sizeof user_dir, "--user-data-dir=%s", profile);
    snprintf(url, sizeof url, "file://%s/%s", out_dir, page);
    snprintf(shot, sizeof shot, "--screenshot=%s", out);
    int dump = strcmp(mode, "--dump-dom") == 0;
    snprintf(stdout_path, sizeof stdout_path, "%s", dump ? out : "/dev/null");
    char *argv[] = {(char *)exe,
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--hide-scrollbars",
                    "--window-size=1000,700",
                    user_dir,
                    dump ? "--dump-dom" : shot,
                    url,
                    NULL};
    return run_bounded(argv, stdout_path);
}

/* Distinct colours of a screenshot (5 bits a channel), or -1 when it is no PNG. */
static int screenshot_colours(const char *path)
{
    size_t len = 0;
    uint8_t *data = (uint8_t *)check_slurp(path, &len);
    lvd_decode_opts o;
    memset(&o, 0, sizeof o);
    o.max_pixels = 1 << 24;
    o.alpha = LVD_ALPHA_ON_WHITE;
    lvd_image img;
    lvd_error err;
    if (!data || lvd_image_decode(data, len, &o, &img, &err)) {
        free(data);
        return -1;
    }
    static unsigned char seen[1 << 15];
    memset(seen, 0, sizeof seen);
    int n = 0;
    for (int64_t i = 0; i < (int64_t)img.width * img.height; i++) {
        const uint8_t *p = img.rgb + i * 3;
        int c = (p[0] >> 3) << 10 | (p[1] >> 3) << 5 | p[2] >> 3;
        n += !seen[c];
        seen[c] = 1;
    }
    lvd_image_free(&img);
    free(data);
    return n;
}

/* The chromium executable on PATH, or NULL. */
/* The demo's summary (curate/stages/report_summary.h): absent from the index page until a
 * 'demo-summary' run is recorded; then the last ok one is drawn as tables, escaped. */
static void check_summary(sqlite3 *db)
{
    char *html = st_read_page(out_dir, "index.html");
    CHECK(html && !strstr(html, "Demo summary"));
    free(html);
    CHECK(sqlite3_exec(
              db,
              "INSERT INTO runs (stage, params, status, counts) VALUES ('demo-summary', '{}', "
              "'ok', '{\"model\": \"old\", \"pool\": {\"removed_dedup\": 99}}'), ('demo-summary', "
              "'{}', 'ok', json('{\"model\": \"m<1>\", \"pool\": {\"removed_fetch_exact\": 3, "
              "\"removed_dedup\": 17, \"removed_decontamination\": 2, \"kept_not_retrieved\": "
              "500, \"kept_retrieved\": 250, \"not_processed\": 0}, \"curated\": {\"all\": 400, "
              "\"cluster\": 120, \"knn\": 300}, \"precision\": [{\"method\": \"knn\", "
              "\"seed_class\": \"bag\", \"seeds\": 50, \"retrieved\": 180, \"hits\": 171, "
              "\"precision\": 0.95, \"chance\": 0.0762, \"vs_chance\": 12.47, \"kept_share\": "
              "0.08}, {\"method\": \"cluster\", \"seed_class\": \"any seed class\", \"seeds\": "
              "null, \"retrieved\": 120, \"hits\": 60, \"precision\": 0.5, \"chance\": 0.25, "
              "\"vs_chance\": 2.0, \"kept_share\": 0.24}], \"knn\": [{\"role\": \"first\", "
              "\"model\": \"m<1>\", \"k\": 10, \"top1\": 61.23, \"top5\": 90.0, \"n_train\": "
              "1000, \"n_test\": 500}, {\"role\": \"curated\", \"model\": \"c\", \"k\": 20, "
              "\"top1\": 55.0, \"top5\": 88.44, \"n_train\": 1000, \"n_test\": 500}]}')), "
              "('demo-summary', '{}', 'failed', '{\"model\": \"failed\"}')",
              NULL, NULL, NULL) == SQLITE_OK);
    char out[400];
    snprintf(out, sizeof out, "%s/summary", dir);
    CHECK(report(out, NULL, NULL) == 0);
    html = st_read_page(out, "index.html");
    char *at = html ? strstr(html, "<h2>Demo summary</h2>") : NULL;
    char *galleries = html ? strstr(html, "<h2>Galleries</h2>") : NULL;
    CHECK_MSG(at && galleries && at < galleries, "no summary before the galleries");
    if (!at || !galleries || galleries < at) {
        free(html);
        return;
    }
    *galleries = '\0'; /* at: the summary section alone */
    char lead[120];
    snprintf(lead, sizeof lead,
             "<p>run %lld of pipelines/demo-summary.sh, curated with model "
             "m&lt;1&gt;.",
             (long long)st_int(db, "SELECT id FROM runs WHERE stage = "
                                   "'demo-summary' AND status = 'ok' ORDER BY id DESC LIMIT 1"));
    const char *cells[] = {
        lead,
        "<h3>k-NN classification per model (lvd-eval knn, bank -&gt; eval): top-1 / top-5 %</h3>",
        "<tr><td>removed at fetch: exact copy</td><td>3</td></tr>",
        "<tr><td>removed by dedup: near-duplicate</td><td>17</td></tr>",
        "<tr><td>removed by decontamination</td><td>2</td></tr>",
        "<tr><td>kept, not retrieved</td><td>500</td></tr>",
        "<tr><td>kept, retrieved (curated)</td><td>250</td></tr>",
        "<tr><td>cluster</td><td>120</td></tr>\n<tr><td>knn</td><td>300</td></tr>\n"
        "<tr><td>all</td><td>400</td></tr>",
        "<tr><td>knn</td><td>bag</td><td>50</td><td>180</td><td>171</td><td>0.950</td>"
        "<td>0.076</td><td>12.5x</td><td>0.080</td></tr>",
        "<tr><td>cluster</td><td>any seed class</td><td></td><td>120</td><td>60</td>"
        "<td>0.500</td><td>0.250</td><td>2.0x</td><td>0.240</td></tr>",
        "<tr><td>first</td><td>m&lt;1&gt;</td><td>10</td><td>61.2</td><td>90.0</td><td>1000</td>"
        "<td>500</td></tr>",
        "<tr><td>curated</td><td>c</td><td>20</td><td>55.0</td><td>88.4</td>",
    };
    for (size_t i = 0; i < sizeof cells / sizeof *cells; i++)
        CHECK_MSG(strstr(at, cells[i]), "no '%s'", cells[i]);
    /* A zero 'not processed' row is left out, as demo-summary.sh prints it; older and failed
     * summaries are not shown. */
    CHECK(!strstr(at, "not processed by dedup") && !strstr(at, "old") && !strstr(at, "failed") &&
          !strstr(at, "<td>99</td>"));
    free(html);
}

static const char *find_chromium(void)
{
    static char path[1024];
    const char *env = getenv("PATH");
    for (const char *p = env ? env : "/usr/bin"; *p;) {
        const char *end = strchr(p, ':');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        snprintf(path, sizeof path, "%.*s/chromium", (int)n, p);
        if (n && access(path, X_OK) == 0)
            return path;
        p += n + (end ? 1 : 0);
    }
    return NULL;
}

static void test_browser(const char *exe)
{
    char dom[400], shot[400];
    snprintf(dom, sizeof dom, "%s/dom.html", dir);
    for (int p = 0; p < N_PAGES; p++) {
        CHECK_MSG(chromium(exe, pages[p], "--dump-dom", dom) == 0, "%s: chromium failed", pages[p]);
        char *html = st_read_page(out_dir, pages[p]), *got = check_slurp(dom, NULL);
        CHECK_MSG(got && strstr(got, "<h1>") && strstr(got, "<nav>"), "%s: no DOM", pages[p]);
        CHECK_MSG(got && st_count_of(got, "<img src=\"thumbs/") == st_count_of(html, "<img src=\""),
                  "%s: images missing from the DOM", pages[p]);
        CHECK_MSG(got && st_count_of(got, "<svg ") == st_count_of(html, "<svg ") &&
                      st_count_of(got, "<rect data-bin=") == st_count_of(html, "<rect data-bin="),
                  "%s: charts missing from the DOM", pages[p]);
        free(got);
        free(html);
    }
    /* Thumbnails are noise of many colours; text and borders are a few dozen. */
    snprintf(shot, sizeof shot, "%s/duplicates.png", dir);
    CHECK(chromium(exe, "duplicates.html", "--screenshot", shot) == 0);
    int with = screenshot_colours(shot);
    char thumbs[400], hidden[400];
    snprintf(thumbs, sizeof thumbs, "%s/thumbs", out_dir);
    snprintf(hidden, sizeof hidden, "%s/thumbs.off", out_dir);
    CHECK(rename(thumbs, hidden) == 0);
    snprintf(shot, sizeof shot, "%s/duplicates-bare.png", dir);
    CHECK(chromium(exe, "duplicates.html", "--screenshot", shot) == 0);
    int without = screenshot_colours(shot);
    CHECK(rename(hidden, thumbs) == 0);
    fprintf(stderr, "screenshot colours: %d with thumbnails, %d without\n", with, without);
    CHECK_MSG(with > 1000 && without >= 1 && without < 500,
              "screenshot colours %d with thumbnails, %d without", with, without);
}

int main(int argc, char **argv)
{
    int browser = argc > 1 && strcmp(argv[1], "--browser") == 0;
    if (argc != 1 + browser + T_COUNT) {
        fprintf(stderr, "usage: test_report [--browser] LVD-FETCH LVD-DEDUP LVD-RETRIEVE "
                        "LVD-REPORT\n");
        return 2;
    }
    for (int t = 0; t < T_COUNT; t++)
        tool[t] = argv[1 + browser + t];
    const char *exe = browser ? find_chromium() : NULL;
    if (browser && !exe) {
        printf("chromium is not installed: skipping the browser test\n");
        return 77;
    }
    snprintf(dir, sizeof dir, "/tmp/lvd-report-XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    snprintf(db_path, sizeof db_path, "%s/m.db", dir);
    snprintf(out_dir, sizeof out_dir, "%s/report", dir);
    build_manifest();
    CHECK(report(out_dir, NULL, NULL) == 0);
    sqlite3 *db;
    CHECK(sqlite3_open(db_path, &db) == SQLITE_OK);
    if (browser) {
        test_browser(exe);
    } else {
        check_thumbs(db);
        check_pages(db);
        check_rerun_and_bounds();
        check_unreadable(db);
        check_errors(db);
        check_similarities(db);
        check_summary(db);
    }
    sqlite3_close(db);
    st_remove_or_keep(dir);
    return check_finish();
}
