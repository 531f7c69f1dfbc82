/* Migration 7 (maintained counts, URL and sha256 indexes) on an existing manifest: a version-4
 * manifest with images of every status, embeddings, dedup and curated rows is opened and
 * migrated; its count tables then equal the aggregates of the big tables, v_status equals the old
 * GROUP BY view, and they stay equal through inserts (also repeats ignored by ON CONFLICT),
 * status and source updates and deletes of every kind the stages do. URL and sha256 lookups use
 * an index. lvd-status prints the counts, and the same on the unmigrated manifest (run when its
 * path is given). Usage:
 * test_manifest_counts [LVD-STATUS] */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "store/manifest.h"
#include "tests/check.h"

static char *dump(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    size_t cap = 1 << 16, len = 0;
    char *out = calloc(cap, 1);
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "%s: %s\n", sql, sqlite3_errmsg(db));
        snprintf(out, cap, "<error>");
        return out;
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        for (int c = 0; c < sqlite3_column_count(st); c++) {
            const char *t = (const char *)sqlite3_column_text(st, c);
            if (len + (t ? strlen(t) : 4) + 2 >= cap)
                out = realloc(out, cap *= 2);
            len += (size_t)snprintf(out + len, cap - len, "%s%c", t ? t : "NULL",
                                    c + 1 < sqlite3_column_count(st) ? '|' : '\n');
        }
    }
    sqlite3_finalize(st);
    return out;
}

static void exec_sql(sqlite3 *db, const char *fmt, ...)
{
    char sql[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        fprintf(stderr, "sql: %s: %s\n", msg, sql);
        sqlite3_free(msg);
        check_failures++;
    }
}

static void same(sqlite3 *db, const char *what, const char *a, const char *b)
{
    char *x = dump(db, a), *y = dump(db, b);
    CHECK_MSG(strcmp(x, y) == 0, "%s:\n%s\n-- against --\n%s", what, x, y);
    free(x);
    free(y);
}

/* Every count table against the aggregate it maintains. */
static void check_counts(sqlite3 *db, const char *when)
{
    char what[128];
    snprintf(what, sizeof what, "image counts %s", when);
    same(db, what,
         "SELECT source_id, status, error_class, n FROM image_counts WHERE n <> 0 ORDER BY 1, 2, 3",
         "SELECT source_id, status, COALESCE(error_class, ''), COUNT(*) FROM images"
         " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3");
    snprintf(what, sizeof what, "v_status %s", when);
    same(db, what, "SELECT * FROM v_status ORDER BY 1, 2, 3",
         "SELECT s.name, i.status, i.error_class, COUNT(*) FROM images i JOIN sources s"
         " ON s.id = i.source_id GROUP BY s.name, i.status, i.error_class ORDER BY 1, 2, 3");
    snprintf(what, sizeof what, "embedding counts %s", when);
    same(db, what, "SELECT model_id, source_id, n FROM embedding_counts WHERE n <> 0 ORDER BY 1, 2",
         "SELECT e.model_id, i.source_id, COUNT(*) FROM embeddings e JOIN images i"
         " ON i.id = e.image_id GROUP BY 1, 2 ORDER BY 1, 2");
    snprintf(what, sizeof what, "dedup counts %s", when);
    same(db, what,
         "SELECT model_id, images, kept, duplicate, eval FROM dedup_counts WHERE images <> 0"
         " ORDER BY 1",
         "SELECT model_id, COUNT(*), SUM(kept), SUM(reason = 'duplicate'), SUM(reason = 'eval')"
         " FROM dedup GROUP BY 1 ORDER BY 1");
    snprintf(what, sizeof what, "curated counts %s", when);
    same(db, what,
         "SELECT model_id, source_id, method, n FROM curated_counts WHERE n <> 0 ORDER BY 1, 2, 3",
         "SELECT model_id, source_id, method, COUNT(*) FROM curated GROUP BY 1, 2, 3"
         " ORDER BY 1, 2, 3");
    char *neg = dump(db, "SELECT COUNT(*) FROM image_counts WHERE n < 0");
    CHECK_MSG(strcmp(neg, "0\n") == 0, "negative image count %s", when);
    free(neg);
}

/* A version-4 manifest, made as lvd did before migrations 5 to 7 existed. */
static void make_v4(const char *path)
{
    sqlite3 *db;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    exec_sql(db, "BEGIN");
    for (int v = 1; v <= 4; v++)
        exec_sql(db, "%s", lvd_manifest_migration(v));
    exec_sql(db, "PRAGMA user_version = 4");
    exec_sql(db, "INSERT INTO sources (id, name, role) VALUES (1, 'web', 'pool'), (2, 'in1k', "
                 "'seed'), (3, 'bench', 'eval')");
    exec_sql(db, "INSERT INTO models (id, name, arch, dim) VALUES (1, 'a', 'x', 4), (2, 'b', 'x', "
                 "4)");
    exec_sql(db, "INSERT INTO embedding_files (id, model_id, path, rows, cols) VALUES (1, 1, "
                 "'/f1', 100, 4), (2, 2, '/f2', 100, 4)");
    static const char *const status[] = {"ok", "ok", "ok", "duplicate", "failed", "pending"};
    static const char *const cls[] = {"ok", "ok", "ok", "duplicate", "timeout", NULL};
    for (int i = 1; i <= 90; i++) {
        int s = i % 6, src = 1 + i % 3;
        char sha[80] = "NULL";
        if (s < 4)
            snprintf(sha, sizeof sha, "'%064d'", i);
        exec_sql(db,
                 "INSERT INTO images (id, source_id, url, status, error_class, sha256) VALUES "
                 "(%d, %d, 'http://x/%d', '%s', %s%s%s, %s)",
                 i, src, i, status[s], cls[s] ? "'" : "", cls[s] ? cls[s] : "NULL",
                 cls[s] ? "'" : "", sha);
        if (s < 3) {
            exec_sql(db, "INSERT INTO embeddings VALUES (%d, 1, 1, %d)", i, i);
            if (i % 2)
                exec_sql(db, "INSERT INTO embeddings VALUES (%d, 2, 2, %d)", i, i);
        }
        if (s < 3 && src == 1)
            exec_sql(db,
                     "INSERT INTO dedup (model_id, image_id, component, kept, reason, "
                     "similarity) VALUES (1, %d, %d, %d, %s, NULL)",
                     i, i, i % 4 != 0, i % 4 == 0 ? (i % 8 ? "'duplicate'" : "'eval'") : "NULL");
        if (s < 3 && src == 1 && i % 5 == 0)
            exec_sql(db,
                     "INSERT INTO curated (model_id, image_id, source_id, method) VALUES (1, %d, "
                     "2, '%s')",
                     i, i % 10 ? "knn" : "cluster");
    }
    exec_sql(db, "COMMIT");
    sqlite3_close(db);
}

/* What lvd-status (tool) prints for the manifest at path, into out. */
static void status_text(const char *tool, const char *path, char *out, size_t cap)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' --db '%s' > '%s.status'", tool, path, path);
    CHECK(system(cmd) == 0);
    snprintf(cmd, sizeof cmd, "%s.status", path);
    FILE *f = fopen(cmd, "r");
    char line[256];
    out[0] = '\0';
    while (f && fgets(line, sizeof line, f))
        strncat(out, line, cap - strlen(out) - 1);
    if (f)
        fclose(f);
    unlink(cmd);
}

static void test_migrate(const char *path, const char *status_tool)
{
    make_v4(path);
    /* lvd-status never migrates: on the version-4 manifest it counts the big tables, and
     * prints what it prints from the maintained counts once the manifest is migrated. */
    char before[8192] = "", after[8192] = "";
    if (status_tool)
        status_text(status_tool, path, before, sizeof before);
    lvd_manifest *m;
    lvd_error err;
    CHECK_MSG(lvd_manifest_open(path, &m, &err) == 0, "%s", err.msg);
    sqlite3 *db = lvd_manifest_db(m);
    char *version = dump(db, "PRAGMA user_version");
    CHECK(atoi(version) == lvd_manifest_schema_version() && lvd_manifest_schema_version() >= 7);
    free(version);
    check_counts(db, "after the migration");
    if (status_tool) {
        status_text(status_tool, path, after, sizeof after);
        CHECK_MSG(strstr(before, "items by source and status") != NULL &&
                      strcmp(before, after) == 0,
                  "lvd-status before the migration:\n%s\n-- after --\n%s", before, after);
    }

    /* What the stages do: registering (repeats ignored), fetch outcomes, a retry, embeddings,
     * a dedup rerun (delete then insert), a retrieval rerun, deletes. */
    exec_sql(db, "BEGIN");
    for (int i = 200; i < 230; i++)
        exec_sql(db,
                 "INSERT INTO images (source_id, url) VALUES (1, 'http://y/%d') "
                 "ON CONFLICT (source_id, url) DO NOTHING",
                 i % 20);
    exec_sql(db, "UPDATE images SET status = 'ok', error_class = 'ok', sha256 = 'ab' WHERE url = "
                 "'http://y/3'");
    exec_sql(db, "UPDATE images SET status = 'failed', error_class = 'decode' WHERE url LIKE "
                 "'http://y/1%%'");
    exec_sql(db, "UPDATE images SET status = 'pending', error_class = NULL, error = NULL WHERE "
                 "status = 'failed' AND error_class = 'timeout'");
    exec_sql(db, "UPDATE images SET label = 'same counts' WHERE id < 20");
    exec_sql(db, "UPDATE images SET status = status, error_class = error_class WHERE id < 40");
    exec_sql(db, "INSERT INTO embeddings SELECT id, 2, 2, id FROM images WHERE status = 'ok' AND "
                 "id NOT IN (SELECT image_id FROM embeddings WHERE model_id = 2)");
    exec_sql(db, "DELETE FROM embeddings WHERE model_id = 1 AND image_id %% 7 = 0");
    exec_sql(db, "UPDATE images SET source_id = 2 WHERE id = 3");
    exec_sql(db, "DELETE FROM dedup WHERE model_id = 1");
    exec_sql(db, "INSERT INTO dedup (model_id, image_id, component, kept, reason) SELECT 2, "
                 "image_id, image_id, image_id %% 3 <> 0, CASE WHEN image_id %% 3 = 0 THEN "
                 "'duplicate' END FROM embeddings WHERE model_id = 2");
    exec_sql(db, "UPDATE dedup SET kept = 0, reason = 'eval' WHERE image_id %% 5 = 1");
    exec_sql(db, "DELETE FROM curated WHERE model_id = 1 AND method <> 'seed'");
    exec_sql(db, "INSERT INTO curated (model_id, image_id, source_id, method) SELECT 2, "
                 "image_id, 2, 'knn' FROM dedup WHERE kept = 1 AND image_id %% 4 = 0");
    exec_sql(db, "UPDATE curated SET method = 'cluster' WHERE image_id %% 8 = 0");
    exec_sql(db, "DELETE FROM curated WHERE image_id %% 16 = 0");
    exec_sql(db, "DELETE FROM dedup WHERE image_id %% 9 = 0");
    exec_sql(db, "DELETE FROM embeddings WHERE image_id IN (SELECT id FROM images WHERE status = "
                 "'pending')");
    exec_sql(db, "DELETE FROM images WHERE status = 'pending' AND id NOT IN (SELECT image_id FROM "
                 "embeddings) AND id NOT IN (SELECT image_id FROM dedup) AND id NOT IN (SELECT "
                 "image_id FROM curated)");
    exec_sql(db, "COMMIT");
    check_counts(db, "after the stages' writes");
    /* A rolled-back batch leaves the counts as they were. */
    exec_sql(db, "BEGIN; UPDATE images SET status = 'failed', error_class = 'dns'; ROLLBACK");
    check_counts(db, "after a rollback");

    char *plan = dump(db, "EXPLAIN QUERY PLAN SELECT * FROM v_images WHERE url = 'http://x/5'");
    CHECK_MSG(strstr(plan, "images_by_url") != NULL, "url lookup plan:\n%s", plan);
    free(plan);
    plan = dump(db, "EXPLAIN QUERY PLAN SELECT * FROM v_images WHERE sha256 = 'ab'");
    CHECK_MSG(strstr(plan, "images_by_sha256") != NULL, "sha256 lookup plan:\n%s", plan);
    free(plan);
    /* Every lookup the bench times at 10M rows (bench/bench_manifest.c) searches an index: no
     * plan line scans images, embeddings or dedup. */
    static const char *const lookups[] = {
        "SELECT * FROM v_images WHERE id = 5",
        "SELECT * FROM v_images WHERE source = 'web' AND url = 'http://x/5'",
        "SELECT * FROM v_images WHERE source = 'web' LIMIT 100",
        "SELECT * FROM v_images WHERE source = 'web' AND status = 'failed' LIMIT 100",
        "SELECT * FROM v_status WHERE source = 'web'",
        "SELECT * FROM v_embeddings WHERE model = 'b' AND image_id = 5",
        "SELECT * FROM v_duplicates WHERE model = 'b' AND image_id = 5",
    };
    for (size_t q = 0; q < sizeof lookups / sizeof *lookups; q++) {
        char sql[256];
        snprintf(sql, sizeof sql, "EXPLAIN QUERY PLAN %s", lookups[q]);
        plan = dump(db, sql);
        CHECK_MSG(strstr(plan, "SEARCH") != NULL && strstr(plan, "SCAN i") == NULL &&
                      strstr(plan, "SCAN e") == NULL && strstr(plan, "SCAN d") == NULL,
                  "%s:\n%s", lookups[q], plan);
        free(plan);
    }
    plan = dump(db, "EXPLAIN QUERY PLAN SELECT * FROM v_status");
    CHECK_MSG(strstr(plan, "SCAN c") != NULL && strstr(plan, "SCAN i") == NULL,
              "v_status plan:\n%s", plan);
    free(plan);
    char *web = dump(db, "SELECT SUM(n) FROM v_status WHERE source = 'web'");
    char *want = dump(db, "SELECT COUNT(*) FROM images WHERE source_id = 1");
    CHECK(strcmp(web, want) == 0);
    free(web);
    free(want);
    lvd_manifest_close(m);

    if (!status_tool)
        return;
    char all[8192];
    status_text(status_tool, path, all, sizeof all);
    /* The lines lvd-status prints for source web and model b's dedup, from the tables. */
    sqlite3 *raw;
    CHECK(sqlite3_open(path, &raw) == SQLITE_OK);
    char *counts = dump(raw, "SELECT COUNT(*), SUM(status = 'ok') FROM images WHERE source_id = 1"),
         *dedup = dump(raw, "SELECT COUNT(*) FROM dedup WHERE model_id = 2");
    long long items = 0, ok = 0;
    CHECK(sscanf(counts, "%lld|%lld", &items, &ok) == 2 && items > 0);
    char want_items[128], want_dedup[128];
    snprintf(want_items, sizeof want_items, " %-16s %-5s %9lld %9lld", "web", "pool", items, ok);
    snprintf(want_dedup, sizeof want_dedup, " %-24s %10lld", "b", atoll(dedup));
    CHECK_MSG(strstr(all, want_items) != NULL, "lvd-status lacks '%s':\n%s", want_items, all);
    CHECK_MSG(strstr(all, want_dedup) != NULL, "lvd-status lacks '%s':\n%s", want_dedup, all);
    free(counts);
    free(dedup);
    sqlite3_close(raw);
}

int main(int argc, char **argv)
{
    char dir[] = "/tmp/lvd-manifest-counts-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    char path[256], cmd[300];
    snprintf(path, sizeof path, "%s/m.db", dir);
    test_migrate(path, argc > 1 ? argv[1] : NULL);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return check_finish();
}
