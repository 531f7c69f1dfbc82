/* lvd_embed_import (curate/stages/embed_stage.h): attaching embeddings computed elsewhere to existing images. */
#include "curate/stages/embed_stage_internal.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/npy.h"
#include "store/tensors.h"

/* The image ids named by the lines of the ids file. */
typedef struct id_list {
    int64_t *ids;
    size_t n, cap;
} id_list;

static int is_number(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++) {
        if (!isdigit((unsigned char)*s))
            return 0;
    }
    return 1;
}

/* Resolves one line (an image id, or a url of source_id / of any source) to an image id. */
static int resolve_line(lvd_manifest *m, sqlite3_stmt *by_id, sqlite3_stmt *by_url,
                        const char *line, int64_t *id, const char *file, long lineno,
                        lvd_error *err)
{
    sqlite3_stmt *st = is_number(line) ? by_id : by_url;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, line, -1, SQLITE_TRANSIENT);
    int n = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && n < 2) {
        *id = sqlite3_column_int64(st, 0);
        n++;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return lvd_manifest_fail(m, err, "looking up an image");
    if (n == 0)
        return lvd_fail(err, "%s:%ld: no image with %s '%s'", file, lineno,
                        st == by_id ? "id" : "url", line);
    if (n > 1)
        return lvd_fail(err, "%s:%ld: url '%s' is in several sources (use --source)", file, lineno,
                        line);
    return 0;
}

static int push_id(id_list *l, int64_t id)
{
    if (l->n == l->cap) {
        size_t nc = l->cap ? 2 * l->cap : 1024;
        int64_t *ids = realloc(l->ids, nc * sizeof *ids);
        if (!ids)
            return -1;
        l->ids = ids;
        l->cap = nc;
    }
    l->ids[l->n++] = id;
    return 0;
}

static int read_lines(lvd_manifest *m, FILE *f, const lvd_import_opts *o, int64_t source_id,
                      sqlite3_stmt *by_id, sqlite3_stmt *by_url, id_list *out, lvd_error *err)
{
    sqlite3_bind_int64(by_url, 2, source_id);
    if (source_id < 0)
        sqlite3_bind_null(by_url, 2);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long lineno = 0;
    int rc = 0;
    while (rc == 0 && (len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        int64_t id = 0;
        if (len == 0)
            rc = lvd_fail(err, "%s:%ld: empty line (want an image id or url)", o->ids, lineno);
        else
            rc = resolve_line(m, by_id, by_url, line, &id, o->ids, lineno, err);
        if (rc == 0 && push_id(out, id) != 0)
            rc = lvd_fail(err, "out of memory");
    }
    free(line);
    if (rc == 0 && ferror(f))
        rc = lvd_fail(err, "%s: read error", o->ids);
    return rc;
}

static int read_ids(lvd_manifest *m, const lvd_import_opts *o, int64_t source_id, id_list *out,
                    lvd_error *err)
{
    FILE *f = fopen(o->ids, "r");
    if (!f)
        return lvd_fail(err, "%s: %s", o->ids, strerror(errno));
    sqlite3_stmt *by_id = NULL, *by_url = NULL;
    int rc = lvd_manifest_prepare(m, "SELECT id FROM images WHERE id = CAST(?1 AS INTEGER)", &by_id,
                                  err);
    if (rc == 0)
        rc = lvd_manifest_prepare(
            m, "SELECT id FROM images WHERE url = ?1 AND (?2 IS NULL OR source_id = ?2)", &by_url,
            err);
    if (rc == 0)
        rc = read_lines(m, f, o, source_id, by_id, by_url, out, err);
    sqlite3_finalize(by_id);
    sqlite3_finalize(by_url);
    fclose(f);
    return rc;
}

typedef struct id_line {
    int64_t id;
    size_t line;
} id_line;

static int cmp_id_line(const void *a, const void *b)
{
    const id_line *x = a, *y = b;
    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    return x->line < y->line ? -1 : x->line > y->line;
}

/* Each image at most once in the file, and not yet embedded by the model (model_id < 0: new). */
static int check_unique(lvd_manifest *m, const lvd_import_opts *o, const id_list *l,
                        int64_t model_id, lvd_error *err)
{
    id_line *s = malloc((l->n ? l->n : 1) * sizeof *s);
    if (!s)
        return lvd_fail(err, "out of memory");
    for (size_t i = 0; i < l->n; i++)
        s[i] = (id_line){l->ids[i], i};
    qsort(s, l->n, sizeof *s, cmp_id_line);
    int rc = 0;
    for (size_t i = 1; i < l->n && rc == 0; i++) {
        if (s[i].id == s[i - 1].id)
            rc = lvd_fail(err, "%s:%zu: image %lld is already on line %zu", o->ids, s[i].line + 1,
                          (long long)s[i].id, s[i - 1].line + 1);
    }
    free(s);
    sqlite3_stmt *st;
    if (rc != 0 || model_id < 0 ||
        lvd_manifest_prepare(m, "SELECT 1 FROM embeddings WHERE model_id = ?1 AND image_id = ?2",
                             &st, err) != 0)
        return rc;
    for (size_t i = 0; i < l->n && rc == 0; i++) {
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, model_id);
        sqlite3_bind_int64(st, 2, l->ids[i]);
        int r = sqlite3_step(st);
        if (r == SQLITE_ROW)
            rc = lvd_fail(err, "%s:%zu: image %lld already has an embedding of model '%s'", o->ids,
                          i + 1, (long long)l->ids[i], o->model);
        else if (r != SQLITE_DONE)
            rc = lvd_manifest_fail(m, err, "looking up embeddings");
    }
    sqlite3_finalize(st);
    return rc;
}

/* 1 when every row has unit L2 norm (within float rounding). */
static int rows_normalized(const float *x, int64_t rows, int64_t cols)
{
    for (int64_t i = 0; i < rows; i++) {
        double ss = 0;
        for (int64_t j = 0; j < cols; j++)
            ss += (double)x[i * cols + j] * x[i * cols + j];
        if (fabs(sqrt(ss) - 1.0) > 1e-4)
            return 0;
    }
    return 1;
}

/* Where the file will be: itself when already in dir, else a copy named after it and the run. */
static int place_file(const lvd_import_opts *o, const char *dir, int64_t run_id,
                      const lvd_tensor *t, char path[PATH_MAX], int *copied, lvd_error *err)
{
    char abs[PATH_MAX];
    if (!realpath(o->npy, abs))
        return lvd_fail(err, "%s: %s", o->npy, strerror(errno));
    const char *slash = strrchr(abs, '/');
    *copied = 0;
    if ((size_t)(slash - abs) == strlen(dir) && strncmp(abs, dir, strlen(dir)) == 0) {
        snprintf(path, PATH_MAX, "%s", abs);
        return 0;
    }
    const char *name = slash + 1;
    size_t len = strlen(name);
    if (len > 4 && strcmp(name + len - 4, ".npy") == 0)
        len -= 4;
    if (snprintf(path, PATH_MAX, "%s/%.*s.r%lld.npy", dir, (int)len, name, (long long)run_id) >=
        PATH_MAX)
        return lvd_fail(err, "%s: output path too long", dir);
    *copied = 1;
    return lvd_npy_write(path, t->data, 2, t->shape, err);
}

typedef struct import_ctx {
    const lvd_import_opts *o;
    lvd_manifest *m;
    const lvd_tensor *t;
    id_list ids;
    lvd_model_record model;
    int model_found;
    char dir[PATH_MAX];
    int64_t run_id;
    stage_settings settings; /* imported, normalized or not */
} import_ctx;

/* Every row has finite values and is not all zeros: such a row has no direction, and would
 * break every later stage of the model. Errors name the line and the image. */
static int check_rows(const import_ctx *c, lvd_error *err)
{
    const float *x = c->t->data;
    int64_t rows = c->t->shape[0], cols = c->t->shape[1];
    for (int64_t i = 0; i < rows; i++) {
        double ss = 0;
        int finite = 1;
        for (int64_t j = 0; j < cols; j++) {
            float v = x[i * cols + j];
            finite &= isfinite(v) != 0;
            ss += (double)v * v;
        }
        if (!finite || ss == 0)
            return lvd_fail(err, "%s: row %lld (line %lld of %s, image %lld) %s", c->o->npy,
                            (long long)i, (long long)i + 1, c->o->ids, (long long)c->ids.ids[i],
                            finite ? "is all zeros" : "holds NaN or infinite values");
    }
    return 0;
}

/* An existing model's rows must be made the same way as the imported ones. */
static int check_settings(import_ctx *c, lvd_error *err)
{
    c->settings = (stage_settings){
        .imported = 1, .normalize = rows_normalized(c->t->data, c->t->shape[0], c->t->shape[1])};
    stage_settings had;
    int recorded = 0;
    if (c->model_found && stage_settings_read(c->m, c->model.id, &had, &recorded, err) != 0)
        return -1;
    if (!recorded || stage_settings_equal(&had, &c->settings))
        return 0;
    char was[96], now[96];
    stage_settings_describe(&had, was, sizeof was);
    stage_settings_describe(&c->settings, now, sizeof now);
    return lvd_fail(err,
                    "model '%s' has embeddings made with %s; these are %s, and rows made "
                    "otherwise are not comparable: import them under another model name",
                    c->o->model, was, now);
}

static int record(import_ctx *c, const char *path, lvd_error *err)
{
    int rc = lvd_manifest_begin(c->m, err);
    if (rc == 0 && !c->model_found)
        rc = lvd_model_add_external(c->m, c->o->model, (int)c->t->shape[1], &c->model, err);
    if (rc == 0)
        rc = stage_settings_record(c->m, c->model.id, &c->settings, err);
    if (rc == 0)
        rc = stage_record_file(c->m, c->model.id, c->run_id, path, c->t->shape[0],
                               (int)c->t->shape[1], c->settings.normalize, c->ids.ids, err);
    if (rc == 0)
        rc = lvd_manifest_commit(c->m, err);
    if (rc != 0)
        lvd_manifest_rollback(c->m);
    return rc;
}

static int import_run(import_ctx *c, lvd_error *err)
{
    cJSON *params = cJSON_CreateObject();
    cJSON_AddStringToObject(params, "model", c->o->model);
    cJSON_AddStringToObject(params, "npy", c->o->npy);
    cJSON_AddStringToObject(params, "ids", c->o->ids);
    if (lvd_kit_run_start(c->m, "embed-import", params, &c->run_id, err) != 0)
        return -1;
    char path[PATH_MAX];
    int copied = 0;
    int rc = place_file(c->o, c->dir, c->run_id, c->t, path, &copied, err);
    if (rc == 0)
        rc = record(c, path, err);
    if (rc != 0 && copied)
        unlink(path);
    cJSON *counts = cJSON_CreateObject();
    cJSON_AddNumberToObject(counts, "rows", rc == 0 ? (double)c->t->shape[0] : 0);
    rc = lvd_kit_run_finish(c->m, c->run_id, rc, NULL, counts, err);
    if (rc == 0 && c->o->log)
        fprintf(c->o->log,
                "embed: run %lld: imported %lld rows of %lld values for model '%s' into %s\n",
                (long long)c->run_id, (long long)c->t->shape[0], (long long)c->t->shape[1],
                c->o->model, path);
    return rc;
}

/* Checks the file and the lines, then imports. */
static int import_checked(import_ctx *c, lvd_error *err)
{
    const lvd_import_opts *o = c->o;
    if (c->t->ndim != 2 || c->t->shape[0] < 1 || c->t->shape[1] < 1 || c->t->shape[1] > INT32_MAX)
        return lvd_fail(err, "%s: want a (rows, dim) float32 array with rows, dim >= 1", o->npy);
    if (lvd_model_name_check(o->model, err) != 0 ||
        lvd_model_find(c->m, o->model, &c->model, &c->model_found, err) != 0)
        return -1;
    if (c->model_found && c->model.dim != c->t->shape[1])
        return lvd_fail(err, "%s: rows have %lld values, model '%s' has dim %d", o->npy,
                        (long long)c->t->shape[1], o->model, c->model.dim);
    int64_t source_id = -1;
    if (o->source && lvd_source_find(c->m, o->source, -1, &source_id, NULL, err) != 0)
        return -1;
    if (read_ids(c->m, o, source_id, &c->ids, err) != 0)
        return -1;
    if ((int64_t)c->ids.n != c->t->shape[0])
        return lvd_fail(err, "%s has %lld rows but %s has %zu lines", o->npy,
                        (long long)c->t->shape[0], o->ids, c->ids.n);
    if (check_rows(c, err) != 0 || check_settings(c, err) != 0)
        return -1;
    if (check_unique(c->m, o, &c->ids, c->model_found ? c->model.id : -1, err) != 0 ||
        stage_model_dir(o->db, o->out_dir, o->model, c->dir, err) != 0 ||
        stage_recover(c->m, c->dir, err) != 0)
        return -1;
    return import_run(c, err);
}

int lvd_embed_import(const lvd_import_opts *o, int64_t *rows, lvd_error *err)
{
    *rows = 0;
    if (!o->db || !o->model || !o->npy || !o->ids)
        return lvd_fail(err, "import wants a manifest, a model name, an .npy file and an ids file");
    import_ctx c = {.o = o};
    lvd_tensors *ts = NULL;
    if (lvd_tensors_open(o->npy, &ts, err) != 0)
        return -1;
    c.t = lvd_tensors_find(ts, "array");
    if (!c.t) {
        lvd_tensors_close(ts);
        return lvd_fail(err, "%s: not a .npy array", o->npy);
    }
    int rc = lvd_kit_open(o->db, LVD_MANIFEST_WRITE, "embed", &c.m, err);
    if (rc == 0)
        rc = import_checked(&c, err);
    if (rc == 0)
        *rows = c.t->shape[0];
    lvd_manifest_close(c.m);
    free(c.ids.ids);
    lvd_tensors_close(ts);
    return rc;
}
