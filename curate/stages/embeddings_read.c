/* lvd_embeddings_read of curate/stages/embeddings_read.h: the kit's selection, then each file once. */
#include "curate/stages/embeddings_read.h"

#include <stdlib.h>
#include <string.h>

#include "index/index.h"
#include "store/tensors.h"

/* One selected row before the files are read: where it lives and where it goes. */
typedef struct pending_row {
    int64_t file; /* index into the list of distinct paths */
    int64_t row;
    int64_t slot;
} pending_row;

typedef struct selection {
    pending_row *rows;
    char **paths;
    int64_t n_rows, cap_rows, n_paths, cap_paths;
} selection;

int lvd_embeddings_model(lvd_manifest *m, const char *name, int64_t *model_id, int *dim,
                         lvd_error *err)
{
    lvd_model_record rec;
    if (lvd_model_find(m, name, &rec, NULL, err))
        return -1;
    if (rec.dim < 1)
        return lvd_fail(err, "model '%s' has dim %d", name, rec.dim);
    *model_id = rec.id;
    *dim = rec.dim;
    return 0;
}

static int grow(void **p, int64_t *cap, int64_t need, size_t size, lvd_error *err)
{
    if (need <= *cap)
        return 0;
    int64_t c = *cap ? *cap * 2 : 1024;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, (size_t)c * size);
    if (!q)
        return lvd_fail(err, "embeddings: out of memory for %lld rows", (long long)c);
    *p = q;
    *cap = c;
    return 0;
}

/* Index of path among the distinct paths; consecutive rows mostly share the last one. */
static int64_t path_index(selection *s, const char *path, lvd_error *err)
{
    for (int64_t i = s->n_paths - 1; i >= 0; i--)
        if (strcmp(s->paths[i], path) == 0)
            return i;
    if (grow((void **)&s->paths, &s->cap_paths, s->n_paths + 1, sizeof *s->paths, err))
        return -1;
    s->paths[s->n_paths] = strdup(path);
    if (!s->paths[s->n_paths])
        return lvd_fail(err, "embeddings: out of memory");
    return s->n_paths++;
}

static void selection_free(selection *s)
{
    for (int64_t i = 0; i < s->n_paths; i++)
        free(s->paths[i]);
    free(s->paths);
    free(s->rows);
}

/* Makes room for one more row in e's image_id and tag arrays (cap entries each). */
static int grow_slots(lvd_embeddings *e, int64_t *cap, lvd_error *err)
{
    int64_t cap_ids = *cap;
    if (grow((void **)&e->image_id, &cap_ids, e->n + 1, sizeof *e->image_id, err))
        return -1;
    return grow((void **)&e->tag, cap, e->n + 1, sizeof *e->tag, err);
}

static int add_row(selection *s, lvd_embeddings *e, sqlite3_stmt *st, int has_tag, int64_t *cap,
                   lvd_error *err)
{
    const char *path = (const char *)sqlite3_column_text(st, 1);
    if (!path)
        return lvd_fail(err, "embedding of image %lld has no file",
                        (long long)sqlite3_column_int64(st, 0));
    if (grow_slots(e, cap, err) ||
        grow((void **)&s->rows, &s->cap_rows, s->n_rows + 1, sizeof *s->rows, err))
        return -1;
    int64_t f = path_index(s, path, err);
    if (f < 0)
        return -1;
    e->image_id[e->n] = sqlite3_column_int64(st, 0);
    e->tag[e->n] = has_tag ? sqlite3_column_int64(st, 3) : 0;
    s->rows[s->n_rows++] = (pending_row){f, sqlite3_column_int64(st, 2), e->n};
    e->n++;
    return 0;
}

static int select_rows(lvd_manifest *m, int64_t model_id, const lvd_kit_rows *q,
                       const int64_t *binds, int n_binds, selection *s, lvd_embeddings *e,
                       lvd_error *err)
{
    sqlite3_stmt *st;
    if (lvd_kit_embeddings(m, model_id, q, binds, n_binds, &st, err))
        return -1;
    int has_tag = sqlite3_column_count(st) > 3;
    int64_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if (add_row(s, e, st, has_tag, &cap, err)) {
            sqlite3_finalize(st);
            return -1;
        }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return lvd_manifest_fail(m, err, "selecting embeddings");
    return 0;
}

static int cmp_pending(const void *a, const void *b)
{
    const pending_row *x = a, *y = b;
    if (x->file != y->file)
        return x->file < y->file ? -1 : 1;
    return (x->row > y->row) - (x->row < y->row);
}

/* Copies the rows of one file (rows[0 .. n) all name it) into their slots. */
static int copy_file(const char *path, const pending_row *rows, int64_t n, lvd_embeddings *e,
                     lvd_error *err)
{
    lvd_tensors *ts;
    if (lvd_tensors_open(path, &ts, err))
        return -1;
    const lvd_tensor *t = lvd_tensors_find(ts, "array");
    int rc = 0;
    if (!t || t->ndim != 2 || t->shape[1] != e->dim) {
        rc = lvd_fail(err, "%s: not a (rows, %d) float32 array", path, e->dim);
    } else {
        for (int64_t i = 0; i < n && rc == 0; i++) {
            if (rows[i].row < 0 || rows[i].row >= t->shape[0])
                rc = lvd_fail(err, "%s: row %lld out of range (%lld rows)", path,
                              (long long)rows[i].row, (long long)t->shape[0]);
            else
                memcpy(e->x + (size_t)rows[i].slot * e->dim, t->data + rows[i].row * e->dim,
                       (size_t)e->dim * sizeof *e->x);
        }
    }
    lvd_tensors_close(ts);
    return rc;
}

static int read_files(selection *s, lvd_embeddings *e, lvd_error *err)
{
    if (s->n_rows == 0)
        return 0;
    qsort(s->rows, (size_t)s->n_rows, sizeof *s->rows, cmp_pending);
    for (int64_t i = 0; i < s->n_rows;) {
        int64_t j = i;
        while (j < s->n_rows && s->rows[j].file == s->rows[i].file)
            j++;
        if (copy_file(s->paths[s->rows[i].file], s->rows + i, j - i, e, err))
            return -1;
        i = j;
    }
    return 0;
}

int lvd_embeddings_read(lvd_manifest *m, int64_t model_id, const lvd_kit_rows *q,
                        const int64_t *binds, int n_binds, int dim, lvd_embeddings *out,
                        lvd_error *err)
{
    memset(out, 0, sizeof *out);
    out->dim = dim;
    selection s = {0};
    int rc = select_rows(m, model_id, q, binds, n_binds, &s, out, err);
    if (rc == 0 && out->n > 0) {
        out->x = malloc((size_t)out->n * (size_t)dim * sizeof *out->x);
        if (!out->x)
            rc = lvd_fail(err, "embeddings: out of memory for %lld x %d floats", (long long)out->n,
                          dim);
    }
    if (rc == 0)
        rc = read_files(&s, out, err);
    if (rc == 0 && out->n > 0)
        rc = lvd_normalize_rows(out->x, out->n, dim, err);
    selection_free(&s);
    if (rc)
        lvd_embeddings_free(out);
    return rc;
}

void lvd_embeddings_free(lvd_embeddings *e)
{
    if (!e)
        return;
    free(e->x);
    free(e->image_id);
    free(e->tag);
    memset(e, 0, sizeof *e);
}
