/* The manifest: one SQLite database that records every input item of every stage and every run.
 *
 * It is opened in one of three modes (lvd_manifest_mode): created when absent, existing, or read
 * only (never created, written or migrated; immutable where WAL cannot be used). A writable
 * opening applies the versioned migrations (PRAGMA user_version) in one transaction each, and
 * sets WAL journaling, a busy timeout and foreign keys. Stage locks and run locks (below) are
 * keyed on the database file's identity; a run whose process died is marked interrupted by the
 * next run of any stage. Later stages add their tables by
 * appending a migration to the list in store/manifest_schema.c; a migration is never edited once
 * released. The stable views (v_images, v_runs, v_status) are documented in store/MANIFEST.md.
 *
 * Item statuses: 'pending' (registered, not finished), 'ok', 'duplicate' (same stored bytes as
 * an earlier ok item, see images.duplicate_of) and 'failed'; error_class is 'ok', 'duplicate' or
 * the failure class. A manifest handle is not thread safe: use it from one thread. */
#ifndef LVD_STORE_MANIFEST_H
#define LVD_STORE_MANIFEST_H

#include <stdint.h>

#include <cjson/cJSON.h>
#include <sqlite3.h>

#include "store/error.h"

typedef struct lvd_manifest lvd_manifest;

typedef enum lvd_source_role {
    LVD_ROLE_POOL = 0, /* uncurated pool */
    LVD_ROLE_SEED,     /* curated seed set */
    LVD_ROLE_EVAL,     /* evaluation set (decontamination target) */
} lvd_source_role;

/* The schema version a freshly opened manifest has (the number of migrations). */
int lvd_manifest_schema_version(void);

/* The SQL of migration `version` (1 .. lvd_manifest_schema_version()), which moves a manifest
 * from version-1 to version; NULL outside that range. Defined in store/manifest_schema.c. */
const char *lvd_manifest_migration(int version);

/* How a manifest is opened. */
typedef enum lvd_manifest_mode {
    LVD_MANIFEST_CREATE = 0, /* created when absent; migrated to the latest version */
    LVD_MANIFEST_WRITE,      /* must exist ("no such manifest"); migrated */
    LVD_MANIFEST_READ,       /* must exist; read only: never created, written or migrated. When
                                WAL cannot be used (a read-only folder without the -shm file) it
                                is opened immutable; a leftover write-ahead log there is an
                                error, since immutable reading would miss its transactions */
} lvd_manifest_mode;

/* Opens the manifest at path in the given mode. Fails with one line naming the file when it is
 * missing (WRITE, READ), not an SQLite database, an SQLite database of something else (tables but
 * no lvd schema version), or written by a newer lvd (user_version too high). */
int lvd_manifest_open_mode(const char *path, lvd_manifest_mode mode, lvd_manifest **out,
                           lvd_error *err);

/* lvd_manifest_open_mode(path, LVD_MANIFEST_CREATE, out, err). */
int lvd_manifest_open(const char *path, lvd_manifest **out, lvd_error *err);

/* The path the manifest was opened with. */
const char *lvd_manifest_path(const lvd_manifest *m);

/* 1 when m was opened LVD_MANIFEST_READ. */
int lvd_manifest_readonly(const lvd_manifest *m);

/* Closes the handle (NULL allowed). An open batch is rolled back. */
void lvd_manifest_close(lvd_manifest *m);

/* The underlying connection, for stage-specific statements. Owned by m. */
sqlite3 *lvd_manifest_db(lvd_manifest *m);

/* Starts a write batch (BEGIN IMMEDIATE, so the write lock is taken up front). Batches do not
 * nest. */
int lvd_manifest_begin(lvd_manifest *m, lvd_error *err);

/* Commits the open batch. */
int lvd_manifest_commit(lvd_manifest *m, lvd_error *err);

/* Rolls back the open batch, if any (safe to call when none is open). */
void lvd_manifest_rollback(lvd_manifest *m);

/* Runs one or more SQL statements that return no rows. */
int lvd_manifest_exec(lvd_manifest *m, const char *sql, lvd_error *err);

/* Prepares sql on the manifest connection; on failure fills err with SQLite's message. */
int lvd_manifest_prepare(lvd_manifest *m, const char *sql, sqlite3_stmt **stmt, lvd_error *err);

/* Fills err with "<what>: <sqlite message>" for the last failure on m; returns -1. */
int lvd_manifest_fail(lvd_manifest *m, lvd_error *err, const char *what);

/* "pool", "seed" or "eval". */
const char *lvd_role_name(lvd_source_role role);

/* Parses a role name; -1 (err filled) when it is none of the three. */
int lvd_role_parse(const char *name, lvd_source_role *role, lvd_error *err);

/* Finds the source called name, creating it with role when absent, and writes its id. Fails when
 * the source exists with another role. */
int lvd_manifest_source(lvd_manifest *m, const char *name, lvd_source_role role, int64_t *id,
                        lvd_error *err);

/* Records the start of a run of stage (e.g. "fetch") with params (serialized as JSON; NULL gives
 * {}); writes the run id. The handle holds the run's lock (see below) until the run is finished or
 * the handle closed; first, dead runs of every stage are marked interrupted (lvd_manifest_reap).
 * Needs a writable handle. */
int lvd_manifest_run_start(lvd_manifest *m, const char *stage, const cJSON *params, int64_t *run_id,
                           lvd_error *err);

/* Records the end of a run: status ("ok", "failed", ...) and counts (JSON; NULL gives {}). */
int lvd_manifest_run_finish(lvd_manifest *m, int64_t run_id, const char *status,
                            const cJSON *counts, lvd_error *err);

/* Marks runs of stage still 'running' as 'interrupted', whether their process lives or not
 * (callers hold the stage's lock). Writes how many were marked when n is not NULL. */
int lvd_manifest_runs_interrupted(lvd_manifest *m, const char *stage, int *n, lvd_error *err);

/* Locks. They are OFD byte-range locks on the database file itself (fcntl F_OFD_SETLK, far
 * beyond SQLite's lock bytes), so they follow the file's identity (device and inode): a symlink or
 * a hard link to the manifest finds the same locks, and a process that dies loses them. One
 * descriptor per database file is kept open for the life of the process (closing it would drop
 * the POSIX locks SQLite holds on the file). Locks exclude other processes and other handles of
 * this process; read-only handles take none.
 *
 * A run lock is held by the handle that started the run: a run left 'running' whose lock nobody
 * holds belongs to a process that died (kill -9, power loss). */

/* Takes the stage lock `name` ("fetch", "embed", "run", ...) until m is closed. Fails with
 * "<db>: another lvd-<name> is working on this manifest" when someone else holds it. */
int lvd_manifest_lock(lvd_manifest *m, const char *name, lvd_error *err);

/* Marks every run left 'running' whose run lock nobody holds as 'interrupted' (any stage).
 * Writes how many were marked when n is not NULL. */
int lvd_manifest_reap(lvd_manifest *m, int *n, lvd_error *err);

#endif
