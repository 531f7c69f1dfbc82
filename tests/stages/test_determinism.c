/* The same inputs give the same outputs, whatever the timing: two uninterrupted runs of fetch
 * (64 parallel downloads from a server answering after random delays, so answers come back in a
 * different order each time), embed, index, dedup and retrieve must give equal views (paths
 * relative to each run's folder, times left out) and byte-equal files (shards, .npy
 * embeddings, index). Of byte-identical images under several URLs the earliest input line is the
 * one kept, and every shard holds its members in item order.
 * Usage: test_determinism PYTHON SERVER.PY LVD-FETCH LVD-MODEL LVD-EMBED LVD-INDEX LVD-DEDUP
 * LVD-RETRIEVE */
#include <dirent.h>

#include "tests/fetch/fetch_test.h"
#include "tests/stages/stages_test.h"

enum { T_PYTHON, T_SERVER, T_FETCH, T_MODEL, T_EMBED, T_INDEX, T_DEDUP, T_RETRIEVE, T_COUNT };
static const char *tool[T_COUNT];

#define N_IMAGES 48 /* distinct images of the pool */
#define N_COPIES 16 /* of which this many are also listed under a second URL */
#define N_NEAR   8  /* and this many have a re-encoded near-duplicate */
#define N_SEEDS  4

/* Writes the pool folder (served by the test server) and the seed folder. */
static void make_inputs(const char *dir)
{
    char path[600];
    snprintf(path, sizeof path, "%s/served", dir);
    st_mkdir(path);
    snprintf(path, sizeof path, "%s/seeds", dir);
    st_mkdir(path);
    snprintf(path, sizeof path, "%s/seeds/s", dir);
    st_mkdir(path);
    for (int i = 0; i < N_IMAGES; i++) {
        snprintf(path, sizeof path, "%s/served/img%03d.jpg", dir, i);
        CHECK(st_write_jpeg(path, 64 + i % 5, 48 + i % 3, (uint32_t)i) == 0);
    }
    /* Near-duplicates: the same pixels at JPEG quality 70 (different bytes, close embedding). */
    for (int i = 0; i < N_NEAR; i++) {
        snprintf(path, sizeof path, "%s/served/img%03d.jpg", dir, i);
        size_t len;
        uint8_t *jpg = (uint8_t *)check_slurp(path, &len), *out = NULL;
        lvd_image img = {0};
        lvd_error err;
        CHECK(jpg && lvd_image_decode(jpg, len, NULL, &img, &err) == 0 &&
              lvd_image_encode_jpeg(&img, 70, &out, &len, &err) == 0);
        snprintf(path, sizeof path, "%s/served/near%03d.jpg", dir, i);
        if (out)
            check_write_file(path, out, len);
        free(jpg);
        free(out);
        lvd_image_free(&img);
    }
    for (int i = 0; i < N_SEEDS; i++) {
        snprintf(path, sizeof path, "%s/seeds/s/seed%d.jpg", dir, i);
        CHECK(st_write_jpeg(path, 64, 48, (uint32_t)(3 * i + 1)) == 0);
    }
}

/* The URL list: every image, then second URLs of the first N_COPIES (same bytes), then the
 * near-duplicates. */
static void write_list(const char *path, int port)
{
    FILE *f = fopen(path, "w");
    if (!f)
        exit(1);
    for (int i = 0; i < N_IMAGES; i++)
        fprintf(f, "http://127.0.0.1:%d/shuffle/img%03d.jpg\n", port, i);
    for (int i = 0; i < N_COPIES; i++)
        fprintf(f, "http://127.0.0.1:%d/shuffle/img%03d.jpg?copy\n", port, i);
    for (int i = 0; i < N_NEAR; i++)
        fprintf(f, "http://127.0.0.1:%d/shuffle/near%03d.jpg\n", port, i);
    fclose(f);
}

static int run(const char *t0, ...)
{
    char *argv[40];
    int n = 0;
    argv[n++] = (char *)t0;
    va_list ap;
    va_start(ap, t0);
    for (char *a; n < 39 && (a = va_arg(ap, char *));)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    return st_run(argv, NULL);
}

/* The whole chain into folder run_dir. */
static void pipeline(const char *run_dir, const char *list, const char *seeds)
{
    char db[600];
    snprintf(db, sizeof db, "%s/m.db", run_dir);
    st_mkdir(run_dir);
    CHECK(run(tool[T_FETCH], "--db", db, "--source", "web", "--parallel", "64", "--threads", "2",
              "--shard-size", "40K", "--no-progress", list, NULL) == 0);
    CHECK(run(tool[T_FETCH], "--db", db, "--source", "seeds", "--role", "seed", "--threads", "2",
              "--no-progress", seeds, NULL) == 0);
    CHECK(run(tool[T_MODEL], "add", "--db", db, "--name", "r", "--random", "vits14", NULL) == 0);
    CHECK(run(tool[T_EMBED], "--db", db, "--model", "r", "--resize", "56", "--crop", "56",
              "--batch", "8", "--threads", "2", "--no-progress", NULL) == 0);
    CHECK(run(tool[T_INDEX], "--db", db, "--model", "r", NULL) == 0);
    CHECK(run(tool[T_DEDUP], "--db", db, "--model", "r", "--threshold", "0.999", NULL) == 0);
    CHECK(run(tool[T_RETRIEVE], "--db", db, "--model", "r", "--per-seed", "3", NULL) == 0);
}

static const char *const views[] = {
    "SELECT * FROM v_images ORDER BY id",
    "SELECT * FROM v_status ORDER BY source, status, error_class",
    /* Counts without the phase times (seconds) that lvd-dedup records. */
    "SELECT id, stage, params, status, json_remove(counts, '$.seconds') FROM v_runs ORDER BY id",
    "SELECT * FROM v_models ORDER BY name",
    "SELECT * FROM v_embeddings ORDER BY image_id, model",
    "SELECT * FROM v_embedding_failures ORDER BY image_id, model",
    "SELECT id, model, source, path, factory, rows, dim, run_id FROM v_indexes ORDER BY id",
    "SELECT * FROM v_duplicates ORDER BY image_id, model",
    "SELECT * FROM v_curated ORDER BY image_id, dataset, method, seed_image_id, rank",
    "SELECT * FROM v_hkmeans ORDER BY image_id, model, dataset, level",
    "SELECT id, path, status, members, bytes FROM shards ORDER BY id",
};

static char *view(const char *run_dir, const char *sql)
{
    char db_path[600];
    snprintf(db_path, sizeof db_path, "%s/m.db", run_dir);
    sqlite3 *db = check_db_open(db_path);
    char *text = check_replace_all(st_dump(db, sql), run_dir, "$RUN");
    sqlite3_close(db);
    return text;
}

/* Files below dir (relative names, sorted by the walk) that are outputs, not the manifest. */
static int list_outputs(const char *root, const char *rel, char names[][256], int n, int cap)
{
    char path[900];
    snprintf(path, sizeof path, "%s%s%s", root, *rel ? "/" : "", rel);
    struct dirent **e;
    int k = scandir(path, &e, NULL, alphasort);
    for (int i = 0; i < k; i++) {
        const char *name = e[i]->d_name;
        char sub[256];
        struct stat sb;
        int len = snprintf(sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "", name);
        snprintf(path, sizeof path, "%s/%s", root, sub);
        if (len < (int)sizeof sub && name[0] != '.' && stat(path, &sb) == 0) {
            if (S_ISDIR(sb.st_mode))
                n = list_outputs(root, sub, names, n, cap);
            else if (!strstr(name, ".db") && n < cap)
                snprintf(names[n++], 256, "%s", sub);
        }
        free(e[i]);
    }
    free(e);
    return n;
}

static int same_bytes(const char *a, const char *b)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", a, b);
    return system(cmd) == 0;
}

/* The kept item of identical content is the earliest line; shards hold members in id order. */
static void check_order(const char *run_dir)
{
    char db_path[600];
    snprintf(db_path, sizeof db_path, "%s/m.db", run_dir);
    sqlite3 *db = check_db_open(db_path);
    CHECK(test_sql_int(db, "SELECT COUNT(*) FROM v_images WHERE status = 'duplicate'") == N_COPIES);
    CHECK_MSG(test_sql_int(db, "SELECT COUNT(*) FROM images d JOIN images k"
                               " ON k.id = d.duplicate_of WHERE d.status = 'duplicate'"
                               " AND (k.id > d.id OR d.url NOT LIKE '%%?copy')") == 0,
              "%s: a later line was kept in place of the first line of the same bytes", run_dir);
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db, "SELECT path FROM shards ORDER BY id", -1, &st, NULL);
    while (sqlite3_step(st) == SQLITE_ROW) {
        char cmd[1200];
        snprintf(cmd, sizeof cmd, "tar -tf '%s'", (const char *)sqlite3_column_text(st, 0));
        FILE *p = popen(cmd, "r");
        char line[256], last[256] = "";
        while (p && fgets(line, sizeof line, p)) {
            CHECK_MSG(strcmp(line, last) > 0, "%s: member %s after %s", cmd, line, last);
            snprintf(last, sizeof last, "%s", line);
        }
        if (p)
            pclose(p);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
}

int main(int argc, char **argv)
{
    if (argc != T_COUNT + 1) {
        fprintf(stderr,
                "usage: %s PYTHON SERVER LVD-FETCH LVD-MODEL LVD-EMBED LVD-INDEX "
                "LVD-DEDUP LVD-RETRIEVE\n",
                argv[0]);
        return 1;
    }
    for (int i = 0; i < T_COUNT; i++)
        tool[i] = argv[i + 1];
    char *dir = check_tmpdir("lvd-fetch-test");
    make_inputs(dir);
    char served[600], list[600], seeds[600], a[600], b[600];
    snprintf(served, sizeof served, "%s/served", dir);
    snprintf(list, sizeof list, "%s/pool.txt", dir);
    snprintf(seeds, sizeof seeds, "%s/seeds", dir);
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(b, sizeof b, "%s/b", dir);
    test_server server;
    test_server_start(&server, tool[T_PYTHON], tool[T_SERVER], served);
    write_list(list, server.port);
    pipeline(a, list, seeds);
    pipeline(b, list, seeds);
    test_server_stop(&server);

    check_order(a);
    check_order(b);
    for (size_t i = 0; i < sizeof views / sizeof views[0]; i++) {
        char *va = view(a, views[i]), *vb = view(b, views[i]);
        CHECK_MSG(strcmp(va, vb) == 0, "%s differs between two runs:\n%s\n--- and ---\n%s",
                  views[i], va, vb);
        free(va);
        free(vb);
    }
    static char names_a[512][256], names_b[512][256];
    int na = list_outputs(a, "", names_a, 0, 512), nb = list_outputs(b, "", names_b, 0, 512);
    CHECK_MSG(na == nb, "%d output files against %d", na, nb);
    int tars = 0, npys = 0;
    for (int i = 0; i < na && i < nb; i++) {
        char pa[900], pb[900];
        snprintf(pa, sizeof pa, "%s/%.255s", a, names_a[i]);
        snprintf(pb, sizeof pb, "%s/%.255s", b, names_b[i]);
        CHECK_MSG(strcmp(names_a[i], names_b[i]) == 0, "%s against %s", names_a[i], names_b[i]);
        CHECK_MSG(same_bytes(pa, pb), "%s differs between two runs", names_a[i]);
        tars += strstr(names_a[i], ".tar") != NULL;
        npys += strstr(names_a[i], ".npy") != NULL;
    }
    printf("%d output files compared (%d shards, %d .npy)\n", na, tars, npys);
    CHECK(tars >= 3 && npys >= 3);
    if (!check_failures)
        check_rmtree(dir);
    else
        fprintf(stderr, "kept %s\n", dir);
    free(dir);
    return check_finish();
}
