/* Internals of the manifest (store/manifest.h) shared by its source files: the handle and the
 * lock bytes of the database file. */
#ifndef LVD_STORE_MANIFEST_INTERNAL_H
#define LVD_STORE_MANIFEST_INTERNAL_H

#include <stddef.h>
#include <sys/types.h>

#include "store/manifest.h"

typedef struct lock_file lock_file;

struct lvd_manifest {
    sqlite3 *db;
    char *path;
    int in_batch;
    int readonly;
    lock_file *lf; /* the database file's lock descriptor; NULL for a read-only handle */
    off_t *held;   /* lock bytes this handle holds */
    size_t n_held, cap_held;
};

/* Finds or opens the lock descriptor of the database file at path (opened O_RDWR, created when
 * create is set) and attaches it to m. */
int manifest_lock_attach(lvd_manifest *m, int create, lvd_error *err);

/* The lock byte of stage lock name, and of run id. */
off_t manifest_stage_byte(const char *name);
off_t manifest_run_byte(int64_t run_id);

/* Takes byte `at` for m: 0 taken, 1 held by someone else, -1 error (err filled). */
int manifest_lock_byte(lvd_manifest *m, off_t at, lvd_error *err);

/* Releases byte `at` when m holds it. */
void manifest_unlock_byte(lvd_manifest *m, off_t at);

/* Releases every byte m holds. */
void manifest_unlock_all(lvd_manifest *m);

/* 1 when a process or a handle holds byte `at`, 0 when nobody does, -1 on error. */
int manifest_byte_held(lvd_manifest *m, off_t at, lvd_error *err);

#endif
