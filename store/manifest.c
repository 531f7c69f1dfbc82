/* The manifest (store/manifest.h): opening in its three modes and migrating, batches, sources
 * and the run records with their run locks. The locks themselves are in manifest_lock.c. */
#include "store/manifest_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store/json.h"

/* Long enough to ride out another process's shard commit; short enough to report a stuck lock. */
#define BUSY_TIMEOUT_MS 60000

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

/* A database at version 0 must be empty: tables without a schema version belong to something
 * else, and lvd must not add its own among them. */
static int check_lvd(lvd_manifest *m, lvd_error *err)
{
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m, "SELECT COUNT(*) FROM sqlite_master", &st, err) != 0)
        return -1;
    int rc = sqlite3_step(st);
    int objects = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW)
        return lvd_manifest_fail(m, err, "reading the schema");
    if (objects > 0)
        return lvd_fail(err, "%s: not an lvd manifest (a database of %d other objects)", m->path,
                        objects);
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
    if (version == 0 && check_lvd(m, err) != 0)
        return -1;
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

/* SQLite's first failure on m as "<path>: <what>: <message>", worded for people when the file is
 * not a database. */
static int open_fail(lvd_manifest *m, lvd_error *err, const char *what)
{
    int code = m->db ? sqlite3_errcode(m->db) : SQLITE_NOMEM;
    if (code == SQLITE_NOTADB)
        return lvd_fail(err, "%s: not an SQLite database (so not an lvd manifest)", m->path);
    return lvd_fail(err, "%s: %s: %s", m->path, what,
                    m->db ? sqlite3_errmsg(m->db) : "out of memory");
}

/* "file:" followed by path with the characters a URI reserves percent-encoded. */
static char *file_uri(const char *path, const char *query)
{
    size_t n = strlen(path), q = strlen(query);
    char *uri = malloc(5 + 3 * n + q + 1);
    if (!uri)
        return NULL;
    char *o = uri + sprintf(uri, "file:");
    for (const unsigned char *c = (const unsigned char *)path; *c; c++) {
        if (*c == '%' || *c == '?' || *c == '#' || *c < 0x21 || *c > 0x7e)
            o += sprintf(o, "%%%02X", *c);
        else
            *o++ = (char)*c;
    }
    memcpy(o, query, q + 1);
    return uri;
}

static int connect(lvd_manifest *m, const char *name, int flags)
{
    int rc = sqlite3_open_v2(name, &m->db, flags | SQLITE_OPEN_NOMUTEX, NULL);
    if (m->db)
        sqlite3_busy_timeout(m->db, BUSY_TIMEOUT_MS);
    return rc;
}

static void disconnect(lvd_manifest *m)
{
    sqlite3_close(m->db);
    m->db = NULL;
}

/* Read only, never written: the schema version tells whether the file can be read at all. In a
 * read-only folder without its -shm file WAL cannot be used; the file is then read immutable,
 * unless a write-ahead log holds transactions that immutable reading would not see. */
static int open_read(lvd_manifest *m, lvd_error *err)
{
    struct stat sb;
    if (stat(m->path, &sb) != 0)
        return lvd_fail(err, "%s: no such manifest: %s", m->path, strerror(errno));
    int version = 0;
    int rc = connect(m, m->path, SQLITE_OPEN_READONLY);
    if (rc == SQLITE_OK && user_version(m, &version, err) == 0)
        goto opened;
    if (!m->db || sqlite3_errcode(m->db) == SQLITE_NOTADB)
        return open_fail(m, err, "cannot open");
    char first[512];
    snprintf(first, sizeof first, "%s", sqlite3_errmsg(m->db));
    disconnect(m);
    char wal[4096];
    snprintf(wal, sizeof wal, "%s-wal", m->path);
    if (stat(wal, &sb) == 0 && sb.st_size > 0)
        return lvd_fail(err,
                        "%s: cannot read: %s (and its write-ahead log %s cannot be read without "
                        "write access to the folder; open it once where it is writable)",
                        m->path, first, wal);
    char *uri = file_uri(m->path, "?immutable=1");
    if (!uri)
        return lvd_fail(err, "%s: out of memory", m->path);
    rc = connect(m, uri, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI);
    free(uri);
    if (rc != SQLITE_OK || user_version(m, &version, err) != 0)
        return open_fail(m, err, "cannot read");
opened:
    m->readonly = 1;
    if (version > lvd_manifest_schema_version())
        return lvd_fail(err, "%s: schema version %d is newer than this lvd supports (%d)", m->path,
                        version, lvd_manifest_schema_version());
    if (version == 0)
        return lvd_fail(err, "%s: not an lvd manifest (no schema version)", m->path);
    return lvd_manifest_exec(m, "PRAGMA query_only = 1; PRAGMA foreign_keys = ON;", err);
}

/* Writable: the lock descriptor first (it tells a missing file from an unwritable one), then the
 * connection, WAL and the migrations. */
static int open_write(lvd_manifest *m, int create, lvd_error *err)
{
    if (manifest_lock_attach(m, create, err) != 0)
        return -1;
    if (connect(m, m->path, SQLITE_OPEN_READWRITE) != SQLITE_OK)
        return open_fail(m, err, "cannot open");
    if (lvd_manifest_exec(m,
                          "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
                          "PRAGMA foreign_keys = ON;",
                          err) != 0) {
        if (sqlite3_errcode(m->db) == SQLITE_NOTADB)
            return open_fail(m, err, "cannot open");
        return -1;
    }
    return migrate(m, err);
}

int lvd_manifest_open_mode(const char *path, lvd_manifest_mode mode, lvd_manifest **out,
                           lvd_error *err)
{
    *out = NULL;
    lvd_manifest *m = calloc(1, sizeof *m);
    if (!m || !(m->path = strdup(path))) {
        free(m);
        return lvd_fail(err, "%s: out of memory", path);
    }
    int rc = mode == LVD_MANIFEST_READ ? open_read(m, err)
                                       : open_write(m, mode == LVD_MANIFEST_CREATE, err);
    if (rc != 0) {
        lvd_manifest_close(m);
        return -1;
    }
    *out = m;
    return 0;
}

int lvd_manifest_open(const char *path, lvd_manifest **out, lvd_error *err)
{
    return lvd_manifest_open_mode(path, LVD_MANIFEST_CREATE, out, err);
}

void lvd_manifest_close(lvd_manifest *m)
{
    if (!m)
        return;
    lvd_manifest_rollback(m);
    sqlite3_close(m->db);
    manifest_unlock_all(m); /* after the connection: a run is never seen unlocked but running */
    free(m->path);
    free(m);
}

const char *lvd_manifest_path(const lvd_manifest *m)
{
    return m->path;
}

int lvd_manifest_readonly(const lvd_manifest *m)
{
    return m->readonly;
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

/* The body of lvd_manifest_run_start, inside a transaction: the run's row and its lock commit
 * together, so no other process sees the run running but unlocked. */
static int run_insert(lvd_manifest *m, const char *stage, char *text, int64_t *run_id,
                      lvd_error *err)
{
    sqlite3_stmt *st;
    if (lvd_manifest_reap(m, NULL, err) != 0 ||
        lvd_manifest_prepare(m, "INSERT INTO runs(stage, params) VALUES (?1, ?2)", &st, err) != 0) {
        free(text);
        return -1;
    }
    sqlite3_bind_text(st, 1, stage, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, text, -1, free);
    if (step_done(m, st, err, "recording a run") != 0)
        return -1;
    *run_id = sqlite3_last_insert_rowid(m->db);
    int rc = manifest_lock_byte(m, manifest_run_byte(*run_id), err);
    if (rc == 1)
        return lvd_fail(err, "%s: run %lld is locked by another process", m->path,
                        (long long)*run_id);
    return rc;
}

int lvd_manifest_run_start(lvd_manifest *m, const char *stage, const cJSON *params, int64_t *run_id,
                           lvd_error *err)
{
    if (m->readonly)
        return lvd_fail(err, "%s: opened read-only: cannot record a run", m->path);
    char *text = json_text(params);
    if (!text)
        return lvd_fail(err, "%s: out of memory", m->path);
    int own = !m->in_batch;
    if (own && lvd_manifest_begin(m, err) != 0) {
        free(text);
        return -1;
    }
    int rc = run_insert(m, stage, text, run_id, err);
    if (own && rc == 0)
        rc = lvd_manifest_commit(m, err);
    if (rc != 0) {
        if (own)
            lvd_manifest_rollback(m);
        manifest_unlock_byte(m, manifest_run_byte(*run_id));
    }
    return rc;
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
    int rc = step_done(m, st, err, "finishing a run");
    /* Released after the status is written (or when m closes, should writing fail). */
    if (rc == 0 && !m->in_batch)
        manifest_unlock_byte(m, manifest_run_byte(run_id));
    return rc;
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

int lvd_manifest_lock(lvd_manifest *m, const char *name, lvd_error *err)
{
    int rc = manifest_lock_byte(m, manifest_stage_byte(name), err);
    if (rc == 1)
        return lvd_fail(err, "%s: another lvd-%s is working on this manifest", m->path, name);
    return rc;
}

/* The ids of the runs left 'running' (malloc'd; *n of them). */
static int running_runs(lvd_manifest *m, int64_t **ids, size_t *n, lvd_error *err)
{
    *ids = NULL;
    *n = 0;
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m, "SELECT id FROM runs WHERE status = 'running' ORDER BY id", &st,
                             err) != 0)
        return -1;
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            int64_t *p = realloc(*ids, cap * sizeof *p);
            if (!p) {
                sqlite3_finalize(st);
                return lvd_fail(err, "%s: out of memory", m->path);
            }
            *ids = p;
        }
        (*ids)[(*n)++] = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : lvd_manifest_fail(m, err, "reading running runs");
}

int lvd_manifest_reap(lvd_manifest *m, int *n, lvd_error *err)
{
    if (n)
        *n = 0;
    int64_t *ids;
    size_t count;
    if (running_runs(m, &ids, &count, err) != 0)
        return -1;
    sqlite3_stmt *st = NULL;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < count; i++) {
        int held = manifest_byte_held(m, manifest_run_byte(ids[i]), err);
        if (held != 0) {
            rc = held < 0 ? -1 : 0;
            continue;
        }
        if (!st && lvd_manifest_prepare(m,
                                        "UPDATE runs SET status = 'interrupted' WHERE id = ?1"
                                        " AND status = 'running'",
                                        &st, err) != 0) {
            rc = -1;
            break;
        }
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, ids[i]);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = lvd_manifest_fail(m, err, "marking interrupted runs");
        else if (n)
            *n += sqlite3_changes(m->db);
    }
    sqlite3_finalize(st);
    free(ids);
    return rc;
}
