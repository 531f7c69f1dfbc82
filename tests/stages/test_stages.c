/* The index, dedup, retrieval and export stages on embeddings of known structure (d = 64):
 * pool images are basis-vector combinations with planted near-identical copies (fixed-seed
 * noise), a chain linked only through a bridge image, eval images near one member of a
 * component, and seed images near known pool images. Images come from lvd-fetch over folders
 * of generated JPEGs; embeddings are written as .npy files and recorded as the embed stage
 * does. Every expected component, kept row, retrieval and cluster pick is checked through SQL on
 * the views. Usage: test_stages LVD-FETCH LVD-INDEX LVD-QUERY LVD-DEDUP LVD-RETRIEVE LVD-EXPORT
 * LVD-REPORT LVD-CALIBRATE */
#include <archive.h>
#include <archive_entry.h>
#include <math.h>

#include "tests/stages/stages_test.h"

#define DIM 64

enum { T_FETCH, T_INDEX, T_QUERY, T_DEDUP, T_RETRIEVE, T_EXPORT, T_REPORT, T_CALIBRATE, T_COUNT };
static const char *tool[T_COUNT];
static char dir[256], db_path[320];

typedef st_item item;

static item items[] = {
    /* pool, first batch: cluster A (e0), B (e1), C (e2) */
    {"a1.jpg", "pool1", {0, 8, -1}, {1, 0.9f}, 0},
    {"a1d.jpg", "pool1", {0, 8, -1}, {1, 0.9f}, 11}, /* copy of a1 */
    {"a2.jpg", "pool1", {0, 9, -1}, {1, 1.0f}, 0},
    {"a3.jpg", "pool1", {0, 10, -1}, {1, 1.1f}, 0},
    {"a4.jpg", "pool1", {0, 11, -1}, {1, 1.2f}, 0},
    {"b1.jpg", "pool1", {1, 12, -1}, {1, 1}, 0},
    {"b2.jpg", "pool1", {1, 13, -1}, {1, 1}, 0},
    {"b3.jpg", "pool1", {1, 14, -1}, {1, 1}, 0},
    {"b4.jpg", "pool1", {1, 12, 13}, {1, 1, 1}, 0}, /* bridge: b1 - b4 - b2 */
    {"b6.jpg", "pool1", {1, 21, -1}, {1, 1}, 0},
    {"b7.jpg", "pool1", {1, 22, -1}, {1, 1}, 0},
    {"b8.jpg", "pool1", {1, 23, -1}, {1, 1}, 0},
    {"c1.jpg", "pool1", {2, 15, -1}, {1, 1}, 0},
    {"c2.jpg", "pool1", {2, 16, -1}, {1, 1}, 0},
    {"c3.jpg", "pool1", {2, 17, -1}, {1, 1}, 0},
    {"c4.jpg", "pool1", {2, 18, -1}, {1, 1}, 0},
    /* pool, second batch (incremental run) */
    {"a2d.jpg", "pool2", {0, 9, -1}, {1, 1.0f}, 12},
    {"b3d.jpg", "pool2", {1, 14, -1}, {1, 1}, 13},
    {"c1d.jpg", "pool2", {2, 15, -1}, {1, 1}, 14},
    {"c5.jpg", "pool2", {2, 19, -1}, {1, 1}, 0},
    /* seeds: four near cluster A, one near cluster C */
    {"sA1.jpg", "seed", {0, 8, 9}, {1, 0.6f, 0.3f}, 0},
    {"sA2.jpg", "seed", {0, 9, 10}, {1, 0.6f, 0.3f}, 0},
    {"sA3.jpg", "seed", {0, 10, 11}, {1, 0.6f, 0.3f}, 0},
    {"sA4.jpg", "seed", {0, 11, 8}, {1, 0.6f, 0.3f}, 0},
    {"sC1.jpg", "seed", {2, 16, 17}, {1, 0.6f, 0.3f}, 0},
    /* a second seed source, added last (--seed-source) */
    {"sB1.jpg", "seed2", {1, 21, 22}, {1, 0.6f, 0.3f}, 0},
    /* eval: E1 at 0.5 to b1 (above 0.45), E2 at 0.39 to c1 (below) */
    {"E1.jpg", "eval", {12, 60, -1}, {1, 1}, 0},
    {"E2.jpg", "eval", {15, 61, -1}, {1, 1.5f}, 0},
};
#define N_ITEMS ((int)(sizeof items / sizeof items[0]))

/* Per item: its image id once fetched, and its unit embedding. */
static int64_t item_id[N_ITEMS];
static float item_v[N_ITEMS][DIM];

static int find(const char *name)
{
    return st_item_find(items, N_ITEMS, name);
}

static int64_t id_of(const char *name)
{
    return item_id[find(name)];
}

static const float *vec(const char *name)
{
    return item_v[find(name)];
}

static double dot(const float *a, const float *b)
{
    double s = 0;
    for (int j = 0; j < DIM; j++)
        s += (double)a[j] * b[j];
    return s;
}

static int fetch(const char *source, const char *role, const char *folder)
{
    return st_fetch(tool[T_FETCH], dir, db_path, source, role, folder, "--parallel", "4");
}

/* Records the embeddings of every item of the folders (one .npy file per call). */
static void add_embeddings(sqlite3 *db, const char *f1, const char *f2, const char *npy)
{
    float rows[N_ITEMS * DIM];
    int64_t ids[N_ITEMS];
    int n = 0;
    for (int i = 0; i < N_ITEMS; i++) {
        if (strcmp(items[i].folder, f1) != 0 && (!f2 || strcmp(items[i].folder, f2) != 0))
            continue;
        item_id[i] = st_image_id(db, items[i].name);
        CHECK_MSG(item_id[i] > 0, "%s has no image row", items[i].name);
        memcpy(rows + n * DIM, item_v[i], sizeof item_v[i]);
        ids[n++] = item_id[i];
    }
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, npy);
    CHECK(st_add_embeddings(db, 1, path, rows, ids, n, DIM) == 0);
}

static int dedup(const char *extra)
{
    char *argv[] = {(char *)tool[T_DEDUP], "--db", db_path, "--model", "synth",
                    (char *)extra,         NULL};
    return st_run(argv, NULL);
}

/* The v_duplicates row of an image. */
static void check_dup(sqlite3 *db, const char *name, const char *component, int kept,
                      const char *reason, double sim)
{
    int64_t id = id_of(name);
    CHECK_MSG(st_int(db, "SELECT component FROM v_duplicates WHERE image_id = %lld",
                     (long long)id) == id_of(component),
              "%s: component", name);
    CHECK_MSG(st_int(db, "SELECT kept FROM v_duplicates WHERE image_id = %lld", (long long)id) ==
                  kept,
              "%s: kept", name);
    CHECK_MSG(st_int(db,
                     "SELECT COUNT(*) FROM v_duplicates WHERE image_id = %lld AND reason IS "
                     "%s%s%s",
                     (long long)id, reason ? "'" : "", reason ? reason : "NULL",
                     reason ? "'" : "") == 1,
              "%s: reason %s", name, reason ? reason : "NULL");
    double got =
        st_double(db, "SELECT similarity FROM v_duplicates WHERE image_id = %lld", (long long)id);
    if (sim < -1)
        CHECK_MSG(got == -9.0, "%s: similarity %g, want NULL", name, got);
    else
        CHECK_MSG(fabs(got - sim) < 1e-4, "%s: similarity %g, want %g", name, got, sim);
}

static void check_first_batch(sqlite3 *db)
{
    CHECK(st_int(db, "SELECT COUNT(*) FROM v_duplicates WHERE model = 'synth'") == 16);
    CHECK(st_int(db, "SELECT COUNT(*) FROM v_duplicates WHERE kept = 1") == 12);
    check_dup(db, "a1", "a1", 1, NULL, -9);
    check_dup(db, "a1d", "a1", 0, "duplicate", dot(vec("a1"), vec("a1d")));
    const char *singles[] = {"a2", "a3", "a4", "b3", "b6", "b7", "b8", "c1", "c2", "c3", "c4"};
    for (size_t i = 0; i < sizeof singles / sizeof *singles; i++)
        check_dup(db, singles[i], singles[i], 1, NULL, -9);
    /* The chain b1 - b4 - b2 is one component; E1 (0.5 to b1) removes it whole. */
    double e1 = dot(vec("b1"), vec("E1"));
    CHECK(fabs(e1 - 0.5) < 1e-6);
    check_dup(db, "b1", "b1", 0, "eval", e1);
    check_dup(db, "b2", "b1", 0, "eval", e1);
    check_dup(db, "b4", "b1", 0, "eval", e1);
}

static void check_second_batch(sqlite3 *db)
{
    CHECK(st_int(db, "SELECT COUNT(*) FROM v_duplicates") == 20);
    CHECK(st_int(db, "SELECT COUNT(*) FROM v_duplicates WHERE kept = 1") == 13);
    check_dup(db, "a2d", "a2", 0, "duplicate", dot(vec("a2"), vec("a2d")));
    check_dup(db, "b3d", "b3", 0, "duplicate", dot(vec("b3"), vec("b3d")));
    check_dup(db, "c1d", "c1", 0, "duplicate", dot(vec("c1"), vec("c1d")));
    check_dup(db, "c5", "c5", 1, NULL, -9);
    check_dup(db, "a1d", "a1", 0, "duplicate", dot(vec("a1"), vec("a1d")));
    check_dup(db, "b4", "b1", 0, "eval", dot(vec("b1"), vec("E1")));
}

static const char *const dup_dump_sql =
    "SELECT image_id, component, kept, reason, printf('%.6f', similarity) FROM v_duplicates "
    "ORDER BY image_id";

static void test_dedup(sqlite3 *db)
{
    CHECK(dedup(NULL) == 0);
    check_first_batch(db);
    CHECK(st_int(db, "SELECT json_extract(counts, '$.new') FROM v_runs WHERE stage = 'dedup' "
                     "ORDER BY id DESC LIMIT 1") == 16);
    /* New pool images: only they are searched, the result equals a full rerun. */
    CHECK(fetch("web", "pool", "pool2") == 0);
    add_embeddings(db, "pool2", NULL, "emb2.npy");
    CHECK(dedup(NULL) == 0);
    CHECK(st_int(db, "SELECT json_extract(counts, '$.new') FROM v_runs WHERE stage = 'dedup' "
                     "ORDER BY id DESC LIMIT 1") == 4);
    check_second_batch(db);
    char *incremental = st_dump(db, dup_dump_sql);
    CHECK(dedup("--full") == 0);
    CHECK(st_int(db, "SELECT json_extract(counts, '$.new') FROM v_runs WHERE stage = 'dedup' "
                     "ORDER BY id DESC LIMIT 1") == 20);
    char *full = st_dump(db, dup_dump_sql);
    CHECK_MSG(strcmp(incremental, full) == 0, "incremental:\n%s\nfull:\n%s", incremental, full);
    free(incremental);
    free(full);
    CHECK(st_int(db, "SELECT COUNT(*) FROM v_runs WHERE stage = 'dedup' AND status = 'ok'") == 3);
}

static int retrieve(char *const extra[])
{
    char *argv[24] = {(char *)tool[T_RETRIEVE], "--db", db_path, "--model", "synth"};
    int n = 5;
    for (int i = 0; extra[i]; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    return st_run(argv, NULL);
}

static void check_knn(sqlite3 *db, const char *seed, const char *first, const char *second)
{
    const char *want[2] = {first, second};
    for (int r = 0; r < 2; r++) {
        int64_t got = st_int(db,
                             "SELECT image_id FROM v_curated WHERE method = 'knn' AND "
                             "seed_image_id = %lld AND rank = %d",
                             (long long)id_of(seed), r + 1);
        CHECK_MSG(got == id_of(want[r]), "%s rank %d: image %lld, want %s", seed, r + 1,
                  (long long)got, want[r]);
        double sim = st_double(db,
                               "SELECT similarity FROM v_curated WHERE method = 'knn' AND "
                               "seed_image_id = %lld AND rank = %d",
                               (long long)id_of(seed), r + 1);
        CHECK(fabs(sim - dot(vec(seed), vec(want[r]))) < 1e-4);
    }
}

static void test_knn(sqlite3 *db)
{
    char *args[] = {"--per-seed", "2", NULL};
    CHECK(retrieve(args) == 0);
    CHECK(st_int(db, "SELECT COUNT(*) FROM v_curated WHERE method = 'seed'") == 5);
    CHECK(st_int(db, "SELECT COUNT(*) FROM v_curated WHERE method = 'seed' AND seed_image_id = "
                     "image_id AND dataset = 'seedset'") == 5);
    CHECK(st_int(db, "SELECT COUNT(*) FROM v_curated WHERE method = 'knn'") == 10);
    CHECK(st_int(db, "SELECT COUNT(*) FROM v_curated WHERE method = 'cluster'") == 0);
    check_knn(db, "sA1", "a1", "a2");
    check_knn(db, "sA2", "a2", "a3");
    check_knn(db, "sA3", "a3", "a4");
    check_knn(db, "sA4", "a4", "a1");
    check_knn(db, "sC1", "c2", "c3");
    CHECK(st_int(db, "SELECT json_extract(counts, '$.collisions') FROM v_runs WHERE stage = "
                     "'retrieve' ORDER BY id DESC LIMIT 1") == 4);
    CHECK(st_int(db, "SELECT COUNT(*) FROM (SELECT image_id FROM v_curated WHERE method = 'knn' "
                     "GROUP BY image_id HAVING COUNT(*) > 1)") == 4);
}

/* Cosine of pool image name to the normalized mean of cluster A's kept images. */
static double centroid_sim(const char *name)
{
    const char *members[] = {"a1", "a2", "a3", "a4"};
    double c[DIM] = {0}, s = 0;
    for (int m = 0; m < 4; m++)
        for (int j = 0; j < DIM; j++)
            c[j] += vec(members[m])[j];
    for (int j = 0; j < DIM; j++)
        s += c[j] * c[j];
    double d = 0;
    for (int j = 0; j < DIM; j++)
        d += c[j] / sqrt(s) * vec(name)[j];
    return d;
}

static void test_clusters(sqlite3 *db)
{
    /* Cluster A holds 4 seeds (> 3): its 2 images nearest the centroid; C holds 1: nothing.
     * Single k-means runs from seeds 1..10 split or merge the clusters in half of the cases;
     * the best of 10 runs is the true partition. */
    char *args[] = {"--clusters", "3", "--per-cluster", "2", "--seed", "1", "--redo", "10", NULL};
    CHECK(retrieve(args) == 0);
    CHECK(st_int(db, "SELECT COUNT(*) FROM v_curated WHERE method = 'knn'") == 0);
    CHECK(st_int(db, "SELECT COUNT(*) FROM v_curated WHERE method = 'cluster'") == 2);
    const char *want[2] = {"a1", "a2"};
    for (int r = 0; r < 2; r++) {
        CHECK(st_int(db,
                     "SELECT image_id FROM v_curated WHERE method = 'cluster' AND rank = %d "
                     "AND dataset = 'seedset' AND seed_image_id IS NULL",
                     r + 1) == id_of(want[r]));
        double sim = st_double(db,
                               "SELECT similarity FROM v_curated WHERE method = 'cluster' "
                               "AND rank = %d",
                               r + 1);
        CHECK_MSG(fabs(sim - centroid_sim(want[r])) < 1e-3, "rank %d: %g, want %g", r + 1, sim,
                  centroid_sim(want[r]));
    }
    CHECK(st_int(db, "SELECT COUNT(DISTINCT cluster) FROM v_curated WHERE method = 'cluster'") ==
          1);
    char *capped[] = {"--clusters", "3",  "--per-cluster", "2", "--seed", "1",
                      "--redo",     "10", "--cap",         "1", NULL};
    CHECK(retrieve(capped) == 0);
    CHECK(st_int(db, "SELECT COUNT(*) FROM v_curated WHERE method = 'cluster'") == 1);
    CHECK(st_int(db, "SELECT image_id FROM v_curated WHERE method = 'cluster'") == id_of("a1"));
    char *strict[] = {"--clusters", "3", "--seed", "1", "--redo", "10", "--min-seeds", "4", NULL};
    CHECK(retrieve(strict) == 0);
    CHECK(st_int(db, "SELECT COUNT(*) FROM v_curated WHERE method = 'cluster'") == 0);
    char *too_many[] = {"--clusters", "14", NULL};
    CHECK(retrieve(too_many) == 1);
}

static int query(const char *id, const char *source, const char *out)
{
    char *argv[] = {(char *)tool[T_QUERY],
                    "--db",
                    db_path,
                    "--model",
                    "synth",
                    "--id",
                    (char *)id,
                    "-k",
                    "3",
                    source ? "--source" : NULL,
                    (char *)source,
                    NULL};
    return st_run(argv, out);
}

/* The ids of the TSV lines of a lvd-query answer (after the header). */
static int read_ids(const char *path, int64_t *ids, double *sims, int max)
{
    FILE *f = fopen(path, "r");
    char line[1024];
    int n = 0;
    if (!f)
        return -1;
    if (fgets(line, sizeof line, f) && strcmp(line, "id\turl\tsimilarity\n") == 0)
        while (n < max && fgets(line, sizeof line, f)) {
            char *tab = strrchr(line, '\t');
            ids[n] = strtoll(line, NULL, 10);
            sims[n++] = tab ? strtod(tab + 1, NULL) : -9;
        }
    fclose(f);
    return n;
}

static void test_index(sqlite3 *db)
{
    char *argv[] = {(char *)tool[T_INDEX], "--db", db_path, "--model", "synth", NULL};
    CHECK(st_run(argv, NULL) == 0);
    /* Every image but sB1, which comes later. */
    CHECK(st_int(db, "SELECT rows FROM v_indexes WHERE model = 'synth' AND source IS NULL") ==
          N_ITEMS - 1);
    CHECK(st_int(db, "SELECT COUNT(*) FROM index_rows r JOIN v_indexes x ON x.id = r.index_id "
                     "WHERE x.source IS NULL") == N_ITEMS - 1);
    char out[512], id[32];
    snprintf(out, sizeof out, "%s/query.tsv", dir);
    snprintf(id, sizeof id, "%lld", (long long)id_of("a1"));
    CHECK(query(id, NULL, out) == 0);
    int64_t ids[4] = {0};
    double sims[4] = {0};
    /* Brute force: a1d (copy), sA1, sA4 are a1's three nearest among all images. */
    const char *want[3] = {"a1d", "sA1", "sA4"};
    CHECK(read_ids(out, ids, sims, 4) == 3);
    for (int r = 0; r < 3; r++) {
        CHECK_MSG(ids[r] == id_of(want[r]), "neighbour %d: %lld, want %s", r, (long long)ids[r],
                  want[r]);
        CHECK(fabs(sims[r] - dot(vec("a1"), vec(want[r]))) < 1e-4);
    }
    /* An index over the pool only, with a given factory; the seeds are not in it. */
    char *pool_argv[] = {
        (char *)tool[T_INDEX], "--db",      db_path, "--model", "synth", "--source", "web",
        "--factory",           "IVF2,Flat", NULL};
    CHECK(st_run(pool_argv, NULL) == 0);
    CHECK(st_int(db, "SELECT rows FROM v_indexes WHERE source = 'web' AND factory = 'IVF2,Flat'") ==
          20);
    CHECK(query(id, "web", out) == 0);
    CHECK(read_ids(out, ids, sims, 4) == 3);
    CHECK(ids[0] == id_of("a1d"));
    /* Reindexing replaces the record and its file. */
    CHECK(st_run(argv, NULL) == 0);
    CHECK(st_int(db, "SELECT COUNT(*) FROM v_indexes") == 2);
    char *image_argv[] = {
        (char *)tool[T_QUERY], "--db", db_path, "--model", "synth", "--image", out, NULL};
    CHECK(st_run(image_argv, NULL) == 1); /* external model: no weights */
}

/* Reads every member of the export shards into names (one "<name>:<size>" per member). */
static int read_export(const char *out_dir, char names[][64], size_t *sizes, int max)
{
    int n = 0;
    for (int s = 0;; s++) {
        char path[512];
        snprintf(path, sizeof path, "%.400s/curated-%06d.tar", out_dir, s);
        if (access(path, F_OK) != 0)
            return n;
        struct archive *a = archive_read_new();
        archive_read_support_format_tar(a);
        if (archive_read_open_filename(a, path, 1 << 16) != ARCHIVE_OK)
            return -1;
        struct archive_entry *e;
        while (archive_read_next_header(a, &e) == ARCHIVE_OK && n < max) {
            snprintf(names[n], 64, "%s", archive_entry_pathname(e));
            sizes[n++] = (size_t)archive_entry_size(e);
        }
        archive_read_free(a);
    }
}

static void test_export(sqlite3 *db)
{
    char *args[] = {"--per-seed", "2",      "--clusters", "3", "--per-cluster", "2", "--seed",
                    "1",          "--redo", "10",         NULL};
    CHECK(retrieve(args) == 0);
    /* 5 seeds, knn a1..a4, c2, c3; cluster picks a1, a2 (already there): 11 images. */
    CHECK(st_int(db, "SELECT COUNT(DISTINCT image_id) FROM v_curated") == 11);
    char out_dir[512];
    snprintf(out_dir, sizeof out_dir, "%s/export", dir);
    char *argv[] = {(char *)tool[T_EXPORT], "--db", db_path, "--out", out_dir, NULL};
    CHECK(st_run(argv, NULL) == 0);
    char names[64][64];
    size_t sizes[64];
    int n = read_export(out_dir, names, sizes, 64);
    CHECK_MSG(n == 22, "%d members", n);
    const char *curated[] = {"sA1", "sA2", "sA3", "sA4", "sC1", "a1", "a2", "a3", "a4", "c2", "c3"};
    for (int i = 0; i < 11; i++) {
        char jpg[64], json[64], src[512];
        snprintf(jpg, sizeof jpg, "%010lld.jpg", (long long)id_of(curated[i]));
        snprintf(json, sizeof json, "%010lld.json", (long long)id_of(curated[i]));
        const item *it = &items[find(curated[i])];
        snprintf(src, sizeof src, "%s/%s/%s", dir, it->folder, it->name);
        struct stat sb;
        int found_jpg = 0, found_json = 0;
        for (int m = 0; m < n; m++) {
            found_jpg +=
                strcmp(names[m], jpg) == 0 && stat(src, &sb) == 0 && (off_t)sizes[m] == sb.st_size;
            found_json += strcmp(names[m], json) == 0;
        }
        CHECK_MSG(found_jpg == 1 && found_json == 1, "%s: %s / %s", curated[i], jpg, json);
    }
    char manifest[600];
    snprintf(manifest, sizeof manifest, "%s/manifest.jsonl", out_dir);
    FILE *f = fopen(manifest, "r");
    int lines = 0, knn_a1 = 0;
    char line[2048];
    while (f && fgets(line, sizeof line, f)) {
        lines++;
        char key[64];
        snprintf(key, sizeof key, "\"key\":\"%010lld\"", (long long)id_of("a1"));
        knn_a1 += strstr(line, key) && strstr(line, "\"method\":\"knn\"") &&
                  strstr(line, "\"dataset\":\"seedset\"");
    }
    if (f)
        fclose(f);
    CHECK_MSG(lines == 5 + 10 + 2, "%d manifest lines", lines);
    CHECK(knn_a1 == 2);
}

/* Reads dir/report/name into html (NUL-terminated; empty when absent). */
static void read_page(const char *name, char *html, size_t cap)
{
    char path[512];
    snprintf(path, sizeof path, "%s/report/%s", dir, name);
    FILE *f = fopen(path, "r");
    size_t len = f ? fread(html, 1, cap - 1, f) : 0;
    html[len] = 0;
    if (f)
        fclose(f);
}

/* The galleries: 4 duplicate pairs (a1, a2, b3, c1 in component order), then the chain b1 - b4
 * - b2 removed by E1 (shown with E1); every image with a thumbnail (tests/stages/test_report.c
 * checks the pages in depth). */
static void test_report(void)
{
    char out[512];
    snprintf(out, sizeof out, "%s/report", dir);
    char *argv[] = {
        (char *)tool[T_REPORT], "--db", db_path, "--model", "synth", "--out", out, NULL};
    CHECK(st_run(argv, NULL) == 0);
    static char dups[1 << 20], eval[1 << 20];
    read_page("duplicates.html", dups, sizeof dups);
    read_page("decontaminated.html", eval, sizeof eval);
    CHECK(st_count_of(dups, "<section>") == 4);
    CHECK(st_count_of(eval, "<section>") == 1);
    CHECK(st_count_of(dups, "<img src=\"thumbs/") == 8);
    CHECK(st_count_of(eval, "<img src=\"thumbs/") == 4);
    CHECK(st_count_of(dups, "no preview") + st_count_of(eval, "no preview") == 0);
    const char *order[] = {"a1", "a2", "b3", "c1", "b1"};
    const char *prev = dups;
    for (int i = 0; i < 5; i++) {
        char head[96];
        snprintf(head, sizeof head, "<h3>component %lld: %d images", (long long)id_of(order[i]),
                 i < 4 ? 2 : 3);
        const char *at = strstr(i < 4 ? prev : eval, head);
        CHECK_MSG(at != NULL, "%s missing or out of order", head);
        prev = at ? at : prev;
    }
    char *no_out[] = {(char *)tool[T_REPORT], "--db", db_path, "--model", "synth", NULL};
    CHECK(st_run(no_out, NULL) == 2);
}

/* A run for one seed source replaces only that source's rows. */
static void test_seed_source(sqlite3 *db)
{
    CHECK(fetch("seed2", "seed", "seed2") == 0);
    add_embeddings(db, "seed2", NULL, "emb3.npy");
    char *args[] = {"--seed-source", "seed2", "--per-seed", "2", NULL};
    CHECK(retrieve(args) == 0);
    CHECK(st_int(db, "SELECT COUNT(*) FROM v_curated WHERE dataset = 'seedset'") == 17);
    CHECK(st_int(db, "SELECT COUNT(*) FROM v_curated WHERE dataset = 'seed2'") == 3);
    CHECK(
        st_int(db, "SELECT image_id FROM v_curated WHERE dataset = 'seed2' AND method = 'seed'") ==
        id_of("sB1"));
    check_knn(db, "sB1", "b6", "b7");
    char *unknown[] = {"--seed-source", "nope", NULL};
    CHECK(retrieve(unknown) == 1);
    char *pool[] = {"--seed-source", "web", NULL};
    CHECK(retrieve(pool) == 1);
    CHECK(st_int(db, "SELECT COUNT(*) FROM v_curated") == 20);
}

static void test_errors(void)
{
    char *unknown[] = {(char *)tool[T_DEDUP], "--db", db_path, "--model", "nope", NULL};
    CHECK(st_run(unknown, NULL) == 1);
    char *missing[] = {
        (char *)tool[T_RETRIEVE], "--db", "/nonexistent/x.db", "--model", "synth", NULL};
    CHECK(st_run(missing, NULL) == 1);
    char *external[] = {(char *)tool[T_CALIBRATE], "--db", db_path, "--model", "synth", NULL};
    CHECK(st_run(external, NULL) == 1); /* no weights to embed copies with */
    char *bad[] = {(char *)tool[T_DEDUP], "--db", db_path, "--model", "synth",
                   "--threshold",         "2",    NULL};
    CHECK(st_run(bad, NULL) == 2);
    for (int t = T_INDEX; t < T_COUNT; t++) {
        char *help[] = {(char *)tool[t], "--help", NULL};
        CHECK(st_run(help, NULL) == 0);
    }
}

int main(int argc, char **argv)
{
    if (argc != 1 + T_COUNT) {
        fprintf(stderr, "usage: test_stages LVD-FETCH LVD-INDEX LVD-QUERY LVD-DEDUP LVD-RETRIEVE "
                        "LVD-EXPORT LVD-REPORT LVD-CALIBRATE\n");
        return 2;
    }
    for (int t = 0; t < T_COUNT; t++)
        tool[t] = argv[1 + t];
    snprintf(dir, sizeof dir, "/tmp/lvd-stages-XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    snprintf(db_path, sizeof db_path, "%s/m.db", dir);
    st_write_items(dir, items, N_ITEMS, DIM, &item_v[0][0]);
    CHECK(fetch("web", "pool", "pool1") == 0);
    CHECK(fetch("seedset", "seed", "seed") == 0);
    CHECK(fetch("evalset", "eval", "eval") == 0);
    sqlite3 *db;
    CHECK(sqlite3_open(db_path, &db) == SQLITE_OK);
    sqlite3_busy_timeout(db, 60000);
    CHECK(sqlite3_exec(db,
                       "INSERT INTO models (id, name, arch, dim, features) VALUES (1, "
                       "'synth', 'external', 64, 'external')",
                       NULL, NULL, NULL) == SQLITE_OK);
    add_embeddings(db, "pool1", "seed", "emb1.npy");
    add_embeddings(db, "eval", NULL, "emb_eval.npy");
    char *early[] = {"--per-seed", "2", NULL};
    CHECK(retrieve(early) == 1); /* nothing deduplicated yet */
    test_dedup(db);
    test_knn(db);
    test_clusters(db);
    test_index(db);
    test_export(db);
    test_report();
    test_seed_source(db);
    test_errors();
    sqlite3_close(db);
    st_remove_or_keep(dir);
    return check_finish();
}
