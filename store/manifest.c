/* The manifest of store/manifest.h: opening, migrations, batches, sources and runs. */
#include "store/manifest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/json.h"

/* Long enough to ride out another process's shard commit; short enough to report a stuck lock. */
#define BUSY_TIMEOUT_MS 60000

struct lvd_manifest {
    sqlite3 *db;
    char *path;
    int in_batch;
};

int lvd_manifest_fail(lvd_manifest *m, lvd_error *err, const char *what)
{
    return lvd_fail(err, "%s: %s: %s", m->path, what, sqlite3_errmsg(m->db));
}

int lvd_manifest_exec(lvd_manifest *m, const char *sql, lvd_error *err)
{
    char *msg = NULL;
    if (sqlite3_exec(m->db, sql, NULL, NULL, &msg) == SQLITE_OK)
        return 0;
    lvd_fail(err, "%s: %s", m->path, msg ? msg : sqlite3_errmsg(m->db));
    sqlite3_free(msg);
    return -1;
}

int lvd_manifest_prepare(lvd_manifest *m, const char *sql, sqlite3_stmt **stmt, lvd_error *err)
{
    if (sqlite3_prepare_v2(m->db, sql, -1, stmt, NULL) == SQLITE_OK)
        return 0;
    *stmt = NULL;
    return lvd_manifest_fail(m, err, "preparing a statement");
}

static int user_version(lvd_manifest *m, int *version, lvd_error *err)
{
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m, "PRAGMA user_version", &st, err) != 0)
        return -1;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW)
        return lvd_manifest_fail(m, err, "reading the schema version");
    return 0;
}

/* Each migration and its version bump commit together, so a crash leaves a consistent version. */
static int migrate(lvd_manifest *m, lvd_error *err)
{
    int version = 0;
    if (user_version(m, &version, err) != 0)
        return -1;
    int latest = lvd_manifest_schema_version();
    if (version > latest)
        return lvd_fail(err, "%s: schema version %d is newer than this lvd supports (%d)", m->path,
                        version, latest);
    for (int v = version + 1; v <= latest; v++) {
        char bump[64];
        snprintf(bump, sizeof bump, "PRAGMA user_version = %d;", v);
        if (lvd_manifest_begin(m, err) != 0)
            return -1;
        if (lvd_manifest_exec(m, lvd_manifest_migration(v), err) != 0 ||
            lvd_manifest_exec(m, bump, err) != 0) {
            lvd_manifest_rollback(m);
            return lvd_error_prefix(err, "migration %d", v);
        }
        if (lvd_manifest_commit(m, err) != 0)
            return -1;
    }
    return 0;
}

int lvd_manifest_open(const char *path, lvd_manifest **out, lvd_error *err)
{
    *out = NULL;
    lvd_manifest *m = calloc(1, sizeof *m);
    if (!m || !(m->path = strdup(path))) {
        free(m);
        return lvd_fail(err, "%s: out of memory", path);
    }
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &m->db, flags, NULL) != SQLITE_OK) {
        lvd_fail(err, "%s: cannot open: %s", path, m->db ? sqlite3_errmsg(m->db) : "out of memory");
        lvd_manifest_close(m);
        return -1;
    }
    sqlite3_busy_timeout(m->db, BUSY_TIMEOUT_MS);
    if (lvd_manifest_exec(m,
                          "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
                          "PRAGMA foreign_keys = ON;",
                          err) != 0 ||
        migrate(m, err) != 0) {
        lvd_manifest_close(m);
        return -1;
    }
    *out = m;
    return 0;
}

void lvd_manifest_close(lvd_manifest *m)
{
    if (!m)
        return;
    lvd_manifest_rollback(m);
    sqlite3_close(m->db);
    free(m->path);
    free(m);
}

sqlite3 *lvd_manifest_db(lvd_manifest *m)
{
    return m->db;
}

int lvd_manifest_begin(lvd_manifest *m, lvd_error *err)
{
    if (m->in_batch)
        return lvd_fail(err, "%s: a batch is already open", m->path);
    if (lvd_manifest_exec(m, "BEGIN IMMEDIATE", err) != 0)
        return -1;
    m->in_batch = 1;
    return 0;
}

int lvd_manifest_commit(lvd_manifest *m, lvd_error *err)
{
    if (!m->in_batch)
        return lvd_fail(err, "%s: commit without a batch", m->path);
    if (lvd_manifest_exec(m, "COMMIT", err) != 0) {
        lvd_manifest_rollback(m);
        return -1;
    }
    m->in_batch = 0;
    return 0;
}

void lvd_manifest_rollback(lvd_manifest *m)
{
    if (!m->in_batch)
        return;
    sqlite3_exec(m->db, "ROLLBACK", NULL, NULL, NULL);
    m->in_batch = 0;
}

const char *lvd_role_name(lvd_source_role role)
{
    switch (role) {
    case LVD_ROLE_SEED:
        return "seed";
    case LVD_ROLE_EVAL:
        return "eval";
    default:
        return "pool";
    }
}

int lvd_role_parse(const char *name, lvd_source_role *role, lvd_error *err)
{
    static const lvd_source_role roles[] = {LVD_ROLE_POOL, LVD_ROLE_SEED, LVD_ROLE_EVAL};
    for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++) {
        if (strcmp(name, lvd_role_name(roles[i])) == 0) {
            *role = roles[i];
            return 0;
        }
    }
    return lvd_fail(err, "unknown role '%s' (expected pool, seed or eval)", name);
}

/* Runs st (bound by the caller) to completion, expecting no rows; finalizes it. */
static int step_done(lvd_manifest *m, sqlite3_stmt *st, lvd_error *err, const char *what)
{
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE)
        lvd_manifest_fail(m, err, what);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

int lvd_manifest_source(lvd_manifest *m, const char *name, lvd_source_role role, int64_t *id,
                        lvd_error *err)
{
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m,
                             "INSERT INTO sources(name, role) VALUES (?1, ?2)"
                             " ON CONFLICT(name) DO NOTHING",
                             &st, err) != 0)
        return -1;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, lvd_role_name(role), -1, SQLITE_STATIC);
    if (step_done(m, st, err, "adding a source") != 0)
        return -1;
    if (lvd_manifest_prepare(m, "SELECT id, role FROM sources WHERE name = ?1", &st, err) != 0)
        return -1;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) != SQLITE_ROW) {
        lvd_manifest_fail(m, err, "reading a source");
        sqlite3_finalize(st);
        return -1;
    }
    *id = sqlite3_column_int64(st, 0);
    int same = strcmp((const char *)sqlite3_column_text(st, 1), lvd_role_name(role)) == 0;
    sqlite3_finalize(st);
    if (!same)
        return lvd_fail(err, "%s: source '%s' already exists with another role", m->path, name);
    return 0;
}

/* Serializes json (NULL gives "{}") into a malloc'd string. */
static char *json_text(const cJSON *json)
{
    return json ? lvd_json_print(json) : strdup("{}");
}

int lvd_manifest_run_start(lvd_manifest *m, const char *stage, const cJSON *params, int64_t *run_id,
                           lvd_error *err)
{
    char *text = json_text(params);
    if (!text)
        return lvd_fail(err, "%s: out of memory", m->path);
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m, "INSERT INTO runs(stage, params) VALUES (?1, ?2)", &st, err) != 0) {
        free(text);
        return -1;
    }
    sqlite3_bind_text(st, 1, stage, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, text, -1, free);
    if (step_done(m, st, err, "recording a run") != 0)
        return -1;
    *run_id = sqlite3_last_insert_rowid(m->db);
    return 0;
}

int lvd_manifest_run_finish(lvd_manifest *m, int64_t run_id, const char *status,
                            const cJSON *counts, lvd_error *err)
{
    char *text = json_text(counts);
    if (!text)
        return lvd_fail(err, "%s: out of memory", m->path);
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m,
                             "UPDATE runs SET status = ?2, counts = ?3,"
                             " finished = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?1",
                             &st, err) != 0) {
        free(text);
        return -1;
    }
    sqlite3_bind_int64(st, 1, run_id);
    sqlite3_bind_text(st, 2, status, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, text, -1, free);
    return step_done(m, st, err, "finishing a run");
}

int lvd_manifest_runs_interrupted(lvd_manifest *m, const char *stage, int *n, lvd_error *err)
{
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m,
                             "UPDATE runs SET status = 'interrupted' WHERE stage = ?1"
                             " AND status = 'running'",
                             &st, err) != 0)
        return -1;
    sqlite3_bind_text(st, 1, stage, -1, SQLITE_TRANSIENT);
    if (step_done(m, st, err, "marking interrupted runs") != 0)
        return -1;
    if (n)
        *n = sqlite3_changes(m->db);
    return 0;
}
