/* The index stage of curate/stages/index_stage.h: building, saving and recording an index, and
 * opening a recorded one.
 *
 * Index files: a run writes its index into "<final>.tmp.<pid>", created exclusively and locked
 * (flock) for the rest of the run, then renames it to its final name; the lock follows the file,
 * so an index file whose lock can be taken belongs to no live run. Before building, a run
 * removes every index file of the manifest that no live run holds and no record references:
 * temporary files of killed runs, files renamed but never recorded (a kill before the commit),
 * and files of replaced indexes left by a kill or by a concurrent run. The indexes to replace are
 * read inside the transaction that replaces them, so concurrent runs each remove what they
 * replaced. */
#include "curate/stages/index_stage.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "curate/stages/embeddings_read.h"

int lvd_stage_build_index(const float *x, int64_t n, int d, const char *factory,
                          size_t memory_budget, size_t nprobe, lvd_index **out, char *used,
                          size_t used_size, lvd_error *err)
{
    char chosen[128];
    if (!factory) {
        if (lvd_index_choose(n, d, memory_budget, chosen, sizeof chosen, err))
            return -1;
        factory = chosen;
    }
    lvd_index *ix;
    if (lvd_index_create(&ix, d, factory, err))
        return -1;
    int rc = lvd_index_train_sample(ix, x, n, err);
    if (rc == 0)
        rc = lvd_index_add(ix, n, x, err);
    size_t nlist = lvd_index_nlist(ix);
    if (rc == 0 && nlist)
        rc = lvd_index_set_nprobe(ix, nprobe < nlist ? (nprobe ? nprobe : 1) : nlist, err);
    if (rc) {
        lvd_index_free(ix);
        return lvd_error_prefix(err, "index '%s' over %lld rows", factory, (long long)n);
    }
    if (used)
        snprintf(used, used_size, "%s", factory);
    *out = ix;
    return 0;
}

static void bind_source(sqlite3_stmt *st, int i, int64_t source_id)
{
    if (source_id)
        sqlite3_bind_int64(st, i, source_id);
    else
        sqlite3_bind_null(st, i);
}

/* The index file's absolute path beside the manifest. */
static int index_path(const char *db, int64_t model_id, int64_t source_id, int64_t run, char *out,
                      size_t size, lvd_error *err)
{
    char abs[PATH_MAX];
    if (!realpath(db, abs))
        return lvd_fail(err, "%s: cannot resolve the manifest path", db);
    int len = source_id ? snprintf(out, size, "%s.index-m%lld-s%lld-r%lld.faiss", abs,
                                   (long long)model_id, (long long)source_id, (long long)run)
                        : snprintf(out, size, "%s.index-m%lld-r%lld.faiss", abs,
                                   (long long)model_id, (long long)run);
    return len < 0 || (size_t)len >= size ? lvd_fail(err, "%s: path too long", abs) : 0;
}

/* Collects the paths of the indexes about to be replaced (so their files go after commit). */
static int old_paths(lvd_manifest *m, int64_t model_id, int64_t source_id, char ***paths, int *n,
                     lvd_error *err)
{
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m, "SELECT path FROM indexes WHERE model_id = ?1 AND source_id IS ?2",
                             &st, err))
        return -1;
    sqlite3_bind_int64(st, 1, model_id);
    bind_source(st, 2, source_id);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        char **p = realloc(*paths, (size_t)(*n + 1) * sizeof *p);
        if (!p)
            break;
        *paths = p;
        p[*n] = strdup((const char *)sqlite3_column_text(st, 0));
        if (!p[*n])
            break;
        (*n)++;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return rc == SQLITE_ROW ? lvd_fail(err, "out of memory")
                                : lvd_manifest_fail(m, err, "indexes");
    return 0;
}

static int insert_rows(lvd_manifest *m, int64_t index_id, const lvd_embeddings *e, lvd_error *err)
{
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m,
                             "INSERT INTO index_rows (index_id, row, image_id) "
                             "VALUES (?1, ?2, ?3)",
                             &st, err))
        return -1;
    int rc = 0;
    for (int64_t i = 0; i < e->n && rc == 0; i++) {
        sqlite3_bind_int64(st, 1, index_id);
        sqlite3_bind_int64(st, 2, i);
        sqlite3_bind_int64(st, 3, e->image_id[i]);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = lvd_manifest_fail(m, err, "recording the index rows");
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    return rc;
}

/* Replaces the record of the model/source index by the new one, in one transaction; the paths
 * of the replaced ones (read in it) are left in *old for removal after the commit. */
static int record_index(lvd_manifest *m, int64_t model_id, int64_t source_id, int64_t run,
                        const lvd_embeddings *e, lvd_index_stage_result *res, char ***old,
                        int *n_old, lvd_error *err)
{
    sqlite3_stmt *st;
    if (lvd_manifest_begin(m, err))
        return -1;
    if (old_paths(m, model_id, source_id, old, n_old, err))
        goto fail;
    if (lvd_manifest_prepare(m, "DELETE FROM indexes WHERE model_id = ?1 AND source_id IS ?2", &st,
                             err))
        goto fail;
    sqlite3_bind_int64(st, 1, model_id);
    bind_source(st, 2, source_id);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        lvd_manifest_fail(m, err, "replacing the index record");
        goto fail;
    }
    if (lvd_manifest_prepare(m,
                             "INSERT INTO indexes (model_id, source_id, path, factory, rows, "
                             "dim, run_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                             &st, err))
        goto fail;
    sqlite3_bind_int64(st, 1, model_id);
    bind_source(st, 2, source_id);
    sqlite3_bind_text(st, 3, res->path, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, res->factory, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 5, e->n);
    sqlite3_bind_int(st, 6, e->dim);
    sqlite3_bind_int64(st, 7, run);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        lvd_manifest_fail(m, err, "recording the index");
        goto fail;
    }
    res->index_id = sqlite3_last_insert_rowid(lvd_manifest_db(m));
    if (insert_rows(m, res->index_id, e, err) || lvd_manifest_commit(m, err))
        goto fail;
    return 0;
fail:
    lvd_manifest_rollback(m);
    return -1;
}

static const lvd_kit_rows index_rows = {.where = "?2 = 0 OR i.source_id = ?2"};

/* An index file being written: "<final>.tmp.<pid>", open and locked. */
typedef struct index_claim {
    int fd;
    char tmp[PATH_MAX + 32];
} index_claim;

static int same_file(int fd, const char *path)
{
    struct stat a, b;
    return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
}

/* Creates and locks the temporary file of path. */
static int claim(const char *path, index_claim *c, lvd_error *err)
{
    c->fd = -1;
    if (snprintf(c->tmp, sizeof c->tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof c->tmp)
        return lvd_fail(err, "%s: path too long", path);
    for (int tries = 0; tries < 16; tries++) {
        int fd = open(c->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0 && errno == EEXIST) { /* a dead process with this pid left it */
            unlink(c->tmp);
            continue;
        }
        if (fd < 0)
            return lvd_fail(err, "%s: cannot create: %s", c->tmp, strerror(errno));
        /* A sweep that took the file before the lock removed it: create it again. */
        if (flock(fd, LOCK_EX) == 0 && same_file(fd, c->tmp)) {
            c->fd = fd;
            return 0;
        }
        close(fd);
    }
    return lvd_fail(err, "%s: cannot create and lock it", c->tmp);
}

/* Writes the index into the claimed file and renames it to path; the lock goes with it. */
static int save_claimed(const lvd_index *ix, index_claim *c, const char *path, lvd_error *err)
{
    int fd = dup(c->fd); /* the stream's close must not release the lock */
    FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (!f) {
        if (fd >= 0)
            close(fd);
        return lvd_fail(err, "%s: %s", c->tmp, strerror(errno));
    }
    int rc = lvd_index_write(ix, f, c->tmp, err);
    if (fclose(f) != 0 && rc == 0)
        rc = lvd_fail(err, "%s: close failed: %s", c->tmp, strerror(errno));
    if (rc == 0 && rename(c->tmp, path) != 0)
        rc = lvd_fail(err, "%s: cannot rename %s over it: %s", path, c->tmp, strerror(errno));
    return rc;
}

/* Unlocks the claimed file, removing it when it was not renamed into place. */
static void release(index_claim *c)
{
    if (c->fd < 0)
        return;
    if (same_file(c->fd, c->tmp))
        unlink(c->tmp);
    close(c->fd);
    c->fd = -1;
}

static int recorded(lvd_manifest *m, const char *path, int *yes, lvd_error *err)
{
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m, "SELECT COUNT(*) FROM indexes WHERE path = ?1", &st, err))
        return -1;
    sqlite3_bind_text(st, 1, path, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    *yes = rc == SQLITE_ROW && sqlite3_column_int(st, 0) > 0;
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : lvd_manifest_fail(m, err, "reading indexes");
}

/* Removes the index files of the manifest db that no live run holds and no record references. */
static int sweep(lvd_manifest *m, const char *db, lvd_error *err)
{
    char abs[PATH_MAX], dir_buf[PATH_MAX], base_buf[PATH_MAX], prefix[PATH_MAX + 8];
    if (!realpath(db, abs))
        return lvd_fail(err, "%s: cannot resolve the manifest path", db);
    snprintf(dir_buf, sizeof dir_buf, "%s", abs);
    snprintf(base_buf, sizeof base_buf, "%s", abs);
    const char *dir = dirname(dir_buf);
    snprintf(prefix, sizeof prefix, "%s.index-", basename(base_buf));
    DIR *d = opendir(dir);
    if (!d)
        return lvd_fail(err, "%s: cannot list: %s", dir, strerror(errno));
    int rc = 0;
    size_t np = strlen(prefix);
    for (struct dirent *e; rc == 0 && (e = readdir(d));) {
        const char *name = e->d_name;
        size_t n = strlen(name);
        int tmp = strstr(name, ".faiss.tmp.") != NULL;
        if (strncmp(name, prefix, np) != 0 || (!tmp && (n < 6 || strcmp(name + n - 6, ".faiss"))))
            continue;
        char path[PATH_MAX];
        if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
            continue;
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0)
            continue;
        int yes = 0;
        if (flock(fd, LOCK_EX | LOCK_NB) == 0 && same_file(fd, path)) {
            if (!tmp)
                rc = recorded(m, path, &yes, err);
            if (rc == 0 && !yes)
                unlink(path);
        }
        close(fd);
    }
    closedir(d);
    return rc;
}

static int build_and_record(lvd_manifest *m, const lvd_index_stage_options *o, int64_t model_id,
                            int dim, int64_t source_id, int64_t run, lvd_index_stage_result *res,
                            lvd_error *err)
{
    lvd_embeddings e;
    if (lvd_embeddings_read(m, model_id, &index_rows, &source_id, 1, dim, &e, err))
        return -1;
    lvd_index *ix = NULL;
    char **old = NULL;
    int n_old = 0;
    int rc = -1;
    index_claim c = {.fd = -1};
    if (e.n == 0)
        lvd_fail(err, "model '%s' has no embeddings%s%s", o->model, o->source ? " in source " : "",
                 o->source ? o->source : "");
    else if (index_path(o->db, model_id, source_id, run, res->path, sizeof res->path, err) == 0 &&
             claim(res->path, &c, err) == 0 &&
             lvd_stage_build_index(e.x, e.n, dim, o->factory, o->memory_budget, o->nprobe, &ix,
                                   res->factory, sizeof res->factory, err) == 0 &&
             save_claimed(ix, &c, res->path, err) == 0) {
        rc = record_index(m, model_id, source_id, run, &e, res, &old, &n_old, err);
        if (rc)
            unlink(res->path);
    }
    for (int i = 0; i < n_old; i++) {
        if (rc == 0 && strcmp(old[i], res->path) != 0)
            unlink(old[i]);
        free(old[i]);
    }
    free(old);
    release(&c);
    res->rows = e.n;
    lvd_index_free(ix);
    lvd_embeddings_free(&e);
    return rc;
}

int lvd_index_stage_run(lvd_manifest *m, const lvd_index_stage_options *o,
                        lvd_index_stage_result *res, lvd_error *err)
{
    memset(res, 0, sizeof *res);
    int64_t model_id, source_id, run;
    int dim;
    if (lvd_embeddings_model(m, o->model, &model_id, &dim, err) ||
        lvd_source_find(m, o->source, -1, &source_id, NULL, err))
        return -1;
    cJSON *params = cJSON_CreateObject();
    cJSON_AddStringToObject(params, "model", o->model);
    if (o->source)
        cJSON_AddStringToObject(params, "source", o->source);
    if (o->factory)
        cJSON_AddStringToObject(params, "factory", o->factory);
    cJSON_AddNumberToObject(params, "memory_budget", (double)o->memory_budget);
    cJSON_AddNumberToObject(params, "nprobe", (double)o->nprobe);
    if (lvd_kit_run_start(m, "index", params, &run, err))
        return -1;
    int rc = sweep(m, o->db, err);
    if (rc == 0)
        rc = build_and_record(m, o, model_id, dim, source_id, run, res, err);
    cJSON *counts = cJSON_CreateObject();
    cJSON_AddNumberToObject(counts, "rows", (double)res->rows);
    cJSON_AddStringToObject(counts, "factory", res->factory);
    return lvd_kit_run_finish(m, run, rc, NULL, counts, err);
}

static int load_id_map(lvd_manifest *m, int64_t index_id, lvd_stage_index *si, lvd_error *err)
{
    si->image_id = calloc((size_t)(si->rows > 0 ? si->rows : 1), sizeof *si->image_id);
    if (!si->image_id)
        return lvd_fail(err, "out of memory for %lld index rows", (long long)si->rows);
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m, "SELECT row, image_id FROM index_rows WHERE index_id = ?1", &st,
                             err))
        return -1;
    sqlite3_bind_int64(st, 1, index_id);
    int64_t seen = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t row = sqlite3_column_int64(st, 0);
        if (row < 0 || row >= si->rows)
            break;
        si->image_id[row] = sqlite3_column_int64(st, 1);
        seen++;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE || seen != si->rows)
        return lvd_fail(err, "index %lld: id-map does not match its %lld rows", (long long)index_id,
                        (long long)si->rows);
    return 0;
}

int lvd_stage_index_open(lvd_manifest *m, int64_t model_id, const char *source,
                         lvd_stage_index *out, lvd_error *err)
{
    memset(out, 0, sizeof *out);
    int64_t source_id;
    if (lvd_source_find(m, source, -1, &source_id, NULL, err))
        return -1;
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m,
                             "SELECT id, path, rows FROM indexes WHERE model_id = ?1 AND "
                             "source_id IS ?2 ORDER BY id DESC LIMIT 1",
                             &st, err))
        return -1;
    sqlite3_bind_int64(st, 1, model_id);
    bind_source(st, 2, source_id);
    int64_t index_id = 0;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        index_id = sqlite3_column_int64(st, 0);
        snprintf(out->path, sizeof out->path, "%s", (const char *)sqlite3_column_text(st, 1));
        out->rows = sqlite3_column_int64(st, 2);
    }
    sqlite3_finalize(st);
    if (rc == SQLITE_DONE)
        return lvd_fail(err, "no index of this model%s%s is recorded: run lvd-index first",
                        source ? " over source " : "", source ? source : "");
    if (rc != SQLITE_ROW)
        return lvd_manifest_fail(m, err, "reading indexes");
    if (load_id_map(m, index_id, out, err) || lvd_index_load(&out->index, out->path, err)) {
        lvd_stage_index_close(out);
        return -1;
    }
    if (lvd_index_count(out->index) != out->rows) {
        lvd_fail(err, "%s: holds %lld rows, the manifest records %lld", out->path,
                 (long long)lvd_index_count(out->index), (long long)out->rows);
        lvd_stage_index_close(out);
        return -1;
    }
    return 0;
}

void lvd_stage_index_close(lvd_stage_index *si)
{
    if (!si)
        return;
    lvd_index_free(si->index);
    free(si->image_id);
    memset(si, 0, sizeof *si);
}
