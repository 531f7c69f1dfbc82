/* Bookkeeping shared by embedding and import (curate/stages/embed_stage_internal.h): the lock, the output
 * folder, crash recovery, a model's embedding settings and recording a written file. */
#include "curate/stages/embed_stage_internal.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *stage_base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

void stage_job_free(stage_job *job)
{
    if (!job)
        return;
    for (size_t i = 0; i < job->n; i++)
        free(job->items[i].member);
    free(job->items);
    free(job->shard_path);
    free(job);
}

static int make_dir(const char *path, lvd_error *err)
{
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        return lvd_fail(err, "%s: cannot create folder: %s", path, strerror(errno));
    return 0;
}

int stage_model_dir(const char *db, const char *out_dir, const char *model, char dir[PATH_MAX],
                    lvd_error *err)
{
    char base[PATH_MAX];
    if (out_dir) {
        snprintf(base, sizeof base, "%s", out_dir);
    } else {
        const char *slash = strrchr(db, '/');
        int n = slash ? (int)(slash - db) : 1;
        snprintf(base, sizeof base, "%.*s/embeddings", n, slash ? db : ".");
    }
    if (make_dir(base, err) != 0)
        return -1;
    char abs[PATH_MAX];
    if (!realpath(base, abs))
        return lvd_fail(err, "%s: %s", base, strerror(errno));
    if (snprintf(dir, PATH_MAX, "%s/%s", abs, model) >= PATH_MAX)
        return lvd_fail(err, "%s: path too long", abs);
    return make_dir(dir, err);
}

/* The run id in a name "<anything>.r<digits>.npy", or -1. */
static int64_t file_run(const char *name)
{
    size_t n = strlen(name);
    if (n < 7 || strcmp(name + n - 4, ".npy") != 0)
        return -1;
    size_t end = n - 4, i = end;
    while (i > 0 && name[i - 1] >= '0' && name[i - 1] <= '9')
        i--;
    if (i == end || i < 2 || name[i - 1] != 'r' || name[i - 2] != '.')
        return -1;
    return strtoll(name + i, NULL, 10);
}

/* 1 when path is recorded in embedding_files or run is still running (another stage's file). */
static int keep_file(lvd_manifest *m, const char *path, int64_t run, int *keep, lvd_error *err)
{
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m,
                             "SELECT (SELECT COUNT(*) FROM embedding_files WHERE path = ?1) + "
                             "(SELECT COUNT(*) FROM runs WHERE id = ?2 AND "
                             "(status = 'running' OR stage NOT IN ('embed', 'embed-import')))",
                             &st, err) != 0)
        return -1;
    sqlite3_bind_text(st, 1, path, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, run);
    int rc = sqlite3_step(st);
    *keep = sqlite3_column_int(st, 0) > 0;
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : lvd_manifest_fail(m, err, "checking output files");
}

static int remove_file(const char *path, lvd_error *err)
{
    if (unlink(path) != 0 && errno != ENOENT)
        return lvd_fail(err, "%s: cannot remove: %s", path, strerror(errno));
    return 0;
}

int stage_recover(lvd_manifest *m, const char *dir, lvd_error *err)
{
    if (lvd_manifest_reap(m, NULL, err) != 0)
        return -1;
    DIR *d = opendir(dir);
    if (!d)
        return lvd_fail(err, "%s: %s", dir, strerror(errno));
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        char path[PATH_MAX];
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path)
            continue;
        if (strstr(e->d_name, ".npy.tmp.")) {
            rc = remove_file(path, err);
            continue;
        }
        int64_t run = file_run(e->d_name);
        int keep = 1;
        if (run >= 0)
            rc = keep_file(m, path, run, &keep, err);
        if (rc == 0 && !keep)
            rc = remove_file(path, err);
    }
    closedir(d);
    return rc;
}

static cJSON *settings_json(const stage_settings *s)
{
    cJSON *j = cJSON_CreateObject();
    if (s->imported) {
        cJSON_AddBoolToObject(j, "imported", 1);
    } else {
        cJSON_AddNumberToObject(j, "resize", s->resize);
        cJSON_AddNumberToObject(j, "crop", s->crop);
    }
    cJSON_AddBoolToObject(j, "normalize", s->normalize);
    return j;
}

int stage_settings_read(lvd_manifest *m, int64_t model_id, stage_settings *s, int *recorded,
                        lvd_error *err)
{
    memset(s, 0, sizeof *s);
    *recorded = 0;
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m, "SELECT embed_settings FROM models WHERE id = ?1", &st, err) != 0)
        return -1;
    sqlite3_bind_int64(st, 1, model_id);
    int rc = sqlite3_step(st);
    const char *text = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
    int present = text != NULL;
    cJSON *j = present ? cJSON_Parse(text) : NULL;
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW)
        return lvd_manifest_fail(m, err, "reading the model's embedding settings");
    if (!present)
        return 0;
    const cJSON *imported = cJSON_GetObjectItemCaseSensitive(j, "imported");
    const cJSON *resize = cJSON_GetObjectItemCaseSensitive(j, "resize");
    const cJSON *crop = cJSON_GetObjectItemCaseSensitive(j, "crop");
    const cJSON *normalize = cJSON_GetObjectItemCaseSensitive(j, "normalize");
    *recorded = 1;
    s->imported = cJSON_IsTrue(imported);
    s->resize = cJSON_IsNumber(resize) ? resize->valueint : 0;
    s->crop = cJSON_IsNumber(crop) ? crop->valueint : 0;
    s->normalize = cJSON_IsTrue(normalize);
    int bad = !cJSON_IsBool(normalize) ||
              (!s->imported && (!cJSON_IsNumber(resize) || !cJSON_IsNumber(crop)));
    cJSON_Delete(j);
    if (bad)
        return lvd_fail(err, "model %lld: unreadable embed_settings in the manifest",
                        (long long)model_id);
    return 0;
}

int stage_settings_record(lvd_manifest *m, int64_t model_id, const stage_settings *s,
                          lvd_error *err)
{
    cJSON *j = settings_json(s);
    char *text = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    sqlite3_stmt *st;
    if (!text)
        return lvd_fail(err, "out of memory");
    if (lvd_manifest_prepare(m,
                             "UPDATE models SET embed_settings = ?2 WHERE id = ?1 AND "
                             "embed_settings IS NULL",
                             &st, err) != 0) {
        free(text);
        return -1;
    }
    sqlite3_bind_int64(st, 1, model_id);
    sqlite3_bind_text(st, 2, text, -1, free);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : lvd_manifest_fail(m, err, "recording embedding settings");
}

int stage_settings_equal(const stage_settings *a, const stage_settings *b)
{
    if (a->imported != b->imported || !a->normalize != !b->normalize)
        return 0;
    return a->imported || (a->resize == b->resize && a->crop == b->crop);
}

void stage_settings_describe(const stage_settings *s, char *buf, size_t cap)
{
    if (s->imported)
        snprintf(buf, cap, "lvd-embed --import of %s rows",
                 s->normalize ? "L2-normalized" : "unnormalized");
    else
        snprintf(buf, cap, "--resize %d --crop %d%s", s->resize, s->crop,
                 s->normalize ? "" : " --no-normalize");
}

static int insert_file(lvd_manifest *m, int64_t model_id, int64_t run_id, const char *path,
                       int64_t rows, int cols, int normalized, int64_t *file_id, lvd_error *err)
{
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m,
                             "INSERT INTO embedding_files (model_id, path, rows, cols, normalized, "
                             "run_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                             &st, err) != 0)
        return -1;
    sqlite3_bind_int64(st, 1, model_id);
    sqlite3_bind_text(st, 2, path, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, rows);
    sqlite3_bind_int(st, 4, cols);
    sqlite3_bind_int(st, 5, normalized);
    sqlite3_bind_int64(st, 6, run_id);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return lvd_manifest_fail(m, err, "recording an embedding file");
    *file_id = sqlite3_last_insert_rowid(lvd_manifest_db(m));
    return 0;
}

int stage_record_file(lvd_manifest *m, int64_t model_id, int64_t run_id, const char *path,
                      int64_t rows, int cols, int normalized, const int64_t *ids, lvd_error *err)
{
    int64_t file_id = 0;
    if (insert_file(m, model_id, run_id, path, rows, cols, normalized, &file_id, err) != 0)
        return -1;
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m,
                             "INSERT INTO embeddings (image_id, model_id, file_id, row) "
                             "VALUES (?1, ?2, ?3, ?4)",
                             &st, err) != 0)
        return -1;
    int rc = SQLITE_DONE;
    for (int64_t i = 0; i < rows && rc == SQLITE_DONE; i++) {
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, ids[i]);
        sqlite3_bind_int64(st, 2, model_id);
        sqlite3_bind_int64(st, 3, file_id);
        sqlite3_bind_int64(st, 4, i);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return lvd_manifest_fail(m, err, "recording embeddings");
    return 0;
}
