/* The manifest: migrations, pragmas, views, sources, runs, batches and clean failures. */
#include <cjson/cJSON.h>
#include <stdlib.h>

#include "store/manifest.h"
#include "tests/check.h"

static long long query_int(lvd_manifest *m, const char *sql)
{
    sqlite3_stmt *st;
    long long v = -1;
    if (sqlite3_prepare_v2(lvd_manifest_db(m), sql, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "%s: %s\n", sql, sqlite3_errmsg(lvd_manifest_db(m)));
        return -2;
    }
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static char *query_text(lvd_manifest *m, const char *sql)
{
    sqlite3_stmt *st;
    char *v = NULL;
    if (sqlite3_prepare_v2(lvd_manifest_db(m), sql, -1, &st, NULL) != SQLITE_OK)
        return strdup("<error>");
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        v = strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return v ? v : strdup("<null>");
}

static void check_fresh(const char *path)
{
    lvd_manifest *m;
    lvd_error err;
    CHECK_MSG(lvd_manifest_open(path, &m, &err) == 0, "%s", err.msg);
    CHECK(query_int(m, "PRAGMA user_version") == lvd_manifest_schema_version());
    CHECK(query_int(m, "PRAGMA foreign_keys") == 1);
    char *mode = query_text(m, "PRAGMA journal_mode");
    CHECK_MSG(strcmp(mode, "wal") == 0, "journal_mode %s", mode);
    free(mode);
    /* The stable views exist with their documented columns. */
    CHECK(query_int(m, "SELECT COUNT(*) FROM (SELECT id, source, role, url, label, status,"
                       " error_class, error, sha256, width, height, format, shard, member"
                       " FROM v_images)") == 0);
    CHECK(query_int(m, "SELECT COUNT(*) FROM (SELECT id, stage, params, started, finished,"
                       " status, counts FROM v_runs)") == 0);
    CHECK(query_int(m, "SELECT COUNT(*) FROM (SELECT source, status, error_class, n"
                       " FROM v_status)") == 0);

    int64_t pool, again, seed;
    CHECK(lvd_manifest_source(m, "web", LVD_ROLE_POOL, &pool, &err) == 0);
    CHECK(lvd_manifest_source(m, "web", LVD_ROLE_POOL, &again, &err) == 0 && again == pool);
    CHECK(lvd_manifest_source(m, "in1k", LVD_ROLE_SEED, &seed, &err) == 0 && seed != pool);
    CHECK(lvd_manifest_source(m, "web", LVD_ROLE_EVAL, &again, &err) == -1);
    CHECK_MSG(strstr(err.msg, "another role") != NULL, "%s", err.msg);

    cJSON *params = cJSON_CreateObject();
    cJSON_AddNumberToObject(params, "parallel", 8);
    int64_t run;
    CHECK(lvd_manifest_run_start(m, "fetch", params, &run, &err) == 0);
    cJSON_Delete(params);
    CHECK(query_int(m, "SELECT COUNT(*) FROM v_runs WHERE status = 'running'"
                       " AND finished IS NULL AND json_extract(params, '$.parallel') = 8") == 1);
    cJSON *counts = cJSON_CreateObject();
    cJSON_AddNumberToObject(counts, "ok", 3);
    CHECK(lvd_manifest_run_finish(m, run, "ok", counts, &err) == 0);
    cJSON_Delete(counts);
    CHECK(query_int(m, "SELECT COUNT(*) FROM v_runs WHERE status = 'ok' AND finished IS NOT NULL"
                       " AND json_extract(counts, '$.ok') = 3") == 1);
    CHECK(lvd_manifest_run_start(m, "fetch", NULL, &run, &err) == 0);
    int n = 0;
    CHECK(lvd_manifest_runs_interrupted(m, "fetch", &n, &err) == 0 && n == 1);
    CHECK(query_int(m, "SELECT COUNT(*) FROM v_runs WHERE status = 'interrupted'"
                       " AND params = '{}'") == 1);

    /* A rolled-back batch leaves nothing; a committed one stays. */
    CHECK(lvd_manifest_begin(m, &err) == 0);
    CHECK(lvd_manifest_begin(m, &err) == -1);
    CHECK(lvd_manifest_exec(m, "INSERT INTO images(source_id, url) VALUES (1, 'u1')", &err) == 0);
    lvd_manifest_rollback(m);
    CHECK(query_int(m, "SELECT COUNT(*) FROM images") == 0);
    CHECK(lvd_manifest_begin(m, &err) == 0);
    CHECK(lvd_manifest_exec(m,
                            "INSERT INTO images(source_id, url, status, error_class)"
                            " VALUES (1, 'u1', 'failed', 'decode'), (1, 'u2', 'failed', 'decode'),"
                            " (2, 'u1', 'pending', NULL)",
                            &err) == 0);
    CHECK(lvd_manifest_commit(m, &err) == 0);
    CHECK(query_int(m, "SELECT n FROM v_status WHERE source = 'web' AND error_class = 'decode'") ==
          2);
    char *role = query_text(m, "SELECT role FROM v_images WHERE source = 'in1k'");
    CHECK(strcmp(role, "seed") == 0);
    free(role);
    /* Constraints hold: unknown status, dangling source, repeated URL. */
    CHECK(lvd_manifest_exec(m, "INSERT INTO images(source_id, url, status) VALUES (1, 'x', 'meh')",
                            &err) == -1);
    CHECK(lvd_manifest_exec(m, "INSERT INTO images(source_id, url) VALUES (99, 'x')", &err) == -1);
    CHECK(lvd_manifest_exec(m, "INSERT INTO images(source_id, url) VALUES (1, 'u1')", &err) == -1);
    lvd_manifest_close(m);

    /* Reopening migrates nothing and keeps the data. */
    CHECK_MSG(lvd_manifest_open(path, &m, &err) == 0, "%s", err.msg);
    CHECK(query_int(m, "SELECT COUNT(*) FROM images") == 3);
    CHECK(query_int(m, "PRAGMA user_version") == lvd_manifest_schema_version());
    CHECK(lvd_manifest_exec(m, "PRAGMA user_version = 999", &err) == 0);
    lvd_manifest_close(m);
    CHECK(lvd_manifest_open(path, &m, &err) == -1);
    CHECK_MSG(strstr(err.msg, "newer") != NULL, "%s", err.msg);
}

int main(void)
{
    char dir[] = "/tmp/lvd-manifest-test-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    char path[128], cmd[160];
    snprintf(path, sizeof path, "%s/m.db", dir);
    check_fresh(path);

    lvd_error err;
    lvd_manifest *m;
    CHECK(lvd_role_parse("seed", &(lvd_source_role){0}, &err) == 0);
    CHECK(lvd_role_parse("curated", &(lvd_source_role){0}, &err) == -1);
    CHECK(lvd_manifest_migration(0) == NULL);
    CHECK(lvd_manifest_migration(lvd_manifest_schema_version() + 1) == NULL);

    /* Not a database: one clear error, no crash. */
    snprintf(path, sizeof path, "%s/junk.db", dir);
    FILE *f = fopen(path, "w");
    fputs("this is not an sqlite database, just some text that is long enough to matter....", f);
    fclose(f);
    CHECK(lvd_manifest_open(path, &m, &err) == -1);
    CHECK_MSG(strstr(err.msg, "junk.db") != NULL, "%s", err.msg);
    CHECK(lvd_manifest_open("/nonexistent-dir/m.db", &m, &err) == -1);

    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    return check_finish();
}
