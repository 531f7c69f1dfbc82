/* fetch_register of curate/fetch_internal.h. Registering the items of the inputs as pending rows of
 * the source (repeats are ignored, so a rerun with the same or a longer input only adds what is
 * new). */
#include "curate/fetch/fetch_internal.h"
#include "curate/fetch/inputs.h"

/* Rows per transaction: big enough to be fast, small enough to keep the WAL modest. */
#define REGISTER_BATCH 50000

typedef struct reg_ctx {
    lvd_manifest *m;
    sqlite3_stmt *st;
    int64_t source_id;
    int64_t inputs, added;
    int rows;
} reg_ctx;

static void bind_opt(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

static int on_item(void *arg, const lvd_input_item *item, lvd_error *err)
{
    reg_ctx *c = arg;
    sqlite3_bind_int64(c->st, 1, c->source_id);
    sqlite3_bind_text(c->st, 2, item->url, -1, SQLITE_STATIC);
    bind_opt(c->st, 3, item->key);
    bind_opt(c->st, 4, item->label);
    bind_opt(c->st, 5, item->caption);
    int rc = sqlite3_step(c->st);
    sqlite3_reset(c->st);
    sqlite3_clear_bindings(c->st);
    if (rc != SQLITE_DONE)
        return lvd_manifest_fail(c->m, err, "registering an item");
    c->inputs++;
    c->added += sqlite3_changes(lvd_manifest_db(c->m));
    if (++c->rows < REGISTER_BATCH)
        return 0;
    c->rows = 0;
    if (lvd_manifest_commit(c->m, err) != 0)
        return -1;
    return lvd_manifest_begin(c->m, err);
}

int fetch_register(lvd_manifest *m, int64_t source_id, const char *const *inputs, int n_inputs,
                   int64_t *n_inputs_read, int64_t *n_new, lvd_error *err)
{
    reg_ctx c = {.m = m, .source_id = source_id};
    if (lvd_manifest_prepare(m,
                             "INSERT INTO images(source_id, url, key, label, caption)"
                             " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(source_id, url) DO NOTHING",
                             &c.st, err) != 0)
        return -1;
    int rc = lvd_manifest_begin(m, err);
    for (int i = 0; i < n_inputs && rc == 0; i++)
        rc = lvd_inputs_read(inputs[i], on_item, &c, err);
    if (rc == 0)
        rc = lvd_manifest_commit(m, err);
    else
        lvd_manifest_rollback(m);
    sqlite3_finalize(c.st);
    *n_inputs_read = c.inputs;
    *n_new = c.added;
    return rc;
}
